"""A wrapped loss under torch.distributed (gloo, two CPU processes) inside DistributedDataParallel:
the gradients equal those of one process on the whole batch for mean / batchmean reductions (and
1/world_size of them for sum); batch-coupled norms (distance, FBKD) match the PyTorch reference under
DDP. See docs/pytorch.md, "Distributed training". Bounded: the processes are killed after 120 s."""

import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import ddp_worker

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(TESTS_DIR)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo "
                    "is not available in this torch build")
def test_ddp_two_cpu_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")  # loopback: no network needed
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    world = 2
    context = mp.start_processes(ddp_worker.run, args=(world, str(tmp_path / "init"), PYTHON_DIR, TESTS_DIR),
                                 nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + 120
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("DDP workers did not finish within 120 s")
    finally:
        for p in context.processes:
            if p.is_alive():
                p.kill()
                p.join(5)
