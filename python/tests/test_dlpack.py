"""kdloss/interop/dlpack.hpp on tensors exported by torch through DLPack (legacy "dltensor" and
versioned "dltensor_versioned" capsules): shapes, element strides, storage offsets, devices, dtype
errors, and a loss computed through the adapter's views."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.dlpack import to_dlpack

import kdloss_torch as kd
from kdloss_torch import _C

EXPORTS = {
    "legacy": lambda t: to_dlpack(t),
    "versioned": lambda t: t.__dlpack__(max_version=(1, 0)),
}


@pytest.mark.parametrize("export", list(EXPORTS))
@pytest.mark.parametrize("kind", ["contiguous", "transposed", "channels_last", "offset_slice", "scalar", "empty"])
def test_views_match_torch(kind, export):
    base = torch.randn(2, 3, 5, 4)
    t = {"contiguous": base, "transposed": base.transpose(1, 3), "channels_last":
         base.contiguous(memory_format=torch.channels_last), "offset_slice": base[1, :, 1::2, 2:],
         "scalar": torch.tensor(3.0), "empty": torch.randn(2, 0, 3)}[kind]
    d = _C.dlpack_view(EXPORTS[export](t))
    assert d["shape"] == list(t.shape)
    if t.numel() > 1:
        assert d["strides"] == list(t.stride())
    assert d["data"] == t.data_ptr() or t.numel() == 0
    assert d["device"] == "host"
    assert d["contiguous"] == t.is_contiguous()
    assert d["unique"]


def test_broadcast_view_is_not_unique():
    t = torch.randn(3, 1).expand(3, 4)
    d = _C.dlpack_view(to_dlpack(t))
    assert d["strides"] == [1, 0] and not d["unique"]


def test_float64():
    t = torch.randn(4, 2, dtype=torch.float64).t()
    d = _C.dlpack_view(to_dlpack(t), "float64")
    assert d["shape"] == [2, 4] and d["strides"] == [1, 2] and d["data"] == t.data_ptr()


@pytest.mark.parametrize("export", list(EXPORTS))
def test_dtype_mismatch(export):
    with pytest.raises(kd.KdlossError) as info:
        _C.dlpack_view(EXPORTS[export](torch.randn(2, dtype=torch.float64)), "float32")
    assert str(info.value) == ("kdloss::interop::from_dlpack: argument 'tensor' has DLPack dtype float64 but the view "
                               "reads float32")
    with pytest.raises(kd.KdlossError, match="has DLPack dtype int64 but the view reads float32"):
        _C.dlpack_view(EXPORTS[export](torch.arange(3)))
    with pytest.raises(kd.KdlossError, match="has DLPack dtype bfloat16 but the view reads float32"):
        _C.dlpack_view(EXPORTS[export](torch.ones(3, dtype=torch.bfloat16)))


def test_consumed_capsule_is_refused():
    capsule = to_dlpack(torch.randn(3))
    torch.from_dlpack(capsule)  # consumes it (renamed "used_dltensor")
    with pytest.raises(kd.KdlossError, match="must be an unconsumed DLPack capsule"):
        _C.dlpack_view(capsule)


@pytest.mark.parametrize("export", list(EXPORTS))
def test_loss_through_dlpack_views(export):
    """kdloss::mse_loss_forward_backward on the adapter's views of torch tensors (the gradient is
    written into torch's memory through its capsule) equals kd.mse_loss and F.mse_loss."""
    s = torch.randn(2, 3, 6, 5)
    t = torch.randn(2, 3, 6, 5).contiguous(memory_format=torch.channels_last)
    g = torch.zeros(2, 5, 6, 3).permute(0, 3, 2, 1)  # written through a permuted view
    value = _C.dlpack_mse_loss(EXPORTS[export](s), EXPORTS[export](t), EXPORTS[export](g))
    s_leaf = s.clone().requires_grad_()
    ref = F.mse_loss(s_leaf, t)
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(g, s_leaf.grad, rtol=1e-6, atol=1e-9)
    assert kd.mse_loss(s, t).item() == pytest.approx(value, rel=1e-7)
