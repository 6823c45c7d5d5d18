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


# ---- Python argument names (kdloss_torch._common.python_names) ----
kss = kd.ssim


def test_rename_quoted_replaces_whole_quoted_names_only():
    from kdloss_torch._common import rename_quoted
    names = {"student": "X", "window_size": "win_size", "k1": "K[0]"}
    assert rename_quoted("f: argument 'student' of the student [2] and 'students[0]' and 'student_logits'", names) == (
        "f: argument 'X' of the student [2] and 'students[0]' and 'student_logits'")
    assert rename_quoted("f: argument 'options.window_size' is 4, option 'k1', value 'student'", names) == (
        "f: argument 'win_size' is 4, option 'K[0]', value 'X'")
    assert rename_quoted("f: nothing quoted: student window_size", names) == "f: nothing quoted: student window_size"
    assert rename_quoted("f: 'student'", {}) == "f: 'student'"


def test_pytorch_msssim_functions_use_their_names():
    x = torch.rand(1, 1, 16, 16)
    for fn in (kss.ssim_index, kss.ms_ssim):
        name = fn.__name__
        assert message(lambda: fn(x, torch.rand(1, 1, 16, 15))) == (
            "kdloss::%s: arguments 'X' [1, 1, 16, 16] and 'Y' [1, 1, 16, 15] must have the same shape" % name)
        assert message(lambda: fn(x, x, win_size=4)) == "kdloss::%s: argument 'win_size' must be odd but is 4" % name
        assert message(lambda: fn(x, x, win_sigma=-1)) == (
            "kdloss::%s: argument 'win_sigma' must be finite and > 0 but is -1" % name)
        assert message(lambda: fn(x, x, K=(-1, 0.03))) == (
            "kdloss::%s: option 'K[0]' must be finite and > 0 but is -1" % name)
        assert message(lambda: fn(x, x, K=(0.01, 0))) == (
            "kdloss::%s: option 'K[1]' must be finite and > 0 but is 0" % name)
    assert message(lambda: kss.SSIMIndex(win_size=5)(x, x[..., :15])).startswith("kdloss::ssim_index: arguments 'X'")
    assert message(lambda: kss.MS_SSIM(win_size=4)(x, x)) == "kdloss::ms_ssim: argument 'win_size' must be odd but is 4"
    # the mixture keeps student / teacher and renames the pytorch-msssim options
    assert message(lambda: kss.ms_ssim_l1_loss(x, x, win_size=4)) == (
        "kdloss::ms_ssim_l1_loss: argument 'win_size' must be odd but is 4")
    assert message(lambda: kss.ms_ssim_l1_loss(x, x[..., :15])).startswith(
        "kdloss::ms_ssim_l1_loss: arguments 'student' [1, 1, 16, 16] and 'teacher'")
    assert message(lambda: kss.ms_ssim_l1_loss(x, x, win_sigma=0)) == (
        "kdloss::ms_ssim_l1_loss: argument 'win_sigma' must be finite and > 0 but is 0")


def test_kornia_functions_use_their_names():
    x = torch.rand(1, 1, 16, 16)
    assert message(lambda: kss.ssim(x, torch.rand(1, 1, 16, 15), 11)) == (
        "kdloss::ssim_map: arguments 'img1' [1, 1, 16, 16] and 'img2' [1, 1, 16, 15] must have the same shape")
    assert message(lambda: kss.SSIM(4)(x, x)) == "kdloss::ssim_map: argument 'window_size' must be odd but is 4"
    # names that agree stay: ssim_loss(student, teacher, window_size), kl_div_loss(student_logits, ...)
    assert message(lambda: kss.ssim_loss(x, x[..., :15])).startswith("kdloss::ssim_loss: arguments 'student'")
    assert message(lambda: kd.kl_div_loss(x, x[..., :15], 1)).startswith(
        "kdloss::kl_div_loss: arguments 'student_logits' [1, 1, 16, 16] and 'teacher_logits'")


def test_every_function_whose_python_names_differ_has_a_table():
    """The public functions whose parameters differ from the C++ names carry a rename table."""
    import inspect
    for fn in (kss.ssim, kss.ssim_index, kss.ms_ssim, kss.ms_ssim_l1_loss):
        params = set(inspect.signature(fn).parameters)
        assert params.isdisjoint(set(fn.python_names)) and set(fn.python_names.values()) & params
    for fn in (kss.ssim_loss, kss.ssim_pyramid_loss, kd.mse_loss, kd.kl_div_loss, fbkd.masked_feature_loss):
        assert not hasattr(fn, "python_names")
        assert not {"X", "img1", "win_size"} & set(inspect.signature(fn).parameters)
