"""Parity of kdloss_torch.detr's DETRDistill losses with PyTorch re-implementations of the official code paths
(detr_distill_reference.py, from losses.md section 4): values and gradients in float64 (1e-10) and float32,
6 decoder layers, ragged ground truth, an image without ground truth, top-k with repeated queries and with ties
at the cut (torch.topk's CPU order), strided maps, NaN propagation and clear errors."""

import pytest
import torch

import kdloss_torch.detr as kdetr
import detr_distill_reference as detr_ref
from detr_distill_reference import contrastive, feature
from helpers import LAYOUTS, assert_rel, layout, leaf


# ---------------------------------------------------------------- contrastive (4.5)
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("shape", [(6, 40, 32), (12, 8), (1, 5, 3)])
def test_contrastive_matches_moco_head(dtype, rtol, shape):
    pt, ps = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    a, b = leaf(pt), leaf(ps)
    v = kdetr.contrastive_query_loss(a, b)
    gt, gs = torch.autograd.grad(v, (a, b))
    a2, b2 = leaf(pt.double()), leaf(ps.double())
    v2 = contrastive(a2, b2)
    gt2, gs2 = torch.autograd.grad(v2, (a2, b2))
    assert_rel(v, v2, rtol, "value")
    assert_rel(gt, gt2, rtol * 10, "grad teacher")
    assert_rel(gs, gs2, rtol * 10, "grad student")


def test_contrastive_module_strided_and_options():
    pt = torch.randn(6, 16, 9, dtype=torch.float64).transpose(1, 2).contiguous().transpose(1, 2)
    ps = torch.randn(6, 16, 9, dtype=torch.float64)[:, :, :]
    m = kdetr.ContrastiveQueryLoss(temperature=0.5, weight=1.0)
    assert_rel(m(pt, ps), contrastive(pt, ps, 0.5, 1.0), 1e-10, "module value")


def test_contrastive_nan_and_errors():
    pt = torch.randn(4, 3, dtype=torch.float64)
    pt[1, 2] = float("nan")
    assert torch.isnan(kdetr.contrastive_query_loss(pt, torch.randn(4, 3, dtype=torch.float64)))
    with pytest.raises(kdetr._distill._C.KdlossError, match="must have the same shape"):
        kdetr.contrastive_query_loss(torch.randn(4, 3), torch.randn(3, 4))


# ---------------------------------------------------------------- target-aware feature distillation (4.3)
def make_inputs(dtype, K=6, B=3, Q=30, C=8, D=16, levels=((9, 11), (5, 6), (3, 3), (2, 1)), gt_counts=(3, 0, 1),
                ties=False, repeats=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: many ties at the top-k cut
        scores = torch.randint(0, 4, (K, B, Q, C), generator=g).to(dtype) / 4
    else:
        scores = torch.rand(K, B, Q, C, generator=g, dtype=dtype)
    if repeats:  # query 3 owns the highest scores of several classes: it is picked again and again
        scores[:, :, 3, :] = 0.95 + 0.001 * torch.arange(C, dtype=dtype)
    xy = torch.rand(K, B, Q, 2, generator=g, dtype=dtype) * 60
    wh = 5 + torch.rand(K, B, Q, 2, generator=g, dtype=dtype) * 40
    boxes = torch.cat([xy, xy + wh], -1)
    queries = torch.randn(K, B, Q, D, generator=g, dtype=dtype)
    gts = []
    for n in gt_counts:
        gxy = torch.rand(n, 2, generator=g, dtype=dtype) * 50
        gts.append(torch.cat([gxy, gxy + 10 + torch.rand(n, 2, generator=g, dtype=dtype) * 30], -1))
    fts = [torch.randn(B, D, h, w, generator=g, dtype=dtype) for h, w in levels]
    fss = [torch.randn(B, D, h, w, generator=g, dtype=dtype) for h, w in levels]
    return scores, boxes, queries, gts, fts, fss


def check_feature(inputs, rtol_v, rtol_g, topk=20, kind="contiguous"):
    scores, boxes, queries, gts, fts, fss = inputs
    s_leaf = [leaf(layout(f, kind)) for f in fss]
    v = kdetr.target_aware_feature_loss(scores, boxes, queries, gts, [layout(f, kind) for f in fts], s_leaf, topk=topk)
    grads = torch.autograd.grad(v, s_leaf)
    r_leaf = [leaf(f.double()) for f in fss]
    v2 = feature(scores.double(), boxes.double(), queries.double(), [x.double() for x in gts],
                 [f.double() for f in fts], r_leaf, topk=topk)
    grads2 = torch.autograd.grad(v2, r_leaf)
    assert_rel(v, v2, rtol_v, "value")
    for i, (a, b) in enumerate(zip(grads, grads2)):
        assert_rel(a, b, rtol_g, "gradient of level %d" % i)


def test_feature_6_layers_ragged_gt_image_without_gt():
    check_feature(make_inputs(torch.float64), 1e-10, 1e-10)


@pytest.mark.parametrize("kind", [k for k in LAYOUTS if k != "contiguous"])
def test_feature_strided_maps(kind):
    check_feature(make_inputs(torch.float64, K=2, levels=((9, 11), (3, 3))), 1e-10, 1e-10, kind=kind)


def test_feature_float32():
    check_feature(make_inputs(torch.float32, K=2, levels=((9, 11), (3, 3))), 2e-5, 2e-5)


def test_feature_repeated_queries():
    check_feature(make_inputs(torch.float64, K=2, levels=((9, 11), (3, 3)), repeats=True), 1e-10, 1e-10)


@pytest.mark.parametrize("topk", [20, 100, 240])  # partial_sort (k * 64 <= Q * C) and nth_element paths
@pytest.mark.parametrize("seed", [0, 1])
def test_feature_ties_follow_torch_topk(topk, seed):
    check_feature(make_inputs(torch.float64, K=2, levels=((9, 11), (2, 1)), ties=True, seed=seed), 1e-10, 1e-10,
                  topk=topk)


def test_feature_code_sizes_one_level():
    # 300 queries x 80 classes, top-100 (the code's test_cfg), D = 256, one small level, 2 layers
    check_feature(make_inputs(torch.float64, K=2, B=2, Q=300, C=80, D=256, levels=((6, 7),), gt_counts=(4, 0)),
                  1e-10, 1e-10, topk=100)


def test_feature_module_and_no_gt_anywhere():
    inputs = make_inputs(torch.float64, gt_counts=(0, 0, 0), K=2)
    scores, boxes, queries, gts, fts, fss = inputs
    m = kdetr.TargetAwareFeatureLoss(topk=10)
    assert_rel(m(scores, boxes, queries, gts, fts, fss), feature(scores, boxes, queries, gts, fts, fss, 10), 1e-10,
               "module value")


def test_feature_nan_and_errors():
    scores, boxes, queries, gts, fts, fss = make_inputs(torch.float64, K=1)
    s2 = scores.clone()
    s2[0, 0, 1, 1] = float("nan")
    assert torch.isnan(kdetr.target_aware_feature_loss(s2, boxes, queries, gts, fts, fss, topk=10))
    bad = [g.clone() for g in gts]
    bad[0][0, 2] = bad[0][0, 0] - 1  # x2 < x1: not xyxy
    with pytest.raises(kdetr._distill._C.KdlossError, match="'gt_boxes' row 0"):
        kdetr.target_aware_feature_loss(scores, boxes, queries, bad, fts, fss, topk=10)
    with pytest.raises(kdetr._distill._C.KdlossError, match="holds 2 images"):
        kdetr.target_aware_feature_loss(scores, boxes, queries, gts[:2], fts, fss, topk=10)
    with pytest.raises(kdetr._distill._C.KdlossError, match="'student_features' holds 3 levels"):
        kdetr.target_aware_feature_loss(scores, boxes, queries, gts, fts, fss[:3], topk=10)


# ---------------------------------------------------------------- logits distillation (4.2)
def make_logits(dtype, K=6, B=2, Q=12, N=12, C=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    sl = torch.randn(K, B, Q, C, generator=g, dtype=dtype) * 2
    tl = torch.randn(K, B, N, C, generator=g, dtype=dtype) * 2
    sb = torch.cat([0.1 + 0.8 * torch.rand(K, B, Q, 2, generator=g, dtype=dtype),
                    0.05 + 0.4 * torch.rand(K, B, Q, 2, generator=g, dtype=dtype)], -1)
    tb = torch.cat([0.1 + 0.8 * torch.rand(K, B, N, 2, generator=g, dtype=dtype),
                    0.05 + 0.6 * torch.rand(K, B, N, 2, generator=g, dtype=dtype)], -1)  # some reach past the image
    sizes = torch.tensor([[480.0, 640.0], [600.0, 400.0]], dtype=dtype)[:B]
    return sl, sb, tl, tb, sizes


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("QN", [(12, 12), (12, 7), (7, 12)])
def test_logits_distillation_matches_code_path(dtype, rtol, QN):
    sl, sb, tl, tb, sizes = make_logits(dtype, Q=QN[0], N=QN[1])
    a, b = leaf(sl), leaf(sb)
    v = kdetr.logits_distillation_loss(a, b, tl, tb, sizes)
    ga, gb = torch.autograd.grad(v, (a, b))
    a2, b2 = leaf(sl.double()), leaf(sb.double())
    v2 = detr_ref.logits_distillation(a2, b2, tl.double(), tb.double(), sizes.double())
    ga2, gb2 = torch.autograd.grad(v2, (a2, b2))
    assert_rel(v, v2, rtol, "value")
    assert_rel(ga, ga2, rtol * 10, "grad logits")
    assert_rel(gb, gb2, rtol * 10, "grad boxes")


def test_logits_distillation_split_and_errors():
    sl, sb, tl, tb, sizes = make_logits(torch.float64, K=2)
    v0 = kdetr.logits_distillation_loss(sl, sb, tl, tb, sizes)
    v1 = kdetr.logits_distillation_loss(sl, sb, tl, tb, sizes, split="score_threshold", score_threshold=0.0)
    assert_rel(v1, v0, 1e-14, "threshold 0 = the code path")
    for neg in ("background", "teacher_soft", "none"):
        assert torch.isfinite(kdetr.logits_distillation_loss(sl, sb, tl, tb, sizes, split="score_threshold",
                                                             score_threshold=0.8, negative_class=neg))
    tl2 = tl.clone()
    tl2[1, 0, 3, 2] = float("nan")
    with pytest.raises(kdetr._distill._C.KdlossError, match="layer 1"):
        kdetr.logits_distillation_loss(sl, sb, tl2, tb, sizes)
    with pytest.raises(kdetr._distill._C.KdlossError, match="'split' must be"):
        kdetr.logits_distillation_loss(sl, sb, tl, tb, sizes, split="paper")


# ---------------------------------------------------------------- query-prior assignment distillation (4.4)
def make_query_prior(dtype, K=6, B=3, Q=15, C=6, gt_counts=(4, 0, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(K, B, Q, C, generator=g, dtype=dtype) * 2 - 1
    boxes = torch.cat([0.1 + 0.8 * torch.rand(K, B, Q, 2, generator=g, dtype=dtype),
                       0.05 + 0.3 * torch.rand(K, B, Q, 2, generator=g, dtype=dtype)], -1)
    labels = [torch.randint(0, C, (n,), generator=g) for n in gt_counts]
    gts = [torch.cat([0.1 + 0.8 * torch.rand(n, 2, generator=g, dtype=dtype),
                      0.05 + 0.3 * torch.rand(n, 2, generator=g, dtype=dtype)], -1) for n in gt_counts]
    # the teacher's matcher output per layer: each ground truth to a distinct query, a different one per layer
    indices = [[(torch.randperm(Q, generator=g)[:n], torch.randperm(n, generator=g)) for n in gt_counts]
               for _ in range(K)]
    sizes = torch.tensor([[480.0, 640.0], [600.0, 500.0], [320.0, 320.0]], dtype=dtype)[:B]
    return logits, boxes, labels, gts, indices, sizes


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("pixels", [True, False])
def test_query_prior_matches_deformable_detr_loss(dtype, rtol, pixels):
    logits, boxes, labels, gts, indices, sizes = make_query_prior(dtype)
    sz = sizes if pixels else None
    a, b = leaf(logits), leaf(boxes)
    v = kdetr.query_prior_loss(a, b, labels, gts, indices, sz)
    ga, gb = torch.autograd.grad(3 * v, (a, b))  # an upstream gradient other than 1
    a2, b2 = leaf(logits.double()), leaf(boxes.double())
    v2 = detr_ref.query_prior(a2, b2, labels, [x.double() for x in gts], indices,
                              None if sz is None else sz.double())
    ga2, gb2 = torch.autograd.grad(3 * v2, (a2, b2))
    assert_rel(v, v2, rtol, "value")
    assert_rel(ga, ga2, rtol * 10, "grad logits")
    assert_rel(gb, gb2, rtol * 10, "grad boxes")


def test_query_prior_one_layer_module_num_pos_and_strided():
    logits, boxes, labels, gts, indices, sizes = make_query_prior(torch.float64, K=1, B=2, gt_counts=(3, 1))
    strided = logits[0].transpose(1, 2).contiguous().transpose(1, 2)  # [B, Q, C], classes strided
    m = kdetr.QueryPriorLoss(num_pos=7.5)
    v = m(strided, boxes[0], labels, gts, indices[0], sizes)
    v2 = detr_ref.query_prior(logits, boxes, labels, gts, indices, sizes, num_pos=7.5)
    assert_rel(v, v2, 1e-10, "module value")
    # no pair anywhere: only the focal term against all-zero targets, / (1 + eps)
    empty = [[(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))] * 2]
    assert_rel(kdetr.query_prior_loss(logits, boxes, labels, gts, empty, sizes),
               detr_ref.query_prior(logits, boxes, labels, gts, empty, sizes), 1e-10, "no pairs")


def test_query_prior_errors():
    logits, boxes, labels, gts, indices, sizes = make_query_prior(torch.float64, K=2, B=2, gt_counts=(2, 1))
    with pytest.raises(kdetr._distill._C.KdlossError, match="'indices' holds 1 layers"):
        kdetr.query_prior_loss(logits, boxes, labels, gts, indices[:1], sizes)
    bad = [[(torch.tensor([0, 1]), torch.tensor([0, 5])), indices[0][1]]] * 2  # ground-truth row out of range
    with pytest.raises(kdetr._distill._C.KdlossError, match="query_prior_loss"):
        kdetr.query_prior_loss(logits, boxes, labels, gts, bad, sizes)
    with pytest.raises(kdetr._distill._C.KdlossError, match="dtype"):
        kdetr.query_prior_loss(logits, boxes.float(), labels, gts, indices, sizes)
