"""SSIM losses (kdloss/losses/ssim, docs/losses/ssim.md).

kornia-compatible:
    ssim(img1, img2, window_size, max_val=1.0, eps=1e-12, padding="same")          # kornia.metrics.ssim (map)
    ssim_loss(student, teacher, window_size=11, max_val=1.0, eps=1e-12, reduction="mean", padding="same")
                                                                                     # kornia.losses.ssim_loss
    plus the thesis' options (keyword-only): sigma, k1, k2, alpha, beta, gamma, normalize (nu), clamp,
    three_component; padding also takes "zeros" ("same" = "reflect").
The thesis' equation 1 (the sum over pyramid levels r of each level's mean SSIM loss):
    ssim_pyramid_loss(students, teachers, window_size=11, max_val=1.0, eps=1e-12, padding="same", **options)
        = sum(ssim_loss(s, t, window_size, max_val, eps, "mean", padding, **options) for s, t in levels)
pytorch-msssim-compatible:
    ssim_index(X, Y, data_range=255, size_average=True, win_size=11, win_sigma=1.5, K=(0.01, 0.03),
               nonnegative_ssim=False)                                               # pytorch_msssim.ssim
    ms_ssim(X, Y, data_range=255, size_average=True, win_size=11, win_sigma=1.5, weights=None, K=(0.01, 0.03))
                                                                                     # pytorch_msssim.ms_ssim
    (keyword-only: reduction "mean" / "per_image" / "none" overrides size_average; normalize)
The thesis' table 7 mixture:
    ms_ssim_l1_loss(student, teacher, l1_weight=0.15, data_range=1.0, win_size=11, ...)
        = l1_weight * mean|s - t| + (1 - l1_weight) * (1 - MS-SSIM)

Gradients: both arguments of ssim, ssim_loss, ssim_index and ms_ssim get one (the C++ API offers the
teacher gradient); the teacher of ms_ssim_l1_loss and the teachers of ssim_pyramid_loss get None
(kdloss::ms_ssim_l1_loss and kdloss::ssim_pyramid_loss have no teacher gradient; a warning says so once).
Documented deviations from the peers (docs/losses/ssim.md): local variances are clamped at zero; where
pytorch-msssim's autograd gives inf/NaN (relu'd values at 0), kdloss gives 0; ms_ssim asserts no minimum
size (an axis shorter than the window is not smoothed); ssim_loss and ssim_pyramid_loss keep reflecting
where the reflect pad is not smaller than the map (numpy.pad 'reflect'; kornia / F.pad refuse such maps).
"""

import torch

from . import _C, _common
from ._function import Loss

# Error messages name arguments as these functions do (kdloss_torch._common.python_names).
_MSSSIM = dict(window_size="win_size", sigma="win_sigma", k1="K[0]", k2="K[1]")  # pytorch-msssim's options
_MSSSIM_XY = dict(_MSSSIM, student="X", teacher="Y", grad_student="grad_X", grad_teacher="grad_Y")

__all__ = ["ssim", "ssim_loss", "ssim_pyramid_loss", "ssim_index", "ms_ssim", "ms_ssim_l1_loss", "SSIM", "SSIMLoss",
           "SSIMPyramidLoss", "SSIMIndex", "MS_SSIM", "MSSSIML1Loss"]

_DEFAULT_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _padding(padding):
    p = str(padding).lower()
    return "reflect" if p == "same" else p


# The generic Function over each binding (python/csrc/ssim.py). The fused entries give the gradient of
# a one-element value: a map (ssim, reduction none) weights every output differently, and ssim_index /
# ms_ssim fuse d/d student only.
_ssim_loss = Loss(_C.ssim_ssim_loss, fuse=lambda o, want: o["reduction"] != "none")
_ssim_map = Loss(_C.ssim_ssim_map, fuse=False)
_ssim_pyramid = Loss(_C.ssim_ssim_pyramid_loss)
_fuse_index = lambda o, want: o["reduction"] == "mean" and "grad_teacher" not in want  # noqa: E731
_ssim_index = Loss(_C.ssim_ssim_index, fuse=_fuse_index)
_ms_ssim = Loss(_C.ssim_ms_ssim, fuse=_fuse_index)
_ms_ssim_l1 = Loss(_C.ssim_ms_ssim_l1_loss)


def _ssim_opts(window_size, sigma, max_val, k1, k2, alpha, beta, gamma, eps, padding, clamp, normalize,
               three_component):
    return dict(window_size=int(window_size), sigma=float(sigma), max_val=float(max_val), k1=float(k1), k2=float(k2),
                alpha=float(alpha), beta=float(beta), gamma=float(gamma), eps=float(eps), padding=_padding(padding),
                clamp=bool(clamp), normalize=bool(normalize), three_component=bool(three_component))


@_common.python_names(student="img1", teacher="img2", grad_student="grad_img1", grad_teacher="grad_img2")
def ssim(img1, img2, window_size, max_val=1.0, eps=1e-12, padding="same", *, sigma=1.5, k1=0.01, k2=0.03,
         alpha=1.0, beta=1.0, gamma=1.0, normalize=False, three_component=False):
    """kdloss::ssim_map: the SSIM map [B, C, Ho, Wo], as kornia.metrics.ssim(img1, img2, window_size, max_val,
    eps, padding) (local variances clamped at 0). Both inputs get a gradient."""
    opts = _ssim_opts(window_size, sigma, max_val, k1, k2, alpha, beta, gamma, eps, padding, True, normalize,
                      three_component)
    return _ssim_map(img1, img2, **opts)


def ssim_loss(student, teacher, window_size=11, max_val=1.0, eps=1e-12, reduction="mean", padding="same", *,
              sigma=1.5, k1=0.01, k2=0.03, alpha=1.0, beta=1.0, gamma=1.0, normalize=False, clamp=True,
              three_component=False):
    """kdloss::ssim_loss: clamp((1 - S) / 2, 0, 1) reduced (mean over every pixel, sum or none), as
    kornia.losses.ssim_loss; thesis eq. 4 with alpha/beta/gamma, nu (normalize) and clamp=False.
    Student and teacher get a gradient."""
    opts = _ssim_opts(window_size, sigma, max_val, k1, k2, alpha, beta, gamma, eps, padding, clamp, normalize,
                      three_component)
    return _ssim_loss(student, teacher, reduction=reduction, **opts)


def _levels(name, levels):
    if isinstance(levels, torch.Tensor):
        raise _C.KdlossError("kdloss_torch.ssim_pyramid_loss: argument '%s' must be a sequence of [B, C, H, W] "
                             "tensors, one per pyramid level, but is a torch.Tensor; pass [tensor] for one level"
                             % name)
    try:
        return list(levels)
    except TypeError:
        raise _C.KdlossError("kdloss_torch.ssim_pyramid_loss: argument '%s' must be a sequence of [B, C, H, W] "
                             "tensors, one per pyramid level, but is %s" % (name, type(levels).__name__)) from None


def ssim_pyramid_loss(students, teachers, window_size=11, max_val=1.0, eps=1e-12, padding="same", *, sigma=1.5,
                      k1=0.01, k2=0.03, alpha=1.0, beta=1.0, gamma=1.0, normalize=False, clamp=True,
                      three_component=False):
    """kdloss::ssim_pyramid_loss, the thesis' equation 1: the sum over pyramid levels r of the level's mean SSIM
    loss, sum_r mean(clamp((1 - S_r) / 2, 0, 1)) = sum_r ssim_loss(students[r], teachers[r], ..., reduction="mean").
    students / teachers: sequences of [B, C, H, W] tensors, one pair per level (shapes may differ between levels,
    dtype and device may not). Options as ssim_loss. Every student level gets a gradient; the teachers get None."""
    students, teachers = _levels("students", students), _levels("teachers", teachers)
    if len(students) != len(teachers):
        raise _C.KdlossError("kdloss_torch.ssim_pyramid_loss: arguments 'students' and 'teachers' must have one tensor "
                             "per level but have %d student levels and %d teacher levels"
                             % (len(students), len(teachers)))
    opts = _ssim_opts(window_size, sigma, max_val, k1, k2, alpha, beta, gamma, eps, padding, clamp, normalize,
                      three_component)
    return _ssim_pyramid(students, teachers, **opts)


def _ms_opts(win_size, win_sigma, data_range, K, nonnegative_ssim, weights, normalize):
    k1, k2 = K
    w = _DEFAULT_WEIGHTS if weights is None else weights
    if isinstance(w, torch.Tensor):
        w = w.detach().cpu().tolist()
    return dict(window_size=int(win_size), sigma=float(win_sigma), data_range=float(data_range), k1=float(k1),
                k2=float(k2), nonnegative_ssim=bool(nonnegative_ssim), weights=[float(v) for v in w],
                normalize=bool(normalize))


def _channel_reduction(size_average, reduction):
    if reduction is not None:
        return reduction
    return "mean" if size_average else "per_image"


@_common.python_names(**_MSSSIM_XY)
def ssim_index(X, Y, data_range=255, size_average=True, win_size=11, win_sigma=1.5, K=(0.01, 0.03),
               nonnegative_ssim=False, *, reduction=None, normalize=False):
    """kdloss::ssim_index, as pytorch_msssim.ssim(X, Y, data_range, size_average, win_size, win_sigma, K=K,
    nonnegative_ssim=...): one value (size_average) or [B]; reduction="none" gives [B, C]. X and Y get a
    gradient."""
    opts = _ms_opts(win_size, win_sigma, data_range, K, nonnegative_ssim, None, normalize)
    return _ssim_index(X, Y, reduction=_channel_reduction(size_average, reduction), **opts)


@_common.python_names(**_MSSSIM_XY)
def ms_ssim(X, Y, data_range=255, size_average=True, win_size=11, win_sigma=1.5, weights=None, K=(0.01, 0.03), *,
            reduction=None, normalize=False):
    """kdloss::ms_ssim, as pytorch_msssim.ms_ssim(X, Y, data_range, size_average, win_size, win_sigma, weights, K)
    (no minimum size asserted; gradient 0 where a relu'd level value is 0). X and Y get a gradient."""
    opts = _ms_opts(win_size, win_sigma, data_range, K, False, weights, normalize)
    return _ms_ssim(X, Y, reduction=_channel_reduction(size_average, reduction), **opts)


@_common.python_names(**_MSSSIM)
def ms_ssim_l1_loss(student, teacher, l1_weight=0.15, data_range=1.0, win_size=11, win_sigma=1.5, weights=None,
                    K=(0.01, 0.03), *, normalize=False):
    """kdloss::ms_ssim_l1_loss: l1_weight * mean|s - t| + (1 - l1_weight) * (1 - ms_ssim(s, t)) (thesis table 7).
    The teacher gets no gradient (None)."""
    opts = _ms_opts(win_size, win_sigma, data_range, K, False, weights, normalize)
    return _ms_ssim_l1(student, teacher, ms_ssim=opts, l1_weight=float(l1_weight))


class SSIM(torch.nn.Module):
    """kdloss_torch.ssim.ssim as a module (kornia.metrics.SSIM): SSIM(window_size, max_val=1.0, eps=1e-12,
    padding="same", **thesis_options)(img1, img2) -> map."""

    def __init__(self, window_size, max_val=1.0, eps=1e-12, padding="same", **options):
        super().__init__()
        self.window_size, self.max_val, self.eps, self.padding, self.options = window_size, max_val, eps, padding, options

    def forward(self, img1, img2):
        return ssim(img1, img2, self.window_size, self.max_val, self.eps, self.padding, **self.options)

    def extra_repr(self):
        return "window_size=%d, max_val=%g, eps=%g, padding=%r%s" % (
            self.window_size, self.max_val, self.eps, self.padding,
            "".join(", %s=%r" % kv for kv in sorted(self.options.items())))


class SSIMLoss(torch.nn.Module):
    """kdloss_torch.ssim.ssim_loss as a module (kornia.losses.SSIMLoss): SSIMLoss(window_size=11, max_val=1.0,
    eps=1e-12, reduction="mean", padding="same", **thesis_options)(student, teacher)."""

    def __init__(self, window_size=11, max_val=1.0, eps=1e-12, reduction="mean", padding="same", **options):
        super().__init__()
        self.window_size, self.max_val, self.eps = window_size, max_val, eps
        self.reduction, self.padding, self.options = reduction, padding, options

    def forward(self, student, teacher):
        return ssim_loss(student, teacher, self.window_size, self.max_val, self.eps, self.reduction, self.padding,
                         **self.options)

    def extra_repr(self):
        return "window_size=%d, max_val=%g, eps=%g, reduction=%r, padding=%r%s" % (
            self.window_size, self.max_val, self.eps, self.reduction, self.padding,
            "".join(", %s=%r" % kv for kv in sorted(self.options.items())))


class SSIMPyramidLoss(torch.nn.Module):
    """kdloss_torch.ssim.ssim_pyramid_loss as a module: SSIMPyramidLoss(window_size=11, max_val=1.0, eps=1e-12,
    padding="same", **thesis_options)(students, teachers), students / teachers one tensor per pyramid level."""

    def __init__(self, window_size=11, max_val=1.0, eps=1e-12, padding="same", **options):
        super().__init__()
        self.window_size, self.max_val, self.eps = window_size, max_val, eps
        self.padding, self.options = padding, options

    def forward(self, students, teachers):
        return ssim_pyramid_loss(students, teachers, self.window_size, self.max_val, self.eps, self.padding,
                                 **self.options)

    def extra_repr(self):
        return "window_size=%d, max_val=%g, eps=%g, padding=%r%s" % (
            self.window_size, self.max_val, self.eps, self.padding,
            "".join(", %s=%r" % kv for kv in sorted(self.options.items())))


class SSIMIndex(torch.nn.Module):
    """kdloss_torch.ssim.ssim_index as a module (pytorch_msssim.SSIM without channel / spatial_dims)."""

    def __init__(self, data_range=255, size_average=True, win_size=11, win_sigma=1.5, K=(0.01, 0.03),
                 nonnegative_ssim=False, reduction=None, normalize=False):
        super().__init__()
        self.kwargs = dict(data_range=data_range, size_average=size_average, win_size=win_size, win_sigma=win_sigma,
                           K=tuple(K), nonnegative_ssim=nonnegative_ssim, reduction=reduction, normalize=normalize)

    def forward(self, X, Y):
        return ssim_index(X, Y, **self.kwargs)

    def extra_repr(self):
        return ", ".join("%s=%r" % kv for kv in self.kwargs.items())


class MS_SSIM(torch.nn.Module):  # noqa: N801 (pytorch-msssim's name)
    """kdloss_torch.ssim.ms_ssim as a module (pytorch_msssim.MS_SSIM without channel / spatial_dims)."""

    def __init__(self, data_range=255, size_average=True, win_size=11, win_sigma=1.5, weights=None,
                 K=(0.01, 0.03), reduction=None, normalize=False):
        super().__init__()
        self.kwargs = dict(data_range=data_range, size_average=size_average, win_size=win_size, win_sigma=win_sigma,
                           weights=None if weights is None else [float(w) for w in weights], K=tuple(K),
                           reduction=reduction, normalize=normalize)

    def forward(self, X, Y):
        return ms_ssim(X, Y, **self.kwargs)

    def extra_repr(self):
        return ", ".join("%s=%r" % kv for kv in self.kwargs.items())


class MSSSIML1Loss(torch.nn.Module):
    """kdloss_torch.ssim.ms_ssim_l1_loss as a module: MSSSIML1Loss(l1_weight=0.15, data_range=1.0, win_size=11,
    ...)(student, teacher)."""

    def __init__(self, l1_weight=0.15, data_range=1.0, win_size=11, win_sigma=1.5, weights=None, K=(0.01, 0.03),
                 normalize=False):
        super().__init__()
        self.kwargs = dict(l1_weight=l1_weight, data_range=data_range, win_size=win_size, win_sigma=win_sigma,
                           weights=None if weights is None else [float(w) for w in weights], K=tuple(K),
                           normalize=normalize)

    def forward(self, student, teacher):
        return ms_ssim_l1_loss(student, teacher, **self.kwargs)

    def extra_repr(self):
        return ", ".join("%s=%r" % kv for kv in self.kwargs.items())
