"""CUDA cases of kdloss_torch.detr.linear_sum_assignment (run by scripts/gpu_check.sh on a GPU machine):
the same bits as the CPU path (and as scipy) in float32/float64/float16/bfloat16, ragged padded
batches, statuses on the device, the current stream, and capture in a CUDA graph (no host sync)."""

import numpy as np
import pytest
import torch

import kdloss_torch as kd
import kdloss_torch.detr as kdetr

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and kd.cuda_backend),
                                reason="needs a CUDA device and a CUDA build of kdloss_torch")


def _costs(seed, B, Q, T, kind):
    g = torch.Generator().manual_seed(seed)
    if kind == "ties":
        return torch.randint(0, 4, (B, Q, T), generator=g).double()
    c = torch.rand((B, Q, T), generator=g, dtype=torch.float64)
    return torch.round(c * 64) / 64  # exact in half and bfloat16: the same problem in every dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["uniform", "ties"])
@pytest.mark.parametrize("maximize", [False, True])
def test_cuda_same_bits_as_cpu(dtype, kind, maximize):
    B, Q, T = 8, 300, 100
    cost = _costs(3, B, Q, T, kind)
    rows = torch.tensor([300, 0, 17, 300, 99, 300, 1, 250])
    cols = torch.tensor([100, 5, 100, 40, 0, 100, 100, 3])
    cpu = kdetr.linear_sum_assignment_padded(cost.double(), rows, cols, maximize)
    dev = kdetr.linear_sum_assignment_padded(cost.to(dtype).cuda(), rows.cuda(), cols.cuda(), maximize)
    for a, b in zip(cpu, dev):
        assert b.device.type == "cuda"
        assert torch.equal(a, b.cpu())


def test_cuda_statuses_on_device():
    c = torch.tensor([[[np.inf, np.inf], [0.0, 1.0]], [[np.nan, 1.0], [0.0, 1.0]], [[1.0, 2.0], [3.0, 0.0]]])
    r, k, count, status = kdetr.linear_sum_assignment_padded(c.cuda())
    assert status.cpu().tolist() == [kdetr._assignment.STATUS_INFEASIBLE, kdetr._assignment.STATUS_INVALID, 0]
    assert count.cpu().tolist() == [0, 0, 2]
    assert k[2].cpu().tolist() == [0, 1]
    with pytest.raises(ValueError, match="infeasible"):
        kdetr.linear_sum_assignment(c[0].cuda())


def test_cuda_list_matches_scipy():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    mats = [rng.random((300, t)).astype(np.float32) for t in (0, 7, 100, 300)]
    got = kdetr.linear_sum_assignment([torch.from_numpy(m).cuda() for m in mats])
    for m, (r, c) in zip(mats, got):
        er, ec = scipy_optimize.linear_sum_assignment(m)
        assert np.array_equal(r.cpu().numpy(), er) and np.array_equal(c.cpu().numpy(), ec)


def test_cuda_graph_capture_and_side_stream():
    cost = _costs(5, 8, 300, 100, "uniform").float().cuda()
    ref = kdetr.linear_sum_assignment_padded(cost)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up on the side stream (allocator), then capture
        kdetr.linear_sum_assignment_padded(cost)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):  # a host synchronisation inside would make the capture fail
        out = kdetr.linear_sum_assignment_padded(cost)
    cost.copy_(_costs(5, 8, 300, 100, "uniform").float().cuda())
    g.replay()
    torch.cuda.synchronize()
    for a, b in zip(ref, out):
        assert torch.equal(a, b)
