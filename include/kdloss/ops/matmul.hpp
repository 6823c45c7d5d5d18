// kdloss/ops/matmul.hpp: batched, strided matrix products, c = epilogue(alpha * op(a) op(b) + beta * c),
// the building block of projections (ops/linear.hpp) and relations. Host: packed AVX-512/AVX2 kernels
// picked at run time, or Eigen's product (backend/cpu/gemm.hpp); GPU: cuBLAS on the caller's handle.
#pragma once
#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>

#include "kdloss/backend/dispatch_gemm.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/matmul.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

struct MatmulOptions {
  bool trans_a = false;  // a is stored [k, m] (or [batch, k, m]) and read transposed
  bool trans_b = false;  // b is stored [n, k]
  double alpha = 1.0;
  double beta = 0.0;  // 0: c is written without being read (NaN in the old c does not leak)
  /// c is one [m, n] matrix receiving alpha * sum_b op(a[b]) op(b[b]) + beta * c, the batches added
  /// in increasing order (parameter gradients summed over a batch).
  bool sum_batches = false;
};

/// Arguments of ops::matmul. a: [m, k] or [batch, m, k] ([k, m] / [batch, k, m] with trans_a);
/// b: [k, n] or [batch, k, n] ([n, k] ... with trans_b); c: [m, n] or [batch, m, n]. An operand with
/// rank 2 or batch extent 1 is used by every batch (so is a stride-0 batch). Any strides; c must be
/// unique and must not overlap a or b. `epilogue` (expr::NoEpilogue by default) is a HOST_DEVICE
/// functor V(V value, int64 batch, int64 i, int64 j) applied to every final element of c.
template <class T, class Epilogue = expr::NoEpilogue>
struct MatmulArgs {
  View<const T> a{};
  View<const T> b{};
  View<T> c{};
  MatmulOptions options{};
  Epilogue epilogue{};
};

namespace detail {

/// A rank-2 or rank-3 operand as (batch, rows, cols) with strides, read transposed when asked.
struct Mat {
  std::int64_t batch = 1, rows = 0, cols = 0;
  std::int64_t bs = 0, rs = 0, cs = 0;
};
template <class T>
Mat as_mat(const View<T>& v, bool trans) {
  Mat m;
  const int o = v.rank() - 2;
  if (v.rank() == 3) {
    m.batch = v.shape[0];
    m.bs = v.shape[0] == 1 ? 0 : v.strides[0];
  }
  m.rows = v.shape[o];
  m.cols = v.shape[o + 1];
  m.rs = v.strides[o];
  m.cs = v.strides[o + 1];
  if (trans) {
    std::swap(m.rows, m.cols);
    std::swap(m.rs, m.cs);
  }
  return m;
}
inline std::string mat_str(const Mat& m, const char* r, const char* c) {
  std::ostringstream os;
  os << "(" << r << " x " << c << " = " << m.rows << " x " << m.cols << ")";
  return os.str();
}

/// The checked description of a product (batch extents resolved).
template <class T, class E>
expr::Gemm<T, T, T, E> make_gemm(const MatmulArgs<T, E>& args) {
  const MatmulOptions& o = args.options;
  const Mat a = as_mat(args.a, o.trans_a), b = as_mat(args.b, o.trans_b), c = as_mat(args.c, false);
  expr::Gemm<T, T, T, E> g;
  // broadcasting a batch of 1 against an empty batch gives no batches (as torch.matmul): then c = beta * c
  g.batch = o.sum_batches ? (a.batch == 0 || b.batch == 0 ? 0 : std::max(a.batch, b.batch)) : c.batch;
  g.m = c.rows;
  g.n = c.cols;
  g.k = a.cols;
  g.a = {args.a.data, a.batch == 1 ? 0 : a.bs, a.rs, a.cs};
  g.b = {args.b.data, b.batch == 1 ? 0 : b.bs, b.rs, b.cs};
  g.c = {args.c.data, c.bs, c.rs, c.cs};
  g.alpha = o.alpha;
  g.beta = o.beta;
  g.sum_batches = o.sum_batches;
  g.epilogue = args.epilogue;
  return g;
}

}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when the product cannot run; writes nothing.
template <class T, class E>
void matmul_check(const MatmulArgs<T, E>& args, const char* fn = "kdloss::ops::matmul") {
  const kdloss::detail::Checker ck{fn};
  using kdloss::detail::require;
  ck.rank_between(args.a, "a", 2, 3);
  ck.rank_between(args.b, "b", 2, 3);
  ck.rank_between(args.c, "c", 2, 3);
  ck.not_null(args.a, "a");
  ck.not_null(args.b, "b");
  ck.not_null(args.c, "c");
  ck.device(args.b, "b", args.a.device);
  ck.device(args.c, "c", args.a.device);
  const MatmulOptions& o = args.options;
  const detail::Mat a = detail::as_mat(args.a, o.trans_a), b = detail::as_mat(args.b, o.trans_b),
                    c = detail::as_mat(args.c, false);
  require(a.cols == b.rows, fn, ": arguments 'a' ", args.a.shape.str(), " ", detail::mat_str(a, "m", "k"), " and 'b' ",
          args.b.shape.str(), " ", detail::mat_str(b, "k", "n"), " disagree on k",
          o.trans_a || o.trans_b ? " (shapes after trans_a/trans_b)" : "");
  require(c.rows == a.rows && c.cols == b.cols, fn, ": argument 'c' has shape ", args.c.shape.str(), " but op(a) ",
          args.a.shape.str(), " times op(b) ", args.b.shape.str(), " is ", a.rows, " x ", b.cols);
  if (o.sum_batches) {
    require(args.c.rank() == 2, fn, ": with sum_batches, argument 'c' must be one [m, n] matrix but has shape ",
            args.c.shape.str());
    require(a.batch == b.batch || a.batch == 1 || b.batch == 1, fn, ": arguments 'a' ", args.a.shape.str(), " and 'b' ",
            args.b.shape.str(), " have different batch extents (", a.batch, " and ", b.batch, ")");
  } else {
    require(a.batch == c.batch || a.batch == 1, fn, ": argument 'a' ", args.a.shape.str(), " has batch extent ",
            a.batch, " but 'c' ", args.c.shape.str(), " has ", c.batch, " (use 1, or a rank-2 'a', to broadcast)");
    require(b.batch == c.batch || b.batch == 1, fn, ": argument 'b' ", args.b.shape.str(), " has batch extent ",
            b.batch, " but 'c' ", args.c.shape.str(), " has ", c.batch, " (use 1, or a rank-2 'b', to broadcast)");
  }
  ck.unique(args.c, "c");
  ck.disjoint(args.c, "c", args.a, "a");
  ck.disjoint(args.c, "c", args.b, "b");
  kdloss::detail::require_backend<T>(fn, args.a.device);
}

/// Scratch bytes of matmul(args) on the views' device (0 when nothing needs packing on the GPU).
template <class T, class E>
std::size_t matmul_workspace_bytes(const MatmulArgs<T, E>& args) {
  matmul_check(args, "kdloss::ops::matmul_workspace_bytes");
  return kdloss::detail::gemm_bytes(args.a.device, detail::make_gemm(args));
}

namespace detail {
/// A GPU product needs the caller's cuBLAS handle.
inline void require_blas(const char* fn, Device device, const Exec& exec) {
  kdloss::detail::require(device.is_host() || exec.blas.handle != nullptr, fn, ": the views are on ", device.str(),
                          " and the product runs through cuBLAS, but Exec::blas is null; pass the caller's handle: "
                          "kdloss::Exec{workspace, kdloss::Stream(stream), kdloss::BlasHandle(cublas_handle)}");
}
/// Runs a checked product with the caller's workspace (or host scratch).
template <class T, class E>
void run_gemm(const char* fn, Device device, const expr::Gemm<T, T, T, E>& g, const Exec& exec) {
  const std::size_t need = kdloss::detail::gemm_bytes(device, g);
  kdloss::detail::HostScratch host;
  void* ws = kdloss::detail::resolve_workspace(fn, device, exec.workspace, need, host);
  kdloss::detail::gemm(device, exec, g, ws, exec.workspace.data ? exec.workspace.bytes : need);
}
}  // namespace detail

/// c = epilogue(alpha * op(a) op(b) + beta * c) over the batch (see MatmulArgs). beta = 0 never reads c;
/// alpha = 0 or k = 0 never reads a or b (c = epilogue(beta * c)), as BLAS does; otherwise a NaN in a row
/// of a gives NaN in that row of c, as PyTorch's products give. The bits do not depend on the thread count.
///
///   // FPN 1x1 projection of channel-last features: [B*H*W, 256] x [256, 64]
///   kdloss::ops::MatmulArgs<float> p{kdloss::host_view(x, {2 * 100 * 167, 256}),
///                                    kdloss::host_view(w, {256, 64}), kdloss::host_view(out, {2 * 100 * 167, 64})};
///   kdloss::ops::matmul(p);
template <class T, class E>
void matmul(const MatmulArgs<T, E>& args, const Exec& exec = {}) {
  const char* fn = "kdloss::ops::matmul";
  detail::require_blas(fn, args.a.device, exec);
  matmul_check(args, fn);
  detail::run_gemm(fn, args.a.device, detail::make_gemm(args), exec);
}

/// Thin wrapper: c = alpha * op(a) op(b) + beta * c.
///
///   kdloss::ops::matmul(kdloss::host_view(q, {2, 64, 32}), kdloss::host_view(k, {2, 64, 32}),
///                       kdloss::host_view(out, {2, 64, 64}), {/*trans_a=*/false, /*trans_b=*/true});
template <class A, class B, class C>
void matmul(const View<A>& a, const View<B>& b, const View<C>& c, const MatmulOptions& options = {},
            const Exec& exec = {}) {
  matmul(MatmulArgs<C>{a, b, c, options}, exec);
}

}  // namespace ops
} }  // namespace kdloss
