// Host benchmarks of ops::batch_norm in training mode (float, NCHW) at the FBKD/GloRe shapes: batch 2,
// C = 256 on the P2-P4 grids [200, 336], [100, 168], [50, 84]. "train_fwd_bwd" is one training step of
// the layer: forward (y, batch_mean, batch_var, the reserve) then backward reading the reserve
// (grad_x, grad_weight, grad_bias); "train_fwd" and "train_bwd" time the two calls apart.
// bench/compare_batch_norm_torch.py runs train_fwd_bwd next to torch.nn.functional.batch_norm.
//
//   OMP_NUM_THREADS=2 ./kdloss_bench_batch_norm_cpu --benchmark_filter=train_fwd_bwd --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/ops/batch_norm.hpp"

namespace {

/// Caller-owned aligned memory (workspace or reserve), allocated once outside the timed loop.
struct Aligned {
  std::vector<unsigned char> raw;
  void* data;
  std::size_t bytes;
  explicit Aligned(std::size_t n) : raw(n + 256), bytes(n) {
    data = reinterpret_cast<void*>(kdloss::detail::align_up(reinterpret_cast<std::uintptr_t>(raw.data())));
  }
};

std::vector<float> filled(std::int64_t n, std::uint64_t seed, float offset = 0.f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = kdloss_bench::fill_value(i, seed) + offset;
  return v;
}

enum class Step { fwd_bwd, fwd, bwd };

void register_case(const std::string& what, Step step, std::int64_t h, std::int64_t w) {
  const std::int64_t B = 2, C = 256, n = B * C * h * w;
  const std::string name = "batch_norm/" + what + "/2x256x" + std::to_string(h) + "x" + std::to_string(w);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    const auto x = filled(n, 1, 0.5f), gy = filled(n, 2), gamma = filled(C, 3, 1.f), beta = filled(C, 4);
    std::vector<float> y(x.size()), gx(x.size()), mean(C), var(C), gw(C), gb(C);
    const kdloss::Dims shape{B, C, h, w};
    kdloss::ops::BatchNormArgs<float> a;
    a.x = kdloss::host_view(x.data(), shape);
    a.weight = kdloss::host_view(gamma.data(), {C});
    a.bias = kdloss::host_view(beta.data(), {C});
    a.y = kdloss::host_view(y.data(), shape);
    a.batch_mean = kdloss::host_view(mean.data(), {C});
    a.batch_var = kdloss::host_view(var.data(), {C});
    Aligned reserve(kdloss::ops::batch_norm_reserve_bytes(a)), ws(kdloss::ops::batch_norm_workspace_bytes(a));
    a.reserve = kdloss::Reserve{reserve.data, reserve.bytes};
    auto b = a;
    b.y = b.batch_mean = b.batch_var = {};
    b.grad_y = kdloss::host_view(gy.data(), shape);
    b.grad_x = kdloss::host_view(gx.data(), shape);
    b.grad_weight = kdloss::host_view(gw.data(), {C});
    b.grad_bias = kdloss::host_view(gb.data(), {C});
    const kdloss::Exec exec{kdloss::Workspace{ws.data, ws.bytes}};
    kdloss::ops::batch_norm(a, kdloss::Mode::forward, exec);  // warm caches and the thread pool
    kdloss::ops::batch_norm(b, kdloss::Mode::backward, exec);
    for (auto _ : state) {
      if (step != Step::bwd) kdloss::ops::batch_norm(a, kdloss::Mode::forward, exec);
      if (step != Step::fwd) kdloss::ops::batch_norm(b, kdloss::Mode::backward, exec);
    }
    // forward reads x twice (statistics, normalisation) and writes y; backward reads x and grad_y
    // twice (sums, grad_x) and writes grad_x.
    const int passes = step == Step::fwd ? 3 : step == Step::bwd ? 5 : 8;
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * passes * n *
                            static_cast<std::int64_t>(sizeof(float)));
    state.SetLabel("threads=" + std::to_string(kdloss_bench::host_threads()));
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  const std::pair<std::int64_t, std::int64_t> grids[] = {{200, 336}, {100, 168}, {50, 84}};
  for (const auto& [what, step] : {std::pair{"train_fwd_bwd", Step::fwd_bwd}, std::pair{"train_fwd", Step::fwd},
                                   std::pair{"train_bwd", Step::bwd}})
    for (const auto& [h, w] : grids) register_case(what, step, h, w);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
