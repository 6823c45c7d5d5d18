// kdloss/ops/distance.hpp: the Frobenius distance ||a - b||_F (torch.dist(a, b), p = 2) per item or over
// the whole tensor, forward and backward, the one implementation of a composite's "F-norm" term.
//
//   items: the whole tensor (default); every index of dim 0 (options.per_item); or the ragged row
//          segments of dim 0 given by `segments` (image b owns rows [offsets[b], offsets[b + 1])).
//   value: out[i] = weight * ||a_i - b_i||_F               (out: [items])
//          out    = weight * sum_i ||a_i - b_i||_F         (options.sum_items, or one item: one element)
//   grad:  dL/da_i = upstream_i * weight * (a_i - b_i) / ||a_i - b_i||,   dL/db_i = -dL/da_i
//
// Rules (PyTorch's norm backward, docs/ops/distance.md): where a norm is exactly 0 the gradient is
// upstream * 0 (0, or NaN for a NaN upstream); a NaN input gives a NaN value and a NaN gradient over its
// item; an infinite norm gives 0 beside NaN at the infinite elements. An empty item has norm 0.
//
// Passes: the value is one fused square-and-sum per item whose finaliser takes the square root and keeps
// the norm in a double slot of the workspace (on the call's device, no host round trip); the gradient is
// one elementwise pass per item reading that slot. Sums run in a fixed order (bits independent of the
// thread count).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
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
#include "kdloss/expr/basic.hpp"
#include "kdloss/ops/norm.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

/// Options of ops::distance.
struct DistanceOptions {
  bool per_item = false;   // items are the indices of dim 0 (ignored when `segments` are given)
  bool sum_items = false;  // out is one element: weight * the sum of the items' distances
  double weight = 1.0;     // multiplies every value and gradient (finite)
};

/// The arguments of one ops::distance call.
/// - a, b: the same shape, any strides (broadcast included); rank >= 1 when items split dim 0.
/// - segments: optional ragged items (host offsets, B + 1 entries ending at a.shape[0]); absent: see options.
/// - out: [items] (one element when there is one item or options.sum_items): forward, forward_backward.
/// - grad_out: like out (backward). grad_a, grad_b: like a and b, each optional (backward: grad_out *
///   dL/d., forward_backward: dL/d. of the value itself).
///
///   // per image distance of packed RoI features, 3 and 2 boxes
///   std::vector<float> s(5 * 2304, 1.0f), t(5 * 2304, 0.5f), gs(5 * 2304), d(2);
///   std::int64_t offsets[] = {0, 3, 5};
///   kdloss::ops::DistanceArgs<float> args;
///   args.a = kdloss::host_view<const float>(s.data(), {5, 256, 3, 3});
///   args.b = kdloss::host_view<const float>(t.data(), {5, 256, 3, 3});
///   args.segments.offsets = kdloss::host_view<const std::int64_t>(offsets, {3});
///   args.out = kdloss::host_view(d.data(), {2});
///   args.grad_a = kdloss::host_view(gs.data(), {5, 256, 3, 3});
///   kdloss::ops::distance(args, kdloss::Mode::forward_backward);
template <class T>
struct DistanceArgs {
  View<const T> a{};
  View<const T> b{};
  Segments<std::int64_t> segments{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_a{};
  View<T> grad_b{};
  DistanceOptions options{};
};

namespace distance_detail {
using ::kdloss::detail::Carver;
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;

inline constexpr EntryNames kNames{"kdloss::ops::distance", "kdloss::ops::distance_backward",
                                   "kdloss::ops::distance_forward_backward"};

template <class T>
bool segmented(const DistanceArgs<T>& a) {
  return present(a.segments.offsets);
}
template <class T>
bool split(const DistanceArgs<T>& a) {
  return segmented(a) || a.options.per_item;
}
/// The number of items (validated views only).
template <class T>
std::int64_t items(const DistanceArgs<T>& a) {
  if (segmented(a)) return a.segments.count();
  return a.options.per_item ? a.a.shape[0] : 1;
}
/// Rows [begin, end) of dim 0 that item i owns (the whole tensor when not split).
template <class T>
std::pair<std::int64_t, std::int64_t> rows(const DistanceArgs<T>& a, std::int64_t i) {
  if (segmented(a)) return {a.segments.begin(i), a.segments.end(i)};
  if (a.options.per_item) return {i, i + 1};
  return {0, a.a.rank() > 0 ? a.a.shape[0] : 1};
}
template <class V>
V item_view(const V& v, const std::pair<std::int64_t, std::int64_t>& r, bool split_rows) {
  return split_rows ? v.slice(0, r.first, r.second) : v;
}
/// Whether out holds one element (the summed or the only distance).
template <class T>
bool scalar_out(const DistanceArgs<T>& a) {
  return a.options.sum_items || !split(a);
}

/// The workspace: the items' norms (double slots) and the reduction partials (GPU).
struct Plan {
  double* norms = nullptr;
  double* partials = nullptr;
  std::size_t total = 0;
};
template <class T>
Plan plan(const DistanceArgs<T>& a, void* base) {
  Carver c(base);
  Plan p;
  const std::int64_t n = items(a);
  p.norms = c.take<double>(static_cast<std::size_t>(n > 0 ? n : 1));
  // the largest item, in O(1) unless segments are given (their offsets are real memory, walked once)
  std::int64_t largest = n;  // the final sum over the items reads n doubles
  const std::int64_t numel = a.a.numel();
  if (!split(a)) {
    largest = std::max(largest, numel);
  } else {
    const std::int64_t per_row = a.a.shape[0] > 0 ? numel / a.a.shape[0] : 0;
    if (segmented(a)) {
      for (std::int64_t i = 0; i < n; ++i)
        largest = std::max(largest, (a.segments.end(i) - a.segments.begin(i)) * per_row);
    } else {
      largest = std::max(largest, per_row);
    }
  }
  p.partials = ::kdloss::detail::carve_reduction(c, a.a.device, largest);
  p.total = c.bytes();
  return p;
}

/// Keeps the norm in its slot and writes weight * norm as the value (when `value` is set).
struct KeepNorm {
  double weight = 1.0;
  double* keep = nullptr;
  KDLOSS_HOST_DEVICE double operator()(double total) const {
    const double norm = SqrtFinal{keep}(total);
    return weight * norm;
  }
};

/// dL/da = (a - b) * weight * upstream / norm (PyTorch's rule at norm 0), dL/db = -dL/da; which of the
/// two are written is the functor's outputs.
template <class T>
struct GradScale {
  const double* norm;
  ScalarUpstream<T> upstream;
  double weight;
  template <class S>
  KDLOSS_HOST_DEVICE S scale() const {
    return norm_backward_scale(*norm, upstream.template get<S>(), weight);
  }
};
template <class T>
struct GradA : GradScale<T> {
  template <class A, class B, class GA>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const B& b, GA& ga) const {
    ga = (a - b) * this->template scale<math::scalar_t<GA>>();
  }
};
template <class T>
struct GradB : GradScale<T> {
  template <class A, class B, class GB>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const B& b, GB& gb) const {
    gb = (b - a) * this->template scale<math::scalar_t<GB>>();
  }
};
template <class T>
struct GradAB : GradScale<T> {
  template <class A, class B, class GA, class GB>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const B& b, GA& ga, GB& gb) const {
    ga = (a - b) * this->template scale<math::scalar_t<GA>>();
    gb = -ga;
  }
};

/// The inputs and options (what the size query reads).
template <class T>
void check_inputs(const DistanceArgs<T>& a, const char* fn) {
  const Checker ck{fn};
  ck.not_null(a.a, "a");
  ck.not_null(a.b, "b");
  ck.same_shape(a.a, "a", a.b, "b");
  ck.device(a.b, "b", a.a.device);
  require(std::isfinite(a.options.weight), fn, ": option 'weight' is ", a.options.weight, " but must be finite");
  if (split(a))
    require(a.a.rank() >= 1, fn, ": items split dim 0 (segments or per_item) but 'a' has shape ", a.a.shape.str());
  if (segmented(a)) ::kdloss::detail::check_segments(ck, a.segments, "segments", a.a.shape[0]);
  ::kdloss::detail::require_backend<T>(fn, a.a.device);
}

template <class T>
void check(const DistanceArgs<T>& a, Mode mode) {
  const char* fn = kNames(mode);
  const Checker ck{fn};
  check_inputs(a, fn);
  const Device dev = a.a.device;
  const auto value_like = [&](const auto& v, const char* name) {
    ck.not_null(v, name);
    ck.device(v, name, dev);
    if (scalar_out(a))
      ck.scalar_output(v, name);
    else
      ck.shape(v, name, Dims{items(a)});
  };
  if (writes_value(mode)) {
    require(present(a.out), fn, ": mode ", to_string(mode), " writes 'out' but it is absent");
    value_like(a.out, "out");
    ck.unique(a.out, "out");
    ck.disjoint(a.out, "out", a.a, "a");
    ck.disjoint(a.out, "out", a.b, "b");
  }
  if (mode == Mode::backward) {
    require(present(a.grad_out), fn, ": mode backward reads 'grad_out' but it is absent");
    value_like(a.grad_out, "grad_out");
  }
  if (!writes_gradients(mode)) return;
  const auto grad = [&](const View<T>& g, const char* name) {
    if (absent(g)) return;
    ck.not_null(g, name);
    ck.shape(g, name, a.a.shape);
    ck.device(g, name, dev);
    ck.unique(g, name);
    ck.disjoint(g, name, a.a, "a");
    ck.disjoint(g, name, a.b, "b");
    if (writes_value(mode)) ck.disjoint(g, name, a.out, "out");
    if (mode == Mode::backward) ck.disjoint(g, name, a.grad_out, "grad_out");
  };
  grad(a.grad_a, "grad_a");
  grad(a.grad_b, "grad_b");
  if (present(a.grad_a) && present(a.grad_b)) ck.disjoint(a.grad_a, "grad_a", a.grad_b, "grad_b");
}

/// The element of a value-shaped view (out or grad_out) for item i.
template <class U>
U* element(const View<U>& v, std::int64_t i, bool scalar) {
  return scalar ? v.data : v.data + i * v.strides[0];
}

}  // namespace distance_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::ops::DistanceArgs<float> args;   // filled in as in DistanceArgs's example
///   kdloss::ops::distance_check(args, kdloss::Mode::forward_backward);
template <class T>
void distance_check(const DistanceArgs<T>& args, Mode mode) {
  distance_detail::check(args, mode);
}

/// Workspace bytes of ops::distance on these arguments, every mode: one double per item (the norms kept
/// between the passes) and, on a GPU, the reduction partials of the largest item. On the host a null
/// workspace is allowed (the call allocates).
///
///   kdloss::ops::DistanceArgs<float> args;   // filled in as in DistanceArgs's example
///   std::size_t bytes = kdloss::ops::distance_workspace_bytes(args);
template <class T>
std::size_t distance_workspace_bytes(const DistanceArgs<T>& args) {
  distance_detail::check_inputs(args, "kdloss::ops::distance_workspace_bytes");
  return distance_detail::plan(args, nullptr).total;
}

/// Checks, then runs. forward: out; backward: grad_out times the gradients; forward_backward: the value and
/// the gradients of the value itself (each item's norm computed once).
///
///   kdloss::ops::DistanceArgs<float> args;   // filled in as in DistanceArgs's example
///   kdloss::ops::distance(args, kdloss::Mode::forward_backward);
template <class T>
void distance(const DistanceArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace dd = distance_detail;
  const char* fn = dd::kNames(mode);
  dd::check(a, mode);
  using Acc = acc_t<T>;
  const Device dev = a.a.device;
  ::kdloss::detail::HostScratch host;
  const std::size_t need = dd::plan(a, nullptr).total;
  const dd::Plan p = dd::plan(a, ::kdloss::detail::resolve_workspace(fn, dev, exec.workspace, need, host));
  const std::int64_t n = dd::items(a);
  const bool split = dd::split(a), scalar = dd::scalar_out(a), sum = a.options.sum_items && split;
  const double w = a.options.weight;
  // pass 1 per item: the norm into its slot (and, per item, weight * norm into out)
  for (std::int64_t i = 0; i < n; ++i) {
    const auto r = dd::rows(a, i);
    const View<const T> ai = dd::item_view(a.a, r, split), bi = dd::item_view(a.b, r, split);
    if (writes_value(mode) && !sum)
      ::kdloss::detail::transform_reduce<Acc>(dev, exec.stream, ai.shape, SquaredDifference{}, std::tuple{ai, bi},
                                              std::tuple<>{}, p.partials, dd::KeepNorm{w, p.norms + i},
                                              dd::element(a.out, i, scalar));
    else
      ::kdloss::detail::transform_reduce<Acc>(dev, exec.stream, ai.shape, SquaredDifference{}, std::tuple{ai, bi},
                                              std::tuple<>{}, p.partials, SqrtFinal{}, p.norms + i);
  }
  if (writes_value(mode) && sum) {  // out = weight * sum of the kept norms, in item order
    const View<const double> norms(p.norms, Dims{n}, Dims{1}, dev);
    ::kdloss::detail::transform_reduce<double>(dev, exec.stream, norms.shape, expr::Identity{}, std::tuple{norms},
                                               std::tuple<>{}, p.partials, ::kdloss::detail::Scale{w}, a.out.data);
  }
  if (!writes_gradients(mode) || (absent(a.grad_a) && absent(a.grad_b))) return;
  // pass 2 per item: the gradients from the kept norm
  for (std::int64_t i = 0; i < n; ++i) {
    const auto r = dd::rows(a, i);
    const View<const T> ai = dd::item_view(a.a, r, split), bi = dd::item_view(a.b, r, split);
    const dd::GradScale<T> s{p.norms + i,
                             ScalarUpstream<T>{mode == Mode::backward ? dd::element(a.grad_out, i, scalar) : nullptr},
                             w};
    if (present(a.grad_a) && present(a.grad_b))
      ::kdloss::detail::transform<Acc>(dev, exec.stream, ai.shape, dd::GradAB<T>{s}, std::tuple{ai, bi},
                                       std::tuple{dd::item_view(a.grad_a, r, split), dd::item_view(a.grad_b, r, split)});
    else if (present(a.grad_a))
      ::kdloss::detail::transform<Acc>(dev, exec.stream, ai.shape, dd::GradA<T>{s}, std::tuple{ai, bi},
                                       std::tuple{dd::item_view(a.grad_a, r, split)});
    else
      ::kdloss::detail::transform<Acc>(dev, exec.stream, ai.shape, dd::GradB<T>{s}, std::tuple{ai, bi},
                                       std::tuple{dd::item_view(a.grad_b, r, split)});
  }
}

/// Thin wrapper: out = weight * ||a - b||_F (torch.dist(a, b) by default), per item as options ask.
///
///   float d;
///   std::vector<float> s(64, 1.0f), t(64, 0.5f);
///   kdloss::ops::distance(kdloss::host_view<const float>(s.data(), {4, 16}),
///                         kdloss::host_view<const float>(t.data(), {4, 16}), kdloss::host_scalar(&d));
template <class A, class B, class O>
void distance(const View<A>& a, const View<B>& b, const View<O>& out, const DistanceOptions& options = {},
              const Exec& exec = {}) {
  DistanceArgs<O> args;
  args.a = a;
  args.b = b;
  args.out = out;
  args.options = options;
  distance(args, Mode::forward, exec);
}

/// Thin wrapper: grad_a and grad_b (either may be absent) times grad_out.
///
///   float up = 1.0f;
///   std::vector<float> s(64, 1.0f), t(64, 0.5f), gs(64);
///   kdloss::ops::distance_backward(kdloss::host_view<const float>(s.data(), {4, 16}),
///                                  kdloss::host_view<const float>(t.data(), {4, 16}),
///                                  kdloss::host_scalar<const float>(&up), kdloss::host_view(gs.data(), {4, 16}),
///                                  kdloss::View<float>{});
template <class A, class B, class G, class O>
void distance_backward(const View<A>& a, const View<B>& b, const View<G>& grad_out, const View<O>& grad_a,
                       const View<O>& grad_b, const DistanceOptions& options = {}, const Exec& exec = {}) {
  DistanceArgs<O> args;
  args.a = a;
  args.b = b;
  args.grad_out = grad_out;
  args.grad_a = grad_a;
  args.grad_b = grad_b;
  args.options = options;
  distance(args, Mode::backward, exec);
}

/// Thin wrapper: the value and the gradients of the value itself.
///
///   float d;
///   std::vector<float> s(64, 1.0f), t(64, 0.5f), gs(64);
///   kdloss::ops::distance_forward_backward(kdloss::host_view<const float>(s.data(), {4, 16}),
///                                          kdloss::host_view<const float>(t.data(), {4, 16}),
///                                          kdloss::host_scalar(&d), kdloss::host_view(gs.data(), {4, 16}),
///                                          kdloss::View<float>{});
template <class A, class B, class O>
void distance_forward_backward(const View<A>& a, const View<B>& b, const View<O>& out, const View<O>& grad_a,
                               const View<O>& grad_b, const DistanceOptions& options = {}, const Exec& exec = {}) {
  DistanceArgs<O> args;
  args.a = a;
  args.b = b;
  args.out = out;
  args.grad_a = grad_a;
  args.grad_b = grad_b;
  args.options = options;
  distance(args, Mode::forward_backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
