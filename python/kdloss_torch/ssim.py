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
from torch.autograd.function import once_differentiable

from . import _C, _common
from ._common import BACKWARD, FORWARD, FUSED

# Error messages name arguments as these functions do (kdloss_torch._common.python_names).
_MSSSIM = dict(window_size="win_size", sigma="win_sigma", k1="K[0]", k2="K[1]")  # pytorch-msssim's options
_MSSSIM_XY = dict(_MSSSIM, student="X", teacher="Y", grad_student="grad_X", grad_teacher="grad_Y")

__all__ = ["ssim", "ssim_loss", "ssim_pyramid_loss", "ssim_index", "ms_ssim", "ms_ssim_l1_loss", "SSIM", "SSIMLoss",
           "SSIMPyramidLoss", "SSIMIndex", "MS_SSIM", "MSSSIML1Loss"]

_DEFAULT_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _padding(padding):
    p = str(padding).lower()
    return "reflect" if p == "same" else p


class _Ssim(torch.autograd.Function):
    """kind "loss" (ssim_loss) or "map" (ssim_map); opts = the SsimOptions tuple of _C.ssim_ssim."""

    @staticmethod
    def forward(ctx, kind, student, teacher, opts, reduction):
        ctx.kind, ctx.opts, ctx.reduction = kind, opts, reduction
        want_s, want_t = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if not (want_s or want_t):
            return _C.ssim_ssim(kind, FORWARD, student, teacher, None, False, False, *opts, reduction)[0]
        ctx.save_for_backward(student, teacher)
        # reduction none / the map: grad_output weights every output differently, so the backward
        # runs the C++ backward entry with grad_output as a map.
        if _common.fused() and kind == "loss" and reduction != "none":
            out, gs, gt = _C.ssim_ssim(kind, FUSED, student, teacher, None, True, want_t, *opts, reduction)
            _common.keep(ctx, [gs if want_s else None, gt])
            return out
        return _C.ssim_ssim(kind, FORWARD, student, teacher, None, False, False, *opts, reduction)[0]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grads = _common.take(ctx, grad_output)
        if grads is None:
            student, teacher = ctx.saved_tensors
            _, gs, gt = _C.ssim_ssim(ctx.kind, BACKWARD, student, teacher, grad_output, ctx.needs_input_grad[1],
                                     ctx.needs_input_grad[2], *ctx.opts, ctx.reduction)
            grads = [gs, gt]
        return None, grads[0], grads[1], None, None


def _ssim_opts(window_size, sigma, max_val, k1, k2, alpha, beta, gamma, eps, padding, clamp, normalize,
               three_component):
    return (int(window_size), float(sigma), float(max_val), float(k1), float(k2), float(alpha), float(beta),
            float(gamma), float(eps), _padding(padding), bool(clamp), bool(normalize), bool(three_component))


@_common.python_names(student="img1", teacher="img2", grad_student="grad_img1", grad_teacher="grad_img2")
def ssim(img1, img2, window_size, max_val=1.0, eps=1e-12, padding="same", *, sigma=1.5, k1=0.01, k2=0.03,
         alpha=1.0, beta=1.0, gamma=1.0, normalize=False, three_component=False):
    """kdloss::ssim_map: the SSIM map [B, C, Ho, Wo], as kornia.metrics.ssim(img1, img2, window_size, max_val,
    eps, padding) (local variances clamped at 0). Both inputs get a gradient."""
    opts = _ssim_opts(window_size, sigma, max_val, k1, k2, alpha, beta, gamma, eps, padding, True, normalize,
                      three_component)
    return _Ssim.apply("map", img1, img2, opts, "none")


def ssim_loss(student, teacher, window_size=11, max_val=1.0, eps=1e-12, reduction="mean", padding="same", *,
              sigma=1.5, k1=0.01, k2=0.03, alpha=1.0, beta=1.0, gamma=1.0, normalize=False, clamp=True,
              three_component=False):
    """kdloss::ssim_loss: clamp((1 - S) / 2, 0, 1) reduced (mean over every pixel, sum or none), as
    kornia.losses.ssim_loss; thesis eq. 4 with alpha/beta/gamma, nu (normalize) and clamp=False.
    Student and teacher get a gradient."""
    opts = _ssim_opts(window_size, sigma, max_val, k1, k2, alpha, beta, gamma, eps, padding, clamp, normalize,
                      three_component)
    return _Ssim.apply("loss", student, teacher, opts, reduction)


class _SsimPyramid(torch.autograd.Function):
    """ssim_pyramid_loss: apply(opts, n, *students, *teachers) -> one value. Every student level gets a
    gradient (the C++ entries compute all levels at once); the teachers get None."""

    @staticmethod
    def forward(ctx, opts, n, *levels):
        students, teachers = levels[:n], levels[n:]
        ctx.opts, ctx.n, ctx.n_teachers = opts, n, len(teachers)
        want = ctx.needs_input_grad[2:2 + n]
        if not any(want):
            return _C.ssim_pyramid(FORWARD, students, teachers, None, *opts)[0]
        ctx.want = want
        ctx.save_for_backward(*levels)
        if _common.fused():
            out, grads = _C.ssim_pyramid(FUSED, students, teachers, None, *opts)
            _common.keep(ctx, [g if w else None for g, w in zip(grads, want)])
            return out
        return _C.ssim_pyramid(FORWARD, students, teachers, None, *opts)[0]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grads = _common.take(ctx, grad_output)
        if grads is None:
            levels = ctx.saved_tensors
            _, gs = _C.ssim_pyramid(BACKWARD, levels[:ctx.n], levels[ctx.n:], grad_output, *ctx.opts)
            grads = [g if w else None for g, w in zip(gs, ctx.want)]
        return (None, None) + tuple(grads) + (None,) * ctx.n_teachers


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
    for t in teachers:
        if isinstance(t, torch.Tensor) and t.requires_grad:
            _common.teacher_gets_no_grad("ssim_pyramid_loss", "teachers", t)
            break
    opts = _ssim_opts(window_size, sigma, max_val, k1, k2, alpha, beta, gamma, eps, padding, clamp, normalize,
                      three_component)
    return _SsimPyramid.apply(opts, len(students), *students, *teachers)


class _Ms(torch.autograd.Function):
    """kind "index" (ssim_index), "ms" (ms_ssim) or "mixture" (ms_ssim_l1_loss)."""

    @staticmethod
    def forward(ctx, kind, x, y, opts, reduction):
        ctx.kind, ctx.opts, ctx.reduction = kind, opts, reduction
        want_s, want_t = ctx.needs_input_grad[1], ctx.needs_input_grad[2] and kind != "mixture"
        ctx.want_t = want_t
        if not (want_s or want_t):
            return _C.ssim_ms(kind, FORWARD, x, y, None, False, False, *opts, reduction)[0]
        ctx.save_for_backward(x, y)
        # the fused entries give d/d student only, for a one-element output
        if _common.fused() and reduction == "mean" and not want_t:
            out, gs, _ = _C.ssim_ms(kind, FUSED, x, y, None, True, False, *opts, reduction)
            _common.keep(ctx, [gs])
            return out
        return _C.ssim_ms(kind, FORWARD, x, y, None, False, False, *opts, reduction)[0]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grads = _common.take(ctx, grad_output)
        if grads is None:
            x, y = ctx.saved_tensors
            _, gs, gt = _C.ssim_ms(ctx.kind, BACKWARD, x, y, grad_output, ctx.needs_input_grad[1], ctx.want_t,
                                   *ctx.opts, ctx.reduction)
            grads = [gs, gt]
        else:
            grads = grads + [None]
        return None, grads[0], grads[1], None, None


def _ms_opts(win_size, win_sigma, data_range, K, nonnegative_ssim, weights, normalize, l1_weight):
    k1, k2 = K
    w = _DEFAULT_WEIGHTS if weights is None else weights
    if isinstance(w, torch.Tensor):
        w = w.detach().cpu().tolist()
    return (int(win_size), float(win_sigma), float(data_range), float(k1), float(k2), bool(nonnegative_ssim),
            [float(v) for v in w], bool(normalize), float(l1_weight))


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
    opts = _ms_opts(win_size, win_sigma, data_range, K, nonnegative_ssim, None, normalize, 0.0)
    return _Ms.apply("index", X, Y, opts, _channel_reduction(size_average, reduction))


@_common.python_names(**_MSSSIM_XY)
def ms_ssim(X, Y, data_range=255, size_average=True, win_size=11, win_sigma=1.5, weights=None, K=(0.01, 0.03), *,
            reduction=None, normalize=False):
    """kdloss::ms_ssim, as pytorch_msssim.ms_ssim(X, Y, data_range, size_average, win_size, win_sigma, weights, K)
    (no minimum size asserted; gradient 0 where a relu'd level value is 0). X and Y get a gradient."""
    opts = _ms_opts(win_size, win_sigma, data_range, K, False, weights, normalize, 0.0)
    return _Ms.apply("ms", X, Y, opts, _channel_reduction(size_average, reduction))


@_common.python_names(**_MSSSIM)
def ms_ssim_l1_loss(student, teacher, l1_weight=0.15, data_range=1.0, win_size=11, win_sigma=1.5, weights=None,
                    K=(0.01, 0.03), *, normalize=False):
    """kdloss::ms_ssim_l1_loss: l1_weight * mean|s - t| + (1 - l1_weight) * (1 - ms_ssim(s, t)) (thesis table 7).
    The teacher gets no gradient (None)."""
    _common.teacher_gets_no_grad("ms_ssim_l1_loss", "teacher", teacher)
    opts = _ms_opts(win_size, win_sigma, data_range, K, False, weights, normalize, l1_weight)
    return _Ms.apply("mixture", student, teacher, opts, "mean")


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
