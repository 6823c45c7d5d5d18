"""DETRDistill losses (kdloss/losses/detr), as the official code (BIVLab-USTC/DETRDistill) computes them.

    import kdloss_torch.detr as kdetr
    # the code's contrastive query term, per decoder layer k: P_T / P_S = the two MoCoCLHead projections
    # of the paired queries ([B*300, 512] each, or [6, B*300, 512] for all layers at once)
    l_cl = kdetr.contrastive_query_loss(proj_teacher, proj_student)          # 0.2 * InfoNCE(T = 0.07)
    # target-aware feature distillation over all decoder layers and neck levels
    l_feat = kdetr.target_aware_feature_loss(
        teacher_logits.sigmoid(),     # [6, B, 300, 80] teacher scores per decoder layer
        teacher_boxes_xyxy,           # [6, B, 300, 4] pixel xyxy (cxcywh * (w, h, w, h), not clamped)
        teacher_hidden,               # [6, B, 300, 256] teacher decoder outputs
        gt_boxes,                     # list of B [G_b, 4] pixel xyxy tensors (an image may have none)
        teacher_neck, student_neck)   # lists of [B, 256, H_l, W_l] maps, one per level

Values and gradients follow losses.md 4.3 / 4.5; the student maps (and both projections) get gradients,
the teacher tensors none.

    # query-prior assignment distillation: the student's decoding of the teacher's queries, supervised by the
    # ground truth through the teacher's own layer-k Hungarian assignment (indices[k][b] = (query_idx, gt_idx))
    l_assign = kdetr.query_prior_loss(logits, boxes, gt_labels, gt_boxes, indices, sizes)

float32/float64 tensors on the CPU or, in a CUDA build of kdloss_torch, on a GPU (passed as they are, no copy;
logits_distillation_loss's split='score_threshold' runs on the CPU only). The GPU paths compile but have not run yet.
"""

import torch

from .. import _C
from .._function import Loss

__all__ = ["contrastive_query_loss", "target_aware_feature_loss", "ContrastiveQueryLoss", "TargetAwareFeatureLoss",
           "logits_distillation_loss", "LogitsDistillationLoss", "LogitsDistillationOptions",
           "ContrastiveQueryOptions", "TargetAwareFeatureOptions", "query_prior_loss", "QueryPriorLoss",
           "QueryPriorLossOptions"]

ContrastiveQueryOptions = _C.ContrastiveQueryOptions
TargetAwareFeatureOptions = _C.TargetAwareFeatureOptions

# the projections of BOTH sides are trained by the contrastive term: no input is a "teacher" here
_contrastive = Loss(_C.detr_contrastive_query_loss, name="detr.contrastive_query_loss", teachers=())
_feature = Loss(_C.detr_target_aware_feature_loss, name="detr.target_aware_feature_loss")


def contrastive_query_loss(teacher, student, temperature=0.07, weight=0.2, normalize=True, eps=1e-12):
    """kdloss::detr::contrastive_query_loss: weight * sum over layers of mean_i CE(t_i . s_j / temperature, i),
    t / s the L2-normalised rows (normalize=False: taken as given). teacher, student: [N, D] or [K, N, D];
    gradients to both."""
    return _contrastive(teacher, student, temperature=float(temperature), weight=float(weight),
                        normalize=bool(normalize), eps=float(eps))


def _gt(gt_boxes, batch, like):
    """A list of per-image [G_b, 4] tensors -> the packed [G, 4] tensor and the B + 1 offsets."""
    if isinstance(gt_boxes, torch.Tensor):
        raise _C.KdlossError("kdloss_torch.detr.target_aware_feature_loss: argument 'gt_boxes' must be a list of B "
                             "[G_b, 4] pixel xyxy tensors (one per image), not one tensor")
    gt_boxes = list(gt_boxes)
    if len(gt_boxes) != batch:
        raise _C.KdlossError("kdloss_torch.detr.target_aware_feature_loss: argument 'gt_boxes' holds %d images but "
                             "'teacher_scores' has B = %d" % (len(gt_boxes), batch))
    offsets = [0]
    for g in gt_boxes:
        offsets.append(offsets[-1] + int(g.reshape(-1, 4).shape[0]) if g.numel() else offsets[-1])
    parts = [g.reshape(-1, 4).to(like.dtype) for g in gt_boxes if g.numel()]
    packed = torch.cat(parts) if parts else like.new_zeros((0, 4))
    return packed, offsets


def target_aware_feature_loss(teacher_scores, teacher_boxes, teacher_queries, gt_boxes, teacher_features,
                              student_features, topk=100, mask_min=0.01, norm_eps=1e-12, iou_eps=1e-6, weight=1.0):
    """kdloss::detr::target_aware_feature_loss (losses.md 4.3): sum over decoder layers k and levels l of
    MSE(Psi_kl * F^T_l, Psi_kl * F^S_l), Psi from the teacher's top-k (query, class) pairs (torch.topk's pairs on
    the tensors' device), quality score * max IoU with the image's ground truth (score alone without ground truth),
    cosine similarity with the channel-normalised teacher map, clamp(min=mask_min), divided by the per-image max.
    teacher_scores [K, B, Q, C] sigmoid scores; teacher_boxes [K, B, Q, 4] pixel xyxy; teacher_queries
    [K, B, Q, D]; gt_boxes: list of B [G_b, 4] pixel xyxy; teacher_features / student_features: lists of
    [B, D, H, W]. Gradient to the student maps only."""
    if teacher_scores.dim() == 3:  # one layer
        teacher_scores, teacher_boxes, teacher_queries = (x.unsqueeze(0) for x in (teacher_scores, teacher_boxes,
                                                                                   teacher_queries))
    packed, offsets = _gt(gt_boxes, teacher_scores.shape[1], teacher_scores)
    return _feature(teacher_scores, teacher_boxes, teacher_queries, packed, list(teacher_features),
                    list(student_features), gt_offsets=offsets, topk=int(topk), mask_min=float(mask_min),
                    norm_eps=float(norm_eps), iou_eps=float(iou_eps), weight=float(weight))


class ContrastiveQueryLoss(torch.nn.Module):
    """Module form of contrastive_query_loss (the code's MoCoCLHead loss without its projection MLPs)."""

    def __init__(self, temperature=0.07, weight=0.2, normalize=True, eps=1e-12):
        super().__init__()
        self.temperature, self.weight, self.normalize, self.eps = temperature, weight, normalize, eps

    def forward(self, teacher, student):
        return contrastive_query_loss(teacher, student, self.temperature, self.weight, self.normalize, self.eps)

    def extra_repr(self):
        return "temperature=%g, weight=%g, normalize=%s" % (self.temperature, self.weight, self.normalize)


class TargetAwareFeatureLoss(torch.nn.Module):
    """Module form of target_aware_feature_loss."""

    def __init__(self, topk=100, mask_min=0.01, norm_eps=1e-12, iou_eps=1e-6, weight=1.0):
        super().__init__()
        self.topk, self.mask_min, self.norm_eps, self.iou_eps, self.weight = topk, mask_min, norm_eps, iou_eps, weight

    def forward(self, teacher_scores, teacher_boxes, teacher_queries, gt_boxes, teacher_features, student_features):
        return target_aware_feature_loss(teacher_scores, teacher_boxes, teacher_queries, gt_boxes, teacher_features,
                                         student_features, self.topk, self.mask_min, self.norm_eps, self.iou_eps,
                                         self.weight)

    def extra_repr(self):
        return "topk=%d, mask_min=%g, weight=%g" % (self.topk, self.mask_min, self.weight)


LogitsDistillationOptions = _C.LogitsDistillationOptions
_logits = Loss(_C.detr_logits_distillation_loss, name="detr.logits_distillation_loss", value="out")


def logits_distillation_loss(student_logits, student_boxes, teacher_logits, teacher_boxes, sizes, class_weight=1.0,
                             l1_weight=5.0, giou_weight=2.0, giou_eps=1e-6, num_pos=0.0, split="none",
                             score_threshold=0.3, negative_class="background"):
    """kdloss::detr::logits_distillation_loss (losses.md 4.2): for every decoder layer, the teacher's predictions as
    pseudo-targets (sigmoid scores, boxes clamped to the image), DistillHungarianAssigner's cost (1 soft-BCE +
    5 L1 + 2 (-GIoU)), scipy's assignment, and soft-BCE / N_pos + 5 L1 / N' + 2 (1 - GIoU) / N' over all matched
    pairs; returns the sum over layers of the three terms (the code adds them with weight 1).
    student_logits [K, B, Q, C], student_boxes [K, B, Q, 4] and teacher_* [K, B, N, ...] (normalised cxcywh);
    sizes [B, 2] (height, width) of each image, same dtype. split="score_threshold": the seed's positive/negative
    form (negative_class: 'background', 'teacher_soft' or 'none'). Gradients to the student logits and boxes."""
    return _logits(student_logits, student_boxes, teacher_logits, teacher_boxes, sizes,
                   class_weight=float(class_weight), l1_weight=float(l1_weight), giou_weight=float(giou_weight),
                   giou_eps=float(giou_eps), num_pos=float(num_pos), split=split,
                   score_threshold=float(score_threshold), negative_class=negative_class)


class LogitsDistillationLoss(torch.nn.Module):
    """Module form of logits_distillation_loss (options as keywords)."""

    def __init__(self, **options):
        super().__init__()
        self.options = options

    def forward(self, student_logits, student_boxes, teacher_logits, teacher_boxes, sizes):
        return logits_distillation_loss(student_logits, student_boxes, teacher_logits, teacher_boxes, sizes,
                                        **self.options)


QueryPriorLossOptions = _C.QueryPriorLossOptions


class _QueryPrior(torch.autograd.Function):
    """One forward_backward call (upstream 1 for each term); backward scales the kept gradients."""

    @staticmethod
    def forward(ctx, logits, boxes, gt_boxes, sizes, labels, pred_rows, target_rows, layers, options):
        z, b = logits.detach(), boxes.detach()
        outs = [torch.empty((), dtype=z.dtype, device=z.device) for _ in range(3)]
        gz = torch.empty_like(z) if ctx.needs_input_grad[0] else None
        gb = torch.empty_like(b) if ctx.needs_input_grad[1] else None
        _C.detr_query_prior_loss(z, b, labels, gt_boxes.detach(), None if sizes is None else sizes.detach(), pred_rows,
                                 target_rows, layers, outs[0], outs[1], outs[2], gz, gb, options)
        ctx.save_for_backward(gz, gb)
        return outs[0] + outs[1] + outs[2]

    @staticmethod
    def backward(ctx, grad):
        gz, gb = ctx.saved_tensors
        return (None if gz is None else gz * grad, None if gb is None else gb * grad) + (None,) * 7


def _query_prior_pairs(indices, layers, batch, queries, gt_offsets):
    """indices[k][b] = (query_idx, gt_idx) per layer and image -> packed pred_rows (b * Q + q), target_rows
    (packed ground-truth rows) and the K + 1 layer offsets."""
    fn = "kdloss_torch.detr.query_prior_loss"
    indices = list(indices)
    if len(indices) != layers:
        raise _C.KdlossError("%s: argument 'indices' holds %d layers but 'logits' has K = %d" % (fn, len(indices), layers))
    pred, target, offsets = [], [], [0]
    for k, per_image in enumerate(indices):
        per_image = list(per_image)
        if len(per_image) != batch:
            raise _C.KdlossError("%s: argument 'indices' layer %d holds %d images but 'logits' has B = %d"
                                 % (fn, k, len(per_image), batch))
        n = 0
        for b, (q, j) in enumerate(per_image):
            q = torch.as_tensor(q, dtype=torch.int64).reshape(-1)
            j = torch.as_tensor(j, dtype=torch.int64).reshape(-1)
            if q.numel() != j.numel():
                raise _C.KdlossError("%s: argument 'indices' layer %d image %d pairs %d queries with %d targets"
                                     % (fn, k, b, q.numel(), j.numel()))
            pred.append(q + b * queries)
            target.append(j + gt_offsets[b])
            n += q.numel()
        offsets.append(offsets[-1] + n)
    empty = torch.zeros(0, dtype=torch.int64)
    return torch.cat(pred + [empty]).contiguous(), torch.cat(target + [empty]).contiguous(), offsets


def query_prior_loss(logits, boxes, gt_labels, gt_boxes, indices, sizes=None, class_weight=2.0, alpha=0.25, gamma=2.0,
                     l1_weight=5.0, giou_weight=2.0, giou_eps=1e-6, num_pos=0.0):
    """kdloss::detr::query_prior_loss (losses.md 4.4): the Deformable-DETR (mmdet) detection loss of the student's
    decoding of the teacher's queries under a GIVEN assignment, summed over the K decoder layers:
    class_weight * focal(alpha, gamma) over every query and class (one-hot of the matched label, else 0) +
    l1_weight * L1 + giou_weight * (1 - GIoU) over the matched pairs, each / (max(N', 1) + float32 eps), N' =
    num_pos (mmdet's reduce_mean'ed count) or, when num_pos <= 0, the layer's matched pairs.
    logits [K, B, Q, C] and boxes [K, B, Q, 4] (normalised cxcywh; [B, Q, ...] for one layer); gt_labels / gt_boxes:
    lists of B per-image int64 [G_b] labels and normalised cxcywh [G_b, 4] boxes; indices[k][b] = (query_idx,
    gt_idx), the teacher's matcher output per layer (for one layer: indices[b]); sizes [B, 2] (height, width):
    the GIoU in pixels as mmdet (None: normalised). Returns the sum of the three terms; gradients to logits and
    boxes."""
    if logits.dim() == 3:  # one layer
        logits, boxes, indices = logits.unsqueeze(0), boxes.unsqueeze(0), [indices]
    K, B, Q = logits.shape[0], logits.shape[1], logits.shape[2]
    packed, offsets = _gt(gt_boxes, B, logits)
    gt_labels = list(gt_labels)
    if len(gt_labels) != B:
        raise _C.KdlossError("kdloss_torch.detr.query_prior_loss: argument 'gt_labels' holds %d images but 'logits' "
                             "has B = %d" % (len(gt_labels), B))
    labels = torch.cat([torch.as_tensor(x, dtype=torch.int64).reshape(-1) for x in gt_labels] +
                       [torch.zeros(0, dtype=torch.int64)]).contiguous()
    pred_rows, target_rows, layers = _query_prior_pairs(indices, K, B, Q, offsets)
    options = QueryPriorLossOptions(class_weight=float(class_weight), alpha=float(alpha), gamma=float(gamma),
                                    l1_weight=float(l1_weight), giou_weight=float(giou_weight),
                                    giou_eps=float(giou_eps), num_pos=float(num_pos))
    return _QueryPrior.apply(logits, boxes, packed, sizes, labels, pred_rows, target_rows, layers, options)


class QueryPriorLoss(torch.nn.Module):
    """Module form of query_prior_loss (options as keywords)."""

    def __init__(self, **options):
        super().__init__()
        self.options = options

    def forward(self, logits, boxes, gt_labels, gt_boxes, indices, sizes=None):
        return query_prior_loss(logits, boxes, gt_labels, gt_boxes, indices, sizes, **self.options)
