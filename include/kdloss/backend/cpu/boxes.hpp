// kdloss/backend/cpu/boxes.hpp: the host evaluation of the box passes (expr/boxes.hpp): an index space
// [0, n) and a functor f(i) that writes the outputs of item i and returns its contribution to a sum.
// The sum runs through ordered_sum (parallel.hpp): fixed blocks in a fixed order, so the bits do not
// depend on the thread count; each item is written by one thread only.
#pragma once
#include <cstdint>

#include "kdloss/backend/cpu/parallel.hpp"

namespace kdloss::backend::cpu::boxes {

/// The double sum of f(i) over [0, n); runs in parallel when n * work_per_item passes the threshold.
template <class F>
double index_sum(std::int64_t n, std::int64_t work_per_item, F&& f) {
  return ordered_sum(n, n * work_per_item >= kParallelThreshold, [&](std::int64_t i) { return double(f(i)); });
}

}  // namespace kdloss::backend::cpu::boxes
