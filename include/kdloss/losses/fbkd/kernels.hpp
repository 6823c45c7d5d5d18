// kdloss/losses/fbkd/kernels.hpp: the FBKD formulas as backend-neutral functors, and the steps
// (one executor call each) that the FBKD entry points chain. Every functor is written once for
// Eigen arrays (host) and Acc scalars (GPU), as losses/feature/pointwise.hpp does.
//
// Scalar results (norms, the weighted total) are stored by reduction finalisers into double slots
// on the call's device; the gradient passes and the final combine read those slots inside their
// kernels, so nothing is copied back to the host.
#pragma once
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/basic.hpp"
#include "kdloss/losses/fbkd/options.hpp"
#include "kdloss/ops/norm.hpp"
#include "kdloss/ops/pooling.hpp"
#include "kdloss/ops/softmax.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace fbkd::detail {

using ::kdloss::detail::Carver;

template <class T>
using Upstream = ::kdloss::ops::ScalarUpstream<T>;  // ops/norm.hpp

/// The extents of one pyramid level's feature [B,C,H,W].
struct Geometry {
  std::int64_t b = 0, c = 0, h = 0, w = 0;
  static Geometry of(const Dims& d) { return {d[0], d[1], d[2], d[3]}; }
  std::int64_t hw() const { return h * w; }
  std::int64_t numel() const { return b * c * h * w; }
  Dims feature() const { return Dims{b, c, h, w}; }
};

/// A contiguous [B,H,W] buffer seen as [B,1,H,W] (broadcasts over C).
template <class A>
View<A> spatial_buffer(A* p, const Geometry& g, Device d) {
  return View<A>(p, Dims{g.b, 1, g.h, g.w}, Dims{g.hw(), g.hw(), g.w, 1}, d);
}
/// A contiguous [B,C] buffer seen as [B,C,1,1] (broadcasts over H and W).
template <class A>
View<A> channel_buffer(A* p, const Geometry& g, Device d) {
  return View<A>(p, Dims{g.b, g.c, 1, 1}, Dims{g.c, 1, 1, 1}, d);
}
/// The same buffers as rows: [B, HW] and [B, C].
template <class A>
View<A> spatial_rows(A* p, const Geometry& g, Device d) {
  return View<A>(p, Dims{g.b, g.hw()}, Dims{g.hw(), 1}, d);
}
template <class A>
View<A> channel_rows(A* p, const Geometry& g, Device d) {
  return View<A>(p, Dims{g.b, g.c}, Dims{g.c, 1}, d);
}

using ::kdloss::absent;  // core/entry.hpp: the one test for an optional view

// ---------------------------------------------------------------------------------------------
// Attention masks: row operations over the positions (or channels) of each image, two inputs
// (the teacher's map, then the student's), written like ops/softmax.hpp's rows.

/// Paper: out = scale * softmax((in0 + in1) / t): one softmax of the summed maps.
struct PaperMaskRow {
  double inv_t, scale;
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE void operator()(const Row& row) const {
    const Acc it = Acc(inv_t);
    auto logit = [&](std::int64_t j) { return (row.template in<0, Acc>(j) + row.template in<1, Acc>(j)) * it; };
    const Acc m = row.template max<Acc>(logit);
    const Acc z = row.template sum<Acc>([&](std::int64_t j) { return math::exp(logit(j) - m); });
    const Acc factor = Acc(scale) / z;
    row.for_each([&](std::int64_t j) { row.template out<0>(j, factor * math::exp(logit(j) - m)); });
  }
};
/// Code: out = scale * (softmax(in0 / t) + softmax(in1 / t)) / 2: the mean of two separate softmaxes.
struct CodeMaskRow {
  double inv_t, scale;
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE void operator()(const Row& row) const {
    const Acc it = Acc(inv_t);
    const auto a = ops::detail::row_max_and_sum<0>(row, it);
    const auto b = ops::detail::row_max_and_sum<1>(row, it);
    const Acc fa = Acc(0.5 * scale) / a.sum, fb = Acc(0.5 * scale) / b.sum;
    row.for_each([&](std::int64_t j) {
      row.template out<0>(j, fa * math::exp(row.template in<0, Acc>(j) * it - a.max) +
                                 fb * math::exp(row.template in<1, Acc>(j) * it - b.max));
    });
  }
};

/// out[b, :] = the mask of rows [b, :] of the teacher's and the student's maps (2-D views [B, N]).
template <class Acc, class A, class M>
void mask_rows(Device device, Stream stream, const View<const A>& map_t, const View<const A>& map_s, const View<M>& out,
               MaskForm form, double temperature, double scale) {
  const double inv_t = 1.0 / temperature;
  if (form == MaskForm::paper)
    ::kdloss::detail::rowwise<Acc>(device, stream, out.shape, 1, PaperMaskRow{inv_t, scale}, std::tuple{map_t, map_s},
                                   std::tuple{out}, nullptr, ::kdloss::detail::Keep{}, static_cast<double*>(nullptr));
  else
    ::kdloss::detail::rowwise<Acc>(device, stream, out.shape, 1, CodeMaskRow{inv_t, scale}, std::tuple{map_t, map_s},
                                   std::tuple{out}, nullptr, ::kdloss::detail::Keep{}, static_cast<double*>(nullptr));
}

// ---------------------------------------------------------------------------------------------
// Norms: a reduction of squares whose finaliser (SqrtFinal) takes the square root into a slot on
// the call's device. Each norm's gradient folds the loss weight and the upstream gradient into one
// scale k = weight * upstream / norm (norm_grad_scale).

using ::kdloss::ops::SqrtFinal;  // ops/norm.hpp
using ::kdloss::ops::SquaredDifference;

/// The scale k = weight * upstream / norm of a norm's gradient, with ops/norm.hpp's exact-zero rule
/// (FBKD's `sum() ** 0.5` would give NaN at a zero norm; NaN and inf reach every gradient entry that
/// autograd's reach: docs/losses/fbkd.md, "NaN and infinity").
template <class S, class U>
KDLOSS_HOST_DEVICE S norm_grad_scale(const double* norm, const Upstream<U>& upstream, double weight) {
  return ::kdloss::ops::norm_backward_scale(*norm, upstream.template get<S>(), weight);
}

/// L_AM terms: (T - A)^2 * M_s (* M_c). Inputs: adapted student A, teacher T, M_s [B,1,H,W], M_c [B,C,1,1].
struct MaskedSquare {
  template <class A, class Tt, class Ms>
  KDLOSS_HOST_DEVICE auto operator()(const A& a, const Tt& t, const Ms& ms) const {
    return math::square(t - a) * ms;
  }
  template <class A, class Tt, class Ms, class Mc>
  KDLOSS_HOST_DEVICE auto operator()(const A& a, const Tt& t, const Ms& ms, const Mc& mc) const {
    return math::square(t - a) * ms * mc;
  }
};
/// d (weight * L_AM) / dA = weight * (A - T) * M / L_AM, times the upstream gradient; 0 when L_AM = 0.
template <class U>
struct MaskedSquareGrad {
  const double* norm;
  Upstream<U> upstream;
  double weight;
  template <class A, class Tt, class Ms, class G>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const Tt& t, const Ms& ms, G& g) const {
    using S = math::scalar_t<G>;
    const S k = norm_grad_scale<S>(norm, upstream, weight);
    g = (a - t) * ms * k;
  }
  template <class A, class Tt, class Ms, class Mc, class G>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const Tt& t, const Ms& ms, const Mc& mc, G& g) const {
    using S = math::scalar_t<G>;
    const S k = norm_grad_scale<S>(norm, upstream, weight);
    g = (a - t) * ms * mc * k;
  }
};

/// d (weight * ||a - b||) / da = weight * (a - b) / ||a - b||, times the upstream; 0 at distance 0.
template <class U>
struct WeightedDistanceGrad {
  const double* norm;
  Upstream<U> upstream;
  double weight;
  template <class A, class B, class G>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const B& b, G& g) const {
    using S = math::scalar_t<G>;
    g = (a - b) * norm_grad_scale<S>(norm, upstream, weight);
  }
};

/// Paper L_AT = ||G_s(S) - G_s(T)|| + ||G_c(S) - G_c(T)||, G = abs-means. Its gradient wrt S:
/// sign(S) * (w/C * (G_s(S) - G_s(T)) / L_s + w/HW * (G_c(S) - G_c(T)) / L_c), times the upstream.
/// Inputs: S, the differences G_s(S) - G_s(T) [B,1,H,W] and G_c(S) - G_c(T) [B,C,1,1]; norms = {L_s, L_c}.
template <class U>
struct PaperTransferGrad {
  const double* norms;
  Upstream<U> upstream;
  double weight, inv_c, inv_hw;
  template <class X, class Ds, class Dc, class G>
  KDLOSS_HOST_DEVICE void operator()(const X& s, const Ds& ds, const Dc& dc, G& g) const {
    using S = math::scalar_t<G>;
    const S ks = norm_grad_scale<S>(norms, upstream, weight * inv_c);
    const S kc = norm_grad_scale<S>(norms + 1, upstream, weight * inv_hw);
    g = math::sign(s) * (ds * ks + dc * kc);
  }
};

/// The whole paper-form gradient wrt S when S is also L_AM's A (no adapter), in one pass:
/// w_am * (S - T) * M_s [* M_c] / L_AM + the PaperTransferGrad term, times the upstream.
/// Inputs: S, T, M_s, [M_c,] the map differences as in PaperTransferGrad; norms = the level's slots.
template <class U>
struct PaperTotalGrad {
  const double* norms;
  Upstream<U> upstream;
  double w_am, w_at, inv_c, inv_hw;
  template <class X, class Tt, class Ms, class Ds, class Dc, class G>
  KDLOSS_HOST_DEVICE void operator()(const X& s, const Tt& t, const Ms& ms, const Ds& ds, const Dc& dc, G& g) const {
    using S = math::scalar_t<G>;
    const S ka = norm_grad_scale<S>(norms, upstream, w_am);
    const S ks = norm_grad_scale<S>(norms + 1, upstream, w_at * inv_c);
    const S kc = norm_grad_scale<S>(norms + 2, upstream, w_at * inv_hw);
    g = (s - t) * ms * ka + math::sign(s) * (ds * ks + dc * kc);
  }
  template <class X, class Tt, class Ms, class Mc, class Ds, class Dc, class G>
  KDLOSS_HOST_DEVICE void operator()(const X& s, const Tt& t, const Ms& ms, const Mc& mc, const Ds& ds, const Dc& dc,
                                     G& g) const {
    using S = math::scalar_t<G>;
    const S ka = norm_grad_scale<S>(norms, upstream, w_am);
    const S ks = norm_grad_scale<S>(norms + 1, upstream, w_at * inv_c);
    const S kc = norm_grad_scale<S>(norms + 2, upstream, w_at * inv_hw);
    g = (s - t) * ms * mc * ka + math::sign(s) * (ds * ks + dc * kc);
  }
};

/// out = a - b (small maps).
struct Difference {
  template <class A, class B, class O>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const B& b, O& out) const {
    out = a - b;
  }
};
/// a * b: the terms of L_AM^2 by rows (M_s times sum_c (T - A)^2).
struct Product {
  template <class A, class B>
  KDLOSS_HOST_DEVICE auto operator()(const A& a, const B& b) const {
    return a * b;
  }
};

/// out = in (a workspace buffer copied to a strided output view).
/// a + b: a level's L_NLD gradient to S added to the other terms' part.
struct Sum {
  template <class A, class B, class O>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const B& b, O& out) const {
    out = a + b;
  }
};

/// Slots per level: the L_AM norm, then the two L_AT norms (spatial, channel), then the L_NLD norm.
inline constexpr int kSlotsPerLevel = 4;
/// total = sum over levels of w_am * slot[0] + w_at * (slot[1] + slot[2]) + w_nld * slot[3]; a term whose
/// weight is 0 was not computed and is skipped. Runs on a one-element space: one thread reads the slots.
struct CombineSlots {
  const double* slots;
  std::int64_t levels;
  double w_am, w_at, w_nld;
  KDLOSS_HOST_DEVICE double operator()() const {
    double total = 0;
    for (std::int64_t l = 0; l < levels; ++l) {
      const double* s = slots + l * kSlotsPerLevel;
      if (w_am != 0) total += w_am * s[0];
      if (w_at != 0) total += w_at * (s[1] + s[2]);
      if (w_nld != 0) total += w_nld * s[3];
    }
    return total;
  }
};

// ---------------------------------------------------------------------------------------------
// Steps: one executor call each, no checks (the entry points validate first).

/// *slot = sqrt(sum f(ins...)) over `full` (slot: a double slot or the caller's output, on the device).
template <class Acc, class F, class R, class... I>
void norm_into(Device device, Stream stream, const Dims& full, F f, const std::tuple<View<const I>...>& ins,
               double* partials, R* slot) {
  ::kdloss::detail::transform_reduce<Acc>(device, stream, full, f, ins, std::tuple<>{}, partials, SqrtFinal{}, slot);
}
/// out[0] = the weighted sum of the slots of `levels` levels.
template <class Acc, class O>
void combine_into(Device device, Stream stream, const double* slots, std::int64_t levels, double w_am, double w_at,
                  double* partials, O* out, double w_nld = 0) {
  ::kdloss::detail::transform_reduce<Acc>(device, stream, Dims{}, CombineSlots{slots, levels, w_am, w_at, w_nld},
                                          std::tuple<>{}, std::tuple<>{}, partials, ::kdloss::detail::Keep{}, out);
}
template <class Acc, class O>
void zero_fill(Device device, Stream stream, const View<O>& out) {
  ::kdloss::detail::transform<Acc>(device, stream, out.shape, expr::Zero{}, std::tuple<>{}, std::tuple{out});
}
template <class Acc, class A, class O>
void copy_into(Device device, Stream stream, const View<const A>& in, const View<O>& out) {
  ::kdloss::detail::transform<Acc>(device, stream, out.shape, expr::Identity{}, std::tuple{in}, std::tuple{out});
}

/// A view the call needs was left out (default-constructed).
template <class T>
void require_present(const ::kdloss::detail::Checker& ck, const View<T>& v, const char* arg, const char* why) {
  ::kdloss::detail::require(!absent(v), ck.fn, ": argument '", arg, "' is absent but ", why);
}

/// The one-element upstream gradient of a backward call, on the call's device.
template <class T>
void check_upstream(const ::kdloss::detail::Checker& ck, const View<const T>& grad_out, Device device) {
  ::kdloss::detail::require(grad_out.numel() == 1, ck.fn,
                            ": argument 'grad_out' must hold one element (the upstream gradient of the loss) but has "
                            "shape ",
                            grad_out.shape.str());
  ck.not_null(grad_out, "grad_out");
  ck.device(grad_out, "grad_out", device);
}
/// The one-element loss output, on the call's device.
template <class T>
void check_scalar_out(const ::kdloss::detail::Checker& ck, const View<T>& out, const char* arg, Device device) {
  ck.scalar_output(out, arg);
  ck.device(out, arg, device);
}

/// Scratch of every reduction of a call: the reductions run one after another on one stream, so
/// they share one buffer sized for the largest.
inline double* carve_partials(Carver& carver, Device device, std::int64_t largest) {
  return ::kdloss::detail::carve_reduction(carver, device, largest < 1 ? 1 : largest);
}

} } }  // namespace kdloss::fbkd::detail
