// Host benchmarks of ops::linear_sum_assignment at DETR's matcher shapes: a batch of 8 problems of
// 300 x 100 (queries x targets) and of 300 x 300 (DETRDistill's teacher-student matching), float and
// double costs uniform in [0, 1). bench/compare_assignment_scipy.py times scipy on the same problems.
//
//   OMP_NUM_THREADS=1 ./kdloss_bench_assignment_cpu --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kdloss/ops/linear_sum_assignment.hpp"

namespace {

template <class E>
void bench_lsa(benchmark::State& state, std::int64_t B, std::int64_t Q, std::int64_t T) {
  std::mt19937 g(0);
  std::uniform_real_distribution<double> U(0, 1);
  std::vector<E> c(static_cast<std::size_t>(B * Q * T));
  for (auto& x : c) x = static_cast<E>(U(g));
  const std::int64_t K = Q < T ? Q : T;
  std::vector<std::int64_t> r(static_cast<std::size_t>(B * K)), k(r.size()), st(static_cast<std::size_t>(B));
  kdloss::ops::LinearSumAssignmentArgs<E> a;
  a.cost = kdloss::host_view<const E>(c.data(), {B, Q, T});
  a.row_ind = kdloss::host_view(r.data(), {B, K});
  a.col_ind = kdloss::host_view(k.data(), {B, K});
  a.status = kdloss::host_view(st.data(), {B});
  kdloss::detail::HostScratch ws;
  const std::size_t bytes = kdloss::ops::linear_sum_assignment_workspace_bytes(a);
  const kdloss::Exec exec{kdloss::Workspace{ws.get(bytes), bytes}};
  for (auto _ : state) {
    kdloss::ops::linear_sum_assignment(a, kdloss::Mode::forward, exec);
    benchmark::DoNotOptimize(k.data());
  }
  state.counters["per_problem_us"] =
      benchmark::Counter(static_cast<double>(B) * 1e-6, benchmark::Counter::kIsIterationInvariantRate |
                                                             benchmark::Counter::kInvert);
}

}  // namespace

void lsa_float(benchmark::State& s, std::int64_t B, std::int64_t Q, std::int64_t T) { bench_lsa<float>(s, B, Q, T); }
void lsa_double(benchmark::State& s, std::int64_t B, std::int64_t Q, std::int64_t T) { bench_lsa<double>(s, B, Q, T); }

BENCHMARK_CAPTURE(lsa_float, b8_300x100, 8, 300, 100)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(lsa_float, b8_300x300, 8, 300, 300)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(lsa_double, b8_300x100, 8, 300, 100)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(lsa_double, b8_300x300, 8, 300, 300)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(lsa_float, b1_300x100, 1, 300, 100)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
