"""Parity of kdloss_torch.drkd's instance relations with PyTorch re-implementations written from
losses.md 2.3 (the official DRKD two-stage code: ObjectRelation_1 with its per-call random filter layer,
torch.dist, the relation/for adaptation convs, torchvision.ops.roi_align pooling, the image-0 bug) and
from the seed's pseudocode (cosine relation, relation filter, MSE): values and gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kdloss_torch.drkd as drkd

torchvision = pytest.importorskip("torchvision")
from torchvision.ops import roi_align  # noqa: E402


class CodeObjectRelation(nn.Module):
    """The code's ObjectRelation_1, re-implemented (resize draws nn.Linear(in, b) on the CPU per call)."""

    def __init__(self, in_channels):
        super().__init__()
        inter = in_channels // 2
        self.in_channels = in_channels
        self.theta = nn.Sequential(nn.Linear(in_channels, inter))
        self.phi = nn.Sequential(nn.Linear(in_channels, inter))
        self.g = nn.Sequential(nn.Linear(in_channels, inter))
        self.W = nn.Linear(inter, in_channels)

    def forward(self, x, use_filter=True):
        n = x.size(0)
        xr = x.view(n, -1)
        g_x, theta_x, phi_x = self.g(xr), self.theta(xr), self.phi(xr).permute(1, 0)
        f = torch.matmul(theta_x, phi_x)
        if use_filter:
            fc = nn.Linear(self.in_channels, n).to(x)
            f = f * torch.softmax(fc(xr), -1)
        y = torch.matmul(torch.softmax(f, -1), g_x)
        return self.W(y).view(x.size()) + x


def code_loss(student_feats, teacher_feats, gt_bboxes, srel, trel, radapt, fadapt, image0_bug, use_filter=True):
    """The code's kd_relation_loss * 0.004 + kd_fore_loss * 0.008 * 0.3 over levels 0 and 1."""
    rel, fore = 0, 0
    for i in range(2):
        scale = student_feats[i].size(-1) / (student_feats[0].size(-1) * 4)
        for b, boxes in enumerate(gt_bboxes):
            if boxes.shape[0] == 0:  # the code cannot run an image without boxes (view(0, -1)); kdloss adds 0
                continue
            xs = student_feats[i] if image0_bug else student_feats[i][b:b + 1]
            xt = teacher_feats[i] if image0_bug else teacher_feats[i][b:b + 1]
            s_region = roi_align(xs, [boxes], output_size=3, spatial_scale=scale)
            t_region = roi_align(xt, [boxes], output_size=3, spatial_scale=scale)
            s_rel = srel[i](s_region, use_filter)
            t_rel = trel[i](t_region, use_filter)
            rel = rel + torch.dist(radapt[i](s_rel), t_rel, p=2)
            fore = fore + torch.dist(fadapt[i](s_region), t_region, p=2)
    return rel * 0.004 + fore * 0.008 * 0.3


def make_case(dtype, counts=(3, 2), channels=8):
    g = torch.Generator().manual_seed(0)
    sf = [torch.randn(2, channels, 32, 40, generator=g, dtype=dtype), torch.randn(2, channels, 16, 20, generator=g, dtype=dtype)]
    tf = [torch.randn(2, channels, 32, 40, generator=g, dtype=dtype), torch.randn(2, channels, 16, 20, generator=g, dtype=dtype)]
    boxes = []
    for c in counts:
        xy = torch.rand(c, 2, generator=g, dtype=dtype) * 100
        wh = torch.rand(c, 2, generator=g, dtype=dtype) * 60 + 1
        boxes.append(torch.cat([xy, xy + wh], 1))
    return sf, tf, boxes


@pytest.mark.parametrize("fused", [True, False], ids=["maps_entry", "roi_align_then_loss"])
@pytest.mark.parametrize("image0_bug", [False, True])
@pytest.mark.parametrize("use_filter", [True, False])
@pytest.mark.parametrize("counts", [(3, 2), (1, 0), (2, 1)])
def test_code_form_matches_the_reference_code(image0_bug, use_filter, counts, fused):
    """fused: one kdloss::drkd::instance_relation_maps_loss call per level; else kdloss_torch.ops.roi_align, then
    instance_relation_loss. The peer: the official code re-implemented (code_loss, torchvision's roi_align)."""
    dtype = torch.float64
    channels = 8
    sf, tf, boxes = make_case(dtype, counts, channels)
    torch.manual_seed(1)
    ours = drkd.InstanceRelationDistiller(channels, image0_bug=image0_bug, filter="draw" if use_filter else "none",
                                          fused=fused).to(dtype)
    theirs = nn.ModuleDict({
        "student_relation": nn.ModuleList([CodeObjectRelation(channels * 9) for _ in range(2)]),
        "teacher_relation": nn.ModuleList([CodeObjectRelation(channels * 9) for _ in range(2)]),
        "relation_adaptation": nn.ModuleList([nn.Conv2d(channels, channels, 1) for _ in range(2)]),
        "for_adaptation": nn.ModuleList([nn.Conv2d(channels, channels, 1) for _ in range(2)]),
    }).to(dtype)
    # the code's parameter names load into the kdloss module
    missing = ours.load_state_dict(theirs.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    s_ours = [f.clone().requires_grad_() for f in sf]
    s_theirs = [f.clone().requires_grad_() for f in sf]
    torch.manual_seed(7)  # the filters: the same draws in the same order
    got = ours(s_ours, tf, boxes)
    torch.manual_seed(7)
    want = code_loss(s_theirs, tf, boxes, theirs["student_relation"], theirs["teacher_relation"],
                     theirs["relation_adaptation"], theirs["for_adaptation"], image0_bug, use_filter)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    got.backward()
    want.backward()
    for a, b in zip(s_ours, s_theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        if q.grad is None:
            assert p.grad is None or torch.count_nonzero(p.grad) == 0, name
            continue
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=name)


def test_code_form_float32_and_backward_scaling():
    sf, tf, boxes = make_case(torch.float32)
    torch.manual_seed(2)
    ours = drkd.InstanceRelationDistiller(8)
    s = [f.clone().requires_grad_() for f in sf]
    torch.manual_seed(3)
    (ours(s, tf, boxes) * 3.0).backward()
    g3 = s[0].grad.clone()
    s[0].grad = None
    torch.manual_seed(3)
    ours(s, tf, boxes).backward()
    torch.testing.assert_close(g3, 3.0 * s[0].grad, rtol=1e-6, atol=1e-9)


def paper_reference(fs, ft, offsets, ct=None, cs=None, threshold_from="teacher_mean", threshold=0.5,
                    mask_columns=False, alpha=float("inf")):
    """The seed's pseudocode per image: cosine relation, R[M == False] = 0, R[D > alpha] = 0, MSE."""
    rs_all, rt_all = [], []
    for b in range(len(offsets) - 1):
        s0, s1 = offsets[b], offsets[b + 1]
        if s1 == s0:
            continue
        out = []
        for x, c in ((fs[s0:s1].flatten(1), cs if cs is not None else ct), (ft[s0:s1].flatten(1), ct)):
            n = F.normalize(x, dim=1)
            r = n @ n.t()
            keep = torch.ones_like(r, dtype=torch.bool)
            if c is not None:
                t = ct[s0:s1].mean() if threshold_from == "teacher_mean" else threshold
                m = c[s0:s1] > t
                keep = keep & m[:, None]
                if mask_columns:
                    keep = keep & m[None, :]
            d = torch.cdist(x.detach(), x.detach())
            keep = keep & ~(d > alpha)
            out.append(torch.where(keep, r, torch.zeros_like(r)))
        rs_all.append(out[0].flatten())
        rt_all.append(out[1].flatten())
    return F.mse_loss(torch.cat(rs_all), torch.cat(rt_all))


@pytest.mark.parametrize("variant", range(5))
def test_paper_form_matches_the_seed_reimplementation(variant):
    g = torch.Generator().manual_seed(4)
    offsets = [0, 4, 4, 9]
    fs = torch.randn(9, 8, 3, 3, generator=g, dtype=torch.float64)
    ft = torch.randn(9, 6, 3, 3, generator=g, dtype=torch.float64)
    ct, cs = torch.rand(9, generator=g, dtype=torch.float64), torch.rand(9, generator=g, dtype=torch.float64)
    kw = [dict(), dict(mask_columns=True), dict(threshold_from="fixed", threshold=0.3, cs=cs),
          dict(alpha=12.0), dict(ct=None)][variant]
    c_t = kw.pop("ct", ct)
    c_s = kw.pop("cs", None)
    a = fs.clone().requires_grad_()
    b = fs.clone().requires_grad_()
    got = drkd.instance_relation_paper_loss(a, ft, offsets, c_t, c_s, **kw)
    want = paper_reference(b, ft, offsets, c_t, c_s, **kw)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    got.backward()
    want.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-13)


def test_errors_name_the_argument():
    from kdloss_torch._C import KdlossError
    x = torch.randn(4, 8, 3, 3)
    with pytest.raises(KdlossError, match="boxes"):
        drkd.instance_relation_paper_loss(x, x, [0, 3])


def test_code_form_second_backward_recomputes():
    """The fused gradients are given away on the first backward; retain_graph's second one recomputes them."""
    sf, tf, boxes = make_case(torch.float64)
    torch.manual_seed(4)
    ours = drkd.InstanceRelationDistiller(8, filter="none").to(torch.float64)
    s = [f.clone().requires_grad_() for f in sf]
    loss = ours(s, tf, boxes)
    loss.backward(retain_graph=True)
    once = [x.grad.clone() for x in s]
    loss.backward(torch.tensor(0.5, dtype=torch.float64))
    for x, g in zip(s, once):
        torch.testing.assert_close(x.grad, 1.5 * g, rtol=1e-12, atol=1e-14)
