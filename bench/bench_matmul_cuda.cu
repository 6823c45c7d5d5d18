// GPU benchmarks of ops::matmul (cuBLAS on the caller's handle) at the FPN 1x1-projection shapes, in
// float, half and bfloat16, timed with CUDA events.
//
//   ./kdloss_bench_matmul_cuda --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "bench_common_cuda.cuh"
#include "kdloss/ops/matmul.hpp"

namespace {

template <class T>
void register_matmul(const char* type, std::int64_t m, std::int64_t n, std::int64_t k) {
  const std::string name = std::string("matmul_cuda/") + type + "/M=" + std::to_string(m) + ",K=" + std::to_string(k) +
                           ",N=" + std::to_string(n);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    T *a = nullptr, *b = nullptr, *c = nullptr;
    cudaMalloc(&a, sizeof(T) * m * k);
    cudaMalloc(&b, sizeof(T) * k * n);
    cudaMalloc(&c, sizeof(T) * m * n);
    cudaMemset(a, 0, sizeof(T) * m * k);
    cudaMemset(b, 0, sizeof(T) * k * n);
    cublasHandle_t handle;
    cublasCreate(&handle);
    cudaStream_t stream;
    cudaStreamCreate(&stream);
    const kdloss::ops::MatmulArgs<T> args{kdloss::cuda_view<const T>(a, {m, k}), kdloss::cuda_view<const T>(b, {k, n}),
                                          kdloss::cuda_view(c, {m, n})};
    const kdloss::Exec exec{{}, kdloss::Stream(stream), kdloss::BlasHandle(handle)};  // contiguous: no workspace
    kdloss::ops::matmul(args, exec);
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    for (auto _ : state) {
      cudaEventRecord(start, stream);
      kdloss::ops::matmul(args, exec);
      cudaEventRecord(stop, stream);
      cudaEventSynchronize(stop);
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      state.SetIterationTime(ms / 1e3);
    }
    state.counters["FLOP/s"] =
        benchmark::Counter(2.0 * m * n * k * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cublasDestroy(handle);
    cudaStreamDestroy(stream);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
  })->UseManualTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  for (std::int64_t m : {2 * 100 * 167, 2 * 50 * 84})
    for (std::int64_t n : {64, 256}) {
      register_matmul<float>("float", m, n, 256);
      register_matmul<__half>("half", m, n, 256);
      register_matmul<__nv_bfloat16>("bfloat16", m, n, 256);
    }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
