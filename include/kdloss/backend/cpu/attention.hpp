// kdloss/backend/cpu/attention.hpp: the tiled online-softmax attention of expr/attention.hpp on the host,
// forward and flash-attention backward, never storing the n_q x n_k matrix.
//
// Every tile of scores is held transposed, keys as rows and queries as columns (St[j][i] = S[i, j], a
// row of St padded to whole packets), so the per-query running max, sum, log-sum-exp and D are vectors
// along a row and every softmax step runs at full packet width. The products run the library's packed
// GEMM kernel (backend/cpu/gemm.hpp: AVX-512 / AVX2 kernels picked at run time) single-threaded on each
// tile, through gemm_packed: every input operand (K, V, Q, grad_o, in the orientations the products read
// them) is packed into the kernel's panels once per call, O(B N C) scratch, and each tile pair only packs
// its own score tile; the exp and max steps run in functions compiled per instruction set, each at its
// own vector width (online_tile / grad_tile, picked at run time).
//
// Forward: tasks (batch, query tile) are split between threads. For each key tile: St = scale K Q^T,
// the running max m and sum l of every query are updated (online softmax), St becomes exp(St - m), the
// accumulator O (query tile x dv) is rescaled by exp(m_old - m_new) and O += St^T V. At the end
// o = O / l and lse = m + log l.
//
// Backward (recomputing P = exp(S - lse) from the kept lse; D = rowsum(grad_o * o) first) visits every
// (query tile I, key tile J) pair once and runs five products on it:
//   St = scale K_J Q_I^T, dPt = V_J grad_o_I^T, Pt = exp(St - lse_I), dSt = Pt (dPt - D_I),
//   dV_J += Pt grad_o_I,  dK_J += scale dSt Q_I,  dQ_I += scale dSt^T K_J.
// The pairs run in steps (a wavefront): in step t, query tile I meets key tile (I + t) mod nJ (or the
// mirror when there are more query tiles), so no two tasks of a step share an accumulator, and every
// dQ_I, dK_J, dV_J sums its pairs in the order of the steps: no races, no atomics, and the bits do not
// depend on the thread count. A gradient whose rows are contiguous is summed in place; others in a
// row-major accumulator of the scratch (O(N C)), copied to the strided output at the end.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kdloss/backend/cpu/gemm.hpp"
#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/packet.hpp"
#include "kdloss/expr/attention.hpp"
#include "kdloss/expr/matmul.hpp"

// clang warns at every 64-byte vector passed between these inline functions that the ABI would differ
// without AVX-512 (no call crosses a compiled boundary: the kernels are flattened): off for this header.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpsabi"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu {
namespace attention_detail {

// Tile sizes (elements), multiples of the GEMM's panels (gemm_pack_panel) and of kDepthBlock. Forward:
// kQueries query columns x kKeys key rows; backward: kBackQueries x kBackKeys.
inline constexpr std::int64_t kQueries = 192;
inline constexpr std::int64_t kKeys = 384;
inline constexpr std::int64_t kBackQueries = 192;
inline constexpr std::int64_t kBackKeys = 192;
// Depth block of the products whose depth runs over keys or queries (the operands packed along n_q or n_k),
// and the rows packed per task when the operands are packed.
inline constexpr std::int64_t kDepthBlock = 192;
inline constexpr std::int64_t kPackRows = 192;
// Depth block of the products whose depth runs over features (the GEMM's own, so those products have its bits).
inline constexpr std::int64_t kFeatureBlock = gemm_detail::kKC;
static_assert(kQueries % kDepthBlock == 0 && kKeys % kDepthBlock == 0 && kBackQueries == kDepthBlock &&
                  kBackKeys == kDepthBlock && kPackRows % kDepthBlock == 0,
              "the tiles must be whole depth blocks");

/// Lanes of one packet of A: a row of a score tile is padded to whole packets of 64 bytes (one AVX-512
/// register, two AVX2 ones, four SSE2 ones).
template <class A>
inline constexpr int kLanes = static_cast<int>(64 / sizeof(A));

inline std::int64_t round_up(std::int64_t n, std::int64_t m) { return (n + m - 1) / m * m; }
inline std::size_t align64(std::size_t n) { return (n + 63) / 64 * 64; }

/// Hands out 64-byte aligned pieces of one thread's scratch (a null base only counts).
class Slicer {
 public:
  explicit Slicer(void* base) : base_(static_cast<char*>(base)) {}
  template <class A>
  A* take(std::int64_t n) {
    char* p = base_ ? base_ + used_ : nullptr;
    used_ += align64(static_cast<std::size_t>(n) * sizeof(A));
    return reinterpret_cast<A*>(p);
  }
  std::size_t used() const { return used_; }

 private:
  char* base_;
  std::size_t used_ = 0;
};

// Everything below that is compiled per instruction set lives in the build's ISA namespace
// (backend/cpu/parallel.hpp), so a unit nvcc compiles never shares its symbols.
inline namespace KDLOSS_CPU_ISA_NAMESPACE {

/// Bytes bytes of A as a GNU vector, U the same for unaligned, aliasing loads and stores, I the integers
/// of the same width. The tile kernels take the width of the instruction set they run on (below): GCC
/// lowers a comparison or a select on a vector wider than the machine's registers lane by lane, which on
/// AVX2 made the 64-byte kernels scalar.
template <class A, int Bytes>
struct Lanes;
template <int Bytes>
struct Lanes<float, Bytes> {
  typedef float V __attribute__((vector_size(Bytes)));
  typedef float U __attribute__((vector_size(Bytes), aligned(4), may_alias));
  typedef std::int32_t I __attribute__((vector_size(Bytes)));
};
template <int Bytes>
struct Lanes<double, Bytes> {
  typedef double V __attribute__((vector_size(Bytes)));
  typedef double U __attribute__((vector_size(Bytes), aligned(8), may_alias));
  typedef std::int64_t I __attribute__((vector_size(Bytes)));
};
template <class A, int Bytes>
KDLOSS_FORCEINLINE typename Lanes<A, Bytes>::V vload(const A* p) {
  return *reinterpret_cast<const typename Lanes<A, Bytes>::U*>(p);
}
template <class A, int Bytes>
KDLOSS_FORCEINLINE void vstore(A* p, const typename Lanes<A, Bytes>::V& v) {
  *reinterpret_cast<typename Lanes<A, Bytes>::U*>(p) = v;
}
template <class A, int Bytes>
KDLOSS_FORCEINLINE typename Lanes<A, Bytes>::V vset(A x) {
  return typename Lanes<A, Bytes>::V{} + x;
}
/// exp lane by lane: float by packet.hpp's polynomial (within 2 ulp), double by std::exp. In a
/// translation unit nvcc compiles, packet.hpp has no GNU-vector polynomial (KDLOSS_PACKET_GNU_VECTORS is
/// 0 there): the host path of such a unit takes std::exp for float too.
template <class A, int Bytes>
KDLOSS_FORCEINLINE typename Lanes<A, Bytes>::V vexp(const typename Lanes<A, Bytes>::V& x) {
  if constexpr (std::is_same_v<A, float> && KDLOSS_PACKET_GNU_VECTORS) {
    return math::packet_detail::packet_exp_f32<typename Lanes<A, Bytes>::V, typename Lanes<A, Bytes>::I>(x);
  } else {
    typename Lanes<A, Bytes>::V r = x;
    for (std::size_t l = 0; l < Bytes / sizeof(A); ++l) r[l] = std::exp(r[l]);
    return r;
  }
}

/// One key tile of transposed scores s (rows x ld, columns in whole packets) folded into the running
/// max m and sum l of its query columns (online softmax): s becomes exp(s - m_new), corr the factor
/// exp(m_old - m_new) the accumulator is rescaled by, shift the m_new subtracted (0 while a column has
/// seen only -inf, so an all -inf column gives l = 0 and a NaN output, as softmax does). NaN scores
/// are skipped by the max and reach l through exp; a +inf score gives NaN (inf - inf), as torch does.
/// Every step is lane by lane, so the bits do not depend on the vector width Bytes.
template <class A, int Bytes>
KDLOSS_FORCEINLINE void online_tile_at(A* s, std::int64_t rows, std::int64_t ld, A* m, A* l, A* corr, A* shift) {
  using V = typename Lanes<A, Bytes>::V;
  constexpr int W = static_cast<int>(Bytes / sizeof(A));
  const auto load = [](const A* p) { return vload<A, Bytes>(p); };
  const auto store = [](A* p, const V& v) { vstore<A, Bytes>(p, v); };
  const auto set = [](A x) { return vset<A, Bytes>(x); };
  for (std::int64_t c = 0; c < ld; c += W) {
    // Four rows at a time: independent max chains.
    V m0 = load(m + c), m1 = m0, m2 = m0, m3 = m0;
    std::int64_t j = 0;
    for (; j + 4 <= rows; j += 4) {
      const V x0 = load(s + j * ld + c), x1 = load(s + (j + 1) * ld + c), x2 = load(s + (j + 2) * ld + c),
              x3 = load(s + (j + 3) * ld + c);
      m0 = x0 > m0 ? x0 : m0;
      m1 = x1 > m1 ? x1 : m1;
      m2 = x2 > m2 ? x2 : m2;
      m3 = x3 > m3 ? x3 : m3;
    }
    for (; j < rows; ++j) {
      const V x = load(s + j * ld + c);
      m0 = x > m0 ? x : m0;
    }
    m0 = m1 > m0 ? m1 : m0;
    m2 = m3 > m2 ? m3 : m2;
    const V mn = m2 > m0 ? m2 : m0, mo = load(m + c);
    const V ms = mn > set(-std::numeric_limits<A>::infinity()) ? mn : set(A(0));
    store(corr + c, mo < mn ? vexp<A, Bytes>(mo - ms) : set(A(1)));
    store(m + c, mn);
    store(shift + c, ms);
  }
  for (std::int64_t c = 0; c < ld; c += W) {
    const V sh = load(shift + c);
    V r0 = set(A(0)), r1 = r0;
    std::int64_t j = 0;
    for (; j + 2 <= rows; j += 2) {
      const V p0 = vexp<A, Bytes>(load(s + j * ld + c) - sh), p1 = vexp<A, Bytes>(load(s + (j + 1) * ld + c) - sh);
      store(s + j * ld + c, p0);
      store(s + (j + 1) * ld + c, p1);
      r0 += p0;
      r1 += p1;
    }
    if (j < rows) {
      const V p0 = vexp<A, Bytes>(load(s + j * ld + c) - sh);
      store(s + j * ld + c, p0);
      r0 += p0;
    }
    store(l + c, load(l + c) * load(corr + c) + (r0 + r1));
  }
}

/// Backward on one tile of transposed scores: p = exp(s - lse[col]) (written over s when keep_p), and
/// when dp is non-null dp = p (dp - dd[col]) (dS). Lane by lane, like online_tile_at.
template <class A, int Bytes>
KDLOSS_FORCEINLINE void grad_tile_at(A* s, A* dp, std::int64_t rows, std::int64_t ld, const A* lse, const A* dd,
                                     bool keep_p) {
  using V = typename Lanes<A, Bytes>::V;
  constexpr int W = static_cast<int>(Bytes / sizeof(A));
  for (std::int64_t c = 0; c < ld; c += W) {
    const V lv = vload<A, Bytes>(lse + c), dv = vload<A, Bytes>(dd + c);
    for (std::int64_t j = 0; j < rows; ++j) {
      A* sp = s + j * ld + c;
      const V p = vexp<A, Bytes>(vload<A, Bytes>(sp) - lv);
      if (keep_p) vstore<A, Bytes>(sp, p);
      if (dp) {
        A* d = dp + j * ld + c;
        vstore<A, Bytes>(d, p * (vload<A, Bytes>(d) - dv));
      }
    }
  }
}

// The tile kernels run at the machine's vector width, picked once at run time: AVX-512 (x86-64-v4) in
// 64-byte vectors, AVX2 (v3) in 32-byte ones, the baseline in 16-byte ones, each compiled for its
// instruction set with everything it calls inlined. Elsewhere (other compilers, nvcc's host pass,
// sanitizer builds) one 64-byte version as the compiler lowers it.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && defined(__x86_64__) && \
    defined(__linux__) && __GNUC__ >= 12 && defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(KDLOSS_NO_TARGET_CLONES)
#define KDLOSS_ATTENTION_ISA_KERNELS 1
#else
#define KDLOSS_ATTENTION_ISA_KERNELS 0
#endif

#if KDLOSS_ATTENTION_ISA_KERNELS
template <class A>
__attribute__((target("arch=x86-64-v4"), noinline)) KDLOSS_CPU_FLATTEN void online_tile_v4(
    A* s, std::int64_t rows, std::int64_t ld, A* m, A* l, A* corr, A* shift) {
  online_tile_at<A, 64>(s, rows, ld, m, l, corr, shift);
}
template <class A>
__attribute__((target("arch=x86-64-v3"), noinline)) KDLOSS_CPU_FLATTEN void online_tile_v3(
    A* s, std::int64_t rows, std::int64_t ld, A* m, A* l, A* corr, A* shift) {
  online_tile_at<A, 32>(s, rows, ld, m, l, corr, shift);
}
template <class A>
__attribute__((target("arch=x86-64-v4"), noinline)) KDLOSS_CPU_FLATTEN void grad_tile_v4(
    A* s, A* dp, std::int64_t rows, std::int64_t ld, const A* lse, const A* dd, bool keep_p) {
  grad_tile_at<A, 64>(s, dp, rows, ld, lse, dd, keep_p);
}
template <class A>
__attribute__((target("arch=x86-64-v3"), noinline)) KDLOSS_CPU_FLATTEN void grad_tile_v3(
    A* s, A* dp, std::int64_t rows, std::int64_t ld, const A* lse, const A* dd, bool keep_p) {
  grad_tile_at<A, 32>(s, dp, rows, ld, lse, dd, keep_p);
}
/// 4 (x86-64-v4), 3 (v3) or 0 (the baseline).
inline int attention_isa() {
  static const int isa = __builtin_cpu_supports("x86-64-v4") ? 4 : __builtin_cpu_supports("x86-64-v3") ? 3 : 0;
  return isa;
}
#endif

template <class A>
KDLOSS_CPU_FLATTEN void online_tile(A* s, std::int64_t rows, std::int64_t ld, A* m, A* l, A* corr, A* shift) {
#if KDLOSS_ATTENTION_ISA_KERNELS
  switch (attention_isa()) {
    case 4: return online_tile_v4(s, rows, ld, m, l, corr, shift);
    case 3: return online_tile_v3(s, rows, ld, m, l, corr, shift);
    default: return online_tile_at<A, 16>(s, rows, ld, m, l, corr, shift);
  }
#else
  online_tile_at<A, 64>(s, rows, ld, m, l, corr, shift);
#endif
}

template <class A>
KDLOSS_CPU_FLATTEN void grad_tile(A* s, A* dp, std::int64_t rows, std::int64_t ld, const A* lse, const A* dd,
                                  bool keep_p) {
#if KDLOSS_ATTENTION_ISA_KERNELS
  switch (attention_isa()) {
    case 4: return grad_tile_v4(s, dp, rows, ld, lse, dd, keep_p);
    case 3: return grad_tile_v3(s, dp, rows, ld, lse, dd, keep_p);
    default: return grad_tile_at<A, 16>(s, dp, rows, ld, lse, dd, keep_p);
  }
#else
  grad_tile_at<A, 64>(s, dp, rows, ld, lse, dd, keep_p);
#endif
}

}  // namespace KDLOSS_CPU_ISA_NAMESPACE

/// One operand of every batch packed once per call (gemm_pack_a / gemm_pack_b): batch b's layout at
/// base + b * per_batch. The n_q or n_k dimension is `outer` when along_outer, else `depth`.
template <class A>
struct PackedAll {
  A* base = nullptr;
  std::int64_t per_batch = 0;
  bool is_a = true, along_outer = true;
  std::int64_t outer = 0, depth = 0, kb = 0;
  GemmPacked<A> at(std::int64_t b) const {
    A* p = base + b * per_batch;
    return is_a ? gemm_packed_a<A>(outer, depth, kb, p) : gemm_packed_b<A>(depth, outer, kb, p);
  }
  /// Packs rows [r0, r1) of the n_q or n_k dimension of batch b of x.
  void pack(const expr::MatOperand<const A>& x, std::int64_t b, std::int64_t r0, std::int64_t r1) const {
    if (along_outer)
      gemm_pack_part(at(b), x, b, r0, r1, 0, depth);
    else
      gemm_pack_part(at(b), x, b, 0, outer, r0, r1);
  }
};

/// Carves a PackedAll from sl (want false: none). A: outer x depth; B: depth x outer. along_outer: the n_q or
/// n_k dimension is outer (else depth).
template <class A>
PackedAll<A> packed_all(Slicer& sl, bool want, bool is_a, bool along_outer, std::int64_t batch, std::int64_t outer,
                        std::int64_t depth, std::int64_t kb) {
  PackedAll<A> p;
  if (!want) return p;
  p.is_a = is_a;
  p.along_outer = along_outer;
  p.outer = outer;
  p.depth = depth;
  p.kb = kb;
  p.per_batch = static_cast<std::int64_t>(gemm_pack_bytes<A>(outer, depth) / sizeof(A));
  p.base = sl.take<A>(batch * p.per_batch);
  return p;
}

/// One operand to pack once per call: where, from what, and its extent along n_q or n_k.
template <class A>
struct PackJob {
  const PackedAll<A>* to;
  expr::MatOperand<const A> from;
  std::int64_t rows;
};

/// Tasks of packing every job of every batch: (batch, rows of kPackRows).
template <class A, std::size_t N>
std::int64_t pack_chunks(const PackJob<A> (&jobs)[N]) {
  std::int64_t most = 0;
  for (std::size_t i = 0; i < N; ++i) most = std::max(most, jobs[i].rows);
  return (most + kPackRows - 1) / kPackRows;
}
/// Runs packing task t (of batch * pack_chunks(jobs)).
template <class A, std::size_t N>
void pack_task(const PackJob<A> (&jobs)[N], std::int64_t t) {
  const std::int64_t chunks = pack_chunks(jobs), b = t / chunks, r0 = (t % chunks) * kPackRows;
  for (std::size_t i = 0; i < N; ++i)
    if (jobs[i].to->base != nullptr && r0 < jobs[i].rows)
      jobs[i].to->pack(jobs[i].from, b, r0, std::min(jobs[i].rows, r0 + kPackRows));
}

/// Rows [r0, ...) of operand x of batch b read transposed (columns = rows of x), as a batch-free operand.
template <class T>
expr::MatOperand<const T> rows_of_t(const expr::MatOperand<const T>& x, std::int64_t b, std::int64_t r0) {
  return {x.at(b, r0, 0), 0, x.col, x.row};
}
template <class A>
expr::MatOperand<const A> tile_rows(const A* p, std::int64_t ld) {
  return {p, 0, ld, 1};
}
template <class A>
expr::MatOperand<const A> tile_cols(const A* p, std::int64_t ld) {
  return {p, 0, 1, ld};
}

/// One forward task's scratch, carved from `base` (null: sizes only).
template <class A>
struct ForwardScratch {
  std::int64_t bq, bk, ld;
  A *qt, *pt;  // the task's Q^T (d x bq) and a tile's P^T (bq x bk), packed
  A *s, *acc, *m, *l, *corr, *shift;
  std::size_t bytes;
  template <class T>
  ForwardScratch(const expr::AttentionForward<T, A>& f, void* base) {
    bq = std::min(kQueries, f.n_q);
    bk = std::min(kKeys, f.n_k);
    ld = round_up(bq, kLanes<A>);
    Slicer sl(base);
    qt = sl.take<A>(static_cast<std::int64_t>(gemm_pack_bytes<A>(bq, f.d) / sizeof(A)));
    pt = sl.take<A>(static_cast<std::int64_t>(gemm_pack_bytes<A>(bq, bk) / sizeof(A)));
    s = sl.take<A>(bk * ld);
    acc = sl.take<A>(bq * f.dv);
    m = sl.take<A>(ld);
    l = sl.take<A>(ld);
    corr = sl.take<A>(ld);
    shift = sl.take<A>(ld);
    bytes = sl.used();
  }
};

/// One backward task's scratch, carved from `base`.
template <class A>
struct BackwardScratch {
  std::int64_t bq, bk, ld;  // query columns, key rows, padded row
  A* tile;                  // one score tile packed (P^T, dS^T or dS)
  A *s, *dp, *lse, *dd;
  std::size_t bytes;
  template <class T>
  BackwardScratch(const expr::AttentionBackward<T, A>& g, void* base) {
    bq = std::min(kBackQueries, g.n_q);
    bk = std::min(kBackKeys, g.n_k);
    ld = round_up(bq, kLanes<A>);
    Slicer sl(base);
    tile = sl.take<A>(static_cast<std::int64_t>(std::max(gemm_pack_bytes<A>(bk, bq), gemm_pack_bytes<A>(bq, bk)) /
                                                sizeof(A)));
    s = sl.take<A>(bk * ld);
    dp = sl.take<A>(bk * ld);
    lse = sl.take<A>(ld);
    dd = sl.take<A>(ld);
    bytes = sl.used();
  }
};

/// The forward's operands packed once per call: K as the left operand of S^T = K Q^T, V as the right one of
/// O += P^T V.
template <class A>
struct ForwardShared {
  PackedAll<A> k, v;
  std::size_t bytes;
  template <class T>
  ForwardShared(const expr::AttentionForward<T, A>& f, void* base) {
    Slicer sl(base);
    k = packed_all<A>(sl, true, true, true, f.batch, f.n_k, f.d, kFeatureBlock);
    v = packed_all<A>(sl, true, false, false, f.batch, f.dv, f.n_k, kDepthBlock);
    bytes = sl.used();
  }
};

/// Where one gradient is summed: the output itself when its rows are contiguous (no scratch), else a
/// row-major accumulator in the scratch, copied out at the end (a channels-first output written in place
/// would make the products run transposed, about 8% slower).
template <class A>
struct GradTarget {
  expr::MatOperand<A> acc;  // null data: not wanted
  bool copy = false;
};

/// The backward's shared scratch: D and the accumulators that cannot be the outputs themselves.
template <class A>
struct BackwardShared {
  A* dd;
  GradTarget<A> dq, dk, dv;
  // Packed once per call: K and V as left operands (S^T = K Q^T, dP^T = V grad_o^T), Q^T and grad_o^T as
  // right ones of those, grad_o, Q and K as the right operands of dV, dK and dQ (depth over n_q or n_k).
  PackedAll<A> k_a, v_a, qt_b, got_b, go_b, q_b, k_b;
  std::size_t bytes;
  template <class T>
  BackwardShared(const expr::AttentionBackward<T, A>& g, void* base) {
    Slicer sl(base);
    const bool want_q = g.grad_q.data != nullptr, want_k = g.grad_k.data != nullptr, want_ds = want_q || want_k;
    dd = sl.take<A>(want_ds ? g.batch * g.n_q : 0);
    k_a = packed_all<A>(sl, true, true, true, g.batch, g.n_k, g.d, kFeatureBlock);
    qt_b = packed_all<A>(sl, true, false, true, g.batch, g.n_q, g.d, kFeatureBlock);
    v_a = packed_all<A>(sl, want_ds, true, true, g.batch, g.n_k, g.dv, kFeatureBlock);
    got_b = packed_all<A>(sl, want_ds, false, true, g.batch, g.n_q, g.dv, kFeatureBlock);
    go_b = packed_all<A>(sl, g.grad_v.data != nullptr, false, false, g.batch, g.dv, g.n_q, kDepthBlock);
    q_b = packed_all<A>(sl, want_k, false, false, g.batch, g.d, g.n_q, kDepthBlock);
    k_b = packed_all<A>(sl, want_q, false, false, g.batch, g.d, g.n_k, kDepthBlock);
    const auto target = [&](const expr::MatOperand<T>& out, std::int64_t rows, std::int64_t cols) {
      GradTarget<A> t;
      if (out.data == nullptr) return t;
      if (out.col == 1) {
        t.acc = {out.data, out.batch, out.row, 1};
      } else {
        t.acc = {sl.take<A>(g.batch * rows * cols), rows * cols, cols, 1};
        t.copy = true;
      }
      return t;
    };
    dq = target(g.grad_q, g.n_q, g.d);
    dk = target(g.grad_k, g.n_k, g.d);
    dv = target(g.grad_v, g.n_k, g.dv);
    bytes = sl.used();
  }
};

/// Rows from r0 of batch b of x, as a batch-free operand.
template <class A>
expr::MatOperand<A> rows_at(const expr::MatOperand<A>& x, std::int64_t b, std::int64_t r0) {
  return {x.at(b, r0, 0), 0, x.row, x.col};
}

/// Sets `cols` elements of row r of batch b of x to zero.
template <class A>
void zero_row(const expr::MatOperand<A>& x, std::int64_t b, std::int64_t r, std::int64_t cols) {
  for (std::int64_t c = 0; c < cols; ++c) *x.at(b, r, c) = A(0);
}

/// Runs body(task, thread) for task < tasks on at most `threads` threads.
template <class F>
void for_tasks(std::int64_t tasks, int threads, F body) {
  const int nt = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, tasks)));
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
  for (std::int64_t t = 0; t < tasks; ++t) body(t, nt > 1 ? thread_id() : 0);
}

/// Copies acc (rows x cols, row-major) into operand rows [r0, r0 + rows) of batch b.
template <class T, class A>
void store_rows(const A* acc, std::int64_t rows, std::int64_t cols, const expr::MatOperand<T>& out, std::int64_t b,
                std::int64_t r0) {
  for (std::int64_t r = 0; r < rows; ++r) {
    T* o = out.at(b, r0 + r, 0);
    const A* a = acc + r * cols;
    if (out.col == 1)
      for (std::int64_t c = 0; c < cols; ++c) o[c] = static_cast<T>(a[c]);
    else
      for (std::int64_t c = 0; c < cols; ++c) o[c * out.col] = static_cast<T>(a[c]);
  }
}

/// vals[0..n) into dst, the padding up to ld set to 0.
template <class A>
void load_padded(const A* vals, std::int64_t n, std::int64_t ld, A* dst) {
  std::copy(vals, vals + n, dst);
  std::fill(dst + n, dst + ld, A(0));
}

}  // namespace attention_detail

/// Bytes of scratch attention_forward needs with `threads` threads.
template <class T, class Acc>
std::size_t attention_forward_scratch_bytes(const expr::AttentionForward<T, Acc>& f, int threads) {
  static_assert(std::is_same_v<T, Acc>, "the host backend computes float and double in their own type");
  if (f.batch == 0 || f.n_q == 0) return 0;
  return attention_detail::ForwardShared<Acc>(f, nullptr).bytes +
         static_cast<std::size_t>(std::max(threads, 1)) * attention_detail::ForwardScratch<Acc>(f, nullptr).bytes + 64;
}

/// o (and lse when non-null) of f; scratch holds attention_forward_scratch_bytes(f, threads).
template <class T, class Acc>
void attention_forward(const expr::AttentionForward<T, Acc>& f, void* scratch, int threads) {
  using namespace attention_detail;
  using A = Acc;
  if (f.batch == 0 || f.n_q == 0) return;
  threads = std::max(threads, 1);
  char* base = reinterpret_cast<char*>(align64(reinterpret_cast<std::uintptr_t>(scratch)));
  const ForwardShared<A> sh(f, base);
  base += sh.bytes;
  const std::size_t per_thread = ForwardScratch<A>(f, nullptr).bytes;
  const std::int64_t qtiles = (f.n_q + kQueries - 1) / kQueries;
  const int nt = f.batch * f.n_q * f.n_k * (f.d + f.dv) > kParallelThreshold ? threads : 1;
  const PackJob<A> jobs[] = {{&sh.k, f.k, f.n_k}, {&sh.v, f.v, f.n_k}};
  for_tasks(f.batch * pack_chunks(jobs), nt, [&](std::int64_t task, int) { pack_task(jobs, task); });
  for_tasks(f.batch * qtiles, nt, [&](std::int64_t task, int tid) {
    const ForwardScratch<A> w(f, base + per_thread * static_cast<std::size_t>(tid));
    const std::int64_t b = task / qtiles, i0 = (task % qtiles) * kQueries, bq = std::min(kQueries, f.n_q - i0);
    const GemmPacked<A> k_a = sh.k.at(b), v_b = sh.v.at(b);
    const GemmPacked<A> qt = gemm_pack_b<A>(rows_of_t(f.q, b, i0), 0, f.d, bq, kFeatureBlock, w.qt);
    std::fill(w.m, w.m + w.ld, -std::numeric_limits<A>::infinity());
    std::fill(w.l, w.l + w.ld, A(0));
    for (std::int64_t j0 = 0; j0 < f.n_k; j0 += kKeys) {
      const std::int64_t bk = std::min(kKeys, f.n_k - j0);
      // St = scale K Q^T (keys x queries)
      gemm_packed<A>(bk, bq, f.d, k_a.slice(j0, 0), qt, {w.s, 0, w.ld, 1}, f.scale, 0.0);
      online_tile(w.s, bk, w.ld, w.m, w.l, w.corr, w.shift);
      if (j0 > 0)
        for (std::int64_t i = 0; i < bq; ++i)
          if (w.corr[i] != A(1))
            for (A *p = w.acc + i * f.dv, *e = p + f.dv; p != e; ++p) *p *= w.corr[i];
      // O += Pt^T V
      const GemmPacked<A> pt = gemm_pack_a<A>(tile_cols<A>(w.s, w.ld), 0, bq, bk, kDepthBlock, w.pt);
      gemm_packed<A>(bq, f.dv, bk, pt, v_b.slice(0, j0), {w.acc, 0, f.dv, 1}, 1.0, j0 > 0 ? 1.0 : 0.0);
    }
    for (std::int64_t i = 0; i < bq; ++i) {
      const A inv = A(1) / w.l[i];
      for (A *p = w.acc + i * f.dv, *e = p + f.dv; p != e; ++p) *p *= inv;
      if (f.lse) f.lse[b * f.n_q + i0 + i] = w.shift[i] + std::log(w.l[i]);
    }
    store_rows(w.acc, bq, f.dv, f.o, b, i0);
  });
}

/// Bytes of scratch attention_backward needs with `threads` threads.
template <class T, class Acc>
std::size_t attention_backward_scratch_bytes(const expr::AttentionBackward<T, Acc>& g, int threads) {
  static_assert(std::is_same_v<T, Acc>, "the host backend computes float and double in their own type");
  if (g.batch == 0 || g.n_q == 0) return 0;
  return attention_detail::BackwardShared<Acc>(g, nullptr).bytes +
         static_cast<std::size_t>(std::max(threads, 1)) * attention_detail::BackwardScratch<Acc>(g, nullptr).bytes + 64;
}

/// The wanted gradients of g (operands with null data are skipped); scratch holds
/// attention_backward_scratch_bytes(g, threads).
template <class T, class Acc>
void attention_backward(const expr::AttentionBackward<T, Acc>& g, void* scratch, int threads) {
  using namespace attention_detail;
  using A = Acc;
  if (g.batch == 0 || g.n_q == 0) return;
  const bool want_q = g.grad_q.data != nullptr, want_k = g.grad_k.data != nullptr, want_v = g.grad_v.data != nullptr;
  if (!want_q && !want_k && !want_v) return;
  const bool want_ds = want_q || want_k;
  threads = std::max(threads, 1);
  char* base = reinterpret_cast<char*>(align64(reinterpret_cast<std::uintptr_t>(scratch)));
  const BackwardShared<A> sh(g, base);
  base += sh.bytes;
  const std::size_t per_thread = BackwardScratch<A>(g, nullptr).bytes;
  const std::int64_t qtiles = (g.n_q + kBackQueries - 1) / kBackQueries, ktiles = (g.n_k + kBackKeys - 1) / kBackKeys;
  const bool by_query = qtiles <= ktiles;  // a step holds every query tile (else every key tile) once
  const std::int64_t width = by_query ? qtiles : ktiles, steps = by_query ? ktiles : qtiles;
  const std::int64_t tasks = g.batch * width;
  const int nt = static_cast<int>(std::min<std::int64_t>(threads, tasks));
  const std::int64_t work = g.batch * g.n_q * g.n_k * (g.d + g.dv);

#if KDLOSS_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1 && work > kParallelThreshold)
#endif
  {
    const int tid = nt > 1 ? thread_id() : 0;
    const BackwardScratch<A> w(g, base + per_thread * static_cast<std::size_t>(tid));
    // D[b, i] = sum_f grad_o o; the accumulators start at zero.
#if KDLOSS_OPENMP
#pragma omp for schedule(static)
#endif
    for (std::int64_t r = 0; r < g.batch * g.n_q; ++r) {
      const std::int64_t b = r / g.n_q, i = r % g.n_q;
      if (want_ds) {
        A sum = 0;
        for (std::int64_t f = 0; f < g.dv; ++f)
          sum += static_cast<A>(*g.grad_o.at(b, i, f)) * static_cast<A>(*g.o.at(b, i, f));
        sh.dd[r] = sum;
      }
      if (want_q) zero_row(sh.dq.acc, b, i, g.d);
    }
#if KDLOSS_OPENMP
#pragma omp for schedule(static)
#endif
    for (std::int64_t r = 0; r < g.batch * g.n_k; ++r) {
      const std::int64_t b = r / g.n_k, j = r % g.n_k;
      if (want_k) zero_row(sh.dk.acc, b, j, g.d);
      if (want_v) zero_row(sh.dv.acc, b, j, g.dv);
    }
    // Every operand packed once.
    const PackJob<A> jobs[] = {{&sh.k_a, g.k, g.n_k},        {&sh.qt_b, g.q.transposed(), g.n_q},
                               {&sh.v_a, g.v, g.n_k},        {&sh.got_b, g.grad_o.transposed(), g.n_q},
                               {&sh.go_b, g.grad_o, g.n_q}, {&sh.q_b, g.q, g.n_q},
                               {&sh.k_b, g.k, g.n_k}};
    const std::int64_t pack_tasks = g.batch * pack_chunks(jobs);
#if KDLOSS_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (std::int64_t t = 0; t < pack_tasks; ++t) pack_task(jobs, t);
    for (std::int64_t t = 0; t < steps; ++t) {
#if KDLOSS_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (std::int64_t task = 0; task < tasks; ++task) {
        const std::int64_t b = task / width, u = task % width;
        const std::int64_t qi = by_query ? u : (u + t) % qtiles, kj = by_query ? (u + t) % ktiles : u;
        const std::int64_t i0 = qi * kBackQueries, bq = std::min(kBackQueries, g.n_q - i0);
        const std::int64_t j0 = kj * kBackKeys, bk = std::min(kBackKeys, g.n_k - j0);
        load_padded(g.lse + b * g.n_q + i0, bq, w.ld, w.lse);
        if (want_ds) load_padded(sh.dd + b * g.n_q + i0, bq, w.ld, w.dd);
        // St = scale K_J Q_I^T, dPt = V_J grad_o_I^T (keys x queries)
        gemm_packed<A>(bk, bq, g.d, sh.k_a.at(b).slice(j0, 0), sh.qt_b.at(b).slice(i0, 0), {w.s, 0, w.ld, 1},
                       g.scale, 0.0);
        if (want_ds)
          gemm_packed<A>(bk, bq, g.dv, sh.v_a.at(b).slice(j0, 0), sh.got_b.at(b).slice(i0, 0), {w.dp, 0, w.ld, 1},
                         1.0, 0.0);
        grad_tile(w.s, want_ds ? w.dp : nullptr, bk, w.ld, w.lse, w.dd, want_v);
        if (want_v)  // dV_J += Pt grad_o_I
          gemm_packed<A>(bk, g.dv, bq, gemm_pack_a<A>(tile_rows<A>(w.s, w.ld), 0, bk, bq, kDepthBlock, w.tile),
                         sh.go_b.at(b).slice(0, i0), rows_at(sh.dv.acc, b, j0), 1.0, 1.0);
        if (want_k)  // dK_J += scale dSt Q_I
          gemm_packed<A>(bk, g.d, bq, gemm_pack_a<A>(tile_rows<A>(w.dp, w.ld), 0, bk, bq, kDepthBlock, w.tile),
                         sh.q_b.at(b).slice(0, i0), rows_at(sh.dk.acc, b, j0), g.scale, 1.0);
        if (want_q)  // dQ_I += scale dSt^T K_J
          gemm_packed<A>(bq, g.d, bk, gemm_pack_a<A>(tile_cols<A>(w.dp, w.ld), 0, bq, bk, kDepthBlock, w.tile),
                         sh.k_b.at(b).slice(0, j0), rows_at(sh.dq.acc, b, i0), g.scale, 1.0);
      }
    }
    // Copy the accumulators to the (strided) outputs.
#if KDLOSS_OPENMP
#pragma omp for schedule(static)
#endif
    for (std::int64_t b = 0; b < g.batch; ++b) {
      if (sh.dq.copy) store_rows(sh.dq.acc.at(b, 0, 0), g.n_q, g.d, g.grad_q, b, 0);
      if (sh.dk.copy) store_rows(sh.dk.acc.at(b, 0, 0), g.n_k, g.d, g.grad_k, b, 0);
      if (sh.dv.copy) store_rows(sh.dv.acc.at(b, 0, 0), g.n_k, g.dv, g.grad_v, b, 0);
    }
  }
}

} } }  // namespace kdloss::backend::cpu

#if defined(__clang__)
#pragma clang diagnostic pop
#endif
