// OpenMP thread count for a scope: the tests that compare results across thread counts set it here, and
// the count the suite started with comes back when the scope ends, even when a REQUIRE throws.
#pragma once
#include "kdloss/config.hpp"

#if KDLOSS_OPENMP
#include <omp.h>
#endif

namespace kdloss_test {

/// ThreadScope scope; scope.set(1); ... scope.set(2); ...  (the count at construction comes back at the end
/// of the scope). ThreadScope scope(n) sets n at once. Without OpenMP it does nothing.
class ThreadScope {
 public:
  ThreadScope() {
#if KDLOSS_OPENMP
    old_ = omp_get_max_threads();
#endif
  }
  explicit ThreadScope(int n) : ThreadScope() { set(n); }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;
  ~ThreadScope() { set(old_); }
  void set(int n) {
#if KDLOSS_OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
  }

 private:
  int old_ = 1;
};

}  // namespace kdloss_test
