"""torch.autograd.gradcheck in float64 for every wrapped loss and op and every option, small shapes,
under both backward strategies (fused forward_backward + scale, and the C++ *_backward entry).

FBKD masks are constants of the loss (detached in the reference code), so a finite difference in S
also moves the masks: S is checked with L_AM switched off (paper L_AT alone); A, C_hat and S_hat with
S fixed, as the analytic gradient defines them."""

import dataclasses

import pytest
import torch
from torch.autograd import gradcheck

import kdloss_torch as kd
from helpers import layout

fbkd = kd.fbkd
D = torch.float64


def student(shape, kind="contiguous", scale=1.0):
    return layout(scale * torch.randn(shape, dtype=D), kind).requires_grad_(True)


def check(fn, *inputs):
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss", ["mse", "l1", "smooth_l1", "smooth_l1_beta0.3", "smooth_l1_beta0"])
@pytest.mark.parametrize("kind", ["contiguous", "channels_last"])
def test_pointwise(loss, reduction, kind, backward_mode):
    t = torch.randn(2, 3, 4, 3, dtype=D)
    fn = {"mse": lambda s: kd.mse_loss(s, t, reduction), "l1": lambda s: kd.l1_loss(s, t, reduction),
          "smooth_l1": lambda s: kd.smooth_l1_loss(s, t, 1.0, reduction),
          "smooth_l1_beta0.3": lambda s: kd.smooth_l1_loss(s, t, 0.3, reduction),
          "smooth_l1_beta0": lambda s: kd.smooth_l1_loss(s, t, 0.0, reduction)}[loss]
    check(fn, student((2, 3, 4, 3), kind))


def test_distance(backward_mode):
    t = torch.randn(2, 3, 4, 3, dtype=D)
    check(lambda s: kd.distance_loss(s, t), student((2, 3, 4, 3), "channels_last"))


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean", "none"])
@pytest.mark.parametrize("shape,axis,temperature", [((4, 6), 1, 2.0), ((2, 5, 3, 2), 1, 0.7), ((3, 4, 2), 0, 1.0)])
def test_kl_div(shape, axis, temperature, reduction, backward_mode):
    t = 2 * torch.randn(shape, dtype=D)
    check(lambda s: kd.kl_div_loss(s, t, axis, temperature, reduction), student(shape, scale=2.0))


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("axis", [0, 2])
def test_softmax(log, axis):
    x = student((3, 4, 5), "transposed")
    if log:
        check(lambda v: kd.ops.log_softmax(v, axis, 0.5), x)
    else:
        check(lambda v: kd.ops.softmax(v, axis, 0.5, 3.0), x)


@pytest.mark.parametrize("absolute", [False, True])
def test_pooling(absolute):
    x = student((2, 3, 4, 5), "channels_last")
    check(lambda v: kd.ops.mean_over_channels(v, absolute), x)
    check(lambda v: kd.ops.mean_over_positions(v, absolute), x)


def test_attention_maps():
    x = student((2, 3, 4, 5))
    check(fbkd.spatial_attention, x)
    check(fbkd.channel_attention, x)


@pytest.mark.parametrize("channel_mask", [False, True])
def test_masked_feature(channel_mask, backward_mode):
    s, t = torch.randn(2, 3, 4, 5, dtype=D), torch.randn(2, 3, 4, 5, dtype=D)
    ms, mc = fbkd.attention_masks(s, t)
    check(lambda a: fbkd.masked_feature_loss(a, t, ms, mc if channel_mask else None), student((2, 3, 4, 5), "sliced"))


def test_attention_transfer(backward_mode):
    t = torch.randn(2, 3, 4, 5, dtype=D)
    check(lambda s: fbkd.attention_transfer_loss(s, t), student((2, 3, 4, 5)))
    check(lambda c, sp: fbkd.pooled_attention_transfer_loss(c, sp, t), student((2, 3)), student((2, 1, 4, 5)))


LEVELS = [(2, 3, 4, 5), (2, 3, 2, 3)]


@pytest.mark.parametrize("preset", ["code_two_stage", "code_one_stage", "paper_two_stage", "paper_one_stage"])
def test_total_wrt_adapted_inputs(preset, backward_mode):
    config = getattr(fbkd.Config, preset)()
    fixed = [(torch.randn(sh, dtype=D), torch.randn(sh, dtype=D)) for sh in LEVELS]
    inputs = []
    for b, c, h, w in LEVELS:
        inputs += [student((b, c, h, w)), student((b, c)), student((b, 1, h, w), "sliced")]

    def fn(*x):
        return fbkd.total_loss([fbkd.Level(s, t, x[3 * i], x[3 * i + 1], x[3 * i + 2])
                                for i, (s, t) in enumerate(fixed)], config)

    check(fn, *inputs)


def test_total_wrt_student_paper_transfer(backward_mode):
    config = dataclasses.replace(fbkd.Config.paper_two_stage(), w_am=0.0)
    teachers = [torch.randn(sh, dtype=D) for sh in LEVELS]
    check(lambda *s: fbkd.total_loss([fbkd.Level(si, t) for si, t in zip(s, teachers)], config),
          *[student(sh, "channels_last") for sh in LEVELS])
