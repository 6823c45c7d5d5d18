// The names the doc-comment usage examples may use without declaring them (see extract_examples.py).
// Examples are compiled, never run: the buffers are null. Single-letter feature names (s, t, a, gs, ...)
// appear in the docs both as raw buffers (`kdloss::host_view(s, shape)`) and as the views made from them
// (`kdloss::mse_loss(s, t, out)`), so each is an object that is both: a view (derived, so a call
// template deduces its element type) that also converts to the pointer.
#pragma once
#include <cstdint>
#include <iostream>
#include <tuple>
#include <vector>

#include "kdloss/interop/dlpack.hpp"
#include "kdloss/kdloss.hpp"

namespace kdloss_doc {

/// An input feature: a View<const float> that is also its float buffer.
struct In : kdloss::View<const float> {
  operator const float*() const { return data; }
};
/// A gradient output: a View<float> that is also its float buffer.
struct Out : kdloss::View<float> {
  operator float*() const { return data; }
};

}  // namespace kdloss_doc

namespace kdloss {
// `kdloss::host_view(s, shape)` on the examples' dual names: the buffer's view of that shape.
inline View<const float> host_view(const kdloss_doc::In& b, Dims shape) { return host_view<const float>(b.data, shape); }
inline View<const float> host_view(const kdloss_doc::In& b, Dims shape, Dims strides) {
  return host_view<const float>(b.data, shape, strides);
}
inline View<float> host_view(const kdloss_doc::Out& b, Dims shape) { return host_view<float>(b.data, shape); }
inline View<const float> cuda_view(const kdloss_doc::In& b, Dims shape) { return cuda_view<const float>(b.data, shape); }
inline View<float> cuda_view(const kdloss_doc::Out& b, Dims shape) { return cuda_view<float>(b.data, shape); }
}  // namespace kdloss

namespace kdloss_doc {

// Features, logits and maps (inputs).
inline In s, t, a, x, y, feat, sv, tv, s_ptr, t_ptr, s_logits, t_logits, c_hat, s_hat, ms, mc, g_map, g_smooth, one_view;
inline In s2, s3, s4, s5, t2, t3, t4, t5, a3, p2_s, p3_s, p4_s, p5_s, p2_t, p3_t, p4_t, p5_t, logits, log_probs, y_probs;
inline In grad_y, grad_log_probs, g_gs, g_gc, buf_in, p, w, b, q, k, grad_out;
// Gradient and map outputs.
inline Out gs, gt, ga, gc, gsp, g_s, g_c, grad_s, grad_a, grad_x, grad_logits, gs_view, gt_view, gx_view, gy_view;
inline Out ga3, g_feat, p2_g, p3_g, p4_g, p5_g, mask, out_map, out, smooth, grad_w, grad_b;
// Scalars the examples write or read, and the output view of a reduced loss.
inline float loss, value, v, one = 1.0f, l_at, l_am, dist;
inline std::vector<float> map;
inline DLManagedTensor* managed = nullptr;
// Shapes.
inline std::int64_t B = 2, C = 256, H = 100, W = 167, HW = H * W, N = 2 * 100 * 167;
inline kdloss::Dims shape{2, 256, 100, 167};
// GPU names (compiled by nvcc only): device buffers, a stream and a scratch buffer.
inline In s_dev, t_dev, x_dev, d_s, d_t, d_x, sv_dev, tv_dev;
inline Out d_grad, gv_dev;
inline float *d_loss = nullptr, *d_dist = nullptr, *d_up = nullptr;
inline void *d_scratch = nullptr, *scratch = nullptr, *workspace = nullptr;
#if defined(__CUDACC__)
inline cudaStream_t stream = nullptr;
#endif
inline std::size_t bytes = 0;

// The backend and expression layers' examples (internal API): their names unqualified, as the backend
// files write them, plain views (tuples of views are deduced exactly), and the functors they name.
using namespace kdloss::backend::cpu;
namespace math = kdloss::math;
namespace expr = kdloss::expr;
inline kdloss::View<const float> student, teacher, A;
inline kdloss::View<float> grad;
inline Out pc, spatial_map_view;
inline const float* ptr_to_8_floats = nullptr;
/// A pooled term's functor: scale * |input 0| (AbsOf0) or scale * input 1 (MeanOf1).
struct AbsOf0 {
  double scale;
  template <class S, class T>
  auto operator()(const S& s, const T&) const { return kdloss::math::abs(s) * float(scale); }
};
struct MeanOf1 {
  double scale;
  template <class S, class T>
  auto operator()(const S&, const T& t) const { return t * float(scale); }
};
template <bool Absolute>
struct MeanTerm {
  double scale;
};

}  // namespace kdloss_doc
