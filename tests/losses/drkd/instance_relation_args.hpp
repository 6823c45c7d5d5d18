// The views of a reference DRKD code-form problem bound to drkd::InstanceRelationLossArgs, shared by the host
// test (test_instance_relation.cpp) and its GPU side (instance_relation_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

#include "kdloss/losses/drkd/instance_relation.hpp"
#include "reference/losses/drkd_instance_relation.hpp"

namespace kdloss_test {

using kdloss::Dims;
using kdloss_ref::losses::InstanceRelation;
using kdloss_ref::losses::InstanceRelationInputs;

/// The shape of every input of a reference problem (empty: absent).
inline std::vector<Dims> instance_relation_shapes(const InstanceRelation& r) {
  using In = InstanceRelationInputs;
  const std::int64_t n = r.n(), Ds = r.Cs * r.P * r.Q, Dt = r.Ct * r.P * r.Q;
  std::vector<Dims> s(In::count);
  s[In::student] = {n, r.Cs, r.P, r.Q};
  s[In::teacher] = {n, r.Ct, r.P, r.Q};
  const auto rel = [&](int base, std::int64_t I, std::int64_t D) {
    s[base] = s[base + 2] = s[base + 4] = {I, D};
    s[base + 1] = s[base + 3] = s[base + 5] = {I};
    s[base + 6] = {D, I};
    s[base + 7] = {D};
  };
  rel(In::s_theta_w, r.Is, Ds);
  rel(In::t_theta_w, r.It, Dt);
  if (r.filter) {
    s[In::s_filter_w] = {n, Ds};
    s[In::s_filter_b] = {n};
    s[In::t_filter_w] = {n, Dt};
    s[In::t_filter_b] = {n};
  }
  s[In::rel_adapt_w] = {r.Ct, r.Cs};
  s[In::rel_adapt_b] = {r.Ct};
  if (r.fg) {
    s[In::fg_adapt_w] = {r.Ct, r.Cs};
    s[In::fg_adapt_b] = {r.Ct};
  }
  return s;
}

/// Every input view v[k] and gradient view g[k] (indexed as InstanceRelationInputs; absent where the
/// problem has none) bound to the loss's arguments with the problem's options. The gradients are bound when
/// `mode` writes them; out and grad_out are the caller's.
template <class T>
kdloss::drkd::InstanceRelationLossArgs<T> instance_relation_args(const InstanceRelation& r,
                                                                 const std::vector<kdloss::View<const T>>& v,
                                                                 const std::vector<kdloss::View<T>>& g,
                                                                 kdloss::Mode mode) {
  using In = InstanceRelationInputs;
  namespace drkd = kdloss::drkd;
  drkd::InstanceRelationLossArgs<T> a;
  a.student = v[In::student];
  a.teacher = v[In::teacher];
  a.boxes.offsets = kdloss::host_view<const std::int64_t>(r.offsets.data(), {static_cast<std::int64_t>(r.offsets.size())});
  const auto params = [&](int b) {
    return drkd::ObjectRelationParams<T>{v[b], v[b + 1], v[b + 2], v[b + 3], v[b + 4], v[b + 5], v[b + 6], v[b + 7]};
  };
  const auto pgrads = [&](int b) {
    return drkd::ObjectRelationGrads<T>{g[b], g[b + 1], g[b + 2], g[b + 3], g[b + 4], g[b + 5], g[b + 6], g[b + 7]};
  };
  a.student_relation = params(In::s_theta_w);
  a.teacher_relation = params(In::t_theta_w);
  a.student_filter = {v[In::s_filter_w], v[In::s_filter_b]};
  a.teacher_filter = {v[In::t_filter_w], v[In::t_filter_b]};
  a.relation_adapt_weight = v[In::rel_adapt_w];
  a.relation_adapt_bias = v[In::rel_adapt_b];
  a.feature_adapt_weight = v[In::fg_adapt_w];
  a.feature_adapt_bias = v[In::fg_adapt_b];
  a.options.relation_weight = r.relation_weight;
  a.options.feature_weight = r.feature_weight;
  if (kdloss::writes_gradients(mode)) {
    a.grad_student = g[In::student];
    a.grad_student_relation = pgrads(In::s_theta_w);
    a.grad_teacher_relation = pgrads(In::t_theta_w);
    a.grad_student_filter = {g[In::s_filter_w], g[In::s_filter_b]};
    a.grad_teacher_filter = {g[In::t_filter_w], g[In::t_filter_b]};
    a.grad_relation_adapt_weight = g[In::rel_adapt_w];
    a.grad_relation_adapt_bias = g[In::rel_adapt_b];
    a.grad_feature_adapt_weight = g[In::fg_adapt_w];
    a.grad_feature_adapt_bias = g[In::fg_adapt_b];
  }
  return a;
}

}  // namespace kdloss_test
