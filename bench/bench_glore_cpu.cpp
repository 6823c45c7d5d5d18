// Host benchmarks of ops::glore (the DRKD code's GloRe unit), float, NCHW, batch 2, C = 256 on the FPN
// levels of an 800x1333 input with the code's per-level unit sizes: GloRe_Unit_2D(256, 64) on P2 and P3,
// GloRe_Unit_2D(256, 256) on P4-P6. "train_fwd_bwd" is one training step of the unit: forward (out, the
// blocker's batch statistics, the reserve) then backward reading the reserve (grad_x and all ten parameter
// gradients); "train_fwd" and "train_bwd" time the two calls apart. Counters: the reserve and workspace
// bytes the step needs. bench/compare_glore_torch.py runs train_fwd_bwd next to PyTorch eager.
//
//   OMP_NUM_THREADS=2 ./kdloss_bench_glore_cpu --benchmark_filter=train_fwd_bwd --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_relation_common.hpp"
#include "kdloss/ops/glore.hpp"

namespace {

/// Caller-owned aligned memory (workspace or reserve), allocated once outside the timed loop.
using Aligned = kdloss_bench::AlignedBuffer;

std::vector<float> filled(std::int64_t n, std::uint64_t seed, float scale = 1.f, float offset = 0.f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = kdloss_bench::fill_value(i, seed) * scale + offset;
  return v;
}

enum class Step { fwd_bwd, fwd, bwd };

struct Level {
  const char* name;
  std::int64_t h, w, mid;
};

void register_case(const std::string& what, Step step, const Level& level) {
  const std::int64_t B = 2, C = 256, m = level.mid, s = 2 * m, h = level.h, w = level.w, n = B * C * h * w;
  const std::string name = "glore/" + what + "/" + level.name + "/2x256x" + std::to_string(h) + "x" +
                           std::to_string(w) + "/mid" + std::to_string(m);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    // PyTorch's default conv init scale (kaiming uniform, a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    const float kc = 1.f / std::sqrt(static_cast<float>(C)), ks = 1.f / std::sqrt(static_cast<float>(s)),
                km = 1.f / std::sqrt(static_cast<float>(m));
    const auto x = filled(n, 1), gy = filled(n, 2);
    const auto ws_ = filled(s * C, 3, kc), bs_ = filled(s, 4, kc), wp = filled(m * C, 5, kc), bp = filled(m, 6, kc),
               a1 = filled(m * m, 7, km), b1 = filled(m, 8, km), a2 = filled(s * s, 9, ks), we = filled(C * s, 10, ks),
               gamma = filled(C, 11, 0.f, 1.f), beta = filled(C, 12, 0.f, 0.f);
    std::vector<float> out(x.size()), gx(x.size()), mean(C), var(C);
    std::vector<std::vector<float>> grads = {std::vector<float>(s * C), std::vector<float>(s), std::vector<float>(m * C),
                                             std::vector<float>(m),     std::vector<float>(m * m), std::vector<float>(m),
                                             std::vector<float>(s * s), std::vector<float>(C * s), std::vector<float>(C),
                                             std::vector<float>(C)};
    const kdloss::Dims shape{B, C, h, w};
    kdloss::ops::GloreArgs<float> a;
    a.x = kdloss::host_view(x.data(), shape);
    a.state_weight = kdloss::host_view(ws_.data(), {s, C});
    a.state_bias = kdloss::host_view(bs_.data(), {s});
    a.proj_weight = kdloss::host_view(wp.data(), {m, C});
    a.proj_bias = kdloss::host_view(bp.data(), {m});
    a.gcn_conv1_weight = kdloss::host_view(a1.data(), {m, m});
    a.gcn_conv1_bias = kdloss::host_view(b1.data(), {m});
    a.gcn_conv2_weight = kdloss::host_view(a2.data(), {s, s});
    a.extend_weight = kdloss::host_view(we.data(), {C, s});
    a.bn_weight = kdloss::host_view(gamma.data(), {C});
    a.bn_bias = kdloss::host_view(beta.data(), {C});
    a.out = kdloss::host_view(out.data(), shape);
    a.bn_batch_mean = kdloss::host_view(mean.data(), {C});
    a.bn_batch_var = kdloss::host_view(var.data(), {C});
    a.grad_out = kdloss::host_view(gy.data(), shape);
    a.grad_x = kdloss::host_view(gx.data(), shape);
    kdloss::View<float>* pgr[] = {&a.grad_state_weight, &a.grad_state_bias, &a.grad_proj_weight, &a.grad_proj_bias,
                                  &a.grad_gcn_conv1_weight, &a.grad_gcn_conv1_bias, &a.grad_gcn_conv2_weight,
                                  &a.grad_extend_weight, &a.grad_bn_weight, &a.grad_bn_bias};
    const kdloss::Dims pshape[] = {kdloss::Dims{s, C}, kdloss::Dims{s}, kdloss::Dims{m, C}, kdloss::Dims{m},
                                   kdloss::Dims{m, m}, kdloss::Dims{m}, kdloss::Dims{s, s}, kdloss::Dims{C, s},
                                   kdloss::Dims{C},    kdloss::Dims{C}};
    for (int i = 0; i < 10; ++i) *pgr[i] = kdloss::host_view(grads[i].data(), pshape[i]);
    Aligned reserve(kdloss::ops::glore_reserve_bytes(a));
    a.reserve = kdloss::Reserve{reserve.data, reserve.bytes};
    Aligned ws(kdloss::ops::glore_workspace_bytes(a));
    const kdloss::Exec exec{kdloss::Workspace{ws.data, ws.bytes}};
    kdloss::ops::glore(a, kdloss::Mode::forward, exec);  // warm caches and the thread pool
    kdloss::ops::glore(a, kdloss::Mode::backward, exec);
    for (auto _ : state) {
      if (step != Step::bwd) kdloss::ops::glore(a, kdloss::Mode::forward, exec);
      if (step != Step::fwd) kdloss::ops::glore(a, kdloss::Mode::backward, exec);
    }
    state.counters["reserve_MB"] = static_cast<double>(reserve.bytes) / 1e6;
    state.counters["workspace_MB"] = static_cast<double>(ws.bytes) / 1e6;
    state.SetLabel("threads=" + std::to_string(kdloss_bench::host_threads()));
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  // DRKD: student_non_local = [GloRe_Unit_2D(256, 64) x 2, GloRe_Unit_2D(256, 256) x 3] on P2-P6.
  const Level levels[] = {{"P2", 200, 334, 64}, {"P3", 100, 167, 64}, {"P4", 50, 84, 256}, {"P5", 25, 42, 256},
                          {"P6", 13, 21, 256}};
  for (const auto& [what, step] : {std::pair{"train_fwd_bwd", Step::fwd_bwd}, std::pair{"train_fwd", Step::fwd},
                                   std::pair{"train_bwd", Step::bwd}})
    for (const Level& level : levels) register_case(what, step, level);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
