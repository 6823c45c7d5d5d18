"""CUDA cases of kdloss_torch.detr's DETRDistill part (run by scripts/gpu_check.sh on a GPU machine; skipped here):
the HungarianMatcher on CUDA tensors gives the CPU's (scipy's) indices and stays on the device with to_cpu=False;
the DETRDistill losses, host-only in this version, reject CUDA tensors with a clear error."""

import pytest
import torch

import kdloss_torch
import kdloss_torch.detr as kdetr

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and kdloss_torch.cuda_backend),
                                reason="needs a CUDA device and a CUDA build of kdloss_torch")


def _make(B, Q, C, sizes, device):
    g = torch.Generator().manual_seed(0)
    outputs = {"pred_logits": torch.randn(B, Q, C, generator=g).to(device),
               "pred_boxes": torch.cat([0.2 + 0.6 * torch.rand(B, Q, 2, generator=g),
                                        0.05 + 0.3 * torch.rand(B, Q, 2, generator=g)], -1).to(device)}
    targets = [{"labels": torch.randint(0, C, (n,), generator=g).to(device),
                "boxes": torch.cat([0.2 + 0.6 * torch.rand(n, 2, generator=g),
                                    0.05 + 0.3 * torch.rand(n, 2, generator=g)], -1).to(device)} for n in sizes]
    return outputs, targets


@pytest.mark.parametrize("focal", [True, False])
def test_matcher_cuda_equals_cpu(focal):
    sizes = (20, 0, 57, 3, 100, 1, 9, 30)
    out_c, tgt_c = _make(8, 300, 91, sizes, "cpu")
    out_g, tgt_g = _make(8, 300, 91, sizes, "cuda")
    m_c = kdetr.HungarianMatcher(2, 5, 2, focal=focal)
    m_g = kdetr.HungarianMatcher(2, 5, 2, focal=focal, to_cpu=False)
    for (ci, cj), (gi, gj) in zip(m_c(out_c, tgt_c), m_g(out_g, tgt_g)):
        assert gi.is_cuda and gj.is_cuda
        assert torch.equal(ci, gi.cpu()) and torch.equal(cj, gj.cpu())


def test_distill_losses_reject_cuda_clearly():
    pt = torch.randn(6, 10, 8, device="cuda")
    with pytest.raises(kdloss_torch.KdlossError, match="host only"):
        kdetr.contrastive_query_loss(pt, pt.clone())
