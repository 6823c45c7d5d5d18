"""CUDA cases of kdloss_torch.drkd's instance relations: CPU/GPU agreement of values and gradients in
float32 and float64 (code form with drawn filters, paper form), on torch's current stream. Skipped
without a GPU (scripts/gpu_check.sh runs it on the GPU machine)."""

import pytest
import torch

import kdloss_torch.drkd as drkd

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (run scripts/gpu_check.sh)")


def _case(dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    offsets = [0, 5, 5, 9]
    rs = torch.randn(9, 8, 3, 3, generator=g, dtype=dtype)
    rt = torch.randn(9, 8, 3, 3, generator=g, dtype=dtype)
    scores = torch.rand(9, generator=g, dtype=dtype)
    return offsets, rs.to(device), rt.to(device), scores.to(device)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_code_form_cpu_gpu_agree(dtype, tol):
    results = []
    for device in ("cpu", "cuda"):
        offsets, rs, rt, _ = _case(dtype, device)
        torch.manual_seed(3)
        srel, trel = drkd.ObjectRelation(72).to(device, dtype), drkd.ObjectRelation(72).to(device, dtype)
        ra, fa = torch.nn.Conv2d(8, 8, 1).to(device, dtype), torch.nn.Conv2d(8, 8, 1).to(device, dtype)
        sf, tf = drkd.draw_filter(9, 72, rs), drkd.draw_filter(9, 72, rs)
        x = rs.clone().requires_grad_()
        loss = drkd.instance_relation_loss(x, rt, offsets, srel, trel, ra, fa, sf, tf)
        loss.backward()
        results.append((loss.cpu(), x.grad.cpu(), srel.theta[0].weight.grad.cpu(), trel.W.weight.grad.cpu()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_paper_form_cpu_gpu_agree(dtype, tol):
    results = []
    for device in ("cpu", "cuda"):
        offsets, rs, rt, scores = _case(dtype, device)
        x = rs.clone().requires_grad_()
        loss = drkd.instance_relation_paper_loss(x, rt, offsets, scores, alpha=12.0, mask_columns=True)
        loss.backward()
        results.append((loss.cpu(), x.grad.cpu()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
