"""Shared test helpers: layouts with the same values, tolerances, pyramid shapes."""

import torch

#: P2-P5 of an 800x1333 input, batch 2, C = 256 (the design's detection shapes).
PYRAMID = [(2, 256, 200, 334), (2, 256, 100, 167), (2, 256, 50, 84), (2, 256, 25, 42)]
#: A small pyramid with the same structure, for double precision and gradcheck-sized work.
SMALL_PYRAMID = [(2, 8, 12, 10), (2, 8, 6, 5), (2, 8, 3, 3), (2, 8, 2, 1)]

#: fp32 1e-5 and fp64 1e-10 relative (DESIGN.md and the issue).
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}

LAYOUTS = ["contiguous", "channels_last", "sliced", "transposed"]


def layout(x, kind):
    """The same values as x in another memory layout (a non-contiguous view for every kind but
    'contiguous'); requires_grad is kept off (callers set it)."""
    x = x.detach()
    if kind == "contiguous":
        return x.clone()
    if kind == "channels_last":
        assert x.dim() == 4
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "sliced":  # every other element of a wider buffer along the last dim, offset by one
        shape = list(x.shape)
        wide = torch.full(shape[:-1] + [2 * shape[-1] + 1], float("nan"), dtype=x.dtype, device=x.device)
        view = wide[..., 1::2]
        view.copy_(x)
        return view
    if kind == "transposed":  # stored with the first two dims swapped
        return x.transpose(0, 1).contiguous().transpose(0, 1)
    raise ValueError(kind)


def leaf(x):
    return x.detach().requires_grad_(True)


def assert_rel(actual, expected, rtol, what=""):
    """max |actual - expected| <= rtol * max |expected| (norm-wise relative error, in double)."""
    a, e = actual.detach().double(), expected.detach().double()
    assert a.shape == e.shape, "%s: shape %s vs %s" % (what, tuple(a.shape), tuple(e.shape))
    err = (a - e).abs().max().item() if a.numel() else 0.0
    scale = e.abs().max().item() if e.numel() else 0.0
    assert err <= rtol * scale + 1e-300, "%s: max abs error %.3e > %.1e * max |expected| %.3e (relative %.3e)" % (
        what, err, rtol, scale, err / scale if scale else float("inf"))
