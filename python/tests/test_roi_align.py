"""kdloss_torch.ops.roi_align against torchvision.ops.roi_align (the real peer, installed): values and
gradients, both aligned modes, several sampling ratios, scales and output sizes, boxes outside / on the
border / of zero area / smaller than a bin, the list-of-boxes format, empty boxes and empty images,
channel-last inputs, deterministic backward, and the max mode against a PyTorch re-implementation of
mmcv's kernel (mmcv-lite has no compiled ops). fp64 tight; fp32 1e-5 on values, 1e-4 on gradients."""

import pytest
import torch

torchvision = pytest.importorskip("torchvision")
import kdloss_torch.ops as kops  # noqa: E402

TOL = {torch.float64: (1e-10, 1e-12, 1e-10, 1e-12), torch.float32: (1e-5, 1e-5, 1e-4, 1e-5)}


def make_boxes(batch, h, w, scale, per_image, gen, dtype=torch.float64):
    """[K, 5] boxes in image coordinates: random ones plus every geometric corner case."""
    H, W = h / scale, w / scale
    rows = []
    for b in range(batch):
        for _ in range(per_image):
            x1, y1 = (torch.rand(2, generator=gen, dtype=torch.float64) * torch.tensor([W, H]) * 0.9).tolist()
            bw, bh = (torch.rand(2, generator=gen, dtype=torch.float64) * torch.tensor([W, H]) * 0.7).tolist()
            rows.append([b, x1 - 0.05 * W, y1 - 0.05 * H, x1 + bw, y1 + bh])
        rows += [[b, -0.3 * W, -0.2 * H, 0.4 * W, 0.5 * H],   # partly outside
                 [b, 1.2 * W, 1.1 * H, 1.5 * W, 1.6 * H],     # wholly outside
                 [b, 0, 0, W, H],                             # the border
                 [b, 0.3 * W, 0.4 * H, 0.3 * W, 0.4 * H],     # zero area
                 [b, 0.5 * W, 0.5 * H, 0.5 * W + 0.3, 0.5 * H + 0.2],  # smaller than a bin
                 [b, 0.7 * W, 0.6 * H, 0.2 * W, 0.1 * H]]     # reversed
    return torch.tensor(rows, dtype=dtype)


def both(x, boxes, out, scale, sr, aligned, gy):
    xa = x.detach().clone().requires_grad_()
    xb = x.detach().clone().requires_grad_()
    ya = kops.roi_align(xa, boxes, out, spatial_scale=scale, sampling_ratio=sr, aligned=aligned)
    yb = torchvision.ops.roi_align(xb, boxes, out, spatial_scale=scale, sampling_ratio=sr, aligned=aligned)
    ya.backward(gy)
    yb.backward(gy)
    return ya.detach(), yb.detach(), xa.grad, xb.grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("scale,sr,out", [(1.0, -1, 3), (0.5, 0, (2, 4)), (0.25, 2, 3), (0.125, 1, (3, 2)),
                                          (0.3, 3, 7)])
def test_matches_torchvision(dtype, aligned, scale, sr, out):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 13, 17, generator=gen, dtype=torch.float64).to(dtype)
    boxes = make_boxes(2, 13, 17, scale, 4, gen).to(dtype)
    oh, ow = (out, out) if isinstance(out, int) else out
    gy = torch.randn(boxes.shape[0], 5, oh, ow, generator=gen, dtype=torch.float64).to(dtype)
    ya, yb, ga, gb = both(x, boxes, out, scale, sr, aligned, gy)
    vr, va, gr, ga_abs = TOL[dtype]
    torch.testing.assert_close(ya, yb, rtol=vr, atol=va)
    torch.testing.assert_close(ga, gb, rtol=gr, atol=ga_abs)


@pytest.mark.parametrize("aligned", [False, True])
def test_list_of_boxes_and_empty_images(aligned):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 10, 12, generator=gen, dtype=torch.float64)
    per_image = [torch.tensor([[1.0, 1.0, 8.0, 6.0], [0.0, 0.0, 11.0, 9.0]], dtype=torch.float64),
                 torch.zeros(0, 4, dtype=torch.float64),  # an image with no box
                 torch.tensor([[2.5, 1.5, 4.0, 3.0]], dtype=torch.float64)]
    gy = torch.randn(3, 4, 3, 3, generator=gen, dtype=torch.float64)
    ya, yb, ga, gb = both(x, per_image, 3, 1.0, -1, aligned, gy)
    torch.testing.assert_close(ya, yb, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)
    assert torch.all(ga[1] == 0)
    # the same boxes as one [K, 5] tensor give the same bits
    rois = torch.cat([torch.full((b.shape[0], 1), float(i), dtype=torch.float64) for i, b in enumerate(per_image)])
    rois = torch.cat([rois, torch.cat(per_image)], dim=1)
    xc = x.clone().requires_grad_()
    yc = kops.roi_align(xc, rois, 3, aligned=aligned)
    yc.backward(gy)
    assert torch.equal(yc.detach(), ya) and torch.equal(xc.grad, ga)


def test_empty_boxes():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    y = kops.roi_align(x, torch.zeros(0, 5, dtype=torch.float64), (2, 3))
    assert y.shape == (0, 3, 2, 3)
    y.sum().backward()
    assert torch.all(x.grad == 0)
    y2 = kops.roi_align(x, [torch.zeros(0, 4, dtype=torch.float64)] * 2, 2)
    assert y2.shape == (0, 3, 2, 2)


def test_channels_last_and_determinism():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 25, 31, generator=gen)
    boxes = make_boxes(2, 25, 31, 0.5, 10, gen, torch.float32)
    gy = torch.randn(boxes.shape[0], 16, 3, 3, generator=gen)
    ya, yb, ga, gb = both(x.to(memory_format=torch.channels_last), boxes, 3, 0.5, -1, False, gy)
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5)
    grads = []
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)
        xr = x.clone().requires_grad_()
        kops.roi_align(xr, boxes, 3, 0.5).backward(gy)
        grads.append(xr.grad)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def mmcv_max_reference(x, rois, oh, ow, scale, sr, aligned):
    """mmcv's roi_align_forward (pool_mode=0, max) in plain PyTorch ops (differentiable through x)."""
    K, C = rois.shape[0], x.shape[1]
    H, W = x.shape[2], x.shape[3]
    out = []
    for k in range(K):
        b = int(rois[k, 0])
        off = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = [float(v) * scale - off for v in rois[k, 1:]]
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / oh, rw / ow
        gh = sr if sr > 0 else int(torch.ceil(torch.tensor(rh / oh)))
        gw = sr if sr > 0 else int(torch.ceil(torch.tensor(rw / ow)))
        bins = []
        for p in range(oh):
            for q in range(ow):
                best = torch.full((C,), -10000.0, dtype=x.dtype)
                for iy in range(gh):
                    yy = y1 + p * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        xx = x1 + q * bw + (ix + 0.5) * bw / gw
                        if yy < -1 or yy > H or xx < -1 or xx > W:
                            v = torch.zeros(C, dtype=x.dtype)
                        else:
                            y, xq = max(yy, 0.0), max(xx, 0.0)
                            yl, xl = int(y), int(xq)
                            if yl >= H - 1:
                                yl = yh = H - 1
                                y = float(yl)
                            else:
                                yh = yl + 1
                            if xl >= W - 1:
                                xl = xh = W - 1
                                xq = float(xl)
                            else:
                                xh = xl + 1
                            ly, lx = y - yl, xq - xl
                            v = ((1 - ly) * (1 - lx) * x[b, :, yl, xl] + (1 - ly) * lx * x[b, :, yl, xh]
                                 + ly * (1 - lx) * x[b, :, yh, xl] + ly * lx * x[b, :, yh, xh])
                        best = torch.where(v > best, v, best)
                bins.append(best)
        out.append(torch.stack(bins, dim=1).reshape(C, oh, ow))
    return torch.stack(out)


@pytest.mark.parametrize("aligned", [False, True])
def test_max_mode_matches_mmcv_reimplementation(aligned):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 7, 9, generator=gen, dtype=torch.float64)
    boxes = make_boxes(2, 7, 9, 0.5, 2, gen)
    gy = torch.randn(boxes.shape[0], 3, 2, 3, generator=gen, dtype=torch.float64)
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    ya = kops.roi_align(xa, boxes, (2, 3), 0.5, 2, aligned, pool_mode="max")
    yb = mmcv_max_reference(xb, boxes, 2, 3, 0.5, 2, aligned)
    torch.testing.assert_close(ya.detach(), yb.detach(), rtol=1e-10, atol=1e-12)
    ya.backward(gy)
    yb.backward(gy)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)


def test_bad_input_names_the_argument():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(Exception, match="image index 5"):
        kops.roi_align(x, torch.tensor([[5.0, 0, 0, 4, 4]]), 2)
    with pytest.raises(Exception, match="boxes"):
        kops.roi_align(x, torch.zeros(3, 4), 2)
    with pytest.raises(Exception, match="pool_mode"):
        kops.roi_align(x, torch.zeros(1, 5), 2, pool_mode="median")
