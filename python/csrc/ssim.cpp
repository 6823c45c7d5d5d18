// kdloss_torch family "ssim": kornia's ssim / ssim_loss with the thesis options and the thesis' pyramid
// sum ssim_pyramid_loss (kdloss/losses/ssim/kornia.hpp), pytorch-msssim's ssim / ms_ssim and the l1 +
// MS-SSIM mixture (kdloss/losses/ssim/ms_ssim.hpp), through the generic binding (binding.hpp);
// kdloss_torch/ssim.py wraps them with the generic autograd Function. docs/losses/ssim.md.
#include "kdloss/losses/ssim/ssim.hpp"

#include "binding.hpp"
#include "common.hpp"

namespace ks = kdloss::ssim;
using kdloss::ops::Padding;

template <>
struct kdloss_torch::EnumNames<Padding> {
  static constexpr std::pair<const char*, Padding> values[] = {
      {"reflect", Padding::reflect}, {"same", Padding::reflect}, {"zeros", Padding::zeros}, {"valid", Padding::valid}};
  static constexpr const char* expected = "'same' (= 'reflect'), 'zeros' or 'valid'";
};
template <>
struct kdloss_torch::EnumNames<ks::ChannelReduction> {
  static constexpr std::pair<const char*, ks::ChannelReduction> values[] = {
      {"mean", ks::ChannelReduction::mean}, {"per_image", ks::ChannelReduction::per_image},
      {"none", ks::ChannelReduction::none}};
  static constexpr const char* expected = nullptr;
};

namespace kdloss_torch {
namespace {

/// The SSIM map's shape [B, C, Ho, Wo] (Ho = H - window + 1 for valid padding); another rank is the
/// entry's to report.
Dims map_shape(const Dims& s, const kdloss::SsimOptions& o) {
  if (s.rank != 4) return Dims{1};
  auto extent = [&](std::int64_t n) {
    return o.padding != Padding::valid ? n : n - o.window_size + 1 > 0 ? n - o.window_size + 1 : 0;
  };
  return Dims{s[0], s[1], extent(s[2]), extent(s[3])};
}

/// student, teacher -> out, with the gradients of both (ssim_loss, ssim_map, ssim_index, ms_ssim).
template <class Out>
auto pair(Out out) {
  return [out](auto& a, auto& f) {
    f.in("student", a.student);
    f.in("teacher", a.teacher);
    f.upstream(a.grad_out);
    out(a, f);
    f.grad("grad_student", a.grad_student, "student");
    f.grad("grad_teacher", a.grad_teacher, "teacher");
  };
}

/// ssim_index / ms_ssim: one value, [B] (per_image) or [B, C] (none).
constexpr auto per_channel = [](auto& a, auto& f) {
  f.param("reduction", a.reduction);
  const Dims& s = a.student.shape;
  const bool four = s.rank == 4;
  const auto r = a.reduction;
  f.out("out", a.out,
        r == ks::ChannelReduction::mean ? Dims{} : r == ks::ChannelReduction::per_image ? Dims{four ? s[0] : 1}
                                                                                      : Dims{four ? s[0] : 1, four ? s[1] : 1});
};

}  // namespace
}  // namespace kdloss_torch

KDLOSS_TORCH_FAMILY(ssim, m) {
  namespace kt = kdloss_torch;
  using kdloss::SsimOptions;
  using kdloss::MsSsimOptions;
  kt::Options<SsimOptions>(m, "SsimOptions", "kdloss::SsimOptions")
      .field("window_size", &SsimOptions::window_size)
      .field("sigma", &SsimOptions::sigma)
      .field("max_val", &SsimOptions::max_val)
      .field("k1", &SsimOptions::k1)
      .field("k2", &SsimOptions::k2)
      .field("alpha", &SsimOptions::alpha)
      .field("beta", &SsimOptions::beta)
      .field("gamma", &SsimOptions::gamma)
      .field("eps", &SsimOptions::eps)
      .field("padding", &SsimOptions::padding)
      .field("clamp", &SsimOptions::clamp)
      .field("normalize", &SsimOptions::normalize)
      .field("three_component", &SsimOptions::three_component);
  kt::bind<ks::SsimLossArgs>(m, "ssim_ssim_loss", "kdloss_torch.ssim_loss", kt::pair([](auto& a, auto& f) {
                               f.param("reduction", a.reduction);
                               if (a.reduction == kdloss::Reduction::none)
                                 f.out("out", a.out, kt::map_shape(a.student.shape, a.options));
                               else
                                 f.out("out", a.out, kt::Dims{});
                             }),
                             KDLOSS_TORCH_ENTRY(ks::ssim_loss));
  kt::bind<ks::SsimMapArgs>(m, "ssim_ssim_map", "kdloss_torch.ssim", kt::pair([](auto& a, auto& f) {
                              f.out("out", a.out, kt::map_shape(a.student.shape, a.options));
                            }),
                            KDLOSS_TORCH_ENTRY(ks::ssim_map));
  kt::bind<ks::SsimPyramidLossArgs>(m, "ssim_ssim_pyramid_loss", "kdloss_torch.ssim_pyramid_loss",
                                    [](auto& a, auto& f) {
                                      f.in_list("students", a.students, "pyramid level");
                                      f.in_list("teachers", a.teachers, "pyramid level");
                                      f.upstream(a.grad_out);
                                      f.out("out", a.out, kt::Dims{});
                                      f.grad_list("grad_students", a.grad_students, "students");
                                    },
                                    KDLOSS_TORCH_ENTRY(ks::ssim_pyramid_loss));
  kt::Options<MsSsimOptions>(m, "MsSsimOptions", "kdloss::MsSsimOptions")
      .field("window_size", &MsSsimOptions::window_size)
      .field("sigma", &MsSsimOptions::sigma)
      .field("data_range", &MsSsimOptions::data_range)
      .field("k1", &MsSsimOptions::k1)
      .field("k2", &MsSsimOptions::k2)
      .field("nonnegative_ssim", &MsSsimOptions::nonnegative_ssim)
      .field("weights", &MsSsimOptions::weights)
      .field("normalize", &MsSsimOptions::normalize);
  kt::bind<ks::SsimIndexArgs>(m, "ssim_ssim_index", "kdloss_torch.ssim_index", kt::pair(kt::per_channel),
                              KDLOSS_TORCH_ENTRY(ks::ssim_index));
  kt::bind<ks::MsSsimArgs>(m, "ssim_ms_ssim", "kdloss_torch.ms_ssim", kt::pair(kt::per_channel),
                           KDLOSS_TORCH_ENTRY(ks::ms_ssim));
  kt::Options<kdloss::MsSsimL1Options>(m, "MsSsimL1Options", "kdloss::MsSsimL1Options")
      .field("ms_ssim", &kdloss::MsSsimL1Options::ms_ssim)
      .field("l1_weight", &kdloss::MsSsimL1Options::l1_weight);
  kt::bind<ks::MsSsimL1LossArgs>(m, "ssim_ms_ssim_l1_loss", "kdloss_torch.ms_ssim_l1_loss",
                                 [](auto& a, auto& f) {  // kdloss::ms_ssim_l1_loss has no teacher gradient
                                   f.in("student", a.student);
                                   f.in("teacher", a.teacher);
                                   f.upstream(a.grad_out);
                                   f.out("out", a.out, kt::Dims{});
                                   f.grad("grad_student", a.grad_student, "student");
                                 },
                                 KDLOSS_TORCH_ENTRY(ks::ms_ssim_l1_loss));
}
