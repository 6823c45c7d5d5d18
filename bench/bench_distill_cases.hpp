// Benchmark cases of the distance, KL and FBKD attention-guided losses, written once for the host
// and the CUDA binaries. `Reg` registers one benchmark (register_host or register_cuda); `Ctx`
// gives each call its Exec and the mask buffers FBKD's L_AM case needs, on the level's device.
//
//   kdloss_bench::register_distill_benchmarks<HostLevel<float>>(host_registrar, HostContext{});
#pragma once
#include <string>

#include "bench_common.hpp"
#include "kdloss/losses/fbkd/fbkd.hpp"
#include "kdloss/losses/feature/distance.hpp"
#include "kdloss/losses/feature/kl_div.hpp"

namespace kdloss_bench {

template <class Level, class Reg, class Ctx>
void register_distill_benchmarks(Reg reg, Ctx ctx) {
  using kdloss::Reduction;
  constexpr Traffic forward{2, 0}, with_gradient{2, 1};
  // FBKD paper two-stage total (channel mask on, S is also A): one pass over S and T for the maps,
  // one for L_AM, one more for the gradient wrt S: 6 reads and 1 write per element fused, 4 reads forward.
  constexpr Traffic fbkd_fused{6, 1}, fbkd_forward{4, 0};
  for (const auto& c : feature_cases()) {
    reg("distance/forward", c, forward, [ctx](Level& l, auto... stream) {
      kdloss::distance_loss(l.s(), l.t(), l.out(), {}, ctx.exec(l, kdloss::distance_loss_workspace_bytes(l.s()), stream...));
    });
    reg("distance/backward", c, with_gradient, [ctx](Level& l, auto... stream) {
      kdloss::distance_loss_backward(l.s(), l.t(), l.up(), l.g(), {},
                                     ctx.exec(l, kdloss::distance_loss_workspace_bytes(l.s()), stream...));
    });
    reg("distance/forward_backward", c, with_gradient, [ctx](Level& l, auto... stream) {
      kdloss::distance_loss_forward_backward(l.s(), l.t(), l.out(), l.g(), {},
                                             ctx.exec(l, kdloss::distance_loss_workspace_bytes(l.s()), stream...));
    });
    // KL over the channel axis of NCHW features (a per-pixel class distribution), T = 4.
    reg("kl_div/forward", c, forward, [ctx](Level& l, auto... stream) {
      kdloss::kl_div_loss(l.s(), l.t(), l.out(), {4.0, 1, Reduction::batchmean},
                          ctx.exec(l, kdloss::kl_div_loss_workspace_bytes(l.s(), {4.0, 1}), stream...));
    });
    reg("kl_div/backward", c, with_gradient, [ctx](Level& l, auto... stream) {
      kdloss::kl_div_loss_backward(l.s(), l.t(), l.up(), l.g(), {4.0, 1, Reduction::batchmean},
                                   ctx.exec(l, kdloss::kl_div_loss_workspace_bytes(l.s(), {4.0, 1}), stream...));
    });
    reg("kl_div/forward_backward", c, with_gradient, [ctx](Level& l, auto... stream) {
      kdloss::kl_div_loss_forward_backward(l.s(), l.t(), l.out(), l.g(), {4.0, 1, Reduction::batchmean},
                                           ctx.exec(l, kdloss::kl_div_loss_workspace_bytes(l.s(), {4.0, 1}), stream...));
    });
    // FBKD attention-guided total (paper two-stage preset: masks, L_AM with both masks, paper L_AT).
    reg("fbkd_total_paper/forward", c, fbkd_forward, [ctx](Level& l, auto... stream) {
      const std::vector<kdloss::fbkd::Level<float>> levels{{l.s(), l.t()}};
      const auto cfg = kdloss::fbkd::Config::paper_two_stage();
      kdloss::fbkd::total_loss(levels, l.out(), cfg,
                               ctx.exec(l, kdloss::fbkd::total_loss_workspace_bytes(levels, cfg), stream...));
    });
    reg("fbkd_total_paper/forward_backward", c, fbkd_fused, [ctx](Level& l, auto... stream) {
      std::vector<kdloss::fbkd::Level<float>> levels{{l.s(), l.t()}};
      levels[0].grad_student = l.g();  // no adapter: the whole gradient wrt S, L_AM and L_AT
      const auto cfg = kdloss::fbkd::Config::paper_two_stage();
      kdloss::fbkd::total_loss_forward_backward(
          levels, l.out(), cfg, ctx.exec(l, kdloss::fbkd::total_loss_workspace_bytes(levels, cfg), stream...));
    });
    // L_AM alone (the masked feature loss: the bulk of FBKD's memory traffic), masks precomputed.
    reg("fbkd_masked_feature/forward_backward", c, with_gradient, [ctx](Level& l, auto... stream) {
      auto masks = ctx.masks(l, stream...);
      kdloss::fbkd::masked_feature_loss_forward_backward(
          l.s(), l.t(), masks.first, masks.second, l.out(), l.g(),
          ctx.exec(l, kdloss::fbkd::masked_feature_loss_workspace_bytes(l.s()), stream...));
    });
  }
}

}  // namespace kdloss_bench
