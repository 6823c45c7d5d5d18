// kdloss/backend/cpu/gemm.hpp: batched, strided matrix products on the host (expr/matmul.hpp).
//
// Eigen picks its product kernels when Eigen/Core is first included (from __SSE2__, __AVX2__, __FMA__,
// __AVX512F__), so a portable build runs its SSE2 kernel even on a machine with AVX-512; a target
// attribute cannot change that, and a header-only library cannot include Eigen twice. The products
// therefore run a packed kernel of our own (gemm_kernel.inl), compiled once per instruction set inside
// `#pragma GCC target` regions (AVX-512F and AVX2+FMA) and picked at run time with
// __builtin_cpu_supports. Elsewhere (other compilers or architectures, nvcc's host pass, a machine
// without AVX2) the product is Eigen's general_matrix_matrix_product, called single-threaded on fixed row
// chunks so its blocking, and thus the bits, do not depend on the thread count either.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/expr/matmul.hpp"

#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && defined(__x86_64__) && \
    !defined(KDLOSS_NO_TARGET_CLONES)
#define KDLOSS_GEMM_OWN_KERNELS 1
#include <immintrin.h>
#else
#define KDLOSS_GEMM_OWN_KERNELS 0
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu {

/// The kernel a host product runs. automatic: AVX-512 where the CPU has it, else AVX2+FMA, else Eigen.
enum class GemmKernel { automatic, eigen, avx2, avx512 };

namespace gemm_detail {
inline GemmKernel& forced_kernel() {
  static GemmKernel k = GemmKernel::automatic;
  return k;
}
// Blocking (elements): depth, rows and columns of one packed block.
inline constexpr std::int64_t kKC = 256;
inline constexpr std::int64_t kMC = 96;
inline constexpr std::int64_t kNC = 1024;
// Rows of C per task of the Eigen path.
inline constexpr std::int64_t kEigenRows = 128;
}  // namespace gemm_detail

/// Pins the kernel of every later host product (tests compare them; benchmarks measure them). A kernel
/// the CPU lacks falls back to the next narrower one.
inline void set_gemm_kernel(GemmKernel k) { gemm_detail::forced_kernel() = k; }

/// The kernel the next host product runs.
inline GemmKernel gemm_kernel() {
#if KDLOSS_GEMM_OWN_KERNELS
  static const bool has512 = __builtin_cpu_supports("avx512f");
  static const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const GemmKernel want = gemm_detail::forced_kernel();
  if ((want == GemmKernel::automatic || want == GemmKernel::avx512) && has512) return GemmKernel::avx512;
  if (want != GemmKernel::eigen && has2) return GemmKernel::avx2;
#endif
  return GemmKernel::eigen;
}

inline const char* to_string(GemmKernel k) {
  switch (k) {
    case GemmKernel::automatic: return "automatic";
    case GemmKernel::eigen: return "eigen";
    case GemmKernel::avx2: return "avx2";
    case GemmKernel::avx512: return "avx512";
  }
  return "?";
}

} } }  // namespace kdloss::backend::cpu

#if KDLOSS_GEMM_OWN_KERNELS
// One vector type's intrinsics, by prefix (_mm256, _mm512) and suffix (ps, pd).
#define KDLOSS_GEMM_VEC(TYPE, VEC, LANES, ROWS, PFX, SFX)                  \
  template <>                                                            \
  struct Vec<TYPE> {                                                     \
    using V = VEC;                                                       \
    static constexpr int W = LANES, MR = ROWS;                           \
    static V zero() { return PFX##_setzero_##SFX(); }                    \
    static V load(const TYPE* p) { return PFX##_loadu_##SFX(p); }        \
    static void store(TYPE* p, V v) { PFX##_storeu_##SFX(p, v); }        \
    static V bcast(TYPE x) { return PFX##_set1_##SFX(x); }               \
    static V fma(V a, V b, V c) { return PFX##_fmadd_##SFX(a, b, c); }   \
    static V mul(V a, V b) { return PFX##_mul_##SFX(a, b); }             \
    static V add(V a, V b) { return PFX##_add_##SFX(a, b); }             \
  }

// ---- AVX2 + FMA: 16 registers, 6 x 2 accumulators ----
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::gemm_avx2 {
using namespace gemm_detail;
template <class T>
struct Vec;
KDLOSS_GEMM_VEC(float, __m256, 8, 6, _mm256, ps);
KDLOSS_GEMM_VEC(double, __m256d, 4, 6, _mm256, pd);
#include "kdloss/backend/cpu/gemm_kernel.inl"
} } }  // namespace kdloss::backend::cpu::gemm_avx2
#pragma GCC pop_options

// ---- AVX-512F: 32 registers, 12 x 2 accumulators ----
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::gemm_avx512 {
using namespace gemm_detail;
template <class T>
struct Vec;
KDLOSS_GEMM_VEC(float, __m512, 16, 12, _mm512, ps);
KDLOSS_GEMM_VEC(double, __m512d, 8, 12, _mm512, pd);
#include "kdloss/backend/cpu/gemm_kernel.inl"
} } }  // namespace kdloss::backend::cpu::gemm_avx512
#pragma GCC pop_options
#undef KDLOSS_GEMM_VEC
#endif  // KDLOSS_GEMM_OWN_KERNELS

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu {
namespace gemm_detail {

/// C = epilogue(beta * C) (beta = 0: C not read), for products whose A B term vanishes.
template <class T, class E>
void scale_only(const expr::Gemm<T, T, T, E>& g) {
  const T beta = static_cast<T>(g.beta);
  for (std::int64_t o = 0; o < g.outputs(); ++o)
    for (std::int64_t i = 0; i < g.m; ++i)
      for (std::int64_t j = 0; j < g.n; ++j) {
        T* p = g.c.at(o, i, j);
        *p = g.epilogue(beta == T(0) ? T(0) : beta * *p, o, i, j);
      }
}

/// An operand Eigen's kernel can read in place: one of its strides is 1.
template <class T>
bool eigen_mappable(const expr::MatOperand<const T>& x) {
  return x.col == 1 || x.row == 1;
}

/// Copies operand batch b (rows x cols) into a row-major buffer.
template <class T>
expr::MatOperand<const T> pack_plain(const expr::MatOperand<const T>& x, std::int64_t b, std::int64_t rows,
                                     std::int64_t cols, T* dst) {
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) dst[r * cols + c] = *x.at(b, r, c);
  return {dst, 0, cols, 1};
}

/// C[rows r0..r0+mr) += alpha * A B with Eigen's kernel, single-threaded (A, B mappable; C col-major
/// in the sense that c.row may be any stride: result (i, j) at i * c.row + j * c.col).
template <class T, int LhsOrder, int RhsOrder, int ResIncr>
void eigen_block(std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda, const T* b,
                 std::int64_t ldb, T* c, std::int64_t incr, std::int64_t ldc, T alpha) {
  using Eigen::Index;
  using Blocking = Eigen::internal::gemm_blocking_space<Eigen::ColMajor, T, T, Eigen::Dynamic, Eigen::Dynamic,
                                                        Eigen::Dynamic, 1, false>;
  Blocking blocking(m, n, k, 1, true);
  Eigen::internal::general_matrix_matrix_product<Index, T, LhsOrder, false, T, RhsOrder, false, Eigen::ColMajor,
                                                 ResIncr>::run(m, n, k, a, lda, b, ldb, c, incr, ldc, alpha,
                                                               blocking, nullptr);
}

template <class T>
void eigen_accumulate(std::int64_t m, std::int64_t n, std::int64_t k, const expr::MatOperand<const T>& a,
                      const expr::MatOperand<const T>& b, const expr::MatOperand<T>& c, T alpha) {
  // Eigen's kernel writes a column-major result with any row increment; a row-major C is the
  // transposed problem C^T = B^T A^T, whose result is column-major with unit increment.
  if (c.col == 1 && c.row != 1) {
    eigen_accumulate<T>(n, m, k, b.transposed(), a.transposed(), c.transposed(), alpha);
    return;
  }
  const auto dispatch_rhs = [&](auto lhs_order, const T* ap, std::int64_t lda) {
    constexpr int LO = decltype(lhs_order)::value;
    const auto run = [&](auto rhs_order, const T* bp, std::int64_t ldb) {
      constexpr int RO = decltype(rhs_order)::value;
      if (c.row == 1)
        eigen_block<T, LO, RO, 1>(m, n, k, ap, lda, bp, ldb, c.data, 1, c.col, alpha);
      else
        eigen_block<T, LO, RO, Eigen::Dynamic>(m, n, k, ap, lda, bp, ldb, c.data, c.row, c.col, alpha);
    };
    if (b.row == 1)
      run(std::integral_constant<int, Eigen::ColMajor>{}, b.data, b.col);
    else
      run(std::integral_constant<int, Eigen::RowMajor>{}, b.data, b.row);
  };
  if (a.row == 1)
    dispatch_rhs(std::integral_constant<int, Eigen::ColMajor>{}, a.data, a.col);
  else
    dispatch_rhs(std::integral_constant<int, Eigen::RowMajor>{}, a.data, a.row);
}

/// The Eigen path: fixed chunks of kEigenRows rows of C run in parallel, each single-threaded.
template <class T, class E>
void run_eigen(const expr::Gemm<T, T, T, E>& g, T* pack, int threads) {
  const T alpha = static_cast<T>(g.alpha), beta = static_cast<T>(g.beta);
  const std::int64_t per_out = g.sum_batches ? g.batch : 1;
  const bool pack_a = !eigen_mappable(g.a), pack_b = !eigen_mappable(g.b);
  T* const apack = pack;
  T* const bpack = pack + (pack_a ? g.m * g.k : 0);
  const std::int64_t chunks = (g.m + kEigenRows - 1) / kEigenRows;
  const int nt = static_cast<int>(std::min<std::int64_t>(threads, chunks));
  for (std::int64_t o = 0; o < g.outputs(); ++o) {
    for (std::int64_t bb = 0; bb < per_out; ++bb) {
      const std::int64_t b = g.sum_batches ? bb : o;
      const auto a = pack_a ? pack_plain(g.a, b, g.m, g.k, apack) : expr::MatOperand<const T>{g.a.at(b, 0, 0), 0, g.a.row, g.a.col};
      const auto bm = pack_b ? pack_plain(g.b, b, g.k, g.n, bpack) : expr::MatOperand<const T>{g.b.at(b, 0, 0), 0, g.b.row, g.b.col};
      const bool first = bb == 0, last = bb == per_out - 1;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
      for (std::int64_t q = 0; q < chunks; ++q) {
        const std::int64_t i0 = q * kEigenRows, mr = std::min(kEigenRows, g.m - i0);
        const expr::MatOperand<T> c{g.c.at(g.sum_batches ? 0 : o, i0, 0), 0, g.c.row, g.c.col};
        if (first && beta != T(1))
          for (std::int64_t i = 0; i < mr; ++i)
            for (std::int64_t j = 0; j < g.n; ++j) {
              T* p = c.at(0, i, j);
              *p = beta == T(0) ? T(0) : beta * *p;
            }
        eigen_accumulate<T>(mr, g.n, g.k, {a.at(0, i0, 0), 0, a.row, a.col}, bm, c, alpha);
        if (last && !expr::is_identity_epilogue<E>::value)
          for (std::int64_t i = 0; i < mr; ++i)
            for (std::int64_t j = 0; j < g.n; ++j) {
              T* p = c.at(0, i, j);
              *p = g.epilogue(*p, o, i0 + i, j);
            }
      }
    }
  }
}

template <class T>
std::int64_t eigen_pack_elems(std::int64_t m, std::int64_t n, std::int64_t k) {
  return m * k + k * n;
}

/// Scratch bytes with `eigen_elems` packed by the Eigen path, or the own kernels' blocks for `threads` threads.
template <class T>
std::size_t scratch_bytes(std::int64_t eigen_elems, int threads) {
  std::int64_t elems = eigen_elems;
#if KDLOSS_GEMM_OWN_KERNELS
  elems = std::max(elems, threads * std::max(gemm_avx2::thread_elems<T>(), gemm_avx512::thread_elems<T>()));
#else
  (void)threads;
#endif
  return static_cast<std::size_t>(elems) * sizeof(T) + 64;
}

}  // namespace gemm_detail

/// Bytes of scratch a host product needs (any kernel; `threads` threads).
template <class T>
std::size_t gemm_scratch_bytes(std::int64_t m, std::int64_t n, std::int64_t k, int threads) {
  return gemm_detail::scratch_bytes<T>(gemm_detail::eigen_pack_elems<T>(m, n, k), threads);
}

/// Bytes of scratch the host product g needs (any kernel; `threads` threads): as the shape-only query, but
/// the Eigen path's packs counted only for the operands it cannot read in place (neither stride 1). A 1x1
/// convolution's [C, H W] map is read in place, so its product no longer sizes a copy of the whole map.
template <class T, class E>
std::size_t gemm_scratch_bytes(const expr::Gemm<T, T, T, E>& g, int threads) {
  using gemm_detail::eigen_mappable;
  return gemm_detail::scratch_bytes<T>(
      (eigen_mappable(g.a) ? 0 : g.m * g.k) + (eigen_mappable(g.b) ? 0 : g.k * g.n), threads);
}

namespace gemm_detail {
/// The epilogue of a transposed problem: called back with (i, j) in the caller's order.
template <class E>
struct Swapped {
  E inner;
  template <class V>
  V operator()(V v, std::int64_t b, std::int64_t i, std::int64_t j) const {
    return inner(v, b, j, i);
  }
};
template <class E>
using swapped_t = std::conditional_t<expr::is_identity_epilogue<E>::value, E, Swapped<E>>;
}  // namespace gemm_detail

namespace gemm_detail {
/// Evaluates g with the kernels' orientation (C written along rows).
template <class T, class E>
void gemm_rows(const expr::Gemm<T, T, T, E>& g, void* scratch, int threads) {
  if (g.scale_only()) {
    gemm_detail::scale_only(g);
    return;
  }
  auto* base = reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(scratch) + 63) / 64 * 64);
  threads = std::max(threads, 1);
  // Little work runs on one thread (no team start-up); the split never changes the bits.
  if (g.m * g.n * g.k < kParallelThreshold * 4) threads = 1;
  switch (gemm_kernel()) {
#if KDLOSS_GEMM_OWN_KERNELS
    case GemmKernel::avx512:
      gemm_avx512::run(g, base, threads);
      return;
    case GemmKernel::avx2:
      gemm_avx2::run(g, base, threads);
      return;
#endif
    default:
      gemm_detail::run_eigen(g, base, threads);
  }
}
}  // namespace gemm_detail

/// Evaluates g (see expr/matmul.hpp) with scratch of at least gemm_scratch_bytes<T>(m, n, k, threads).
template <class T, class E>
void gemm(const expr::Gemm<T, T, T, E>& g, void* scratch, int threads) {
  if (g.m == 0 || g.n == 0 || g.outputs() == 0) return;
  // The kernels write C along rows: a column-major C is the transposed problem C^T = B^T A^T. So is a
  // product with a few columns (a bias gradient's grad_y * 1): micro tiles are wider than tall, and
  // padding n = 1 to a whole tile would multiply the work.
  const bool narrow = g.n < 8 && g.m > g.n;
  if ((narrow || std::abs(g.c.col) > std::abs(g.c.row)) && !g.scale_only()) {
    expr::Gemm<T, T, T, gemm_detail::swapped_t<E>> t;
    t.batch = g.batch;
    t.m = g.n;
    t.n = g.m;
    t.k = g.k;
    t.a = g.b.transposed();
    t.b = g.a.transposed();
    t.c = g.c.transposed();
    t.alpha = g.alpha;
    t.beta = g.beta;
    t.sum_batches = g.sum_batches;
    if constexpr (expr::is_identity_epilogue<E>::value)
      t.epilogue = g.epilogue;
    else
      t.epilogue = gemm_detail::Swapped<E>{g.epilogue};
    gemm_detail::gemm_rows(t, scratch, threads);
    return;
  }
  gemm_detail::gemm_rows(g, scratch, threads);
}

// ---- Operands packed once for many products ----
//
// A caller running many single-threaded products on slices of the same operands (the attention's tile
// pairs) packs each operand once into the layout the kernel's micro tiles read (gemm_pack_a, gemm_pack_b:
// depth in blocks of kb <= 256, rows or columns in whole panels), then runs gemm_packed on slices of them.
// The products have the same bits as gemm() on the same operands whenever their depth blocks are the same
// (kb = 256, or a depth of at most kb), and do not depend on the thread count. On the Eigen path the
// "packed" operand is a row-major copy, and gemm_packed is the Eigen path's product.

/// An operand packed for the kernel that was current when it was laid out, or a slice of one.
template <class T>
struct GemmPacked {
  GemmKernel kernel = GemmKernel::eigen;
  bool is_a = true;                  // the left operand (m x k) or the right one (k x n)
  T* data = nullptr;                 // own kernels: the layout
  std::int64_t outer = 0, depth = 0;  // rows (A) or columns (B), and depth, of the whole operand
  std::int64_t ext = 0, kb = 0;       // own kernels: outer rounded up to a panel; depth block
  std::int64_t outer0 = 0, depth0 = 0;  // where the slice starts
  expr::MatOperand<const T> plain{};  // Eigen: the row-major copy of the whole operand

  /// Rows (A) or columns (B) from outer0 and depth from depth0 on. outer0 must be a multiple of
  /// gemm_pack_panel<T>() and depth0 a multiple of kb.
  GemmPacked slice(std::int64_t o, std::int64_t d) const {
    GemmPacked s = *this;
    s.outer0 += o;
    s.depth0 += d;
    return s;
  }
};

namespace gemm_detail {
inline std::int64_t round_up(std::int64_t n, std::int64_t m) { return (n + m - 1) / m * m; }
/// Panel height (A: MR) or width (B: NR) of kernel k for T; 1 on the Eigen path.
template <class T>
std::int64_t panel_of(GemmKernel k, bool is_a) {
  switch (k) {
#if KDLOSS_GEMM_OWN_KERNELS
    case GemmKernel::avx512:
      return is_a ? gemm_avx512::Shape<T>::MR : gemm_avx512::Shape<T>::NR;
    case GemmKernel::avx2:
      return is_a ? gemm_avx2::Shape<T>::MR : gemm_avx2::Shape<T>::NR;
#endif
    default:
      (void)is_a;
      return 1;
  }
}
template <class T>
GemmPacked<T> packed_layout(bool is_a, std::int64_t outer, std::int64_t depth, std::int64_t kb, T* dst) {
  GemmPacked<T> p;
  p.kernel = gemm_kernel();
  p.is_a = is_a;
  p.data = dst;
  p.outer = outer;
  p.depth = depth;
  p.kb = std::max<std::int64_t>(1, std::min(kb, kKC));
  p.ext = round_up(outer, panel_of<T>(p.kernel, is_a));
  if (p.kernel == GemmKernel::eigen)
    p.plain = is_a ? expr::MatOperand<const T>{dst, 0, depth, 1} : expr::MatOperand<const T>{dst, 0, outer, 1};
  return p;
}
}  // namespace gemm_detail

/// The panel multiple a slice of a packed A (is_a) or B must start at, for any kernel: every tile edge that is a
/// multiple of it is a panel edge.
template <class T>
constexpr std::int64_t gemm_pack_panel() {
  return 96;  // a multiple of MR (6, 12) and NR (8, 16, 32) of every kernel and type
}

/// Bytes of one packed operand of `outer` rows (A) or columns (B) and `depth` (any kernel).
template <class T>
std::size_t gemm_pack_bytes(std::int64_t outer, std::int64_t depth) {
  return static_cast<std::size_t>(gemm_detail::round_up(outer, gemm_pack_panel<T>()) * depth) * sizeof(T);
}

/// The layout of A (m x k) packed into dst (gemm_pack_bytes<T>(m, k) bytes) with depth blocks of kb; filled by
/// gemm_pack_part (in parts, e.g. by several threads) or gemm_pack_a.
template <class T>
GemmPacked<T> gemm_packed_a(std::int64_t m, std::int64_t k, std::int64_t kb, T* dst) {
  return gemm_detail::packed_layout(true, m, k, kb, dst);
}
/// The layout of B (k x n) packed into dst (gemm_pack_bytes<T>(n, k) bytes).
template <class T>
GemmPacked<T> gemm_packed_b(std::int64_t k, std::int64_t n, std::int64_t kb, T* dst) {
  return gemm_detail::packed_layout(false, n, k, kb, dst);
}

/// Packs rows (A) or columns (B) [o0, o1) and depth [p0, p1) of batch b of x into p's layout. o0 and p0 must
/// be multiples of gemm_pack_panel<T>() and p.kb, and o1 and p1 multiples of them or the operand's end.
template <class T>
void gemm_pack_part(const GemmPacked<T>& p, const expr::MatOperand<const T>& x, std::int64_t b, std::int64_t o0,
                    std::int64_t o1, std::int64_t p0, std::int64_t p1) {
  switch (p.kernel) {
#if KDLOSS_GEMM_OWN_KERNELS
    case GemmKernel::avx512:
      if (p.is_a)
        gemm_avx512::pack_a_part(x, b, p.outer, p.depth, p.kb, o0, o1, p0, p1, p.data);
      else
        gemm_avx512::pack_b_part(x, b, p.depth, p.outer, p.kb, o0, o1, p0, p1, p.data);
      return;
    case GemmKernel::avx2:
      if (p.is_a)
        gemm_avx2::pack_a_part(x, b, p.outer, p.depth, p.kb, o0, o1, p0, p1, p.data);
      else
        gemm_avx2::pack_b_part(x, b, p.depth, p.outer, p.kb, o0, o1, p0, p1, p.data);
      return;
#endif
    default:
      for (std::int64_t o = o0; o < o1; ++o)
        for (std::int64_t d = p0; d < p1; ++d) {
          const T v = p.is_a ? *x.at(b, o, d) : *x.at(b, d, o);
          p.data[p.is_a ? o * p.depth + d : d * p.outer + o] = v;
        }
  }
}

/// A (m x k, batch b of a) packed into dst (gemm_pack_bytes<T>(m, k) bytes), depth blocks of kb.
template <class T>
GemmPacked<T> gemm_pack_a(const expr::MatOperand<const T>& a, std::int64_t b, std::int64_t m, std::int64_t k,
                          std::int64_t kb, T* dst) {
  const GemmPacked<T> p = gemm_packed_a(m, k, kb, dst);
  gemm_pack_part(p, a, b, 0, m, 0, k);
  return p;
}
/// B (k x n, batch b of bm) packed into dst (gemm_pack_bytes<T>(n, k) bytes), depth blocks of kb.
template <class T>
GemmPacked<T> gemm_pack_b(const expr::MatOperand<const T>& bm, std::int64_t b, std::int64_t k, std::int64_t n,
                          std::int64_t kb, T* dst) {
  const GemmPacked<T> p = gemm_packed_b(k, n, kb, dst);
  gemm_pack_part(p, bm, b, 0, n, 0, k);
  return p;
}

/// C (m x n) = alpha * A B + beta * C (beta = 0: C not read), single-threaded, A and B slices of packed
/// operands (packed for the same kernel with the same kb). Each of the product's depth blocks of kb must be
/// one of the operands' (the slices start at a block, and the depth k ends at a block's end or the operand's).
template <class T>
void gemm_packed(std::int64_t m, std::int64_t n, std::int64_t k, const GemmPacked<T>& a, const GemmPacked<T>& b,
                 const expr::MatOperand<T>& c, double alpha, double beta) {
  if (m == 0 || n == 0) return;
  expr::Gemm<T, T, T> g;
  g.batch = 1;
  g.m = m;
  g.n = n;
  g.k = k;
  g.c = c;
  g.alpha = alpha;
  g.beta = beta;
  if (g.scale_only()) {
    gemm_detail::scale_only(g);
    return;
  }
  switch (a.kernel) {
#if KDLOSS_GEMM_OWN_KERNELS
    case GemmKernel::avx512:
      gemm_avx512::run_packed<T>(m, n, k, a.kb, a.data + a.depth0 * a.ext, a.ext, a.outer0,
                                 b.data + b.depth0 * b.ext, b.ext, b.outer0, c, static_cast<T>(alpha),
                                 static_cast<T>(beta));
      return;
    case GemmKernel::avx2:
      gemm_avx2::run_packed<T>(m, n, k, a.kb, a.data + a.depth0 * a.ext, a.ext, a.outer0,
                               b.data + b.depth0 * b.ext, b.ext, b.outer0, c, static_cast<T>(alpha),
                               static_cast<T>(beta));
      return;
#endif
    default:
      g.a = {a.plain.at(0, a.outer0, a.depth0), 0, a.plain.row, a.plain.col};
      g.b = {b.plain.at(0, b.depth0, b.outer0), 0, b.plain.row, b.plain.col};
      gemm_detail::run_eigen(g, static_cast<T*>(nullptr), 1);
  }
}

} } }  // namespace kdloss::backend::cpu
