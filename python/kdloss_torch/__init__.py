"""kdloss_torch: the PyTorch bridge of kdloss (knowledge-distillation losses with analytic backward).

Every loss of the C++ library is a torch.autograd.Function with the options and defaults of its C++
entry point, plus an nn.Module per loss family:

    import kdloss_torch as kd
    loss = kd.mse_loss(student, teacher)                        # kdloss::mse_loss
    loss = kd.kl_div_loss(s_logits, t_logits, 1, temperature=4)  # kdloss::kl_div_loss
    loss = kd.fbkd.total_loss(levels, kd.fbkd.Config.code_two_stage())
    m = kd.ops.mean_over_channels(x)                            # kdloss::ops::mean_over_channels

Tensors of any strides are passed as views (no copies); workspaces come from torch's allocator; on
CUDA the current torch stream is used and nothing synchronises the host. Errors of the C++ library
raise kdloss_torch.KdlossError (a ValueError and a RuntimeError) with the library's message.
Teacher tensors get no gradient. See docs/pytorch.md.

Families (one binding file python/csrc/<family>.cpp + one module kdloss_torch/<family>.py each):
feature (top level), ops, fbkd, ssim, drkd, blocks (nn.Modules of the non-local block and GloRe with the
reference code's state_dict names), detr (a package: assignment, boxes, matchers, DETRDistill).
"""

import torch  # noqa: F401  (libtorch must be loaded before the extension)

from . import _C
from ._C import KdlossError
from ._common import backward_mode, get_backward_mode, set_backward_mode
from . import ops, fbkd, ssim, drkd, blocks, detr
from .feature import (DistanceLoss, KLDivLoss, L1Loss, MSELoss, SmoothL1Loss, distance_loss, kl_div_loss, l1_loss,
                      mse_loss, smooth_l1_loss)

#: True when this build has kdloss's CUDA backend (CUDA tensors, float16/bfloat16).
cuda_backend = bool(_C.cuda_backend)
#: Version of the kdloss headers the extension was built from.
kdloss_version = _C.kdloss_version
__version__ = "0.1.0"


def empty_host_cache():
    """Unmaps the free blocks of the host output cache and returns the bytes released.

    Large CPU outputs (32 MiB and more: a pyramid level's gradient) come from a cache of mapped
    blocks that are reused across steps instead of being page-faulted in again (docs/pytorch.md,
    "Host output cache"); like torch.cuda.empty_cache(), this gives the free ones back to the OS.
    KDLOSS_TORCH_HOST_CACHE_MB (default 1024) caps the free bytes kept; 0 turns the cache off."""
    return int(_C.empty_host_cache())


def host_cache_free_bytes():
    """Bytes of free blocks the host output cache holds (see empty_host_cache)."""
    return int(_C.host_cache_free_bytes())

__all__ = ["KdlossError", "mse_loss", "l1_loss", "smooth_l1_loss", "distance_loss", "kl_div_loss", "MSELoss",
           "L1Loss", "SmoothL1Loss", "DistanceLoss", "KLDivLoss", "ops", "fbkd", "ssim", "drkd", "blocks", "detr",
           "set_backward_mode",
           "get_backward_mode", "backward_mode", "cuda_backend", "kdloss_version", "empty_host_cache", "host_cache_free_bytes"]
