"""Building blocks with their own backward (kdloss/ops): softmax, log_softmax, channel / position means."""

from . import _C
from ._function import Loss

__all__ = ["softmax", "log_softmax", "mean_over_channels", "mean_over_positions"]

# The generic Function over each binding (python/csrc/ops.cpp). Their values are maps, so the
# backward always runs the backward entry with grad_output (softmax's reads the kept y).
_softmax = Loss(_C.ops_softmax, fuse=False)
_log_softmax = Loss(_C.ops_log_softmax, fuse=False)
_mean_over_channels = Loss(_C.ops_mean_over_channels, fuse=False)
_mean_over_positions = Loss(_C.ops_mean_over_positions, fuse=False)


def softmax(x, axis, temperature=1.0, scale=1.0):
    """kdloss::ops::softmax: scale * softmax(x / temperature) along `axis` (in [0, rank))."""
    return _softmax(x, axis=int(axis), temperature=float(temperature), scale=float(scale))


def log_softmax(x, axis, temperature=1.0):
    """kdloss::ops::log_softmax: log softmax(x / temperature) along `axis` (in [0, rank))."""
    return _log_softmax(x, axis=int(axis), temperature=float(temperature))


def mean_over_channels(x, absolute=False):
    """kdloss::ops::mean_over_channels: [B,C,H,W] -> [B,1,H,W], the mean (of |x| when `absolute`) over C."""
    return _mean_over_channels(x, absolute=bool(absolute))


def mean_over_positions(x, absolute=False):
    """kdloss::ops::mean_over_positions: [B,C,H,W] -> [B,C], the mean (of |x| when `absolute`) over H, W."""
    return _mean_over_positions(x, absolute=bool(absolute))
