"""Box ops, DETR element losses and matching costs (kdloss/ops/boxes.hpp, kdloss/losses/detr/).

    import kdloss_torch.detr as kdetr
    xyxy = kdetr.box_convert(cxcywh, "cxcywh", "xyxy")                   # torchvision.ops names
    iou = kdetr.box_iou(a, b); giou = kdetr.generalized_box_iou(a, b)   # [N, M] (or [B, N, M])
    loss = kdetr.generalized_box_iou_loss(p, t, reduction="sum")        # autograd to p and t
    loss = kdetr.sigmoid_focal_loss(logits, targets, reduction="mean")  # torchvision's, autograd
    cost = kdetr.matching_cost(logits, boxes, targets, preset="deformable_detr")   # [B, Q, T_max]

Values and gradients follow the conventions of docs/ops/boxes.md and docs/losses/detr.md: GIoU in
three forms ("detr": no eps, as torchvision.ops.generalized_box_iou; "mmdet": max(., eps); and
"torchvision": + eps, as generalized_box_iou_loss), gradients as torch 2.15's autograd gives them.
"""

import torch

from .. import _C

_FORMATS = {"xyxy": 0, "cxcywh": 1, "xywh": 2}
_FORMS = {"detr": 0, "mmdet": 1, "torchvision": 2}
_REDUCTIONS = {"mean": 0, "sum": 1, "none": 2}
_COSTS = {"none": 0, "soft_bce": 1, "focal": 2, "softmax": 3}
_NORMS = {"sum": 0, "matched_pairs": 1, "value": 2}


def _pick(table, value, fn, name):
    if value not in table:
        names = ", ".join(repr(k) for k in table)
        raise ValueError(f"kdloss_torch.detr.{fn}: argument '{name}' must be one of {names} but is {value!r}")
    return table[value]


def _int_arg(t):
    return None if t is None else (t.data_ptr(), list(t.shape), list(t.stride()))


def _index(t, device):
    return None if t is None else torch.as_tensor(t, dtype=torch.int64, device=device).contiguous()


# ---- box_convert ---------------------------------------------------------------------------------

class _BoxConvert(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boxes, in_fmt, out_fmt):
        out = torch.empty(boxes.shape, dtype=boxes.dtype, device=boxes.device)
        _C.detr_box_convert(boxes.detach(), out, in_fmt, out_fmt)
        ctx.fmts = (in_fmt, out_fmt)
        return out

    @staticmethod
    def backward(ctx, grad):
        g = torch.empty(grad.shape, dtype=grad.dtype, device=grad.device)
        _C.detr_box_convert_backward(grad.contiguous(), g, *ctx.fmts)
        return g, None, None


def box_convert(boxes, in_fmt, out_fmt):
    """torchvision.ops.box_convert: boxes [..., 4] ([4], [N, 4], [B, N, 4]) between xyxy, cxcywh, xywh."""
    a = _pick(_FORMATS, in_fmt, "box_convert", "in_fmt")
    b = _pick(_FORMATS, out_fmt, "box_convert", "out_fmt")
    return _BoxConvert.apply(boxes, a, b)


# ---- pairwise IoU / GIoU (forward only) ------------------------------------------------------------

def _overlap(boxes1, boxes2, giou, form, eps, fmt):
    fn = "generalized_box_iou" if giou else "box_iou"
    f = _pick(_FORMS, form, fn, "form")
    k = _pick(_FORMATS, fmt, fn, "fmt")
    b1, b2 = boxes1.detach(), boxes2.detach()
    n, m = b1.shape[-2] if b1.dim() >= 2 else 1, b2.shape[-2] if b2.dim() >= 2 else 1
    batch = b1.shape[0] if b1.dim() == 3 else (b2.shape[0] if b2.dim() == 3 else None)
    shape = (n, m) if batch is None else (batch, n, m)
    out = torch.empty(shape, dtype=b1.dtype, device=b1.device)
    _C.detr_box_overlap(b1, b2, out, bool(giou), f, float(eps), k)
    return out


def box_iou(boxes1, boxes2, form="detr", eps=0.0, fmt="xyxy"):
    """torchvision.ops.box_iou ([N, 4] x [M, 4] -> [N, M]; batched [B, N, 4] too). No gradient: a
    matching cost. form "mmdet" with eps 1e-6 is mmdet's bbox_overlaps."""
    return _overlap(boxes1, boxes2, False, form, eps, fmt)


def generalized_box_iou(boxes1, boxes2, form="detr", eps=0.0, fmt="xyxy"):
    """torchvision.ops.generalized_box_iou / DETR's util.box_ops (no gradient: a matching cost)."""
    return _overlap(boxes1, boxes2, True, form, eps, fmt)


# ---- aligned GIoU loss ---------------------------------------------------------------------------

class _GIoULoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boxes1, boxes2, weight, form, eps, reduction, scale, fmt):
        b1, b2 = boxes1.detach(), boxes2.detach()
        none = reduction == _REDUCTIONS["none"]
        out = torch.empty(b1.shape[:-1] if none else (), dtype=b1.dtype, device=b1.device)
        g1 = torch.empty_like(b1) if ctx.needs_input_grad[0] else None
        g2 = torch.empty_like(b2) if ctx.needs_input_grad[1] else None
        w = None if weight is None else weight.detach()
        _C.detr_giou_loss(b1, b2, w, out, g1, g2, form, eps, reduction, scale, fmt)
        ctx.save_for_backward(g1, g2)
        ctx.none = none
        return out

    @staticmethod
    def backward(ctx, grad):
        g1, g2 = ctx.saved_tensors
        up = grad.unsqueeze(-1) if ctx.none else grad
        return (None if g1 is None else g1 * up, None if g2 is None else g2 * up, None, None, None, None, None, None)


def generalized_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7, form="torchvision", weight=None,
                             scale=1.0, fmt="xyxy"):
    """torchvision.ops.generalized_box_iou_loss (form "torchvision", eps 1e-7), or mmdet's GIoULoss
    (form "mmdet", eps 1e-6, reduction "sum", scale = loss_weight / (avg_factor + eps)), or DETR's
    1 - diag(generalized_box_iou) (form "detr"). weight [N] multiplies each pair's loss; scale the
    reduced value. Gradients to boxes1 and boxes2 with torch's conventions (docs/ops/boxes.md)."""
    f = _pick(_FORMS, form, "generalized_box_iou_loss", "form")
    r = _pick(_REDUCTIONS, reduction, "generalized_box_iou_loss", "reduction")
    k = _pick(_FORMATS, fmt, "generalized_box_iou_loss", "fmt")
    return _GIoULoss.apply(boxes1, boxes2, weight, f, float(eps), r, float(scale), k)


# ---- class losses --------------------------------------------------------------------------------

def _norm_args(normalizer):
    """normalizer: "sum", "num_pos" (the matched pairs + float eps, mmdet's), or a number N' (mmdet's
    avg_factor: clamp(N', 1) + float eps), or a dict {"kind", "value", "clamp", "eps"}."""
    if normalizer == "sum":
        return (0, 1.0, False, False)
    if normalizer == "num_pos":
        return (1, 1.0, False, True)
    if isinstance(normalizer, (int, float)):
        return (2, float(normalizer), True, True)
    if isinstance(normalizer, dict):
        return (_pick(_NORMS, normalizer.get("kind", "value"), "normalizer", "kind"), float(normalizer.get("value", 1.0)),
                bool(normalizer.get("clamp", False)), bool(normalizer.get("eps", False)))
    raise ValueError(f"kdloss_torch.detr: normalizer must be 'sum', 'num_pos', a number or a dict, not {normalizer!r}")


class _ClassLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, probs, labels, pred_rows, target_rows, focal, alpha, gamma, weight, norm, elementwise):
        z = logits.detach()
        out = torch.empty((), dtype=z.dtype, device=z.device)
        g = torch.empty_like(z) if ctx.needs_input_grad[0] else None
        p = None if probs is None else probs.detach()
        _C.detr_matched_class_loss(z, p, _int_arg(labels), _int_arg(pred_rows), _int_arg(target_rows), out, None, g,
                                   focal, alpha, gamma, weight, *norm)
        ctx.save_for_backward(g)
        return out

    @staticmethod
    def backward(ctx, grad):
        (g,) = ctx.saved_tensors
        return (None if g is None else g * grad,) + (None,) * 10


def matched_class_loss(logits, pred_rows, target_rows, target_probs=None, target_labels=None, loss="soft_bce",
                       alpha=0.25, gamma=2.0, weight=1.0, normalizer="num_pos"):
    """kdloss::detr::matched_class_loss: weight * sum over every query and class of BCE-with-logits
    (loss "soft_bce", DETRDistill) or mmdet's sigmoid focal loss (loss "focal") against the matched
    target row (target_probs [T, C] or one-hot target_labels [T]; 0 for unmatched queries), divided by
    the normaliser. logits [B, Q, C]; pred_rows = b * Q + q and target_rows (packed) of the K pairs."""
    focal = _pick({"soft_bce": False, "focal": True}, loss, "matched_class_loss", "loss")
    dev = logits.device
    return _ClassLoss.apply(logits, target_probs, _index(target_labels, dev), _index(pred_rows, dev),
                            _index(target_rows, dev), focal, float(alpha), float(gamma), float(weight),
                            _norm_args(normalizer), False)


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss (mmdet's formula: precise at large |logits|), with autograd to
    inputs. targets: same shape, in [0, 1]."""
    r = _pick(_REDUCTIONS, reduction, "sigmoid_focal_loss", "reduction")
    return _Focal.apply(inputs, targets, float(alpha), float(gamma), r)


class _Focal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, targets, alpha, gamma, reduction):
        z = inputs.detach().reshape(1, -1, 1)
        n = z.shape[1]
        t = targets.detach().to(z.dtype).reshape(-1, 1)
        rows = torch.arange(n, dtype=torch.int64, device=z.device)
        out = torch.empty((), dtype=z.dtype, device=z.device)
        g = torch.empty_like(z) if ctx.needs_input_grad[0] else None
        if reduction == _REDUCTIONS["none"]:
            elem = torch.empty_like(z)
            norm = (0, 1.0, False, False)
        else:
            elem = None
            norm = (2, float(n), False, False) if reduction == _REDUCTIONS["mean"] else (0, 1.0, False, False)
        _C.detr_matched_class_loss(z, t, None, _int_arg(rows), _int_arg(rows), out, elem, g, True, alpha, gamma, 1.0,
                                   *norm)
        ctx.save_for_backward(g)
        ctx.shape = inputs.shape
        ctx.none = elem is not None
        if ctx.none:
            return elem.reshape(inputs.shape)
        if n == 0 and reduction == _REDUCTIONS["mean"]:
            out.fill_(float("nan"))  # torch's mean of an empty tensor
        return out

    @staticmethod
    def backward(ctx, grad):
        (g,) = ctx.saved_tensors
        if g is None:
            return (None,) * 5
        g = g.reshape(ctx.shape)
        return (g * grad, None, None, None, None)


# ---- box losses ------------------------------------------------------------------------------------

class _BoxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pred, target, pred_rows, target_rows, sizes, l1_weight, giou_weight, fmt, form, eps, norm):
        p = pred.detach()
        l1 = torch.empty((), dtype=p.dtype, device=p.device)
        gi = torch.empty((), dtype=p.dtype, device=p.device)
        need = ctx.needs_input_grad[0]
        g1 = torch.empty_like(p) if need else None
        g2 = torch.empty_like(p) if need else None
        s = None if sizes is None else sizes.detach().to(p.dtype)
        t = target.detach()
        # one call per term, so each term keeps its own local gradient
        _C.detr_matched_box_loss(p, t, _int_arg(pred_rows), _int_arg(target_rows), s, l1, None, g1, l1_weight,
                                 giou_weight, fmt, form, eps, *norm)
        _C.detr_matched_box_loss(p, t, _int_arg(pred_rows), _int_arg(target_rows), s, None, gi, g2, l1_weight,
                                 giou_weight, fmt, form, eps, *norm)
        ctx.save_for_backward(g1, g2)
        return l1, gi

    @staticmethod
    def backward(ctx, grad_l1, grad_giou):
        g1, g2 = ctx.saved_tensors
        if g1 is None:
            return (None,) * 11
        return (g1 * grad_l1 + g2 * grad_giou,) + (None,) * 10


def matched_box_loss(pred_boxes, target_boxes, pred_rows, target_rows, sizes=None, l1_weight=5.0, giou_weight=2.0,
                     fmt="cxcywh", form="mmdet", eps=1e-6, normalizer=1.0):
    """kdloss::detr::matched_box_loss: (l1_weight * sum |p - t|_1 / N', giou_weight * sum (1 - GIoU) / N')
    over the matched pairs; pred_boxes [B, Q, 4], target_boxes [T, 4] in fmt (normalised); sizes [B, 2]
    (h, w) puts the GIoU in pixels (mmdet). Returns (loss_l1, loss_giou), autograd to pred_boxes."""
    dev = pred_boxes.device
    return _BoxLoss.apply(pred_boxes, target_boxes, _index(pred_rows, dev), _index(target_rows, dev), sizes,
                          float(l1_weight), float(giou_weight), _pick(_FORMATS, fmt, "matched_box_loss", "fmt"),
                          _pick(_FORMS, form, "matched_box_loss", "form"), float(eps), _norm_args(normalizer))


# ---- matching costs --------------------------------------------------------------------------------

#: The matchers' settings (kdloss::detr::MatchingCostOptions presets).
PRESETS = {
    "detr": dict(class_cost="softmax", class_weight=1.0, bbox_weight=5.0, giou_weight=2.0, target_format="cxcywh",
                 target_in_pixels=False, giou_form="detr", giou_eps=0.0, focal_eps=1e-12),
    "deformable_detr": dict(class_cost="focal", class_weight=2.0, bbox_weight=5.0, giou_weight=2.0,
                            target_format="cxcywh", target_in_pixels=False, giou_form="detr", giou_eps=0.0,
                            focal_eps=1e-8),
    "mmdet": dict(class_cost="focal", class_weight=2.0, bbox_weight=5.0, giou_weight=2.0, target_format="xyxy",
                  target_in_pixels=True, giou_form="mmdet", giou_eps=1e-6, focal_eps=1e-12),
    "detrdistill": dict(class_cost="soft_bce", class_weight=1.0, bbox_weight=5.0, giou_weight=2.0,
                        target_format="xyxy", target_in_pixels=True, giou_form="mmdet", giou_eps=1e-6,
                        focal_eps=1e-12),
}


def _packed(x, counts):
    if x is None or torch.is_tensor(x):
        return x
    return torch.cat(list(x), 0)


@torch.no_grad()
def matching_cost(pred_logits, pred_boxes, target_boxes, target_labels=None, target_probs=None, sizes=None,
                  counts=None, preset="mmdet", alpha=0.25, gamma=2.0, padding_value=0.0, pred_format="cxcywh",
                  **overrides):
    """The matchers' cost matrices for the whole batch: [B, Q, T_max] (columns past image b's targets
    hold padding_value). Targets per image: lists of tensors, or packed tensors with counts (per-image
    target counts). sizes [B, 2] (h, w): pixel targets / pixel GIoU (presets "mmdet", "detrdistill").
    preset: "detr", "deformable_detr", "mmdet" (HungarianAssigner) or "detrdistill"; keywords override
    class_cost, class_weight, bbox_weight, giou_weight, target_format, target_in_pixels, giou_form,
    giou_eps, focal_eps. No gradient (the costs are constants for the matcher)."""
    o = dict(_pick(PRESETS, preset, "matching_cost", "preset"))
    for k, v in overrides.items():
        if k not in o:
            raise TypeError(f"kdloss_torch.detr.matching_cost: unknown option {k!r}")
        o[k] = v
    if counts is None:
        if torch.is_tensor(target_boxes):
            raise ValueError("kdloss_torch.detr.matching_cost: packed targets need counts (targets per image)")
        counts = [int(t.shape[0]) for t in target_boxes]
    counts = [int(c) for c in counts]
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    tb = _packed(target_boxes, counts).detach()
    labels = _packed(target_labels, counts)
    probs = _packed(target_probs, counts)
    B, Q = pred_boxes.shape[0], pred_boxes.shape[1]
    tmax = max(counts) if counts else 0
    b = pred_boxes.detach()
    out = torch.empty((B, Q, tmax), dtype=b.dtype, device=b.device)
    cls = _pick(_COSTS, o["class_cost"], "matching_cost", "class_cost")
    z = None if pred_logits is None or cls == 0 else pred_logits.detach()
    s = None if sizes is None else torch.as_tensor(sizes, device=b.device).to(b.dtype).reshape(B, 2)
    _C.detr_matching_cost(z, b, None if probs is None else probs.detach(), _int_arg(_index(labels, b.device)), tb,
                          offsets, s, out, cls, float(o["class_weight"]), float(o["bbox_weight"]),
                          float(o["giou_weight"]), float(alpha), float(gamma), float(o["focal_eps"]),
                          _pick(_FORMATS, pred_format, "matching_cost", "pred_format"),
                          _pick(_FORMATS, o["target_format"], "matching_cost", "target_format"),
                          bool(o["target_in_pixels"]), _pick(_FORMS, o["giou_form"], "matching_cost", "giou_form"),
                          float(o["giou_eps"]), float(padding_value))
    return out
