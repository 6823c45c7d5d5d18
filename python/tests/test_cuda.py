"""CUDA: parity on the GPU (float32, float64; float16 and bfloat16 against a float32 reference),
the current torch stream, no host synchronisation, and the device guard. Skipped (visibly) without a
GPU or without a CUDA build of kdloss_torch (KDLOSS_TORCH_CUDA=1)."""

import pytest
import torch

import kdloss_torch as kd
import reference_impl as ref
from helpers import RTOL, SMALL_PYRAMID, assert_rel, layout, leaf

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and kd.cuda_backend),
                                reason="needs a GPU and a CUDA build of kdloss_torch (KDLOSS_TORCH_CUDA=1)")
fbkd = kd.fbkd

FEATURE = {
    "mse": (kd.mse_loss, ref.mse_loss),
    "l1": (kd.l1_loss, ref.l1_loss),
    "smooth_l1": (lambda s, t: kd.smooth_l1_loss(s, t, 0.5), lambda s, t: ref.smooth_l1_loss(s, t, 0.5)),
    "distance": (kd.distance_loss, ref.distance_loss),
    "kl_div": (lambda s, t: kd.kl_div_loss(s, t, 1, 2.0), lambda s, t: ref.kl_div_loss(s, t, 1, 2.0)),
}


def value_and_grad(fn, s, t):
    s = leaf(s)
    out = fn(s, t)
    return out.detach(), torch.autograd.grad(out, s)[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loss", list(FEATURE))
@pytest.mark.parametrize("kind", ["contiguous", "channels_last", "sliced"])
def test_feature_parity_cuda(loss, kind, dtype, backward_mode):
    s = torch.randn(2, 16, 20, 12, dtype=dtype, device="cuda")
    t = torch.randn(2, 16, 20, 12, dtype=dtype, device="cuda")
    kd_fn, ref_fn = FEATURE[loss]
    v, g = value_and_grad(kd_fn, layout(s, kind), layout(t, kind))
    v_ref, g_ref = value_and_grad(ref_fn, s.double(), t.double())
    assert v.device.type == "cuda" and g.device.type == "cuda"
    assert_rel(v, v_ref, RTOL[dtype], "value")
    assert_rel(g, g_ref, RTOL[dtype], "gradient")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("loss", list(FEATURE))
def test_feature_half_cuda(loss, dtype):
    """Half inputs accumulate in float; value and gradient are stored in the input type. Tolerance:
    the input type's rounding (bfloat16 has 8 bits of mantissa: 1e-2 relative)."""
    s = torch.randn(2, 16, 20, 12, device="cuda").to(dtype)
    t = torch.randn(2, 16, 20, 12, device="cuda").to(dtype)
    kd_fn, ref_fn = FEATURE[loss]
    v, g = value_and_grad(kd_fn, s, t)
    v_ref, g_ref = value_and_grad(ref_fn, s.double(), t.double())
    assert v.dtype == dtype and g.dtype == dtype
    assert_rel(v, v_ref, 1e-2, "value")
    assert_rel(g, g_ref, 1e-2, "gradient")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("preset", ["code_two_stage", "paper_two_stage"])
def test_fbkd_total_cuda(preset, dtype, backward_mode):
    config = getattr(fbkd.Config, preset)()
    levels, leaves, ref_levels, ref_leaves = [], [], [], []
    for b, c, h, w in SMALL_PYRAMID:
        s, t, a = (torch.randn(b, c, h, w, dtype=dtype, device="cuda") for _ in range(3))
        ch, sp = torch.randn(b, c, dtype=dtype, device="cuda"), torch.randn(b, 1, h, w, dtype=dtype, device="cuda")
        mine = [leaf(s), t, leaf(layout(a, "channels_last")), leaf(ch), leaf(sp)]
        theirs = [leaf(s.double()), t.double(), leaf(a.double()), leaf(ch.double()), leaf(sp.double())]
        levels.append(fbkd.Level(*mine))
        ref_levels.append(theirs)
        leaves += [mine[k] for k in (0, 2, 3, 4)]
        ref_leaves += [theirs[k] for k in (0, 2, 3, 4)]
    v = fbkd.total_loss(levels, config)
    g = torch.autograd.grad(v, leaves, allow_unused=True)
    v_ref = ref.fbkd_total(ref_levels, config)
    g_ref = torch.autograd.grad(v_ref, ref_leaves, allow_unused=True)
    assert_rel(v, v_ref, RTOL[dtype], "total")
    for a, b, x in zip(g, g_ref, leaves):
        assert_rel(torch.zeros_like(x) if a is None else a, torch.zeros_like(x) if b is None else b, RTOL[dtype],
                   "gradient")


def test_current_stream_and_no_host_sync():
    """Work goes to torch's current stream; nothing in the bridge synchronises the host (torch's sync
    debug mode raises on any synchronising torch call made by the bridge)."""
    s = torch.randn(2, 64, 100, 167, device="cuda", requires_grad=True)
    t = torch.randn(2, 64, 100, 167, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.cuda.stream(side):
            out = kd.mse_loss(s, t) + kd.kl_div_loss(s, t, 1, 2.0) + kd.distance_loss(s, t)
            (g,) = torch.autograd.grad(out, s)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.current_stream().wait_stream(side)
    s_ref = leaf(s)
    out_ref = ref.mse_loss(s_ref, t) + ref.kl_div_loss(s_ref, t, 1, 2.0) + ref.distance_loss(s_ref, t)
    assert_rel(out, out_ref, 1e-5, "value")
    assert_rel(g, torch.autograd.grad(out_ref, s_ref)[0], 1e-5, "gradient")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_device():
    s = torch.randn(2, 8, 5, 5, device="cuda:1", requires_grad=True)
    t = torch.randn(2, 8, 5, 5, device="cuda:1")
    out = kd.mse_loss(s, t)
    assert out.device == s.device
    assert_rel(out, ref.mse_loss(s, t), 1e-5, "value")


def test_mixed_devices_are_refused():
    s = torch.randn(2, 3, device="cuda")
    with pytest.raises(kd.KdlossError):
        kd.mse_loss(s, s.cpu())
