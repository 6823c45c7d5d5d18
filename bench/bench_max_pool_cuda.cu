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
    using kdloss_bench::cuda_check;
    const kdloss::Dims& s = c.shape;
    const kdloss::Dims o{s[0], s[1], s[2] / c.stride, s[3] / c.stride};
    std::vector<T> hx(static_cast<std::size_t>(s.product())), hgy(static_cast<std::size_t>(o.product()));
    for (std::size_t i = 0; i < hx.size(); ++i) hx[i] = T(kdloss_bench::fill_value(i, 1));
    for (std::size_t i = 0; i < hgy.size(); ++i) hgy[i] = T(kdloss_bench::fill_value(i, 2));
    kdloss_bench::DeviceArray<T> x(hx.size()), y(hgy.size()), gy(hgy.size()), gx(hx.size());
    x.upload(hx);
    gy.upload(hgy);
    cudaStream_t stream;
    cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
    const kdloss::Device dev = kdloss::Device::cuda(0);
    kdloss::ops::MaxPool2dArgs<T> args;
    args.x = kdloss::View<const T>(x.get(), s, kdloss::contiguous_strides(s), dev);
    args.y = kdloss::View<T>(y.get(), o, kdloss::contiguous_strides(o), dev);
    args.grad_y = kdloss::View<const T>(gy.get(), o, kdloss::contiguous_strides(o), dev);
    args.grad_x = kdloss::View<T>(gx.get(), s, kdloss::contiguous_strides(s), dev);
    args.options.stride = c.stride;
    kdloss_bench::DeviceArray<unsigned char> keep(kdloss::ops::max_pool2d_reserve_bytes(args));
    args.reserve = {keep.get(), keep.size()};
    kdloss::Exec exec;
    exec.stream = kdloss::Stream(stream);
    kdloss::ops::max_pool2d(args, kdloss::Mode::forward, exec);  // fills the reserve, warms up
    kdloss::Mode mode = kdloss::Mode::forward;
    if (what == "backward" || what == "backward_recompute") mode = kdloss::Mode::backward;
    if (what == "forward_backward") mode = kdloss::Mode::forward_backward;
    if (what == "backward_recompute") args.reserve = {};
    cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    kdloss_bench::EventTimer timer;
    for (auto _ : state) {
      timer.start(stream);
      kdloss::ops::max_pool2d(args, mode, exec);
      state.SetIterationTime(timer.stop(stream));
    }
    cuda_check(cudaStreamDestroy(stream), "cudaStreamDestroy");
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
