// kdloss/backend/cpu/gemm_kernel.inl: the packed GEMM of the host backend (Goto/BLIS blocking), written
// once and included by backend/cpu/gemm.hpp once per instruction set, each time inside a
// `#pragma GCC target` region and a namespace of its own that defines
//   template <class T> struct Vec { using V; W (lanes); MR (rows per micro tile);
//                                    zero, load, store, bcast, fma, mul, add };
// No include guard: it is meant to be included more than once.
//
// Blocking: columns in blocks of at most kNC, depth in blocks of kKC, rows in blocks of kMC. B's block is
// packed into NR-wide panels, A's rows into MR-tall panels, and the MR x NR micro kernel runs on them
// (see run() for how threads split the work). Every element of C is summed over k in the same order
// (depth blocks in increasing order, batches of a sum in increasing order) whatever the number of
// threads, so the bits do not depend on it.

template <class T>
struct Shape {
  static constexpr int W = Vec<T>::W;
  static constexpr int MR = Vec<T>::MR;
  static constexpr int NR = 2 * Vec<T>::W;
  static constexpr std::int64_t kGroup = 4 * NR;  // columns of one task
};

/// tile[MR][NR] = sum over p < kc of a[p][MR] (x) b[p][NR]: two vectors of B per depth step, one
/// broadcast of A per row, 2 * MR accumulators in registers.
template <class T>
inline void micro_kernel(std::int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict tile) {
  using X = Vec<T>;
  constexpr int W = X::W, MR = X::MR;
  typename X::V c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = X::zero();
  for (std::int64_t p = 0; p < kc; ++p) {
    const typename X::V b0 = X::load(b), b1 = X::load(b + W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const typename X::V ai = X::bcast(a[i]);
      c0[i] = X::fma(ai, b0, c0[i]);
      c1[i] = X::fma(ai, b1, c1[i]);
    }
    a += MR;
    b += 2 * W;
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    X::store(tile + i * 2 * W, c0[i]);
    X::store(tile + i * 2 * W + W, c1[i]);
  }
}

/// Rows [i0, i0 + mc) and depth [p0, p0 + kc) of A[b] into MR-tall panels (rows past m are zero).
template <class T>
inline void pack_a(const expr::MatOperand<const T>& a, std::int64_t b, std::int64_t i0, std::int64_t mc, std::int64_t m,
                   std::int64_t p0, std::int64_t kc, T* __restrict dst) {
  constexpr int MR = Shape<T>::MR;
  for (std::int64_t ir = 0; ir < mc; ir += MR, dst += MR * kc) {
    if (a.row == 1 && i0 + ir + MR <= m) {  // column-major: MR contiguous rows per depth step
      for (std::int64_t p = 0; p < kc; ++p) {
        const T* s = a.at(b, i0 + ir, p0 + p);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) dst[p * MR + r] = s[r];
      }
      continue;
    }
    for (int r = 0; r < MR; ++r) {
      const std::int64_t i = i0 + ir + r;
      T* d = dst + r;
      if (i < m) {
        const T* s = a.at(b, i, p0);
        const std::int64_t st = a.col;
        for (std::int64_t p = 0; p < kc; ++p) d[p * MR] = s[p * st];
      } else {
        for (std::int64_t p = 0; p < kc; ++p) d[p * MR] = T(0);
      }
    }
  }
}

/// Depth [p0, p0 + kc) and columns [j0, j0 + ncp) of B[b] into NR-wide panels (columns past n are zero).
template <class T>
inline void pack_b_panel(const expr::MatOperand<const T>& bm, std::int64_t b, std::int64_t p0, std::int64_t kc,
                         std::int64_t j, std::int64_t n, T* __restrict d) {
  constexpr int NR = Shape<T>::NR;
  const std::int64_t valid = std::min<std::int64_t>(NR, n - j);
  if (bm.col == 1 && valid == NR) {
    for (std::int64_t p = 0; p < kc; ++p) {
      const T* s = bm.at(b, p0 + p, j);
#pragma GCC unroll 32
      for (int c = 0; c < NR; ++c) d[p * NR + c] = s[c];
    }
    return;
  }
  for (int c = 0; c < NR; ++c) {
    if (c < valid) {
      const T* s = bm.at(b, p0, j + c);
      const std::int64_t st = bm.row;
      for (std::int64_t p = 0; p < kc; ++p) d[p * NR + c] = s[p * st];
    } else {
      for (std::int64_t p = 0; p < kc; ++p) d[p * NR + c] = T(0);
    }
  }
}

/// Writes one micro tile into C at (i, j) (mr x nr valid): C = alpha * tile + beta * C on the first
/// depth block (beta = 0: C not read), C = alpha * tile + C on later ones, the epilogue on the last.
/// Every tile goes through one row buffer and the same vector formula, so a strided C gets the same
/// bits as a contiguous one.
template <class T, class E>
inline void write_tile(const T* tile, int mr, int nr, const expr::MatOperand<T>& c, std::int64_t cb, std::int64_t i,
                       std::int64_t j, T alpha, T beta, bool first, bool last, const E& epi, std::int64_t b) {
  using X = Vec<T>;
  constexpr int W = X::W, NR = 2 * W;
  const bool read = !first || beta != T(0);
  const T beta_eff = first ? beta : T(1);
  alignas(64) T row[NR];
  for (int r = 0; r < mr; ++r) {
    T* cr = c.at(cb, i + r, j);
    if (read)
      for (int q = 0; q < nr; ++q) row[q] = cr[q * c.col];
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) {
      typename X::V acc = X::load(tile + r * NR + v * W);
      if (alpha != T(1)) acc = X::mul(acc, X::bcast(alpha));
      if (read) {
        typename X::V old = X::load(row + v * W);
        if (beta_eff != T(1)) old = X::mul(old, X::bcast(beta_eff));
        acc = X::add(acc, old);
      }
      X::store(row + v * W, acc);
    }
    if (last && !expr::is_identity_epilogue<E>::value)
      for (int q = 0; q < nr; ++q) row[q] = epi(row[q], b, i + r, j + q);
    for (int q = 0; q < nr; ++q) cr[q * c.col] = row[q];
  }
}

/// Scratch (elements of T) of one thread: a block of B and a block of A.
template <class T>
constexpr std::int64_t b_block_elems() {
  return kKC * ((kNC + Shape<T>::NR - 1) / Shape<T>::NR * Shape<T>::NR);
}
template <class T>
constexpr std::int64_t a_block_elems() {
  return kKC * ((kMC + Shape<T>::MR - 1) / Shape<T>::MR * Shape<T>::MR);
}
template <class T>
constexpr std::int64_t thread_elems() {
  return b_block_elems<T>() + a_block_elems<T>();
}

/// One depth block of one row block against packed B panels [g0, g1) of the column block at j0:
/// packs the rows of A, runs the micro kernel and writes the tiles.
template <class T, class E>
inline void run_rows(const expr::Gemm<T, T, T, E>& g, std::int64_t b, std::int64_t o, std::int64_t cb, std::int64_t i0,
                     std::int64_t j0, std::int64_t nc, std::int64_t g0, std::int64_t g1, std::int64_t p0,
                     std::int64_t kc, bool first, bool last, const T* bpack, T* abuf) {
  constexpr int MR = Shape<T>::MR, NR = Shape<T>::NR;
  alignas(64) T tile[MR * NR];
  const std::int64_t mc = std::min(kMC, g.m - i0);
  pack_a(g.a, b, i0, mc, g.m, p0, kc, abuf);
  for (std::int64_t jr = g0; jr < g1; jr += NR) {
    const T* bp = bpack + (jr / NR) * NR * kc;
    const int nr = static_cast<int>(std::min<std::int64_t>(NR, nc - jr));
    for (std::int64_t ir = 0; ir < mc; ir += MR) {
      micro_kernel(kc, abuf + ir * kc, bp, tile);
      const int mr = static_cast<int>(std::min<std::int64_t>(MR, mc - ir));
      write_tile(tile, mr, nr, g.c, cb, i0 + ir, j0 + jr, static_cast<T>(g.alpha), static_cast<T>(g.beta), first, last,
                 g.epilogue, o);
    }
  }
}

/// Evaluates g with `threads` threads; `scratch` holds threads * thread_elems<T>().
///
/// Work is split one of two ways, with the same bits either way (every element of C sees the same
/// depth blocks and batches in the same order):
/// - by columns, when there are at least as many (output, column block) pairs as threads: each task
///   packs its own block of B and runs every row, depth block and batch against it, with no barrier
///   (a weight gradient's few columns and deep k run without a barrier per depth block);
/// - by rows, otherwise (a tall C with few columns): B's block is packed once by all threads, then
///   the (row block, column group) tasks share it.
template <class T, class E>
void run(const expr::Gemm<T, T, T, E>& g, T* scratch, int threads) {
  constexpr int NR = Shape<T>::NR;
  constexpr std::int64_t kGroup = Shape<T>::kGroup;
  const std::int64_t m = g.m, n = g.n, k = g.k;
  const std::int64_t per_out = g.sum_batches ? g.batch : 1;
  const std::int64_t row_blocks = (m + kMC - 1) / kMC;
  // Column blocks of a multiple of NR (so the micro tiles, and the bits, are the same for any width),
  // narrow enough to give every thread two of them, but at least kGroup wide (A is packed once per block).
  const std::int64_t half_share = (n + 2 * threads - 1) / (2 * threads);
  const std::int64_t wc = std::min<std::int64_t>(kNC, std::max<std::int64_t>(kGroup, (half_share + NR - 1) / NR * NR));
  const std::int64_t col_blocks = (n + wc - 1) / wc;
  const auto thread_block = [&](int tid) { return scratch + static_cast<std::int64_t>(tid) * thread_elems<T>(); };
  const std::int64_t col_tasks = g.outputs() * col_blocks;
  if (threads == 1 || col_tasks >= threads) {
    const int nt = static_cast<int>(std::min<std::int64_t>(threads, col_tasks));
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
    for (std::int64_t t = 0; t < col_tasks; ++t) {
      T* bbuf = thread_block(nt > 1 ? thread_id() : 0);
      T* abuf = bbuf + b_block_elems<T>();
      const std::int64_t o = t / col_blocks, j0 = (t % col_blocks) * wc, nc = std::min(wc, n - j0);
      const std::int64_t panels = (nc + NR - 1) / NR;
      for (std::int64_t bb = 0; bb < per_out; ++bb) {
        const std::int64_t b = g.sum_batches ? bb : o;
        for (std::int64_t p0 = 0; p0 < k; p0 += kKC) {
          const std::int64_t kc = std::min(kKC, k - p0);
          const bool first = bb == 0 && p0 == 0, last = bb == per_out - 1 && p0 + kc >= k;
          for (std::int64_t q = 0; q < panels; ++q) pack_b_panel(g.b, b, p0, kc, j0 + q * NR, n, bbuf + q * NR * kc);
          for (std::int64_t r = 0; r < row_blocks; ++r)
            run_rows(g, b, o, g.sum_batches ? 0 : o, r * kMC, j0, nc, 0, nc, p0, kc, first, last, bbuf, abuf);
        }
      }
    }
    return;
  }
  for (std::int64_t o = 0; o < g.outputs(); ++o) {
    for (std::int64_t j0 = 0; j0 < n; j0 += kNC) {
      const std::int64_t nc = std::min(kNC, n - j0);
      const std::int64_t panels = (nc + NR - 1) / NR;
      const std::int64_t groups = (nc + kGroup - 1) / kGroup;
      const std::int64_t tasks = row_blocks * groups;
      const int nt = static_cast<int>(std::min<std::int64_t>(threads, tasks));
      T* bshared = thread_block(0);
      for (std::int64_t bb = 0; bb < per_out; ++bb) {
        const std::int64_t b = g.sum_batches ? bb : o;
        for (std::int64_t p0 = 0; p0 < k; p0 += kKC) {
          const std::int64_t kc = std::min(kKC, k - p0);
          const bool first = bb == 0 && p0 == 0, last = bb == per_out - 1 && p0 + kc >= k;
#if KDLOSS_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
          {
#if KDLOSS_OPENMP
#pragma omp for schedule(static)
#endif
            for (std::int64_t q = 0; q < panels; ++q) pack_b_panel(g.b, b, p0, kc, j0 + q * NR, n, bshared + q * NR * kc);
            T* abuf = thread_block(nt > 1 ? thread_id() : 0) + b_block_elems<T>();
#if KDLOSS_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (std::int64_t t = 0; t < tasks; ++t) {
              const std::int64_t g0 = (t % groups) * kGroup;
              run_rows(g, b, o, g.sum_batches ? 0 : o, (t / groups) * kMC, j0, nc, g0, std::min(nc, g0 + kGroup), p0,
                       kc, first, last, bshared, abuf);
            }
          }
        }
      }
    }
  }
}
