// kdloss/losses/feature/kl_div.hpp: Hinton's temperature-scaled KL divergence between logits along
// a class axis,
//   loss = T^2 * KL(softmax(t / T) || softmax(s / T))
//        = F.kl_div(F.log_softmax(s / T, dim), F.softmax(t / T, dim), reduction=r) * T * T,
// with the per-element term l_j = T^2 * p_t_j * (log p_t_j - log p_s_j) and PyTorch's xlogy
// convention (p_t_j = 0 contributes 0).
//
// Every index of the other axes is one row. One row operation computes both log-softmaxes (through
// ops::detail::row_max_and_sum), the row's loss and, for backward, the gradient
//   d(sum_k u_k l_k)/d s_j = T * (p_s_j * sum_k u_k p_t_k - u_j p_t_j),
// which is T * u * (p_s_j - p_t_j) for a uniform upstream u (sum_k p_t_k = 1). Reduced values go
// through the rowwise finaliser into `out` on the call's device: no host synchronisation.
#pragma once
#include <cmath>
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/losses/feature/pointwise.hpp"
#include "kdloss/ops/softmax.hpp"

namespace kdloss {
namespace detail {

/// The KL row operation. Inputs: 0 student logits, 1 teacher logits, 2 upstream map (kUpMap).
/// Outputs: the per-element loss map first (kLossMap), then the gradient (kGrad).
/// kSum: return the row's sum_j p_t_j (log p_t_j - log p_s_j) (T^2 and the reduction go in the finaliser).
template <class T, bool kSum, bool kLossMap, bool kGrad, bool kUpMap>
struct KlDivRow {
  static constexpr bool kPacketRows = true;  // arithmetic, exp, log and select only: runs on packets of rows
  double inv_t;         // 1 / T
  double loss_scale;    // T^2: the per-element map's factor
  double grad_scale;    // T * (reduction scale): the gradient's factor
  Uniform<T> upstream;  // uniform upstream gradient (absent = 1); unused with kUpMap

  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE Acc operator()(const Row& row) const {
    if (row.size() == 1) {
      // One class: p_s = p_t = 1, every term and gradient is 0. Said outright, because with FMA
      // contraction x/T - max(x/T) is the rounding error of x/T rather than 0.
      row.for_each([&](std::int64_t j) {
        if constexpr (kLossMap) row.template out<0>(j, Acc(0));
        if constexpr (kGrad) row.template out<kLossMap ? 1 : 0>(j, Acc(0));
      });
      return Acc(0);
    }
    const Acc it = Acc(inv_t);
    const auto ms = ops::detail::row_max_and_sum<0>(row, it);
    const auto mt = ops::detail::row_max_and_sum<1>(row, it);
    // log p_t_j - log p_s_j = (t_j/T - m_t) - (s_j/T - m_s) - log(z_t / z_s): each logit has its row
    // max taken off first (exact near the max), and the result is exactly 0 where s = t.
    const Acc log_ratio_z = math::log(mt.sum / ms.sum);
    // Probabilities divide by z (not multiply by 1/z): p_s - p_t then subtracts two rounded values, so
    // it is exactly 0 where s = t even when the compiler contracts a * b - c into an FMA (nvcc does).
    auto p_t = [&](std::int64_t j) { return math::exp(row.template in<1, Acc>(j) * it - mt.max) / mt.sum; };
    auto p_s = [&](std::int64_t j) { return math::exp(row.template in<0, Acc>(j) * it - ms.max) / ms.sum; };
    // xlogy: p_t = 0 (underflow, or a -inf teacher logit) contributes exactly 0.
    auto term = [&](Acc pt, std::int64_t j) {
      const Acc log_ratio =
          ((row.template in<1, Acc>(j) * it - mt.max) - (row.template in<0, Acc>(j) * it - ms.max)) - log_ratio_z;
      return Acc(math::select(pt > Acc(0), pt * log_ratio, Acc(0)));
    };
    Acc total = Acc(0);
    if constexpr (kSum) total = row.template sum<Acc>([&](std::int64_t j) { return term(p_t(j), j); });
    if constexpr (kUpMap) {
      const Acc weight = row.template sum<Acc>([&](std::int64_t j) { return row.template in<2, Acc>(j) * p_t(j); });
      const Acc gs = Acc(grad_scale);
      row.for_each([&](std::int64_t j) {
        row.template out<0>(j, gs * (p_s(j) * weight - row.template in<2, Acc>(j) * p_t(j)));
      });
    } else if constexpr (kLossMap || kGrad) {
      const Acc ls = Acc(loss_scale);
      Acc gs = Acc(0);
      if constexpr (kGrad) gs = Acc(grad_scale) * upstream.template get<Acc>();
      row.for_each([&](std::int64_t j) {
        const Acc pt = p_t(j);
        if constexpr (kLossMap) row.template out<0>(j, ls * term(pt, j));
        if constexpr (kGrad) row.template out<kLossMap ? 1 : 0>(j, gs * (p_s(j) - pt));
      });
    }
    return total;
  }
};

/// The factor a reduced KL applies to the summed terms (before T^2): batchmean divides by the size
/// of dim 0 (PyTorch's definition), mean by the number of elements (F.kl_div 'mean'), sum by 1.
/// Empty inputs reduce to 0.
inline double kl_reduction_scale(Reduction r, const Dims& shape) {
  const std::int64_t n = r == Reduction::batchmean ? shape[0] : r == Reduction::mean ? shape.product() : 1;
  return n > 0 ? 1.0 / static_cast<double>(n) : 0.0;
}

/// Rows of the class axis (0 when the axis is empty: nothing runs).
inline std::int64_t kl_rows(const Dims& shape, int axis) { return shape[axis] > 0 ? shape.product() / shape[axis] : 0; }

template <class T>
std::size_t kl_workspace_bytes(const View<const T>& s, int axis, Reduction r) {
  Carver carver;
  if (r != Reduction::none) carve_rowwise(carver, s.device, kl_rows(s.shape, axis), s.shape[axis]);
  return carver.bytes();
}

inline bool valid_reduction(Reduction r) {
  return r == Reduction::none || r == Reduction::mean || r == Reduction::sum || r == Reduction::batchmean;
}

template <class T>
void check_kl_inputs(const Checker& ck, const View<const T>& s, const View<const T>& t, int axis, double temperature,
                     Reduction r) {
  ck.not_null(s, "student_logits");
  ck.not_null(t, "teacher_logits");
  ck.rank_between(s, "student_logits", 1, kMaxRank);
  ck.same_shape(s, "student_logits", t, "teacher_logits");
  ck.device(t, "teacher_logits", s.device);
  require(axis >= 0 && axis < s.rank(), ck.fn, ": argument 'class_axis' is ", axis, " but 'student_logits' has shape ",
          s.shape.str(), " (valid: 0 to ", s.rank() - 1, ")");
  require(temperature > 0 && std::isfinite(temperature), ck.fn,
          ": argument 'temperature' must be finite and > 0 but is ", temperature);
  require(valid_reduction(r), ck.fn, ": argument 'reduction' is ", static_cast<int>(r),
          ", not one of none, mean, sum, batchmean");
  require_backend<T>(ck.fn, s.device);
}
template <class T>
void check_kl_value(const Checker& ck, const View<const T>& s, const View<const T>& t, const View<T>& out,
                    Reduction r) {
  check_loss_output(ck, s, out, r, "out");
  ck.disjoint(out, "out", s, "student_logits");
  ck.disjoint(out, "out", t, "teacher_logits");
}
template <class T>
void check_kl_grad(const Checker& ck, const View<const T>& s, const View<const T>& t, const View<T>& g) {
  check_gradient_output(ck, s, g, "grad_student");
  ck.disjoint(g, "grad_student", s, "student_logits");
  ck.disjoint(g, "grad_student", t, "teacher_logits");
}

template <class T>
void kl_forward(const char* fn, View<const T> s, View<const T> t, int axis, View<T> out, double temperature,
                Reduction r, const Exec& exec) {
  const Checker ck{fn};
  check_kl_inputs(ck, s, t, axis, temperature, r);
  check_kl_value(ck, s, t, out, r);
  HostScratch scratch;
  Carver carver(resolve_workspace(fn, s.device, exec.workspace, kl_workspace_bytes(s, axis, r), scratch));
  using Acc = acc_t<T>;
  const double inv_t = 1.0 / temperature, t2 = temperature * temperature;
  if (r == Reduction::none) {
    rowwise<Acc>(s.device, exec.stream, s.shape, axis, KlDivRow<T, false, true, false, false>{inv_t, t2, 0.0, {}},
                 std::tuple{s, t}, std::tuple{out}, nullptr, Keep{}, static_cast<double*>(nullptr));
    return;
  }
  double* partials = carve_rowwise(carver, s.device, kl_rows(s.shape, axis), s.shape[axis]);
  rowwise<Acc>(s.device, exec.stream, s.shape, axis, KlDivRow<T, true, false, false, false>{inv_t, t2, 0.0, {}},
               std::tuple{s, t}, std::tuple<>{}, partials, Scale{t2 * kl_reduction_scale(r, s.shape)}, out.data);
}

template <class T>
void kl_backward(const char* fn, View<const T> s, View<const T> t, int axis, View<const T> grad_out, View<T> grad_s,
                 double temperature, Reduction r, const Exec& exec) {
  const Checker ck{fn};
  check_kl_inputs(ck, s, t, axis, temperature, r);
  ck.device(grad_out, "grad_out", s.device);
  if (r == Reduction::none) {
    ck.shape(grad_out, "grad_out", s.shape);
  } else {
    require(grad_out.numel() == 1, fn,
            ": argument 'grad_out' must hold one element (the upstream gradient of the reduced loss) but has shape ",
            grad_out.shape.str());
  }
  ck.not_null(grad_out, "grad_out");
  check_kl_grad(ck, s, t, grad_s);
  ck.disjoint(grad_s, "grad_student", grad_out, "grad_out");
  using Acc = acc_t<T>;
  const double inv_t = 1.0 / temperature;
  if (r == Reduction::none) {
    rowwise<Acc>(s.device, exec.stream, s.shape, axis,
                 KlDivRow<T, false, false, true, true>{inv_t, 0.0, temperature, {}}, std::tuple{s, t, grad_out},
                 std::tuple{grad_s}, nullptr, Keep{}, static_cast<double*>(nullptr));
    return;
  }
  rowwise<Acc>(s.device, exec.stream, s.shape, axis,
               KlDivRow<T, false, false, true, false>{inv_t, 0.0, temperature * kl_reduction_scale(r, s.shape),
                                                      Uniform<T>{grad_out.data}},
               std::tuple{s, t}, std::tuple{grad_s}, nullptr, Keep{}, static_cast<double*>(nullptr));
}

template <class T>
void kl_forward_backward(const char* fn, View<const T> s, View<const T> t, int axis, View<T> out, View<T> grad_s,
                         double temperature, Reduction r, const Exec& exec) {
  const Checker ck{fn};
  check_kl_inputs(ck, s, t, axis, temperature, r);
  check_kl_value(ck, s, t, out, r);
  check_kl_grad(ck, s, t, grad_s);
  ck.disjoint(grad_s, "grad_student", out, "out");
  HostScratch scratch;
  Carver carver(resolve_workspace(fn, s.device, exec.workspace, kl_workspace_bytes(s, axis, r), scratch));
  using Acc = acc_t<T>;
  const double inv_t = 1.0 / temperature, t2 = temperature * temperature;
  if (r == Reduction::none) {
    // Each element's value and the gradient of the map's sum (a unit upstream map).
    rowwise<Acc>(s.device, exec.stream, s.shape, axis,
                 KlDivRow<T, false, true, true, false>{inv_t, t2, temperature, {}}, std::tuple{s, t},
                 std::tuple{out, grad_s}, nullptr, Keep{}, static_cast<double*>(nullptr));
    return;
  }
  const double scale = kl_reduction_scale(r, s.shape);
  double* partials = carve_rowwise(carver, s.device, kl_rows(s.shape, axis), s.shape[axis]);
  rowwise<Acc>(s.device, exec.stream, s.shape, axis,
               KlDivRow<T, true, false, true, false>{inv_t, t2, temperature * scale, {}}, std::tuple{s, t},
               std::tuple{grad_s}, partials, Scale{t2 * scale}, out.data);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Public entry points. Logits of any rank (1 to kMaxRank) and any strides: the class axis may be
// axis 1 of NCHW, the last axis of channel-last memory, or strided. `out` holds one element for
// batchmean/mean/sum and the logits' shape for none. The teacher gets no gradient.

/// T^2 * KL(softmax(teacher / T) || softmax(student / T)) along `class_axis`, as
/// F.kl_div(F.log_softmax(s / T, dim), F.softmax(t / T, dim), reduction=r) * T * T.
/// batchmean (the default) divides the sum by the size of dim 0, mean by the number of elements.
///
///   float loss;
///   auto s = kdloss::host_view(s_logits, {8, 80}), t = kdloss::host_view(t_logits, {8, 80});
///   kdloss::kl_div_loss(s, t, /*class_axis=*/1, kdloss::host_scalar(&loss), /*temperature=*/4.0);
///
///   // dense logits [B, C, H, W] on a GPU stream:
///   std::size_t bytes = kdloss::kl_div_loss_workspace_bytes(s_dev, 1);
///   kdloss::kl_div_loss(s_dev, t_dev, 1, kdloss::cuda_scalar(d_loss), 4.0, kdloss::Reduction::batchmean,
///                       {{d_scratch, bytes}, kdloss::Stream(stream)});
template <class S, class Tt, class O>
void kl_div_loss(const View<S>& student_logits, const View<Tt>& teacher_logits, int class_axis, const View<O>& out,
                 double temperature = 1.0, Reduction reduction = Reduction::batchmean, const Exec& exec = {}) {
  detail::kl_forward<O>("kdloss::kl_div_loss", student_logits, teacher_logits, class_axis, out, temperature, reduction,
                        exec);
}

/// grad_student = grad_out * d kl_div_loss / d student_logits: T * u * scale * (p_s - p_t) for a
/// reduced loss (grad_out: one element on the call's device), and T * (p_s * sum_k u_k p_t_k - u * p_t)
/// per row for reduction none (grad_out: a map of the logits' shape). Needs no workspace.
///
///   float one = 1.0f;
///   kdloss::kl_div_loss_backward(s, t, 1, kdloss::host_scalar(&one), kdloss::host_view(gs, {8, 80}), 4.0);
///   // GPU: kdloss::kl_div_loss_backward(s_dev, t_dev, 1, kdloss::cuda_scalar(d_up), g_dev, 4.0,
///   //                                   kdloss::Reduction::batchmean, {{}, kdloss::Stream(stream)});
template <class S, class Tt, class G, class O>
void kl_div_loss_backward(const View<S>& student_logits, const View<Tt>& teacher_logits, int class_axis,
                          const View<G>& grad_out, const View<O>& grad_student, double temperature = 1.0,
                          Reduction reduction = Reduction::batchmean, const Exec& exec = {}) {
  detail::kl_backward<O>("kdloss::kl_div_loss_backward", student_logits, teacher_logits, class_axis, grad_out,
                         grad_student, temperature, reduction, exec);
}

/// The loss and its gradient in one pass over the rows; for reduction none the gradient is that of
/// the map's sum (a unit upstream map), T * (p_s - p_t).
///
///   kdloss::kl_div_loss_forward_backward(s, t, 1, kdloss::host_scalar(&loss), kdloss::host_view(gs, {8, 80}), 4.0);
///   // GPU: kdloss::kl_div_loss_forward_backward(s_dev, t_dev, 1, kdloss::cuda_scalar(d_loss), g_dev, 4.0,
///   //                                           kdloss::Reduction::batchmean, {{d_scratch, bytes},
///   kdloss::Stream(stream)});
template <class S, class Tt, class O>
void kl_div_loss_forward_backward(const View<S>& student_logits, const View<Tt>& teacher_logits, int class_axis,
                                  const View<O>& out, const View<O>& grad_student, double temperature = 1.0,
                                  Reduction reduction = Reduction::batchmean, const Exec& exec = {}) {
  detail::kl_forward_backward<O>("kdloss::kl_div_loss_forward_backward", student_logits, teacher_logits, class_axis,
                                 out, grad_student, temperature, reduction, exec);
}

/// Workspace bytes of any kl_div_loss / _backward / _forward_backward call on these logits:
/// 0 on the host and for reduction none; the per-block partials of the row reduction on a GPU.
///
///   std::size_t bytes = kdloss::kl_div_loss_workspace_bytes(kdloss::cuda_view<const float>(d_s, {2, 80, 100, 167}),
///   1);
template <class S>
std::size_t kl_div_loss_workspace_bytes(const View<S>& student_logits, int class_axis,
                                        Reduction reduction = Reduction::batchmean) {
  const detail::Checker ck{"kdloss::kl_div_loss_workspace_bytes"};
  ck.rank_between(student_logits, "student_logits", 1, kMaxRank);
  detail::require(class_axis >= 0 && class_axis < student_logits.rank(), ck.fn, ": argument 'class_axis' is ",
                  class_axis, " but 'student_logits' has shape ", student_logits.shape.str());
  return detail::kl_workspace_bytes<detail::value_t<S>>(student_logits, class_axis, reduction);
}

}  // namespace kdloss
