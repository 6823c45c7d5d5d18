"""Parity of the FBKD attention-guided terms with PyTorch autograd re-implementations of the
official code / mmrazor (reference_impl.py): masks, L_AM, L_AT (paper and code forms) and the
weighted total over a 4-level pyramid, values and gradients wrt A, C_hat, S_hat (and S for the paper
L_AT), float32 (1e-5 relative) and float64 (1e-10), contiguous and non-contiguous inputs."""

import dataclasses

import pytest
import torch

import kdloss_torch as kd
import reference_impl as ref
from helpers import PYRAMID, RTOL, SMALL_PYRAMID, assert_rel, layout, leaf

fbkd = kd.fbkd
DTYPES = [torch.float32, torch.float64]
PRESETS = ["code_two_stage", "code_one_stage", "paper_two_stage", "paper_one_stage"]


def features(shape, dtype, gen=None):
    # teacher and student features of similar scale, as FPN outputs are
    return torch.randn(shape, dtype=dtype, generator=gen), torch.randn(shape, dtype=dtype, generator=gen)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["code", "paper"])
@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_attention_masks(form, temperature, dtype):
    s, t = features((2, 6, 5, 7), dtype)
    for kind in ("contiguous", "channels_last", "sliced"):
        ms, mc = fbkd.attention_masks(layout(s, kind), layout(t, kind), fbkd.MaskOptions(form, temperature, 0.3))
        masks = ref.code_masks if form == "code" else ref.paper_masks
        ms_ref, mc_ref = masks(s, t, temperature, 0.3)
        assert ms.shape == (2, 1, 5, 7) and mc.shape == (2, 6)
        assert not ms.requires_grad and not mc.requires_grad
        assert_rel(ms, ms_ref, RTOL[dtype], "M_s")
        assert_rel(mc, mc_ref.reshape(2, 6), RTOL[dtype], "M_c")
    ms_only, none = fbkd.attention_masks(s, t, channel=False)
    assert none is None and ms_only.shape == (2, 1, 5, 7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_maps_and_pooling(dtype):
    x = layout(torch.randn(2, 6, 5, 7, dtype=dtype), "channels_last")
    for kd_fn, ref_fn, shape in [(fbkd.spatial_attention, ref.spatial_attention, (2, 1, 5, 7)),
                                 (fbkd.channel_attention, lambda v: ref.channel_attention(v).flatten(1), (2, 6)),
                                 (kd.ops.mean_over_channels, lambda v: v.mean(1, keepdim=True), (2, 1, 5, 7)),
                                 (kd.ops.mean_over_positions, lambda v: v.mean((2, 3)), (2, 6)),
                                 (lambda v: kd.ops.mean_over_channels(v, absolute=True), ref.spatial_attention,
                                  (2, 1, 5, 7))]:
        a, b = leaf(x), leaf(x)
        out, out_ref = kd_fn(a), ref_fn(b)
        assert out.shape == shape
        assert_rel(out, out_ref, RTOL[dtype], "map")
        up = torch.randn_like(out_ref)
        assert_rel(torch.autograd.grad(out, a, up)[0], torch.autograd.grad(out_ref, b, up)[0], RTOL[dtype], "grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channel_mask", [False, True])
@pytest.mark.parametrize("layout_kind", ["contiguous", "channels_last", "sliced"])
def test_masked_feature_loss(layout_kind, channel_mask, dtype, backward_mode):
    s, t = features((2, 6, 5, 7), dtype)
    a = torch.randn(2, 6, 5, 7, dtype=dtype)
    ms, mc = ref.code_masks(s, t)
    a1, a2 = leaf(layout(a, layout_kind)), leaf(a)
    v = fbkd.masked_feature_loss(a1, layout(t, layout_kind), ms, mc.reshape(2, 6) if channel_mask else None)
    v_ref = ref.mask_l2_loss(t, a2, ms, mc if channel_mask else None)
    assert_rel(v, v_ref, RTOL[dtype], "L_AM")
    assert_rel(torch.autograd.grad(v, a1)[0], torch.autograd.grad(v_ref, a2)[0], RTOL[dtype], "dL_AM/dA")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout_kind", ["contiguous", "channels_last", "transposed"])
def test_attention_transfer_paper(layout_kind, dtype, backward_mode):
    s, t = features((2, 6, 5, 7), dtype)
    s1, s2 = leaf(layout(s, layout_kind)), leaf(s)
    v = fbkd.attention_transfer_loss(s1, layout(t, layout_kind))
    v_ref = ref.paper_attention_transfer(s2, t)
    assert_rel(v, v_ref, RTOL[dtype], "L_AT paper")
    assert_rel(torch.autograd.grad(v, s1)[0], torch.autograd.grad(v_ref, s2)[0], RTOL[dtype], "dL_AT/dS")


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_transfer_code(dtype, backward_mode):
    _, t = features((2, 6, 5, 7), dtype)
    c, sp = torch.randn(2, 6, dtype=dtype), torch.randn(2, 1, 5, 7, dtype=dtype)
    c1, sp1, c2, sp2 = leaf(c), leaf(layout(sp, "sliced")), leaf(c), leaf(sp)
    v = fbkd.pooled_attention_transfer_loss(c1, sp1, layout(t, "channels_last"))
    v_ref = ref.code_attention_transfer(c2, sp2, t)
    assert_rel(v, v_ref, RTOL[dtype], "L_AT code")
    g = torch.autograd.grad(v, [c1, sp1])
    g_ref = torch.autograd.grad(v_ref, [c2, sp2])
    assert_rel(g[0], g_ref[0], RTOL[dtype], "dL_AT/dC_hat")
    assert_rel(g[1], g_ref[1], RTOL[dtype], "dL_AT/dS_hat")
    # only one of the two gradients requested
    v = fbkd.pooled_attention_transfer_loss(c, leaf(sp), t)
    assert v.requires_grad


def pyramid_inputs(shapes, dtype, gen=None, with_adapted=True):
    """Per level (S, T, A, C_hat, S_hat) as leaves where the student side gets gradients."""
    levels = []
    for shape in shapes:
        b, c, h, w = shape
        s, t = features(shape, dtype, gen)
        a = torch.randn(shape, dtype=dtype, generator=gen) if with_adapted else None
        levels.append((s, t, a, torch.randn(b, c, dtype=dtype, generator=gen),
                       torch.randn(b, 1, h, w, dtype=dtype, generator=gen)))
    return levels


def run_total(levels, config, impl, layouts=None):
    """Value and gradients wrt (S, A, C_hat, S_hat) of every level through kdloss or the reference."""
    leaves, args = [], []
    for i, (s, t, a, c, sp) in enumerate(levels):
        kind = layouts[i % len(layouts)] if layouts else "contiguous"
        lv = [leaf(layout(s, kind)), layout(t, kind), None if a is None else leaf(layout(a, kind)), leaf(c),
              leaf(layout(sp, "sliced" if kind != "contiguous" else kind))]
        leaves += [x for k, x in enumerate(lv) if k != 1 and x is not None]
        args.append(lv)
    if impl == "kdloss":
        value = fbkd.total_loss([fbkd.Level(*lv) for lv in args], config)
    else:
        value = ref.fbkd_total(args, config)
    grads = torch.autograd.grad(value, leaves, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]
    return value, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("with_adapted", [True, False])
@pytest.mark.parametrize("layouts", [None, ("channels_last", "sliced", "transposed", "contiguous")])
def test_total_parity_small_pyramid(layouts, with_adapted, preset, dtype, backward_mode):
    config = getattr(fbkd.Config, preset)()
    levels = pyramid_inputs(SMALL_PYRAMID, dtype, with_adapted=with_adapted)
    v, g = run_total(levels, config, "kdloss", layouts)
    v_ref, g_ref = run_total(levels, config, "reference")
    assert_rel(v, v_ref, RTOL[dtype], "total")
    assert len(g) == len(g_ref)
    for k, (a, b) in enumerate(zip(g, g_ref)):
        assert_rel(a, b, RTOL[dtype], "gradient %d" % k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_total_options(dtype):
    """Weights 0 switch terms off; the channel mask and the temperatures are honoured."""
    levels = pyramid_inputs(SMALL_PYRAMID[:2], dtype)
    for change in [dict(w_am=0.0), dict(w_at=0.0), dict(use_channel_mask=True), dict(spatial_temperature=0.2),
                   dict(channel_temperature=2.0), dict(mask_form="paper"), dict(transfer_form="paper", w_am=1.0)]:
        config = dataclasses.replace(fbkd.Config(), **change)
        v, g = run_total(levels, config, "kdloss")
        v_ref, g_ref = run_total(levels, config, "reference")
        assert_rel(v, v_ref, RTOL[dtype], str(change))
        for a, b in zip(g, g_ref):
            assert_rel(a, b, RTOL[dtype], str(change))


def test_total_matches_mmrazor_forward():
    """The reference total (official-code form) is mmrazor's FBKDLoss.forward without the
    non-local term, written in mmrazor's own variables: ties reference_impl to mmrazor."""
    s, t = features((2, 6, 5, 7), torch.float64)
    a, c, sp = torch.randn(2, 6, 5, 7, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64), \
        torch.randn(2, 1, 5, 7, dtype=torch.float64)
    s_mask = ref._spatial_softmax(ref.spatial_attention(s), 0.5)
    t_mask = ref._spatial_softmax(ref.spatial_attention(t), 0.5)
    mm = ref.mmrazor_fbkd_loss(a, c, sp, s_mask, t_mask, t)
    ours = fbkd.total_loss([fbkd.Level(s, t, a, c, sp)], fbkd.Config.code_two_stage())
    assert_rel(ours, mm, 1e-12, "mmrazor FBKDLoss")


def test_fbkd_module_with_adapters():
    """FBKDLoss owns the official code's adapters; gradients reach them as in a PyTorch version."""
    torch.manual_seed(3)
    loss_fn = fbkd.FBKDLoss(fbkd.Config.code_two_stage(), channels=8, num_levels=2, non_local=False).double()
    students = [leaf(torch.randn(2, 8, 6, 5, dtype=torch.float64)), leaf(torch.randn(2, 8, 3, 3, dtype=torch.float64))]
    teachers = [torch.randn(2, 8, 6, 5, dtype=torch.float64), torch.randn(2, 8, 3, 3, dtype=torch.float64)]
    params = list(loss_fn.parameters()) + students
    v = loss_fn(students, teachers)
    g = torch.autograd.grad(v, params)
    ref_levels = []
    for s, t, ad in zip(students, teachers, loss_fn.adapters):
        ref_levels.append((s, t, ad["adapted"](s), ad["channel"](torch.mean(s, [2, 3])),
                           ad["spatial"](torch.mean(s, [1]).view(s.shape[0], 1, s.shape[2], s.shape[3]))))
    v_ref = ref.fbkd_total(ref_levels, loss_fn.config)
    g_ref = torch.autograd.grad(v_ref, params)
    assert_rel(v, v_ref, 1e-10, "value")
    for a, b in zip(g, g_ref):
        assert_rel(a, b, 1e-10, "gradient")
    # without adapters: Level inputs, or plain lists (A = S, paper form)
    plain = fbkd.FBKDLoss(fbkd.Config.paper_two_stage())
    assert torch.equal(plain(students, teachers),
                       fbkd.total_loss([fbkd.Level(s, t) for s, t in zip(students, teachers)],
                                       fbkd.Config.paper_two_stage()))
    assert "paper" in repr(plain)


def test_total_level_forms():
    """Levels may be Level tuples, plain tuples or dicts; teachers get no gradient."""
    s, t = features((2, 4, 3, 3), torch.float64)
    s = leaf(s)
    cfg = fbkd.Config.paper_two_stage()
    a = fbkd.total_loss([fbkd.Level(s, t)], cfg)
    b = fbkd.total_loss([(s, t)], cfg)
    c = fbkd.total_loss([{"student": s, "teacher": t}], cfg)
    assert torch.equal(a, b) and torch.equal(a, c)
    t_leaf = leaf(t)
    with pytest.warns(UserWarning, match="no gradient"):
        v = fbkd.total_loss([(s, t_leaf)], cfg)
    v.backward()
    assert t_leaf.grad is None and s.grad is not None


# ---- the P2-P5 pyramid (batch 2, C = 256), float32 ----------------------------------------------

@pytest.mark.parametrize("preset", ["code_two_stage", "paper_two_stage"])
def test_total_parity_pyramid_float32(preset):
    """The total over P2-P5 with the official adapters' outputs as random tensors. As in
    test_feature.py the reference runs in float64 on the same float32 inputs: its float32 torch.dist
    and sum() ** 0.5 over 34M elements lose ~1e-3 relative, kdloss float32 keeps 1e-5."""
    config = getattr(fbkd.Config, preset)()
    gen = torch.Generator().manual_seed(2)
    levels = pyramid_inputs(PYRAMID, torch.float32, gen)
    v, g = run_total(levels, config, "kdloss", ("contiguous", "channels_last"))
    levels64 = [tuple(x.double() for x in lv) for lv in levels]
    v_ref, g_ref = run_total(levels64, config, "reference")
    assert_rel(v, v_ref, RTOL[torch.float32], "total")
    for k, (a, b) in enumerate(zip(g, g_ref)):
        assert_rel(a, b, RTOL[torch.float32], "gradient %d" % k)


def test_total_backward_twice_with_retain_graph():
    levels = pyramid_inputs(SMALL_PYRAMID[:2], torch.float64, with_adapted=False)
    s = [leaf(lv[0]) for lv in levels]
    cfg = fbkd.Config.paper_two_stage()
    out = 2.0 * fbkd.total_loss([fbkd.Level(si, lv[1]) for si, lv in zip(s, levels)], cfg)
    g1 = torch.autograd.grad(out, s, retain_graph=True)
    g2 = torch.autograd.grad(out, s)
    for a, b in zip(g1, g2):
        assert_rel(a, b, 1e-12, "second backward")


# ---- NaN and +-inf: kdloss propagates them exactly as PyTorch autograd does on the reference ----------

POISONS = [float("nan"), float("inf"), float("-inf")]


def assert_same_nonfinite(actual, expected, rtol, what=""):
    """The same NaN / +inf / -inf entries, and the finite entries within rtol of the largest finite one."""
    a, e = actual.detach().double(), expected.detach().double()
    assert a.shape == e.shape, what
    for name, f in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        assert torch.equal(f(a), f(e)), "%s: %s at %s but expected at %s" % (
            what, name, f(a).nonzero().tolist()[:6], f(e).nonzero().tolist()[:6])
    fin = torch.isfinite(e)
    if fin.any():
        assert_rel(a[fin], e[fin], rtol, what)


def poisoned(levels, index, value, at=13):
    """A copy of pyramid_inputs' levels with `value` at one entry of input `index` (S, T, A, C_hat, S_hat) of level 0."""
    out = [list(lv) for lv in levels]
    x = out[0][index]
    if x is None:
        return None
    x = x.clone()
    x.view(-1)[at % x.numel()] = value
    out[0][index] = x
    return [tuple(lv) for lv in out]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("with_adapted", [True, False])
def test_total_nonfinite_like_autograd(preset, with_adapted):
    config = getattr(fbkd.Config, preset)()
    base = pyramid_inputs(SMALL_PYRAMID[1:3], torch.float64, torch.Generator().manual_seed(3), with_adapted)
    for index in range(5):
        for value in POISONS:
            levels = poisoned(base, index, value)
            if levels is None:
                continue
            what = "%s input %d = %s" % (preset, index, value)
            v, g = run_total(levels, config, "kdloss")
            v_ref, g_ref = run_total(levels, config, "reference")
            assert_same_nonfinite(v, v_ref, 1e-10, what + ": value")
            for k, (a, b) in enumerate(zip(g, g_ref)):
                assert_same_nonfinite(a, b, 1e-10, what + ": gradient %d" % k)


@pytest.mark.parametrize("value", POISONS)
def test_terms_nonfinite_like_autograd(value):
    gen = torch.Generator().manual_seed(4)
    s, t = features((2, 6, 5, 7), torch.float64, gen)
    a, c, sp = torch.randn(2, 6, 5, 7, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64), \
        torch.randn(2, 1, 5, 7, dtype=torch.float64)
    ms, mc = ref.code_masks(s, t)
    for name in ("a", "t", "ms"):
        a_, t_, ms_ = a.clone(), t.clone(), ms.clone()
        {"a": a_, "t": t_, "ms": ms_}[name].view(-1)[9] = abs(value) if name == "ms" else value
        x1, x2 = leaf(a_), leaf(a_)
        v, v_ref = fbkd.masked_feature_loss(x1, t_, ms_, mc.reshape(2, 6)), ref.mask_l2_loss(t_, x2, ms_, mc)
        assert_same_nonfinite(v, v_ref, 1e-10, "L_AM, %s" % name)
        assert_same_nonfinite(torch.autograd.grad(v, x1)[0], torch.autograd.grad(v_ref, x2)[0], 1e-10, "dL_AM, " + name)
    for name in ("s", "t"):
        s_, t_ = s.clone(), t.clone()
        {"s": s_, "t": t_}[name].view(-1)[40] = value
        x1, x2 = leaf(s_), leaf(s_)
        v, v_ref = fbkd.attention_transfer_loss(x1, t_), ref.paper_attention_transfer(x2, t_)
        assert_same_nonfinite(v, v_ref, 1e-10, "L_AT paper, %s" % name)
        assert_same_nonfinite(torch.autograd.grad(v, x1)[0], torch.autograd.grad(v_ref, x2)[0], 1e-10,
                              "dL_AT paper, " + name)
    for name in ("c", "sp", "t"):
        c_, sp_, t_ = c.clone(), sp.clone(), t.clone()
        {"c": c_, "sp": sp_, "t": t_}[name].view(-1)[3] = value
        c1, sp1, c2, sp2 = leaf(c_), leaf(sp_), leaf(c_), leaf(sp_)
        v, v_ref = fbkd.pooled_attention_transfer_loss(c1, sp1, t_), ref.code_attention_transfer(c2, sp2, t_)
        assert_same_nonfinite(v, v_ref, 1e-10, "L_AT code, %s" % name)
        for x, y, w in zip(torch.autograd.grad(v, [c1, sp1]), torch.autograd.grad(v_ref, [c2, sp2]), ("C_hat", "S_hat")):
            assert_same_nonfinite(x, y, 1e-10, "dL_AT code / d%s, %s" % (w, name))
    s_ = s.clone()
    s_.view(-1)[40] = value
    ms1, mc1 = fbkd.attention_masks(s_, t)
    ms2, mc2 = ref.code_masks(s_, t)
    assert_same_nonfinite(ms1, ms2, 1e-10, "M_s")
    assert_same_nonfinite(mc1, mc2.reshape(2, 6), 1e-10, "M_c")


@pytest.mark.parametrize("value", POISONS)
def test_ops_nonfinite_like_autograd(value):
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    x.view(-1)[[3, 50]] = value
    x.view(-1)[100] = 0.0
    for kd_fn, ref_fn in [(fbkd.spatial_attention, ref.spatial_attention),
                          (fbkd.channel_attention, lambda v: ref.channel_attention(v).flatten(1)),
                          (kd.ops.mean_over_channels, lambda v: v.mean(1, keepdim=True)),
                          (kd.ops.mean_over_positions, lambda v: v.mean((2, 3))),
                          (lambda v: kd.ops.softmax(v, 1, 0.5, 3.0), lambda v: torch.softmax(v / 0.5, 1) * 3.0),
                          (lambda v: kd.ops.log_softmax(v, 3, 2.0), lambda v: torch.log_softmax(v / 2.0, 3))]:
        a, b = leaf(x), leaf(x)
        out, out_ref = kd_fn(a), ref_fn(b)
        assert_same_nonfinite(out, out_ref, 1e-10, "forward")
        up = torch.randn_like(out_ref)
        up.view(-1)[1] = value
        assert_same_nonfinite(torch.autograd.grad(out, a, up)[0], torch.autograd.grad(out_ref, b, up)[0], 1e-10,
                              "backward")


def test_config_presets_non_local_settings():
    """The presets' L_NLD weights and per-level block settings (kdloss::fbkd::Config)."""
    assert fbkd.Config.code_two_stage().w_nld == 7e-5
    assert fbkd.Config.code_one_stage().w_nld == 4.2e-4
    assert fbkd.Config.paper_two_stage().w_nld == 7e-5
    assert fbkd.Config.paper_one_stage().w_nld == 4e-4
    mm = fbkd.Config.mmrazor_two_stage()
    assert mm.non_local_preset == "mmrazor" and mm.w_nld == 7e-5
    off = fbkd.Config.code_two_stage()
    assert [off.non_local_pool(i) for i in range(5)] == [8, 4, 2, 2, 2]
    assert [off.non_local_inter_channels(i, 256) for i in range(5)] == [64, 64, 128, 128, 128]
    assert [mm.non_local_pool(i) for i in range(4)] == [16, 8, 4, 4]
    assert [mm.non_local_inter_channels(i, 256) for i in range(4)] == [64, 64, 128, 128]


def _dot_block(x, p, pool):
    """The official dot-product block in PyTorch from NonLocalParams (BN in training mode)."""
    b, c, h, w = x.shape
    m = p.g_weight.shape[0]
    conv = lambda t, wt, bs: torch.nn.functional.conv2d(t, wt.view(wt.shape[0], -1, 1, 1), bs)
    mp = torch.nn.functional.max_pool2d
    g = mp(conv(x, p.g_weight, p.g_bias), pool).view(b, m, -1).permute(0, 2, 1)
    th = conv(x, p.theta_weight, p.theta_bias).view(b, m, -1).permute(0, 2, 1)
    ph = mp(conv(x, p.phi_weight, p.phi_bias), pool).view(b, m, -1)
    f = th @ ph
    y = ((f / f.shape[-1]) @ g).permute(0, 2, 1).reshape(b, m, h, w)
    y = conv(y, p.conv_out_weight, p.conv_out_bias)
    y = torch.nn.functional.batch_norm(y, None, None, p.bn_weight, p.bn_bias, training=True, eps=1e-5)
    return x + y


@pytest.mark.parametrize("preset", ["code_two_stage", "paper_two_stage"])
def test_total_with_non_local_term(preset):
    """total_loss with NonLocalLevel: the three-term total + w_nld * ||adapt(NL_S(S)) - NL_T(T)|| per
    level, every gradient (S, both blocks, the adaptation conv; none for T), the BN statistics buffer."""
    torch.manual_seed(4)
    cfg = getattr(fbkd.Config, preset)()
    cfg = dataclasses.replace(cfg, w_nld=0.3)
    shapes = [(2, 4, 8, 8), (2, 4, 4, 6)]
    levels, params, stats, nls = [], [], [], []
    for i, sh in enumerate(shapes):
        s, t = leaf(torch.randn(sh, dtype=torch.float64)), torch.randn(sh, dtype=torch.float64)
        a = leaf(torch.randn(sh, dtype=torch.float64))
        c = leaf(torch.randn(sh[0], sh[1], dtype=torch.float64))
        sp = leaf(torch.randn(sh[0], 1, sh[2], sh[3], dtype=torch.float64))
        m = 3
        blk = lambda: fbkd.NonLocalParams(*[leaf(torch.randn(shape, dtype=torch.float64) * 0.5) if shape else None
                                            for shape in [(m, 4), (m,), (m, 4), (m,), (m, 4), (m,), None, (4, m),
                                                          (4,), (4,), (4,)]])
        ps, pt = blk(), blk()
        aw, ab = leaf(torch.randn(4, 4, 1, 1, dtype=torch.float64)), leaf(torch.randn(4, dtype=torch.float64))
        st = torch.full((4, 4), -9.0, dtype=torch.float64)
        stats.append(st)
        nl = fbkd.NonLocalLevel(ps, pt, aw, ab, st)
        nls.append((s, t, nl, cfg.non_local_pool(i)))
        levels.append(fbkd.Level(s, t, a, c, sp, nl))
        params += [s, a, c, sp, aw, ab] + [p for p in ps + pt if p is not None]
    v = fbkd.total_loss(levels, cfg)
    g = torch.autograd.grad(v, params)
    three = ref.fbkd_total([tuple(lv[:5]) for lv in levels], cfg)
    nld = sum(cfg.w_nld * torch.dist(torch.nn.functional.conv2d(_dot_block(s, nl.student, pool), nl.adapt_weight,
                                                                 nl.adapt_bias), _dot_block(t, nl.teacher, pool))
              for s, t, nl, pool in nls)
    want = three + nld
    g_ref = torch.autograd.grad(want, params, allow_unused=True)
    assert_rel(v, want, 1e-10, "value")
    # gradients 0 in theory (conv_out's bias before a training-mode BN) are judged at the largest scale
    big = max(y.abs().max().item() for y in g_ref if y is not None)
    for k, (x, y) in enumerate(zip(g, g_ref)):
        y = torch.zeros_like(x) if y is None else y
        err = (x - y).abs().max().item()
        assert err <= 1e-9 * max(y.abs().max().item(), 1e-3 * big), "gradient %d: error %g" % (k, err)
    for st, (s, t, nl, pool) in zip(stats, nls):
        assert (st != -9).all()
        assert (st[1] >= 0).all() and (st[3] >= 0).all()
    # all or none: a level without its blocks next to one with them is an error naming it
    with pytest.raises(kd.KdlossError, match=r"levels\[1\]\.non_local_adapt_weight"):
        fbkd.total_loss([levels[0], levels[1]._replace(non_local=None)], cfg)
