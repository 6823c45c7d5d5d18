"""Shared pieces of the kdloss_torch autograd Function (_function.py): modes, backward strategy, names."""

import contextlib
import functools
import re
import warnings

import torch


from ._C import KdlossError

# The modes of a bound entry (python/csrc/binding.hpp): kdloss::Mode::forward, backward and
# forward_backward ("fused": value and gradient in one pass).
FORWARD, BACKWARD, FUSED = 0, 1, 2

# How an autograd Function gets its gradient (see docs/pytorch.md, "Backward strategy"):
#   "fused":     the forward runs the C++ *_forward_backward entry (value and d value/d input in one
#                pass) and keeps the gradient; the backward scales it by grad_output in place (no new
#                tensor, no host synchronisation; skipped on the CPU when grad_output is exactly 1) and
#                hands it over. A second backward through the same graph (retain_graph=True) finds it
#                gone and runs the recompute path instead.
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


# ---- Python argument names in the library's messages ----
# The C++ messages name arguments as the C++ API does ('student', 'window_size', 'sigma', 'k1'); where a
# Python function names them differently (pytorch-msssim's X, Y, win_size, win_sigma, K), its rename
# table maps them, applied to every KdlossError it raises: only quoted names ('...') are replaced, whole,
# so words of the message and quoted values stay as they are. A quoted 'options.<field>' (the C++
# options struct) is looked up as <field> too.
_QUOTED = re.compile(r"'([^']*)'")


def rename_quoted(message, names):
    """`message` with every quoted name that `names` maps replaced by its Python name."""
    if not names:
        return message

    def sub(m):
        name = m.group(1)
        new = names.get(name)
        if new is None and name.startswith("options."):
            new = names.get(name[len("options."):])
        return m.group(0) if new is None else "'%s'" % new

    return _QUOTED.sub(sub, message)


def rename_error(error, names):
    """Rewrites a KdlossError's message in place with rename_quoted (the traceback stays)."""
    if isinstance(error, KdlossError) and names and error.args and isinstance(error.args[0], str):
        error.args = (rename_quoted(error.args[0], names),) + tuple(error.args[1:])
    return error


def python_names(**names):
    """Decorator: KdlossErrors raised by the function name its arguments as Python does, e.g.
    @python_names(student="X", window_size="win_size"). The table is kept as fn.python_names."""
    def wrap(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except KdlossError as e:
                rename_error(e, names)
                raise

        wrapper.python_names = dict(names)
        return wrapper

    return wrap


_warned = set()


def teacher_gets_no_grad(fn, name, tensor):
    """Teachers are constants of every kdloss loss (they run under no_grad in every reference); a
    teacher that requires grad gets None, with one warning per function and argument."""
    if isinstance(tensor, torch.Tensor) and tensor.requires_grad and (fn, name) not in _warned:
        _warned.add((fn, name))
        warnings.warn("kdloss_torch.%s: '%s' requires grad, but kdloss gives teacher tensors no gradient (None); "
                      "detach it to silence this warning" % (fn, name), stacklevel=4)


def _is_one(grad_output):
    # Only a CPU scalar can be read without synchronising with a device.
    return grad_output.device.type == "cpu" and grad_output.numel() == 1 and grad_output.item() == 1.0


def keep(ctx, grads):
    """Keeps the gradients of a fused forward for the backward. They are neither inputs nor outputs of
    the Function, so they live on ctx directly (not save_for_backward): the backward may then scale
    them in place and give them away."""
    ctx.fused_grads = list(grads)


def take(ctx, grad_output):
    """The kept gradients times grad_output (scaled in place; None entries stay None), or None when
    there are none or they were used by an earlier backward (retain_graph=True): recompute then."""
    grads = getattr(ctx, "fused_grads", None)
    if grads is None:
        return None
    ctx.fused_grads = None
    if not _is_one(grad_output):
        for g in grads:
            if g is not None:
                g.mul_(grad_output)
    return grads
