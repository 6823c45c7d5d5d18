"""kdloss_torch.detr box ops, element losses and matching costs on CUDA: the same values and gradients
as on the CPU (float32, float64; half for the box ops), on torch's current stream, and capturable in a
CUDA graph (nothing synchronises the host). Skipped without a GPU (scripts/gpu_check.sh runs it)."""

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("no CUDA device: the GPU cases of kdloss_torch.detr's box ops run on a GPU machine",
                allow_module_level=True)

import kdloss_torch.detr as kdetr  # noqa: E402


def boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    c = 10 * torch.rand(n, 2, generator=g, dtype=torch.float64)
    wh = 0.5 + 4 * torch.rand(n, 2, generator=g, dtype=torch.float64)
    return torch.cat([c - wh / 2, c + wh / 2], -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("form,eps", [("detr", 0.0), ("mmdet", 1e-6), ("torchvision", 1e-7)])
def test_giou_loss_cpu_gpu_agree(dtype, form, eps):
    a, b = boxes(257, 1).to(dtype), boxes(257, 2).to(dtype)
    outs = []
    for dev in ("cpu", "cuda"):
        p = a.to(dev).requires_grad_()
        t = b.to(dev).requires_grad_()
        loss = kdetr.generalized_box_iou_loss(p, t, reduction="sum", form=form, eps=eps)
        loss.backward()
        outs.append((loss.cpu(), p.grad.cpu(), t.grad.cpu()))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    for x, y in zip(*outs):
        torch.testing.assert_close(x, y, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_pairwise_cpu_gpu_agree(dtype):
    a, b = boxes(300, 3), boxes(20, 4)
    want = kdetr.generalized_box_iou(a, b)
    got = kdetr.generalized_box_iou(a.to("cuda", dtype), b.to("cuda", dtype)).double().cpu()
    tol = 1e-12 if dtype == torch.float64 else (1e-5 if dtype == torch.float32 else 2e-2)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_and_costs_cpu_gpu_agree(dtype):
    x = torch.randn(4, 300, 80, dtype=dtype)
    t = (torch.rand(4, 300, 80) > 0.9).to(dtype)
    outs = []
    for dev in ("cpu", "cuda"):
        z = x.to(dev).requires_grad_()
        loss = kdetr.sigmoid_focal_loss(z, t.to(dev), reduction="sum")
        loss.backward()
        outs.append((loss.cpu(), z.grad.cpu()))
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for u, v in zip(*outs):
        torch.testing.assert_close(u, v, **tol)
    logits = torch.randn(2, 300, 80, dtype=dtype)
    pb = torch.cat([0.2 + 0.6 * torch.rand(2, 300, 2), 0.05 + 0.2 * torch.rand(2, 300, 2)], -1).to(dtype)
    tb = [boxes(n, 5 + n).to(dtype) * 20 for n in (20, 7)]
    labels = [torch.randint(0, 80, (n,)) for n in (20, 7)]
    probs = [torch.rand(n, 80, dtype=dtype) for n in (20, 7)]
    sizes = torch.tensor([[480.0, 640.0], [300.0, 200.0]], dtype=dtype)
    for preset in ("mmdet", "detrdistill"):
        kw = dict(target_labels=labels) if preset == "mmdet" else dict(target_probs=probs)
        cpu = kdetr.matching_cost(logits, pb, tb, sizes=sizes, preset=preset, **kw)
        kwc = {k: [v.cuda() for v in vs] for k, vs in kw.items()}
        gpu = kdetr.matching_cost(logits.cuda(), pb.cuda(), [t_.cuda() for t_ in tb], sizes=sizes.cuda(),
                                  preset=preset, **kwc).cpu()
        torch.testing.assert_close(gpu, cpu, **tol)


def test_giou_loss_runs_in_a_cuda_graph():
    p = boxes(600, 6).float().cuda()
    t = boxes(600, 7).float().cuda()
    out = kdetr.generalized_box_iou_loss(p, t, reduction="sum")  # warm up (allocator, module)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    g = torch.cuda.CUDAGraph()
    with torch.cuda.stream(s):
        with torch.cuda.graph(g):
            out = kdetr.generalized_box_iou_loss(p, t, reduction="sum")
    g.replay()
    torch.cuda.synchronize()
    want = kdetr.generalized_box_iou_loss(p.cpu(), t.cpu(), reduction="sum")
    torch.testing.assert_close(out.cpu(), want, rtol=1e-5, atol=1e-5)
