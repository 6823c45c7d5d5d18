// GPU benchmarks of ops::linear_sum_assignment: a batch of 1 and of 8 problems of 300 x 100 and of
// 300 x 300 (float costs uniform in [0, 1)), one launch per call, timed with CUDA events; plus the
// baseline the issue names: the device-to-host copy of the same costs (what a scipy matcher pays
// before scipy even starts; compare_assignment_scipy.py adds scipy's own time).
//
//   ./kdloss_bench_assignment_cuda --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <vector>

#include "bench_common_cuda.cuh"
#include "kdloss/ops/linear_sum_assignment.hpp"

namespace {

using kdloss_bench::DeviceArray;

void lsa_cuda(benchmark::State& state, std::int64_t B, std::int64_t Q, std::int64_t T, bool copy_only) {
  std::mt19937 g(0);
  std::uniform_real_distribution<float> U(0, 1);
  std::vector<float> host(static_cast<std::size_t>(B * Q * T));
  for (auto& x : host) x = U(g);
  const std::int64_t K = Q < T ? Q : T;
  DeviceArray<float> cost(host.size());
  cost.upload(host);
  DeviceArray<std::int64_t> out(static_cast<std::size_t>(2 * B * K + 2 * B));
  const kdloss::Device dev = kdloss::Device::cuda(0);
  kdloss::ops::LinearSumAssignmentArgs<float> a;
  a.cost = kdloss::View<const float>(cost.get(), {B, Q, T}, kdloss::contiguous_strides({B, Q, T}), dev);
  a.row_ind = kdloss::View<std::int64_t>(out.get(), {B, K}, {K, 1}, dev);
  a.col_ind = kdloss::View<std::int64_t>(out.get() + B * K, {B, K}, {K, 1}, dev);
  a.count = kdloss::View<std::int64_t>(out.get() + 2 * B * K, {B}, {1}, dev);
  a.status = kdloss::View<std::int64_t>(out.get() + 2 * B * K + B, {B}, {1}, dev);
  const std::size_t bytes = kdloss::ops::linear_sum_assignment_workspace_bytes(a);
  DeviceArray<unsigned char> ws(bytes + 1);
  const kdloss::Exec exec{kdloss::Workspace{ws.get(), bytes}};
  kdloss_bench::EventTimer timer;
  for (auto _ : state) {
    timer.start(nullptr);
    if (copy_only)
      kdloss_bench::cuda_check(cudaMemcpy(host.data(), cost.get(), host.size() * sizeof(float), cudaMemcpyDeviceToHost),
                               "cudaMemcpy");
    else
      kdloss::ops::linear_sum_assignment(a, kdloss::Mode::forward, exec);
    state.SetIterationTime(timer.stop(nullptr));
  }
}

}  // namespace

BENCHMARK_CAPTURE(lsa_cuda, b1_300x100, 1, 300, 100, false)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(lsa_cuda, b8_300x100, 8, 300, 100, false)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(lsa_cuda, b8_300x300, 8, 300, 300, false)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(lsa_cuda, b8_300x100_d2h_copy_only, 8, 300, 100, true)->UseManualTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
