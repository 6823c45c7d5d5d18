// Host benchmark of fbkd::non_local_loss (L_NLD of one level), float, NCHW: forward_backward with every
// gradient (S, both blocks' parameters, the adaptation conv), C = 256: the one-stage P3 grid of an
// 800 x 1333 image, [100, 168], with the official level-0 block (dot product, m = 64, pool 8), and
// [50, 84] with the level-2 block (m = 128, pool 2). Workspace allocated once outside the timed loop.
// Not registered in bench/CMakeLists.txt yet; the line to add:
//   kdloss_add_benchmarks(kdloss_bench_fbkd_nld bench_fbkd_nld_cpu.cpp bench_fbkd_nld_cpu.cpp)
//
//   OMP_NUM_THREADS=2 ./kdloss_bench_fbkd_nld_cpu --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/losses/fbkd/non_local_loss.hpp"

namespace {

std::vector<float> filled(std::int64_t n, std::uint64_t seed, float scale = 1.f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * kdloss_bench::fill_value(i, seed);
  return v;
}

struct Block {
  std::vector<float> g, th, ph, o, ob, bw, bb, dg, dgb, dth, dthb, dph, dphb, dobw, dob, dbw, dbb, gb, thb, phb, mean, var;
  Block(std::int64_t C, std::int64_t m, std::uint64_t seed)
      : g(filled(m * C, seed, 0.05f)), th(filled(m * C, seed + 1, 0.05f)), ph(filled(m * C, seed + 2, 0.05f)),
        o(filled(C * m, seed + 3, 0.05f)), ob(filled(C, seed + 4)), bw(filled(C, seed + 5)), bb(filled(C, seed + 6)),
        dg(m * C), dgb(m), dth(m * C), dthb(m), dph(m * C), dphb(m), dobw(C * m), dob(C), dbw(C), dbb(C),
        gb(filled(m, seed + 7)), thb(filled(m, seed + 8)), phb(filled(m, seed + 9)), mean(C), var(C) {}
  void bind(kdloss::ops::NonLocalArgs<float>& a, std::int64_t C, std::int64_t m) {
    using kdloss::host_view;
    a.g_weight = host_view<const float>(g.data(), {m, C});
    a.g_bias = host_view<const float>(gb.data(), {m});
    a.theta_weight = host_view<const float>(th.data(), {m, C});
    a.theta_bias = host_view<const float>(thb.data(), {m});
    a.phi_weight = host_view<const float>(ph.data(), {m, C});
    a.phi_bias = host_view<const float>(phb.data(), {m});
    a.conv_out_weight = host_view<const float>(o.data(), {C, m});
    a.conv_out_bias = host_view<const float>(ob.data(), {C});
    a.bn_weight = host_view<const float>(bw.data(), {C});
    a.bn_bias = host_view<const float>(bb.data(), {C});
    a.bn_batch_mean = host_view(mean.data(), {C});
    a.bn_batch_var = host_view(var.data(), {C});
    a.grad_g_weight = host_view(dg.data(), {m, C});
    a.grad_g_bias = host_view(dgb.data(), {m});
    a.grad_theta_weight = host_view(dth.data(), {m, C});
    a.grad_theta_bias = host_view(dthb.data(), {m});
    a.grad_phi_weight = host_view(dph.data(), {m, C});
    a.grad_phi_bias = host_view(dphb.data(), {m});
    a.grad_conv_out_weight = host_view(dobw.data(), {C, m});
    a.grad_conv_out_bias = host_view(dob.data(), {C});
    a.grad_bn_weight = host_view(dbw.data(), {C});
    a.grad_bn_bias = host_view(dbb.data(), {C});
  }
};

void register_case(std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W, int level) {
  const std::string name = "fbkd_nld/fwd_bwd/" + std::to_string(B) + "x" + std::to_string(C) + "x" + std::to_string(H) +
                           "x" + std::to_string(W) + "/level" + std::to_string(level);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    const std::int64_t n = B * C * H * W, m = kdloss::ops::non_local_fbkd_inter_channels(level);
    const kdloss::Dims shape{B, C, H, W};
    std::vector<float> s = filled(n, 1), t = filled(n, 2), gs(static_cast<std::size_t>(n)), aw = filled(C * C, 3, 0.05f),
                       ab = filled(C, 4), gaw(static_cast<std::size_t>(C * C)), gab(static_cast<std::size_t>(C));
    Block bs(C, m, 10), bt(C, m, 30);
    float value = 0;
    kdloss::fbkd::NonLocalLossArgs<float> a;
    a.student = kdloss::host_view<const float>(s.data(), shape);
    a.teacher = kdloss::host_view<const float>(t.data(), shape);
    bs.bind(a.student_block, C, m);
    bt.bind(a.teacher_block, C, m);
    a.adapt_weight = kdloss::host_view<const float>(aw.data(), {C, C});
    a.adapt_bias = kdloss::host_view<const float>(ab.data(), {C});
    a.out = kdloss::host_scalar(&value);
    a.grad_student = kdloss::host_view(gs.data(), shape);
    a.grad_adapt_weight = kdloss::host_view(gaw.data(), {C, C});
    a.grad_adapt_bias = kdloss::host_view(gab.data(), {C});
    a.options.weight = 4.2e-4;
    a.options.block = kdloss::ops::non_local_fbkd_options(level);
    const std::size_t bytes = kdloss::fbkd::non_local_loss_workspace_bytes(a);
    std::vector<unsigned char> raw(bytes + 256);
    void* ws = reinterpret_cast<void*>(kdloss::detail::align_up(reinterpret_cast<std::uintptr_t>(raw.data())));
    const kdloss::Exec exec{{ws, bytes}};
    for (auto _ : state) {
      kdloss::fbkd::non_local_loss(a, kdloss::Mode::forward_backward, exec);
      benchmark::DoNotOptimize(value);
      benchmark::ClobberMemory();
    }
    state.counters["workspace_MiB"] = static_cast<double>(bytes) / (1 << 20);
    state.counters["threads"] = kdloss_bench::host_threads();
  })->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_case(1, 256, 100, 168, 0);  // one-stage P3 (index 0): m = 64, pool 8
  register_case(1, 256, 50, 84, 2);    // a coarser level: m = 128, pool 2
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
