"""Parity of kdloss_torch.drkd.pixel_relation_loss with torch: the seed pixel relation
G(F) = scaled_dot_product_attention(F, F, F, scale=1/sqrt(C)) on F = the map read as [B, H*W, C], and
L_P = mse_loss(G(S), G(T)). Values and student gradients, float64 (1e-10) and float32 (1e-5 value,
1e-4 gradient), every layout, small pyramid shapes and P5, an explicit scale, NaN propagation, the
teacher getting no gradient, and a clear error."""

import pytest
import torch
import torch.nn.functional as F

import kdloss_torch as kd
import kdloss_torch.drkd as drkd
from helpers import LAYOUTS, SMALL_PYRAMID, assert_rel, layout, leaf

def relation(x, scale=None):
    """G(F) of a [B, C, H, W] map as [B, H*W, C] through torch's SDPA (Q = K = V = F)."""
    f = x.flatten(2).transpose(1, 2)
    return F.scaled_dot_product_attention(f, f, f, scale=scale)

def reference(s, t, scale=None):
    return F.mse_loss(relation(s, scale), relation(t, scale).detach())

def value_and_grad(fn, s, t):
    s = leaf(s)
    out = fn(s, t)
    (g,) = torch.autograd.grad(out, s)
    return out.detach(), g

@pytest.mark.parametrize("dtype,rtol_v,rtol_g", [(torch.float64, 1e-10, 1e-10), (torch.float32, 1e-5, 1e-4)])
@pytest.mark.parametrize("shape", SMALL_PYRAMID + [(1, 16, 15, 14), (1, 3, 1, 1), (2, 1, 3, 4)])
@pytest.mark.parametrize("kind", LAYOUTS)
def test_pixel_relation_matches_sdpa(dtype, rtol_v, rtol_g, shape, kind):
    s = torch.randn(shape, dtype=dtype)
    t = torch.randn(shape, dtype=dtype)
    v, g = value_and_grad(drkd.pixel_relation_loss, layout(s, kind), layout(t, kind))
    v_ref, g_ref = value_and_grad(reference, s.double(), t.double())
    assert_rel(v, v_ref.to(dtype), rtol_v, "value")
    assert_rel(g, g_ref.to(dtype), rtol_g, "gradient")

@pytest.mark.parametrize("dtype,rtol_v,rtol_g", [(torch.float64, 1e-10, 1e-10), (torch.float32, 1e-5, 1e-4)])
def test_pixel_relation_p5_and_scale(dtype, rtol_v, rtol_g):
    # P5 of an 800x1333 input, C = 64 to keep the reference's N x N matrices small; then an explicit scale.
    s = torch.randn(1, 64, 25, 42, dtype=dtype)
    t = torch.randn(1, 64, 25, 42, dtype=dtype)
    for scale in (0.0, 0.3):
        v, g = value_and_grad(lambda a, b: drkd.pixel_relation_loss(a, b, scale=scale), s, t)
        v_ref, g_ref = value_and_grad(lambda a, b: reference(a, b, scale or None), s.double(), t.double())
        assert_rel(v, v_ref.to(dtype), rtol_v, "value")
        assert_rel(g, g_ref.to(dtype), rtol_g, "gradient")

def test_pixel_relation_nan_propagates_as_torch():
    s = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    t = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    s[0, 1, 0, 1] = float("nan")
    v, g = value_and_grad(drkd.pixel_relation_loss, s, t)
    v_ref, g_ref = value_and_grad(reference, s, t)
    assert torch.isnan(v) and torch.isnan(v_ref)
    assert torch.equal(torch.isnan(g), torch.isnan(g_ref))
    assert torch.isnan(g[0]).all() and torch.isfinite(g[1]).all()
    assert_rel(g[1], g_ref[1], 1e-10, "finite image")

def test_pixel_relation_teacher_gets_no_gradient_and_errors_are_clear():
    s = leaf(torch.randn(1, 4, 3, 3))
    t = torch.randn(1, 4, 3, 3)
    drkd.pixel_relation_loss(s, t).backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(kd.KdlossError, match="must have the same shape"):
        drkd.pixel_relation_loss(torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 2))
