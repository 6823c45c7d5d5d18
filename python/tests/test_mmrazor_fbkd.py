"""FBKD's whole total (L_AM + L_AT + L_NLD) against the real mmrazor 1.0.0 code, loaded file by file.

mmrazor's package __init__ fails to import with current torch (its quantization module), but
models/losses/fbkd_loss.py and models/architectures/connectors/fbkd_connector.py are plain PyTorch (and
mmcv-lite's NonLocal2d): they are loaded directly with importlib, with a stand-in for mmrazor.registry's
MODELS and for the BaseConnector (forward = forward_train). The SAME random weights go into mmrazor's
FBKDStudentConnector / FBKDTeacherConnector and into kdloss_torch.fbkd.FBKDLoss (through
load_reference_state_dict), then the value, S's gradient, EVERY parameter gradient (the teacher
connector's included) and the BN running statistics are compared: 1e-5 / 1e-4 in float32, 1e-10 in
float64.

mmrazor's gaussian mode pools g by 2 s and phi by s and raises on every input (losses.md 1.5): the test
shows that it raises; kdloss's consistent form (both pooled by 2 s) is checked in C++
(tests/ops/test_non_local.cpp) against the double reference.

The official FBKD NonLocalBlockND (ArchipLab-LinfengZhang/Object-Detection-Knowledge-Distillation-ICLR2021)
is not installable: a PyTorch re-implementation from losses.md 1.5 runs here (OfficialNonLocalBlockND
below), with Config.code_two_stage()'s per-level settings.
"""

import dataclasses
import importlib.util
import os
import sys
import types

import pytest
import torch

import kdloss_torch as kd

fbkd = kd.fbkd

mmrazor_spec = importlib.util.find_spec("mmrazor")
pytest.importorskip("mmcv.cnn", reason="mmcv-lite 2.1.0 is not installed (scripts/deps.sh)")
if mmrazor_spec is None:
    pytest.skip("mmrazor 1.0.0 is not installed (scripts/deps.sh installs it with --no-deps)", allow_module_level=True)

MMRAZOR_ROOT = mmrazor_spec.submodule_search_locations[0]


def _load_mmrazor():
    """fbkd_loss.py and fbkd_connector.py as modules, with stand-ins for the registry and BaseConnector;
    sys.modules is restored afterwards."""
    saved = {k: v for k, v in sys.modules.items() if k == "mmrazor" or k.startswith("mmrazor.")}
    try:
        for name in ("mmrazor", "mmrazor.models", "mmrazor.models.losses", "mmrazor.models.architectures",
                     "mmrazor.models.architectures.connectors"):
            pkg = types.ModuleType(name)
            pkg.__path__ = []
            sys.modules[name] = pkg
        registry = types.ModuleType("mmrazor.registry")

        class _Registry:
            def register_module(self, *args, **kwargs):
                return lambda cls: cls

        registry.MODELS = _Registry()
        sys.modules["mmrazor.registry"] = registry
        base = types.ModuleType("mmrazor.models.architectures.connectors.base_connector")

        class BaseConnector(torch.nn.Module):
            def __init__(self, init_cfg=None):
                super().__init__()

            def forward(self, feature):
                return self.forward_train(feature)

        base.BaseConnector = BaseConnector
        sys.modules[base.__name__] = base
        mods = {}
        for name, rel in (("mmrazor.models.losses.fbkd_loss", "models/losses/fbkd_loss.py"),
                          ("mmrazor.models.architectures.connectors.fbkd_connector",
                           "models/architectures/connectors/fbkd_connector.py")):
            spec = importlib.util.spec_from_file_location(name, os.path.join(MMRAZOR_ROOT, rel))
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
            mods[name.rsplit(".", 1)[-1]] = mod
        return mods["fbkd_loss"], mods["fbkd_connector"]
    finally:
        for k in [k for k in sys.modules if k == "mmrazor" or k.startswith("mmrazor.")]:
            del sys.modules[k]
        sys.modules.update(saved)


mm_loss, mm_conn = _load_mmrazor()

# mmrazor's FBKD config (configs/distill/mmdet/fbkd): per level reduction and maxpool_stride.
MMRAZOR_LEVELS = [dict(reduction=4, maxpool_stride=8), dict(reduction=4, maxpool_stride=4),
                  dict(reduction=2, maxpool_stride=2), dict(reduction=2, maxpool_stride=2)]


def randomise(module, gen):
    """Every parameter and BN statistic random (BN gamma away from 0), so that no gradient is trivially 0."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.3)
            if name.endswith("bn.weight") or name.endswith("W.1.weight"):
                p.add_(1.0)
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen, dtype=torch.float64) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen, dtype=torch.float64))


def mm_connectors(C, levels, dtype, gen, mode="dot_product"):
    out = []
    for lv in levels:
        s = mm_conn.FBKDStudentConnector(C, mode=mode, sub_sample=True, **lv)
        t = mm_conn.FBKDTeacherConnector(C, mode=mode, sub_sample=True, **lv)
        randomise(s, gen)
        randomise(t, gen)
        out.append((s.to(dtype), t.to(dtype)))
    return out


def ours_from(connectors, C, dtype, config):
    loss_fn = fbkd.FBKDLoss(config, channels=C, num_levels=len(connectors)).to(dtype)
    for level, (s, t) in enumerate(connectors):
        loss_fn.load_reference_state_dict({**s.state_dict(), **t.state_dict()}, level=level)
    return loss_fn


def feats(shapes, dtype, gen):
    S = [torch.randn(sh, generator=gen, dtype=torch.float64).to(dtype).requires_grad_() for sh in shapes]
    T = [torch.randn(sh, generator=gen, dtype=torch.float64).to(dtype) for sh in shapes]
    return S, T


def assert_close(a, b, rtol, atol, what):
    assert a.shape == b.shape, what
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= atol + rtol * b.abs().max().item(), "%s: max error %g (scale %g)" % (what, err, b.abs().max().item())


# The parameters of FBKDLoss's level `i` and the mmrazor names they came from.
PAIRS = {"adapted": ("s", "adaptation_layers"), "channel": ("s", "channel_wise_adaptation"),
         "spatial": ("s", "spatial_wise_adaptation"), "non_local_adaptation": ("s", "non_local_adaptation"),
         "student_non_local": ("s", "student_non_local"), "teacher_non_local": ("t", "teacher_non_local")}


def mm_param(conn_s, conn_t, ours_name):
    """The mmrazor parameter that FBKDLoss's adapters[i].<ours_name> is (the documented mapping)."""
    head, rest = ours_name.split(".", 1)
    side, mm_head = PAIRS[head]
    module = getattr(conn_s if side == "s" else conn_t, mm_head)
    if head.endswith("_non_local"):
        sub, leaf = rest.split(".")
        if sub == "bn":
            return getattr(module.conv_out.bn, leaf)
        if sub == "conv_out":
            return getattr(module.conv_out.conv, leaf)
        mod = getattr(module, sub)
        while isinstance(mod, torch.nn.Sequential):
            mod = mod[0]
        return getattr(mod.conv, leaf)
    return getattr(module, rest)


@pytest.mark.parametrize("dtype,rtol,atol", [(torch.float64, 1e-10, 1e-12), (torch.float32, 1e-4, 1e-5)])
def test_mmrazor_fbkd_total_values_every_gradient_and_running_stats(dtype, rtol, atol):
    """mmrazor's FBKDLoss over its connectors == kdloss's FBKDLoss with Config.mmrazor_two_stage()."""
    gen = torch.Generator().manual_seed(7)
    C = 8
    shapes = [(2, C, 32, 32), (2, C, 16, 24), (2, C, 8, 12), (2, C, 4, 6)]
    conns = mm_connectors(C, MMRAZOR_LEVELS, dtype, gen)
    ours = ours_from(conns, C, dtype, fbkd.Config.mmrazor_two_stage())
    S, T = feats(shapes, dtype, gen)
    crit = mm_loss.FBKDLoss()
    ref = sum(crit(s_c(s), t_c(t)) for (s_c, t_c), s, t in zip(conns, S, T))
    mm_params = [p for s_c, t_c in conns for p in list(s_c.parameters()) + list(t_c.parameters())]
    ref_grads = torch.autograd.grad(ref, S + mm_params, allow_unused=True)
    ref_g = dict(zip([id(p) for p in S + mm_params], ref_grads))

    v = ours(S, T)
    names = [n for n, _ in ours.named_parameters()]
    grads = torch.autograd.grad(v, S + [p for _, p in ours.named_parameters()])
    assert_close(v.detach(), ref.detach(), rtol, 0.0, "value")
    for i, s in enumerate(S):
        assert_close(grads[i], ref_g[id(s)], rtol, atol * ref_g[id(s)].abs().max().item(), "dS level %d" % i)
    checked = 0
    for name, g in zip(names, grads[len(S):]):
        _, level, rest = name.split(".", 2)
        s_c, t_c = conns[int(level)]
        p = mm_param(s_c, t_c, rest)
        want = ref_g[id(p)]
        want = torch.zeros_like(p) if want is None else want
        # gradients 0 in theory (a bias feeding a training-mode BN) are judged at the level's scale
        scale = max(x.abs().max().item() for x in [want, g])
        assert_close(g, want, rtol, atol * max(scale, 1e-30) + (1e-12 if dtype == torch.float64 else 1e-7),
                     "gradient of %s (mmrazor %s)" % (name, rest))
        checked += 1
    assert checked == len(mm_params) == len(names)
    # BN running statistics, as PyTorch's BN updates them in mmrazor's blocks.
    for level, (s_c, t_c) in enumerate(conns):
        ad = ours.adapters[level]
        for mine, theirs in ((ad["student_non_local"].bn, s_c.student_non_local.conv_out.bn),
                             (ad["teacher_non_local"].bn, t_c.teacher_non_local.conv_out.bn)):
            assert_close(mine.running_mean, theirs.running_mean, rtol, atol, "running_mean level %d" % level)
            assert_close(mine.running_var, theirs.running_var, rtol, atol, "running_var level %d" % level)
            assert int(mine.num_batches_tracked) == int(theirs.num_batches_tracked) == 1


def test_mmrazor_state_dict_names_map_onto_fbkdloss():
    """Every key of mmrazor's student and teacher connectors lands on FBKDLoss (strict load)."""
    conns = mm_connectors(16, MMRAZOR_LEVELS[:2], torch.float32, torch.Generator().manual_seed(1))
    ours = ours_from(conns, 16, torch.float32, fbkd.Config.mmrazor_two_stage())
    keys = set(conns[0][0].state_dict()) | set(conns[0][1].state_dict())
    assert "student_non_local.g.0.0.conv.weight" in keys  # mmcv's pool, then mmrazor's second one
    assert "teacher_non_local.conv_out.bn.running_var" in keys
    sd = ours.adapters[0]["student_non_local"].state_dict()
    assert torch.equal(sd["g.weight"], conns[0][0].state_dict()["student_non_local.g.0.0.conv.weight"])
    assert ours.adapters[0]["student_non_local"].g.weight.shape[0] == 16 // 4  # m = C / reduction


def test_mmrazor_gaussian_mode_raises_on_every_input():
    """mmrazor's gaussian mode pools g by 2 s and phi by s: its matrix products disagree in size and it
    raises on every input, so there is nothing to be at parity with. kdloss offers the consistent form
    (ops::non_local_mmcv_options(gaussian, true, s): both pooled by 2 s), checked against the double
    reference in tests/ops/test_non_local.cpp; FBKD's presets use the dot-product mode only."""
    C, s = 4, 2
    block = mm_conn.NonLocal2dMaxpoolNstride(C, reduction=2, mode="gaussian", sub_sample=True, maxpool_stride=s)
    for shape in [(2, C, 8, 8), (1, C, 16, 12), (2, C, 4, 4)]:
        with pytest.raises(RuntimeError):
            block(torch.randn(shape))
    # the dot-product mode the FBKD config uses runs
    ok = mm_conn.NonLocal2dMaxpoolNstride(C, reduction=2, mode="dot_product", sub_sample=True, maxpool_stride=s)
    assert ok(torch.randn(2, C, 8, 8)).shape == (2, C, 8, 8)


class OfficialNonLocalBlockND(torch.nn.Module):
    """Re-implementation of the official FBKD NonLocalBlockND (dimension 2, sub_sample, bn_layer), from
    losses.md 1.5: g, theta, phi = Conv2d(C, m, 1) (+ MaxPool2d(s) on g and phi), f = theta phi / N',
    y = f g, z = x + W(y) with W = Sequential(Conv2d(m, C, 1), BatchNorm2d(C)), BN initialised to 0."""

    def __init__(self, C, m, s):
        super().__init__()
        self.inter = m
        self.g = torch.nn.Conv2d(C, m, 1)
        self.theta = torch.nn.Conv2d(C, m, 1)
        self.phi = torch.nn.Conv2d(C, m, 1)
        self.W = torch.nn.Sequential(torch.nn.Conv2d(m, C, 1), torch.nn.BatchNorm2d(C))
        torch.nn.init.constant_(self.W[1].weight, 0)
        torch.nn.init.constant_(self.W[1].bias, 0)
        self.pool = torch.nn.MaxPool2d(s)

    def forward(self, x):
        b = x.size(0)
        g_x = self.pool(self.g(x)).view(b, self.inter, -1).permute(0, 2, 1)
        theta_x = self.theta(x).view(b, self.inter, -1).permute(0, 2, 1)
        phi_x = self.pool(self.phi(x)).view(b, self.inter, -1)
        f = theta_x @ phi_x
        f_div_c = f / f.size(-1)
        y = (f_div_c @ g_x).permute(0, 2, 1).contiguous().view(b, self.inter, *x.size()[2:])
        return self.W(y) + x


def test_official_non_local_blocks_reimplementation():
    """Config.code_two_stage() with the official blocks (m = 64, 64, 128; pools 8, 4, 2) against the
    PyTorch re-implementation of the official code (the official repository is not installable):
    w_nld * ||adapt(NL_S(S)) - NL_T(T)|| per level, every gradient, in float64."""
    gen = torch.Generator().manual_seed(5)
    C = 8  # the official m are absolute (64, 64, 128): more than C is legal
    shapes = [(2, C, 16, 16), (2, C, 8, 12), (2, C, 4, 6)]
    cfg = dataclasses.replace(fbkd.Config.code_two_stage(), w_am=0.0, w_at=0.0)
    ours = fbkd.FBKDLoss(cfg, channels=C, num_levels=3).double()
    official = {}
    for i in range(3):
        m, s = cfg.non_local_inter_channels(i, C), cfg.non_local_pool(i)
        mods = {"student_non_local": OfficialNonLocalBlockND(C, m, s), "teacher_non_local":
                OfficialNonLocalBlockND(C, m, s), "non_local_adaptation": torch.nn.Conv2d(C, C, 1)}
        for mod in mods.values():
            randomise(mod, gen)
        official[i] = {k: v.double() for k, v in mods.items()}
    sd = {"%s.%d.%s" % (k, i, n): v for i, mods in official.items() for k, mod in mods.items()
          for n, v in mod.state_dict().items()}
    missing = ours.load_reference_state_dict(sd, strict=False).missing_keys
    assert all(k.split(".")[2] in ("adapted", "channel", "spatial") for k in missing), missing
    S, T = feats(shapes, torch.float64, gen)
    ref = sum(cfg.w_nld * torch.dist(official[i]["non_local_adaptation"](official[i]["student_non_local"](S[i])),
                                     official[i]["teacher_non_local"](T[i])) for i in range(3))
    # FBKDLoss's other terms are off (w_am = w_at = 0); its code-form adapters get no gradient then.
    v = ours(S, T)
    assert abs(v.item() - ref.item()) <= 1e-10 * abs(ref.item())
    ref_params = [p for i in range(3) for k in ("student_non_local", "teacher_non_local", "non_local_adaptation")
                  for p in official[i][k].parameters()]
    our_params = [p for i in range(3) for k in ("student_non_local", "teacher_non_local", "non_local_adaptation")
                  for p in ours.adapters[i][k].parameters()]
    g_ref = torch.autograd.grad(ref, S + ref_params)
    g = torch.autograd.grad(v, S + our_params)
    for a, b in zip(g, g_ref):
        assert_close(a, b, 1e-10, 1e-12 * b.abs().max().item() + 1e-15, "official block gradient")
