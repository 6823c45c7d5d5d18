// kdloss/backend/cpu/topk.hpp: the host evaluation of a batched top-k (expr/topk.hpp) in torch.topk's CPU
// order, rows in parallel.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/expr/topk.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu {

/// torch.topk(k, largest=True, sorted=True) on the CPU (ATen TopKImpl.h): (value, index) pairs ordered by
/// the comparator "x is NaN and y is not, or x > y", through std::partial_sort when k * 64 <= n, else
/// std::nth_element then std::sort of the first k - 1. The same std algorithms on the same initial order
/// give torch's order on ties. Leaves the selected pairs in queue[0, k) and writes their indices.
inline void torch_topk(std::vector<std::pair<double, std::int64_t>>& queue, std::int64_t k, std::int64_t* idx) {
  using E = std::pair<double, std::int64_t>;
  const auto comp = [](const E& x, const E& y) {
    return (std::isnan(x.first) && !std::isnan(y.first)) || (x.first > y.first);
  };
  const auto n = static_cast<std::int64_t>(queue.size());
  if (k * 64 <= n) {
    std::partial_sort(queue.begin(), queue.begin() + k, queue.end(), comp);
  } else {
    std::nth_element(queue.begin(), queue.begin() + (k - 1), queue.end(), comp);
    std::sort(queue.begin(), queue.begin() + (k - 1), comp);
  }
  for (std::int64_t i = 0; i < k; ++i) idx[i] = queue[static_cast<std::size_t>(i)].second;
}

/// Every row of P: its k indices in torch's CPU order.
template <class T>
void topk_rows(const expr::TopkRows<T>& P) {
  const std::int64_t n = P.size();
  ordered_sum(P.rows(), P.rows() * n > kParallelThreshold, [&](std::int64_t s) {
    std::vector<std::pair<double, std::int64_t>> queue(static_cast<std::size_t>(n));
    const T* base = P.row(s);
    for (std::int64_t j = 0; j < n; ++j) queue[static_cast<std::size_t>(j)] = {static_cast<double>(P.value(base, j)), j};
    torch_topk(queue, P.k, P.indices + s * P.k);
    return 0.0;
  });
}

} } }  // namespace kdloss::backend::cpu
