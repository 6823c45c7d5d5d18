// kdloss_torch family "fbkd": FBKD attention masks, L_AM, L_AT (paper and code forms) and the
// weighted total over pyramid levels with L_NLD (kdloss/losses/fbkd/*.hpp), through the generic binding
// (binding.hpp); kdloss_torch/fbkd.py wraps them with the generic autograd Function. The attention
// maps G_s and G_c are bound with the ops (ops.cpp).
#include "kdloss/losses/fbkd/fbkd.hpp"

#include <string>
#include <type_traits>

#include "binding.hpp"
#include "common.hpp"

namespace fbkd = kdloss::fbkd;

template <>
struct kdloss_torch::EnumNames<fbkd::MaskForm> {
  static constexpr std::pair<const char*, fbkd::MaskForm> values[] = {{"code", fbkd::MaskForm::code},
                                                                      {"paper", fbkd::MaskForm::paper}};
  static constexpr const char* expected = nullptr;
};
template <>
struct kdloss_torch::EnumNames<fbkd::TransferForm> {
  static constexpr std::pair<const char*, fbkd::TransferForm> values[] = {{"code", fbkd::TransferForm::code},
                                                                          {"paper", fbkd::TransferForm::paper}};
  static constexpr const char* expected = nullptr;
};

template <>
struct kdloss_torch::EnumNames<fbkd::NonLocalPreset> {
  static constexpr std::pair<const char*, fbkd::NonLocalPreset> values[] = {
      {"official", fbkd::NonLocalPreset::official}, {"mmrazor", fbkd::NonLocalPreset::mmrazor}};
  static constexpr const char* expected = nullptr;
};

namespace {

/// One non-local block's parameters ("<side>_nl_<param>", all optional) and their gradients, in the order
/// kdloss_torch.fbkd.NonLocalParams names them.
template <class Block, class F>
void describe_block(const char* side, Block& b, F& g) {
  static const std::string names[] = {"g_weight", "g_bias", "theta_weight", "theta_bias", "phi_weight",
                                      "phi_bias", "concat_project_weight", "conv_out_weight", "conv_out_bias",
                                      "bn_weight", "bn_bias"};
  using In = std::decay_t<decltype(b.g_weight)>;
  using Grad = std::decay_t<decltype(b.grad_g_weight)>;
  In* in[] = {&b.g_weight, &b.g_bias, &b.theta_weight, &b.theta_bias, &b.phi_weight, &b.phi_bias,
                &b.concat_project_weight, &b.conv_out_weight, &b.conv_out_bias, &b.bn_weight, &b.bn_bias};
  Grad* grad[] = {&b.grad_g_weight, &b.grad_g_bias, &b.grad_theta_weight, &b.grad_theta_bias, &b.grad_phi_weight,
                  &b.grad_phi_bias, &b.grad_concat_project_weight, &b.grad_conv_out_weight, &b.grad_conv_out_bias,
                  &b.grad_bn_weight, &b.grad_bn_bias};
  for (std::size_t i = 0; i < 11; ++i) {
    const std::string name = std::string(side) + "_nl_" + names[i], grad_name = "grad_" + name;
    g.in(name.c_str(), *in[i], true);  // the binding copies the names
    g.grad(grad_name.c_str(), *grad[i], name.c_str());
  }
}

/// A pyramid level's own fields, shared by both total-loss bindings: the maps (student and its adapted and
/// pooled forms optional, as the configuration reads them) and the student-side gradients.
constexpr auto describe_level = [](auto& lv, auto& g) {
  g.in("student", lv.student, true);
  g.in("teacher", lv.teacher);
  g.in("student_adapted", lv.student_adapted, true);
  g.in("student_channel", lv.student_channel, true);
  g.in("student_spatial", lv.student_spatial, true);
  g.grad("grad_student", lv.grad_student, "student");
  g.grad("grad_student_adapted", lv.grad_student_adapted, "student_adapted");
  g.grad("grad_student_channel", lv.grad_student_channel, "student_channel");
  g.grad("grad_student_spatial", lv.grad_student_spatial, "student_spatial");
};

}  // namespace

KDLOSS_TORCH_FAMILY(fbkd, m) {
  namespace kt = kdloss_torch;
  kt::Options<fbkd::MaskOptions>(m, "FbkdMaskOptions", "kdloss::fbkd::MaskOptions")
      .field("form", &fbkd::MaskOptions::form)
      .field("spatial_temperature", &fbkd::MaskOptions::spatial_temperature)
      .field("channel_temperature", &fbkd::MaskOptions::channel_temperature);
  kt::bind<fbkd::AttentionMasksArgs>(m, "fbkd_attention_masks", "kdloss_torch.fbkd.attention_masks",
                                     [](auto& a, auto& f) {
                                       f.in("student", a.student);
                                       f.in("teacher", a.teacher);
                                       const kt::Dims& t = a.teacher.shape;  // another rank: the entry's to report
                                       const bool four = t.rank == 4;
                                       f.out("mask_spatial", a.mask_spatial, four ? kt::Dims{t[0], 1, t[2], t[3]} : kt::Dims{1}, true);
                                       f.out("mask_channel", a.mask_channel, four ? kt::Dims{t[0], t[1]} : kt::Dims{1}, true);
                                     },
                                     KDLOSS_TORCH_ENTRY(fbkd::attention_masks));
  kt::bind<fbkd::MaskedFeatureLossArgs>(m, "fbkd_masked_feature_loss", "kdloss_torch.fbkd.masked_feature_loss",
                                        [](auto& a, auto& f) {
                                          f.in("student_adapted", a.student_adapted);
                                          f.in("teacher", a.teacher);
                                          f.in("mask_spatial", a.mask_spatial);
                                          f.in("mask_channel", a.mask_channel, /*optional=*/true);
                                          f.upstream(a.grad_out);
                                          f.out("out", a.out, kt::Dims{});
                                          f.grad("grad_student_adapted", a.grad_student_adapted, "student_adapted");
                                        },
                                        KDLOSS_TORCH_ENTRY(fbkd::masked_feature_loss));
  kt::bind<fbkd::AttentionTransferLossArgs>(m, "fbkd_attention_transfer_loss",
                                            "kdloss_torch.fbkd.attention_transfer_loss",
                                            [](auto& a, auto& f) {
                                              f.in("student", a.student);
                                              f.in("teacher", a.teacher);
                                              f.upstream(a.grad_out);
                                              f.out("out", a.out, kt::Dims{});
                                              f.grad("grad_student", a.grad_student, "student");
                                            },
                                            KDLOSS_TORCH_ENTRY(fbkd::attention_transfer_loss));
  kt::bind<fbkd::PooledAttentionTransferLossArgs>(
      m, "fbkd_pooled_attention_transfer_loss", "kdloss_torch.fbkd.pooled_attention_transfer_loss",
      [](auto& a, auto& f) {
        f.in("student_channel", a.student_channel);
        f.in("student_spatial", a.student_spatial);
        f.in("teacher", a.teacher);
        f.upstream(a.grad_out);
        f.out("out", a.out, kt::Dims{});
        f.grad("grad_student_channel", a.grad_student_channel, "student_channel");
        f.grad("grad_student_spatial", a.grad_student_spatial, "student_spatial");
      },
      KDLOSS_TORCH_ENTRY(fbkd::pooled_attention_transfer_loss));
  kt::Options<fbkd::Config>(m, "FbkdConfig", "kdloss::fbkd::Config")
      .field("mask_form", &fbkd::Config::mask_form)
      .field("transfer_form", &fbkd::Config::transfer_form)
      .field("spatial_temperature", &fbkd::Config::spatial_temperature)
      .field("channel_temperature", &fbkd::Config::channel_temperature)
      .field("w_am", &fbkd::Config::w_am)
      .field("w_at", &fbkd::Config::w_at)
      .field("use_channel_mask", &fbkd::Config::use_channel_mask)
      .field("w_nld", &fbkd::Config::w_nld)
      .field("non_local_preset", &fbkd::Config::non_local_preset)
      .field("non_local_training", &fbkd::Config::non_local_training);
  kt::bind<fbkd::TotalLossArgs>(m, "fbkd_total_loss", "kdloss_torch.fbkd.total_loss",
                                [](auto& a, auto& f) {
                                  f.group("levels", a.levels, "pyramid level", describe_level);
                                  f.upstream(a.grad_out);
                                  f.out("out", a.out, kt::Dims{});
                                },
                                KDLOSS_TORCH_ENTRY(fbkd::total_loss));
  // The total with L_NLD's blocks per level (30 fields; the plain binding above keeps its 5).
  kt::bind<fbkd::TotalLossArgs>(m, "fbkd_total_loss_non_local", "kdloss_torch.fbkd.total_loss",
                                [](auto& a, auto& f) {
                                  f.group("levels", a.levels, "pyramid level", [](auto& lv, auto& g) {
                                    describe_level(lv, g);
                                    // L_NLD: both blocks, the adaptation conv, and an optional [4, C] buffer
                                    // the forward fills with the blocks' BN batch statistics (student mean,
                                    // var, teacher mean, var) for the running statistics.
                                    describe_block("student", lv.student_non_local, g);
                                    describe_block("teacher", lv.teacher_non_local, g);
                                    g.in("non_local_adapt_weight", lv.non_local_adapt_weight, true);
                                    g.in("non_local_adapt_bias", lv.non_local_adapt_bias, true);
                                    g.grad("grad_non_local_adapt_weight", lv.grad_non_local_adapt_weight,
                                           "non_local_adapt_weight");
                                    g.grad("grad_non_local_adapt_bias", lv.grad_non_local_adapt_bias,
                                           "non_local_adapt_bias");
                                    using T = std::remove_const_t<typename std::decay_t<decltype(lv.teacher)>::value_type>;
                                    kdloss::View<const T> stats{};
                                    g.in("non_local_bn_stats", stats, true);
                                    if (stats.data != nullptr && stats.rank() == 2 && stats.shape[0] == 4) {
                                      const auto row = [&](std::int64_t r) {
                                        return kdloss::View<T>(const_cast<T*>(stats.data) + r * stats.strides[0],
                                                               kdloss::Dims{stats.shape[1]},
                                                               kdloss::Dims{stats.strides[1]}, stats.device);
                                      };
                                      lv.student_non_local.bn_batch_mean = row(0);
                                      lv.student_non_local.bn_batch_var = row(1);
                                      lv.teacher_non_local.bn_batch_mean = row(2);
                                      lv.teacher_non_local.bn_batch_var = row(3);
                                    }
                                  });
                                  f.upstream(a.grad_out);
                                  f.out("out", a.out, kt::Dims{});
                                },
                                KDLOSS_TORCH_ENTRY(fbkd::total_loss));
}
