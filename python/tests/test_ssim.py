"""Parity of the SSIM family (kdloss_torch.ssim) with kornia (metrics.ssim, losses.ssim_loss) and
pytorch-msssim (ssim, ms_ssim): values and gradients of both inputs through the peers' autograd, for
both paddings, windows 3/5/7/11, every reduction, non-contiguous inputs, small and one pyramid-ish
shape; the thesis options against an eager reference; gradcheck in float64 on tiny shapes.

Tolerances: float32 1e-5 relative on values and 1e-4 on gradients, float64 1e-10 / 1e-9. Inputs are
where the peers are defined (docs/losses/ssim.md): random textures, so no local variance is near the
zero kdloss clamps it at, and no relu'd MS-SSIM level value is 0."""

import sys

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import kdloss_torch as kd
from helpers import LAYOUTS, assert_rel, layout, leaf

kornia = pytest.importorskip("kornia")
pytorch_msssim = pytest.importorskip("pytorch_msssim")

kss = kd.ssim


class _Msssim:
    """pytorch_msssim.ssim / ms_ssim with the window built in the inputs' dtype: pytorch-msssim builds
    it in float32 (_fspecial_gauss_1d) and casts, which limits its float64 values to ~1e-7 relative."""

    @staticmethod
    def _win(x, kw):
        size, sigma = kw.get("win_size", 11), kw.get("win_sigma", 1.5)
        c = torch.arange(size, dtype=torch.float64) - size // 2
        g = torch.exp(-(c ** 2) / (2 * sigma ** 2))
        g = (g / g.sum()).to(x.dtype).reshape(1, 1, 1, size)
        return g.repeat([x.shape[1], 1, 1, 1])

    @classmethod
    def ssim(cls, a, b, **kw):
        return pytorch_msssim.ssim(a, b, win=cls._win(a, kw), **kw)

    @classmethod
    def ms_ssim(cls, a, b, **kw):
        return pytorch_msssim.ms_ssim(a, b, win=cls._win(a, kw), **kw)


msssim = _Msssim
DTYPES = [torch.float32, torch.float64]
VTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
GTOL = {torch.float32: 1e-4, torch.float64: 1e-9}
WINDOWS = [3, 5, 7, 11]
PADDINGS = ["same", "valid"]


def pair(shape, dtype, noise=0.3, scale=1.0):
    """A teacher in [0, scale] and a correlated student (SSIM well inside (0, 1))."""
    t = torch.rand(shape, dtype=dtype) * scale
    s = t + noise * scale * torch.randn(shape, dtype=dtype)
    return s, t


def compare(kd_fn, ref_fn, s, t, dtype, teacher_grad=True):
    """Value and d/d student (and d/d teacher) of kd_fn and ref_fn, with a random upstream gradient
    when the value is not a scalar."""
    s1, t1 = leaf(s), leaf(t) if teacher_grad else t.detach()
    s2, t2 = leaf(s), leaf(t) if teacher_grad else t.detach()
    ref = ref_fn(s2, t2)
    out = kd_fn(s1, t1)
    up = torch.randn_like(ref) if ref.dim() > 0 else None
    inputs1 = (s1, t1) if teacher_grad else (s1,)
    inputs2 = (s2, t2) if teacher_grad else (s2,)
    g1 = torch.autograd.grad(out, inputs1, grad_outputs=up)
    g2 = torch.autograd.grad(ref, inputs2, grad_outputs=up)
    assert_rel(out, ref, VTOL[dtype], "value")
    for a, b, what in zip(g1, g2, ("grad student", "grad teacher")):
        assert_rel(a, b, GTOL[dtype], what)
    return out, g1


# ---------------------------------------------------------------------------------------------------------------
# kornia


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("window", WINDOWS)
def test_ssim_map_kornia(window, padding, dtype):
    s, t = pair((2, 3, 16, 13), dtype)
    out, _ = compare(lambda a, b: kss.ssim(a, b, window, padding=padding),
                     lambda a, b: kornia.metrics.ssim(a, b, window, padding=padding), s, t, dtype)
    p = window // 2 if padding == "valid" else 0
    assert out.shape == (2, 3, 16 - 2 * p, 13 - 2 * p)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("window", WINDOWS)
def test_ssim_loss_kornia(window, padding, reduction, dtype, backward_mode):
    s, t = pair((2, 3, 14, 17), dtype)
    compare(lambda a, b: kss.ssim_loss(a, b, window, reduction=reduction, padding=padding),
            lambda a, b: kornia.losses.ssim_loss(a, b, window, reduction=reduction, padding=padding), s, t, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ssim_loss_kornia_options(dtype, backward_mode):
    """max_val and eps as kornia takes them; the module form."""
    s, t = pair((2, 2, 12, 12), dtype, scale=255.0)
    compare(lambda a, b: kss.SSIMLoss(7, max_val=255.0, eps=0.0, reduction="sum")(a, b),
            lambda a, b: kornia.losses.SSIMLoss(7, max_val=255.0, eps=0.0, reduction="sum")(a, b), s, t, dtype)
    compare(lambda a, b: kss.SSIM(5, 255.0, 1e-12, "valid")(a, b),
            lambda a, b: kornia.metrics.SSIM(5, 255.0, 1e-12, "valid")(a, b), s, t, dtype)


@pytest.mark.parametrize("layout_kind", LAYOUTS)
@pytest.mark.parametrize("padding", PADDINGS)
def test_ssim_noncontiguous(layout_kind, padding, backward_mode):
    """Strided students and teachers (views, no copies) against kornia on the same values."""
    dtype = torch.float32
    s, t = pair((2, 4, 15, 12), dtype)
    t_kind = "transposed" if layout_kind == "contiguous" else layout_kind
    for reduction in ("mean", "none"):
        compare(lambda a, b: kss.ssim_loss(a, b, 5, reduction=reduction, padding=padding),
                lambda a, b: kornia.losses.ssim_loss(a.contiguous(), b.contiguous(), 5, reduction=reduction,
                                                     padding=padding),
                layout(s, layout_kind), layout(t, t_kind), dtype)
    # the student's gradient keeps the student's layout
    x = leaf(layout(s, layout_kind))
    kss.ssim_loss(x, layout(t, t_kind), 5, padding=padding).backward()
    if layout_kind == "channels_last":
        assert x.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("padding", PADDINGS)
def test_ssim_loss_pyramid_shape(padding, backward_mode):
    """A P4-like map [2, 16, 50, 84], window 11, float32."""
    s, t = pair((2, 16, 50, 84), torch.float32)
    compare(lambda a, b: kss.ssim_loss(a, b, 11, padding=padding),
            lambda a, b: kornia.losses.ssim_loss(a, b, 11, padding=padding), s, t, torch.float32)


@pytest.mark.parametrize("shape", [(1, 1, 6, 6), (1, 2, 11, 11), (3, 1, 7, 9)])
@pytest.mark.parametrize("window", [3, 5, 11])
def test_ssim_small_shapes(shape, window):
    """Small maps where torch's reflect padding is defined (pad < size); valid where the window fits."""
    dtype = torch.float64
    if window // 2 < min(shape[2:]):
        s, t = pair(shape, dtype)
        compare(lambda a, b: kss.ssim(a, b, window), lambda a, b: kornia.metrics.ssim(a, b, window), s, t, dtype)
    if window <= min(shape[2:]):
        s, t = pair(shape, dtype)
        compare(lambda a, b: kss.ssim_loss(a, b, window, padding="valid"),
                lambda a, b: kornia.losses.ssim_loss(a, b, window, padding="valid"), s, t, dtype)


# ---------------------------------------------------------------------------------------------------------------
# thesis options against an eager reference (kornia's algorithm with the options spelled out)


def _gauss(window, sigma, dtype):
    x = torch.arange(window, dtype=dtype) - window // 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def _spow(x, p):
    if p == 0:
        return torch.ones_like(x)
    return torch.sign(x) * x.abs() ** p


def ref_ssim_map(x, y, window=11, sigma=1.5, max_val=1.0, k1=0.01, k2=0.03, eps=1e-12, padding="same",
                 alpha=1.0, beta=1.0, gamma=1.0, three_component=False, normalize=False):
    if normalize:
        def nu(v):
            lo = v.amin(dim=(2, 3), keepdim=True)
            hi = v.amax(dim=(2, 3), keepdim=True)
            return (v - lo) / (hi - lo)
        x, y = nu(x), nu(y)
    C = x.shape[1]
    g = _gauss(window, sigma, x.dtype)
    k = (g[:, None] * g[None, :]).expand(C, 1, window, window)
    p = window // 2

    def filt(v):
        if padding == "same":
            v = F.pad(v, (p, p, p, p), mode="reflect")
        elif padding == "zeros":
            v = F.pad(v, (p, p, p, p))
        return F.conv2d(v, k, groups=C)

    mx, my = filt(x), filt(y)
    vx = (filt(x * x) - mx * mx).clamp_min(0)
    vy = (filt(y * y) - my * my).clamp_min(0)
    cxy = filt(x * y) - mx * my
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    if not three_component and alpha == beta == gamma == 1:
        return (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2) + eps)
    c3 = c2 / 2
    sx, sy = vx.sqrt(), vy.sqrt()
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    con = (2 * sx * sy + c2) / (vx + vy + c2)
    st = (cxy + c3) / (sx * sy + c3)
    return _spow(lum, alpha) * _spow(con, beta) * _spow(st, gamma)


THESIS = {
    "sigma_k": dict(sigma=2.0, k1=0.02, k2=0.05, max_val=2.0),
    "zeros": dict(padding="zeros"),
    "table2_cs": dict(alpha=0.0),
    "exponents": dict(alpha=0.5, beta=2.0, gamma=1.5),
    "three_component": dict(three_component=True),
    "nu": dict(normalize=True),
    "nu_valid_exp": dict(normalize=True, padding="valid", beta=0.0),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(THESIS))
def test_thesis_options(case, dtype, backward_mode):
    opts = THESIS[case]
    s, t = pair((2, 3, 13, 12), dtype)
    compare(lambda a, b: kss.ssim(a, b, 7, **opts), lambda a, b: ref_ssim_map(a, b, 7, **opts), s, t, dtype)
    clamp = case != "exponents"
    compare(lambda a, b: kss.ssim_loss(a, b, 7, clamp=clamp, **opts),
            lambda a, b: ((1 - ref_ssim_map(a, b, 7, **opts)) / 2).clamp(0, 1).mean() if clamp
            else ((1 - ref_ssim_map(a, b, 7, **opts)) / 2).mean(), s, t, dtype)


def test_three_component_equals_two_factor():
    s, t = pair((2, 3, 10, 11), torch.float64)
    a = kss.ssim(s, t, 5, eps=0.0)
    b = kss.ssim(s, t, 5, eps=0.0, three_component=True)
    assert_rel(b, a, 1e-12, "three-component at alpha = beta = gamma = 1")


# ---------------------------------------------------------------------------------------------------------------
# pytorch-msssim


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size_average", [True, False])
@pytest.mark.parametrize("window", WINDOWS)
def test_ssim_index_msssim(window, size_average, dtype, backward_mode):
    s, t = pair((2, 3, 17, 14), dtype)
    compare(lambda a, b: kss.ssim_index(a, b, data_range=1.0, size_average=size_average, win_size=window),
            lambda a, b: msssim.ssim(a, b, data_range=1.0, size_average=size_average, win_size=window),
            s, t, dtype)


@pytest.mark.filterwarnings("ignore:Skipping Gaussian Smoothing")
@pytest.mark.parametrize("dtype", DTYPES)
def test_ssim_index_msssim_options(dtype, backward_mode):
    """data_range 255 (the default) on 8-bit-like inputs, win_sigma, K, nonnegative_ssim, an axis shorter
    than the window (not smoothed), reduction none ([B, C]) and the module form."""
    s, t = pair((2, 3, 20, 9), dtype, scale=255.0)
    compare(lambda a, b: kss.ssim_index(a, b), lambda a, b: msssim.ssim(a, b), s, t, dtype)
    compare(lambda a, b: kss.SSIMIndex(win_size=7, win_sigma=1.1, K=(0.02, 0.04), nonnegative_ssim=True)(a, b),
            lambda a, b: msssim.ssim(a, b, win_size=7, win_sigma=1.1, K=(0.02, 0.04), nonnegative_ssim=True),
            s, t, dtype)

    def per_channel(a, b):  # pytorch-msssim's [B, C] before its mean
        win = msssim._win(a, dict(win_size=5))
        return sys.modules["pytorch_msssim.ssim"]._ssim(a, b, 255, win, size_average=False)[0]

    compare(lambda a, b: kss.ssim_index(a, b, win_size=5, reduction="none"), per_channel, s, t, dtype)


@pytest.mark.parametrize("layout_kind", LAYOUTS)
def test_ssim_index_noncontiguous(layout_kind, backward_mode):
    dtype = torch.float32
    s, t = pair((2, 3, 14, 16), dtype)
    compare(lambda a, b: kss.ssim_index(a, b, data_range=1.0, win_size=5),
            lambda a, b: msssim.ssim(a.contiguous(), b.contiguous(), data_range=1.0, win_size=5),
            layout(s, layout_kind), layout(t, "sliced" if layout_kind != "sliced" else "transposed"), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size_average", [True, False])
@pytest.mark.parametrize("case", ["win3", "win5", "weights3", "range255"])
def test_ms_ssim_msssim(case, size_average, dtype, backward_mode):
    """pytorch-msssim asserts min side > (win - 1) * 16, hence small windows."""
    shape, kw = {"win3": ((2, 3, 40, 35), dict(data_range=1.0, win_size=3)),
                 "win5": ((1, 2, 70, 66), dict(data_range=1.0, win_size=5)),
                 "weights3": ((2, 2, 36, 41), dict(data_range=1.0, win_size=3, weights=[0.2, 0.3, 0.5])),
                 "range255": ((2, 2, 34, 33), dict(win_size=3, win_sigma=1.2, K=(0.02, 0.03)))}[case]
    s, t = pair(shape, dtype, noise=0.15, scale=255.0 if case == "range255" else 1.0)
    compare(lambda a, b: kss.ms_ssim(a, b, size_average=size_average, **kw),
            lambda a, b: msssim.ms_ssim(a, b, size_average=size_average, **kw), s, t, dtype)


def test_ms_ssim_pyramid_shape(backward_mode):
    """[2, 16, 50, 84] (P4-like), window 3, float32; odd sizes pool with padding."""
    s, t = pair((2, 16, 50, 84), torch.float32, noise=0.15)
    compare(lambda a, b: kss.MS_SSIM(data_range=1.0, win_size=3)(a, b),
            lambda a, b: msssim.ms_ssim(a, b, data_range=1.0, win_size=3), s, t, torch.float32)


@pytest.mark.parametrize("layout_kind", ["channels_last", "sliced", "transposed"])
def test_ms_ssim_noncontiguous(layout_kind, backward_mode):
    s, t = pair((2, 3, 37, 34), torch.float32, noise=0.15)
    compare(lambda a, b: kss.ms_ssim(a, b, data_range=1.0, win_size=3),
            lambda a, b: msssim.ms_ssim(a.contiguous(), b.contiguous(), data_range=1.0, win_size=3),
            layout(s, layout_kind), layout(t, layout_kind), torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1_weight", [0.15, 0.5])
def test_ms_ssim_l1_mixture(l1_weight, dtype, backward_mode):
    """w * mean|s - t| + (1 - w) * (1 - pytorch_msssim.ms_ssim(data_range=1)); the teacher gets None."""
    s, t = pair((2, 3, 36, 40), dtype, noise=0.15)
    compare(lambda a, b: kss.ms_ssim_l1_loss(a, b, l1_weight, win_size=3),
            lambda a, b: l1_weight * (a - b).abs().mean()
            + (1 - l1_weight) * (1 - msssim.ms_ssim(a, b, data_range=1.0, win_size=3)),
            s, t, dtype, teacher_grad=False)
    x, y = leaf(s), leaf(t)
    kd._common._warned.discard(("ms_ssim_l1_loss", "teacher"))  # one warning per process
    with pytest.warns(UserWarning, match="no gradient"):
        kss.MSSSIML1Loss(win_size=3)(x, y).backward()
    assert x.grad is not None and y.grad is None


def test_ms_ssim_anticorrelated_zero_gradient():
    """Documented deviation: relu'd level values at 0 give MS-SSIM 0 with gradient 0 (the peer gives NaN)."""
    t = torch.rand(1, 2, 40, 40, dtype=torch.float64)
    s = leaf(1 - t)
    v = kss.ms_ssim(s, t, data_range=1.0, win_size=3)
    v.backward()
    assert v.item() == 0 and torch.all(s.grad == 0)


# ---------------------------------------------------------------------------------------------------------------
# gradcheck (float64, tiny shapes), student and teacher where kdloss gives the teacher a gradient

D = torch.float64


def _inputs(shape, noise=0.3):
    s, t = pair(shape, D, noise)
    return s.requires_grad_(True), t.requires_grad_(True)


def _gradcheck(fn, *inputs):
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("padding", ["same", "zeros", "valid"])
def test_gradcheck_ssim_map(padding, backward_mode):
    _gradcheck(lambda a, b: kss.ssim(a, b, 3, padding=padding), *_inputs((1, 2, 5, 4)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_gradcheck_ssim_loss(reduction, padding, backward_mode):
    _gradcheck(lambda a, b: kss.ssim_loss(a, b, 3, reduction=reduction, padding=padding), *_inputs((2, 1, 5, 4)))


@pytest.mark.parametrize("case", list(THESIS))
def test_gradcheck_ssim_loss_thesis(case, backward_mode):
    _gradcheck(lambda a, b: kss.ssim_loss(a, b, 3, clamp=False, **THESIS[case]), *_inputs((1, 2, 5, 5)))


@pytest.mark.parametrize("reduction", ["mean", "per_image", "none"])
def test_gradcheck_ssim_index(reduction, backward_mode):
    _gradcheck(lambda a, b: kss.ssim_index(a, b, data_range=1.0, win_size=3, reduction=reduction,
                                           nonnegative_ssim=True), *_inputs((2, 2, 5, 4)))


@pytest.mark.parametrize("reduction", ["mean", "per_image", "none"])
def test_gradcheck_ms_ssim(reduction, backward_mode):
    _gradcheck(lambda a, b: kss.ms_ssim(a, b, data_range=1.0, win_size=3, weights=[0.3, 0.3, 0.4],
                                        reduction=reduction), *_inputs((2, 1, 9, 8), noise=0.1))


def test_gradcheck_ms_ssim_l1(backward_mode):
    s, t = _inputs((1, 2, 9, 10), noise=0.1)
    _gradcheck(lambda a: kss.ms_ssim_l1_loss(a, t.detach(), win_size=3, weights=[0.5, 0.5], normalize=True), s)


# ---------------------------------------------------------------------------------------------------------------
# errors carry the C++ message


def test_errors():
    s, t = pair((1, 1, 8, 8), torch.float32)
    with pytest.raises(kd.KdlossError, match="window"):
        kss.ssim_loss(s, t, 4)
    with pytest.raises(kd.KdlossError, match="batchmean"):
        kss.ssim_loss(s, t, 3, reduction="batchmean")
    with pytest.raises(kd.KdlossError, match="padding"):
        kss.ssim(s, t, 3, padding="circular")
    with pytest.raises(kd.KdlossError):
        kss.ssim_loss(s, t, 11, padding="valid")  # the map is smaller than the window
    with pytest.raises(kd.KdlossError, match="dtype"):
        kss.ms_ssim(s, t.double())
