// GPU benchmarks of the pointwise feature losses (MSE, L1, smooth-L1; mean reduction, float):
// forward, backward and fused forward_backward on device buffers, timed with CUDA events, next to
// a device read, a device-to-device copy and a two-read-one-write kernel over the same bytes.
//
//   ./kdloss_bench_cuda --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdio>

#include "bench_common.hpp"
#include "bench_common_cuda.cuh"
#include "kdloss/losses/feature/pointwise.hpp"

namespace {

using kdloss_bench::DeviceLevel;
using Level = DeviceLevel<float>;

constexpr kdloss_bench::Traffic kForward{2, 0};
constexpr kdloss_bench::Traffic kWithGradient{2, 1};
constexpr double kBeta = 1.0;

/// The Exec of a pointwise loss call on `stream`, with the workspace its query asks for.
kdloss::Exec exec_for(Level& l, cudaStream_t stream) {
  return l.exec(stream, kdloss::mse_loss_workspace_bytes(l.s()));
}

void register_feature_benchmarks() {
  using kdloss::Reduction;
  for (const auto& c : kdloss_bench::feature_cases()) {
    kdloss_bench::register_cuda_baselines<float>(c);

    kdloss_bench::register_cuda<float>("mse/forward", c, kForward, [](Level& l, cudaStream_t st) {
      kdloss::mse_loss(l.s(), l.t(), l.out(), {Reduction::mean}, exec_for(l, st));
    });
    kdloss_bench::register_cuda<float>("mse/backward", c, kWithGradient, [](Level& l, cudaStream_t st) {
      kdloss::mse_loss_backward(l.s(), l.t(), l.up(), l.g(), {Reduction::mean}, exec_for(l, st));
    });
    kdloss_bench::register_cuda<float>("mse/forward_backward", c, kWithGradient, [](Level& l, cudaStream_t st) {
      kdloss::mse_loss_forward_backward(l.s(), l.t(), l.out(), l.g(), {Reduction::mean}, exec_for(l, st));
    });

    kdloss_bench::register_cuda<float>("l1/forward", c, kForward, [](Level& l, cudaStream_t st) {
      kdloss::l1_loss(l.s(), l.t(), l.out(), {Reduction::mean}, exec_for(l, st));
    });
    kdloss_bench::register_cuda<float>("l1/backward", c, kWithGradient, [](Level& l, cudaStream_t st) {
      kdloss::l1_loss_backward(l.s(), l.t(), l.up(), l.g(), {Reduction::mean}, exec_for(l, st));
    });
    kdloss_bench::register_cuda<float>("l1/forward_backward", c, kWithGradient, [](Level& l, cudaStream_t st) {
      kdloss::l1_loss_forward_backward(l.s(), l.t(), l.out(), l.g(), {Reduction::mean}, exec_for(l, st));
    });

    kdloss_bench::register_cuda<float>("smooth_l1/forward", c, kForward, [](Level& l, cudaStream_t st) {
      kdloss::smooth_l1_loss(l.s(), l.t(), l.out(), {kBeta, Reduction::mean}, exec_for(l, st));
    });
    kdloss_bench::register_cuda<float>("smooth_l1/backward", c, kWithGradient, [](Level& l, cudaStream_t st) {
      kdloss::smooth_l1_loss_backward(l.s(), l.t(), l.up(), l.g(), {kBeta, Reduction::mean}, exec_for(l, st));
    });
    kdloss_bench::register_cuda<float>("smooth_l1/forward_backward", c, kWithGradient,
                                       [](Level& l, cudaStream_t st) {
                                         kdloss::smooth_l1_loss_forward_backward(l.s(), l.t(), l.out(), l.g(), {kBeta, Reduction::mean}, exec_for(l, st));
                                       });
  }
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "kdloss_bench_cuda: no CUDA device present; nothing to measure\n");
    return 1;
  }
  register_feature_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("kdloss_device", kdloss_bench::device_name());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
