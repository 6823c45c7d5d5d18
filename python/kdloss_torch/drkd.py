"""DRKD losses (kdloss/losses/drkd): the seed's pixel-wise relation loss and the instance-wise relations.

    import kdloss_torch.drkd as drkd
    loss = drkd.pixel_relation_loss(student, teacher)        # [B, C, H, W] each, any strides

G(F) = softmax(F F^T / sqrt(C)) F per image (F = the map read as [H*W, C]) and the loss is
mean((G(T) - G(S))^2), as torch.nn.functional.mse_loss(sdpa(T, T, T), sdpa(S, S, S)) with
sdpa = scaled_dot_product_attention on [B, H*W, C], but without the [H*W, H*W] matrix: it runs at P2.
The student gets the gradient through the whole relation; the teacher gets none.

Instance relations (docs/losses/drkd.md), on RoI features packed over the images ([n, C, 3, 3], image b
owning rows offsets[b]:offsets[b + 1]):

- code form (the official two-stage code, nizhenliang/Dual-Relation-Knowledge-Distillation):
  ``instance_relation_loss(student_rois, teacher_rois, offsets, student_relation, teacher_relation,
  relation_adaptation, for_adaptation, student_filter, teacher_filter)`` = L_IR + L_fg of one level;
  ``ObjectRelation`` is the code's ObjectRelation_1 with the same parameter names (theta.0.weight, ...,
  W.bias); ``InstanceRelationDistiller`` holds the code's student_relation / teacher_relation /
  relation_adaptation / for_adaptation ModuleLists (state_dict keys as in the detector) and runs both
  levels from the FPN maps and the ground-truth boxes (kdloss_torch.ops.roi_align pools, with
  torchvision's roi_align semantics; image0_bug=True reproduces the code's pooling of every image's boxes
  from image 0). The relation filter layer the code draws inside every forward (nn.Linear(D, n_b), default
  init, CPU generator) is drawn the same way, in the code's order (per level, per image: student, then
  teacher), by ``draw_filter``.
- paper form (the seed's pseudocode): ``instance_relation_paper_loss(student_rois, teacher_rois, offsets,
  teacher_scores=None, student_scores=None, ...)`` = MSE of the filtered cosine relations.
"""

import torch
from torch import nn

from . import _C, _function
from ._common import keep, take

__all__ = ["pixel_relation_loss", "PixelRelationOptions", "instance_relation_loss", "instance_relation_paper_loss",
           "instance_relation_maps_loss",
           "ObjectRelation", "InstanceRelationDistiller", "draw_filter", "INSTANCE_INPUTS", "PRESETS"]

PixelRelationOptions = _C.PixelRelationOptions

_pixel_relation = _function.Loss(_C.drkd_pixel_relation_loss, name="drkd.pixel_relation_loss")


def pixel_relation_loss(student, teacher, scale=0.0, reduction="mean"):
    """kdloss::drkd::pixel_relation_loss: mean (or sum) of (G(T) - G(S))^2; scale 0 means 1/sqrt(C)."""
    return _pixel_relation(student, teacher, scale=float(scale), reduction=reduction)


# ---- instance relations -------------------------------------------------------------------------------

#: The inputs of the code-form loss, in the binding's order.
INSTANCE_INPUTS = (
    "student", "teacher",
    "student_relation.theta_weight", "student_relation.theta_bias", "student_relation.phi_weight",
    "student_relation.phi_bias", "student_relation.g_weight", "student_relation.g_bias",
    "student_relation.W_weight", "student_relation.W_bias",
    "teacher_relation.theta_weight", "teacher_relation.theta_bias", "teacher_relation.phi_weight",
    "teacher_relation.phi_bias", "teacher_relation.g_weight", "teacher_relation.g_bias",
    "teacher_relation.W_weight", "teacher_relation.W_bias",
    "student_filter.weight", "student_filter.bias", "teacher_filter.weight", "teacher_filter.bias",
    "relation_adapt_weight", "relation_adapt_bias", "feature_adapt_weight", "feature_adapt_bias")

#: The code's and the paper's settings (losses.md 2.3; the paper's weights are unverified).
PRESETS = {
    "code": {"relation_weight": 4e-3, "feature_weight": 2.4e-3, "glore_weight": 1e-3, "levels": (0, 1),
             "image0_bug": True, "filter": "draw"},
    "code_fixed": {"relation_weight": 4e-3, "feature_weight": 2.4e-3, "glore_weight": 1e-3, "levels": (0, 1),
                   "image0_bug": False, "filter": "draw"},
    "paper": {"weight": 1.0, "threshold_from": "teacher_mean", "mask_columns": False, "alpha": float("inf")},
}


def _offsets(offsets, device=None):
    """A CPU int64 tensor of offsets [B + 1] from a tensor or a list of per-image box counts or offsets."""
    if isinstance(offsets, torch.Tensor):
        off = offsets.detach().to("cpu", torch.int64).contiguous()
    else:
        off = torch.tensor(list(offsets), dtype=torch.int64)
    return off


def offsets_of(boxes_per_image):
    """Offsets [B + 1] of a list of per-image box tensors (or counts)."""
    counts = [int(b.shape[0]) if isinstance(b, torch.Tensor) else int(b) for b in boxes_per_image]
    off = [0]
    for c in counts:
        off.append(off[-1] + c)
    return torch.tensor(off, dtype=torch.int64)


def _triple(t):
    return (t.data_ptr(), list(t.shape), list(t.stride()))


class _CodeForm(torch.autograd.Function):
    """The code form's 26 tensors (INSTANCE_INPUTS order; the first two the features or the maps) through
    `run(inputs, grads, offsets, out, mode)`, one kdloss call; every gradient but the teacher's."""

    @staticmethod
    def forward(ctx, run, offsets, *tensors):
        off = _offsets(offsets)
        want = [t is not None and t.requires_grad and i != 1 for i, t in enumerate(tensors)]
        ref = tensors[0]
        inputs = [t.detach() if t is not None else None for t in tensors]
        out = torch.empty((), dtype=ref.dtype, device=ref.device)
        grads = _CodeForm.fresh(inputs, want)
        run(inputs, grads, _triple(off), out, 2 if any(want) else 0)
        keep(ctx, grads)
        ctx.run, ctx.off, ctx.inputs, ctx.want = run, off, inputs, want
        return out

    @staticmethod
    def fresh(inputs, want):
        # every gradient is written whole: large host ones come from the bridge's output cache (no page faults)
        return [_C.empty_like(t) if w else None for t, w in zip(inputs, want)]

    @staticmethod
    def backward(ctx, grad_out):
        # The fused forward's gradients, scaled in place and given away (no copy when grad_out is a CPU 1);
        # a second backward (retain_graph=True) recomputes them.
        grads = take(ctx, grad_out)
        if grads is None:
            grads = _CodeForm.fresh(ctx.inputs, ctx.want)
            scratch = torch.empty((), dtype=grad_out.dtype, device=grad_out.device)
            ctx.run(ctx.inputs, grads, _triple(ctx.off), scratch, 2)
            grads = [None if g is None else g.mul_(grad_out) for g in grads]
        return (None, None) + tuple(grads)


def _relation_params(module):
    if module is None:
        return [None] * 8
    if isinstance(module, ObjectRelation):
        return module.parameter_list()
    return list(module)


def _code_tensors(first, second, student_relation, teacher_relation, relation_adaptation, for_adaptation,
                  student_filter, teacher_filter):
    """The 26 tensors of the code form in INSTANCE_INPUTS order (modules flattened to their parameters)."""
    def conv(m):
        if m is None:
            return [None, None]
        if isinstance(m, nn.Conv2d):
            return [m.weight.flatten(1), m.bias]
        return list(m)

    tensors = [first, second] + _relation_params(student_relation) + _relation_params(teacher_relation)
    tensors += list(student_filter) if student_filter is not None else [None, None]
    tensors += list(teacher_filter) if teacher_filter is not None else [None, None]
    return tensors + conv(relation_adaptation) + conv(for_adaptation)


def instance_relation_loss(student, teacher, offsets, student_relation, teacher_relation, relation_adaptation,
                           for_adaptation=None, student_filter=None, teacher_filter=None, relation_weight=4e-3,
                           feature_weight=2.4e-3):
    """kdloss::drkd::instance_relation_loss of one level: L_IR + L_fg (the code's ObjectRelation_1 form).

    student, teacher: RoI features [n, C, P, Q] packed by image; offsets: [B + 1] (tensor or list).
    student_relation / teacher_relation: ObjectRelation modules (or lists of their 8 tensors).
    relation_adaptation / for_adaptation: Conv2d(C_s, C_t, 1) modules (or (weight [C_t, C_s], bias) pairs);
    for_adaptation None: no L_fg. student_filter / teacher_filter: (weight [n, D], bias [n]) or None (no mask).
    Gradients: the student, both relations, the adapters and the filters; the teacher gets none.
    """
    def run(inputs, grads, off, out, mode):
        _C.drkd_instance_relation(inputs, grads, off, out, None, mode, float(relation_weight), float(feature_weight))

    tensors = _code_tensors(student, teacher, student_relation, teacher_relation, relation_adaptation, for_adaptation,
                            student_filter, teacher_filter)
    return _CodeForm.apply(run, offsets, *tensors)


def instance_relation_maps_loss(student_map, teacher_map, boxes, offsets, student_relation, teacher_relation,
                                relation_adaptation, for_adaptation=None, student_filter=None, teacher_filter=None,
                                relation_weight=4e-3, feature_weight=2.4e-3, output_size=3, spatial_scale=0.25,
                                sampling_ratio=-1, aligned=False, image0_pooling=False):
    """kdloss::drkd::instance_relation_maps_loss (code form) of one level, in one call: RoIAlign of `boxes` from
    both maps (torchvision.ops.roi_align's semantics, deterministic backward), then L_IR + L_fg.

    student_map [B, C_s, H, W], teacher_map [B, C_t, H, W]; boxes [n, 4] (x1, y1, x2, y2 in image pixels, packed
    by image, the maps' dtype); offsets [B + 1] (tensor or list). image0_pooling=True pools every image's boxes
    from image 0 (the official code's bug). The other arguments as instance_relation_loss takes them.
    Gradients: the student map, both relations, the adapters and the filters; the teacher map gets none.
    """
    def run(inputs, grads, off, out, mode):
        _C.drkd_instance_relation_maps(inputs, grads, off, boxes.detach(), out, None, mode, float(relation_weight),
                                       float(feature_weight), int(output_size), float(spatial_scale),
                                       int(sampling_ratio), bool(aligned), bool(image0_pooling))

    tensors = _code_tensors(student_map, teacher_map, student_relation, teacher_relation, relation_adaptation,
                            for_adaptation, student_filter, teacher_filter)
    return _CodeForm.apply(run, offsets, *tensors)


class _InstancePaper(torch.autograd.Function):
    @staticmethod
    def forward(ctx, offsets, options, student, teacher, teacher_scores, student_scores):
        off = _offsets(offsets)
        grad = torch.empty(student.shape, dtype=student.dtype, device=student.device) if student.requires_grad else None
        out = torch.empty((), dtype=student.dtype, device=student.device)
        d = lambda t: None if t is None else t.detach()  # noqa: E731
        _C.drkd_instance_relation_paper(d(student), d(teacher), _triple(off), d(teacher_scores), d(student_scores), out,
                                        None, grad, 2 if grad is not None else 0, **options)
        ctx.grad = grad
        return out

    @staticmethod
    def backward(ctx, grad_out):
        g = None if ctx.grad is None else ctx.grad * grad_out
        return None, None, g, None, None, None


def instance_relation_paper_loss(student, teacher, offsets, teacher_scores=None, student_scores=None, weight=1.0,
                                 threshold_from="teacher_mean", threshold=0.5, mask_columns=False,
                                 alpha=float("inf"), eps=1e-12, reduction="mean"):
    """kdloss::drkd::instance_relation_paper_loss: weight * MSE of the filtered cosine relations (seed form).

    Confidence mask M_i = score_i > t (t: the image's mean teacher score, or `threshold` with
    threshold_from="fixed"), rows only (the seed) or rows and columns; distance mask ||x_i - x_j|| > alpha
    zeroes R_ij. Both masks are constants; the gradient reaches the student through the cosine.
    """
    options = dict(weight=float(weight), threshold_from=threshold_from, threshold=float(threshold),
                   mask_columns=bool(mask_columns), alpha=float(alpha), eps=float(eps), reduction=reduction)
    return _InstancePaper.apply(offsets, options, student, teacher, teacher_scores, student_scores)


class ObjectRelation(nn.Module):
    """The official code's ObjectRelation_1(in_channels): theta, phi, g = Sequential(Linear(D, D // 2)),
    W = Linear(D // 2, D); state_dict keys theta.0.weight, ..., W.bias as in the code."""

    def __init__(self, in_channels):
        super().__init__()
        self.in_channels = in_channels
        self.inter_channels = in_channels // 2
        self.theta = nn.Sequential(nn.Linear(self.in_channels, self.inter_channels))
        self.phi = nn.Sequential(nn.Linear(self.in_channels, self.inter_channels))
        self.g = nn.Sequential(nn.Linear(self.in_channels, self.inter_channels))
        self.W = nn.Linear(self.inter_channels, self.in_channels)

    def parameter_list(self):
        return [self.theta[0].weight, self.theta[0].bias, self.phi[0].weight, self.phi[0].bias, self.g[0].weight,
                self.g[0].bias, self.W.weight, self.W.bias]


def draw_filter(n, in_channels, like):
    """The code's relation filter layer: nn.Linear(in_channels, n) created with its default init on the CPU
    (torch's default generator, as ObjectRelation_1.resize does), returned as (weight, bias) like `like`."""
    fc = nn.Linear(in_channels, n)
    return fc.weight.detach().to(like), fc.bias.detach().to(like)


class InstanceRelationDistiller(nn.Module):
    """The code's instance-relation distillation over FPN levels 0 and 1 (losses.md 2.3).

    Modules (names as in the code's TwoStageDetector): student_relation, teacher_relation (ObjectRelation
    (C * 9) per level), relation_adaptation, for_adaptation (Conv2d(C, C, 1) per level).
    forward(student_feats, teacher_feats, gt_bboxes) -> L_IR + L_fg summed over the levels; the RoIs are
    pooled with kdloss_torch.ops.roi_align (torchvision.ops.roi_align's semantics, deterministic and faster
    backward; 3 x 3, spatial_scale W_l / (4 W_0), sampling_ratio -1, aligned False); image0_bug=True
    pools every image's boxes from image 0, as the code does.
    filter: "draw" (the code's per-call random layer, drawn in its order), "none" (mask = 1).
    fused=True runs each level as one kdloss::drkd::instance_relation_maps_loss call (pooling, relation and the
    pooling's backward in C++); fused=False pools with kdloss_torch.ops.roi_align, then calls
    instance_relation_loss (the same values; kept for comparison).
    """

    def __init__(self, channels=256, levels=2, relation_weight=4e-3, feature_weight=2.4e-3, image0_bug=False,
                 filter="draw", fused=True):
        super().__init__()
        d = channels * 9
        self.student_relation = nn.ModuleList([ObjectRelation(d) for _ in range(levels)])
        self.teacher_relation = nn.ModuleList([ObjectRelation(d) for _ in range(levels)])
        self.relation_adaptation = nn.ModuleList([nn.Conv2d(channels, channels, 1) for _ in range(levels)])
        self.for_adaptation = nn.ModuleList([nn.Conv2d(channels, channels, 1) for _ in range(levels)])
        self.relation_weight, self.feature_weight = relation_weight, feature_weight
        self.image0_bug, self.filter, self.fused = image0_bug, filter, fused

    def pool(self, feats, gt_bboxes, level):
        from .ops import roi_align
        x = feats[level]
        scale = x.size(-1) / (feats[0].size(-1) * 4)
        if self.image0_bug:  # the code's one-element box list per image pools every image's boxes from image 0
            boxes = torch.cat([b.detach() for b in gt_bboxes])
            rois = torch.cat([boxes.new_zeros(boxes.size(0), 1), boxes], dim=1)
        else:  # per image: boxes of image b from x[b]
            rois = list(gt_bboxes)
        return roi_align(x, rois, output_size=3, spatial_scale=scale)

    def filters(self, gt_bboxes, d, like):
        """The code's per-call filter layers of one level (student's, teacher's), drawn in its order."""
        if self.filter != "draw":
            return None, None
        sw, sb, tw, tb = [], [], [], []
        for boxes in gt_bboxes:  # the code's order: the student's layer, then the teacher's
            w, b = draw_filter(boxes.shape[0], d, like)
            sw.append(w), sb.append(b)
            w, b = draw_filter(boxes.shape[0], d, like)
            tw.append(w), tb.append(b)
        return (torch.cat(sw), torch.cat(sb)), (torch.cat(tw), torch.cat(tb))

    def forward(self, student_feats, teacher_feats, gt_bboxes):
        off = offsets_of(gt_bboxes)
        total = 0
        for level in range(len(self.student_relation)):
            modules = (self.student_relation[level], self.teacher_relation[level], self.relation_adaptation[level],
                       self.for_adaptation[level])
            if self.fused:
                x = student_feats[level]
                scale = x.size(-1) / (student_feats[0].size(-1) * 4)
                sf, tf = self.filters(gt_bboxes, x.shape[1] * 9, x)
                boxes = torch.cat([b.detach() for b in gt_bboxes]).to(x.dtype)
                total = total + instance_relation_maps_loss(x, teacher_feats[level].detach(), boxes, off, *modules, sf,
                                                            tf, self.relation_weight, self.feature_weight,
                                                            spatial_scale=scale, image0_pooling=self.image0_bug)
                continue
            rs = self.pool(student_feats, gt_bboxes, level)
            with torch.no_grad():
                rt = self.pool(teacher_feats, gt_bboxes, level)
            sf, tf = self.filters(gt_bboxes, rs[0].numel() if rs.shape[0] else 0, rs)
            total = total + instance_relation_loss(rs, rt, off, *modules, sf, tf, self.relation_weight,
                                                   self.feature_weight)
        return total
