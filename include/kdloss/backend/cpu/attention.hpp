// kdloss/backend/cpu/attention.hpp: the tiled online-softmax attention of expr/attention.hpp on the host,
// forward and flash-attention backward, never storing the n_q x n_k matrix.
//
// Every tile of scores is held transposed, keys as rows and queries as columns (St[j][i] = S[i, j], a
// row of St padded to whole packets), so the per-query running max, sum, log-sum-exp and D are vectors
// along a row and every softmax step runs at full packet width. The products run the library's packed
// GEMM (backend/cpu/gemm.hpp: AVX-512 / AVX2 kernels picked at run time) single-threaded on each tile;
// the exp and max steps run in functions compiled per instruction set (KDLOSS_CPU_CLONES).
//
// Forward: tasks (batch, query tile) are split between threads. For each key tile: St = scale K Q^T,
// the running max m and sum l of every query are updated (online softmax), St becomes exp(St - m), the
// accumulator O (query tile x dv) is rescaled by exp(m_old - m_new) and O += St^T V. At the end
// o = O / l and lse = m + log l.
//
// Backward (recomputing P = exp(S - lse) from the kept lse; D = rowsum(grad_o * o) first):
// - grad_q over query tiles: for each key tile St, dPt = V grad_o^T, dSt = Pt (dPt - D), grad_q += scale dSt^T K;
// - grad_k and grad_v over key tiles: for each query tile the same St, Pt, dSt, then grad_v += Pt grad_o and
//   grad_k += scale dSt Q.
// Each output tile is owned by one task and summed over the other side's tiles in a fixed order, so
// there are no races and the bits do not depend on the thread count (S and dP are computed twice, once
// per pass, the price of that).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

#include "kdloss/backend/cpu/gemm.hpp"
#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/core/packet.hpp"
#include "kdloss/expr/attention.hpp"
#include "kdloss/expr/matmul.hpp"

namespace kdloss::backend::cpu {
namespace attention_detail {

// Tile sizes (elements). Forward and the grad_q pass: kQueries query columns x kKeys key rows; the
// grad_k / grad_v pass: kKeysB key rows x kQueriesB query columns. Multiples of the GEMM's micro tiles.
inline constexpr std::int64_t kQueries = 192;
inline constexpr std::int64_t kKeys = 384;
inline constexpr std::int64_t kKeysB = 192;
inline constexpr std::int64_t kQueriesB = 384;

/// Lanes of one packet of A (64 bytes: one AVX-512 register, two AVX2 ones).
template <class A>
inline constexpr int kLanes = static_cast<int>(64 / sizeof(A));
template <class A>
using Pk = math::Packet<A, kLanes<A>>;

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

inline namespace KDLOSS_CPU_ISA_NAMESPACE {

/// One key tile of transposed scores s (rows x ld, columns in whole packets) folded into the running
/// max m and sum l of its query columns (online softmax): s becomes exp(s - m_new), corr the factor
/// exp(m_old - m_new) the accumulator is rescaled by, shift the m_new subtracted (0 while a column has
/// seen only -inf, so an all -inf column gives l = 0 and a NaN output, as softmax does). NaN scores
/// are skipped by the max and reach l through exp; a +inf score gives NaN (inf - inf), as torch does.
template <class A>
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN void online_tile(A* s, std::int64_t rows, std::int64_t ld, A* m, A* l, A* corr,
                                                      A* shift, A* rsum) {
  using V = Pk<A>;
  constexpr int W = kLanes<A>;
  for (std::int64_t c = 0; c < ld; c += W) V::load(m + c).store(shift + c);
  for (std::int64_t j = 0; j < rows; ++j) {
    const A* row = s + j * ld;
    for (std::int64_t c = 0; c < ld; c += W) V::load(shift + c).max(V::load(row + c)).store(shift + c);
  }
  const V ninf(-std::numeric_limits<A>::infinity()), zero(A(0)), one(A(1));
  for (std::int64_t c = 0; c < ld; c += W) {
    const V mo = V::load(m + c), mn = V::load(shift + c);
    const V ms = (mn > ninf).select(mn, zero);
    (mo < mn).select(math::exp(mo - ms), one).store(corr + c);
    mn.store(m + c);
    ms.store(shift + c);
    zero.store(rsum + c);
  }
  for (std::int64_t j = 0; j < rows; ++j) {
    A* row = s + j * ld;
    for (std::int64_t c = 0; c < ld; c += W) {
      const V p = math::exp(V::load(row + c) - V::load(shift + c));
      p.store(row + c);
      (V::load(rsum + c) + p).store(rsum + c);
    }
  }
  for (std::int64_t c = 0; c < ld; c += W) (V::load(l + c) * V::load(corr + c) + V::load(rsum + c)).store(l + c);
}

/// Backward on one tile of transposed scores: p = exp(s - lse[col]) (written over s when keep_p), and
/// when dp is non-null dp = p (dp - dd[col]) (dS).
template <class A>
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN void grad_tile(A* s, A* dp, std::int64_t rows, std::int64_t ld, const A* lse,
                                                    const A* dd, bool keep_p) {
  using V = Pk<A>;
  constexpr int W = kLanes<A>;
  for (std::int64_t j = 0; j < rows; ++j) {
    A* srow = s + j * ld;
    A* drow = dp ? dp + j * ld : nullptr;
    for (std::int64_t c = 0; c < ld; c += W) {
      const V p = math::exp(V::load(srow + c) - V::load(lse + c));
      if (keep_p) p.store(srow + c);
      if (drow) (p * (V::load(drow + c) - V::load(dd + c))).store(drow + c);
    }
  }
}

}  // namespace KDLOSS_CPU_ISA_NAMESPACE

/// c = alpha * a b + beta * c, single-threaded (one tile of one task).
template <class A>
void product(std::int64_t m, std::int64_t n, std::int64_t k, const expr::MatOperand<const A>& a,
             const expr::MatOperand<const A>& b, const expr::MatOperand<A>& c, double alpha, double beta,
             void* scratch) {
  expr::Gemm<A, A, A> g;
  g.batch = 1;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.b = b;
  g.c = c;
  g.alpha = alpha;
  g.beta = beta;
  gemm(g, scratch, 1);
}

/// Rows [r0, r0 + rows) of operand x of batch b, as a batch-free operand.
template <class T>
expr::MatOperand<const T> rows_of(const expr::MatOperand<const T>& x, std::int64_t b, std::int64_t r0) {
  return {x.at(b, r0, 0), 0, x.row, x.col};
}
/// The same rows read transposed (columns = rows of x).
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

/// Scratch bytes of single-threaded products of the given (m, n, k) shapes, three numbers each: the largest.
template <class A>
std::size_t gemm_bytes_of(std::initializer_list<std::int64_t> mnk) {
  std::size_t bytes = 0;
  const std::int64_t* p = mnk.begin();
  for (std::size_t i = 0; i + 2 < mnk.size(); i += 3)
    bytes = std::max(bytes, gemm_scratch_bytes<A>(p[i], p[i + 1], p[i + 2], 1));
  return align64(bytes);
}

/// One forward task's scratch, carved from `base` (null: sizes only).
template <class A>
struct ForwardScratch {
  std::int64_t bq, bk, ld;
  void* gemm;
  A *s, *acc, *m, *l, *corr, *shift, *rsum;
  std::size_t bytes;
  template <class T>
  ForwardScratch(const expr::AttentionForward<T, A>& f, void* base) {
    bq = std::min(kQueries, f.n_q);
    bk = std::min(kKeys, f.n_k);
    ld = round_up(bq, kLanes<A>);
    Slicer sl(base);
    gemm = sl.take<char>(static_cast<std::int64_t>(gemm_bytes_of<A>({bk, bq, f.d, bq, f.dv, bk})));
    s = sl.take<A>(bk * ld);
    acc = sl.take<A>(bq * f.dv);
    m = sl.take<A>(ld);
    l = sl.take<A>(ld);
    corr = sl.take<A>(ld);
    shift = sl.take<A>(ld);
    rsum = sl.take<A>(ld);
    bytes = sl.used();
  }
};

/// One backward task's scratch (either pass), carved from `base`.
template <class A>
struct BackwardScratch {
  std::int64_t bq, bk, ldq;      // grad_q pass: query columns, key rows
  std::int64_t bkb, bqb, ldqb;   // grad_k / grad_v pass: key rows, query columns
  void* gemm;
  A *s, *dp, *acc, *acc2, *lse, *dd;
  std::size_t bytes;
  template <class T>
  BackwardScratch(const expr::AttentionBackward<T, A>& g, void* base) {
    bq = std::min(kQueries, g.n_q);
    bk = std::min(kKeys, g.n_k);
    ldq = round_up(bq, kLanes<A>);
    bkb = std::min(kKeysB, g.n_k);
    bqb = std::min(kQueriesB, g.n_q);
    ldqb = round_up(bqb, kLanes<A>);
    Slicer sl(base);
    gemm = sl.take<char>(static_cast<std::int64_t>(gemm_bytes_of<A>(
        {bk, bq, g.d, bk, bq, g.dv, bq, g.d, bk, bkb, bqb, g.d, bkb, bqb, g.dv, bkb, g.dv, bqb, bkb, g.d, bqb})));
    const std::int64_t tile = std::max(bk * ldq, bkb * ldqb), ld = std::max(ldq, ldqb);
    s = sl.take<A>(tile);
    dp = sl.take<A>(tile);
    acc = sl.take<A>(std::max(bq * g.d, bkb * g.d));
    acc2 = sl.take<A>(bkb * g.dv);
    lse = sl.take<A>(ld);
    dd = sl.take<A>(ld);
    bytes = sl.used();
  }
};

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
  return static_cast<std::size_t>(std::max(threads, 1)) * attention_detail::ForwardScratch<Acc>(f, nullptr).bytes + 64;
}

/// o (and lse when non-null) of f; scratch holds attention_forward_scratch_bytes(f, threads).
template <class T, class Acc>
void attention_forward(const expr::AttentionForward<T, Acc>& f, void* scratch, int threads) {
  using namespace attention_detail;
  using A = Acc;
  if (f.batch == 0 || f.n_q == 0) return;
  threads = std::max(threads, 1);
  char* base = reinterpret_cast<char*>(align64(reinterpret_cast<std::uintptr_t>(scratch)));
  const std::size_t per_thread = ForwardScratch<A>(f, nullptr).bytes;
  const std::int64_t qtiles = (f.n_q + kQueries - 1) / kQueries;
  for_tasks(f.batch * qtiles, threads, [&](std::int64_t task, int tid) {
    const ForwardScratch<A> w(f, base + per_thread * static_cast<std::size_t>(tid));
    const std::int64_t b = task / qtiles, i0 = (task % qtiles) * kQueries, bq = std::min(kQueries, f.n_q - i0);
    std::fill(w.m, w.m + w.ld, -std::numeric_limits<A>::infinity());
    std::fill(w.l, w.l + w.ld, A(0));
    for (std::int64_t j0 = 0; j0 < f.n_k; j0 += kKeys) {
      const std::int64_t bk = std::min(kKeys, f.n_k - j0);
      // St = scale K Q^T (keys x queries)
      product<A>(bk, bq, f.d, rows_of(f.k, b, j0), rows_of_t(f.q, b, i0), {w.s, 0, w.ld, 1}, f.scale, 0.0, w.gemm);
      online_tile(w.s, bk, w.ld, w.m, w.l, w.corr, w.shift, w.rsum);
      if (j0 > 0)
        for (std::int64_t i = 0; i < bq; ++i)
          if (w.corr[i] != A(1))
            for (A *p = w.acc + i * f.dv, *e = p + f.dv; p != e; ++p) *p *= w.corr[i];
      // O += Pt^T V
      product<A>(bq, f.dv, bk, tile_cols<A>(w.s, w.ld), rows_of(f.v, b, j0), {w.acc, 0, f.dv, 1}, 1.0,
                 j0 > 0 ? 1.0 : 0.0, w.gemm);
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
  return attention_detail::align64(static_cast<std::size_t>(g.batch * g.n_q) * sizeof(Acc)) +
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
  threads = std::max(threads, 1);
  char* base = reinterpret_cast<char*>(align64(reinterpret_cast<std::uintptr_t>(scratch)));
  A* dd_all = reinterpret_cast<A*>(base);
  base += align64(static_cast<std::size_t>(g.batch * g.n_q) * sizeof(A));
  const std::size_t per_thread = BackwardScratch<A>(g, nullptr).bytes;
  const auto scratch_of = [&](int tid) { return BackwardScratch<A>(g, base + per_thread * static_cast<std::size_t>(tid)); };

  // D[b, i] = sum_f grad_o o
  if (want_q || want_k) {
    const std::int64_t chunks = (g.n_q + kQueries - 1) / kQueries;
    for_tasks(g.batch * chunks, g.batch * g.n_q * g.dv > kParallelThreshold ? threads : 1, [&](std::int64_t t, int) {
      const std::int64_t b = t / chunks, i0 = (t % chunks) * kQueries, i1 = std::min(g.n_q, i0 + kQueries);
      for (std::int64_t i = i0; i < i1; ++i) {
        A sum = 0;
        for (std::int64_t f = 0; f < g.dv; ++f)
          sum += static_cast<A>(*g.grad_o.at(b, i, f)) * static_cast<A>(*g.o.at(b, i, f));
        dd_all[b * g.n_q + i] = sum;
      }
    });
  }

  if (want_q) {
    const std::int64_t qtiles = (g.n_q + kQueries - 1) / kQueries;
    for_tasks(g.batch * qtiles, threads, [&](std::int64_t task, int tid) {
      const BackwardScratch<A> w = scratch_of(tid);
      const std::int64_t b = task / qtiles, i0 = (task % qtiles) * kQueries, bq = std::min(kQueries, g.n_q - i0);
      load_padded(g.lse + b * g.n_q + i0, bq, w.ldq, w.lse);
      load_padded(dd_all + b * g.n_q + i0, bq, w.ldq, w.dd);
      for (std::int64_t j0 = 0; j0 < g.n_k; j0 += kKeys) {
        const std::int64_t bk = std::min(kKeys, g.n_k - j0);
        product<A>(bk, bq, g.d, rows_of(g.k, b, j0), rows_of_t(g.q, b, i0), {w.s, 0, w.ldq, 1}, g.scale, 0.0, w.gemm);
        product<A>(bk, bq, g.dv, rows_of(g.v, b, j0), rows_of_t(g.grad_o, b, i0), {w.dp, 0, w.ldq, 1}, 1.0, 0.0,
                   w.gemm);
        grad_tile(w.s, w.dp, bk, w.ldq, w.lse, w.dd, false);
        // dQ += scale dSt^T K
        product<A>(bq, g.d, bk, tile_cols<A>(w.dp, w.ldq), rows_of(g.k, b, j0), {w.acc, 0, g.d, 1}, g.scale,
                   j0 > 0 ? 1.0 : 0.0, w.gemm);
      }
      store_rows(w.acc, bq, g.d, g.grad_q, b, i0);
    });
  }

  if (want_k || want_v) {
    const std::int64_t ktiles = (g.n_k + kKeysB - 1) / kKeysB;
    for_tasks(g.batch * ktiles, threads, [&](std::int64_t task, int tid) {
      const BackwardScratch<A> w = scratch_of(tid);
      const std::int64_t b = task / ktiles, j0 = (task % ktiles) * kKeysB, bk = std::min(kKeysB, g.n_k - j0);
      for (std::int64_t i0 = 0; i0 < g.n_q; i0 += kQueriesB) {
        const std::int64_t bq = std::min(kQueriesB, g.n_q - i0);
        const double beta = i0 > 0 ? 1.0 : 0.0;
        load_padded(g.lse + b * g.n_q + i0, bq, w.ldqb, w.lse);
        if (want_k) load_padded(dd_all + b * g.n_q + i0, bq, w.ldqb, w.dd);
        product<A>(bk, bq, g.d, rows_of(g.k, b, j0), rows_of_t(g.q, b, i0), {w.s, 0, w.ldqb, 1}, g.scale, 0.0, w.gemm);
        if (want_k)
          product<A>(bk, bq, g.dv, rows_of(g.v, b, j0), rows_of_t(g.grad_o, b, i0), {w.dp, 0, w.ldqb, 1}, 1.0, 0.0,
                     w.gemm);
        grad_tile(w.s, want_k ? w.dp : nullptr, bk, w.ldqb, w.lse, w.dd, true);
        // dV += Pt grad_o, dK += scale dSt Q
        if (want_v)
          product<A>(bk, g.dv, bq, tile_rows<A>(w.s, w.ldqb), rows_of(g.grad_o, b, i0), {w.acc2, 0, g.dv, 1}, 1.0,
                     beta, w.gemm);
        if (want_k)
          product<A>(bk, g.d, bq, tile_rows<A>(w.dp, w.ldqb), rows_of(g.q, b, i0), {w.acc, 0, g.d, 1}, g.scale, beta,
                     w.gemm);
      }
      if (want_v) store_rows(w.acc2, bk, g.dv, g.grad_v, b, j0);
      if (want_k) store_rows(w.acc, bk, g.d, g.grad_k, b, j0);
    });
  }
}

}  // namespace kdloss::backend::cpu
