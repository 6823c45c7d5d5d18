// GPU benchmarks of ops::batch_norm, one training step (forward with the reserve, then backward reading
// it), batch 2, C = 256 on the [200, 336], [100, 168], [50, 84] grids, float, half and bfloat16, timed
// with CUDA events.
//
//   ./kdloss_bench_batch_norm_cuda --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "bench_common_cuda.cuh"
#include "kdloss/ops/batch_norm.hpp"

namespace {

template <class T>
void register_step(const char* type, std::int64_t h, std::int64_t w) {
  const std::int64_t B = 2, C = 256, n = B * C * h * w;
  const std::string name =
      std::string("batch_norm_cuda/train_fwd_bwd/") + type + "/2x256x" + std::to_string(h) + "x" + std::to_string(w);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    T *x = nullptr, *y = nullptr, *gy = nullptr, *gx = nullptr, *par = nullptr;
    void *ws = nullptr, *reserve = nullptr;
    cudaMalloc(&x, sizeof(T) * n);
    cudaMalloc(&y, sizeof(T) * n);
    cudaMalloc(&gy, sizeof(T) * n);
    cudaMalloc(&gx, sizeof(T) * n);
    cudaMalloc(&par, sizeof(T) * C * 6);  // weight, bias, batch_mean, batch_var, grad_weight, grad_bias
    cudaMemset(x, 0, sizeof(T) * n);
    cudaMemset(gy, 0, sizeof(T) * n);
    cudaMemset(par, 0, sizeof(T) * C * 6);
    const kdloss::Dims shape{B, C, h, w};
    kdloss::ops::BatchNormArgs<T> a;
    a.x = kdloss::cuda_view<const T>(x, shape);
    a.weight = kdloss::cuda_view<const T>(par, {C});
    a.bias = kdloss::cuda_view<const T>(par + C, {C});
    a.y = kdloss::cuda_view(y, shape);
    a.batch_mean = kdloss::cuda_view(par + 2 * C, {C});
    a.batch_var = kdloss::cuda_view(par + 3 * C, {C});
    const std::size_t ws_bytes = kdloss::ops::batch_norm_workspace_bytes(a), rs_bytes = kdloss::ops::batch_norm_reserve_bytes(a);
    cudaMalloc(&ws, ws_bytes);
    cudaMalloc(&reserve, rs_bytes);
    a.reserve = kdloss::Reserve{reserve, rs_bytes};
    auto b = a;
    b.y = b.batch_mean = b.batch_var = {};
    b.grad_y = kdloss::cuda_view<const T>(gy, shape);
    b.grad_x = kdloss::cuda_view(gx, shape);
    b.grad_weight = kdloss::cuda_view(par + 4 * C, {C});
    b.grad_bias = kdloss::cuda_view(par + 5 * C, {C});
    cudaStream_t stream;
    cudaStreamCreate(&stream);
    const kdloss::Exec exec{kdloss::Workspace{ws, ws_bytes}, kdloss::Stream(stream)};
    kdloss::ops::batch_norm(a, kdloss::Mode::forward, exec);
    kdloss::ops::batch_norm(b, kdloss::Mode::backward, exec);
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    for (auto _ : state) {
      cudaEventRecord(start, stream);
      kdloss::ops::batch_norm(a, kdloss::Mode::forward, exec);
      kdloss::ops::batch_norm(b, kdloss::Mode::backward, exec);
      cudaEventRecord(stop, stream);
      cudaEventSynchronize(stop);
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      state.SetIterationTime(ms / 1e3);
    }
    // forward: x twice, y once; backward: x and grad_y twice, grad_x once.
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 8 * n * static_cast<std::int64_t>(sizeof(T)));
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
    for (void* p : {static_cast<void*>(x), static_cast<void*>(y), static_cast<void*>(gy), static_cast<void*>(gx),
                    static_cast<void*>(par), ws, reserve})
      cudaFree(p);
  })->UseManualTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  const std::pair<std::int64_t, std::int64_t> grids[] = {{200, 336}, {100, 168}, {50, 84}};
  for (const auto& [h, w] : grids) {
    register_step<float>("float", h, w);
    register_step<__half>("half", h, w);
    register_step<__nv_bfloat16>("bfloat16", h, w);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
