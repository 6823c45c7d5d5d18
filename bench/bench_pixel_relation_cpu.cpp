// Host benchmarks of drkd::pixel_relation_loss, the seed pixel relation L_P = MSE(G(T), G(S)) with
// G(F) = softmax(F F^T / sqrt(C)) F, C = 256, NCHW maps, at the FPN levels of an 800x1333 input:
// P5 (25x42), P4 (50x84), P3 (100x167) and P2 (200x334), batch 1 and 2, forward and forward + backward
// (the value and dL/dS in one call: both relations, the MSE, the relation's backward, the sum of its
// three gradients). Counters: FLOP/s of the relation products, the workspace and the process's peak
// resident set (ru_maxrss) when the benchmark ends. bench/compare_pixel_relation_torch.py runs the same
// beside torch's scaled_dot_product_attention.
//
//   OMP_NUM_THREADS=2 ./kdloss_bench_pixel_relation_cpu --benchmark_filter='P4/B1/forward_backward'
//   OMP_NUM_THREADS=2 ./kdloss_bench_pixel_relation_cpu --benchmark_filter='P2/B1' --benchmark_min_time=0.01
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/losses/drkd/drkd.hpp"

namespace {

struct Level {
  const char* name;
  std::int64_t h, w;
};
constexpr Level kLevels[] = {{"P5", 25, 42}, {"P4", 50, 84}, {"P3", 100, 167}, {"P2", 200, 334}};
constexpr std::int64_t kChannels = 256;

/// A 256-byte aligned buffer allocated once outside the timed loop.
struct Buffer {
  std::vector<unsigned char> raw;
  void* data = nullptr;
  std::size_t bytes = 0;
  explicit Buffer(std::size_t n) : raw(n + 256), bytes(n) {
    data = reinterpret_cast<void*>(kdloss::detail::align_up(reinterpret_cast<std::uintptr_t>(raw.data())));
  }
};

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // kB on Linux
}

void register_case(const Level& L, std::int64_t batch, bool backward) {
  const std::string name = std::string("pixel_relation/") + L.name + "/B" + std::to_string(batch) + "/" +
                           (backward ? "forward_backward" : "forward");
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    kdloss_bench::HostLevel<float> lv({batch, kChannels, L.h, L.w});
    kdloss::drkd::PixelRelationLossArgs<float> a;
    a.student = lv.s();
    a.teacher = lv.t();
    a.out = lv.out();
    if (backward) a.grad_student = lv.g();
    const Buffer ws(kdloss::drkd::pixel_relation_loss_workspace_bytes(a));
    const kdloss::Exec exec{kdloss::Workspace{ws.data, ws.bytes}};
    const kdloss::Mode mode = backward ? kdloss::Mode::forward_backward : kdloss::Mode::forward;
    if (L.h * L.w < 20000) kdloss::drkd::pixel_relation_loss(a, mode, exec);  // warm up (P2 runs once)
    for (auto _ : state) kdloss::drkd::pixel_relation_loss(a, mode, exec);
    // Products of N x N x C (2 N^2 C flops each) per image: forward 2 per relation (S and T); the
    // backward of G(S) 5 more (S, dP, P^T dY, dS^T Q, dS K).
    const double n = static_cast<double>(L.h * L.w), products = backward ? 9.0 : 4.0;
    state.counters["FLOP/s"] = benchmark::Counter(products * 2.0 * n * n * kChannels * static_cast<double>(batch) *
                                                      static_cast<double>(state.iterations()),
                                                  benchmark::Counter::kIsRate);
    state.counters["workspace_MB"] = static_cast<double>(ws.bytes) / (1 << 20);
    state.counters["peak_rss_MB"] = peak_rss_mb();
    state.SetLabel(std::string(L.name) + " B=" + std::to_string(batch) + " N=" + std::to_string(L.h * L.w) +
                   " C=256 threads=" + std::to_string(kdloss_bench::host_threads()));
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

const bool registered = [] {
  for (const Level& L : kLevels)
    for (std::int64_t batch : {1, 2})
      for (bool backward : {false, true}) register_case(L, batch, backward);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
