// Host benchmarks of ops::matmul and ops::linear at the FPN 1x1-projection shapes: [B*H*W, 256] x
// [256, N] for P3 (B*H*W = 2*100*167) and P4 (2*50*84), N = 64, 128, 256, with each host kernel
// (automatic = the widest the CPU has, avx2, eigen = Eigen's product as the build's flags compile it),
// and the 1x1-convolution layer forward and backward. bench/compare_torch.py --cases matmul runs
// the automatic ones side by side with torch.matmul.
//
//   ./kdloss_bench_matmul_cpu --benchmark_filter='^matmul/.*/automatic/' --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/backend/cpu/gemm.hpp"
#include "kdloss/ops/linear.hpp"
#include "kdloss/ops/matmul.hpp"

namespace {

using kdloss::backend::cpu::GemmKernel;

std::vector<float> filled(std::int64_t n, std::uint64_t seed) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = kdloss_bench::fill_value(i, seed);
  return v;
}

/// The call's workspace, sized by its query and allocated once outside the timed loop.
struct Scratch {
  std::vector<unsigned char> raw;
  void* data;
  std::size_t bytes;
  explicit Scratch(std::size_t n) : raw(n + 256), bytes(n) {
    data = reinterpret_cast<void*>(kdloss::detail::align_up(reinterpret_cast<std::uintptr_t>(raw.data())));
  }
  kdloss::Exec exec() const { return kdloss::Exec{kdloss::Workspace{data, bytes}}; }
};

void flops(benchmark::State& state, double per_iteration) {
  state.counters["FLOP/s"] =
      benchmark::Counter(per_iteration * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel("threads=" + std::to_string(kdloss_bench::host_threads()));
}

void register_matmul(std::int64_t m, std::int64_t n, std::int64_t k, GemmKernel kernel) {
  const std::string name = "matmul/M=" + std::to_string(m) + ",K=" + std::to_string(k) + ",N=" + std::to_string(n) +
                           "/" + kdloss::backend::cpu::to_string(kernel);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    const auto a = filled(m * k, 1), b = filled(k * n, 2);
    std::vector<float> c(static_cast<std::size_t>(m * n), 0.f);
    kdloss::backend::cpu::set_gemm_kernel(kernel);
    const kdloss::ops::MatmulArgs<float> args{kdloss::host_view(a.data(), {m, k}), kdloss::host_view(b.data(), {k, n}),
                                              kdloss::host_view(c.data(), {m, n})};
    const Scratch ws(kdloss::ops::matmul_workspace_bytes(args));
    const kdloss::Exec exec = ws.exec();
    kdloss::ops::matmul(args, exec);  // warm caches and the thread pool
    for (auto _ : state) kdloss::ops::matmul(args, exec);
    flops(state, 2.0 * m * n * k);
    kdloss::backend::cpu::set_gemm_kernel(GemmKernel::automatic);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

/// The 1x1 convolution [2, 256, H, W] -> [2, out, H, W] (NCHW, with bias).
void register_linear(const char* level, std::int64_t h, std::int64_t w, std::int64_t out, bool backward) {
  const std::string name = std::string("linear_nchw/") + (backward ? "backward" : "forward") + "/" + level +
                           ",out=" + std::to_string(out);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    const std::int64_t b = 2, in = 256, p = h * w;
    const auto x = filled(b * in * p, 3), wt = filled(out * in, 4), bias = filled(out, 5), gy = filled(b * out * p, 6);
    std::vector<float> y(b * out * p), gx(b * in * p), gw(out * in), gb(out);
    kdloss::ops::LinearArgs<float> l;
    l.x = kdloss::host_view(x.data(), {b, in, h, w});
    l.weight = kdloss::host_view(wt.data(), {out, in});
    l.bias = kdloss::host_view(bias.data(), {out});
    if (backward) {
      l.grad_y = kdloss::host_view(gy.data(), {b, out, h, w});
      l.grad_x = kdloss::host_view(gx.data(), {b, in, h, w});
      l.grad_weight = kdloss::host_view(gw.data(), {out, in});
      l.grad_bias = kdloss::host_view(gb.data(), {out});
    } else {
      l.y = kdloss::host_view(y.data(), {b, out, h, w});
    }
    const kdloss::Mode mode = backward ? kdloss::Mode::backward : kdloss::Mode::forward;
    const Scratch ws(kdloss::ops::linear_workspace_bytes(l));
    kdloss::ops::linear(l, mode, ws.exec());
    for (auto _ : state) kdloss::ops::linear(l, mode, ws.exec());
    flops(state, (backward ? 4.0 : 2.0) * b * p * in * out);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  for (std::int64_t m : {2 * 100 * 167, 2 * 50 * 84})
    for (std::int64_t n : {64, 128, 256})
      for (GemmKernel kernel : {GemmKernel::automatic, GemmKernel::avx2, GemmKernel::eigen}) register_matmul(m, n, 256, kernel);
  for (bool backward : {false, true})
    for (std::int64_t out : {64, 256}) {
      register_linear("P3", 100, 167, out, backward);
      register_linear("P4", 50, 84, out, backward);
    }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
