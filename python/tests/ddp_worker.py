"""Worker of test_ddp.py: one of two CPU processes (gloo) training a student under
DistributedDataParallel with a kdloss loss; compares the DDP gradients with one process on the whole
batch. Raises (and so fails the test) on any mismatch."""

import datetime
import os
import sys

import torch
import torch.distributed as dist


def _models(seed):
    torch.manual_seed(seed)
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv2d(8, 8, 1)).double()
    return student


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


def run(rank, world, init_file, python_dir, tests_dir):
    sys.path[:0] = [python_dir, tests_dir]
    import kdloss_torch as kd
    import reference_impl as ref

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        gen = torch.Generator().manual_seed(7)
        batch = 4
        x = torch.randn(batch, 3, 8, 6, dtype=torch.float64, generator=gen)
        teacher = torch.randn(batch, 8, 8, 6, dtype=torch.float64, generator=gen)
        logits_t = torch.randn(batch, 8, 8, 6, dtype=torch.float64, generator=gen)
        shard = slice(rank * batch // world, (rank + 1) * batch // world)

        def check(name, loss_fn, expect_factor):
            """DDP gradient (mean over ranks of the per-shard gradients) against one process on the
            whole batch, times expect_factor."""
            model = _models(1)
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            loss_fn(ddp(x[shard]), shard).backward()
            got = _grads(model)
            whole = _models(1)
            loss_fn(whole(x), slice(0, batch)).backward()
            want = _grads(whole)
            for g, w in zip(got, want):
                err = (g - expect_factor * w).abs().max().item()
                scale = w.abs().max().item()
                if err > 1e-12 * max(scale, 1e-30):
                    raise AssertionError("%s: DDP gradient differs from the whole-batch one by %.3e (scale %.3e)"
                                         % (name, err, scale))

        # mean over elements: every rank's mean has 1/(numel/world); DDP averages over world ranks
        check("mse mean", lambda out, sl: kd.mse_loss(out, teacher[sl]), 1.0)
        check("smooth_l1 mean", lambda out, sl: kd.smooth_l1_loss(out, teacher[sl], 0.5), 1.0)
        # batchmean divides by the local batch: the same argument
        check("kl batchmean", lambda out, sl: kd.kl_div_loss(out, logits_t[sl], 1, 2.0), 1.0)
        # sum: DDP's averaging divides the whole-batch gradient by the world size
        check("l1 sum", lambda out, sl: kd.l1_loss(out, teacher[sl], "sum"), 1.0 / world)

        # Batch-coupled norms (torch.dist, FBKD's sqrt of a sum over the batch) do not split over
        # shards: DDP gives the mean of per-shard gradients, exactly as the PyTorch reference does
        # under DDP (what mmrazor users get when they train FBKD on several GPUs).
        cfg = kd.fbkd.Config.paper_two_stage()
        grads = []
        for impl in ("kdloss", "reference"):
            model = _models(1)
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            out = ddp(x[shard])
            if impl == "kdloss":
                loss = kd.fbkd.total_loss([kd.fbkd.Level(out, teacher[shard])], cfg)
            else:
                loss = ref.fbkd_total([(out, teacher[shard], None, None, None)], cfg)
            loss.backward()
            grads.append(_grads(model))
        for g, w in zip(*grads):
            err = (g - w).abs().max().item()
            if err > 1e-10 * max(w.abs().max().item(), 1e-30):
                raise AssertionError("fbkd total under DDP: kdloss and reference differ by %.3e" % err)
        dist.barrier()
    finally:
        dist.destroy_process_group()
