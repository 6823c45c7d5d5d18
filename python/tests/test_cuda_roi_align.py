"""CUDA: kdloss_torch.ops.roi_align on the GPU against torchvision.ops.roi_align on the GPU (float32,
float64; float16 and bfloat16 against the float32 result), the list-of-boxes format, max mode against the
CPU path, channel-last inputs, the current stream, and the deterministic backward (two runs, identical
bits, where torchvision's atomic backward may differ). Skipped (visibly) without a GPU or without a CUDA
build of kdloss_torch (KDLOSS_TORCH_CUDA=1)."""

import pytest
import torch

import kdloss_torch as kd

torchvision = pytest.importorskip("torchvision")
import kdloss_torch.ops as kops  # noqa: E402

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and kd.cuda_backend),
                                reason="needs a GPU and a CUDA build of kdloss_torch (KDLOSS_TORCH_CUDA=1)")


def case(dtype, gen, batch=2, c=8, h=25, w=34, per_image=12, scale=0.25):
    x = torch.randn(batch, c, h, w, generator=gen, dtype=torch.float64)
    rows = []
    for b in range(batch):
        for _ in range(per_image):
            wh = (torch.rand(2, generator=gen, dtype=torch.float64) * 100 + 2).tolist()
            xy = (torch.rand(2, generator=gen, dtype=torch.float64) * torch.tensor([w / scale, h / scale])).tolist()
            rows.append([b, xy[0] - 10, xy[1] - 10, xy[0] + wh[0], xy[1] + wh[1]])
    boxes = torch.tensor(rows, dtype=torch.float64).round()  # integers: exact in every dtype
    return x.to(dtype), boxes.to(dtype)


def run(fn, x, boxes, gy, **kw):
    xr = x.detach().clone().requires_grad_()
    y = fn(xr, boxes, 3, **kw)
    y.backward(gy)
    return y.detach(), xr.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sr", [-1, 2])
def test_matches_torchvision_cuda(dtype, aligned, sr):
    gen = torch.Generator().manual_seed(0)
    x, boxes = case(dtype, gen)
    gy = torch.randn(boxes.shape[0], 8, 3, 3, generator=gen, dtype=torch.float64).to(dtype)
    x, boxes, gy = x.cuda(), boxes.cuda(), gy.cuda()
    kw = dict(spatial_scale=0.25, sampling_ratio=sr, aligned=aligned)
    ya, ga = run(kops.roi_align, x, boxes, gy, **kw)
    yb, gb = run(torchvision.ops.roi_align, x, boxes, gy, **kw)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ya, yb, **tol)
    torch.testing.assert_close(ga, gb, **(dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else tol))
    # channel-last input, list-of-boxes format: the same values
    per_image = [boxes[boxes[:, 0] == b, 1:] for b in range(2)]
    yc, gc = run(kops.roi_align, x.to(memory_format=torch.channels_last), per_image, gy, **kw)
    torch.testing.assert_close(yc, ya, **tol)
    torch.testing.assert_close(gc, ga, **tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_cuda(dtype):
    gen = torch.Generator().manual_seed(1)
    x, boxes = case(torch.float32, gen)
    gy = torch.randn(boxes.shape[0], 8, 3, 3, generator=gen)
    xq, bq, gq = x.to(dtype).cuda(), boxes.to(dtype).cuda(), gy.to(dtype).cuda()
    ya, ga = run(kops.roi_align, xq, bq, gq, spatial_scale=0.25)
    yr, gr = run(kops.roi_align, xq.float(), bq.float(), gq.float(), spatial_scale=0.25)
    assert ya.dtype == dtype and ga.dtype == dtype
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.float16 else dict(rtol=1e-1, atol=5e-2)
    torch.testing.assert_close(ya.float(), yr, **tol)
    torch.testing.assert_close(ga.float(), gr, **tol)


@pytest.mark.parametrize("pool_mode", ["avg", "max"])
def test_cpu_gpu_agree_and_backward_is_deterministic(pool_mode):
    gen = torch.Generator().manual_seed(2)
    x, boxes = case(torch.float64, gen, c=16, per_image=40)
    gy = torch.randn(boxes.shape[0], 16, 3, 3, generator=gen, dtype=torch.float64)
    kw = dict(spatial_scale=0.25, pool_mode=pool_mode)
    y_cpu, g_cpu = run(kops.roi_align, x, boxes, gy, **kw)
    y_gpu, g_gpu = run(kops.roi_align, x.cuda(), boxes.cuda(), gy.cuda(), **kw)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-10, atol=1e-12)
    xf, bf, gf = x.float().cuda(), boxes.float().cuda(), gy.float().cuda()
    grads = [run(kops.roi_align, xf, bf, gf, **kw)[1] for _ in range(3)]
    assert all(torch.equal(grads[0], g) for g in grads[1:]), "two runs gave different bits"


def test_runs_on_the_current_stream():
    gen = torch.Generator().manual_seed(3)
    x, boxes = case(torch.float32, gen)
    x, boxes = x.cuda(), boxes.cuda()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y = kops.roi_align(x, boxes, 3, spatial_scale=0.25)
    s.synchronize()
    ref = kops.roi_align(x, boxes, 3, spatial_scale=0.25)
    torch.cuda.synchronize()
    assert torch.equal(y, ref)
