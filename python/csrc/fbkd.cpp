// kdloss_torch family "fbkd": FBKD attention masks, L_AM, L_AT (paper and code forms) and the
// weighted total over pyramid levels (kdloss/losses/fbkd/*.hpp). kdloss_torch/fbkd.py wraps them.
#include "kdloss/losses/fbkd/fbkd.hpp"

#include <array>

#include "common.hpp"

namespace kdloss_torch {
namespace {

namespace fbkd = kdloss::fbkd;

fbkd::MaskForm mask_form_of(const std::string& s, const char* fn, const char* arg) {
  if (s == "code") return fbkd::MaskForm::code;
  if (s == "paper") return fbkd::MaskForm::paper;
  kdloss::detail::fail(fn, ": argument '", arg, "' must be 'code' or 'paper' but is '", s, "'");
}
fbkd::TransferForm transfer_form_of(const std::string& s, const char* fn, const char* arg) {
  if (s == "code") return fbkd::TransferForm::code;
  if (s == "paper") return fbkd::TransferForm::paper;
  kdloss::detail::fail(fn, ": argument '", arg, "' must be 'code' or 'paper' but is '", s, "'");
}

/// The bridge's mode (forward 0, backward 1, fused 2) as the library's.
kdloss::Mode library_mode(Mode m) {
  return m == Mode::forward ? kdloss::Mode::forward
                            : m == Mode::backward ? kdloss::Mode::backward : kdloss::Mode::forward_backward;
}

/// kdloss_torch.fbkd.Config (a dict of its fields) -> kdloss::fbkd::Config.
fbkd::Config config_of(const py::dict& d, const char* fn) {
  fbkd::Config c;
  c.mask_form = mask_form_of(d["mask_form"].cast<std::string>(), fn, "config.mask_form");
  c.transfer_form = transfer_form_of(d["transfer_form"].cast<std::string>(), fn, "config.transfer_form");
  c.spatial_temperature = d["spatial_temperature"].cast<double>();
  c.channel_temperature = d["channel_temperature"].cast<double>();
  c.w_am = d["w_am"].cast<double>();
  c.w_at = d["w_at"].cast<double>();
  c.use_channel_mask = d["use_channel_mask"].cast<bool>();
  return c;
}

/// (M_s [B,1,H,W] | None, M_c [B,C] | None).
py::tuple attention_masks(py::handle student, py::handle teacher, const std::string& form, double t_s, double t_c,
                          bool spatial, bool channel) {
  const char* fn = "kdloss_torch.fbkd.attention_masks";
  const Arg s = tensor_arg(student, fn, "student"), t = tensor_arg(teacher, fn, "teacher");
  same_dtype(fn, s, t);
  const fbkd::MaskOptions options{mask_form_of(form, fn, "form"), t_s, t_c};
  const bool four = t.shape.rank == 4;  // other ranks: the C++ call reports them
  Output ms, mc;
  if (spatial) ms = empty(t, four ? Dims{t.shape[0], 1, t.shape[2], t.shape[3]} : Dims{1}, "mask_spatial");
  if (channel) mc = empty(t, four ? Dims{t.shape[0], t.shape[1]} : Dims{1}, "mask_channel");
  Call call(fn, t.device);
  dispatch(fn, t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const fbkd::AttentionMasksArgs<T> args{s.in<T>(), t.in<T>(), ms.arg.out<T>(), mc.arg.out<T>(), options};
    const kdloss::Exec ex =
        call.exec(workspace_bytes([&] { return fbkd::attention_masks_workspace_bytes(args); }));
    py::gil_scoped_release nogil;
    fbkd::attention_masks(args, kdloss::Mode::forward, ex);
  });
  return py::make_tuple(ms.tensor, mc.tensor);
}

/// L_AM: (out | None, grad_student_adapted | None).
py::tuple masked_feature(int mode_index, py::handle student_adapted, py::handle teacher, py::handle mask_spatial,
                         py::handle mask_channel, py::handle grad_out) {
  const char* fn = "kdloss_torch.fbkd.masked_feature_loss";
  const Mode mode = mode_of(mode_index, fn);
  const Arg a = tensor_arg(student_adapted, fn, "student_adapted"), t = tensor_arg(teacher, fn, "teacher");
  const Arg ms = tensor_arg(mask_spatial, fn, "mask_spatial"), mc = tensor_arg(mask_channel, fn, "mask_channel", true);
  const Arg up = tensor_arg(grad_out, fn, "grad_out", mode != Mode::backward);
  for (const Arg* x : {&t, &ms, &mc, &up}) same_dtype(fn, a, *x);
  Output out, grad;
  if (mode != Mode::backward) out = empty(a, Dims{}, "out");
  if (mode != Mode::forward) grad = empty_like(student_adapted, "grad_student_adapted");
  Call call(fn, a.device);
  dispatch(fn, a, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const fbkd::MaskedFeatureLossArgs<T> args{a.in<T>(), t.in<T>(), ms.in<T>(), mc.in<T>(), out.arg.out<T>(),
                                              up.in<T>(), grad.arg.out<T>()};
    const kdloss::Exec ex = call.exec(workspace_bytes([&] { return fbkd::masked_feature_loss_workspace_bytes(args); }));
    py::gil_scoped_release nogil;
    fbkd::masked_feature_loss(args, library_mode(mode), ex);
  });
  return py::make_tuple(out.tensor, grad.tensor);
}

/// Paper-form L_AT: (out | None, grad_student | None).
py::tuple attention_transfer(int mode_index, py::handle student, py::handle teacher, py::handle grad_out) {
  const char* fn = "kdloss_torch.fbkd.attention_transfer_loss";
  const Mode mode = mode_of(mode_index, fn);
  const Arg s = tensor_arg(student, fn, "student"), t = tensor_arg(teacher, fn, "teacher");
  const Arg up = tensor_arg(grad_out, fn, "grad_out", mode != Mode::backward);
  same_dtype(fn, s, t);
  same_dtype(fn, s, up);
  Output out, grad;
  if (mode != Mode::backward) out = empty(s, Dims{}, "out");
  if (mode != Mode::forward) grad = empty_like(student, "grad_student");
  Call call(fn, s.device);
  dispatch(fn, s, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const fbkd::AttentionTransferLossArgs<T> args{s.in<T>(), t.in<T>(), out.arg.out<T>(), up.in<T>(),
                                                  grad.arg.out<T>()};
    const kdloss::Exec ex =
        call.exec(workspace_bytes([&] { return fbkd::attention_transfer_loss_workspace_bytes(args); }));
    py::gil_scoped_release nogil;
    fbkd::attention_transfer_loss(args, library_mode(mode), ex);
  });
  return py::make_tuple(out.tensor, grad.tensor);
}

/// Code-form L_AT: (out | None, grad_student_channel | None, grad_student_spatial | None).
py::tuple pooled_attention_transfer(int mode_index, py::handle student_channel, py::handle student_spatial,
                                    py::handle teacher, py::handle grad_out, bool want_channel, bool want_spatial) {
  const char* fn = "kdloss_torch.fbkd.pooled_attention_transfer_loss";
  const Mode mode = mode_of(mode_index, fn);
  const Arg c = tensor_arg(student_channel, fn, "student_channel"),
            sp = tensor_arg(student_spatial, fn, "student_spatial");
  const Arg t = tensor_arg(teacher, fn, "teacher");
  const Arg up = tensor_arg(grad_out, fn, "grad_out", mode != Mode::backward);
  for (const Arg* x : {&sp, &c, &up}) same_dtype(fn, t, *x);
  Output out, gc, gs;
  if (mode != Mode::backward) out = empty(t, Dims{}, "out");
  if (mode != Mode::forward && want_channel) gc = empty_like(student_channel, "grad_student_channel");
  if (mode != Mode::forward && want_spatial) gs = empty_like(student_spatial, "grad_student_spatial");
  Call call(fn, t.device);
  dispatch(fn, t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const fbkd::PooledAttentionTransferLossArgs<T> args{c.in<T>(),        sp.in<T>(),       t.in<T>(),
                                                        out.arg.out<T>(), up.in<T>(),       gc.arg.out<T>(),
                                                        gs.arg.out<T>()};
    const kdloss::Exec ex =
        call.exec(workspace_bytes([&] { return fbkd::pooled_attention_transfer_loss_workspace_bytes(args); }));
    py::gil_scoped_release nogil;
    fbkd::pooled_attention_transfer_loss(args, library_mode(mode), ex);
  });
  return py::make_tuple(out.tensor, gc.tensor, gs.tensor);
}

/// The weighted total over levels. `levels`: a sequence of (S, T, A, C_hat, S_hat) with None for
/// absent views; `want`: per level (grad A, grad S, grad C_hat, grad S_hat) flags.
/// Returns (out | None, [(gA, gS, gC, gSp) per level] with None where not requested).
py::tuple total(int mode_index, const py::sequence& levels, const py::sequence& want, const py::dict& config,
                py::handle grad_out) {
  const char* fn = "kdloss_torch.fbkd.total_loss";
  const Mode mode = mode_of(mode_index, fn);
  const fbkd::Config cfg = config_of(config, fn);
  const std::size_t n = py::len(levels);
  kdloss::detail::require(n > 0, fn, ": argument 'levels' is empty; pass at least one pyramid level");
  kdloss::detail::require(py::len(want) == n, fn, ": internal: 'want' has ", py::len(want), " entries for ", n,
                          " levels");
  static const char* const field[5] = {"student", "teacher", "student_adapted", "student_channel", "student_spatial"};
  static const char* const grad_field[4] = {"grad_student_adapted", "grad_student", "grad_student_channel",
                                            "grad_student_spatial"};
  std::vector<std::string> names;  // "levels[i].field", kept alive for the Args
  names.reserve(n * 9);
  std::vector<std::array<Arg, 5>> in(n);
  std::vector<std::array<Output, 4>> grads(n);
  const Arg up = tensor_arg(grad_out, fn, "grad_out", mode != Mode::backward);
  for (std::size_t i = 0; i < n; ++i) {
    const py::sequence lv = levels[i];
    kdloss::detail::require(py::len(lv) == 5, fn, ": internal: level ", i, " has ", py::len(lv), " entries");
    for (int k = 0; k < 5; ++k) {
      names.push_back("levels[" + std::to_string(i) + "]." + field[k]);
      in[i][k] = tensor_arg(lv[k], fn, names.back().c_str(), /*optional=*/k != 1);
    }
    const py::sequence w = want[i];
    // Gradient outputs shaped like their input; that of A is shaped like S when A is absent (A = S).
    const int like[4] = {in[i][2].present ? 2 : 0, 0, 3, 4};
    for (int k = 0; k < 4; ++k) {
      if (mode == Mode::forward || !w[k].cast<bool>()) continue;
      names.push_back("levels[" + std::to_string(i) + "]." + grad_field[k]);
      kdloss::detail::require(in[i][like[k]].present, fn, ": argument 'levels[", i, "].", field[like[k]],
                              "' is None but its gradient was requested");
      grads[i][k] = empty_like(lv[like[k]], names.back().c_str());
    }
  }
  const Arg& first = in[0][1];
  for (std::size_t i = 0; i < n; ++i)
    for (int k = 0; k < 5; ++k) same_dtype(fn, first, in[i][k]);
  same_dtype(fn, first, up);
  Output out;
  if (mode != Mode::backward) out = empty(first, Dims{}, "out");
  Call call(fn, first.device);
  dispatch(fn, first, [&](auto tag) {
    using T = typename decltype(tag)::type;
    fbkd::TotalLossArgs<T> args{std::vector<fbkd::Level<T>>(n), out.arg.out<T>(), up.in<T>(), cfg};
    std::vector<fbkd::Level<T>>& lv = args.levels;
    for (std::size_t i = 0; i < n; ++i) {
      lv[i].student = in[i][0].in<T>();
      lv[i].teacher = in[i][1].in<T>();
      lv[i].student_adapted = in[i][2].in<T>();
      lv[i].student_channel = in[i][3].in<T>();
      lv[i].student_spatial = in[i][4].in<T>();
      lv[i].grad_student_adapted = grads[i][0].arg.out<T>();
      lv[i].grad_student = grads[i][1].arg.out<T>();
      lv[i].grad_student_channel = grads[i][2].arg.out<T>();
      lv[i].grad_student_spatial = grads[i][3].arg.out<T>();
    }
    const kdloss::Exec ex = call.exec(workspace_bytes([&] { return fbkd::total_loss_workspace_bytes(args); }));
    py::gil_scoped_release nogil;
    fbkd::total_loss(args, library_mode(mode), ex);
  });
  py::list result;
  for (std::size_t i = 0; i < n; ++i)
    result.append(py::make_tuple(grads[i][0].tensor, grads[i][1].tensor, grads[i][2].tensor, grads[i][3].tensor));
  return py::make_tuple(out.tensor, result);
}

}  // namespace
}  // namespace kdloss_torch

KDLOSS_TORCH_FAMILY(fbkd, m) {
  using namespace pybind11::literals;
  namespace kt = kdloss_torch;
  m.def("fbkd_attention_masks", &kt::attention_masks, "student"_a, "teacher"_a, "form"_a, "spatial_temperature"_a,
        "channel_temperature"_a, "spatial"_a, "channel"_a,
        "kdloss::fbkd::attention_masks -> (mask_spatial [B,1,H,W] | None, mask_channel [B,C] | None)");
  m.def("fbkd_masked_feature", &kt::masked_feature, "mode"_a, "student_adapted"_a, "teacher"_a, "mask_spatial"_a,
        "mask_channel"_a, "grad_out"_a, "kdloss::fbkd::masked_feature_loss[...] -> (out | None, grad | None)");
  m.def("fbkd_attention_transfer", &kt::attention_transfer, "mode"_a, "student"_a, "teacher"_a, "grad_out"_a,
        "kdloss::fbkd::attention_transfer_loss[...] (paper form) -> (out | None, grad | None)");
  m.def("fbkd_pooled_attention_transfer", &kt::pooled_attention_transfer, "mode"_a, "student_channel"_a,
        "student_spatial"_a, "teacher"_a, "grad_out"_a, "want_channel"_a, "want_spatial"_a,
        "kdloss::fbkd::pooled_attention_transfer_loss[...] (code form) -> (out | None, grad_c | None, grad_s | None)");
  m.def("fbkd_total", &kt::total, "mode"_a, "levels"_a, "want"_a, "config"_a, "grad_out"_a,
        "kdloss::fbkd::total_loss[...] -> (out | None, [(grad_A, grad_S, grad_C, grad_Sp) per level])");
}
