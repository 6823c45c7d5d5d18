// Host benchmarks of the Frobenius distance, the temperature KL divergence and the FBKD
// attention-guided losses (float): forward, backward and fused at the FPN levels of an 800x1333
// input and at small shapes, next to the baselines that move the same bytes.
//
//   ./kdloss_bench_distill_cpu --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <map>
#include <utility>
#include <vector>

#include "bench_distill_cases.hpp"

namespace {

using Level = kdloss_bench::HostLevel<float>;

/// Host side of the cases: no workspace (host calls allocate their own), and per-level buffers
/// kept by level address and rebuilt when a new shape case reuses the address.
struct HostContext {
  kdloss::Exec exec(Level&, std::size_t) const { return {}; }
  std::pair<kdloss::View<const float>, kdloss::View<const float>> masks(Level& l) const {
    struct Masks {
      kdloss::Dims shape;
      std::vector<float> spatial, channel;
    };
    static std::map<const Level*, Masks> cache;
    auto& m = cache[&l];
    const kdloss::Dims spatial{l.shape[0], l.shape[2], l.shape[3]}, channel{l.shape[0], l.shape[1]};
    if (m.shape != l.shape) {
      m.shape = l.shape;
      m.spatial.assign(static_cast<std::size_t>(spatial.product()), 0.0f);
      m.channel.assign(static_cast<std::size_t>(channel.product()), 0.0f);
      kdloss::fbkd::attention_masks(l.s(), l.t(), kdloss::host_view(m.spatial.data(), spatial),
                                    kdloss::host_view(m.channel.data(), channel));
    }
    return {kdloss::host_view<const float>(m.spatial.data(), spatial),
            kdloss::host_view<const float>(m.channel.data(), channel)};
  }
};

}  // namespace

int main(int argc, char** argv) {
  for (const auto& c : kdloss_bench::feature_cases()) kdloss_bench::register_host_baselines<float>(c);
  kdloss_bench::register_distill_benchmarks<Level>(
      [](const std::string& name, const kdloss_bench::ShapeCase& c, kdloss_bench::Traffic t, auto body) {
        kdloss_bench::register_host<float>(name, c, t, body);
      },
      HostContext{});
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("kdloss_host_threads", std::to_string(kdloss_bench::host_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
