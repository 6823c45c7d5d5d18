// kdloss/backend/cuda/gemm.cuh: batched, strided matrix products on the GPU through cuBLAS
// (cublasGemmStridedBatchedEx / cublasGemmEx) on the caller's handle. Operands cuBLAS cannot read
// in place (expr::blas_plan: zero, negative or non-unit inner strides) are packed into the workspace
// first; a non-identity epilogue runs as one elementwise kernel after the product.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/expr/matmul.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda {

inline void check_blas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    ::kdloss::detail::fail("kdloss: cuBLAS error in ", what, ": status ", static_cast<int>(status),
#if CUBLAS_VER_MAJOR >= 11
                           " (", cublasGetStatusString(status), ")"
#else
                           ""
#endif
    );
}

/// Sets the handle's stream (and host pointer mode) for one call and restores what the caller had.
/// cublasSetStream also resets the handle's workspace to cuBLAS's default pool (cuBLAS documentation),
/// which would unbind a workspace the caller gave the handle for that stream (PyTorch binds its own to
/// the handle the bridge passes; cuBLAS would then allocate outside the caller's allocator, also during
/// graph capture). So the stream is set, and restored, only when the handle is on another stream.
class BlasStreamGuard {
 public:
  BlasStreamGuard(cublasHandle_t h, cudaStream_t s) : h_(h) {
    check_blas(cublasGetStream(h_, &previous_), "cublasGetStream");
    check_blas(cublasGetPointerMode(h_, &mode_), "cublasGetPointerMode");
    if (previous_ != s) {
      check_blas(cublasSetStream(h_, s), "cublasSetStream");
      restore_stream_ = true;
    }
    if (mode_ != CUBLAS_POINTER_MODE_HOST) check_blas(cublasSetPointerMode(h_, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode");
  }
  ~BlasStreamGuard() {
    if (restore_stream_) cublasSetStream(h_, previous_);
    if (mode_ != CUBLAS_POINTER_MODE_HOST) cublasSetPointerMode(h_, mode_);
  }
  BlasStreamGuard(const BlasStreamGuard&) = delete;
  BlasStreamGuard& operator=(const BlasStreamGuard&) = delete;

 private:
  cublasHandle_t h_;
  cudaStream_t previous_ = nullptr;
  cublasPointerMode_t mode_ = CUBLAS_POINTER_MODE_HOST;
  bool restore_stream_ = false;
};

/// cuBLAS's names for an element type: its data type, the compute type (fp32 accumulation for
/// half and bfloat16) and the type of alpha and beta.
template <class T>
struct BlasType {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, __half> ||
                    std::is_same_v<T, __nv_bfloat16>,
                "kdloss: matrix products take float, double, half or bfloat16");
  static constexpr bool f64 = std::is_same_v<T, double>;
  static constexpr cudaDataType_t data =
      f64 ? CUDA_R_64F
          : (std::is_same_v<T, float> ? CUDA_R_32F : (std::is_same_v<T, __half> ? CUDA_R_16F : CUDA_R_16BF));
  static constexpr cublasComputeType_t compute = f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
  using Scalar = std::conditional_t<f64, double, float>;
};

namespace gemm_kernels {

/// dst[b][r][c] (row-major) = src(b, r, c) for b < batches.
template <class T>
__global__ void pack(expr::MatOperand<const T> src, std::int64_t batches, std::int64_t rows, std::int64_t cols, T* dst) {
  const std::int64_t total = batches * rows * cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % cols, r = (i / cols) % rows, b = i / (cols * rows);
    dst[i] = *src.at(b, r, c);
  }
}

/// dst(b, r, c) = src[b][r][c].
template <class T>
__global__ void unpack(const T* src, std::int64_t batches, std::int64_t rows, std::int64_t cols, expr::MatOperand<T> dst) {
  const std::int64_t total = batches * rows * cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = i % cols, r = (i / cols) % rows, b = i / (cols * rows);
    *dst.at(b, r, c) = src[i];
  }
}

/// C = epilogue(scale_c ? beta * C : C) (beta = 0 reads nothing): the scale-only product, and the
/// epilogue pass after cuBLAS.
template <class T, class Acc, class E>
__global__ void finish(expr::MatOperand<T> c, std::int64_t outs, std::int64_t m, std::int64_t n, Acc beta, E epi) {
  const std::int64_t total = outs * m * n;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t j = i % n, r = (i / n) % m, b = i / (n * m);
    T* p = c.at(b, r, j);
    const Acc v = beta == Acc(0) ? Acc(0) : (beta == Acc(1) ? load_as<Acc>(p) : beta * load_as<Acc>(p));
    store_as(p, static_cast<Acc>(epi(v, b, r, j)));
  }
}

template <class T>
__global__ void fill(T* p, std::int64_t n, float value) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    store_as(p + i, value);
}

}  // namespace gemm_kernels

/// p[0..n) = value on `stream`.
template <class T>
void fill(T* p, std::int64_t n, double value, cudaStream_t stream) {
  if (n <= 0) return;
  gemm_kernels::fill<<<grid_for(n), kBlock, 0, stream>>>(p, n, static_cast<float>(value));
  check_launch("kdloss::gemm fill");
}

/// Scratch bytes of gemm(g): the packs of expr::blas_plan, each aligned.
template <class T, class E>
std::size_t gemm_scratch_bytes(const expr::Gemm<T, T, T, E>& g) {
  const expr::BlasPlan p = expr::blas_plan(g);
  const auto al = [](std::int64_t elems) { return (static_cast<std::size_t>(elems) * sizeof(T) + 255) / 256 * 256; };
  return al(p.a_elems) + al(p.b_elems) + al(p.c_elems);
}

/// Evaluates g on `stream` with the caller's cuBLAS handle; scratch of gemm_scratch_bytes(g) bytes.
template <class T, class E>
void gemm(const expr::Gemm<T, T, T, E>& g, cublasHandle_t handle, cudaStream_t stream, void* scratch) {
  using Acc = acc_t<T>;
  using S = typename BlasType<T>::Scalar;
  if (g.m == 0 || g.n == 0 || g.outputs() == 0) return;
  const std::int64_t outs = g.outputs();
  if (g.scale_only()) {
    gemm_kernels::finish<<<grid_for(outs * g.m * g.n), kBlock, 0, stream>>>(g.c, outs, g.m, g.n,
                                                                             static_cast<Acc>(g.beta), g.epilogue);
    check_launch("kdloss::gemm finish");
    return;
  }
  const expr::BlasPlan plan = expr::blas_plan(g);
  auto* cursor = static_cast<unsigned char*>(scratch);
  const auto take = [&](std::int64_t elems) {
    T* p = reinterpret_cast<T*>(cursor);
    cursor += (static_cast<std::size_t>(elems) * sizeof(T) + 255) / 256 * 256;
    return p;
  };
  // The problem as the BLAS sees it (column-major C' = A' B').
  const std::int64_t m = plan.swap ? g.n : g.m, n = plan.swap ? g.m : g.n, k = g.k;
  expr::MatOperand<const T> a = plan.swap ? g.b.transposed() : g.a;
  expr::MatOperand<const T> b = plan.swap ? g.a.transposed() : g.b;
  expr::MatOperand<T> c = g.c;
  if (g.sum_batches) c.batch = 0;
  T* c_pack = nullptr;
  if (plan.pack_c) {  // row-major [outs, m, n] of the original C, read back only when beta reads it
    c_pack = take(plan.c_elems);
    if (g.beta != 0.0) {
      gemm_kernels::pack<<<grid_for(plan.c_elems), kBlock, 0, stream>>>(expr::MatOperand<const T>{g.c.data, g.c.batch, g.c.row, g.c.col},
                                                                        outs, g.m, g.n, c_pack);
      check_launch("kdloss::gemm pack c");
    }
    c = {c_pack, g.m * g.n, g.n, 1};
  }
  if (plan.swap) c = c.transposed();
  const auto pack_operand = [&](expr::MatOperand<const T>& x, std::int64_t rows, std::int64_t cols, std::int64_t elems) {
    const std::int64_t batches = x.batch == 0 ? 1 : g.batch;
    T* dst = take(elems);
    gemm_kernels::pack<<<grid_for(elems), kBlock, 0, stream>>>(x, batches, rows, cols, dst);
    check_launch("kdloss::gemm pack");
    x = {dst, x.batch == 0 ? 0 : rows * cols, cols, 1};
  };
  if (plan.pack_a) pack_operand(a, m, k, plan.a_elems);
  if (plan.pack_b) pack_operand(b, k, n, plan.b_elems);
  const expr::BlasLayout la = expr::blas_layout(m, k, a.row, a.col);
  const expr::BlasLayout lb = expr::blas_layout(k, n, b.row, b.col);
  const expr::BlasLayout lc = expr::blas_layout(m, n, c.row, c.col);
  ::kdloss::detail::require(la.ok && lb.ok && lc.ok && !lc.trans, "kdloss: internal error: cuBLAS layout plan");
  const auto as_int = [](std::int64_t v, const char* what) {
    ::kdloss::detail::require(v <= INT_MAX, "kdloss::ops::matmul: ", what, " = ", v,
                              " exceeds cuBLAS's 32-bit limit; split the product");
    return static_cast<int>(v);
  };
  const int im = as_int(m, "m"), in = as_int(n, "n"), ik = as_int(k, "k");
  const int lda = as_int(la.ld, "lda"), ldb = as_int(lb.ld, "ldb"), ldc = as_int(lc.ld, "ldc");
  const cublasOperation_t op_a = la.trans ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = lb.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  constexpr cudaDataType_t dt = BlasType<T>::data;
  constexpr cublasComputeType_t ct = BlasType<T>::compute;
  const S alpha = static_cast<S>(g.alpha);
  BlasStreamGuard guard(handle, stream);
  if (g.sum_batches) {  // batches in order, each adding to C: the same bits on every run
    for (std::int64_t bb = 0; bb < g.batch; ++bb) {
      const S beta = static_cast<S>(bb == 0 ? g.beta : 1.0);
      check_blas(cublasGemmEx(handle, op_a, op_b, im, in, ik, &alpha, a.at(bb, 0, 0), dt, lda, b.at(bb, 0, 0), dt, ldb,
                              &beta, c.data, dt, ldc, ct, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
    }
  } else {
    const S beta = static_cast<S>(g.beta);
    check_blas(cublasGemmStridedBatchedEx(handle, op_a, op_b, im, in, ik, &alpha, a.data, dt, lda, a.batch, b.data, dt,
                                          ldb, b.batch, &beta, c.data, dt, ldc, c.batch, as_int(g.batch, "batch"), ct,
                                          CUBLAS_GEMM_DEFAULT),
               "cublasGemmStridedBatchedEx");
  }
  if (plan.pack_c) {
    gemm_kernels::unpack<<<grid_for(plan.c_elems), kBlock, 0, stream>>>(static_cast<const T*>(c_pack), outs, g.m, g.n,
                                                                        g.c);
    check_launch("kdloss::gemm unpack");
  }
  if (!expr::is_identity_epilogue<E>::value) {
    gemm_kernels::finish<<<grid_for(outs * g.m * g.n), kBlock, 0, stream>>>(g.c, outs, g.m, g.n, Acc(1), g.epilogue);
    check_launch("kdloss::gemm epilogue");
  }
}

} } }  // namespace kdloss::backend::cuda
