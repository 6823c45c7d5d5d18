// kdloss/expr/topk.hpp: the description of a batched top-k selection (backend/dispatch_topk.hpp): S rows
// ("segments") of n values, each row addressed by two segment indices and two element indices with their
// own strides, so that a [K, B, Q, C] score tensor is K * B rows of Q * C (query, class) pairs without a copy.
//
// Which k indices a row keeps (flat element indices j = r0 * n1 + r1):
//   host  torch.topk(k, largest = True, sorted = True) on the CPU, in its order (ties included);
//   GPU   torch.topk's set on CUDA: every value above the k-th largest, then the values equal to it in
//         ascending index order until k are taken; written in ascending index order.
// Both rank NaN above every number (torch's rule) and -0 equal to +0. So the two agree on the set except
// when equal values straddle the k-th place, where each follows its own torch.
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

template <class T>
struct TopkRows {
  const T* data = nullptr;
  std::int64_t segments_outer = 1, segments_inner = 1;  // S = outer * inner rows
  std::int64_t segment_stride_outer = 0, segment_stride_inner = 0;
  std::int64_t n_outer = 1, n_inner = 1;  // n = n_outer * n_inner values per row
  std::int64_t stride_outer = 0, stride_inner = 0;
  std::int64_t k = 1;              // 1 <= k <= n
  std::int64_t* indices = nullptr;  // [S, k], row-major: the kept flat indices of each row

  KDLOSS_HOST_DEVICE std::int64_t rows() const { return segments_outer * segments_inner; }
  KDLOSS_HOST_DEVICE std::int64_t size() const { return n_outer * n_inner; }
  KDLOSS_HOST_DEVICE const T* row(std::int64_t s) const {
    return data + (s / segments_inner) * segment_stride_outer + (s % segments_inner) * segment_stride_inner;
  }
  KDLOSS_HOST_DEVICE T value(const T* row_base, std::int64_t j) const {
    return row_base[(j / n_inner) * stride_outer + (j % n_inner) * stride_inner];
  }
};

} } }  // namespace kdloss::expr
