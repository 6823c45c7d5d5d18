"""Batched linear sum assignment with scipy's exact result (kdloss::ops::linear_sum_assignment).

    import kdloss_torch.detr as kdetr
    pairs = kdetr.linear_sum_assignment([c0, c1, c2])          # [(row_ind, col_ind), ...] like scipy
    row_ind, col_ind = kdetr.linear_sum_assignment(c0)          # one 2-D cost: scipy's tuple
    r, c, count, status = kdetr.linear_sum_assignment_padded(cost, rows, cols)   # no host sync on CUDA

Every problem gives exactly scipy.optimize.linear_sum_assignment's pairs (float64 arithmetic whatever
the dtype, scipy's tie rule, maximize negating first, +inf forbidden). Results are int64 tensors on
the cost's device. See docs/ops/linear_sum_assignment.md.
"""

import torch

from .. import _C

#: Per-problem status codes of linear_sum_assignment_padded.
STATUS_OK, STATUS_INFEASIBLE, STATUS_INVALID, STATUS_BAD_SIZE = 0, 1, 2, 3


def _int_arg(t):
    return None if t is None else (t.data_ptr(), list(t.shape), list(t.stride()))


def _sizes(s, B, device, name):
    if s is None:
        return None
    t = torch.as_tensor(s, dtype=torch.int64, device=device)
    if t.dim() != 1 or t.numel() != B:
        raise ValueError(f"kdloss_torch.detr.linear_sum_assignment: argument '{name}' must hold {B} sizes "
                         f"but has shape {list(t.shape)}")
    return t


def linear_sum_assignment_padded(cost, rows=None, cols=None, maximize=False):
    """Solves every problem of a padded batch; never synchronises the host.

    cost: [B, Q, T] tensor (any strides; float32/float64, float16/bfloat16 on CUDA); problem b is
    cost[b, :rows[b], :cols[b]] (rows/cols: int64 sizes, default Q and T). Returns (row_ind, col_ind,
    count, status): row_ind/col_ind int64 [B, min(Q, T)] (the pairs of problem b in [b, :count[b]],
    row_ind ascending, -1 after), count/status int64 [B] (status 0 ok, 1 infeasible, 2 NaN/-inf entry,
    3 size out of range; on the CPU entry errors raise KdlossError instead).
    """
    if cost.dim() != 3:
        raise ValueError(f"kdloss_torch.detr.linear_sum_assignment_padded: argument 'cost' must have rank 3 "
                         f"([B, Q, T]) but has shape {list(cost.shape)}")
    B, Q, T = cost.shape
    K = min(Q, T)
    dev = cost.device
    rows_t = _sizes(rows, B, dev, "rows")
    cols_t = _sizes(cols, B, dev, "cols")
    row_ind = torch.empty((B, K), dtype=torch.int64, device=dev)
    col_ind = torch.empty((B, K), dtype=torch.int64, device=dev)
    count = torch.empty((B,), dtype=torch.int64, device=dev)
    status = torch.empty((B,), dtype=torch.int64, device=dev)
    _C.detr_linear_sum_assignment(cost.detach(), _int_arg(rows_t), _int_arg(cols_t), _int_arg(row_ind),
                                  _int_arg(col_ind), _int_arg(count), _int_arg(status), bool(maximize))
    return row_ind, col_ind, count, status


def _raise_for(status):
    bad = status != STATUS_OK
    if bool(bad.any()):  # a host read: on CUDA this synchronises (check=False avoids it)
        codes = status.tolist()
        b = next(i for i, s in enumerate(codes) if s != STATUS_OK)
        what = {STATUS_INFEASIBLE: "cost matrix is infeasible", STATUS_INVALID: "matrix contains invalid numeric entries",
                STATUS_BAD_SIZE: "problem size out of range"}[codes[b]]
        raise ValueError(f"kdloss_torch.detr.linear_sum_assignment: problem {b}: {what}")


def linear_sum_assignment(cost, maximize=False, sizes=None, check=True):
    """scipy.optimize.linear_sum_assignment, batched.

    cost: a 2-D tensor (returns scipy's (row_ind, col_ind)), a list of 2-D tensors of any sizes
    (returns a list of (row_ind, col_ind)), or a padded [B, Q, T] tensor with sizes=(rows, cols)
    (per-problem sizes; default all Q x T; returns a list). row_ind is sorted, both int64 on the cost's
    device. check: raise ValueError for an infeasible problem or a NaN/-inf entry, as scipy does (on
    CUDA this reads the status on the host: pass check=False, or use linear_sum_assignment_padded, to
    stay sync-free; an unsolved problem then gives -1 pairs).
    """
    single = torch.is_tensor(cost) and cost.dim() == 2
    if single:
        cost = [cost]
    if torch.is_tensor(cost):
        padded = cost
        B = padded.shape[0]
        rows, cols = sizes if sizes is not None else (None, None)
        host_rows = [padded.shape[1]] * B if rows is None else torch.as_tensor(rows).tolist()
        host_cols = [padded.shape[2]] * B if cols is None else torch.as_tensor(cols).tolist()
    else:
        mats = list(cost)
        B = len(mats)
        if B == 0:
            return []
        for k, m in enumerate(mats):
            if not torch.is_tensor(m) or m.dim() != 2:
                raise ValueError(f"kdloss_torch.detr.linear_sum_assignment: cost[{k}] must be a 2-D tensor")
        host_rows = [m.shape[0] for m in mats]
        host_cols = [m.shape[1] for m in mats]
        dtype = mats[0].dtype
        for m in mats[1:]:
            dtype = torch.promote_types(dtype, m.dtype)
        if not dtype.is_floating_point:
            dtype = torch.float64  # scipy converts integer costs to float64
        dev = mats[0].device
        if B == 1:
            padded = mats[0].detach().to(dtype).unsqueeze(0)
        else:
            padded = torch.zeros((B, max(host_rows), max(host_cols)), dtype=dtype, device=dev)
            for k, m in enumerate(mats):
                padded[k, :m.shape[0], :m.shape[1]] = m.detach()
        rows = None if len(set(host_rows)) == 1 else host_rows
        cols = None if len(set(host_cols)) == 1 else host_cols
    row_ind, col_ind, _, status = linear_sum_assignment_padded(padded, rows, cols, maximize)
    if check:
        _raise_for(status)
    out = [(row_ind[b, :min(r, c)], col_ind[b, :min(r, c)]) for b, (r, c) in enumerate(zip(host_rows, host_cols))]
    return out[0] if single else out
