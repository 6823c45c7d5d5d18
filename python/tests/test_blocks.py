"""Parity of the kdloss_torch.blocks modules with the reference code, loading the reference's state_dict as it is.

- NonLocal2d against the REAL mmcv.cnn.NonLocal2d (mmcv-lite 2.1.0; skipped with a reason where it does not
  import): values and every parameter gradient in all four modes, sub_sample on and off, norm_cfg BN and None,
  float64 (1e-10) and float32 (1e-5 values, 1e-4 gradients), the running statistics after a few training
  steps, evaluation mode. mmcv's concatenation backward raises (its in-place ReLU, then an in-place division):
  there the values are mmcv's and the gradients are those of `mmcv_forward` below, a re-implementation of
  mmcv's forward without the in-place ops (checked equal to mmcv's values in every mode).
- NonLocal2dMaxpoolNstride against mmrazor's (its connector file loaded directly; mmrazor's package import fails
  with current torch), or, when that fails, against NonLocal2d with the pool wrapped twice by hand.
- NonLocalBlockND against `OfficialNonLocalBlockND`, a PyTorch re-implementation of the official FBKD code's
  block (losses.md 1.5: no peer package exists).
- GloRe against bench/glore_torch_reference.py's GloRe_Unit (the DRKD code re-implemented in PyTorch), training steps
  (running statistics) then evaluation mode.
Each test records which reference ran in its `reference` property (pytest -rA shows it)."""

import importlib.util
import os
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kdloss_torch as kd
import kdloss_torch.blocks as kb
from helpers import assert_rel, leaf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODES = ["embedded_gaussian", "gaussian", "dot_product", "concatenation"]
TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-4)}

try:
    from mmcv.cnn import NonLocal2d as MmcvNonLocal2d
    MMCV = None
except Exception as e:  # pragma: no cover - depends on the environment
    MmcvNonLocal2d = None
    MMCV = "mmcv.cnn.NonLocal2d does not import (%s: %s)" % (type(e).__name__, e)

needs_mmcv = pytest.mark.skipif(MmcvNonLocal2d is None, reason=MMCV or "")


# ---- references ------------------------------------------------------------------------------------------

def _conv_of(m):
    while isinstance(m, nn.Sequential):
        m = m[0]
    return m.conv


def _pool_of(m, factor):
    return (lambda t: F.max_pool2d(t, factor)) if factor > 1 else (lambda t: t)


def mmcv_forward(block, x, pool):
    """mmcv _NonLocalNd.forward written without in-place ops (so its backward runs in every mode), reading
    the parameters of an mmcv block or of a kdloss_torch NonLocal2d (same names)."""
    n, c = x.shape[:2]
    m = block.inter_channels
    down = _pool_of(None, pool)
    g_x = down(_conv_of(block.g)(x)).reshape(n, m, -1).permute(0, 2, 1)
    if block.mode == "gaussian":
        theta_x = x.reshape(n, c, -1).permute(0, 2, 1)
        phi_x = down(x).reshape(n, c, -1)
    else:
        theta = _conv_of(block.theta)(x)
        phi = down(_conv_of(block.phi)(x))
        theta_x = theta.reshape(n, m, -1).permute(0, 2, 1)
        phi_x = phi.reshape(n, m, -1)
    if block.mode in ("gaussian", "embedded_gaussian"):
        f = theta_x @ phi_x
        if block.mode == "embedded_gaussian" and block.use_scale:
            f = f / theta_x.shape[-1] ** 0.5
        f = f.softmax(dim=-1)
    elif block.mode == "dot_product":
        f = theta_x @ phi_x
        f = f / f.shape[-1]
    else:
        h, w = theta_x.shape[1], phi_x.shape[2]
        cat = torch.cat([theta_x.permute(0, 2, 1).unsqueeze(3).expand(n, m, h, w),
                         phi_x.unsqueeze(2).expand(n, m, h, w)], dim=1)
        f = F.relu(F.conv2d(cat, block.concat_project.conv.weight)).reshape(n, h, w) / w
    y = (f @ g_x).permute(0, 2, 1).reshape(n, m, *x.shape[2:])
    return x + block.conv_out(y)


class OfficialNonLocalBlockND(nn.Module):
    """The official FBKD NonLocalBlockND (dimension 2, dot product) in PyTorch, from losses.md 1.5 (the
    AlexHex7 Non-local_pytorch block with a configurable sub-sampling max pool): same module names."""

    def __init__(self, in_channels, inter_channels=None, sub_sample=True, bn_layer=True, downsample_stride=2):
        super().__init__()
        self.inter_channels = inter_channels or max(in_channels // 2, 1)
        m = self.inter_channels
        self.g = nn.Conv2d(in_channels, m, 1)
        if bn_layer:
            self.W = nn.Sequential(nn.Conv2d(m, in_channels, 1), nn.BatchNorm2d(in_channels))
            nn.init.constant_(self.W[1].weight, 0)
            nn.init.constant_(self.W[1].bias, 0)
        else:
            self.W = nn.Conv2d(m, in_channels, 1)
        self.theta = nn.Conv2d(in_channels, m, 1)
        self.phi = nn.Conv2d(in_channels, m, 1)
        if sub_sample:
            pool = nn.MaxPool2d(kernel_size=(downsample_stride, downsample_stride))
            self.g = nn.Sequential(self.g, pool)
            self.phi = nn.Sequential(self.phi, pool)

    def forward(self, x):
        b = x.size(0)
        g_x = self.g(x).view(b, self.inter_channels, -1).permute(0, 2, 1)
        theta_x = self.theta(x).view(b, self.inter_channels, -1).permute(0, 2, 1)
        phi_x = self.phi(x).view(b, self.inter_channels, -1)
        f = torch.matmul(theta_x, phi_x)
        y = torch.matmul(f / f.size(-1), g_x).permute(0, 2, 1).contiguous().view(b, self.inter_channels, *x.size()[2:])
        return self.W(y) + x


def _load_glore_reference():
    path = os.path.join(ROOT, "bench", "glore_torch_reference.py")
    spec = importlib.util.spec_from_file_location("glore_torch_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.GloRe_Unit


def _load_mmrazor_block():
    """mmrazor's NonLocal2dMaxpoolNstride from its connector file, with stand-ins for the registry and the base
    connector (its package __init__ fails to import with current torch)."""
    spec = importlib.util.find_spec("mmrazor")
    if spec is None or not spec.submodule_search_locations:
        return None, "mmrazor is not installed"
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "architectures", "connectors",
                        "fbkd_connector.py")
    registry = types.ModuleType("mmrazor.registry")
    registry.MODELS = types.SimpleNamespace(register_module=lambda *a, **k: (lambda cls: cls))
    base = types.ModuleType("fbkd_base_connector")
    base.BaseConnector = nn.Module
    saved = {k: sys.modules.get(k) for k in ("mmrazor", "mmrazor.registry")}
    try:
        sys.modules["mmrazor"] = types.ModuleType("mmrazor")
        sys.modules["mmrazor.registry"] = registry
        source = open(path).read().replace("from .base_connector import BaseConnector",
                                           "from fbkd_base_connector import BaseConnector")
        sys.modules["fbkd_base_connector"] = base
        mod = types.ModuleType("mmrazor_fbkd_connector")
        exec(compile(source, path, "exec"), mod.__dict__)
        return mod.NonLocal2dMaxpoolNstride, None
    except Exception as e:  # pragma: no cover
        return None, "mmrazor's fbkd_connector.py does not load (%s: %s)" % (type(e).__name__, e)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def randomise(module, seed):
    """Every parameter and BN running statistic random (zeros_init would make conv_out's path vanish)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen, dtype=torch.float64))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen, dtype=torch.float64))
    return module


def step(module, x, r, forward=None):
    """z and the gradients of sum(z * r) with respect to x and every parameter (by name)."""
    x = leaf(x)
    z = (forward or module)(x)
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    params = [p for n, p in module.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad((z * r).sum(), [x] + params, allow_unused=True)
    out = {"x": grads[0]}
    for n, p, g in zip(names, params, grads[1:]):
        out[n] = torch.zeros_like(p) if g is None else g
    return z.detach(), out


def compare(z, grads, z_ref, grads_ref, dtype, what):
    """Values and every gradient. A gradient that is 0 in theory (a bias feeding a training-mode BN; g's bias and
    phi's bias under a softmax over j, where a shift constant in j cancels) is rounding noise on both sides: it
    is judged against the size of the block's other gradients, not relative to itself."""
    rv, rg = TOL[dtype]
    assert_rel(z, z_ref, rv, what + ": value")
    assert set(grads) == set(grads_ref), what
    scale = max(g.abs().max().item() for g in grads_ref.values())
    for name in grads_ref:
        g, e = grads[name], grads_ref[name]
        if e.abs().max().item() <= (1e-7 if dtype == torch.float64 else 1e-3) * scale:
            err = (g.double() - e.double()).abs().max().item()
            assert err <= rg * scale, "%s: gradient of %s (0 in theory): %.3e against the block's scale %.3e" % (
                what, name, err, scale)
            continue
        # relative to the parameter's own largest gradient, floored at 1% of the block's largest: a gradient
        # two orders below the others (gcn.conv2 and conv_extend behind the GloRe blocker) carries the
        # cancellation error of the sums it comes from (2e-13 absolute on 2e-3 in float64 at C = 8)
        own = e.abs().max().item()
        err = (g.double() - e.double()).abs().max().item()
        assert err <= rg * max(own, 1e-2 * scale), "%s: gradient of %s: max abs error %.3e, max |expected| %.3e, " \
            "block's largest %.3e" % (what, name, err, own, scale)


def states_equal(mine, theirs, dtype, what):
    rv = TOL[dtype][0]
    for (n, a), (n2, b) in zip(sorted(mine.state_dict().items()), sorted(theirs.state_dict().items())):
        assert n == n2
        if n.endswith("num_batches_tracked"):
            assert int(a) == int(b), "%s: %s %d vs %d" % (what, n, int(a), int(b))
        else:
            assert_rel(a, b, rv, "%s: %s" % (what, n))


# ---- mmcv NonLocal2d ---------------------------------------------------------------------------------------

def mmcv_pair(mode, sub_sample, norm, dtype, c=8, reduction=2, use_scale=True):
    kw = dict(in_channels=c, reduction=reduction, mode=mode, sub_sample=sub_sample, use_scale=use_scale)
    if norm:
        kw["norm_cfg"] = dict(type="BN")
    theirs = randomise(MmcvNonLocal2d(**kw), 1).to(dtype).train()
    mine = kb.NonLocal2d(**kw).to(dtype).train()
    mine.load_state_dict(theirs.state_dict())  # strict: every key matches
    return mine, theirs


@needs_mmcv
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("sub_sample", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_nonlocal2d_matches_mmcv(mode, sub_sample, norm, dtype, record_property):
    mine, theirs = mmcv_pair(mode, sub_sample, norm, dtype)
    pool = 2 if sub_sample else 1
    x = torch.randn(2, 8, 7, 6, dtype=dtype)  # 7: not a multiple of the pool
    r = torch.randn(2, 8, 7, 6, dtype=dtype)
    z, g = step(mine, x, r)
    if mode == "concatenation":
        with torch.no_grad():
            z_mmcv = theirs(x)  # mmcv's values ...
        assert_rel(z, z_mmcv, TOL[dtype][0], "value against mmcv")
        z_ref, g_ref = step(theirs, x, r, lambda t: mmcv_forward(theirs, t, pool))  # ... its gradients re-implemented
        record_property("reference", "mmcv values, re-implemented gradients (mmcv's backward raises)")
    else:
        z_ref, g_ref = step(theirs, x, r)
        record_property("reference", "mmcv.cnn.NonLocal2d %s" % mmcv_version())
    compare(z, g, z_ref, g_ref, dtype, mode)
    if mode != "concatenation":  # the re-implementation is mmcv where mmcv's backward runs
        z_re, g_re = step(theirs, x, r, lambda t: mmcv_forward(theirs, t, pool))
        compare(z_re, g_re, z_ref, g_ref, dtype, "re-implementation")


def mmcv_version():
    import mmcv
    return mmcv.__version__


@needs_mmcv
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", MODES)
def test_nonlocal2d_running_stats_and_eval_match_mmcv(mode, dtype):
    mine, theirs = mmcv_pair(mode, True, True, dtype)
    mine.conv_out.bn.momentum = theirs.conv_out.bn.momentum = 0.3
    pool = 2
    ref_fwd = (lambda t: mmcv_forward(theirs, t, pool)) if mode == "concatenation" else None
    for k in range(3):  # training steps: running_mean, running_var (unbiased), num_batches_tracked
        x = torch.randn(2, 8, 6, 5, dtype=dtype) + k
        r = torch.randn(2, 8, 6, 5, dtype=dtype)
        step(mine, x, r)
        step(theirs, x, r, ref_fwd)
        states_equal(mine, theirs, dtype, "%s step %d" % (mode, k))
    mine.eval()
    theirs.eval()
    x = torch.randn(2, 8, 6, 5, dtype=dtype)
    r = torch.randn(2, 8, 6, 5, dtype=dtype)
    z, g = step(mine, x, r)
    if mode == "concatenation":
        with torch.no_grad():
            assert_rel(z, theirs(x), TOL[dtype][0], "eval value against mmcv")
    z_ref, g_ref = step(theirs, x, r, ref_fwd)
    compare(z, g, z_ref, g_ref, dtype, mode + " eval")
    states_equal(mine, theirs, dtype, "eval leaves the statistics")


@needs_mmcv
def test_nonlocal2d_momentum_none_cumulative_average():
    mine, theirs = mmcv_pair("dot_product", True, True, torch.float64)
    mine.conv_out.bn.momentum = theirs.conv_out.bn.momentum = None
    for k in range(3):
        x = torch.randn(2, 8, 4, 4, dtype=torch.float64)
        mine(x)
        theirs(x)
    states_equal(mine, theirs, torch.float64, "momentum None")


@needs_mmcv
@pytest.mark.parametrize("layout_kind", ["channels_last", "sliced"])
def test_nonlocal2d_strided_input_and_no_scale(layout_kind):
    mine, theirs = mmcv_pair("embedded_gaussian", True, True, torch.float64, use_scale=False)
    x = torch.randn(2, 8, 6, 5, dtype=torch.float64)
    from helpers import layout
    xl = layout(x, layout_kind)
    r = torch.randn(2, 8, 6, 5, dtype=torch.float64)
    z, g = step(mine, xl, r)
    z_ref, g_ref = step(theirs, x, r)
    compare(z, g, z_ref, g_ref, torch.float64, layout_kind)


@needs_mmcv
def test_nonlocal2d_default_init_and_no_grad():
    """mmcv's initialisation (zeros_init: the block is the identity) and a forward under no_grad (no reserve)."""
    mine = kb.NonLocal2d(8, sub_sample=True, mode="dot_product", norm_cfg=dict(type="BN"))
    theirs = MmcvNonLocal2d(8, sub_sample=True, mode="dot_product", norm_cfg=dict(type="BN"))
    assert list(mine.state_dict()) == list(theirs.state_dict())
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        z = mine(x)
    assert torch.equal(z, x)  # BN gamma = beta = 0
    assert int(mine.conv_out.bn.num_batches_tracked) == 1


def test_nonlocal2d_errors_name_the_argument():
    block = kb.NonLocal2d(8, sub_sample=True, mode="dot_product")
    with pytest.raises(kd.KdlossError, match="max pool|small|pool"):
        block(torch.randn(1, 8, 1, 4))  # smaller than the pool
    with pytest.raises(kd.KdlossError, match="g_weight|x"):
        block(torch.randn(1, 6, 4, 4))  # channels do not match the weights
    with pytest.raises(ValueError):
        kb.NonLocal2d(8, mode="cosine")
    with pytest.raises(ValueError, match="SyncBN"):
        kb.NonLocal2d(8, norm_cfg=dict(type="SyncBN"))


# ---- mmrazor NonLocal2dMaxpoolNstride ---------------------------------------------------------------------

@needs_mmcv
@pytest.mark.parametrize("mode", ["dot_product", "embedded_gaussian"])
def test_maxpool_nstride_matches_mmrazor(mode, record_property):
    cls, why = _load_mmrazor_block()
    if cls is None:
        pytest.skip(why)
    record_property("reference", "mmrazor NonLocal2dMaxpoolNstride (connector file loaded directly)")
    theirs = randomise(cls(8, reduction=2, mode=mode, sub_sample=True, maxpool_stride=2), 2).double().train()
    mine = kb.NonLocal2dMaxpoolNstride(8, reduction=2, mode=mode, sub_sample=True, maxpool_stride=2).double().train()
    mine.load_state_dict(theirs.state_dict())
    assert "g.0.0.conv.weight" in theirs.state_dict()
    x = torch.randn(2, 8, 9, 8, dtype=torch.float64)
    r = torch.randn(2, 8, 9, 8, dtype=torch.float64)
    z, g = step(mine, x, r)
    z_ref, g_ref = step(theirs, x, r)
    compare(z, g, z_ref, g_ref, torch.float64, "mmrazor " + mode)
    states_equal(mine, theirs, torch.float64, "mmrazor running statistics")


def test_maxpool_nstride_gaussian_is_the_consistent_form(record_property):
    """mmrazor's gaussian mode pools g by 2 s and phi by s and raises on every input; kdloss pools both by 2 s.
    Checked against the re-implementation with one pool of 2 s."""
    record_property("reference", "mmcv_forward re-implementation, g and x' pooled by 2 s")
    mine = randomise(kb.NonLocal2dMaxpoolNstride(8, mode="gaussian", sub_sample=True, maxpool_stride=2), 6).double()
    assert isinstance(mine.phi, nn.MaxPool2d) and "g.0.0.conv.weight" in mine.state_dict()
    x = torch.randn(2, 8, 9, 10, dtype=torch.float64)
    r = torch.randn(2, 8, 9, 10, dtype=torch.float64)
    ref = randomise(kb.NonLocal2dMaxpoolNstride(8, mode="gaussian", sub_sample=True, maxpool_stride=2), 6).double()
    z, g = step(mine, x, r)
    z_ref, g_ref = step(ref, x, r, lambda t: mmcv_forward(ref, t, 4))
    compare(z, g, z_ref, g_ref, torch.float64, "gaussian, pool 2 s")


# ---- official FBKD NonLocalBlockND ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("inter,stride,bn_layer", [(4, 4, True), (8, 2, True), (8, 2, False), (4, 1, True)])
def test_nonlocalblocknd_matches_official(inter, stride, bn_layer, dtype, record_property):
    record_property("reference", "PyTorch re-implementation of the official FBKD NonLocalBlockND (losses.md 1.5)")
    sub = stride > 1
    theirs = randomise(OfficialNonLocalBlockND(16, inter, sub, bn_layer, stride), 3).to(dtype).train()
    mine = kb.NonLocalBlockND(16, inter, sub_sample=sub, bn_layer=bn_layer, downsample_stride=stride).to(dtype)
    mine.load_state_dict(theirs.state_dict())
    for k in range(2):
        x = torch.randn(2, 16, 11, 9, dtype=dtype) * (1 + k)
        r = torch.randn(2, 16, 11, 9, dtype=dtype)
        z, g = step(mine, x, r)
        z_ref, g_ref = step(theirs, x, r)
        compare(z, g, z_ref, g_ref, dtype, "NonLocalBlockND step %d" % k)
        states_equal(mine, theirs, dtype, "NonLocalBlockND statistics")
    mine.eval()
    theirs.eval()
    x = torch.randn(2, 16, 11, 9, dtype=dtype)
    r = torch.randn(2, 16, 11, 9, dtype=dtype)
    z, g = step(mine, x, r)
    z_ref, g_ref = step(theirs, x, r)
    compare(z, g, z_ref, g_ref, dtype, "NonLocalBlockND eval")


def test_nonlocalblocknd_keys_and_identity_start():
    mine = kb.NonLocalBlockND(256, 64, downsample_stride=8)
    theirs = OfficialNonLocalBlockND(256, 64, True, True, 8)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    assert "g.0.weight" in mine.state_dict() and "W.1.running_var" in mine.state_dict()
    x = torch.randn(1, 256, 24, 16)
    with torch.no_grad():
        assert torch.equal(mine(x), x)


# ---- DRKD GloRe ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c,mid", [(8, 2), (12, 6)])
def test_glore_matches_reference(c, mid, dtype, record_property):
    GloReUnit = _load_glore_reference()
    record_property("reference", "bench/glore_torch_reference.py GloRe_Unit (the DRKD code in PyTorch)")
    theirs = randomise(GloReUnit(c, mid), 4).to(dtype).train()
    mine = kb.GloRe_Unit_2D(c, mid).to(dtype)
    mine.load_state_dict(theirs.state_dict())
    for k in range(3):
        x = torch.randn(2, c, 5, 7, dtype=dtype) + 0.5 * k
        r = torch.randn(2, c, 5, 7, dtype=dtype)
        z, g = step(mine, x, r)
        z_ref, g_ref = step(theirs, x, r)
        compare(z, g, z_ref, g_ref, dtype, "GloRe step %d" % k)
        states_equal(mine, theirs, dtype, "GloRe blocker statistics")
    # evaluation mode with the running statistics the three steps left: value and every gradient
    mine.eval()
    theirs.eval()
    x = torch.randn(2, c, 5, 7, dtype=dtype)
    r = torch.randn(2, c, 5, 7, dtype=dtype)
    z, g = step(mine, x, r)
    z_ref, g_ref = step(theirs, x, r)
    compare(z, g, z_ref, g_ref, dtype, "GloRe eval")
    states_equal(mine, theirs, dtype, "GloRe eval leaves the statistics")
    assert int(mine.blocker.num_batches_tracked) == 3


def test_glore_keys_eval_and_strided():
    GloReUnit = _load_glore_reference()
    mine = kb.GloRe(256, 64)
    assert list(mine.state_dict()) == list(GloReUnit(256, 64).state_dict())
    mine = kb.GloRe(8, 2).double()
    theirs = GloReUnit(8, 2).double()
    mine.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 8, 4, 6, dtype=torch.float64)
    r = torch.randn(2, 8, 4, 6, dtype=torch.float64)
    z, g = step(mine, x.contiguous(memory_format=torch.channels_last), r)
    z_ref, g_ref = step(theirs, x, r)
    compare(z, g, z_ref, g_ref, torch.float64, "GloRe channels_last")
    mine.eval()
    theirs.eval()
    z, g = step(mine, x.contiguous(memory_format=torch.channels_last), r)
    z_ref, g_ref = step(theirs, x, r)
    compare(z, g, z_ref, g_ref, torch.float64, "GloRe eval channels_last")
    # one value per channel: legal in evaluation mode (torch's BN too), an error in training mode
    x1, r1 = x[:1, :, :1, :1], r[:1, :, :1, :1]
    z, g = step(mine, x1, r1)
    z_ref, g_ref = step(theirs, x1, r1)
    compare(z, g, z_ref, g_ref, torch.float64, "GloRe eval, B*H*W = 1")
    mine.train()
    with pytest.raises(kd.KdlossError, match="more than 1 value per channel"):
        mine(x1)
    # the functional form in evaluation mode needs the running statistics
    p = [t.detach() for t in (mine.conv_state.weight.view(4, 8), mine.conv_state.bias, mine.conv_proj.weight.view(2, 8),
                              mine.conv_proj.bias, mine.gcn.conv1.weight.view(2, 2), mine.gcn.conv1.bias,
                              mine.gcn.conv2.weight.view(4, 4), mine.conv_extend.weight.view(8, 4),
                              mine.blocker.weight, mine.blocker.bias)]
    with pytest.raises(kd.KdlossError, match="bn_running_mean"):
        kb.glore(x, *p, training=False)


# ---- the functions ---------------------------------------------------------------------------------------

def test_functional_gradcheck():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 4, 3, dtype=torch.float64, requires_grad=True)
    w = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in [(2, 4), (2,), (2, 4), (2,), (2, 4), (2,),
                                                                          (4, 2), (4,), (4,), (4,)]]
    fn = lambda x, *w: kb.non_local(x, w[0], w[1], w[2], w[3], w[4], w[5], None, w[6], w[7], w[8], w[9],
                                    mode="embedded_gaussian", pool_g=2, pool_phi=2)
    assert torch.autograd.gradcheck(fn, (x, *w))
    g = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in [(4, 4), (4,), (2, 4), (2,), (2, 2), (2,),
                                                                          (4, 4), (4, 4), (4,), (4,)]]
    assert torch.autograd.gradcheck(lambda x, *p: kb.glore(x, *p), (x, *g))
    rm, rv = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda x, *p: kb.glore(x, *p, bn_running_mean=rm, bn_running_var=rv,
                                                           training=False), (x, *g))
