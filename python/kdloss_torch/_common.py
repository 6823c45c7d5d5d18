"""Shared pieces of the kdloss_torch autograd Functions."""

import contextlib
import warnings

import torch

from . import _C

FORWARD, BACKWARD, FUSED = 0, 1, 2

# How an autograd Function gets its gradient (see docs/pytorch.md, "Backward strategy"):
#   "fused":     the forward runs the C++ *_forward_backward entry (value and d value/d input in one
#                pass) and keeps the gradient; the backward multiplies it by grad_output (one torch
#                multiply on the device, no host synchronisation).
#   "recompute": the forward runs the value only and keeps the inputs; the backward runs the C++
#                *_backward entry with grad_output as a device view.
_backward_mode = "fused"


def get_backward_mode():
    """The current backward strategy: "fused" (default) or "recompute"."""
    return _backward_mode


def set_backward_mode(mode):
    """Selects the backward strategy of every kdloss_torch Function created afterwards."""
    global _backward_mode
    if mode not in ("fused", "recompute"):
        raise ValueError("kdloss_torch.set_backward_mode: mode must be 'fused' or 'recompute' but is %r" % (mode,))
    _backward_mode = mode


@contextlib.contextmanager
def backward_mode(mode):
    """Context manager: `with kdloss_torch.backward_mode("recompute"): ...`."""
    previous = get_backward_mode()
    set_backward_mode(mode)
    try:
        yield
    finally:
        set_backward_mode(previous)


def fused():
    return _backward_mode == "fused"


_warned = set()


def teacher_gets_no_grad(fn, name, tensor):
    """Teachers are constants of every kdloss loss (they run under no_grad in every reference); a
    teacher that requires grad gets None, with one warning per function and argument."""
    if isinstance(tensor, torch.Tensor) and tensor.requires_grad and (fn, name) not in _warned:
        _warned.add((fn, name))
        warnings.warn("kdloss_torch.%s: '%s' requires grad, but kdloss gives teacher tensors no gradient (None); "
                      "detach it to silence this warning" % (fn, name), stacklevel=4)


def scale(grad, grad_output):
    """grad * grad_output, or None."""
    return None if grad is None else grad * grad_output
