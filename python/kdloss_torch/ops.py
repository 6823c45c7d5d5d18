"""Building blocks with their own backward (kdloss/ops): softmax, log_softmax, channel / position means."""

import torch
from torch.autograd.function import once_differentiable

from . import _C

__all__ = ["softmax", "log_softmax", "mean_over_channels", "mean_over_positions"]


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, log, x, axis, temperature, scale):
        y = _C.ops_softmax(log, x, axis, temperature, scale)
        ctx.log, ctx.axis, ctx.temperature, ctx.scale = log, axis, temperature, scale
        if ctx.needs_input_grad[1]:
            ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return None, _C.ops_softmax_backward(ctx.log, y, grad_y, ctx.axis, ctx.temperature, ctx.scale), None, None, None


def softmax(x, axis, temperature=1.0, scale=1.0):
    """kdloss::ops::softmax: scale * softmax(x / temperature) along `axis` (in [0, rank))."""
    return _Softmax.apply(False, x, int(axis), float(temperature), float(scale))


def log_softmax(x, axis, temperature=1.0):
    """kdloss::ops::log_softmax: log softmax(x / temperature) along `axis` (in [0, rank))."""
    return _Softmax.apply(True, x, int(axis), float(temperature), 1.0)


class _Pool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, op, x, absolute):
        ctx.op, ctx.absolute = op, absolute
        if ctx.needs_input_grad[1]:
            ctx.save_for_backward(x)
        return _C.ops_pool(op, x, absolute)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return None, _C.ops_pool_backward(ctx.op, x, grad_out, ctx.absolute), None


def mean_over_channels(x, absolute=False):
    """kdloss::ops::mean_over_channels: [B,C,H,W] -> [B,1,H,W], the mean (of |x| when `absolute`) over C."""
    return _Pool.apply("mean_over_channels", x, bool(absolute))


def mean_over_positions(x, absolute=False):
    """kdloss::ops::mean_over_positions: [B,C,H,W] -> [B,C], the mean (of |x| when `absolute`) over H, W."""
    return _Pool.apply("mean_over_positions", x, bool(absolute))
