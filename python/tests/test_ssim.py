"""Parity of the SSIM family (kdloss_torch.ssim) with kornia (metrics.ssim, losses.ssim_loss) and
pytorch-msssim (ssim, ms_ssim): values and gradients of both inputs through the peers' autograd, for
both paddings, windows 3/5/7/11, every reduction, non-contiguous inputs, small and one pyramid-ish
shape; the thesis options against an eager reference; the thesis' pyramid sum (ssim_pyramid_loss)
against the sum of kornia's per-level losses; gradcheck in float64 on tiny shapes.

Tolerances: float32 1e-5 relative on values and 1e-4 on gradients (1e-5 for ssim_pyramid_loss), float64
1e-10 / 1e-9. Inputs are where the peers are defined (docs/losses/ssim.md): random textures, so no local
variance is near the zero kdloss clamps it at, and no relu'd MS-SSIM level value is 0."""

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


def _reflect_index(n, p):
    """numpy.pad 'reflect' indices of an axis of n pixels padded by p on both sides (kdloss keeps reflecting
    where the pad is not smaller than the axis, which F.pad refuses; a 1-pixel axis repeats its pixel)."""
    i = torch.arange(-p, n + p)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    m = i.remainder(period)
    return torch.where(m >= n, period - m, m)


def _reflect_pad(v, p):
    if p < min(v.shape[2], v.shape[3]):
        return F.pad(v, (p, p, p, p), mode="reflect")
    return v.index_select(2, _reflect_index(v.shape[2], p)).index_select(3, _reflect_index(v.shape[3], p))


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
            v = _reflect_pad(v, p)
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


def test_reference_reflect_pad_matches_torch():
    """The eager reference's numpy-style reflection equals F.pad's where F.pad is defined."""
    v = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    for p in range(6):
        got = v.index_select(2, _reflect_index(6, p)).index_select(3, _reflect_index(7, p))
        assert torch.equal(got, F.pad(v, (p, p, p, p), mode="reflect"))


# ---------------------------------------------------------------------------------------------------------------
# ssim_pyramid_loss: thesis equation 1, sum over levels r of the level's mean loss

#: Three levels with a 2x pyramid's structure (P3-P5-like, odd sizes included).
PYRAMID_LEVELS = [(2, 3, 16, 13), (2, 3, 8, 7), (2, 3, 5, 6)]
#: The gradcheck-sized levels; with window 11 the last two are smaller than the window (reflected
#: repeatedly, docs/losses/ssim.md "Padding and map sizes"), which kornia / F.pad refuse.
TINY_LEVELS = [(1, 2, 9, 11), (1, 2, 5, 6), (1, 2, 3, 3)]
#: Pyramid parity: value 1e-5 relative in float32 (gradients too), 1e-10 / 1e-9 in float64.
PTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
PGTOL = {torch.float32: 1e-5, torch.float64: 1e-9}


def pyramid_pairs(shapes, dtype, noise=0.3):
    pairs = [pair(sh, dtype, noise) for sh in shapes]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def kornia_pyramid(window, **kw):
    """Equation 1 from its parts: sum over levels of kornia.losses.ssim_loss(s, t, window, reduction='mean')."""
    return lambda ss, ts: sum(kornia.losses.ssim_loss(a, b, window, reduction="mean", **kw) for a, b in zip(ss, ts))


def eager_pyramid(window, clamp=True, **kw):
    """Equation 1 from the eager reference map (any map size, the thesis options)."""
    def level(a, b):
        loss = (1 - ref_ssim_map(a, b, window, **kw)) / 2
        return (loss.clamp(0, 1) if clamp else loss).mean()
    return lambda ss, ts: sum(level(a, b) for a, b in zip(ss, ts))


def compare_pyramid(kd_fn, ref_fn, students, teachers, dtype, upstream=0.75):
    """Value and d/d every student level of kd_fn and ref_fn (teachers constant), with an upstream
    gradient != 1 (the fused path scales its kept gradients by it)."""
    s1, s2 = [leaf(x) for x in students], [leaf(x) for x in students]
    ts = [t.detach() for t in teachers]
    out, ref = kd_fn(s1, ts), ref_fn(s2, ts)
    up = torch.tensor(upstream, dtype=dtype)
    g1 = torch.autograd.grad(out, s1, grad_outputs=up)
    g2 = torch.autograd.grad(ref, s2, grad_outputs=up)
    assert out.shape == () and out.dtype == dtype
    assert_rel(out, ref, PTOL[dtype], "value")
    for r, (a, b) in enumerate(zip(g1, g2)):
        assert a.shape == b.shape
        assert_rel(a, b, PGTOL[dtype], "grad students[%d]" % r)
    return out, g1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("window", [3, 5])
def test_ssim_pyramid_kornia(window, padding, dtype, backward_mode):
    ss, ts = pyramid_pairs(PYRAMID_LEVELS, dtype)
    compare_pyramid(lambda a, b: kss.ssim_pyramid_loss(a, b, window, padding=padding),
                    kornia_pyramid(window, padding=padding), ss, ts, dtype)


@pytest.mark.parametrize("padding", PADDINGS)
def test_ssim_pyramid_kornia_window11(padding, backward_mode):
    """Kornia's default window on P4/P5-like levels [2, 16, 50, 84] and [2, 16, 25, 42], float32."""
    ss, ts = pyramid_pairs([(2, 16, 50, 84), (2, 16, 25, 42)], torch.float32)
    compare_pyramid(lambda a, b: kss.ssim_pyramid_loss(a, b, padding=padding), kornia_pyramid(11, padding=padding),
                    ss, ts, torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layouts", [("channels_last", "sliced", "transposed"),
                                     ("sliced", "transposed", "channels_last"),
                                     ("transposed", "channels_last", "sliced")])
def test_ssim_pyramid_noncontiguous(layouts, dtype, backward_mode):
    """Each level in another layout (views, no copies; teachers in yet another), and a permuted view of a
    [B, H, W, C] buffer; kornia gets contiguous copies of the same values."""
    ss, ts = pyramid_pairs(PYRAMID_LEVELS, dtype)
    s_views = [layout(x, k) for x, k in zip(ss, layouts)]
    t_views = [layout(x, k) for x, k in zip(ts, layouts[1:] + layouts[:1])]
    nhwc = ss[0].permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # [B, C, H, W] view of NHWC storage
    s_views[0] = nhwc
    assert not any(v.is_contiguous() for v in s_views + t_views)
    ref = kornia_pyramid(5)
    _, grads = compare_pyramid(lambda a, b: kss.ssim_pyramid_loss(a, b, 5),
                               lambda a, b: ref([x.contiguous() for x in a], [x.contiguous() for x in b]),
                               s_views, t_views, dtype)
    # a student's gradient keeps that student's memory format where it is dense
    assert grads[0].stride() == nhwc.stride()


@pytest.mark.parametrize("window", [3, 11])
def test_ssim_pyramid_maps_smaller_than_window(window, backward_mode):
    """The gradcheck levels against the eager reference with numpy-style reflection (window 11 on 5x6 and
    3x3 maps: pads of 5 >= the map, which kdloss defines and F.pad refuses), float64."""
    ss, ts = pyramid_pairs(TINY_LEVELS, torch.float64)
    compare_pyramid(lambda a, b: kss.ssim_pyramid_loss(a, b, window), eager_pyramid(window), ss, ts, torch.float64)


PYRAMID_OPTIONS = {
    "kornia": dict(),
    "sigma_k_range": dict(sigma=2.0, k1=0.02, k2=0.05, max_val=2.0, eps=0.0),
    "zeros": dict(padding="zeros"),
    "table2_cs_nu": dict(alpha=0.0, normalize=True),
    "exponents_unclamped": dict(alpha=0.5, beta=2.0, gamma=1.5, clamp=False),
    "three_component_valid": dict(three_component=True, padding="valid"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(PYRAMID_OPTIONS))
def test_ssim_pyramid_options(case, dtype, backward_mode):
    """The thesis options (passed through to every level) against the eager reference, and against the sum of
    kdloss's own per-level ssim_loss (the same engine: tight)."""
    opts = PYRAMID_OPTIONS[case]
    ss, ts = pyramid_pairs(PYRAMID_LEVELS, dtype)
    window = 3 if opts.get("padding") == "valid" else 5
    ref_opts = {k: v for k, v in opts.items() if k != "clamp"}
    compare_pyramid(lambda a, b: kss.ssim_pyramid_loss(a, b, window, **opts),
                    eager_pyramid(window, clamp=opts.get("clamp", True), **ref_opts), ss, ts, dtype)
    compare_pyramid(lambda a, b: kss.ssim_pyramid_loss(a, b, window, **opts),
                    lambda a, b: sum(kss.ssim_loss(x, y, window, **opts) for x, y in zip(a, b)), ss, ts, dtype)


def test_ssim_pyramid_one_level_is_ssim_loss():
    s, t = pair((2, 3, 12, 10), torch.float64)
    assert_rel(kss.ssim_pyramid_loss([s], [t], 7), kss.ssim_loss(s, t, 7), 1e-14, "one level")
    assert_rel(kss.ssim_pyramid_loss((s,), (t,), 7), kss.ssim_loss(s, t, 7), 1e-14, "tuples")


def test_ssim_pyramid_gradients_per_level(backward_mode):
    """Only the levels that require grad get one; teachers that require grad get None, with a warning."""
    ss, ts = pyramid_pairs(PYRAMID_LEVELS, torch.float64)
    s0, s2 = leaf(ss[0]), leaf(ss[2])
    teachers = [leaf(t) for t in ts]
    kd._common._warned.discard(("ssim_pyramid_loss", "teachers"))  # one warning per process
    with pytest.warns(UserWarning, match="no gradient"):
        loss = kss.ssim_pyramid_loss([s0, ss[1], s2], teachers, 5)
    loss.backward()
    assert all(t.grad is None for t in teachers)
    ref0, ref2 = leaf(ss[0]), leaf(ss[2])
    (kss.ssim_loss(ref0, ts[0], 5) + kss.ssim_loss(ref2, ts[2], 5)).backward()
    assert_rel(s0.grad, ref0.grad, 1e-12, "level 0")
    assert_rel(s2.grad, ref2.grad, 1e-12, "level 2")
    # nothing requires grad: forward only
    assert not kss.ssim_pyramid_loss(ss, ts, 5).requires_grad


def test_ssim_pyramid_retain_graph():
    """Fused mode: a second backward through the same graph recomputes (the kept gradients were used)."""
    ss, ts = pyramid_pairs(PYRAMID_LEVELS, torch.float64)
    s = [leaf(x) for x in ss]
    loss = kss.ssim_pyramid_loss(s, ts, 5)
    first = torch.autograd.grad(loss, s, retain_graph=True)
    second = torch.autograd.grad(loss * 2, s)
    for a, b in zip(first, second):
        assert_rel(b, 2 * a, 1e-13, "second backward")


def test_ssim_pyramid_module():
    ss, ts = pyramid_pairs(PYRAMID_LEVELS, torch.float32)
    m = kss.SSIMPyramidLoss(5, padding="valid", normalize=True)
    assert_rel(m(ss, ts), kss.ssim_pyramid_loss(ss, ts, 5, padding="valid", normalize=True), 0, "module")
    assert "window_size=5" in repr(m) and "normalize=True" in repr(m)
    assert "ssim_pyramid_loss" in kss.__all__ and "SSIMPyramidLoss" in kss.__all__


def test_ssim_pyramid_errors():
    ss, ts = pyramid_pairs([(1, 2, 9, 11), (1, 2, 5, 6)], torch.float32)
    for grad in (False, True):  # forward entry, and the fused entry when a gradient is wanted
        s = [leaf(x) if grad else x for x in ss]
        with pytest.raises(kd.KdlossError, match=r"'students' and 'teachers' must have one tensor per level but have "
                                                 r"2 student levels and 1 teacher levels"):
            kss.ssim_pyramid_loss(s, ts[:1])
        with pytest.raises(kd.KdlossError, match=r"arguments 'students\[1\]' \[1, 2, 5, 6\] and 'teachers\[1\]' "
                                                 r"\[1, 2, 5, 5\] must have the same shape"):
            kss.ssim_pyramid_loss(s, [ts[0], ts[1][..., :5]])
        with pytest.raises(kd.KdlossError, match=r"argument 'teachers\[1\]' has dtype torch.float64 but "
                                                 r"'students\[0\]' has dtype torch.float32"):
            kss.ssim_pyramid_loss(s, [ts[0], ts[1].double()])
        with pytest.raises(kd.KdlossError,
                           match=r"argument 'students\[0\]' must have rank 4 but has shape \[2, 9, 11\]"):
            kss.ssim_pyramid_loss([s[0][0], s[1]], [ts[0][0], ts[1]])
        with pytest.raises(kd.KdlossError, match=r"'valid' padding needs maps of at least 7x7"):
            kss.ssim_pyramid_loss(s, ts, 7, padding="valid")
    with pytest.raises(kd.KdlossError, match=r"ssim_pyramid_loss: argument 'students' is empty"):
        kss.ssim_pyramid_loss([], [])
    with pytest.raises(kd.KdlossError, match=r"argument 'teachers' must be a sequence .* but is a torch.Tensor"):
        kss.ssim_pyramid_loss(ss, ts[0])
    with pytest.raises(kd.KdlossError, match=r"argument 'students\[1\]' is None but is required"):
        kss.ssim_pyramid_loss([ss[0], None], ts)
    with pytest.raises(kd.KdlossError, match="window"):
        kss.ssim_pyramid_loss(ss, ts, 4)


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


@pytest.mark.parametrize("window,opts", [(11, {}), (3, dict(padding="valid")), (5, dict(padding="zeros")),
                                         (3, dict(normalize=True, alpha=0.5, clamp=False))],
                         ids=["w11_reflect_beyond_map", "w3_valid", "w5_zeros", "w3_nu_exponents"])
def test_gradcheck_ssim_pyramid(window, opts, backward_mode):
    """Three levels [1,2,9,11], [1,2,5,6], [1,2,3,3]; every student level is an input, teachers constant."""
    ss, ts = pyramid_pairs(TINY_LEVELS, D)
    _gradcheck(lambda *s: kss.ssim_pyramid_loss(s, ts, window, **opts), *[x.requires_grad_(True) for x in ss])


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


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    "name",
    ["ssim_loss", "ssim_loss_none", "ms_ssim", "ssim_index", "ssim_index_nonnegative"],
)
def test_nonfinite_inputs_propagate_as_the_peers(bad, name):
    """A NaN or +-inf pixel: NaN values, and NaN gradients at exactly the peers' positions."""
    weights = [0.5, 0.3, 0.2]
    ms = dict(data_range=1.0, win_size=3, size_average=False)
    calls = {
        "ssim_loss": (lambda a, b: kornia.losses.ssim_loss(a, b, 11), lambda a, b: kd.ssim.ssim_loss(a, b, 11)),
        "ssim_loss_none": (
            lambda a, b: kornia.losses.ssim_loss(a, b, 11, reduction="none").sum(),
            lambda a, b: kd.ssim.ssim_loss(a, b, 11, reduction="none").sum(),
        ),
        "ms_ssim": (
            lambda a, b: pytorch_msssim.ms_ssim(a, b, weights=weights, **ms).sum(),
            lambda a, b: kd.ssim.ms_ssim(a, b, weights=weights, **ms).sum(),
        ),
        "ssim_index": (
            lambda a, b: pytorch_msssim.ssim(a, b, **ms).sum(),
            lambda a, b: kd.ssim.ssim_index(a, b, **ms).sum(),
        ),
        "ssim_index_nonnegative": (
            lambda a, b: pytorch_msssim.ssim(a, b, nonnegative_ssim=True, **ms).sum(),
            lambda a, b: kd.ssim.ssim_index(a, b, nonnegative_ssim=True, **ms).sum(),
        ),
    }
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 2, 40, 40, dtype=torch.float64, generator=g)
    y = torch.rand(1, 2, 40, 40, dtype=torch.float64, generator=g)
    x[0, 0, 20, 20] = bad
    results = []
    for f in calls[name]:
        a, b = leaf(x), leaf(y)
        v = f(a, b)
        v.backward()
        results.append((v.detach(), a.grad.isnan(), b.grad.isnan()))
    (pv, pa, pb), (ov, oa, ob) = results
    assert torch.equal(pv.isnan(), ov.isnan())
    assert torch.equal(pa, oa)
    assert torch.equal(pb, ob)
    assert oa[0, 1].sum() == 0  # the other channel stays finite
