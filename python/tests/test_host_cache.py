"""The host output cache (python/csrc/torch_glue.cpp): large CPU outputs come from mapped blocks that
are reused across steps; the tensors behave like torch.empty_like's (sizes, strides, values), the
blocks return to the cache when the tensors are freed, and empty_host_cache() unmaps them."""

import gc
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

import kdloss_torch as kd

LARGE = (2, 64, 256, 272)  # 8.9M floats = 35.7 MB: above the 32 MiB threshold


def mse_grad(s, t):
    s = s.detach().requires_grad_()
    (g,) = torch.autograd.grad(kd.mse_loss(s, t), s)
    return g


def test_large_gradient_matches_torch_and_its_block_is_reused():
    kd.empty_host_cache()
    s, t = torch.randn(LARGE), torch.randn(LARGE)
    g = mse_grad(s, t)
    s_ref = s.clone().requires_grad_()
    (want,) = torch.autograd.grad(F.mse_loss(s_ref, t), s_ref)
    torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-12)
    assert g.shape == s.shape and g.stride() == s.stride()
    ptr = g.data_ptr()
    assert ptr % (2 << 20) == 0  # blocks start on a huge-page boundary
    del g
    gc.collect()
    assert kd.host_cache_free_bytes() >= s.nbytes
    again = mse_grad(s, t)
    assert again.data_ptr() == ptr  # the same block, already mapped
    torch.testing.assert_close(again, want, rtol=1e-5, atol=1e-12)
    assert kd.host_cache_free_bytes() == 0
    del again
    gc.collect()
    assert kd.empty_host_cache() >= s.nbytes
    assert kd.host_cache_free_bytes() == 0


def test_cached_outputs_keep_the_layout_of_empty_like():
    # channels-last and permuted students: the gradient has the student's strides, as torch.empty_like.
    s = torch.randn(LARGE).contiguous(memory_format=torch.channels_last)
    t = torch.randn(LARGE)
    g = mse_grad(s, t)
    assert g.stride() == torch.empty_like(s).stride()
    torch.testing.assert_close(g, 2 * (s - t) / s.numel(), rtol=1e-5, atol=1e-12)
    p = torch.randn(LARGE[::-1]).permute(3, 2, 1, 0)
    g = mse_grad(p, t)
    assert g.stride() == torch.empty_like(p).stride()
    torch.testing.assert_close(g, 2 * (p - t) / p.numel(), rtol=1e-5, atol=1e-12)


def test_small_outputs_bypass_the_cache_and_two_live_outputs_get_two_blocks():
    kd.empty_host_cache()
    small = mse_grad(torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5))
    del small
    gc.collect()
    assert kd.host_cache_free_bytes() == 0
    s, t = torch.randn(LARGE), torch.randn(LARGE)
    a, b = mse_grad(s, t), mse_grad(s, t)
    assert a.data_ptr() != b.data_ptr()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    del a, b
    gc.collect()
    assert kd.host_cache_free_bytes() >= 2 * s.nbytes
    kd.empty_host_cache()


def test_cache_off_and_limit_through_the_environment():
    # KDLOSS_TORCH_HOST_CACHE_MB=0: nothing is kept (read once, at the first large output: a new process).
    code = ("import gc, torch, kdloss_torch as kd\n"
            "s = torch.randn(%r).requires_grad_(); t = torch.randn(%r)\n"
            "g, = torch.autograd.grad(kd.mse_loss(s, t), s)\n"
            "torch.testing.assert_close(g, 2 * (s.detach() - t) / s.numel())\n"
            "del g; gc.collect(); print(kd.host_cache_free_bytes())\n" % (LARGE, LARGE))
    env = dict(os.environ, KDLOSS_TORCH_HOST_CACHE_MB="0", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
    env["KDLOSS_TORCH_HOST_CACHE_MB"] = "1"  # below one block: freed blocks are unmapped
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
    env["KDLOSS_TORCH_HOST_CACHE_MB"] = "64"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) >= 4 * LARGE[0] * LARGE[1] * LARGE[2] * LARGE[3]
