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

#include <string>

#include "bench_relation_common.hpp"
#include "kdloss/losses/drkd/drkd.hpp"

namespace {

using kdloss_bench::RelationLevel;

void register_case(const RelationLevel& L, std::int64_t batch, bool backward) {
  const std::string name = std::string("pixel_relation/") + L.name + "/B" + std::to_string(batch) + "/" +
                           (backward ? "forward_backward" : "forward");
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    kdloss_bench::HostLevel<float> lv({batch, kdloss_bench::kRelationChannels, L.h, L.w});
    kdloss::drkd::PixelRelationLossArgs<float> a;
    a.student = lv.s();
    a.teacher = lv.t();
    a.out = lv.out();
    if (backward) a.grad_student = lv.g();
    const kdloss_bench::AlignedBuffer ws(kdloss::drkd::pixel_relation_loss_workspace_bytes(a));
    const kdloss::Exec exec{kdloss::Workspace{ws.data, ws.bytes}};
    const kdloss::Mode mode = backward ? kdloss::Mode::forward_backward : kdloss::Mode::forward;
    if (L.h * L.w < 20000) kdloss::drkd::pixel_relation_loss(a, mode, exec);  // warm up (P2 runs once)
    for (auto _ : state) kdloss::drkd::pixel_relation_loss(a, mode, exec);
    // Products of N x N x C per image: forward 2 per relation (S and T); the backward of G(S) 5 more
    // (S, dP, P^T dY, dS^T Q, dS K).
    kdloss_bench::relation_counters(state, L, batch, backward ? 9.0 : 4.0, ws.bytes);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

const bool registered = [] {
  for (const RelationLevel& L : kdloss_bench::kRelationLevels)
    for (std::int64_t batch : {1, 2})
      for (bool backward : {false, true}) register_case(L, batch, backward);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
