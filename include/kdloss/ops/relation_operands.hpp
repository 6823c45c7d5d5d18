// kdloss/ops/relation_operands.hpp: what the three relation ops (ops::softmax_relation,
// ops::dot_relation, ops::concat_relation) share about their operands: reading a [B, C, H, W] map as
// [B, H*W, C] (ops::relation_operand), the matrix descriptors the backends take, and ONE check of the
// shapes, devices and aliasing of theta, phi, g, y, grad_y and the input gradients
// (ops::detail::check_relation_operands). The ops add only their own arguments' checks on top.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/expr/matmul.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

/// A relation operand as [B, positions, channels]: a rank-3 view as it is, a channels-first map
/// [B, C, H, W] as [B, H*W, C] (no copy; H and W must merge into one strided axis, as they do in
/// contiguous and channel-last layouts, otherwise kdloss::Error).
///
///   auto theta = kdloss::ops::relation_operand(kdloss::host_view<const float>(t, {2, 64, 100, 168}));  // [2, 16800, 64]
template <class T>
View<T> relation_operand(const View<T>& v) {
  if (v.rank() != 4) return v;
  const std::int64_t h = v.shape[2], w = v.shape[3];
  kdloss::detail::require(h <= 1 || w <= 1 || v.strides[2] == v.strides[3] * w,
                          "kdloss::ops::relation_operand: the map with shape ", v.shape.str(), " and strides ",
                          v.strides.str(), " cannot merge H and W into one strided axis; pass a contiguous or "
                          "channel-last view");
  const std::int64_t step = w == 1 ? v.strides[2] : v.strides[3];
  return View<T>(v.data, Dims{v.shape[0], h * w, v.shape[1]}, Dims{v.strides[0], step, v.strides[1]}, v.device);
}

namespace detail {

/// Sizes of a relation: B images, N queries, N' keys, m embedding channels (theta, phi), c value channels (g, y).
struct RelationDims {
  std::int64_t batch = 0, queries = 0, keys = 0, embed = 0, values = 0;
};

/// What differs between the relation ops' operand rules.
struct RelationRules {
  /// N, N', m and c must be at least 1 (the softmax over no keys is undefined); false: empty extents
  /// are legal (y = 0).
  bool nonempty = false;
  /// backward reads y when present (the softmax relation's kept output; absent: recomputed), so a
  /// present y is checked in backward too; false: backward ignores y.
  bool backward_reads_y = false;
  /// backward must write at least one of grad_theta, grad_phi, grad_g.
  bool need_a_gradient = false;
};

/// A [B, rows, cols] view as the backends' batched matrix (null data when absent).
template <class T>
expr::MatOperand<T> relation_matrix(const View<T>& v) {
  if (absent(v)) return {};
  return {v.data, v.strides[0], v.strides[1], v.strides[2]};
}

/// theta [B, N, m], phi [B, N', m], g [B, N', c]: present, rank 3, on theta's device, consistent extents
/// (what the size queries need; check_relation_operands adds the outputs).
template <class Args>
RelationDims check_relation_inputs(const kdloss::detail::Checker& ck, const Args& a, const RelationRules& rules) {
  using kdloss::detail::require;
  const char* fn = ck.fn;
  const auto input = [&](const auto& v, const char* name) {
    require(present(v), fn, ": argument '", name, "' is absent but every mode reads it");
    ck.rank(v, name, 3);
    ck.not_null(v, name);
    ck.device(v, name, a.theta.device);
  };
  input(a.theta, "theta");
  input(a.phi, "phi");
  input(a.g, "g");
  const RelationDims d{a.theta.shape[0], a.theta.shape[1], a.phi.shape[1], a.theta.shape[2], a.g.shape[2]};
  require(a.phi.shape[0] == d.batch && a.phi.shape[2] == d.embed, fn, ": argument 'phi' has shape ",
          a.phi.shape.str(), " but 'theta' ", a.theta.shape.str(), " asks for [", d.batch, ", N', ", d.embed, "]");
  require(a.g.shape[0] == d.batch && a.g.shape[1] == d.keys, fn, ": argument 'g' has shape ", a.g.shape.str(),
          " but 'phi' ", a.phi.shape.str(), " asks for [", d.batch, ", ", d.keys, ", c]");
  if (rules.nonempty) {
    require(d.queries >= 1, fn, ": argument 'theta' ", a.theta.shape.str(), " has no query positions (N = 0)");
    require(d.keys >= 1, fn, ": argument 'phi' ", a.phi.shape.str(),
            " has no key positions (N' = 0): the softmax over an empty set is undefined");
    require(d.embed >= 1, fn, ": arguments 'theta' ", a.theta.shape.str(), " and 'phi' ", a.phi.shape.str(),
            " have no features (m = 0)");
    require(d.values >= 1, fn, ": argument 'g' ", a.g.shape.str(), " has no channels (c = 0)");
  }
  return d;
}

/// The operand checks every relation op makes: the inputs (check_relation_inputs); y [B, N, c] when
/// `mode` writes it (or backward reads it); grad_y [B, N, c] when `mode` writes gradients; grad_theta,
/// grad_phi, grad_g like their inputs. Every output is unique, on theta's device, and disjoint from every
/// input and from each other (a forward_backward's y from grad_y too). Writes nothing.
template <class Args>
RelationDims check_relation_operands(const kdloss::detail::Checker& ck, const Args& a, Mode mode,
                                     const RelationRules& rules = {}) {
  using kdloss::detail::require;
  const char* fn = ck.fn;
  const RelationDims d = check_relation_inputs(ck, a, rules);
  const Dims y_shape{d.batch, d.queries, d.values};
  const Device dev = a.theta.device;
  const auto output = [&](const auto& out, const char* name, const Dims& shape) {
    ck.not_null(out, name);
    ck.shape(out, name, shape);
    ck.device(out, name, dev);
    ck.unique(out, name);
    ck.disjoint(out, name, a.theta, "theta");
    ck.disjoint(out, name, a.phi, "phi");
    ck.disjoint(out, name, a.g, "g");
  };
  const bool y_read = writes_value(mode) || (rules.backward_reads_y && present(a.y));
  if (writes_value(mode)) {
    require(present(a.y), fn, ": argument 'y' is absent but mode ", to_string(mode), " writes it");
    output(a.y, "y", y_shape);
  } else if (y_read) {
    ck.not_null(a.y, "y");
    ck.shape(a.y, "y", y_shape);
    ck.device(a.y, "y", dev);
  }
  if (!writes_gradients(mode)) return d;
  require(present(a.grad_y), fn, ": argument 'grad_y' is absent but mode ", to_string(mode), " reads it (dL/dy)");
  ck.not_null(a.grad_y, "grad_y");
  ck.shape(a.grad_y, "grad_y", y_shape);
  ck.device(a.grad_y, "grad_y", dev);
  if (mode == Mode::forward_backward) ck.disjoint(a.y, "y", a.grad_y, "grad_y");
  using GradView = std::decay_t<decltype(a.grad_theta)>;
  const GradView* grads[3] = {&a.grad_theta, &a.grad_phi, &a.grad_g};
  const Dims* like[3] = {&a.theta.shape, &a.phi.shape, &a.g.shape};
  const char* names[3] = {"grad_theta", "grad_phi", "grad_g"};
  bool any = false;
  for (int k = 0; k < 3; ++k) {
    if (absent(*grads[k])) continue;
    any = true;
    output(*grads[k], names[k], *like[k]);
    ck.disjoint(*grads[k], names[k], a.grad_y, "grad_y");
    if (y_read) ck.disjoint(*grads[k], names[k], a.y, "y");
    for (int o = 0; o < k; ++o)
      if (present(*grads[o])) ck.disjoint(*grads[k], names[k], *grads[o], names[o]);
  }
  require(any || !rules.need_a_gradient, fn, ": none of 'grad_theta', 'grad_phi', 'grad_g' is present; ",
          to_string(mode), " needs at least one gradient to write");
  return d;
}

}  // namespace detail
}  // namespace ops
} }  // namespace kdloss
