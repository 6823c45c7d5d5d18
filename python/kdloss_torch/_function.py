"""One generic autograd Function for every entry point bound with python/csrc/binding.hpp.

A binding (kdloss_torch._C.<name>, an _C.Entry) knows its tensor inputs by name, which gradient output
belongs to which input, whether backward reads an upstream gradient and whether forward keeps a
reserve buffer. `Loss` turns it into a differentiable function; gradients are matched to inputs by
NAME (the binding's `grads` / `grad_of`), never by position:

    _distance = Loss(_C.feature_distance_loss)      # inputs ("student", "teacher"), grads {grad_student: student}

    def distance_loss(student, teacher):
        return _distance(student, teacher)

Per call the Function asks only for the gradients of the inputs that require grad. The backward
strategy is _common's: "fused" runs forward_backward and keeps the gradients (scaled in place by
grad_output in backward), "recompute" runs forward and then backward with grad_output. Inputs that
receive no gradient (teachers) warn once when they require grad. KdlossErrors name arguments as the
Python function does when a rename table is given (`python_names`), in forward and in backward.
"""

import torch
from torch.autograd.function import once_differentiable

from ._C import KdlossError
from ._common import BACKWARD, FORWARD, FUSED, fused, keep, rename_error, take, teacher_gets_no_grad

__all__ = ["Loss"]


class Loss:
    """A bound entry point as a differentiable function: Loss(entry)(*tensors, options=None).

    entry:        a kdloss_torch._C entry (python/csrc/binding.hpp).
    name:         the public name, for warnings (default: entry.fn without "kdloss_torch.").
    python_names: {C++ name: Python name} for the messages of KdlossError (see _common.python_names).
    teachers:     inputs that warn when they require grad (default: the inputs with no gradient output).
    """

    def __init__(self, entry, name=None, python_names=None, teachers=None):
        self.entry = entry
        self.name = name or entry.fn.split(".", 1)[-1]
        self.inputs = tuple(entry.inputs)
        self.grad_of = dict(zip(entry.grads, entry.grad_of))  # "grad_student" -> "student"
        differentiable = set(self.grad_of.values())
        self.teachers = tuple(teachers if teachers is not None else (x for x in self.inputs if x not in differentiable))
        self.python_names = dict(python_names or {})
        # one Function class per loss, so that grad_fn reads DistanceLossBackward
        self._function = type("".join(w.capitalize() for w in self.name.replace(".", "_").split("_")), (_Function,), {})

    def __call__(self, *tensors, options=None, fuse=True):
        """The value. `options`: the entry's options object (None: the C++ defaults); `fuse=False`: never
        the forward_backward path for this call (when grad_output does not just scale the gradient)."""
        if len(tensors) != len(self.inputs):
            raise TypeError("kdloss_torch.%s takes %d tensors (%s) but got %d"
                            % (self.name, len(self.inputs), ", ".join(self.inputs), len(tensors)))
        for name, t in zip(self.inputs, tensors):
            if name in self.teachers:
                teacher_gets_no_grad(self.name, name, t)
        try:
            return self._function.apply(self, options, fuse, *tensors)
        except KdlossError as e:
            rename_error(e, self.python_names)
            raise

    def __repr__(self):
        return "Loss(%r)" % (self.entry,)


class _Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, loss, options, fuse, *tensors):
        need = dict(zip(loss.inputs, ctx.needs_input_grad[3:]))
        want = [g for g, x in loss.grad_of.items() if need[x]]
        entry = loss.entry
        if not want:
            return entry(FORWARD, tensors, options)["out"]
        ctx.loss, ctx.options, ctx.want = loss, options, want
        if fuse and fused():
            result = entry(FUSED, tensors, options, want=want)
            keep(ctx, [result[g] for g in want])
        else:
            result = entry(FORWARD, tensors, options)
        ctx.save_for_backward(*tensors, result.get("reserve"))
        return result["out"]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        loss = ctx.loss
        grads = take(ctx, grad_output)
        if grads is None:
            *tensors, reserve = ctx.saved_tensors
            try:
                result = loss.entry(BACKWARD, tensors, ctx.options, grad_output, ctx.want, reserve)
            except KdlossError as e:
                rename_error(e, loss.python_names)
                raise
            grads = [result[g] for g in ctx.want]
        by_input = {loss.grad_of[g]: grad for g, grad in zip(ctx.want, grads)}
        return (None, None, None) + tuple(by_input.get(x) for x in loss.inputs)
