"""Errors: every kdloss::Error surfaces as kdloss_torch.KdlossError with the C++ message unchanged;
the bridge's own checks (dtype, device, argument types) raise the same type in the same style."""

import pytest
import torch

import kdloss_torch as kd

fbkd = kd.fbkd


def message(fn):
    with pytest.raises(kd.KdlossError) as info:
        fn()
    return str(info.value)


def test_error_type_is_value_error_and_runtime_error():
    assert issubclass(kd.KdlossError, ValueError) and issubclass(kd.KdlossError, RuntimeError)
    s, t = torch.randn(2, 3), torch.randn(3, 2)
    with pytest.raises(ValueError):
        kd.mse_loss(s, t)
    with pytest.raises(RuntimeError):
        kd.mse_loss(s, t)


def test_cpp_messages_are_unchanged():
    s = torch.randn(2, 3, 4, 4)
    # the example of docs/conventions.md, word for word
    assert message(lambda: kd.mse_loss(s, torch.randn(2, 3, 4, 3))) == (
        "kdloss::mse_loss: arguments 'student' [2, 3, 4, 4] and 'teacher' [2, 3, 4, 3] must have the same shape")
    # with a gradient requested the fused entry point reports it
    assert message(lambda: kd.mse_loss(s.requires_grad_(), torch.randn(2, 3, 4, 3))).startswith(
        "kdloss::mse_loss_forward_backward: arguments 'student' [2, 3, 4, 4] and 'teacher'")
    s = s.detach()
    assert message(lambda: kd.mse_loss(s, s, "batchmean")) == (
        "kdloss::mse_loss: argument 'reduction' is batchmean, which only kl_div offers; use mean, sum or none")
    assert message(lambda: kd.smooth_l1_loss(s, s, -1.0)) == (
        "kdloss::smooth_l1_loss: argument 'beta' must be >= 0 but is -1")
    assert message(lambda: kd.kl_div_loss(s, s, 5)).startswith("kdloss::kl_div_loss: ")
    assert message(lambda: kd.ops.softmax(s, 4)) == "kdloss::ops::softmax: argument 'axis' is 4 but 'x' has shape [2, 3, 4, 4]"
    assert message(lambda: kd.ops.mean_over_channels(s[0])) == (
        "kdloss::ops::mean_over_channels: argument 'x' must have rank 4 but has shape [3, 4, 4]")


def test_fbkd_messages():
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert message(lambda: fbkd.total_loss([(s, t)], fbkd.Config(spatial_temperature=-1))) == (
        "kdloss::fbkd::total_loss: argument 'config.spatial_temperature' must be > 0 and finite but is -1")
    assert message(lambda: fbkd.total_loss([(s, t)])).startswith(
        "kdloss::fbkd::total_loss: argument 'levels[0].student_channel' is absent but the code-form L_AT needs it")
    assert "'levels[1].student' [2, 3, 2, 2] and 'levels[1].teacher' [2, 3, 2, 1] must have the same shape" in message(
        lambda: fbkd.total_loss([(s, t), (torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 1))], fbkd.Config.paper_two_stage()))
    assert message(lambda: fbkd.attention_masks(s, t, fbkd.MaskOptions("x"))) == (
        "kdloss_torch.fbkd.attention_masks: argument 'form' must be 'code' or 'paper' but is 'x'")
    assert message(lambda: fbkd.total_loss([], fbkd.Config())) == (
        "kdloss_torch.fbkd.total_loss: argument 'levels' is empty; pass at least one pyramid level")


def test_bridge_checks():
    s = torch.randn(2, 3, 4)
    assert message(lambda: kd.mse_loss(s, s.double())) == (
        "kdloss_torch.mse_loss: argument 'teacher' has dtype torch.float64 but 'student' has dtype torch.float32; "
        "pass both in one dtype")
    assert message(lambda: kd.l1_loss(s, s.long())) == (
        "kdloss_torch.l1_loss: argument 'teacher' has dtype torch.int64; kdloss takes float32 and float64 (and "
        "float16/bfloat16 on CUDA)")
    assert message(lambda: kd.mse_loss(s, 3)) == "kdloss_torch.mse_loss: argument 'teacher' must be a torch.Tensor but is int"
    assert message(lambda: kd.mse_loss(s, s, "avg")) == (
        "kdloss_torch.mse_loss: argument 'reduction' must be 'none', 'mean', 'sum' or 'batchmean' but is 'avg'")
    big = torch.zeros([1] * 7)
    assert message(lambda: kd.mse_loss(big, big)) == (
        "kdloss_torch.mse_loss: argument 'student' has 7 dimensions; kdloss views have at most 6")
    meta = torch.zeros(2, 3, device="meta")
    assert message(lambda: kd.distance_loss(meta, meta)) == (
        "kdloss_torch.distance_loss: argument 'student' is on device meta; kdloss runs on CPU and CUDA tensors")
    sparse = torch.eye(3).to_sparse()
    assert "must be a strided (dense) tensor" in message(lambda: kd.mse_loss(sparse, sparse))


def test_half_on_cpu():
    s = torch.randn(2, 3).half()
    if kd.cuda_backend:  # the C++ host backend refuses half views itself
        assert "half and bfloat16 views are supported on the GPU only" in message(lambda: kd.mse_loss(s, s))
    else:
        assert message(lambda: kd.mse_loss(s, s)).startswith(
            "kdloss_torch.mse_loss: argument 'student' has dtype torch.float16; float16 and bfloat16 run on CUDA "
            "tensors in a CUDA build of kdloss_torch only")


def test_error_in_backward_propagates():
    """A kdloss error raised by the recompute backward (here: a grad_output of another dtype, which
    only a hand-made backward call can produce) reaches the caller as KdlossError."""
    s, t = torch.randn(2, 3, dtype=torch.float64, requires_grad=True), torch.randn(2, 3, dtype=torch.float64)
    with kd.backward_mode("recompute"):
        out = kd.l1_loss(s, t, "none")
    with pytest.raises(kd.KdlossError, match="argument 'grad_out' has dtype torch.float32"):
        out.grad_fn.apply(torch.ones(2, 3, dtype=torch.float32))
