"""One generic autograd Function for every entry point bound with python/csrc/binding.hpp.

A binding (kdloss_torch._C.<name>, an _C.Entry) knows its input slots by name (tensors, lists of
tensors, lists of tuples), which gradient output belongs to which input, whether backward reads an
upstream gradient, an output of forward (`kept`) or a reserve buffer. `Loss` turns it into a
differentiable function; gradients are matched to inputs by NAME (the binding's `grads` / `grad_of`),
never by position:

    _mse = Loss(_C.feature_mse_loss)            # inputs ("student", "teacher"), grads {grad_student: student}

    def mse_loss(student, teacher, reduction="mean"):
        return _mse(student, teacher, reduction=reduction)   # keywords: option fields and params

Per call the Function asks only for the gradients of the inputs that require grad. The backward
strategy is _common's: "fused" runs forward_backward and keeps the gradients (scaled in place by
grad_output in backward), "recompute" runs forward and then backward with grad_output. Whether an
entry may fuse is the `fuse` rule given to Loss (fused gradients are those of the value itself, so
grad_output must be a scalar or act elementwise). Inputs that receive no gradient (teachers) warn once
when they require grad. KdlossErrors name arguments as the Python function does when a rename table
is given (`python_names`), in forward and in backward.
"""

import torch
from torch.autograd.function import once_differentiable

from ._C import KdlossError
from ._common import BACKWARD, FORWARD, FUSED, fused, keep, rename_error, take, teacher_gets_no_grad

__all__ = ["Loss"]


class Loss:
    """A bound entry point as a differentiable function: Loss(entry)(*inputs, options=None, **keywords).

    entry:        a kdloss_torch._C entry (python/csrc/binding.hpp).
    name:         the public name, for warnings (default: entry.fn without "kdloss_torch.").
    python_names: {C++ name: Python name} for the messages of KdlossError (see _common.python_names).
    teachers:     inputs that warn when they require grad (default: the inputs with no gradient output;
                  a group's fields by field name).
    fuse:         whether the forward_backward path may run: True, False, or a function of the keywords
                  and the set of gradients wanted (e.g. not for reduction "none" of a coupled loss).
    grads:        optional function (keywords, {slot: its tensors}) -> flat names of the gradients the entry can give
                  (the others stay None even where the input requires grad: fbkd's zero-weight terms).
    value:        the value output the Function returns (default: the entry's first output).
    """

    def __init__(self, entry, name=None, python_names=None, teachers=None, fuse=True, grads=None, value=None):
        self.entry = entry
        self.name = name or entry.fn.split(".", 1)[-1]
        self.slots = tuple(zip(entry.inputs, entry.kinds, entry.fields))
        self.kept = {x: out for x, out in zip(entry.inputs, entry.kept) if out}
        self.args = tuple(x for x in entry.inputs if x not in self.kept)  # what Python passes
        self.grad_of = dict(zip(entry.grads, entry.grad_of))  # "grad_student" -> "student"
        self.simple = all(k == "tensor" for k in entry.kinds)
        differentiable = set(entry.grad_of)
        candidates = [x for x in self.args if x not in differentiable]
        for slot, kind, fields in self.slots:
            if kind == "group":
                candidates += [f for f in fields if f not in differentiable]
        self.teachers = tuple(teachers if teachers is not None else candidates)
        self.python_names = dict(python_names or {})
        self.fuse = fuse
        self.grads = grads
        # the plain case (tensor slots only), precomputed: positions of teachers and of each gradient's input
        self.teacher_at = tuple((i, x) for i, x in enumerate(self.args) if x in self.teachers)
        self.grad_at = tuple((g, self.args.index(x)) for g, x in self.grad_of.items()) if self.simple else ()
        self.grad_at_of = dict(self.grad_at)
        self.value = value or entry.outputs[0]
        # one Function class per loss, so that grad_fn reads DistanceLossBackward
        self._function = type("".join(w.capitalize() for w in self.name.replace(".", "_").split("_")), (_Function,), {})

    def __call__(self, *inputs, options=None, fuse=True, **keywords):
        """The value. `options`: the entry's options object (None: the C++ defaults), or keywords: its
        fields and the entry's params; `fuse=False`: never the forward_backward path for this call."""
        if len(inputs) != len(self.args):
            raise TypeError("kdloss_torch.%s takes %d tensors (%s) but got %d"
                            % (self.name, len(self.args), ", ".join(self.args), len(inputs)))
        if keywords:
            options = keywords
        if self.simple and not self.kept:
            for i, x in self.teacher_at:
                teacher_gets_no_grad(self.name, x, inputs[i])
            try:
                return self._function.apply(self, options, fuse, None, *inputs)
            except KdlossError as e:
                rename_error(e, self.python_names)
                raise
        by_name = dict(zip(self.args, inputs))
        for slot, kind, fields in self.slots:
            if slot in self.kept:
                continue
            x = by_name[slot]
            if kind == "tensor":
                if slot in self.teachers:
                    teacher_gets_no_grad(self.name, slot, x)
            elif kind == "list":
                if slot in self.teachers:
                    for t in x:
                        if isinstance(t, torch.Tensor) and t.requires_grad:
                            teacher_gets_no_grad(self.name, slot, t)
                            break
            else:
                for element in x:
                    for f, t in zip(fields, element):
                        if f in self.teachers:
                            teacher_gets_no_grad(self.name, f, t)
        try:
            flat, layout = self._flatten(by_name)
            return self._function.apply(self, options, fuse, layout, *flat)
        except KdlossError as e:
            rename_error(e, self.python_names)
            raise

    def __repr__(self):
        return "Loss(%r)" % (self.entry,)

    # ---- lists and groups: the Function sees flat tensors ----

    def _flatten(self, by_name):
        flat, layout = [], []
        for slot, kind, fields in self.slots:
            if slot in self.kept:
                continue
            x = by_name[slot]
            if kind == "tensor":
                flat.append(x)
                layout.append(None)
            elif kind == "list":
                x = list(x)
                flat += x
                layout.append(len(x))
            else:
                x = [tuple(e) for e in x]
                for e in x:
                    flat += e
                layout.append(len(x))
        return flat, tuple(layout)

    def structure(self, flat, layout, kept=None):
        """(the entry's `tensors`, the flat input names) of flat Function inputs."""
        if layout is None and not self.kept:
            return flat, self.args
        tensors, names, i, k = [], [], 0, 0
        for slot, kind, fields in self.slots:
            if slot in self.kept:
                tensors.append(kept)
                continue
            n = layout[k]
            k += 1
            if kind == "tensor":
                tensors.append(flat[i])
                names.append(slot)
                i += 1
            elif kind == "list":
                tensors.append(flat[i:i + n])
                names += ["%s[%d]" % (slot, j) for j in range(n)]
                i += n
            else:
                m = len(fields)
                tensors.append([flat[i + m * j:i + m * j + m] for j in range(n)])
                names += ["%s[%d].%s" % (slot, j, f) for j in range(n) for f in fields]
                i += m * n
        return tensors, names

    def flat_grads(self, layout):
        """{flat gradient name: flat input name} for a call's layout."""
        if layout is None:
            return self.grad_of
        counts = {}
        k = 0
        for slot, kind, fields in self.slots:
            if slot not in self.kept:
                counts[slot] = layout[k]
                k += 1
        out = {}
        for g, x, slot in zip(self.entry.grads, self.entry.grad_of, self.entry.grad_slot):
            kind = dict((s, kd) for s, kd, _ in self.slots)[slot]
            if kind == "tensor":
                out[g] = x
            elif kind == "list":
                out.update(("%s[%d]" % (g, j), "%s[%d]" % (x, j)) for j in range(counts[slot]))
            else:
                out.update(("%s[%d].%s" % (slot, j, g), "%s[%d].%s" % (slot, j, x)) for j in range(counts[slot]))
        return out


class _Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, loss, options, fuse, layout, *flat):
        entry = loss.entry
        if layout is None and not loss.kept:  # tensor slots only: positions precomputed
            tensors = flat
            need = ctx.needs_input_grad
            want = [g for g, i in loss.grad_at if need[4 + i]]
        else:
            tensors, names = loss.structure(flat, layout)
            need = dict(zip(names, ctx.needs_input_grad[4:]))
            grad_of = loss.flat_grads(layout)
            want = [g for g, x in grad_of.items() if need.get(x)]
        if want and loss.grads is not None:
            allowed = loss.grads(options, dict(zip(entry.inputs, tensors)))
            want = [g for g in want if g in allowed]
        if not want:
            return entry(FORWARD, tensors, options)[loss.value]
        # where each wanted gradient goes among the Function's inputs (after loss, options, fuse, layout)
        if layout is None and not loss.kept:
            at = [4 + i for g, i in loss.grad_at if g in want] if len(want) > 1 else [4 + loss.grad_at_of[want[0]]]
        else:
            index = {x: 4 + k for k, x in enumerate(names)}
            at = [index[grad_of[g]] for g in want]
        ctx.call = (loss, options, want, layout, at, 4 + len(flat))
        rule = loss.fuse if fuse else False
        if callable(rule):
            rule = rule(options, want)
        if rule and fused():
            result = entry(FUSED, tensors, options, None, want)
            keep(ctx, [result[g] for g in want])
            ctx.save_for_backward(*flat, result.get("reserve"), None)
            return result[loss.value]
        result = entry(FORWARD, tensors, options)
        value = result[loss.value]
        ctx.save_for_backward(*flat, result.get("reserve"), value if loss.kept else None)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        loss, options, want, layout, at, n = ctx.call
        grads = take(ctx, grad_output)
        if grads is None:
            saved = ctx.saved_tensors
            flat, reserve, kept = saved[:-2], saved[-2], saved[-1]
            tensors = flat if layout is None and not loss.kept else loss.structure(flat, layout, kept)[0]
            try:
                result = loss.entry(BACKWARD, tensors, options, grad_output, want, reserve)
            except KdlossError as e:
                rename_error(e, loss.python_names)
                raise
            grads = [result[g] for g in want]
        out = [None] * n
        for k, grad in zip(at, grads):
            out[k] = grad
        return tuple(out)
