// Host benchmarks of ops::dot_relation and ops::concat_relation at FBKD's non-local level shapes (batch 2,
// m = c = 64, channels-first [B, 64, H, W] maps read as [B, H*W, 64]):
//   P2: N = 200*336, N' = N/64 (sub-sample 8);  P3: N = 100*168, N' = N/16 (4);  P4: N = 50*84, N' = N/4 (2);
// and the dot-product mode at P2 without sub-sampling (N' = N), which eager PyTorch cannot allocate.
// forward and forward_backward (every input gradient, and w's for concat).
// bench/compare_relation_modes_torch.py times torch eager (bmm over the explicit relation) on the same shapes.
//
//   ./kdloss_bench_relation_cpu --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/ops/concat_relation.hpp"
#include "kdloss/ops/dot_relation.hpp"

namespace {

std::vector<float> filled(std::int64_t n, std::uint64_t seed, float scale = 1.f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * kdloss_bench::fill_value(i, seed);
  return v;
}

struct Scratch {
  std::vector<unsigned char> raw;
  void* data;
  std::size_t bytes;
  explicit Scratch(std::size_t n) : raw(n + 256), bytes(n) {
    data = reinterpret_cast<void*>(kdloss::detail::align_up(reinterpret_cast<std::uintptr_t>(raw.data())));
  }
  kdloss::Exec exec() const { return kdloss::Exec{kdloss::Workspace{data, bytes}}; }
};

/// A [2, 64, H, W] map's buffer and its [2, H*W, 64] view.
struct Map {
  std::int64_t h, w;
  std::vector<float> data;
  Map(std::int64_t h_, std::int64_t w_, std::uint64_t seed) : h(h_), w(w_), data(filled(2 * 64 * h * w, seed)) {}
  kdloss::View<const float> in() const {
    return kdloss::ops::relation_operand(kdloss::host_view<const float>(data.data(), {2, 64, h, w}));
  }
  kdloss::View<float> out() { return kdloss::ops::relation_operand(kdloss::host_view(data.data(), {2, 64, h, w})); }
};

void register_relation(bool concat, const char* level, std::int64_t h, std::int64_t w, std::int64_t s, bool backward) {
  const std::string name = std::string(concat ? "concat_relation/" : "dot_relation/") +
                           (backward ? "forward_backward/" : "forward/") + level + ",N=" + std::to_string(h * w) +
                           ",N'=" + std::to_string((h / s) * (w / s));
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    Map theta(h, w, 1), phi(h / s, w / s, 2), g(h / s, w / s, 3), y(h, w, 4), gy(h, w, 5), gt(h, w, 6),
        gp(h / s, w / s, 7), gg(h / s, w / s, 8);
    // Keys' and queries' scores of both signs for concat: w of scale 1/8 over 64 channels.
    std::vector<float> wt = filled(128, 9, 0.125f), gw(128);
    const kdloss::Mode mode = backward ? kdloss::Mode::forward_backward : kdloss::Mode::forward;
    const auto fill = [&](auto& a) {
      a.theta = theta.in();
      a.phi = phi.in();
      a.g = g.in();
      a.y = y.out();
      if (backward) {
        a.grad_y = gy.in();
        a.grad_theta = gt.out();
        a.grad_phi = gp.out();
        a.grad_g = gg.out();
      }
    };
    if (concat) {
      kdloss::ops::ConcatRelationArgs<float> a;
      fill(a);
      a.weight = kdloss::host_view<const float>(wt.data(), {128});
      if (backward) a.grad_weight = kdloss::host_view(gw.data(), {128});
      const Scratch ws(kdloss::ops::concat_relation_workspace_bytes(a));
      kdloss::ops::concat_relation(a, mode, ws.exec());
      for (auto _ : state) kdloss::ops::concat_relation(a, mode, ws.exec());
      state.counters["workspace_MB"] = static_cast<double>(ws.bytes) / 1e6;
    } else {
      kdloss::ops::DotRelationArgs<float> a;
      fill(a);
      const Scratch ws(kdloss::ops::dot_relation_workspace_bytes(a));
      kdloss::ops::dot_relation(a, mode, ws.exec());
      for (auto _ : state) kdloss::ops::dot_relation(a, mode, ws.exec());
      state.counters["workspace_MB"] = static_cast<double>(ws.bytes) / 1e6;
    }
    state.SetLabel("threads=" + std::to_string(kdloss_bench::host_threads()));
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  for (bool concat : {false, true})
    for (bool backward : {false, true}) {
      register_relation(concat, "P2", 200, 336, 8, backward);
      register_relation(concat, "P3", 100, 168, 4, backward);
      register_relation(concat, "P4", 50, 84, 2, backward);
    }
  for (bool backward : {false, true}) register_relation(false, "P2-full", 200, 336, 1, backward);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
