// kdloss/expr/boxes.hpp: the element formulas of the box passes (ops/boxes.hpp), written once as
// HOST_DEVICE scalar code that the host loops and the CUDA kernels both run: format conversions and
// the overlap of two boxes (IoU, GIoU) with its analytic gradient, in the three forms users meet
//
//   detr         DETR's util/box_ops.py and torchvision's box_iou / generalized_box_iou: no eps;
//   mmdet        mmdet's bbox_overlaps / GIoULoss: union <- max(union, eps), enclose <- max(enclose, eps);
//   torchvision  torchvision's generalized_box_iou_loss: iou = I / (U + eps), the enclosing term
//                (E - U) / (E + eps) over the unclamped enclosing box.
//
// The gradient follows torch 2.15's autograd through the same graph: clamp(min = 0) passes the
// gradient only where its input is > 0 (touching boxes send no intersection gradient), elementwise
// max / min split it 1/2 : 1/2 on ties, and max(x, eps) sends none to x when eps wins (1/2 on a tie).
//
// Degenerate boxes, the stated rule: a denominator that is exactly 0 (union or enclosing area; only
// possible without eps, or with inverted boxes) does not divide: the IoU term is 1 when the two boxes
// are identical and 0 otherwise, the enclosing term is 0, and neither sends a gradient. Everything
// else follows the formula as written (an inverted box, x2 < x1, keeps its signed area, as torchvision
// and mmdet compute it). So identical boxes of positive area have IoU exactly 1 in the detr and mmdet
// forms (I == U in floating point), and every value and gradient is finite for finite inputs. NaN
// inputs propagate (max/min below return NaN when either side is NaN, as torch.maximum does).
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr::boxes {

/// Box coordinate layouts, as torchvision.ops.box_convert names them.
enum class BoxFormat { xyxy, cxcywh, xywh };

inline const char* to_string(BoxFormat f) {
  switch (f) {
    case BoxFormat::xyxy: return "xyxy";
    case BoxFormat::cxcywh: return "cxcywh";
    case BoxFormat::xywh: return "xywh";
  }
  return "?";
}

/// Which code's overlap formula (see the header comment).
enum class OverlapForm { detr, mmdet, torchvision };

inline const char* to_string(OverlapForm f) {
  switch (f) {
    case OverlapForm::detr: return "detr";
    case OverlapForm::mmdet: return "mmdet";
    case OverlapForm::torchvision: return "torchvision";
  }
  return "?";
}

/// NaN-propagating max / min (torch.maximum / torch.minimum).
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A nan_max(A a, A b) {
  return (a != a || b != b) ? a + b : (a < b ? b : a);
}
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A nan_min(A a, A b) {
  return (a != a || b != b) ? a + b : (a < b ? a : b);
}
/// The share of d max(a, b) that goes to a: 1, 1/2 on a tie, 0 (and 1/2 when either is NaN, as
/// torch's max backward masks both sides equal to the NaN result... NaN flows through the value anyway).
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A max_share(A a, A b) {
  return a > b ? A(1) : (a == b ? A(0.5) : (a < b ? A(0) : A(0.5)));
}
/// clamp(x, min = 0)'s derivative in torch 2.15: 1 where x > 0, else 0.
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A clamp0(A x) {
  return (x != x) ? x : (x > A(0) ? x : A(0));
}
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A clamp0_share(A x) {
  return x > A(0) ? A(1) : A(0);
}

/// out = the box `in` (4 values in format `from`) in format `to`.
template <class A>
KDLOSS_HOST_DEVICE void convert(const A in[4], BoxFormat from, BoxFormat to, A out[4]) {
  A x1 = in[0], y1 = in[1], x2 = in[2], y2 = in[3];
  if (from == BoxFormat::cxcywh) {
    // torchvision: x1 = cx - 0.5 * w; x2 = cx + 0.5 * w (DETR's box_cxcywh_to_xyxy the same)
    x1 = in[0] - A(0.5) * in[2];
    y1 = in[1] - A(0.5) * in[3];
    x2 = in[0] + A(0.5) * in[2];
    y2 = in[1] + A(0.5) * in[3];
  } else if (from == BoxFormat::xywh) {
    x2 = in[0] + in[2];
    y2 = in[1] + in[3];
  }
  if (to == BoxFormat::xyxy) {
    out[0] = x1, out[1] = y1, out[2] = x2, out[3] = y2;
  } else if (to == BoxFormat::cxcywh) {
    // torchvision: cx = (x1 + x2) / 2, w = x2 - x1
    out[0] = (x1 + x2) / A(2);
    out[1] = (y1 + y2) / A(2);
    out[2] = x2 - x1;
    out[3] = y2 - y1;
  } else {
    out[0] = x1, out[1] = y1, out[2] = x2 - x1, out[3] = y2 - y1;
  }
  if (from == to)
    for (int k = 0; k < 4; ++k) out[k] = in[k];
}

/// The transpose of convert's (linear) Jacobian applied to g: gin[k] = sum_j d out_j / d in_k * g[j].
template <class A>
KDLOSS_HOST_DEVICE void convert_backward(const A g[4], BoxFormat from, BoxFormat to, A gin[4]) {
  for (int k = 0; k < 4; ++k) {
    A e[4] = {A(0), A(0), A(0), A(0)}, col[4];
    e[k] = A(1);
    convert(e, from, to, col);
    gin[k] = col[0] * g[0] + col[1] * g[1] + col[2] * g[2] + col[3] * g[3];
  }
}

/// The overlap form and its eps (ignored by detr).
struct Overlap {
  OverlapForm form = OverlapForm::detr;
  double eps = 0.0;
  bool giou = true;  // false: plain IoU (the enclosing term is left out)
};

/// IoU or GIoU of the xyxy boxes p and t. When gp / gt are non-null, adds g * d value / d p (resp. t)
/// to them (callers zero them first).
template <class A>
KDLOSS_HOST_DEVICE A overlap(const A p[4], const A t[4], const Overlap& o, A g = A(0), A* gp = nullptr,
                             A* gt = nullptr) {
  const A eps = A(o.eps);
  const bool mm = o.form == OverlapForm::mmdet, tv = o.form == OverlapForm::torchvision;
  const A pw = p[2] - p[0], ph = p[3] - p[1], tw = t[2] - t[0], th = t[3] - t[1];
  const A a1 = pw * ph, a2 = tw * th;
  const A lx = nan_max(p[0], t[0]), ly = nan_max(p[1], t[1]);
  const A rx = nan_min(p[2], t[2]), ry = nan_min(p[3], t[3]);
  const A wx = rx - lx, wy = ry - ly;
  const A iw = clamp0(wx), ih = clamp0(wy);
  const A inter = iw * ih;
  const A u0 = a1 + a2 - inter;
  const A ud = mm ? nan_max(u0, eps) : (tv ? u0 + eps : u0);  // the IoU's denominator
  const A un = mm ? ud : u0;                                  // the union in the enclosing term
  const bool identical = p[0] == t[0] && p[1] == t[1] && p[2] == t[2] && p[3] == t[3];
  const bool iou_defined = ud != A(0);
  const A iou = iou_defined ? inter / ud : (identical ? A(1) : A(0));
  // d value / d(ud), d(un), d(en), d(ed), d(inter) (direct)
  A d_ud = iou_defined ? -inter / (ud * ud) : A(0), d_inter = iou_defined ? A(1) / ud : A(0);
  A d_un = 0, d_en = 0, d_ed = 0;
  A value = iou;
  // enclosing box
  const A ex1 = nan_min(p[0], t[0]), ey1 = nan_min(p[1], t[1]);
  const A ex2 = nan_max(p[2], t[2]), ey2 = nan_max(p[3], t[3]);
  const A vx = ex2 - ex1, vy = ey2 - ey1;
  const A ew = tv ? vx : clamp0(vx), eh = tv ? vy : clamp0(vy);
  const A e0 = ew * eh;
  const A ed = mm ? nan_max(e0, eps) : (tv ? e0 + eps : e0);
  const A en = mm ? ed : e0;
  if (o.giou && ed != A(0)) {
    value = iou - (en - un) / ed;
    d_un = A(1) / ed;
    d_en = -A(1) / ed;
    d_ed = (en - un) / (ed * ed);
  }
  if (gp == nullptr && gt == nullptr) return value;
  // chain to u0 and e0
  const A su = mm ? max_share(u0, eps) : A(1), se = mm ? max_share(e0, eps) : A(1);
  const A d_u0 = mm ? (d_ud + d_un) * su : d_ud + d_un;
  const A d_e0 = mm ? (d_ed + d_en) * se : d_ed + d_en;
  d_inter = d_inter - d_u0;  // u0 = a1 + a2 - inter
  const A d_a = d_u0;        // both areas
  // inter = iw * ih
  const A d_wx = d_inter * ih * clamp0_share(wx), d_wy = d_inter * iw * clamp0_share(wy);
  // e0 = ew * eh
  const A d_vx = d_e0 * eh * (tv ? A(1) : clamp0_share(vx)), d_vy = d_e0 * ew * (tv ? A(1) : clamp0_share(vy));
  // Per coordinate k (x1, y1, x2, y2) of box p, with q the other box:
  //   area: a = (x2 - x1)(y2 - y1); lx = max(x1, .), rx = min(x2, .); ex1 = min(x1, .), ex2 = max(x2, .)
  A* outs[2] = {gp, gt};
  const A* bx[2] = {p, t};
  const A dwh[2][2] = {{ph, pw}, {th, tw}};  // d area / d width = height, d area / d height = width
  for (int s = 0; s < 2; ++s) {
    A* out = outs[s];
    if (out == nullptr) continue;
    const A* b = bx[s];
    const A* q = bx[1 - s];
    const A dwx_area = d_a * dwh[s][0], dwy_area = d_a * dwh[s][1];
    // x1: area (-), lx = max(x1, q0) (wx = rx - lx: -), ex1 = min(x1, q0) (vx = ex2 - ex1: -)
    out[0] += g * (-dwx_area - d_wx * max_share(b[0], q[0]) - d_vx * max_share(q[0], b[0]));
    out[1] += g * (-dwy_area - d_wy * max_share(b[1], q[1]) - d_vy * max_share(q[1], b[1]));
    // x2: area (+), rx = min(x2, q2) (+), ex2 = max(x2, q2) (+)
    out[2] += g * (dwx_area + d_wx * max_share(q[2], b[2]) + d_vx * max_share(b[2], q[2]));
    out[3] += g * (dwy_area + d_wy * max_share(q[3], b[3]) + d_vy * max_share(b[3], q[3]));
  }
  return value;
}

/// A matching cost's box terms for one pair, in this order (the operations the host's packet pass,
/// backend/cpu/boxes.hpp cost_row, repeats lane by lane): cost += wb * sum_k |p_k - yc_k| when wb != 0,
/// then cost += -wg * overlap(px, yx) when wg != 0. p, yc: the boxes of the L1 term; px, yx: xyxy.
template <class A>
KDLOSS_HOST_DEVICE A l1_giou_cost(A cost, const A p[4], const A px[4], const A yc[4], const A yx[4], double wb,
                                  double wg, const Overlap& o) {
  if (wb != 0) {
    A l1 = A(0);
    for (int c = 0; c < 4; ++c) {
      const A d = p[c] - yc[c];
      l1 += d < A(0) ? -d : d;
    }
    cost += A(wb) * l1;
  }
  if (wg != 0) cost += -A(wg) * overlap(px, yx, o);
  return cost;
}

} } }  // namespace kdloss::expr::boxes
