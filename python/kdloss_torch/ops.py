"""Building blocks with their own backward (kdloss/ops): softmax, log_softmax, channel / position means,
roi_align (a drop-in for torchvision.ops.roi_align, with mmcv's max mode)."""

import torch

from . import _C
from ._function import Loss

__all__ = ["softmax", "log_softmax", "mean_over_channels", "mean_over_positions", "roi_align"]

# The generic Function over each binding (python/csrc/ops.cpp). Their values are maps, so the
# backward always runs the backward entry with grad_output (softmax's reads the kept y).
_softmax = Loss(_C.ops_softmax, fuse=False)
_log_softmax = Loss(_C.ops_log_softmax, fuse=False)
_mean_over_channels = Loss(_C.ops_mean_over_channels, fuse=False)
_mean_over_positions = Loss(_C.ops_mean_over_positions, fuse=False)
# boxes receive no gradient (as in torchvision) and do not warn when they require one
_roi_align = Loss(_C.ops_roi_align, fuse=False, teachers=())


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


def _roi_format(boxes, input):
    """torchvision's convert_boxes_to_roi_format: a list of per-image [k_i, 4] tensors -> [K, 5] rows
    (image index, x1, y1, x2, y2); a [K, 5] tensor as it is."""
    if isinstance(boxes, torch.Tensor):
        return boxes
    if not isinstance(boxes, (list, tuple)):
        raise TypeError("kdloss_torch.ops.roi_align: boxes must be a [K, 5] tensor or a list of [k_i, 4] tensors, "
                        "got %s" % type(boxes).__name__)
    for i, b in enumerate(boxes):
        if not isinstance(b, torch.Tensor) or b.dim() != 2 or b.size(1) != 4:
            raise ValueError("kdloss_torch.ops.roi_align: boxes[%d] must be a [k, 4] tensor, got %s"
                             % (i, tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__))
    if len(boxes) == 0:
        return torch.empty(0, 5, dtype=input.dtype, device=input.device)
    concat = torch.cat([b.detach() for b in boxes], dim=0)
    ids = torch.cat([torch.full((b.size(0), 1), float(i), dtype=concat.dtype, device=concat.device)
                     for i, b in enumerate(boxes)], dim=0)
    return torch.cat([ids, concat], dim=1)


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, pool_mode="avg"):
    """kdloss::ops::roi_align, a drop-in for torchvision.ops.roi_align(input, boxes, output_size,
    spatial_scale, sampling_ratio, aligned): input [B, C, H, W]; boxes a [K, 5] tensor (image index, x1,
    y1, x2, y2) or a list of B per-image [k_i, 4] tensors; output_size an int or (h, w). Returns
    [K, C, h, w] and differentiates to `input` with a deterministic backward (same bits on every run).
    pool_mode="max" is mmcv's RoIAlign(pool_mode='max') (docs/ops/roi_align.md)."""
    if isinstance(output_size, int):
        h = w = output_size
    else:
        h, w = output_size
    rois = _roi_format(boxes, input)
    return _roi_align(input, rois, output_height=int(h), output_width=int(w), spatial_scale=float(spatial_scale),
                      sampling_ratio=int(sampling_ratio), aligned=bool(aligned), pool_mode=pool_mode)
