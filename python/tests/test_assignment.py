"""kdloss_torch.detr.linear_sum_assignment against scipy.optimize.linear_sum_assignment (the real one,
installed here): identical pairs on thousands of random problems (square, rectangular both ways,
float32 and float64, tie-heavy 0..3 integers, duplicated rows/columns, all-equal, maximize, +inf
patterns), the same error conditions (infeasible, NaN/-inf), empty problems, the padded form."""

import numpy as np
import pytest
import torch

scipy_optimize = pytest.importorskip("scipy.optimize")
import kdloss_torch.detr as kdetr  # noqa: E402

lsa_scipy = scipy_optimize.linear_sum_assignment


def _scipy(c, maximize):
    try:
        r, k = lsa_scipy(c, maximize=maximize)
        return "ok", r, k
    except ValueError as e:
        return str(e), None, None


def _make(rng, kind, n, m, dtype):
    if kind == "uniform":
        c = rng.random((n, m))
    elif kind == "ties":
        c = rng.integers(0, 4, (n, m)).astype(float)
    elif kind == "equal":
        c = np.full((n, m), 2.5)
    elif kind == "dup":
        c = rng.integers(0, 10, (n, m)).astype(float)
        if n > 1:
            c[-1] = c[0]
        if m > 1:
            c[:, -1] = c[:, 0]
    elif kind == "inf":
        c = rng.integers(0, 4, (n, m)).astype(float)
        c[rng.random((n, m)) < 0.25] = np.inf
    else:  # wide range with repeats
        c = np.round(rng.normal(size=(n, m)) * 3) / 2
    return c.astype(dtype)


KINDS = ["uniform", "ties", "equal", "dup", "inf", "halves"]


def _check_batch(mats, maximize):
    """One batched call over `mats` (numpy arrays) against scipy per matrix."""
    expected = [_scipy(c, maximize) for c in mats]
    if any(e[0] != "ok" for e in expected):
        return expected, None
    got = kdetr.linear_sum_assignment([torch.from_numpy(c) for c in mats], maximize=maximize)
    for (_, r, k), (gr, gk) in zip(expected, got):
        assert gr.dtype == torch.int64 and gk.dtype == torch.int64
        np.testing.assert_array_equal(gr.numpy(), r)
        np.testing.assert_array_equal(gk.numpy(), k)
    return expected, got


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_thousands_of_random_problems_match_scipy(dtype):
    rng = np.random.default_rng(2024 if dtype == np.float64 else 7)
    problems = 0
    for rep in range(220):
        kind = KINDS[rep % len(KINDS)]
        maximize = (rep // len(KINDS)) % 2 == 1 and kind != "inf"
        mats = []
        for _ in range(8):
            n, m = int(rng.integers(1, 13)), int(rng.integers(1, 13))
            mats.append(_make(rng, kind, n, m, dtype))
        expected, got = _check_batch(mats, maximize)
        if got is None:  # some problem is infeasible: solve one by one, errors compared
            for c in mats:
                e = _scipy(c, maximize)
                if e[0] == "ok":
                    gr, gk = kdetr.linear_sum_assignment(torch.from_numpy(c), maximize=maximize)
                    np.testing.assert_array_equal(gr.numpy(), e[1])
                    np.testing.assert_array_equal(gk.numpy(), e[2])
                else:
                    with pytest.raises(ValueError, match="infeasible"):
                        kdetr.linear_sum_assignment(torch.from_numpy(c), maximize=maximize)
        problems += len(mats)
    assert problems >= 1700


def test_detr_sizes_match_scipy():
    rng = np.random.default_rng(1)
    for Q, T in [(300, 100), (100, 300), (300, 300), (64, 7)]:
        for kind in ["uniform", "ties"]:
            for dtype in (np.float32, np.float64):
                mats = [_make(rng, kind, Q, T, dtype) for _ in range(3)]
                _check_batch(mats, False)
    # DETR's ragged targets: one padded call
    mats = [rng.random((100, t)).astype(np.float32) for t in (0, 1, 5, 37, 100)]
    _check_batch(mats, False)


def test_errors_like_scipy():
    c = np.array([[1.0, np.nan], [0.0, 1.0]])
    with pytest.raises(ValueError, match="invalid numeric entries"):
        lsa_scipy(c)
    with pytest.raises(ValueError, match="invalid numeric entries"):
        kdetr.linear_sum_assignment(torch.from_numpy(c))
    c = np.array([[1.0, -np.inf], [0.0, 1.0]])
    with pytest.raises(ValueError, match="invalid numeric entries"):
        kdetr.linear_sum_assignment(torch.from_numpy(c))
    c = np.array([[1.0, np.inf], [0.0, 1.0]])  # maximize: +inf becomes -inf: invalid
    with pytest.raises(ValueError):
        lsa_scipy(c, maximize=True)
    with pytest.raises(ValueError, match="invalid numeric entries"):
        kdetr.linear_sum_assignment(torch.from_numpy(c), maximize=True)
    c = np.array([[np.inf, np.inf], [0.0, 1.0]])
    with pytest.raises(ValueError, match="infeasible"):
        lsa_scipy(c)
    with pytest.raises(ValueError, match="infeasible"):
        kdetr.linear_sum_assignment(torch.from_numpy(c))
    # check=False: no exception, -1 pairs, status in the padded form
    r, k = kdetr.linear_sum_assignment(torch.from_numpy(c), check=False)
    assert r.tolist() == [-1, -1] and k.tolist() == [-1, -1]
    _, _, count, status = kdetr.linear_sum_assignment_padded(torch.from_numpy(c)[None])
    assert count.tolist() == [0] and status.tolist() == [kdetr._assignment.STATUS_INFEASIBLE]


def test_empty_problems():
    for shape in [(0, 0), (0, 5), (4, 0)]:
        r, k = lsa_scipy(np.zeros(shape))
        gr, gk = kdetr.linear_sum_assignment(torch.zeros(shape))
        assert gr.numel() == 0 and gk.numel() == 0 and r.size == 0
    # NaN inside an empty problem is never read (scipy returns before checking)
    out = kdetr.linear_sum_assignment([torch.zeros((0, 3)), torch.ones((2, 2))])
    assert out[0][0].numel() == 0 and out[1][1].tolist() == [0, 1]
    assert kdetr.linear_sum_assignment([]) == []


def test_padded_form_strides_and_integer_costs():
    rng = np.random.default_rng(3)
    full = rng.integers(0, 4, (5, 9, 6)).astype(np.float64)
    rows, cols = [9, 0, 4, 9, 2], [6, 3, 6, 2, 6]
    cost = torch.from_numpy(full).transpose(1, 2).contiguous().transpose(1, 2)  # non-contiguous [B, Q, T]
    r, k, count, status = kdetr.linear_sum_assignment_padded(cost, torch.tensor(rows), torch.tensor(cols))
    assert status.tolist() == [0] * 5
    for b in range(5):
        er, ek = lsa_scipy(full[b, :rows[b], :cols[b]])
        n = int(count[b])
        assert n == len(er)
        np.testing.assert_array_equal(r[b, :n].numpy(), er)
        np.testing.assert_array_equal(k[b, :n].numpy(), ek)
        assert (r[b, n:] == -1).all() and (k[b, n:] == -1).all()
    pairs = kdetr.linear_sum_assignment(cost, sizes=(rows, cols))
    assert [p[1].tolist() for p in pairs] == [k[b, :int(count[b])].tolist() for b in range(5)]
    # integer tensors are solved in float64, as scipy does
    ci = torch.from_numpy(full[0].astype(np.int64))
    gr, gk = kdetr.linear_sum_assignment(ci)
    er, ek = lsa_scipy(full[0].astype(np.int64))
    np.testing.assert_array_equal(gk.numpy(), ek)
