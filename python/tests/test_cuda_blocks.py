"""CUDA: the kdloss_torch.blocks modules on the GPU. CPU/GPU agreement (float32, float64) of the value, every
parameter gradient and the BN running statistics for NonLocal2d (four modes), NonLocalBlockND and GloRe; the
current torch stream with no host synchronisation; a CUDA-graph capture of a block's forward + backward.
Skipped (visibly) without a GPU or without a CUDA build of kdloss_torch (KDLOSS_TORCH_CUDA=1)."""

import copy

import pytest
import torch

import kdloss_torch as kd
import kdloss_torch.blocks as kb
from helpers import assert_rel, leaf

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and kd.cuda_backend),
                                reason="needs a GPU and a CUDA build of kdloss_torch (KDLOSS_TORCH_CUDA=1)")

TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-4)}


def randomise(module, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return module


def run(module, x, r):
    x = leaf(x)
    z = module(x)
    params = [p for p in module.parameters()]
    grads = torch.autograd.grad((z * r).sum(), [x] + params)
    return z.detach(), grads


def agree(make, shape, dtype, steps=2):
    cpu = randomise(make(), 3).to(dtype).train()
    gpu = copy.deepcopy(cpu).cuda()
    rv, rg = TOL[dtype]
    for k in range(steps):
        x = torch.randn(shape, dtype=dtype) + k
        r = torch.randn(shape, dtype=dtype)
        z, g = run(cpu, x, r)
        zg, gg = run(gpu, x.cuda(), r.cuda())
        assert zg.device.type == "cuda"
        assert_rel(zg.cpu(), z, rv, "value")
        scale = max(t.abs().max().item() for t in g)
        for a, b in zip(gg, g):  # floored at 1% of the block's largest gradient, as test_blocks.compare
            err = (a.cpu().double() - b.double()).abs().max().item()
            assert err <= rg * max(b.abs().max().item(), 1e-2 * scale), "gradient: %.3e" % err
        for (n, a), (_, b) in zip(cpu.state_dict().items(), gpu.state_dict().items()):
            if n.endswith("num_batches_tracked"):
                assert int(a) == int(b)
            else:
                assert_rel(b.cpu(), a, rv, n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["embedded_gaussian", "gaussian", "dot_product", "concatenation"])
def test_nonlocal2d_cpu_gpu_agree(mode, dtype):
    agree(lambda: kb.NonLocal2d(16, sub_sample=True, mode=mode, norm_cfg=dict(type="BN")), (2, 16, 13, 10), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nonlocalblocknd_and_glore_cpu_gpu_agree(dtype):
    agree(lambda: kb.NonLocalBlockND(32, 8, downsample_stride=4), (2, 32, 24, 20), dtype)
    agree(lambda: kb.GloRe(16, 4), (2, 16, 9, 11), dtype)


def test_eval_mode_cpu_gpu_agree():
    cpu = randomise(kb.NonLocal2d(16, sub_sample=True, mode="dot_product", norm_cfg=dict(type="BN")), 4).double()
    cpu(torch.randn(2, 16, 8, 8, dtype=torch.float64))  # running statistics
    cpu.eval()
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    r = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    z, g = run(cpu, x, r)
    zg, gg = run(gpu, x.cuda(), r.cuda())
    assert_rel(zg.cpu(), z, 1e-10, "eval value")
    for a, b in zip(gg, g):
        assert_rel(a.cpu(), b, 1e-10, "eval gradient")


def test_current_stream_no_host_sync_and_graph_capture():
    block = randomise(kb.NonLocalBlockND(32, 16, downsample_stride=2), 5).cuda()
    x = torch.randn(2, 32, 20, 16, device="cuda", requires_grad=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.cuda.stream(side):
            z = block(x)
            (g,) = torch.autograd.grad(z.square().sum(), x)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.current_stream().wait_stream(side)
    ref = copy.deepcopy(block).cpu()
    z_ref, g_ref = run(ref, x.detach().cpu(), 2 * z.detach().cpu())
    assert_rel(z.detach().cpu(), z_ref, 1e-5, "value on a side stream")
    assert_rel(g.cpu(), g_ref[0], 1e-4, "gradient on a side stream")
    # CUDA graph: a captured forward + backward replays with the same result
    static_x = torch.randn(2, 32, 20, 16, device="cuda", requires_grad=True)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            block(static_x).sum().backward()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_z = block(static_x)
        static_z.sum().backward()
    with torch.no_grad():
        static_x.copy_(torch.randn_like(static_x))
    graph.replay()
    torch.cuda.synchronize()
    z_eager = block(static_x.detach())
    # the BN in training mode: the graph's replay and the eager call see the same batch
    assert_rel(static_z.detach(), z_eager.detach(), 1e-5, "graph replay value")
