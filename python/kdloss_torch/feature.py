"""Feature losses (kdloss/losses/feature): MSE, L1, smooth-L1, Frobenius distance, temperature KL.

Each function has the options and defaults of its C++ entry point and gives the student a gradient;
the teacher gets none (None). Any strides work (no copies); float32/float64 on CPU and CUDA, and
float16/bfloat16 on CUDA in a CUDA build.
"""

import torch

from . import _C
from ._function import Loss

__all__ = ["mse_loss", "l1_loss", "smooth_l1_loss", "distance_loss", "kl_div_loss",
           "MSELoss", "L1Loss", "SmoothL1Loss", "DistanceLoss", "KLDivLoss"]

# The generic Function over each binding (python/csrc/feature.cpp). Pointwise losses fuse for every
# reduction (their gradient is elementwise, so a map grad_output scales it exactly); KL's gradient
# couples the classes of a row, so reduction none runs the backward entry with grad_output as a map.
_mse = Loss(_C.feature_mse_loss)
_l1 = Loss(_C.feature_l1_loss)
_smooth_l1 = Loss(_C.feature_smooth_l1_loss)
_distance = Loss(_C.feature_distance_loss)
_kl_div = Loss(_C.feature_kl_div_loss, fuse=lambda o, want: o["reduction"] != "none")


def mse_loss(student, teacher, reduction="mean"):
    """kdloss::mse_loss: mean/sum/none of (student - teacher)^2, as F.mse_loss."""
    return _mse(student, teacher, reduction=reduction)


def l1_loss(student, teacher, reduction="mean"):
    """kdloss::l1_loss: |student - teacher| reduced, as F.l1_loss (gradient sign, 0 at equality)."""
    return _l1(student, teacher, reduction=reduction)


def smooth_l1_loss(student, teacher, beta=1.0, reduction="mean"):
    """kdloss::smooth_l1_loss (argument order of the C++ API: beta, then reduction), as
    F.smooth_l1_loss(student, teacher, reduction=reduction, beta=beta); beta = 0 is L1."""
    return _smooth_l1(student, teacher, beta=float(beta), reduction=reduction)


def distance_loss(student, teacher):
    """kdloss::distance_loss: ||student - teacher||_F over the whole tensor, as torch.dist(student,
    teacher) (gradient 0 at distance 0)."""
    return _distance(student, teacher)


def kl_div_loss(student_logits, teacher_logits, class_axis, temperature=1.0, reduction="batchmean"):
    """kdloss::kl_div_loss: F.kl_div(F.log_softmax(s / T, class_axis), F.softmax(t / T, class_axis),
    reduction=reduction) * T * T. class_axis in [0, rank) (as the C++ API: no negative axes)."""
    return _kl_div(student_logits, teacher_logits, class_axis=int(class_axis), temperature=float(temperature),
                   reduction=reduction)


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
