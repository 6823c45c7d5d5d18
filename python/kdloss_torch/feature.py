"""Feature losses (kdloss/losses/feature): MSE, L1, smooth-L1, Frobenius distance, temperature KL.

Each function has the options and defaults of its C++ entry point and gives the student a gradient;
the teacher gets none (None). Any strides work (no copies); float32/float64 on CPU and CUDA, and
float16/bfloat16 on CUDA in a CUDA build.
"""

import torch
from torch.autograd.function import once_differentiable

from . import _C, _common, _function
from ._common import BACKWARD, FORWARD, FUSED

__all__ = ["mse_loss", "l1_loss", "smooth_l1_loss", "distance_loss", "kl_div_loss",
           "MSELoss", "L1Loss", "SmoothL1Loss", "DistanceLoss", "KLDivLoss"]


class _Pointwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kind, student, teacher, beta, reduction):
        ctx.kind, ctx.beta, ctx.reduction = kind, beta, reduction
        if not ctx.needs_input_grad[1]:
            return _C.feature_pointwise(kind, FORWARD, student, teacher, None, beta, reduction)[0]
        ctx.save_for_backward(student, teacher)
        if _common.fused():
            out, grad = _C.feature_pointwise(kind, FUSED, student, teacher, None, beta, reduction)
            # reduction none: the loss is elementwise, so the map-sum gradient times grad_output
            # elementwise is exact
            _common.keep(ctx, [grad])
            return out
        return _C.feature_pointwise(kind, FORWARD, student, teacher, None, beta, reduction)[0]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grads = _common.take(ctx, grad_output)
        if grads is None:
            student, teacher = ctx.saved_tensors
            grads = [_C.feature_pointwise(ctx.kind, BACKWARD, student, teacher, grad_output, ctx.beta,
                                          ctx.reduction)[1]]
        return None, grads[0], None, None, None


def mse_loss(student, teacher, reduction="mean"):
    """kdloss::mse_loss: mean/sum/none of (student - teacher)^2, as F.mse_loss."""
    _common.teacher_gets_no_grad("mse_loss", "teacher", teacher)
    return _Pointwise.apply("mse", student, teacher, 1.0, reduction)


def l1_loss(student, teacher, reduction="mean"):
    """kdloss::l1_loss: |student - teacher| reduced, as F.l1_loss (gradient sign, 0 at equality)."""
    _common.teacher_gets_no_grad("l1_loss", "teacher", teacher)
    return _Pointwise.apply("l1", student, teacher, 1.0, reduction)


def smooth_l1_loss(student, teacher, beta=1.0, reduction="mean"):
    """kdloss::smooth_l1_loss (argument order of the C++ API: beta, then reduction), as
    F.smooth_l1_loss(student, teacher, reduction=reduction, beta=beta); beta = 0 is L1."""
    _common.teacher_gets_no_grad("smooth_l1_loss", "teacher", teacher)
    return _Pointwise.apply("smooth_l1", student, teacher, float(beta), reduction)


def distance_loss(student, teacher):
    """kdloss::distance_loss: ||student - teacher||_F over the whole tensor, as torch.dist(student,
    teacher) (gradient 0 at distance 0)."""
    return _distance(student, teacher)


_distance = _function.Loss(_C.feature_distance_loss)  # the generic binding (python/README.md)


class _KLDiv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher, class_axis, temperature, reduction):
        ctx.class_axis, ctx.temperature, ctx.reduction = class_axis, temperature, reduction
        if not ctx.needs_input_grad[0]:
            return _C.feature_kl_div(FORWARD, student, teacher, class_axis, None, temperature, reduction)[0]
        ctx.save_for_backward(student, teacher)
        # reduction none: the gradient couples the classes of a row through grad_output, so the
        # backward always runs the C++ backward entry with grad_output as a map.
        if _common.fused() and reduction != "none":
            out, grad = _C.feature_kl_div(FUSED, student, teacher, class_axis, None, temperature, reduction)
            _common.keep(ctx, [grad])
            return out
        return _C.feature_kl_div(FORWARD, student, teacher, class_axis, None, temperature, reduction)[0]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grads = _common.take(ctx, grad_output)
        if grads is None:
            student, teacher = ctx.saved_tensors
            grads = [_C.feature_kl_div(BACKWARD, student, teacher, ctx.class_axis, grad_output, ctx.temperature,
                                       ctx.reduction)[1]]
        return grads[0], None, None, None, None


def kl_div_loss(student_logits, teacher_logits, class_axis, temperature=1.0, reduction="batchmean"):
    """kdloss::kl_div_loss: F.kl_div(F.log_softmax(s / T, class_axis), F.softmax(t / T, class_axis),
    reduction=reduction) * T * T. class_axis in [0, rank) (as the C++ API: no negative axes)."""
    _common.teacher_gets_no_grad("kl_div_loss", "teacher_logits", teacher_logits)
    return _KLDiv.apply(student_logits, teacher_logits, int(class_axis), float(temperature), reduction)


class MSELoss(torch.nn.Module):
    """kdloss_torch.mse_loss as a module: MSELoss(reduction="mean")(student, teacher)."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, student, teacher):
        return mse_loss(student, teacher, self.reduction)

    def extra_repr(self):
        return "reduction=%r" % self.reduction


class L1Loss(MSELoss):
    """kdloss_torch.l1_loss as a module: L1Loss(reduction="mean")(student, teacher)."""

    def forward(self, student, teacher):
        return l1_loss(student, teacher, self.reduction)


class SmoothL1Loss(torch.nn.Module):
    """kdloss_torch.smooth_l1_loss as a module: SmoothL1Loss(beta=1.0, reduction="mean")."""

    def __init__(self, beta=1.0, reduction="mean"):
        super().__init__()
        self.beta, self.reduction = float(beta), reduction

    def forward(self, student, teacher):
        return smooth_l1_loss(student, teacher, self.beta, self.reduction)

    def extra_repr(self):
        return "beta=%g, reduction=%r" % (self.beta, self.reduction)


class DistanceLoss(torch.nn.Module):
    """kdloss_torch.distance_loss as a module (torch.dist between student and teacher)."""

    def forward(self, student, teacher):
        return distance_loss(student, teacher)


class KLDivLoss(torch.nn.Module):
    """kdloss_torch.kl_div_loss as a module: KLDivLoss(class_axis, temperature=1.0, reduction="batchmean")."""

    def __init__(self, class_axis, temperature=1.0, reduction="batchmean"):
        super().__init__()
        self.class_axis, self.temperature, self.reduction = int(class_axis), float(temperature), reduction

    def forward(self, student_logits, teacher_logits):
        return kl_div_loss(student_logits, teacher_logits, self.class_axis, self.temperature, self.reduction)

    def extra_repr(self):
        return "class_axis=%d, temperature=%g, reduction=%r" % (self.class_axis, self.temperature, self.reduction)
