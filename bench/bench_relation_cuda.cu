// GPU benchmarks of ops::dot_relation (cuBLAS) and ops::concat_relation (pairs kernels) at FBKD's non-local
// level shapes (batch 2, m = c = 64, channels-first maps; see bench_relation_cpu.cpp), forward and
// forward_backward, float and half, timed with CUDA events.
//
//   ./kdloss_bench_relation_cuda --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <string>
#include <vector>

#include "bench_common_cuda.cuh"
#include "kdloss/ops/concat_relation.hpp"
#include "kdloss/ops/dot_relation.hpp"

namespace {

using kdloss_bench::DeviceArray;

/// A [2, 64, H, W] device map with values in [-1, 1) (scaled) and its [2, H*W, 64] view.
template <class T>
struct Map {
  std::int64_t h, w;
  DeviceArray<T> data;
  Map(std::int64_t h_, std::int64_t w_, std::uint64_t seed, float scale = 1.f)
      : h(h_), w(w_), data(static_cast<std::size_t>(2 * 64 * h_ * w_)) {
    std::vector<T> host(data.size());
    for (std::size_t i = 0; i < host.size(); ++i) host[i] = T(scale * kdloss_bench::fill_value(i, seed));
    data.upload(host);
  }
  kdloss::View<const T> in() const {
    return kdloss::ops::relation_operand(kdloss::cuda_view<const T>(data.get(), {2, 64, h, w}));
  }
  kdloss::View<T> out() const { return kdloss::ops::relation_operand(kdloss::cuda_view(data.get(), {2, 64, h, w})); }
};

template <class T>
void register_relation(const char* type, bool concat, const char* level, std::int64_t h, std::int64_t w,
                       std::int64_t s, bool backward) {
  const std::string name = std::string(concat ? "concat_relation_cuda/" : "dot_relation_cuda/") + type + "/" +
                           (backward ? "forward_backward/" : "forward/") + level + ",N=" + std::to_string(h * w) +
                           ",N'=" + std::to_string((h / s) * (w / s));
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    Map<T> theta(h, w, 1), phi(h / s, w / s, 2), g(h / s, w / s, 3), y(h, w, 4), gy(h, w, 5), gt(h, w, 6),
        gp(h / s, w / s, 7), gg(h / s, w / s, 8);
    DeviceArray<T> wt(128), gw(128);
    {
      std::vector<T> host(128);
      for (std::size_t i = 0; i < host.size(); ++i) host[i] = T(0.125f * kdloss_bench::fill_value(i, 9));
      wt.upload(host);
    }
    cublasHandle_t handle;
    cublasCreate(&handle);
    cudaStream_t stream;
    cudaStreamCreate(&stream);
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
    kdloss::ops::ConcatRelationArgs<T> ca;
    kdloss::ops::DotRelationArgs<T> da;
    fill(ca);
    fill(da);
    ca.weight = kdloss::cuda_view<const T>(wt.get(), {128});
    if (backward) ca.grad_weight = kdloss::cuda_view(gw.get(), {128});
    DeviceArray<unsigned char> ws(concat ? kdloss::ops::concat_relation_workspace_bytes(ca)
                                         : kdloss::ops::dot_relation_workspace_bytes(da));
    const kdloss::Exec exec{{ws.get(), ws.size()}, kdloss::Stream(stream), kdloss::BlasHandle(handle)};
    const auto call = [&] {
      if (concat)
        kdloss::ops::concat_relation(ca, mode, exec);
      else
        kdloss::ops::dot_relation(da, mode, exec);
    };
    call();
    kdloss_bench::cuda_check(cudaStreamSynchronize(stream), "warm-up");
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    for (auto _ : state) {
      cudaEventRecord(start, stream);
      call();
      cudaEventRecord(stop, stream);
      cudaEventSynchronize(stop);
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      state.SetIterationTime(ms / 1e3);
    }
    state.SetLabel(kdloss_bench::device_name());
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cublasDestroy(handle);
    cudaStreamDestroy(stream);
  })->UseManualTime()->Unit(benchmark::kMillisecond);
}

template <class T>
void register_all(const char* type) {
  for (bool concat : {false, true})
    for (bool backward : {false, true}) {
      register_relation<T>(type, concat, "P2", 200, 336, 8, backward);
      register_relation<T>(type, concat, "P3", 100, 168, 4, backward);
      register_relation<T>(type, concat, "P4", 50, 84, 2, backward);
    }
}

}  // namespace

int main(int argc, char** argv) {
  register_all<float>("float");
  register_all<__half>("half");
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
