// kdloss_torch family "ops": the building blocks with their own backward (kdloss/ops/softmax.hpp,
// kdloss/ops/pooling.hpp, FBKD's abs-mean attention maps, which are the same pooling, and
// kdloss/ops/roi_align.hpp), through the generic binding (binding.hpp); kdloss_torch/ops.py wraps them
// with the generic autograd Function.
#include "binding.hpp"
#include "common.hpp"
#include "kdloss/losses/fbkd/masks.hpp"
#include "kdloss/ops/pooling.hpp"
#include "kdloss/ops/roi_align.hpp"
#include "kdloss/ops/softmax.hpp"

template <>
struct kdloss_torch::EnumNames<kdloss::ops::RoiPoolMode> {
  static constexpr std::pair<const char*, kdloss::ops::RoiPoolMode> values[] = {{"avg", kdloss::ops::RoiPoolMode::avg},
                                                                                {"max", kdloss::ops::RoiPoolMode::max}};
  static constexpr const char* expected = nullptr;
};

namespace kdloss_torch {
namespace {

/// roi_align(input [B,C,H,W], boxes [K,5]) -> out [K, C, output_height, output_width]; another rank is
/// the entry's to report (the output is then allocated as [1]).
constexpr auto roi_align_fields = [](auto& a, auto& f) {
  f.in("input", a.x);
  f.in("boxes", a.boxes);
  f.upstream(a.grad_y);
  const bool ranks = a.x.rank() == 4 && a.boxes.rank() == 2;
  const auto& o = a.options;
  f.out("out", a.y,
        ranks && o.output_height >= 1 && o.output_width >= 1
            ? Dims{a.boxes.shape[0], a.x.shape[1], o.output_height, o.output_width}
            : Dims{1});
  f.grad("grad_input", a.grad_x, "input");
};

/// y = f(x) along `axis`; backward reads the forward's y (kept), not x.
constexpr auto along_axis = [](auto& a, auto& f) {
  f.in("x", a.x);
  f.param("axis", a.axis);
  f.kept("y", a.y, "out");
  f.upstream(a.grad_out);
  f.out_like("out", a.out, "x");
  f.grad("grad_x", a.grad_x, "x");
};

/// [B,C,H,W] -> [B,1,H,W] (`channels`: a mean over C) or [B,C] (over H, W); another rank is the
/// entry's to report.
auto pooled(bool channels) {
  return [channels](auto& a, auto& f) {
    f.in("x", a.x);
    f.upstream(a.grad_out);
    const Dims& x = a.x.shape;
    f.out("out", a.out, x.rank != 4 ? Dims{1} : channels ? Dims{x[0], 1, x[2], x[3]} : Dims{x[0], x[1]});
    f.grad("grad_x", a.grad_x, "x");
  };
}

}  // namespace
}  // namespace kdloss_torch

KDLOSS_TORCH_FAMILY(ops, m) {
  namespace kt = kdloss_torch;
  namespace ops = kdloss::ops;
  kt::Options<ops::SoftmaxOptions>(m, "SoftmaxOptions", "kdloss::ops::SoftmaxOptions")
      .field("temperature", &ops::SoftmaxOptions::temperature)
      .field("scale", &ops::SoftmaxOptions::scale);
  kt::bind<ops::SoftmaxArgs>(m, "ops_softmax", "kdloss_torch.ops.softmax", kt::along_axis,
                             KDLOSS_TORCH_ENTRY(ops::softmax));
  kt::Options<ops::LogSoftmaxOptions>(m, "LogSoftmaxOptions", "kdloss::ops::LogSoftmaxOptions")
      .field("temperature", &ops::LogSoftmaxOptions::temperature);
  kt::bind<ops::LogSoftmaxArgs>(m, "ops_log_softmax", "kdloss_torch.ops.log_softmax", kt::along_axis,
                                KDLOSS_TORCH_ENTRY(ops::log_softmax));
  kt::Options<ops::MeanOptions>(m, "MeanOptions", "kdloss::ops::MeanOptions")
      .field("absolute", &ops::MeanOptions::absolute);
  kt::bind<ops::MeanOverChannelsArgs>(m, "ops_mean_over_channels", "kdloss_torch.ops.mean_over_channels",
                                      kt::pooled(true), KDLOSS_TORCH_ENTRY(ops::mean_over_channels));
  kt::bind<ops::MeanOverPositionsArgs>(m, "ops_mean_over_positions", "kdloss_torch.ops.mean_over_positions",
                                       kt::pooled(false), KDLOSS_TORCH_ENTRY(ops::mean_over_positions));
  kt::bind<kdloss::fbkd::SpatialAttentionArgs>(m, "fbkd_spatial_attention", "kdloss_torch.fbkd.spatial_attention",
                                               kt::pooled(true), KDLOSS_TORCH_ENTRY(kdloss::fbkd::spatial_attention));
  kt::bind<kdloss::fbkd::ChannelAttentionArgs>(m, "fbkd_channel_attention", "kdloss_torch.fbkd.channel_attention",
                                               kt::pooled(false), KDLOSS_TORCH_ENTRY(kdloss::fbkd::channel_attention));
  kt::Options<ops::RoiAlignOptions>(m, "RoiAlignOptions", "kdloss::ops::RoiAlignOptions")
      .field("output_height", &ops::RoiAlignOptions::output_height)
      .field("output_width", &ops::RoiAlignOptions::output_width)
      .field("spatial_scale", &ops::RoiAlignOptions::spatial_scale)
      .field("sampling_ratio", &ops::RoiAlignOptions::sampling_ratio)
      .field("aligned", &ops::RoiAlignOptions::aligned)
      .field("pool_mode", &ops::RoiAlignOptions::pool_mode);
  kt::bind<ops::RoiAlignArgs>(m, "ops_roi_align", "kdloss_torch.ops.roi_align", kt::roi_align_fields,
                              KDLOSS_TORCH_ENTRY(ops::roi_align));
}
