// kdloss/ops/cosine_relation.hpp: the cosine-similarity relation of instances, per image: for image b with
// rows x_i (i in [offsets[b], offsets[b + 1])) of a [n, D] view,
//
//   N_i = x_i / max(||x_i||, eps)            (torch.nn.functional.normalize(x, dim=1, eps), eps = 1e-12)
//   R_b = N_b N_b^T                          [n_b, n_b], packed image after image into out [sum n_b^2]
//
// backward (dR packed like out):  dN_b = (dR_b + dR_b^T) N_b,
//   dx_i = (dN_i - [||x_i|| >= eps] (N_i . dN_i) N_i) / max(||x_i||, eps)      (F.normalize's gradient)
// A zero row has R = 0 against every row (itself included) and the finite gradient dN_i / eps, as PyTorch
// gives: no NaN. NaN rows give NaN relations and gradients in their image. Row norms come from
// ops::distance (per item against a broadcast zero). Products run through ops::matmul; no reserve
// (backward recomputes N). docs/ops/cosine_relation.md.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/ops/distance.hpp"
#include "kdloss/ops/matmul.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

/// Options of ops::cosine_relation.
struct CosineRelationOptions {
  double eps = 1e-12;  // F.normalize's eps: rows are divided by max(||x||, eps); > 0
};

/// The arguments of one cosine_relation call. x [n, D] (any strides); segments: host offsets [B + 1]
/// ending at n; out [sum n_b^2] (forward): image b's [n_b, n_b] relation row-major at sum_{c<b} n_c^2;
/// grad_out like out (backward); grad_x like x (backward, forward_backward).
///
///   std::vector<float> x(5 * 2304, 0.5f), r(3 * 3 + 2 * 2);
///   std::int64_t offsets[] = {0, 3, 5};
///   kdloss::ops::CosineRelationArgs<float> args;
///   args.x = kdloss::host_view<const float>(x.data(), {5, 2304});
///   args.segments.offsets = kdloss::host_view<const std::int64_t>(offsets, {3});
///   args.out = kdloss::host_view(r.data(), {13});
///   kdloss::ops::cosine_relation(args, kdloss::Mode::forward);
template <class T>
struct CosineRelationArgs {
  View<const T> x{};
  Segments<std::int64_t> segments{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_x{};
  CosineRelationOptions options{};
};

namespace cosine_relation_detail {
using ::kdloss::detail::Carver;
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;

inline constexpr EntryNames kNames{"kdloss::ops::cosine_relation", "kdloss::ops::cosine_relation_backward",
                                   "kdloss::ops::cosine_relation_forward_backward"};

/// sum n_b^2, the packed relation's length; an error (not an int64 overflow) when it is too large to size
/// (a check-only call may describe 2^35 rows in one image): the byte counts of the packed relation and of
/// the per-image products (m^2 + m D elements of scratch) must stay countable, so the sum is bounded by
/// INT64_MAX / 16 (at most 759250124 rows in one image).
template <class T>
std::int64_t pairs(const Segments<std::int64_t>& s, const char* fn = kNames.forward) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max() / 16;
  std::int64_t p = 0;
  for (std::int64_t b = 0; b < s.count(); ++b) {
    const std::int64_t m = s.size(b);
    require(m <= 3037000499 && m * m <= kMax - p, fn, ": argument 'segments' puts ", m, " rows in image ", b,
            ": the packed relation (sum n_b^2 = ", p, " + ", m, "^2 elements) would exceed ", kMax,
            " elements, more than a 64-bit byte count can size");
    p += m * m;
  }
  return p;
}

/// N = x / max(norm, eps).
struct Normalize {
  double eps;
  template <class X, class Nm, class O>
  KDLOSS_HOST_DEVICE void operator()(const X& x, const Nm& norm, O& out) const {
    using S = math::scalar_t<O>;
    out = x / math::max(norm, S(eps));
  }
};
struct Mul {
  template <class A, class B>
  KDLOSS_HOST_DEVICE auto operator()(const A& a, const B& b) const {
    return a * b;
  }
};
/// dx = (dN - [norm >= eps] c N) / max(norm, eps).
struct NormalizeGrad {
  double eps;
  template <class DN, class Nn, class C, class Nm, class O>
  KDLOSS_HOST_DEVICE void operator()(const DN& dn, const Nn& n, const C& c, const Nm& norm, O& out) const {
    using S = math::scalar_t<O>;
    out = (dn - math::select(norm >= S(eps), c, S(0) * c) * n) / math::max(norm, S(eps));
  }
};

/// Workspace: the row norms [n] (then the row dots), N [n, D], dN [n, D] (gradient modes), ops::distance's.
template <class T>
struct Plan {
  T *norm = nullptr, *nx = nullptr, *dn = nullptr, *dots = nullptr, *zero = nullptr;
  void *dist = nullptr, *gemm = nullptr;
  std::size_t dist_bytes = 0, gemm_bytes = 0, total = 0;
};
template <class T>
View<const T> zero_like(const View<const T>& x, const T* zero) {
  return View<const T>(zero, x.shape, Dims{0, 0}, x.device);
}
template <class T>
ops::DistanceArgs<T> norm_args(const View<const T>& x, const T* zero, T* norm) {
  ops::DistanceArgs<T> d;
  d.a = x;
  d.b = zero_like(x, zero);
  d.options.per_item = true;
  d.out = View<T>(norm, Dims{x.shape[0]}, Dims{1}, x.device);
  return d;
}
template <class T>
Plan<T> plan(const CosineRelationArgs<T>& a, void* base) {
  Carver c(base);
  Plan<T> p;
  const auto n = static_cast<std::size_t>(a.x.shape[0]), nd = static_cast<std::size_t>(a.x.numel());
  p.zero = c.take<T>(1);
  p.norm = c.take<T>(n);
  p.dots = c.take<T>(n);
  p.nx = c.take<T>(nd);
  p.dn = c.take<T>(nd);
  ops::DistanceArgs<T> q;
  q.a = q.b = a.x;
  q.options.per_item = true;
  p.dist_bytes = ops::distance_workspace_bytes(q);
  p.dist = c.take<unsigned char>(p.dist_bytes);
  const std::int64_t D = a.x.shape[1];
  // the products' scratch depends on the strides of the packed relations (out, grad_out): the calls below
  // view image b's [m, m] block with the caller's element stride
  const std::int64_t os = present(a.out) ? a.out.strides[0] : 1, gs = present(a.grad_out) ? a.grad_out.strides[0] : 1;
  for (std::int64_t b = 0; b < a.segments.count(); ++b) {  // the largest product's scratch
    const std::int64_t m = a.segments.size(b);
    const View<const T> rows(nullptr, Dims{m, D}, Dims{D, 1}, a.x.device);
    const View<const T> sq(nullptr, Dims{m, m}, Dims{m * gs, gs}, a.x.device);
    const View<T> rel(nullptr, Dims{m, m}, Dims{m * os, os}, a.x.device), out(nullptr, Dims{m, D}, Dims{D, 1}, a.x.device);
    const MatmulArgs<T> products[] = {{rows, rows, rel, {false, true}}, {sq, rows, out}, {sq, rows, out, {true, false, 1.0, 1.0}}};
    for (const MatmulArgs<T>& g : products)
      p.gemm_bytes = std::max(p.gemm_bytes, ::kdloss::detail::gemm_bytes(a.x.device, ops::detail::make_gemm(g)));
  }
  p.gemm = c.take<unsigned char>(p.gemm_bytes);
  p.total = c.bytes();
  return p;
}

template <class T>
void check_inputs(const CosineRelationArgs<T>& a, const char* fn) {
  const Checker ck{fn};
  ck.rank(a.x, "x", 2);
  ck.not_null(a.x, "x");
  require(present(a.segments.offsets), fn, ": argument 'segments' (the per-image offsets) is absent");
  ::kdloss::detail::check_segments(ck, a.segments, "segments", a.x.shape[0]);
  (void)pairs<T>(a.segments, fn);  // countable before any size query multiplies it
  require(a.options.eps > 0 && std::isfinite(a.options.eps), fn, ": option 'eps' is ", a.options.eps,
          " but must be > 0 and finite");
  ::kdloss::detail::require_backend<T>(fn, a.x.device);
}

template <class T>
void check(const CosineRelationArgs<T>& a, Mode mode) {
  const char* fn = kNames(mode);
  const Checker ck{fn};
  check_inputs(a, fn);
  const Dims rel{pairs<T>(a.segments, fn)};
  const Device dev = a.x.device;
  if (writes_value(mode)) {
    require(present(a.out), fn, ": mode ", to_string(mode), " writes 'out' but it is absent");
    ck.not_null(a.out, "out");
    ck.shape(a.out, "out", rel);
    ck.device(a.out, "out", dev);
    ck.unique(a.out, "out");
    ck.disjoint(a.out, "out", a.x, "x");
  }
  if (!writes_gradients(mode)) return;
  require(present(a.grad_out), fn, ": mode ", to_string(mode), " reads 'grad_out' but it is absent");
  ck.not_null(a.grad_out, "grad_out");
  ck.shape(a.grad_out, "grad_out", rel);
  ck.device(a.grad_out, "grad_out", dev);
  require(present(a.grad_x), fn, ": mode ", to_string(mode), " writes 'grad_x' but it is absent");
  ck.not_null(a.grad_x, "grad_x");
  ck.shape(a.grad_x, "grad_x", a.x.shape);
  ck.device(a.grad_x, "grad_x", dev);
  ck.unique(a.grad_x, "grad_x");
  ck.disjoint(a.grad_x, "grad_x", a.x, "x");
  ck.disjoint(a.grad_x, "grad_x", a.grad_out, "grad_out");
  if (writes_value(mode)) ck.disjoint(a.grad_x, "grad_x", a.out, "out");
}

}  // namespace cosine_relation_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::ops::CosineRelationArgs<float> args;   // filled in as in CosineRelationArgs's example
///   kdloss::ops::cosine_relation_check(args, kdloss::Mode::forward);
template <class T>
void cosine_relation_check(const CosineRelationArgs<T>& args, Mode mode) {
  cosine_relation_detail::check(args, mode);
}

/// Workspace bytes, every mode: the row norms and dots ([n]), N and dN ([n, D]) and ops::distance's.
///
///   kdloss::ops::CosineRelationArgs<float> args;   // filled in as in CosineRelationArgs's example
///   std::size_t bytes = kdloss::ops::cosine_relation_workspace_bytes(args);
template <class T>
std::size_t cosine_relation_workspace_bytes(const CosineRelationArgs<T>& args) {
  cosine_relation_detail::check_inputs(args, "kdloss::ops::cosine_relation_workspace_bytes");
  return cosine_relation_detail::plan(args, nullptr).total;
}

/// Checks, then runs: forward writes the packed relations; backward (recomputes N) writes grad_x from
/// grad_out; forward_backward writes both (grad_out is read, as in backward: the relation is not a scalar).
///
///   kdloss::ops::CosineRelationArgs<float> args;   // filled in as in CosineRelationArgs's example
///   kdloss::ops::cosine_relation(args, kdloss::Mode::forward);
template <class T>
void cosine_relation(const CosineRelationArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace cd = cosine_relation_detail;
  const char* fn = cd::kNames(mode);
  cd::check(a, mode);
  detail::require_blas(fn, a.x.device, exec);
  const Device dev = a.x.device;
  using Acc = acc_t<T>;
  ::kdloss::detail::HostScratch host;
  const std::size_t need = cd::plan(a, nullptr).total;
  const cd::Plan<T> p = cd::plan(a, ::kdloss::detail::resolve_workspace(fn, dev, exec.workspace, need, host));
  const Exec dexec{{p.dist, p.dist_bytes}, exec.stream, exec.blas};
  const Exec gexec{{p.gemm_bytes ? p.gemm : nullptr, p.gemm_bytes}, exec.stream, exec.blas};
  const std::int64_t n = a.x.shape[0], D = a.x.shape[1];
  ::kdloss::detail::gemm_fill(dev, exec, p.zero, 1, 0.0);  // the broadcast zero the norms are taken against
  ops::distance(cd::norm_args<T>(a.x, p.zero, p.norm), Mode::forward, dexec);
  const Dims full{n, D};
  const View<const T> norm_b(p.norm, full, Dims{1, 0}, dev);
  const View<T> N(p.nx, full, Dims{D, 1}, dev);
  ::kdloss::detail::transform<Acc>(dev, exec.stream, full, cd::Normalize{a.options.eps}, std::tuple{a.x, norm_b},
                                   std::tuple{N});
  const View<const T> Nc(N);
  std::int64_t off = 0;
  if (writes_value(mode))
    for (std::int64_t b = 0; b < a.segments.count(); ++b) {
      const std::int64_t s0 = a.segments.begin(b), m = a.segments.size(b);
      if (m == 0) continue;
      const View<T> R(a.out.data + off * a.out.strides[0], Dims{m, m}, Dims{m * a.out.strides[0], a.out.strides[0]}, dev);
      ops::matmul(MatmulArgs<T>{Nc.slice(0, s0, s0 + m), Nc.slice(0, s0, s0 + m), R, {false, true}}, gexec);
      off += m * m;
    }
  if (!writes_gradients(mode)) return;
  const View<T> dN(p.dn, full, Dims{D, 1}, dev);
  off = 0;
  for (std::int64_t b = 0; b < a.segments.count(); ++b) {
    const std::int64_t s0 = a.segments.begin(b), m = a.segments.size(b);
    if (m == 0) continue;
    const std::int64_t gs = a.grad_out.strides[0];
    const View<const T> dR(a.grad_out.data + off * gs, Dims{m, m}, Dims{m * gs, gs}, dev);
    const View<T> dNb = dN.slice(0, s0, s0 + m);
    ops::matmul(MatmulArgs<T>{dR, Nc.slice(0, s0, s0 + m), dNb}, gexec);                              // dR N
    ops::matmul(MatmulArgs<T>{dR, Nc.slice(0, s0, s0 + m), dNb, {true, false, 1.0, 1.0}}, gexec);     // + dR^T N
    off += m * m;
  }
  if (n == 0) return;
  const View<T> dots(p.dots, Dims{n, 1}, Dims{1, 1}, dev);
  ::kdloss::detail::reduce_into<Acc>(dev, exec.stream, full, cd::Mul{}, std::tuple{View<const T>(dN), Nc}, dots);
  ::kdloss::detail::transform<Acc>(dev, exec.stream, full, cd::NormalizeGrad{a.options.eps},
                                   std::tuple{View<const T>(dN), Nc, View<const T>(p.dots, full, Dims{1, 0}, dev),
                                              norm_b},
                                   std::tuple{a.grad_x});
}

}  // namespace ops
} }  // namespace kdloss
