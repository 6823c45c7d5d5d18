// kdloss/backend/cuda/separable_filter.cuh: GPU passes of a depthwise separable filter and its adjoint. Each
// is two elementwise gathers through a [planes, H, Wo] buffer of the accumulation type (columns,
// then rows); the adjoint gathers over the band of outputs that read a pixel with
// AxisPlan::adjoint_weight, which folds a reflected halo back onto its source.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kdloss/backend/cuda/launch.hpp"
#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/expr/filter.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::filter {

struct PlaneStrides {
  std::int64_t v[4];
};

namespace detail {

/// tmp[p][r][j] = sum_k w_k x[p][r][source(j + k - off)]  (j < cols.n_out).
template <class A, class X>
__global__ void __launch_bounds__(kBlock) columns_kernel(expr::AxisPlan cols, std::int64_t C, std::int64_t H,
                                                         std::int64_t n, const X* x, PlaneStrides xs, A* tmp) {
  const std::int64_t wo = cols.n_out;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t j = k % wo, r = (k / wo) % H, p = k / (wo * H);
    const X* row = x + (p / C) * xs.v[0] + (p % C) * xs.v[1] + r * xs.v[2];
    A acc = 0;
    for (int t = 0; t < cols.taps; ++t) {
      const std::int64_t s = cols.source(j + t - cols.off);
      if (s >= 0) acc += A(cols.w[t]) * load_as<A>(row + s * xs.v[3]);
    }
    tmp[k] = acc;
  }
}

/// out[p][o][j] = sum_k w_k tmp[p][source(o + k - off)][j].
template <class A, class O>
__global__ void __launch_bounds__(kBlock) rows_kernel(expr::AxisPlan rows, std::int64_t C, std::int64_t H,
                                                      std::int64_t wo, std::int64_t n, const A* tmp, O* out,
                                                      PlaneStrides os) {
  const std::int64_t ho = rows.n_out;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t j = k % wo, o = (k / wo) % ho, p = k / (wo * ho);
    A acc = 0;
    for (int t = 0; t < rows.taps; ++t) {
      const std::int64_t s = rows.source(o + t - rows.off);
      if (s >= 0) acc += A(rows.w[t]) * tmp[(p * H + s) * wo + j];
    }
    store_as(out + (p / C) * os.v[0] + (p % C) * os.v[1] + o * os.v[2] + j * os.v[3], acc);
  }
}

/// Adjoint of rows_kernel: tmp[p][r][j] = sum over outputs o reading r of weight(o, r) g[p][o][j].
template <class A, class G>
__global__ void __launch_bounds__(kBlock) rows_adjoint_kernel(expr::AxisPlan rows, std::int64_t C,
                                                              std::int64_t wo, std::int64_t n, const G* g,
                                                              PlaneStrides gs, A* tmp) {
  const std::int64_t H = rows.n_in;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t j = k % wo, r = (k / wo) % H, p = k / (wo * H);
    const G* col = g + (p / C) * gs.v[0] + (p % C) * gs.v[1] + j * gs.v[3];
    A acc = 0;
    const std::int64_t first = r + rows.off - rows.taps + 1;
    for (int d = 0; d < rows.taps; ++d) {
      const std::int64_t o = first + d;
      const double w = rows.adjoint_weight(o, r);
      if (w != 0.0) acc += A(w) * load_as<A>(col + o * gs.v[2]);
    }
    tmp[k] = acc;
  }
}

/// Adjoint of columns_kernel: grad[p][r][q] = sum over j reading q of weight(j, q) tmp[p][r][j].
template <class A, class O>
__global__ void __launch_bounds__(kBlock) columns_adjoint_kernel(expr::AxisPlan cols, std::int64_t C,
                                                                 std::int64_t H, std::int64_t n, const A* tmp, O* grad,
                                                                 PlaneStrides os) {
  const std::int64_t W = cols.n_in, wo = cols.n_out;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t q = k % W, r = (k / W) % H, p = k / (W * H);
    const A* row = tmp + (p * H + r) * wo;
    A acc = 0;
    const std::int64_t first = q + cols.off - cols.taps + 1;
    for (int d = 0; d < cols.taps; ++d) {
      const std::int64_t j = first + d;
      const double w = cols.adjoint_weight(j, q);
      if (w != 0.0) acc += A(w) * row[j];
    }
    store_as(grad + (p / C) * os.v[0] + (p % C) * os.v[1] + r * os.v[2] + q * os.v[3], acc);
  }
}

}  // namespace detail

/// out = rows(columns(x)) for every plane; tmp holds planes * rows.n_in * cols.n_out elements.
template <class A, class X, class O>
void filter(const expr::AxisPlan& rows, const expr::AxisPlan& cols, std::int64_t B, std::int64_t C,
            const X* x, PlaneStrides xs, O* out, PlaneStrides os, A* tmp, cudaStream_t stream) {
  const std::int64_t planes = B * C;
  const std::int64_t n1 = planes * rows.n_in * cols.n_out, n2 = planes * rows.n_out * cols.n_out;
  if (n2 == 0) return;
  detail::columns_kernel<A><<<grid_for(n1), kBlock, 0, stream>>>(cols, C, rows.n_in, n1, x, xs, tmp);
  check_launch("kdloss separable_filter columns_kernel");
  detail::rows_kernel<A><<<grid_for(n2), kBlock, 0, stream>>>(rows, C, rows.n_in, cols.n_out, n2, tmp, out, os);
  check_launch("kdloss separable_filter rows_kernel");
}

/// grad = columns^T(rows^T(g)) for every plane; tmp as for filter().
template <class A, class G, class O>
void filter_adjoint(const expr::AxisPlan& rows, const expr::AxisPlan& cols, std::int64_t B,
                    std::int64_t C, const G* g, PlaneStrides gs, O* grad, PlaneStrides os, A* tmp,
                    cudaStream_t stream) {
  const std::int64_t planes = B * C;
  const std::int64_t n1 = planes * rows.n_in * cols.n_out, n2 = planes * rows.n_in * cols.n_in;
  if (n2 == 0) return;
  detail::rows_adjoint_kernel<A><<<grid_for(n1), kBlock, 0, stream>>>(rows, C, cols.n_out, n1, g, gs, tmp);
  check_launch("kdloss separable_filter adjoint rows_adjoint_kernel");
  detail::columns_adjoint_kernel<A><<<grid_for(n2), kBlock, 0, stream>>>(cols, C, rows.n_in, n2, tmp, grad, os);
  check_launch("kdloss separable_filter adjoint columns_adjoint_kernel");
}

} } }  // namespace kdloss::backend::cuda::filter
