// kdloss/losses/fbkd/attention_transfer.hpp: FBKD's attention-transfer loss L_AT, in both forms.
// ||.||_F is torch.dist: the square root of the sum of squares over the whole batch, not squared and
// not divided by anything; its gradient is defined as 0 where the distance is 0.
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

#include "kdloss/losses/fbkd/total.hpp"

namespace kdloss::fbkd {
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
template <class T>
void require_gradient(const char* fn, const View<T>& g, const char* arg) {
  ::kdloss::detail::require(!absent(g), fn, ": argument '", arg, "' is absent; pass the view to write the gradient to");
}

}  // namespace detail

/// Paper-form L_AT = ||G_s(S) - G_s(T)||_F + ||G_c(S) - G_c(T)||_F of student and teacher [B,C,H,W].
///
///   float l_at;
///   kdloss::fbkd::attention_transfer_loss(kdloss::host_view(s, {2, 256, 50, 84}),
///                                         kdloss::host_view(t, {2, 256, 50, 84}), kdloss::host_scalar(&l_at));
template <class S, class Tt, class O>
void attention_transfer_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                             const Exec& exec = {}) {
  const Level<O> lv{student, teacher};
  detail::run_total<O>("kdloss::fbkd::attention_transfer_loss", detail::Mode::forward, &lv, 1,
                       detail::transfer_only(TransferForm::paper), out, {}, false, exec);
}

/// grad_student = grad_out * dL_AT/dS (paper form), grad_out one element on the device.
///
///   kdloss::fbkd::attention_transfer_loss_backward(s, t, kdloss::host_scalar(&one), grad_s);
template <class S, class Tt, class G, class O>
void attention_transfer_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                                      const View<O>& grad_student, const Exec& exec = {}) {
  const char* fn = "kdloss::fbkd::attention_transfer_loss_backward";
  detail::require_gradient(fn, grad_student, "grad_student");
  Level<O> lv{student, teacher};
  lv.grad_student = grad_student;
  detail::run_total<O>(fn, detail::Mode::backward, &lv, 1, detail::transfer_only(TransferForm::paper), {}, grad_out,
                       false, exec);
}

/// Paper-form L_AT and dL_AT/dS together.
///
///   kdloss::fbkd::attention_transfer_loss_forward_backward(s, t, kdloss::host_scalar(&l_at), grad_s);
template <class S, class Tt, class O>
void attention_transfer_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                              const View<O>& grad_student, const Exec& exec = {}) {
  const char* fn = "kdloss::fbkd::attention_transfer_loss_forward_backward";
  detail::require_gradient(fn, grad_student, "grad_student");
  Level<O> lv{student, teacher};
  lv.grad_student = grad_student;
  detail::run_total<O>(fn, detail::Mode::fused, &lv, 1, detail::transfer_only(TransferForm::paper), out, {}, false,
                       exec);
}

/// Code-form L_AT = ||mean_hw(T) - C_hat||_F + ||mean_c(T) - S_hat||_F, with the caller's adapted
/// pooled features C_hat ([B,C] or [B,C,1,1]) and S_hat ([B,1,H,W] or [B,H,W]); teacher [B,C,H,W].
///
///   // c_hat = Linear(mean_hw(S)), s_hat = Conv3x3(mean_c(S)), computed by the caller's framework
///   kdloss::fbkd::pooled_attention_transfer_loss(kdloss::host_view(c_hat, {2, 256}),
///                                                kdloss::host_view(s_hat, {2, 1, 50, 84}),
///                                                kdloss::host_view(t, {2, 256, 50, 84}), kdloss::host_scalar(&l_at));
template <class C, class Sp, class Tt, class O>
void pooled_attention_transfer_loss(const View<C>& student_channel, const View<Sp>& student_spatial,
                                    const View<Tt>& teacher, const View<O>& out, const Exec& exec = {}) {
  Level<O> lv;
  lv.teacher = teacher;
  lv.student_channel = student_channel;
  lv.student_spatial = student_spatial;
  detail::run_total<O>("kdloss::fbkd::pooled_attention_transfer_loss", detail::Mode::forward, &lv, 1,
                       detail::transfer_only(TransferForm::code), out, {}, false, exec);
}

/// grad_out * dL_AT/dC_hat and grad_out * dL_AT/dS_hat (code form); either gradient may be `{}`.
///
///   kdloss::fbkd::pooled_attention_transfer_loss_backward(c_hat, s_hat, t, kdloss::host_scalar(&one), g_c, g_s);
template <class C, class Sp, class Tt, class G, class O>
void pooled_attention_transfer_loss_backward(const View<C>& student_channel, const View<Sp>& student_spatial,
                                             const View<Tt>& teacher, const View<G>& grad_out,
                                             const View<O>& grad_student_channel, const View<O>& grad_student_spatial,
                                             const Exec& exec = {}) {
  const char* fn = "kdloss::fbkd::pooled_attention_transfer_loss_backward";
  ::kdloss::detail::require(!detail::absent(grad_student_channel) || !detail::absent(grad_student_spatial), fn,
                            ": arguments 'grad_student_channel' and 'grad_student_spatial' are both absent; pass at "
                            "least one");
  Level<O> lv;
  lv.teacher = teacher;
  lv.student_channel = student_channel;
  lv.student_spatial = student_spatial;
  lv.grad_student_channel = grad_student_channel;
  lv.grad_student_spatial = grad_student_spatial;
  detail::run_total<O>(fn, detail::Mode::backward, &lv, 1, detail::transfer_only(TransferForm::code), {}, grad_out,
                       false, exec);
}

/// Code-form L_AT and its gradients wrt C_hat and S_hat together.
///
///   kdloss::fbkd::pooled_attention_transfer_loss_forward_backward(c_hat, s_hat, t, kdloss::host_scalar(&l_at),
///                                                                 g_c, g_s);
template <class C, class Sp, class Tt, class O>
void pooled_attention_transfer_loss_forward_backward(const View<C>& student_channel, const View<Sp>& student_spatial,
                                                     const View<Tt>& teacher, const View<O>& out,
                                                     const View<O>& grad_student_channel,
                                                     const View<O>& grad_student_spatial, const Exec& exec = {}) {
  const char* fn = "kdloss::fbkd::pooled_attention_transfer_loss_forward_backward";
  ::kdloss::detail::require(!detail::absent(grad_student_channel) || !detail::absent(grad_student_spatial), fn,
                            ": arguments 'grad_student_channel' and 'grad_student_spatial' are both absent; pass at "
                            "least one");
  Level<O> lv;
  lv.teacher = teacher;
  lv.student_channel = student_channel;
  lv.student_spatial = student_spatial;
  lv.grad_student_channel = grad_student_channel;
  lv.grad_student_spatial = grad_student_spatial;
  detail::run_total<O>(fn, detail::Mode::fused, &lv, 1, detail::transfer_only(TransferForm::code), out, {}, false,
                       exec);
}

/// Workspace bytes of the L_AT calls of either form on this teacher shape.
///
///   std::size_t bytes = kdloss::fbkd::attention_transfer_loss_workspace_bytes(t, kdloss::fbkd::TransferForm::paper);
template <class Tt>
std::size_t attention_transfer_loss_workspace_bytes(const View<Tt>& teacher, TransferForm form) {
  return detail::transfer_workspace_bytes<std::remove_cv_t<Tt>>(teacher, form);
}

}  // namespace kdloss::fbkd
