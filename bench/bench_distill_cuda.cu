// CUDA benchmarks of the Frobenius distance, the temperature KL divergence and the FBKD
// attention-guided losses (float), timed with CUDA events; same cases as bench_distill_cpu.cpp.
//
//   ./kdloss_bench_distill_cuda --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <map>
#include <utility>

#include "bench_common_cuda.cuh"
#include "bench_distill_cases.hpp"

namespace {

using Level = kdloss_bench::DeviceLevel<float>;

/// Device side of the cases: the level's growing workspace, and per-level device buffers kept by
/// level address (rebuilt when a new shape case reuses the address).
struct DeviceContext {
  kdloss::Exec exec(Level& l, std::size_t bytes, cudaStream_t stream) const { return l.exec(stream, bytes); }
  std::pair<kdloss::View<const float>, kdloss::View<const float>> masks(Level& l, cudaStream_t stream) const {
    struct Masks {
      kdloss::Dims shape;
      kdloss_bench::DeviceArray<float> spatial{1}, channel{1};
    };
    static std::map<const Level*, Masks> cache;
    auto& m = cache[&l];
    const kdloss::Dims spatial{l.shape[0], l.shape[2], l.shape[3]}, channel{l.shape[0], l.shape[1]};
    if (m.shape != l.shape) {
      m.shape = l.shape;
      m.spatial = kdloss_bench::DeviceArray<float>(static_cast<std::size_t>(spatial.product()));
      m.channel = kdloss_bench::DeviceArray<float>(static_cast<std::size_t>(channel.product()));
      kdloss::fbkd::attention_masks(l.s(), l.t(), kdloss::cuda_view(m.spatial.get(), spatial),
                                    kdloss::cuda_view(m.channel.get(), channel), kdloss::fbkd::MaskOptions{},
                                    l.exec(stream, kdloss::fbkd::attention_masks_workspace_bytes(l.s())));
    }
    return {kdloss::cuda_view<const float>(m.spatial.get(), spatial),
            kdloss::cuda_view<const float>(m.channel.get(), channel)};
  }
};

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("kdloss_bench_distill_cuda: no GPU present, nothing to measure\n");
    return 0;
  }
  for (const auto& c : kdloss_bench::feature_cases()) kdloss_bench::register_cuda_baselines<float>(c);
  kdloss_bench::register_distill_benchmarks<Level>(
      [](const std::string& name, const kdloss_bench::ShapeCase& c, kdloss_bench::Traffic t, auto body) {
        kdloss_bench::register_cuda<float>(name, c, t, body);
      },
      DeviceContext{});
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
