// GPU benchmarks of the attention backend (backend/cuda/attention.cuh) at the seed pixel relation's
// shapes: F as [1, N, C = 256] with q = k = v = F and scale 1/sqrt(C), N = 1050, 4200, 16700 (P5, P4,
// P3 of an 800x1333 input), forward and forward + backward: float on the blocked kernels, half and
// bfloat16 on the tensor-core kernels, and for comparison at the two smaller sizes float simple and
// half blocked (float arithmetic on half inputs). Timed with CUDA events.
//
// FLOP/s counts the useful products only: forward 4 N^2 C (S = q k^T and P v), forward + backward
// 14 N^2 C (the usual 2 + 5 products; the kernels recompute S and dP, which is not counted), so the
// counter compares directly with the GPU's fp32 peak.
//
//   ./kdloss_bench_attention_cuda --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_common_cuda.cuh"
#include "kdloss/backend/cuda/attention.cuh"

namespace {

using kdloss::backend::cuda::AttentionPath;
using kdloss_bench::cuda_check;
using kdloss_bench::DeviceArray;

const char* path_name(AttentionPath path) {
  switch (path) {
    case AttentionPath::simple: return "/simple";
    case AttentionPath::blocked: return "/blocked";
    case AttentionPath::tensor_core: return "/tensor_core";
    default: return "/automatic";
  }
}

template <class T>
std::vector<T> pattern(std::size_t n) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = T(static_cast<float>(std::sin(0.37 * static_cast<double>(i))));
  return v;
}

template <class T>
void register_attention(const char* type, AttentionPath path, std::int64_t n, std::int64_t c, bool backward) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const std::string name = std::string("attention_cuda/") + (backward ? "forward_backward/" : "forward/") + type +
                           path_name(path) + "/N=" + std::to_string(n) +
                           ",C=" + std::to_string(c);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    const auto numel = static_cast<std::size_t>(n * c);
    DeviceArray<T> f(numel), o(numel), grad_o(numel), grad_q(numel), grad_k(numel), grad_v(numel);
    DeviceArray<Acc> lse(static_cast<std::size_t>(n));
    f.upload(pattern<T>(numel));
    grad_o.upload(pattern<T>(numel));
    const kdloss::expr::MatOperand<const T> in{f.get(), n * c, c, 1};
    kdloss::expr::AttentionForward<T, Acc> fwd;
    fwd.batch = 1, fwd.n_q = n, fwd.n_k = n, fwd.d = c, fwd.dv = c, fwd.scale = 1.0 / std::sqrt(double(c));
    fwd.q = fwd.k = fwd.v = in;
    fwd.o = {o.get(), n * c, c, 1};
    fwd.lse = lse.get();
    // The seed relation's gradient flows to F through q, k and v alike: three gradient outputs, summed
    // by the caller (not timed here).
    kdloss::expr::AttentionBackward<T, Acc> bwd;
    bwd.batch = 1, bwd.n_q = n, bwd.n_k = n, bwd.d = c, bwd.dv = c, bwd.scale = fwd.scale;
    bwd.q = bwd.k = bwd.v = in;
    bwd.o = {o.get(), n * c, c, 1};
    bwd.grad_o = {grad_o.get(), n * c, c, 1};
    bwd.lse = lse.get();
    bwd.grad_q = {grad_q.get(), n * c, c, 1};
    bwd.grad_k = {grad_k.get(), n * c, c, 1};
    bwd.grad_v = {grad_v.get(), n * c, c, 1};
    DeviceArray<unsigned char> forward_scratch(kdloss::backend::cuda::attention_forward_scratch_bytes(fwd));
    DeviceArray<unsigned char> scratch(kdloss::backend::cuda::attention_backward_scratch_bytes(bwd));
    cudaStream_t stream;
    cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
    auto body = [&] {
      kdloss::backend::cuda::attention_forward(fwd, forward_scratch.get(), stream, path);
      if (backward) kdloss::backend::cuda::attention_backward(bwd, scratch.get(), stream, path);
    };
    body();  // warm-up
    cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    {
      kdloss_bench::EventTimer timer;
      for (auto _ : state) {
        timer.start(stream);
        body();
        state.SetIterationTime(timer.stop(stream));
      }
    }
    cuda_check(cudaStreamDestroy(stream), "cudaStreamDestroy");
    const double flops = (backward ? 14.0 : 4.0) * double(n) * double(n) * double(c);
    state.counters["FLOP/s"] =
        benchmark::Counter(flops * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    state.SetLabel(kdloss_bench::device_name());
  })->UseManualTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t c = 256;
  for (bool backward : {false, true})
    for (std::int64_t n : {1050, 4200, 16700}) {
      register_attention<float>("float", AttentionPath::blocked, n, c, backward);
      register_attention<__half>("half", AttentionPath::tensor_core, n, c, backward);
      register_attention<__nv_bfloat16>("bfloat16", AttentionPath::tensor_core, n, c, backward);
      if (n <= 4200) {
        register_attention<float>("float", AttentionPath::simple, n, c, backward);
        register_attention<__half>("half", AttentionPath::blocked, n, c, backward);
      }
    }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
