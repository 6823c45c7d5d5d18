// kdloss/backend/cpu/boxes.hpp: the host evaluation of the box passes (expr/boxes.hpp): an index space
// [0, n) and a functor f(i) that writes the outputs of item i and returns its contribution to a sum.
// The sum runs through ordered_sum (parallel.hpp): fixed blocks in a fixed order, so the bits do not
// depend on the thread count; each item is written by one thread only.
//
// cost_row: the box terms of a matching cost (expr::boxes::l1_giou_cost) for one prediction against a
// run of targets held in planes, a packet of targets at a time.
#pragma once
#include <cstdint>
#include <cstring>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/expr/boxes.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::boxes {

/// The double sum of f(i) over [0, n); runs in parallel when n * work_per_item passes the threshold.
template <class F>
double index_sum(std::int64_t n, std::int64_t work_per_item, F&& f) {
  return ordered_sum(n, n * work_per_item >= kParallelThreshold, [&](std::int64_t i) { return double(f(i)); });
}

#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(KDLOSS_NO_VECTOR_EXTENSIONS)
#define KDLOSS_BOX_VECTORS 1
// Where the build's baseline has no AVX2 (no FMA either, so the scalar formula's products and sums are
// not fused), a second copy of the packets in AVX registers for the machines that have them; built with
// fp-contract off, so that it does not fuse them either and keeps the scalar formula's bits.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && __GNUC__ >= 11 && \
    defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__) && !defined(KDLOSS_NO_TARGET_CLONES) && \
    !defined(__AVX2__) && !defined(__FMA__)
#define KDLOSS_BOX_AVX 1
// packets_avx flattens every helper into itself, so no 32-byte vector crosses a call (the helpers take
// vectors by reference, return them by value); GCC still warns that such a return would change the ABI
// without AVX, at whichever function it expands: switched off for the rest of the translation unit
// (-Wpsabi only), as core/packet.hpp does.
#pragma GCC diagnostic ignored "-Wpsabi"
#else
#define KDLOSS_BOX_AVX 0
#endif
namespace cost_row_detail {
/// Bytes bytes of A: 16 (4 floats, 2 doubles: one SSE2 register, the baseline x86-64 width) or 32
/// (one AVX register); compares give same-width integer lanes (0 or -1).
template <class A, int Bytes>
struct vec;
template <int Bytes>
struct vec<float, Bytes> {
  typedef float type __attribute__((vector_size(Bytes)));
};
template <int Bytes>
struct vec<double, Bytes> {
  typedef double type __attribute__((vector_size(Bytes)));
};
// The lane-wise forms of expr::boxes' nan_max / nan_min / clamp0: the same selects, so the same bits.
template <class V>
KDLOSS_FORCEINLINE V nan_max(const V& a, const V& b) {
  return ((a != a) | (b != b)) ? a + b : (a < b ? b : a);
}
template <class V>
KDLOSS_FORCEINLINE V nan_min(const V& a, const V& b) {
  return ((a != a) | (b != b)) ? a + b : (a < b ? a : b);
}
/// x in every lane (not 0 + x, which would turn -0 into +0).
template <class V, class A>
KDLOSS_FORCEINLINE V splat(A x) {
  V v;
  for (int l = 0; l < int(sizeof(V) / sizeof(A)); ++l) v[l] = x;
  return v;
}
template <class V>
KDLOSS_FORCEINLINE V clamp0(const V& x) {
  const V zero = {};
  return (x != x) ? x : (x > zero ? x : zero);
}
template <class V, class A>
KDLOSS_FORCEINLINE V load(const A* x) {
  V v;
  std::memcpy(&v, x, sizeof v);
  return v;
}

/// The packets of cost_row (below) in vectors V; returns the first target left for the scalar tail.
template <class V, expr::boxes::OverlapForm Form, class A>
KDLOSS_FORCEINLINE std::int64_t packets(A* cost, std::int64_t n, const A p[4], const A px[4], const A* const plane[8],
                                        double wb, double wg, const expr::boxes::Overlap& o) {
  constexpr int W = sizeof(V) / sizeof(A);
  constexpr bool mm = Form == expr::boxes::OverlapForm::mmdet, tv = Form == expr::boxes::OverlapForm::torchvision;
  const V zero = {}, one = splat<V>(A(1)), eps = splat<V>(A(o.eps)), wbv = splat<V>(A(wb)), nwg = splat<V>(-A(wg));
  V pc[4], pxv[4];
  for (int k = 0; k < 4; ++k) pc[k] = splat<V>(p[k]), pxv[k] = splat<V>(px[k]);
  const A pw = px[2] - px[0], ph = px[3] - px[1];
  const V a1 = splat<V>(pw * ph);
  std::int64_t j = 0;
  for (; j + W <= n; j += W) {
    V c = load<V>(cost + j);
    if (wb != 0) {
      V l1 = zero;
      for (int k = 0; k < 4; ++k) {
        const V d = pc[k] - load<V>(plane[k] + j);
        l1 += d < zero ? -d : d;
      }
      c += wbv * l1;
    }
    if (wg != 0) {
      const V t0 = load<V>(plane[4] + j), t1 = load<V>(plane[5] + j), t2 = load<V>(plane[6] + j),
              t3 = load<V>(plane[7] + j);
      const V tw = t2 - t0, th = t3 - t1;
      const V a2 = tw * th;
      const V lx = nan_max(pxv[0], t0), ly = nan_max(pxv[1], t1);
      const V rx = nan_min(pxv[2], t2), ry = nan_min(pxv[3], t3);
      const V inter = clamp0(rx - lx) * clamp0(ry - ly);
      const V u0 = a1 + a2 - inter;
      V ud = u0;
      if (mm) ud = nan_max(u0, eps);
      if (tv) ud = u0 + eps;
      const V un = mm ? ud : u0;
      const auto identical = (pxv[0] == t0) & (pxv[1] == t1) & (pxv[2] == t2) & (pxv[3] == t3);
      const V iou = ud != zero ? inter / ud : (identical ? one : zero);
      V value = iou;
      if (o.giou) {
        const V vx = nan_max(pxv[2], t2) - nan_min(pxv[0], t0);
        const V vy = nan_max(pxv[3], t3) - nan_min(pxv[1], t1);
        const V e0 = tv ? vx * vy : clamp0(vx) * clamp0(vy);
        V ed = e0;
        if (mm) ed = nan_max(e0, eps);
        if (tv) ed = e0 + eps;
        const V en = mm ? ed : e0;
        value = ed != zero ? iou - (en - un) / ed : iou;
      }
      c += nwg * value;
    }
    std::memcpy(cost + j, &c, sizeof c);
  }
  return j;
}

#if KDLOSS_BOX_AVX
template <expr::boxes::OverlapForm Form, class A>
__attribute__((target("arch=x86-64-v3"), optimize("fp-contract=off"), noinline)) KDLOSS_CPU_FLATTEN std::int64_t
packets_avx(A* cost, std::int64_t n, const A p[4], const A px[4], const A* const plane[8], double wb, double wg,
            const expr::boxes::Overlap& o) {
  return packets<typename vec<A, 32>::type, Form>(cost, n, p, px, plane, wb, wg, o);
}
#endif
}  // namespace cost_row_detail
#else
#define KDLOSS_BOX_VECTORS 0
#endif

/// cost[j] = expr::boxes::l1_giou_cost(cost[j], p, px, yc_j, yx_j, wb, wg, o) for j in [0, n), where
/// target j's boxes are yc_j[k] = plane[k][j] and yx_j[k] = plane[4 + k][j]; o.form must be Form.
/// Packets of targets run the scalar formula's operations in its order, lane by lane (NaN inputs give
/// NaN where the scalar formula does), so every cost has the scalar formula's bits; the tail of fewer
/// than a packet runs the scalar formula itself.
template <expr::boxes::OverlapForm Form, class A>
void cost_row(A* cost, std::int64_t n, const A p[4], const A px[4], const A* const plane[8], double wb, double wg,
              const expr::boxes::Overlap& o) {
  std::int64_t j = 0;
#if KDLOSS_BOX_VECTORS
  namespace cr = cost_row_detail;
#if KDLOSS_BOX_AVX
  if (__builtin_cpu_supports("x86-64-v3"))
    j = cr::packets_avx<Form>(cost, n, p, px, plane, wb, wg, o);
  else
#endif
    j = cr::packets<typename cr::vec<A, 16>::type, Form>(cost, n, p, px, plane, wb, wg, o);
#endif
  for (; j < n; ++j) {
    A yc[4], yx[4];
    for (int k = 0; k < 4; ++k) yc[k] = plane[k][j], yx[k] = plane[4 + k][j];
    cost[j] = expr::boxes::l1_giou_cost(cost[j], p, px, yc, yx, wb, wg, o);
  }
}

} } }  // namespace kdloss::backend::cpu::boxes
