// GPU benchmarks of the SSIM family (float, and bfloat16 for the fused loss): kornia's ssim_loss
// (11x11, reflect 'same', mean) forward, backward (statistics recomputed) and fused
// forward_backward, ms_ssim_l1_loss (window 5) and ops::gaussian_filter, at the FPN levels of an
// 800x1333 input (batch 2, C = 256) and small shapes, timed with CUDA events, next to a device
// read, copy and two-read-one-write kernel over the same bytes (the bandwidth reference).
//
//   ./kdloss_bench_ssim_cuda --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdio>

#include "bench_common.hpp"
#include "bench_common_cuda.cuh"
#include "kdloss/losses/ssim/ssim.hpp"
#include "kdloss/ops/filter.hpp"

namespace {

template <class T>
using Level = kdloss_bench::DeviceLevel<T>;

constexpr kdloss_bench::Traffic kForward{2, 0};
constexpr kdloss_bench::Traffic kWithGradient{2, 1};

kdloss::MsSsimL1Options mixture_options() {
  kdloss::MsSsimL1Options o;
  o.ms_ssim.window_size = 5;
  return o;
}

template <class T>
void register_loss(const kdloss_bench::ShapeCase& c, const std::string& prefix) {
  using kdloss::Reduction;
  const kdloss::SsimOptions kornia;
  kdloss_bench::register_cuda<T>(prefix + "ssim_loss/forward", c, kForward, [kornia](Level<T>& l, cudaStream_t st) {
    kdloss::ssim_loss(l.s(), l.t(), l.out(), kornia, Reduction::mean,
                      l.exec(st, kdloss::ssim_loss_workspace_bytes(l.s(), kornia)));
  });
  kdloss_bench::register_cuda<T>(prefix + "ssim_loss/backward", c, kWithGradient, [kornia](Level<T>& l, cudaStream_t st) {
    kdloss::ssim_loss_backward(l.s(), l.t(), l.up(), l.g(), kornia, Reduction::mean,
                               l.exec(st, kdloss::ssim_loss_workspace_bytes(l.s(), kornia)));
  });
  kdloss_bench::register_cuda<T>(prefix + "ssim_loss/forward_backward", c, kWithGradient,
                                 [kornia](Level<T>& l, cudaStream_t st) {
                                   kdloss::ssim_loss_forward_backward(
                                       l.s(), l.t(), l.out(), l.g(), kornia, Reduction::mean,
                                       l.exec(st, kdloss::ssim_loss_workspace_bytes(l.s(), kornia)));
                                 });
}

void register_ssim_benchmarks() {
  for (const auto& c : kdloss_bench::feature_cases()) {
    kdloss_bench::register_cuda_baselines<float>(c);
    register_loss<float>(c, "");
    kdloss_bench::register_cuda<float>("ms_ssim_l1/forward_backward", c, kWithGradient,
                                       [](Level<float>& l, cudaStream_t st) {
                                         const auto o = mixture_options();
                                         kdloss::ms_ssim_l1_loss_forward_backward(
                                             l.s(), l.t(), l.out(), l.g(), o,
                                             l.exec(st, kdloss::ms_ssim_l1_loss_workspace_bytes(l.s(), o)));
                                       });
    kdloss_bench::register_cuda<float>("gaussian_filter/forward", c, kdloss_bench::Traffic{1, 1},
                                       [](Level<float>& l, cudaStream_t st) {
                                         kdloss::ops::gaussian_filter(
                                             l.s(), l.g(), {}, l.exec(st, kdloss::ops::gaussian_filter_workspace_bytes(l.s())));
                                       });
  }
  for (const auto& c : kdloss_bench::fpn_levels()) register_loss<__nv_bfloat16>(c, "bf16/");
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "kdloss_bench_ssim_cuda: no CUDA device present; nothing to measure\n");
    return 1;
  }
  register_ssim_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("kdloss_device", kdloss_bench::device_name());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
