"""The generic binding (python/csrc/binding.hpp) and the generic autograd Function
(kdloss_torch/_function.py), through the entry point converted to them: distance_loss."""

import pytest
import torch

import kdloss_torch as kd
from kdloss_torch import _C, _function
from kdloss_torch._common import BACKWARD, FORWARD, FUSED

entry = _C.feature_distance_loss


def test_schema_names_inputs_outputs_and_gradients():
    assert isinstance(entry, _C.Entry)
    assert entry.fn == "kdloss_torch.distance_loss"
    assert list(entry.inputs) == ["student", "teacher"] and list(entry.optional) == [False, False]
    assert list(entry.outputs) == ["out"]
    assert list(entry.grads) == ["grad_student"] and list(entry.grad_of) == ["student"]
    assert entry.upstream and not entry.reserve and entry.has_options  # DistanceOptions (empty today)
    assert repr(entry) == "<kdloss entry kdloss_torch.distance_loss(student, teacher)>"


def test_entry_allocates_only_what_the_mode_writes():
    s, t = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    ref = torch.dist(s, t)
    out = entry(FORWARD, (s, t))
    assert set(out) == {"out"} and out["out"].shape == () and out["out"].dtype == torch.float64
    torch.testing.assert_close(out["out"], ref, rtol=1e-12, atol=0)
    fused = entry(FUSED, (s, t), want=["grad_student"])
    assert set(fused) == {"out", "grad_student"}
    torch.testing.assert_close(fused["grad_student"], (s - t) / ref, rtol=1e-12, atol=0)
    up = torch.tensor(3.0, dtype=torch.float64)
    back = entry(BACKWARD, (s, t), grad_out=up, want=["grad_student"])
    assert set(back) == {"grad_student"}
    torch.testing.assert_close(back["grad_student"], 3 * (s - t) / ref, rtol=1e-12, atol=0)


def test_gradient_outputs_keep_the_input_strides():
    s = torch.randn(2, 5, 3, 4).permute(0, 2, 3, 1)  # channel-last view, no copy
    t = torch.randn(2, 3, 4, 5)
    g = entry(FUSED, (s, t), want=["grad_student"])["grad_student"]
    assert g.stride() == torch.empty_like(s).stride()
    torch.testing.assert_close(g, (s - t) / torch.dist(s, t), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["fused", "recompute"])
def test_gradients_go_to_inputs_by_name(mode):
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, dtype=torch.float64)
    with kd.backward_mode(mode):
        loss = kd.distance_loss(s, t)
    assert type(loss.grad_fn).__name__ == "DistanceLossBackward"
    (3.0 * loss).backward()
    torch.testing.assert_close(s.grad, 3 * (s - t).detach() / torch.dist(s, t).detach(), rtol=1e-12, atol=0)
    # the input order of the Function does not matter: only names are used
    assert _function.Loss(entry).grad_of == {"grad_student": "student"}


def test_teacher_gets_none_and_one_warning():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    loss = _function.Loss(entry, name="binding_test_distance")
    with pytest.warns(UserWarning, match="binding_test_distance: 'teacher' requires grad"):
        value = loss(s, t)
    value.backward()
    assert s.grad is not None and t.grad is None


def test_no_gradient_requested_runs_forward_only():
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    value = kd.distance_loss(s, t)
    assert value.grad_fn is None
    torch.testing.assert_close(value, torch.dist(s, t))


def test_python_names_apply_in_forward_and_backward():
    loss = _function.Loss(entry, name="renamed", python_names={"student": "a", "teacher": "b"})
    with pytest.raises(kd.KdlossError, match=r"^kdloss::distance_loss: arguments 'a' \[2, 3\] and 'b' \[3, 2\]"):
        loss(torch.randn(2, 3), torch.randn(3, 2))
    s = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    with kd.backward_mode("recompute"):
        value = loss(s, torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(kd.KdlossError, match="argument 'grad_out' has dtype torch.float32 but 'a' has dtype"):
        value.grad_fn.apply(torch.ones((), dtype=torch.float32))


def test_wrong_number_of_tensors():
    with pytest.raises(TypeError, match=r"distance_loss takes 2 tensors \(student, teacher\) but got 1"):
        _function.Loss(entry)(torch.randn(2))


def test_options_class():
    g = _C.GradAccumulate(beta=1.0)
    assert g.beta == 1.0 and _C.GradAccumulate().beta == 0.0
    assert repr(g) == "GradAccumulate(beta=1.0)" and list(_C.GradAccumulate.fields) == ["beta"]
    g.beta = 0.5
    assert g.beta == 0.5
    with pytest.raises(AttributeError):
        _C.GradAccumulate(gamma=1.0)


# ---- every part of the template, through _C._testing (python/csrc/testing.cpp):
#      value = scale * sum(x * y) (or the map), y optional, grads of x and y, the scale kept in the reserve

probe = _C._testing


def test_testing_schema():
    assert list(probe.inputs) == ["x", "y"] and list(probe.optional) == [False, True]
    assert list(probe.grads) == ["grad_x", "grad_y"] and list(probe.grad_of) == ["x", "y"]
    assert probe.reserve and probe.has_options and probe.upstream
    assert list(_C._TestingOptions.fields) == ["scale", "reduce"]


@pytest.mark.parametrize("mode", ["fused", "recompute"])
@pytest.mark.parametrize("which", ["x", "y", "both"])
def test_gradients_by_name_with_two_differentiable_inputs(mode, which):
    loss = _function.Loss(probe)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=which in ("x", "both"))
    y = torch.randn(3, 4, dtype=torch.float64, requires_grad=which in ("y", "both"))
    with kd.backward_mode(mode):
        value = loss(x, y, options=_C._TestingOptions(scale=2.0))
    torch.testing.assert_close(value, 2 * (x * y).sum().detach(), rtol=1e-12, atol=0)
    (5 * value).backward()
    if which in ("x", "both"):
        torch.testing.assert_close(x.grad, 10 * y.detach(), rtol=1e-12, atol=0)
    else:
        assert x.grad is None
    if which in ("y", "both"):
        torch.testing.assert_close(y.grad, 10 * x.detach(), rtol=1e-12, atol=0)
    else:
        assert y.grad is None


def test_optional_input_none():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    value = _function.Loss(probe)(x, None)
    value.backward()
    torch.testing.assert_close(value, x.sum().detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(x.grad, torch.ones_like(x), rtol=0, atol=0)


def test_reserve_goes_from_forward_to_backward():
    x = torch.randn(4, dtype=torch.float64)
    fwd = probe(FORWARD, (x, None), _C._TestingOptions(scale=3.0))
    assert set(fwd) == {"out", "reserve"} and fwd["reserve"].dtype == torch.uint8
    # backward reads the scale forward kept (3), not the options it is given (default 1)
    back = probe(BACKWARD, (x, None), None, torch.tensor(1.0, dtype=torch.float64), ["grad_x"], fwd["reserve"])
    torch.testing.assert_close(back["grad_x"], torch.full_like(x, 3.0), rtol=0, atol=0)
    with pytest.raises(kd.KdlossError, match="argument 'reserve' is absent"):
        probe(BACKWARD, (x, None), None, torch.tensor(1.0, dtype=torch.float64), ["grad_x"])
    with pytest.raises(kd.KdlossError, match="argument 'reserve' must be the uint8 buffer"):
        probe(BACKWARD, (x, None), None, torch.tensor(1.0, dtype=torch.float64), ["grad_x"], x)
    # through the Function in recompute mode: saved with the inputs
    xg = x.clone().requires_grad_()
    with kd.backward_mode("recompute"):
        value = _function.Loss(probe)(xg, None, options=_C._TestingOptions(scale=3.0))
    value.backward()
    torch.testing.assert_close(xg.grad, torch.full_like(x, 3.0), rtol=0, atol=0)


def test_value_shaped_like_an_input_keeps_its_strides():
    x = torch.randn(3, 4, dtype=torch.float64).t()  # transposed: not contiguous
    xc = x.contiguous().requires_grad_()
    opts = _C._TestingOptions(reduce=False, scale=2.0)
    out = probe(FORWARD, (xc, None), opts)["out"]
    assert out.shape == xc.shape and out.stride() == xc.stride()
    value = _function.Loss(probe)(xc, None, options=opts, fuse=False)
    value.backward(torch.full_like(value, 0.5))
    torch.testing.assert_close(xc.grad, torch.ones_like(xc), rtol=0, atol=0)
    assert x.shape == (4, 3)


def test_bridge_checks_name_the_entry_and_argument():
    x = torch.randn(3)
    with pytest.raises(kd.KdlossError, match=r"^kdloss_torch._testing: argument 'y' has dtype torch.float64 but 'x'"):
        probe(FORWARD, (x, x.double()))
    with pytest.raises(kd.KdlossError, match=r"^kdloss_torch._testing: argument 'y' must be a torch.Tensor but is int"):
        probe(FORWARD, (x, 3))
    with pytest.raises(kd.KdlossError, match=r"^kdloss_torch._testing: argument 'x' is None but is required"):
        probe(FORWARD, (None, x))
    with pytest.raises(kd.KdlossError, match="internal: 1 tensors for 2 inputs"):
        probe(FORWARD, (x,))
    with pytest.raises(kd.KdlossError, match=r"^kdloss_torch._testing: argument 'options' must be a _TestingOptions "
                                            r"but is str"):
        probe(FORWARD, (x, None), "not options")


# ---- what the other entries need: option dicts and enums by name, params, kept outputs, lists, groups

def test_every_loss_is_a_generic_entry():
    for name in ("feature_mse_loss", "feature_l1_loss", "feature_smooth_l1_loss", "feature_kl_div_loss",
                 "ops_softmax", "ops_log_softmax", "ops_mean_over_channels", "ops_mean_over_positions",
                 "fbkd_spatial_attention", "fbkd_channel_attention", "fbkd_attention_masks",
                 "fbkd_masked_feature_loss", "fbkd_attention_transfer_loss", "fbkd_pooled_attention_transfer_loss",
                 "fbkd_total_loss", "ssim_ssim_loss", "ssim_ssim_map", "ssim_ssim_pyramid_loss", "ssim_ssim_index",
                 "ssim_ms_ssim", "ssim_ms_ssim_l1_loss"):
        assert isinstance(getattr(_C, name), _C.Entry), name
    for gone in ("feature_pointwise", "feature_kl_div", "ops_pool", "ssim_ssim", "ssim_ms", "fbkd_total"):
        assert not hasattr(_C, gone)


def test_options_from_keywords_and_enums_by_name():
    s, t = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    e = _C.feature_smooth_l1_loss
    out = e(FORWARD, (s, t), {"beta": 0.5, "reduction": "none"})["out"]
    torch.testing.assert_close(out, torch.nn.functional.smooth_l1_loss(s, t, beta=0.5, reduction="none"))
    o = _C.SmoothL1LossOptions(reduction="sum")
    assert o.reduction == "sum" and o.beta == 1.0 and repr(o) == "SmoothL1LossOptions(beta=1.0, reduction='sum')"
    o.reduction = "none"
    assert e(FORWARD, (s, t), o)["out"].shape == (2, 3)
    with pytest.raises(kd.KdlossError, match=r"^argument 'reduction' must be 'none', 'mean', 'sum' or 'batchmean' "
                                            r"but is 'avg'$"):
        o.reduction = "avg"
    with pytest.raises(kd.KdlossError, match=r"^kdloss_torch.smooth_l1_loss: argument 'beta' has the wrong type str"):
        e(FORWARD, (s, t), {"beta": "x"})
    with pytest.raises(AttributeError, match="unknown option 'gamma'"):
        e(FORWARD, (s, t), {"gamma": 1.0})
    # nested options structs (the mixture's ms_ssim) from dicts, enums with an alias ('same' = 'reflect')
    mix = _C.MsSsimL1Options(ms_ssim={"window_size": 3, "weights": [0.5, 0.5]}, l1_weight=0.3)
    assert mix.ms_ssim.window_size == 3 and list(mix.ms_ssim.weights) == [0.5, 0.5] and mix.ms_ssim.data_range == 1.0
    assert _C.SsimOptions(padding="same").padding == "reflect"
    with pytest.raises(kd.KdlossError, match=r"argument 'padding' must be 'same' \(= 'reflect'\), 'zeros' or 'valid'"):
        _C.SsimOptions(padding="circular")


def test_params_are_keywords_beside_the_options():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    e = _C.ssim_ssim_loss
    assert list(e.params) == ["reduction"] and e.options_type == "SsimOptions"
    assert e(FORWARD, (x, x), {"reduction": "none", "window_size": 3})["out"].shape == (1, 1, 8, 8)
    assert e(FORWARD, (x, x), {"reduction": "sum", "window_size": 3, "padding": "valid"})["out"].shape == ()
    assert e(FORWARD, (x, x), {"reduction": "none", "window_size": 3, "padding": "valid"})["out"].shape == (1, 1, 6, 6)
    assert list(_C.ops_softmax.params) == ["axis"]


def test_kept_output_goes_to_backward():
    e = _C.ops_softmax
    assert list(e.inputs) == ["x", "y"] and list(e.kept) == ["", "out"]
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = kd.ops.softmax(x, 1, temperature=2.0)
    assert type(y.grad_fn).__name__ == "OpsSoftmaxBackward"
    g = torch.randn(3, 4, dtype=torch.float64)
    y.backward(g)
    x2 = x.detach().clone().requires_grad_()
    torch.softmax(x2 / 2.0, 1).backward(g)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-15)


def test_lists_flatten_and_take_one_gradient_per_element():
    e = _C.ssim_ssim_pyramid_loss
    assert list(e.kinds) == ["list", "list"] and list(e.what) == ["pyramid level", "pyramid level"]
    assert list(e.grads) == ["grad_students"] and list(e.grad_slot) == ["students"]
    s = [torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    t = [torch.rand(1, 1, 8, 8, dtype=torch.float64) for _ in range(2)]
    out = e(FUSED, (s, t), {"window_size": 3}, want=["grad_students[1]"])
    assert set(out) == {"out", "grad_students[0]", "grad_students[1]"}  # the entry takes one per level
    s[0].requires_grad_(False)
    kd.ssim.ssim_pyramid_loss(s, t, 3).backward()
    assert s[0].grad is None and s[1].grad is not None
    with pytest.raises(kd.KdlossError, match=r"^kdloss_torch.ssim_pyramid_loss: argument 'students' must be a sequence"):
        e(FORWARD, (s[0], t), None)


def test_groups_name_fields_and_gradients_per_element():
    e = _C.fbkd_total_loss
    assert list(e.inputs) == ["levels"] and list(e.kinds) == ["group"]
    assert list(e.fields[0]) == ["student", "teacher", "student_adapted", "student_channel", "student_spatial"]
    assert list(e.field_optional[0]) == [True, False, True, True, True]
    assert list(e.grad_slot) == ["levels"] * 4
    s = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    t = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    cfg = {"mask_form": "paper", "transfer_form": "paper"}
    out = e(FUSED, [[(s, t, None, None, None), (s, t, None, None, None)]], cfg, want=["levels[1].grad_student"])
    assert set(out) == {"out", "levels[1].grad_student"}
    with pytest.raises(kd.KdlossError, match=r"argument 'levels\[0\].teacher' is None but is required"):
        e(FORWARD, [[(s, None, None, None, None)]], cfg)
    with pytest.raises(kd.KdlossError, match=r"argument 'config.mask_form' must be 'code' or 'paper' but is 'x'"):
        kd.fbkd.total_loss([(s, t)], kd.fbkd.Config(mask_form="x"))


def test_optional_value_outputs():
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    masks = _C.fbkd_attention_masks(FORWARD, (s, t), None, want=["mask_channel"])
    assert set(masks) == {"mask_channel"} and masks["mask_channel"].shape == (2, 3)
