// kdloss/losses/fbkd/options.hpp: the named choices of FBKD (Zhang & Ma, ICLR 2021) where the
// paper and its official code disagree, and presets that reproduce each published setting.
// See docs/losses/fbkd.md and reference/losses.md sections 1.3, 1.4 and 6 (items 1-4).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/ops/non_local.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace fbkd {

/// How the spatial and channel attention masks combine the student's and the teacher's maps.
enum class MaskForm {
  /// Paper (section 3.1): M_s = HW * softmax((G_s(S) + G_s(T)) / t), M_c = C * softmax((G_c(S) + G_c(T)) / t_c).
  paper,
  /// Official code and mmrazor: M_s = HW * (softmax(G_s(T) / t) + softmax(G_s(S) / t)) / 2, likewise M_c
  /// with C (the official code hard-codes 256 = C of its FPN; kdloss uses the actual C).
  code,
};

/// Which attention-transfer loss L_AT is computed.
enum class TransferForm {
  /// Paper eq. (1): ||G_s(S) - G_s(T)||_F + ||G_c(S) - G_c(T)||_F on the abs-mean maps themselves;
  /// the gradient reaches S through the abs-means.
  paper,
  /// Official code and mmrazor: ||mean_hw(T) - C_hat||_F + ||mean_c(T) - S_hat||_F, where C_hat =
  /// Linear(mean_hw(S)) and S_hat = Conv3x3(mean_c(S)) are the caller's adapted pooled features (plain
  /// means, not abs); the gradients go to C_hat and S_hat.
  code,
};

/// Which code's non-local blocks (NL_S, NL_T) the L_NLD term of the total runs, level by level.
enum class NonLocalPreset {
  /// The official FBKD NonLocalBlockND (ops::non_local_fbkd_options(level)): dot product, sub-sample
  /// factors 8, 4, 2, 2, 2 and inter channels 64, 64, 128, 128, 128 (C / 2 from level 2 on), W = conv with
  /// bias + BN (initialised to 0 by the caller).
  official,
  /// mmrazor's FBKD connectors as its FBKD config builds them (NonLocal2dMaxpoolNstride, dot product,
  /// sub_sample=True, reduction 4, 4, 2, 2 and maxpool_stride 8, 4, 2, 2): mmcv's MaxPool(2) then
  /// MaxPool(stride), total factors 16, 8, 4, 4 (levels past 3 reuse level 3's); conv_out without bias.
  mmrazor,
};

inline const char* to_string(MaskForm f) { return f == MaskForm::paper ? "paper" : "code"; }
inline const char* to_string(TransferForm f) { return f == TransferForm::paper ? "paper" : "code"; }
inline const char* to_string(NonLocalPreset p) { return p == NonLocalPreset::official ? "official" : "mmrazor"; }

/// Mask settings: form and the two softmax temperatures (t for positions, t_c for channels).
///
///   kdloss::fbkd::MaskOptions paper{kdloss::fbkd::MaskForm::paper, 0.1, 0.1};
///   std::vector<float> s(2 * 8 * 6 * 5, 0.5f), t(s.size(), 0.25f), ms(2 * 6 * 5), mc(2 * 8);
///   kdloss::fbkd::attention_masks(kdloss::host_view<const float>(s.data(), {2, 8, 6, 5}),
///                                 kdloss::host_view<const float>(t.data(), {2, 8, 6, 5}),
///                                 kdloss::host_view(ms.data(), {2, 6, 5}), kdloss::host_view(mc.data(), {2, 8}), paper);
struct MaskOptions {
  MaskForm form = MaskForm::code;
  double spatial_temperature = 0.5;
  double channel_temperature = 0.5;
};

/// Everything the weighted FBKD total needs: value = sum over levels of w_am * L_AM + w_at * L_AT +
/// w_nld * L_NLD. The default is code_two_stage(), the setting of the official two-stage code and mmrazor.
/// L_NLD's blocks take their per-level settings from `non_local_preset` (non_local_block(level)); the
/// caller's weights carry the inter channels (non_local_inter_channels(level, C) says the preset's).
///
///   auto cfg = kdloss::fbkd::Config::code_two_stage();
///   cfg.use_channel_mask = true;        // any field can be changed after picking a preset
struct Config {
  MaskForm mask_form = MaskForm::code;
  TransferForm transfer_form = TransferForm::code;
  double spatial_temperature = 0.5;  // t of the spatial mask softmax
  double channel_temperature = 0.5;  // t_c of the channel mask softmax
  double w_am = 7e-5;                // weight of the masked feature loss L_AM
  double w_at = 4e-3;                // weight of the attention-transfer loss L_AT (both of its terms)
  bool use_channel_mask = false;     // multiply L_AM by the channel mask M_c as well
  double w_nld = 7e-5;               // weight of the non-local distillation L_NLD (0: the term is left out)
  NonLocalPreset non_local_preset = NonLocalPreset::official;  // the blocks' per-level settings
  bool non_local_training = true;    // the blocks' BN in training mode (batch statistics), as the reference code
  GradAccumulate non_local_param_grads{};  // the blocks' and adaptation convs' parameter gradients

  MaskOptions mask() const { return {mask_form, spatial_temperature, channel_temperature}; }

  /// The options of NL_S and NL_T at pyramid level `level` (0 = the finest distilled level).
  ///
  ///   auto p2 = kdloss::fbkd::Config::code_two_stage().non_local_block(0);   // dot product, pooled by 8
  ops::NonLocalOptions non_local_block(std::size_t level) const {
    ops::NonLocalOptions o;
    if (non_local_preset == NonLocalPreset::official) {
      o = ops::non_local_fbkd_options(static_cast<int>(level));
    } else {
      static constexpr std::int64_t kStride[4] = {8, 4, 2, 2};
      o = ops::non_local_mmcv_options(ops::NonLocalMode::dot_product, true, kStride[level < 3 ? level : 3]);
    }
    o.training = non_local_training;
    o.param_grads = non_local_param_grads;
    return o;
  }
  /// Inter channels m of the preset's blocks at `level` for C = `channels` (official: 64, 64, 128, 128,
  /// 128, whatever C; mmrazor: max(C / reduction, 1) with reduction 4, 4, 2, 2).
  ///
  ///   std::int64_t m = kdloss::fbkd::Config::code_two_stage().non_local_inter_channels(0, 256);   // 64
  std::int64_t non_local_inter_channels(std::size_t level, std::int64_t channels) const {
    if (non_local_preset == NonLocalPreset::official) return ops::non_local_fbkd_inter_channels(static_cast<int>(level));
    const std::int64_t reduction = level < 2 ? 4 : 2;
    return channels / reduction > 1 ? channels / reduction : 1;
  }

  /// Official two-stage code (Faster R-CNN etc.; two_stage.py) and mmrazor's FBKD port: code masks
  /// and code L_AT, t = t_c = 0.5, w_am = 7e-5 (mask_l2 / masked feature), w_at = 4e-3 (channel and
  /// spatial terms), no channel mask in L_AM (dist2(..., channel_attention_mask=None); mmrazor:
  /// "Channel-wise mask, but not used in the FBKD source code"). Reproduces the published
  /// two-stage numbers, which came from that code.
  /// w_nld = 7e-5 with the official blocks (mmrazor_two_stage() names mmrazor's blocks).
  static Config code_two_stage() { return Config{}; }

  /// mmrazor's FBKD (configs/distill/mmdet/fbkd): code_two_stage() with mmrazor's non-local blocks
  /// (NonLocalPreset::mmrazor: pools 16, 8, 4, 4, m = C/4, C/4, C/2, C/2, conv_out without bias).
  static Config mmrazor_two_stage() {
    Config c;
    c.non_local_preset = NonLocalPreset::mmrazor;
    return c;
  }

  /// Official one-stage code (RetinaNet; single_stage.py): code masks and code L_AT, t = t_c = 0.1,
  /// weights 6x the two-stage ones (w_am = w_nld = 7e-5 * 6 = 4.2e-4, w_at = 4e-3 * 6 = 2.4e-2), channel
  /// mask used in L_AM. Reproduces the published one-stage numbers.
  static Config code_one_stage() {
    Config c;
    c.spatial_temperature = c.channel_temperature = 0.1;
    c.w_am = 4.2e-4;
    c.w_nld = 4.2e-4;
    c.w_at = 2.4e-2;
    c.use_channel_mask = true;
    return c;
  }

  /// The paper as written (seed 001, sections 3.1, 3.3, 4.1), two-stage: one softmax of the summed
  /// maps, L_AT on the maps themselves, T = 0.1, and L = alpha * L_AT + beta * L_AM + gamma * L_NLD with
  /// alpha = gamma = 7e-5 and beta = 4e-3 assigned literally (w_at = w_nld = 7e-5, w_am = 4e-3; the code
  /// pairs the numbers the other way round), channel mask in L_AM as eq. (2), the official blocks. Not
  /// what produced the published numbers.
  static Config paper_two_stage() {
    Config c;
    c.mask_form = MaskForm::paper;
    c.transfer_form = TransferForm::paper;
    c.spatial_temperature = c.channel_temperature = 0.1;
    c.w_at = 7e-5;
    c.w_am = 4e-3;
    c.use_channel_mask = true;
    return c;
  }

  /// The paper as written, one-stage: T = 0.5, alpha = gamma = 4e-4 (w_at, w_nld), beta = 2e-2 (w_am),
  /// channel mask on.
  static Config paper_one_stage() {
    Config c = paper_two_stage();
    c.spatial_temperature = c.channel_temperature = 0.5;
    c.w_at = 4e-4;
    c.w_nld = 4e-4;
    c.w_am = 2e-2;
    return c;
  }
};

namespace detail {

inline void check_temperature(const char* fn, const char* prefix, const char* arg, double t) {
  ::kdloss::detail::require(t > 0 && std::isfinite(t), fn, ": argument '", prefix, arg,
                            "' must be > 0 and finite but is ", t);
}
inline void check_mask_options(const char* fn, const MaskOptions& m, const char* prefix = "options.") {
  check_temperature(fn, prefix, "spatial_temperature", m.spatial_temperature);
  check_temperature(fn, prefix, "channel_temperature", m.channel_temperature);
}
inline void check_config(const char* fn, const Config& c) {
  check_mask_options(fn, c.mask(), "config.");
  ::kdloss::detail::require(std::isfinite(c.w_am), fn, ": argument 'config.w_am' must be finite but is ", c.w_am);
  ::kdloss::detail::require(std::isfinite(c.w_at), fn, ": argument 'config.w_at' must be finite but is ", c.w_at);
  ::kdloss::detail::require(std::isfinite(c.w_nld), fn, ": argument 'config.w_nld' must be finite but is ", c.w_nld);
}

}  // namespace detail
} } }  // namespace kdloss::fbkd
