// kdloss/losses/fbkd/attention_transfer.hpp: FBKD's attention-transfer loss L_AT, in both forms.
// ||.||_F is torch.dist: the square root of the sum of squares over the whole batch, not squared and
// not divided by anything; its gradient is defined as 0 where the distance is exactly 0 (a NaN
// distance gives a NaN gradient, as autograd's).
//
// Paper (eq. 1), on the abs-mean attention maps themselves, gradient to S through the abs-means:
//   L_AT = ||G_s(S) - G_s(T)||_F + ||G_c(S) - G_c(T)||_F
//   dL_AT/dS = sign(S) * ( (G_s(S) - G_s(T)) / (C L_s) + (G_c(S) - G_c(T)) / (HW L_c) )   (broadcast)
//
// Reference code (and mmrazor), on plain-mean pooled features through the caller's adapters:
//   L_AT = ||mean_hw(T) - C_hat||_F + ||mean_c(T) - S_hat||_F,
//   C_hat = Linear(mean_hw(S)) [B,C],  S_hat = Conv3x3(mean_c(S)) [B,1,H,W]
//   dL_AT/dC_hat = (C_hat - mean_hw(T)) / L_c,  dL_AT/dS_hat = (S_hat - mean_c(T)) / L_s
// The caller backprops those through its adapters and through ops::mean_over_* _backward.
//
// These entry points are the single-level, unit-weight case of fbkd::total_loss.
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/losses/fbkd/total.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace fbkd {
namespace detail {

inline Config transfer_only(TransferForm form) {
  Config c;
  c.transfer_form = form;
  c.w_am = 0;
  c.w_at = 1;
  return c;
}
template <class T>
std::size_t transfer_workspace_bytes(const View<const T>& teacher, TransferForm form) {
  Level<T> lv;
  lv.teacher = teacher;
  return total_workspace_bytes<T>(&lv, 1, transfer_only(form));
}

inline constexpr const char* kAttentionTransferLossNames[3] = {
    "kdloss::fbkd::attention_transfer_loss", "kdloss::fbkd::attention_transfer_loss_backward",
    "kdloss::fbkd::attention_transfer_loss_forward_backward"};
inline constexpr const char* kPooledAttentionTransferLossNames[3] = {
    "kdloss::fbkd::pooled_attention_transfer_loss", "kdloss::fbkd::pooled_attention_transfer_loss_backward",
    "kdloss::fbkd::pooled_attention_transfer_loss_forward_backward"};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Paper form: L_AT = ||G_s(S) - G_s(T)||_F + ||G_c(S) - G_c(T)||_F, gradient to S.

/// The arguments of one attention_transfer_loss call: student S and teacher T [B,C,H,W] (any
/// strides), the one-element value `out` (forward, forward_backward), the one-element upstream
/// gradient grad_out (backward) and grad_student [B,C,H,W] (backward, forward_backward).
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> s(shape.product(), 0.5f), t(shape.product(), 0.25f), gs(shape.product());
///   kdloss::fbkd::AttentionTransferLossArgs<float> args;
///   args.student = kdloss::host_view<const float>(s.data(), shape);
///   args.teacher = kdloss::host_view<const float>(t.data(), shape);
///   float l_at;
///   args.out = kdloss::host_scalar(&l_at);
///   args.grad_student = kdloss::host_view(gs.data(), shape);
///   kdloss::fbkd::attention_transfer_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct AttentionTransferLossArgs {
  View<const T> student{};
  View<const T> teacher{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student{};
};

namespace detail {
template <class T>
Level<T> transfer_level(const AttentionTransferLossArgs<T>& a) {
  Level<T> lv{a.student, a.teacher};
  lv.grad_student = a.grad_student;
  return lv;
}
template <class T>
void require_gradients(const char* fn, const AttentionTransferLossArgs<T>& a, Mode mode) {
  ::kdloss::detail::require(!writes_gradients(mode) || present(a.grad_student), fn,
                            ": argument 'grad_student' is absent; pass the view to write the gradient to");
}
}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::fbkd::AttentionTransferLossArgs<float> args;   // its views filled in as in AttentionTransferLossArgs's example
///   kdloss::fbkd::attention_transfer_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void attention_transfer_loss_check(const AttentionTransferLossArgs<T>& args, Mode mode) {
  const char* fn = detail::kAttentionTransferLossNames[mode_index(mode)];
  detail::require_gradients(fn, args, mode);
  const Level<T> lv = detail::transfer_level(args);
  detail::check_total<T>(fn, mode, &lv, 1, detail::transfer_only(TransferForm::paper), args.out, args.grad_out, false);
}

/// Workspace bytes of attention_transfer_loss on these arguments, enough for every mode.
///
///   kdloss::fbkd::AttentionTransferLossArgs<float> args;   // its views filled in as in AttentionTransferLossArgs's example
///   std::size_t bytes = kdloss::fbkd::attention_transfer_loss_workspace_bytes(args);
template <class T>
std::size_t attention_transfer_loss_workspace_bytes(const AttentionTransferLossArgs<T>& args) {
  return detail::transfer_workspace_bytes<T>(args.teacher, TransferForm::paper);
}

/// Checks, then runs the paper-form L_AT in `mode` (the single-level, unit-weight case of total_loss).
///
///   kdloss::fbkd::AttentionTransferLossArgs<float> args;   // its views filled in as in AttentionTransferLossArgs's example
///   kdloss::fbkd::attention_transfer_loss(args, kdloss::Mode::forward_backward);
template <class T>
void attention_transfer_loss(const AttentionTransferLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  const char* fn = detail::kAttentionTransferLossNames[mode_index(mode)];
  detail::require_gradients(fn, args, mode);
  const Level<T> lv = detail::transfer_level(args);
  detail::run_total<T>(fn, mode, &lv, 1, detail::transfer_only(TransferForm::paper), args.out, args.grad_out, false,
                       exec);
}

/// Paper-form L_AT = ||G_s(S) - G_s(T)||_F + ||G_c(S) - G_c(T)||_F of student and teacher [B,C,H,W].
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> s(shape.product(), 0.5f), t(shape.product(), 0.25f);
///   float l_at;
///   kdloss::fbkd::attention_transfer_loss(kdloss::host_view<const float>(s.data(), shape),
///                                         kdloss::host_view<const float>(t.data(), shape),
///                                         kdloss::host_scalar(&l_at));
template <class S, class Tt, class O>
void attention_transfer_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                             const Exec& exec = {}) {
  attention_transfer_loss(AttentionTransferLossArgs<O>{student, teacher, out, {}, {}}, Mode::forward, exec);
}

/// grad_student = grad_out * dL_AT/dS (paper form), grad_out one element on the device.
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> s(shape.product(), 0.5f), t(shape.product(), 0.25f), gs(shape.product());
///   const float one = 1;
///   kdloss::fbkd::attention_transfer_loss_backward(kdloss::host_view<const float>(s.data(), shape),
///                                                  kdloss::host_view<const float>(t.data(), shape),
///                                                  kdloss::host_scalar(&one), kdloss::host_view(gs.data(), shape));
template <class S, class Tt, class G, class O>
void attention_transfer_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                                      const View<O>& grad_student, const Exec& exec = {}) {
  attention_transfer_loss(AttentionTransferLossArgs<O>{student, teacher, {}, grad_out, grad_student}, Mode::backward,
                          exec);
}

/// Paper-form L_AT and dL_AT/dS together.
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> s(shape.product(), 0.5f), t(shape.product(), 0.25f), gs(shape.product());
///   float l_at;
///   kdloss::fbkd::attention_transfer_loss_forward_backward(kdloss::host_view<const float>(s.data(), shape),
///                                                          kdloss::host_view<const float>(t.data(), shape),
///                                                          kdloss::host_scalar(&l_at),
///                                                          kdloss::host_view(gs.data(), shape));
template <class S, class Tt, class O>
void attention_transfer_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                              const View<O>& grad_student, const Exec& exec = {}) {
  attention_transfer_loss(AttentionTransferLossArgs<O>{student, teacher, out, {}, grad_student},
                          Mode::forward_backward, exec);
}

// ---------------------------------------------------------------------------------------------
// Code form: L_AT = ||mean_hw(T) - C_hat||_F + ||mean_c(T) - S_hat||_F, gradients to C_hat and S_hat.

/// The arguments of one pooled_attention_transfer_loss call: the caller's adapted pooled features
/// C_hat = Linear(mean_hw(S)) ([B,C] or [B,C,1,1]) and S_hat = Conv3x3(mean_c(S)) ([B,1,H,W] or
/// [B,H,W]), the teacher [B,C,H,W], the value `out`, grad_out (backward) and the gradients of C_hat
/// and S_hat (backward, forward_backward; either may be `{}`, not both).
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> t(shape.product(), 0.25f), c_hat(2 * 8), s_hat(2 * 6 * 5), gc(2 * 8), gsp(2 * 6 * 5);
///   kdloss::fbkd::PooledAttentionTransferLossArgs<float> args;
///   args.student_channel = kdloss::host_view<const float>(c_hat.data(), {2, 8});
///   args.student_spatial = kdloss::host_view<const float>(s_hat.data(), {2, 1, 6, 5});
///   args.teacher = kdloss::host_view<const float>(t.data(), shape);
///   float l_at;
///   args.out = kdloss::host_scalar(&l_at);
///   args.grad_student_channel = kdloss::host_view(gc.data(), {2, 8});
///   args.grad_student_spatial = kdloss::host_view(gsp.data(), {2, 1, 6, 5});
///   kdloss::fbkd::pooled_attention_transfer_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct PooledAttentionTransferLossArgs {
  View<const T> student_channel{};
  View<const T> student_spatial{};
  View<const T> teacher{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student_channel{};
  View<T> grad_student_spatial{};
};

namespace detail {
template <class T>
Level<T> transfer_level(const PooledAttentionTransferLossArgs<T>& a) {
  Level<T> lv;
  lv.teacher = a.teacher;
  lv.student_channel = a.student_channel;
  lv.student_spatial = a.student_spatial;
  lv.grad_student_channel = a.grad_student_channel;
  lv.grad_student_spatial = a.grad_student_spatial;
  return lv;
}
template <class T>
void require_gradients(const char* fn, const PooledAttentionTransferLossArgs<T>& a, Mode mode) {
  ::kdloss::detail::require(
      !writes_gradients(mode) || present(a.grad_student_channel) || present(a.grad_student_spatial), fn,
      ": arguments 'grad_student_channel' and 'grad_student_spatial' are both absent; pass at least one");
}
}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::fbkd::PooledAttentionTransferLossArgs<float> args;   // its views filled in as in PooledAttentionTransferLossArgs's example
///   kdloss::fbkd::pooled_attention_transfer_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void pooled_attention_transfer_loss_check(const PooledAttentionTransferLossArgs<T>& args, Mode mode) {
  const char* fn = detail::kPooledAttentionTransferLossNames[mode_index(mode)];
  detail::require_gradients(fn, args, mode);
  const Level<T> lv = detail::transfer_level(args);
  detail::check_total<T>(fn, mode, &lv, 1, detail::transfer_only(TransferForm::code), args.out, args.grad_out, false);
}

/// Workspace bytes of pooled_attention_transfer_loss on these arguments, enough for every mode.
///
///   kdloss::fbkd::PooledAttentionTransferLossArgs<float> args;   // its views filled in as in PooledAttentionTransferLossArgs's example
///   std::size_t bytes = kdloss::fbkd::pooled_attention_transfer_loss_workspace_bytes(args);
template <class T>
std::size_t pooled_attention_transfer_loss_workspace_bytes(const PooledAttentionTransferLossArgs<T>& args) {
  return detail::transfer_workspace_bytes<T>(args.teacher, TransferForm::code);
}

/// Checks, then runs the code-form L_AT in `mode` (the single-level, unit-weight case of total_loss).
///
///   kdloss::fbkd::PooledAttentionTransferLossArgs<float> args;   // its views filled in as in PooledAttentionTransferLossArgs's example
///   kdloss::fbkd::pooled_attention_transfer_loss(args, kdloss::Mode::forward_backward);
template <class T>
void pooled_attention_transfer_loss(const PooledAttentionTransferLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  const char* fn = detail::kPooledAttentionTransferLossNames[mode_index(mode)];
  detail::require_gradients(fn, args, mode);
  const Level<T> lv = detail::transfer_level(args);
  detail::run_total<T>(fn, mode, &lv, 1, detail::transfer_only(TransferForm::code), args.out, args.grad_out, false,
                       exec);
}

/// Code-form L_AT = ||mean_hw(T) - C_hat||_F + ||mean_c(T) - S_hat||_F, with the caller's adapted
/// pooled features C_hat ([B,C] or [B,C,1,1]) and S_hat ([B,1,H,W] or [B,H,W]); teacher [B,C,H,W].
///
///   // c_hat = Linear(mean_hw(S)), s_hat = Conv3x3(mean_c(S)), computed by the caller's framework
///   std::vector<float> t(2 * 8 * 6 * 5, 0.25f), c_hat(2 * 8), s_hat(2 * 6 * 5);
///   float l_at;
///   kdloss::fbkd::pooled_attention_transfer_loss(kdloss::host_view<const float>(c_hat.data(), {2, 8}),
///                                                kdloss::host_view<const float>(s_hat.data(), {2, 1, 6, 5}),
///                                                kdloss::host_view<const float>(t.data(), {2, 8, 6, 5}),
///                                                kdloss::host_scalar(&l_at));
template <class C, class Sp, class Tt, class O>
void pooled_attention_transfer_loss(const View<C>& student_channel, const View<Sp>& student_spatial,
                                    const View<Tt>& teacher, const View<O>& out, const Exec& exec = {}) {
  pooled_attention_transfer_loss(
      PooledAttentionTransferLossArgs<O>{student_channel, student_spatial, teacher, out, {}, {}, {}}, Mode::forward,
      exec);
}

/// grad_out * dL_AT/dC_hat and grad_out * dL_AT/dS_hat (code form); either gradient may be `{}`.
///
///   std::vector<float> t(2 * 8 * 6 * 5, 0.25f), c_hat(2 * 8), s_hat(2 * 6 * 5), gc(2 * 8);
///   const float one = 1;
///   kdloss::fbkd::pooled_attention_transfer_loss_backward(
///       kdloss::host_view<const float>(c_hat.data(), {2, 8}), kdloss::host_view<const float>(s_hat.data(), {2, 6, 5}),
///       kdloss::host_view<const float>(t.data(), {2, 8, 6, 5}), kdloss::host_scalar(&one),
///       kdloss::host_view(gc.data(), {2, 8}), kdloss::View<float>{});
template <class C, class Sp, class Tt, class G, class O>
void pooled_attention_transfer_loss_backward(const View<C>& student_channel, const View<Sp>& student_spatial,
                                             const View<Tt>& teacher, const View<G>& grad_out,
                                             const View<O>& grad_student_channel, const View<O>& grad_student_spatial,
                                             const Exec& exec = {}) {
  pooled_attention_transfer_loss(
      PooledAttentionTransferLossArgs<O>{student_channel, student_spatial, teacher, {}, grad_out, grad_student_channel,
                                         grad_student_spatial},
      Mode::backward, exec);
}

/// Code-form L_AT and its gradients wrt C_hat and S_hat together.
///
///   std::vector<float> t(2 * 8 * 6 * 5, 0.25f), c_hat(2 * 8), s_hat(2 * 6 * 5), gc(2 * 8), gsp(2 * 6 * 5);
///   float l_at;
///   kdloss::fbkd::pooled_attention_transfer_loss_forward_backward(
///       kdloss::host_view<const float>(c_hat.data(), {2, 8}), kdloss::host_view<const float>(s_hat.data(), {2, 6, 5}),
///       kdloss::host_view<const float>(t.data(), {2, 8, 6, 5}), kdloss::host_scalar(&l_at),
///       kdloss::host_view(gc.data(), {2, 8}), kdloss::host_view(gsp.data(), {2, 6, 5}));
template <class C, class Sp, class Tt, class O>
void pooled_attention_transfer_loss_forward_backward(const View<C>& student_channel, const View<Sp>& student_spatial,
                                                     const View<Tt>& teacher, const View<O>& out,
                                                     const View<O>& grad_student_channel,
                                                     const View<O>& grad_student_spatial, const Exec& exec = {}) {
  pooled_attention_transfer_loss(
      PooledAttentionTransferLossArgs<O>{student_channel, student_spatial, teacher, out, {}, grad_student_channel,
                                         grad_student_spatial},
      Mode::forward_backward, exec);
}

} } }  // namespace kdloss::fbkd
