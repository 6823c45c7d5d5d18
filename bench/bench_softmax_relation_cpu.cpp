// Host benchmarks of ops::softmax_relation on the seed pixel relation G(F) = softmax(F F^T / sqrt(C)) F
// with theta = phi = g = F (one image, F read as [1, H*W, C] from an NCHW map without a copy, C = 256)
// at the FPN levels P5 (25x42), P4 (50x84), P3 (100x167), forward and forward + backward (the gradient
// to F of each of theta, phi and g, which the caller sums). Counters: the workspace and reserve bytes
// and the process's peak resident set (ru_maxrss) when the benchmark ends. bench/compare_relation_torch.py
// runs these beside torch's scaled_dot_product_attention.
//
//   OMP_NUM_THREADS=2 ./kdloss_bench_attention_cpu --benchmark_filter='relation/P4' --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <cmath>
#include <string>
#include <vector>

#include "bench_relation_common.hpp"
#include "kdloss/ops/softmax_relation.hpp"

namespace {

using kdloss_bench::RelationLevel;

void register_level(const RelationLevel& L, bool backward) {
  const std::string name = std::string("relation/") + L.name + "/" + (backward ? "forward_backward" : "forward");
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    const std::int64_t n = L.h * L.w, c = kdloss_bench::kRelationChannels;
    std::vector<float> f(static_cast<std::size_t>(n * c)), gy(f.size()), y(f.size()), gt(f.size()), gp(f.size()),
        gg(f.size());
    for (std::size_t i = 0; i < f.size(); ++i) {
      f[i] = kdloss_bench::fill_value(i, 1);
      gy[i] = kdloss_bench::fill_value(i, 2);
    }
    // NCHW storage read as [1, H*W, C].
    const kdloss::Dims shape{1, n, c}, strides{c * n, 1, n};
    kdloss::ops::SoftmaxRelationArgs<float> a;
    a.theta = a.phi = a.g = kdloss::host_view<const float>(f.data(), shape, strides);
    a.y = kdloss::host_view(y.data(), shape, strides);
    a.options.scale = 1.0 / std::sqrt(static_cast<double>(c));
    if (backward) {
      a.grad_y = kdloss::host_view<const float>(gy.data(), shape, strides);
      a.grad_theta = kdloss::host_view(gt.data(), shape, strides);
      a.grad_phi = kdloss::host_view(gp.data(), shape, strides);
      a.grad_g = kdloss::host_view(gg.data(), shape, strides);
    }
    const kdloss_bench::AlignedBuffer ws(kdloss::ops::softmax_relation_workspace_bytes(a));
    const kdloss::Exec exec{kdloss::Workspace{ws.data, ws.bytes}};
    const kdloss::Mode mode = backward ? kdloss::Mode::forward_backward : kdloss::Mode::forward;
    kdloss::ops::softmax_relation(a, mode, exec);  // warm caches and the thread pool
    for (auto _ : state) kdloss::ops::softmax_relation(a, mode, exec);
    // Products of one iteration (2 N^2 C flops each): forward S and P g; backward S, dP, P^T dO, dS^T Q, dS K.
    kdloss_bench::relation_counters(state, L, 1, backward ? 7.0 : 2.0, ws.bytes);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

const bool registered = [] {
  for (const RelationLevel& L : kdloss_bench::kRelationLevels)
    if (L.h * L.w < 20000)  // P5-P3 (P2: bench_pixel_relation_cpu.cpp)
      for (bool backward : {false, true}) register_level(L, backward);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
