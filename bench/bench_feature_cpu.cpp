// Host benchmarks of the pointwise feature losses (MSE, L1, smooth-L1; mean reduction, float):
// forward, backward and the fused forward_backward at the FPN levels of an 800x1333 input and at
// small shapes, next to baselines that move the same bytes with no loss arithmetic.
//
//   ./kdloss_bench_cpu --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "kdloss/losses/feature/pointwise.hpp"

namespace {

using kdloss_bench::HostLevel;
using Level = HostLevel<float>;

// Forward reads student and teacher; backward and fused also write the gradient.
constexpr kdloss_bench::Traffic kForward{2, 0};
constexpr kdloss_bench::Traffic kWithGradient{2, 1};
constexpr double kBeta = 1.0;  // smooth-L1: inputs in [-1, 1] put differences on both branches

void register_feature_benchmarks() {
  for (const auto& c : kdloss_bench::feature_cases()) {
    kdloss_bench::register_host_baselines<float>(c);

    kdloss_bench::register_host<float>("mse/forward", c, kForward,
                                       [](Level& l) { kdloss::mse_loss(l.s(), l.t(), l.out()); });
    kdloss_bench::register_host<float>("mse/backward", c, kWithGradient,
                                       [](Level& l) { kdloss::mse_loss_backward(l.s(), l.t(), l.up(), l.g()); });
    kdloss_bench::register_host<float>("mse/forward_backward", c, kWithGradient, [](Level& l) {
      kdloss::mse_loss_forward_backward(l.s(), l.t(), l.out(), l.g());
    });

    kdloss_bench::register_host<float>("l1/forward", c, kForward,
                                       [](Level& l) { kdloss::l1_loss(l.s(), l.t(), l.out()); });
    kdloss_bench::register_host<float>("l1/backward", c, kWithGradient,
                                       [](Level& l) { kdloss::l1_loss_backward(l.s(), l.t(), l.up(), l.g()); });
    kdloss_bench::register_host<float>("l1/forward_backward", c, kWithGradient, [](Level& l) {
      kdloss::l1_loss_forward_backward(l.s(), l.t(), l.out(), l.g());
    });

    kdloss_bench::register_host<float>("smooth_l1/forward", c, kForward,
                                       [](Level& l) { kdloss::smooth_l1_loss(l.s(), l.t(), l.out(), {kBeta}); });
    kdloss_bench::register_host<float>("smooth_l1/backward", c, kWithGradient, [](Level& l) {
      kdloss::smooth_l1_loss_backward(l.s(), l.t(), l.up(), l.g(), {kBeta});
    });
    kdloss_bench::register_host<float>("smooth_l1/forward_backward", c, kWithGradient, [](Level& l) {
      kdloss::smooth_l1_loss_forward_backward(l.s(), l.t(), l.out(), l.g(), {kBeta});
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_feature_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("kdloss_host_threads", std::to_string(kdloss_bench::host_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
