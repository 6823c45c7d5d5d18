// Host benchmarks of drkd::glore_relation_loss (DRKD's L_PR, one level), float, NCHW, batch 2, C = 256 on the
// FPN levels of an 800x1333 input with the code's per-level unit sizes: GloRe_Unit_2D(256, 64) on P2 and P3,
// GloRe_Unit_2D(256, 256) on P4-P6, Conv2d(256, 256, 1) adapter. "train" is one training step of the level:
// forward_backward with grad_student and every parameter gradient of both units and the adapter; "forward" the
// value alone. Counter: the workspace the call needs (glore_relation_loss_workspace_bytes).
//
//   OMP_NUM_THREADS=2 ./kdloss_bench_drkd_pr_cpu --benchmark_filter=train/P3 --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/losses/drkd/glore_relation.hpp"

namespace {

std::vector<float> filled(std::int64_t n, std::uint64_t seed, float scale = 1.f, float offset = 0.f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = kdloss_bench::fill_value(i, seed) * scale + offset;
  return v;
}

/// One GloRe unit's parameters and gradients (PyTorch's default init scale, BN gamma 1, beta 0).
struct Unit {
  std::vector<std::vector<float>> p, g;
  Unit(std::int64_t C, std::int64_t m, std::uint64_t seed) {
    const std::int64_t s = 2 * m;
    const float kc = 1.f / std::sqrt(static_cast<float>(C)), ks = 1.f / std::sqrt(static_cast<float>(s)),
                km = 1.f / std::sqrt(static_cast<float>(m));
    p = {filled(s * C, seed, kc),     filled(s, seed + 1, kc),     filled(m * C, seed + 2, kc),
         filled(m, seed + 3, kc),     filled(m * m, seed + 4, km), filled(m, seed + 5, km),
         filled(s * s, seed + 6, ks), filled(C * s, seed + 7, ks), filled(C, seed + 8, 0.f, 1.f),
         filled(C, seed + 9, 0.f, 0.f)};
    for (const auto& v : p) g.emplace_back(v.size());
  }
  void bind(std::int64_t C, std::int64_t m, kdloss::drkd::GloreUnitParams<float>& pv,
            kdloss::drkd::GloreUnitGrads<float>& gv) {
    const std::int64_t s = 2 * m;
    const kdloss::Dims sh[] = {kdloss::Dims{s, C}, kdloss::Dims{s}, kdloss::Dims{m, C}, kdloss::Dims{m},
                               kdloss::Dims{m, m}, kdloss::Dims{m}, kdloss::Dims{s, s}, kdloss::Dims{C, s},
                               kdloss::Dims{C},    kdloss::Dims{C}};
    kdloss::View<const float>* pin[] = {&pv.state_weight,     &pv.state_bias,     &pv.proj_weight,
                                        &pv.proj_bias,        &pv.gcn_conv1_weight, &pv.gcn_conv1_bias,
                                        &pv.gcn_conv2_weight, &pv.extend_weight,  &pv.bn_weight,
                                        &pv.bn_bias};
    kdloss::View<float>* pg[] = {&gv.state_weight,     &gv.state_bias,    &gv.proj_weight,     &gv.proj_bias,
                                 &gv.gcn_conv1_weight, &gv.gcn_conv1_bias, &gv.gcn_conv2_weight, &gv.extend_weight,
                                 &gv.bn_weight,        &gv.bn_bias};
    for (int i = 0; i < 10; ++i) {
      *pin[i] = kdloss::host_view<const float>(p[i].data(), sh[i]);
      *pg[i] = kdloss::host_view(g[i].data(), sh[i]);
    }
  }
};

struct Level {
  const char* name;
  std::int64_t h, w, mid;
};

void register_case(const char* what, kdloss::Mode mode, const Level& level) {
  const std::int64_t B = 2, C = 256, m = level.mid, h = level.h, w = level.w, n = B * C * h * w;
  const std::string name = std::string("drkd_pr/") + what + "/" + level.name + "/2x256x" + std::to_string(h) + "x" +
                           std::to_string(w) + "/mid" + std::to_string(m);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    const auto s = filled(n, 1), t = filled(n, 2);
    const float kc = 1.f / std::sqrt(static_cast<float>(C));
    const auto aw = filled(C * C, 3, kc), ab = filled(C, 4, kc);
    std::vector<float> gs(s.size()), gaw(aw.size()), gab(ab.size());
    Unit us(C, m, 10), ut(C, m, 30);
    float loss = 0;
    const kdloss::Dims shape{B, C, h, w};
    kdloss::drkd::GloreRelationLossArgs<float> a;
    a.student = kdloss::host_view(s.data(), shape);
    a.teacher = kdloss::host_view(t.data(), shape);
    us.bind(C, m, a.student_glore, a.grad_student_glore);
    ut.bind(C, m, a.teacher_glore, a.grad_teacher_glore);
    a.adapt_weight = kdloss::host_view(aw.data(), {C, C});
    a.adapt_bias = kdloss::host_view(ab.data(), {C});
    a.out = kdloss::host_scalar(&loss);
    a.grad_student = kdloss::host_view(gs.data(), shape);
    a.grad_adapt_weight = kdloss::host_view(gaw.data(), {C, C});
    a.grad_adapt_bias = kdloss::host_view(gab.data(), {C});
    const std::size_t bytes = kdloss::drkd::glore_relation_loss_workspace_bytes(a);
    std::vector<unsigned char> raw(bytes + 256);
    void* base = reinterpret_cast<void*>(kdloss::detail::align_up(reinterpret_cast<std::uintptr_t>(raw.data())));
    const kdloss::Exec exec{kdloss::Workspace{base, bytes}};
    kdloss::drkd::glore_relation_loss(a, mode, exec);  // warm caches and the thread pool
    for (auto _ : state) kdloss::drkd::glore_relation_loss(a, mode, exec);
    benchmark::DoNotOptimize(loss);
    state.counters["workspace_MB"] = static_cast<double>(bytes) / 1e6;
    state.SetLabel("threads=" + std::to_string(kdloss_bench::host_threads()));
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  // DRKD: [GloRe_Unit_2D(256, 64) x 2, GloRe_Unit_2D(256, 256) x 3] on P2-P6, Conv2d(256, 256, 1) x 5.
  const Level levels[] = {{"P2", 200, 334, 64}, {"P3", 100, 167, 64}, {"P4", 50, 84, 256}, {"P5", 25, 42, 256},
                          {"P6", 13, 21, 256}};
  for (const auto& [what, mode] : {std::pair{"train", kdloss::Mode::forward_backward},
                                   std::pair{"forward", kdloss::Mode::forward}})
    for (const Level& level : levels) register_case(what, mode, level);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
