// Setup the host relation benchmarks share (bench_softmax_relation_cpu.cpp, bench_pixel_relation_cpu.cpp,
// bench_non_local_cpu.cpp, bench_glore_cpu.cpp): the seed relation's FPN levels, 256-byte aligned buffers
// allocated outside the timed loop, the process's peak resident set, and the counters of a seed-relation
// case (FLOP/s of its N x N x C products, workspace, peak RSS, a label with the threads).
#pragma once
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/core/workspace.hpp"

namespace kdloss_bench {

/// One FPN level of an 800x1333 input.
struct RelationLevel {
  const char* name;
  std::int64_t h, w;
};
/// The seed pixel relation's levels (C = 256): P5, P4, P3 (P2 where a benchmark can afford it).
inline constexpr RelationLevel kRelationLevels[] = {{"P5", 25, 42}, {"P4", 50, 84}, {"P3", 100, 167}, {"P2", 200, 334}};
inline constexpr std::int64_t kRelationChannels = 256;

/// A 256-byte aligned buffer (zeroed, so its pages are touched before any timing).
struct AlignedBuffer {
  std::vector<unsigned char> raw;
  void* data = nullptr;
  std::size_t bytes = 0;
  explicit AlignedBuffer(std::size_t n) : raw(n + 256), bytes(n) {
    data = reinterpret_cast<void*>(kdloss::detail::align_up(reinterpret_cast<std::uintptr_t>(raw.data())));
  }
};

/// The process's peak resident set in MB (meaningful with one benchmark per process).
inline double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // kB on Linux
}

/// The counters of a seed-relation case: `products` N x N x C products (2 N^2 C flops each) per image and
/// iteration, the workspace, the peak RSS, and a label "P4 B=1 N=4200 C=256 threads=2".
inline void relation_counters(benchmark::State& state, const RelationLevel& L, std::int64_t batch, double products,
                              std::size_t workspace_bytes) {
  const double n = static_cast<double>(L.h * L.w);
  state.counters["FLOP/s"] = benchmark::Counter(products * 2.0 * n * n * kRelationChannels * static_cast<double>(batch) *
                                                    static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
  state.counters["workspace_MB"] = static_cast<double>(workspace_bytes) / (1 << 20);
  state.counters["peak_rss_MB"] = peak_rss_mb();
  state.SetLabel(std::string(L.name) + " B=" + std::to_string(batch) + " N=" + std::to_string(L.h * L.w) +
                 " C=256 threads=" + std::to_string(host_threads()));
}

}  // namespace kdloss_bench
