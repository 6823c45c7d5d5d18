// GPU benchmarks of ops::max_pool2d at FBKD's non-local sub-sampling shapes (the cases of
// bench_max_pool_cpu.cpp), float and half, NCHW: forward with the reserve, backward from it, backward
// recomputing the argmax, and forward_backward, timed with CUDA events.
//
//   ./kdloss_bench_max_pool_cuda --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <cuda_fp16.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_common_cuda.cuh"
#include "kdloss/ops/max_pool.hpp"

namespace {

struct PoolCase {
  std::string name;
  kdloss::Dims shape;
  std::int64_t stride;
};

template <class T>
void register_case(const PoolCase& c, const std::string& what, const std::string& dtype) {
  const std::string name = "max_pool2d/" + c.name + "/" + dtype + "/" + what;
  benchmark::RegisterBenchmark(name.c_str(), [c, what](benchmark::State& state) {
    const kdloss::Dims& s = c.shape;
    const kdloss::Dims o{s[0], s[1], s[2] / c.stride, s[3] / c.stride};
    const auto hx = kdloss_bench::filled<T>(static_cast<std::size_t>(s.product()), 1);
    const auto hgy = kdloss_bench::filled<T>(static_cast<std::size_t>(o.product()), 2);
    kdloss_bench::DeviceArray<T> x(hx.size()), y(hgy.size()), gy(hgy.size()), gx(hx.size());
    x.upload(hx);
    gy.upload(hgy);
    const kdloss::Device dev = kdloss::Device::cuda(0);
    kdloss::ops::MaxPool2dArgs<T> args;
    args.x = kdloss::View<const T>(x.get(), s, kdloss::contiguous_strides(s), dev);
    args.y = kdloss::View<T>(y.get(), o, kdloss::contiguous_strides(o), dev);
    args.grad_y = kdloss::View<const T>(gy.get(), o, kdloss::contiguous_strides(o), dev);
    args.grad_x = kdloss::View<T>(gx.get(), s, kdloss::contiguous_strides(s), dev);
    args.options.stride = c.stride;
    kdloss_bench::DeviceArray<unsigned char> keep(kdloss::ops::max_pool2d_reserve_bytes(args));
    args.reserve = {keep.get(), keep.size()};
    kdloss::Mode mode = kdloss::Mode::forward;
    if (what == "backward" || what == "backward_recompute") mode = kdloss::Mode::backward;
    if (what == "forward_backward") mode = kdloss::Mode::forward_backward;
    auto timed = args;
    if (what == "backward_recompute") timed.reserve = {};
    kdloss_bench::time_on_stream(
        state,
        [&](cudaStream_t stream) {  // fills the reserve, warms up
          kdloss::ops::max_pool2d(args, kdloss::Mode::forward, kdloss::Exec{{}, kdloss::Stream(stream)});
        },
        [&](cudaStream_t stream) { kdloss::ops::max_pool2d(timed, mode, kdloss::Exec{{}, kdloss::Stream(stream)}); });
    state.SetLabel(kdloss_bench::device_name());
  })->UseManualTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<PoolCase> cases{{"P2_2x256x200x336_s8", {2, 256, 200, 336}, 8},
                                    {"P3_2x256x100x168_s4", {2, 256, 100, 168}, 4},
                                    {"P4_2x256x50x84_s2", {2, 256, 50, 84}, 2}};
  for (const auto& c : cases)
    for (const char* what : {"forward", "backward", "backward_recompute", "forward_backward"}) {
      register_case<float>(c, what, "float");
      register_case<__half>(c, what, "half");
    }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
