// Host benchmarks of ops::max_pool2d at FBKD's non-local sub-sampling shapes (float, NCHW):
// [2, 256, 200, 336] s = 8 (P2), [2, 256, 100, 168] s = 4 (P3), [2, 256, 50, 84] s = 2 (P4), and P3 in
// channel-last memory. Per shape: forward (keeping the argmax in a reserve), backward from the reserve,
// backward recomputing the argmax from x, and the fused forward_backward. bench/compare_max_pool_torch.py
// runs the same cases with torch.nn.functional.max_pool2d.
//
//   OMP_NUM_THREADS=1 ./kdloss_bench_max_pool_cpu --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/ops/max_pool.hpp"

namespace {

struct PoolCase {
  std::string name;
  kdloss::Dims shape;
  std::int64_t stride;
  bool channels_last;
};

/// Buffers of one case, built once per registered benchmark.
struct PoolBuffers {
  std::vector<float> x, y, gy, gx;
  kdloss::detail::HostScratch keep;
  kdloss::ops::MaxPool2dArgs<float> args;

  explicit PoolBuffers(const PoolCase& c) {
    const kdloss::Dims& s = c.shape;
    const kdloss::Dims o{s[0], s[1], s[2] / c.stride, s[3] / c.stride};
    x = kdloss_bench::filled<float>(static_cast<std::size_t>(s.product()), 1);
    y.assign(static_cast<std::size_t>(o.product()), 0.f);
    gy = kdloss_bench::filled<float>(y.size(), 2);
    gx.assign(x.size(), 0.f);
    const auto strides = [&](const kdloss::Dims& d) {
      return c.channels_last ? kdloss::Dims{d[1] * d[2] * d[3], 1, d[3] * d[1], d[1]} : kdloss::contiguous_strides(d);
    };
    args.x = kdloss::host_view<const float>(x.data(), s, strides(s));
    args.y = kdloss::host_view(y.data(), o, strides(o));
    args.grad_y = kdloss::host_view<const float>(gy.data(), o, strides(o));
    args.grad_x = kdloss::host_view(gx.data(), s, strides(s));
    args.options.stride = c.stride;
    const std::size_t bytes = kdloss::ops::max_pool2d_reserve_bytes(args);
    args.reserve = {keep.get(bytes), bytes};
  }
};

void register_case(const PoolCase& c, const std::string& what) {
  const std::string name = "max_pool2d/" + c.name + "/" + what;
  benchmark::RegisterBenchmark(name.c_str(), [c, what](benchmark::State& state) {
    PoolBuffers b(c);
    auto args = b.args;
    kdloss::Mode mode = kdloss::Mode::forward;
    if (what == "backward" || what == "backward_recompute") mode = kdloss::Mode::backward;
    if (what == "forward_backward") mode = kdloss::Mode::forward_backward;
    if (what == "backward_recompute") args.reserve = {};
    kdloss::ops::max_pool2d(b.args, kdloss::Mode::forward);  // fills the reserve, warms caches and threads
    for (auto _ : state) kdloss::ops::max_pool2d(args, mode);
    const std::int64_t in = c.shape.product(), out = in / (c.stride * c.stride);
    // Bytes moved: x, y, grad_y and grad_x in float, the reserve one byte per output.
    const std::int64_t bytes = what == "forward"              ? (in + out) * 4 + out
                               : what == "backward"           ? (in + out) * 4 + out
                               : what == "backward_recompute" ? (2 * in + out) * 4
                                                              : (2 * in + 2 * out) * 4 + out;
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
    state.SetLabel("threads=" + std::to_string(kdloss_bench::host_threads()));
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<PoolCase> cases{{"P2_2x256x200x336_s8", {2, 256, 200, 336}, 8, false},
                                    {"P3_2x256x100x168_s4", {2, 256, 100, 168}, 4, false},
                                    {"P4_2x256x50x84_s2", {2, 256, 50, 84}, 2, false},
                                    {"P3_2x256x100x168_s4_nhwc", {2, 256, 100, 168}, 4, true}};
  for (const auto& c : cases)
    for (const char* what : {"forward", "backward", "backward_recompute", "forward_backward"}) register_case(c, what);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
