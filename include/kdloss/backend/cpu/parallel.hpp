// kdloss/backend/cpu/parallel.hpp: the host backend's threads and instruction-set clones, in one place.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kdloss/config.hpp"

#if KDLOSS_OPENMP
#include <omp.h>
#endif

// Hot host loops are compiled twice with GCC on x86-64 Linux (AVX2/FMA and baseline) and picked
// at load time, since a header-only library cannot rely on the consumer's -march.
// Only in optimised builds without AddressSanitizer: a clone passes packets (32-byte vectors) by value
// to the row operation it flattens into itself, and when a call is not inlined (-O0, or ASan's
// instrumentation) the AVX2 caller and the baseline callee disagree on how such arguments are passed.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && defined(__x86_64__) && \
    defined(__linux__) && __GNUC__ >= 11 && defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(KDLOSS_NO_TARGET_CLONES)
#define KDLOSS_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#define KDLOSS_CPU_ISA_NAMESPACE x86_64_v3_clones
#else
#define KDLOSS_CPU_CLONES
#define KDLOSS_CPU_ISA_NAMESPACE portable
#endif
// The cloned functions live in an inline namespace named after the build, so a translation unit
// built without clones (nvcc's, or clang's) never shares their symbols with one built with them.

// A clone runs at its instruction set only the code inlined into it: KDLOSS_CPU_FLATTEN on a cloned
// function inlines everything it calls (the row operation handed in, its lambdas, the packet math).
#if defined(__GNUC__) && !defined(__CUDACC__)
#define KDLOSS_CPU_FLATTEN __attribute__((flatten))
#else
#define KDLOSS_CPU_FLATTEN
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu {

/// Below this much work (elements touched) a loop runs on one thread: thread start-up would cost more.
inline constexpr std::int64_t kParallelThreshold = 1 << 15;

/// Threads the host loops of a call use (per-thread scratch is carved for this many).
inline int max_threads() {
#if KDLOSS_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
/// The calling thread's index inside a parallel region (0 outside one).
inline int thread_id() {
#if KDLOSS_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// Most blocks ordered_sum cuts its tasks into (their partial sums live on the stack).
inline constexpr std::int64_t kReduceBlocks = 256;

/// The double sum of f(task) over task in [0, tasks), bitwise the same whatever the thread count:
/// the tasks are cut into at most kReduceBlocks consecutive blocks by their count alone, each block
/// is summed in task order (by one thread), and the block sums are added in block order. Threads
/// share the blocks when `parallel`. (An OpenMP reduction(+) would group the terms by thread.)
template <class F>
double ordered_sum(std::int64_t tasks, bool parallel, F&& f) {
  if (tasks <= 0) return 0.0;
  const std::int64_t blocks = std::min(tasks, kReduceBlocks);
  const std::int64_t per = tasks / blocks, extra = tasks % blocks;  // the first `extra` blocks take one more
  double partial[kReduceBlocks];
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (parallel && blocks > 1)
#endif
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t first = b * per + std::min(b, extra), last = first + per + (b < extra ? 1 : 0);
    double s = 0;
    for (std::int64_t t = first; t < last; ++t) s += f(t);
    partial[b] = s;
  }
  double total = 0;
  for (std::int64_t b = 0; b < blocks; ++b) total += partial[b];
  (void)parallel;
  return total;
}

/// f(task) for every task in [0, tasks), each task on one thread; the threads share the tasks when
/// `parallel`. What a task writes must not depend on which thread runs it.
template <class F>
void run_tasks(std::int64_t tasks, bool parallel, F&& f) {
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (parallel && tasks > 1)
#endif
  for (std::int64_t t = 0; t < tasks; ++t) f(t);
  (void)parallel;
}

} } }  // namespace kdloss::backend::cpu
