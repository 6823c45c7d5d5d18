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

/// micro_kernel compiled on its own: inlined into run_packed's loops, GCC spills the B vectors to the stack
/// (27 of the 32 registers are live in the kernel), and the product runs about 25% slower.
template <class T>
__attribute__((noinline)) void micro_kernel_alone(std::int64_t kc, const T* __restrict a, const T* __restrict b,
                                                  T* __restrict tile) {
  micro_kernel(kc, a, b, tile);
}

/// One vector of a tile as written to C: alpha * acc (read false: C not read), else alpha * acc + beta * old
/// as one fused multiply-add (an explicit one, so the compiler's contraction of a separate multiply and add,
/// which depends on the context a copy is inlined in, cannot change the bits between the write paths).
template <class T>
inline typename Vec<T>::V combine(typename Vec<T>::V acc, const T* old, T alpha, T beta, bool read) {
  using X = Vec<T>;
  if (!read) return alpha != T(1) ? X::mul(acc, X::bcast(alpha)) : acc;
  typename X::V o = X::load(old);
  if (beta != T(1)) o = X::mul(o, X::bcast(beta));
  return X::fma(acc, X::bcast(alpha), o);
}

/// micro_kernel followed by write_tile's formula for a whole tile on whole contiguous rows of C (c, row
/// stride ldc): C = alpha * tile + beta * C (read false: C not read), from the registers. The same
/// operations in the same order as micro_kernel + write_tile, so the same bits.
template <class T>
__attribute__((noinline)) void micro_kernel_c(std::int64_t kc, const T* __restrict a, const T* __restrict b,
                                              T* __restrict c, std::int64_t ldc, T alpha, T beta, bool read) {
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
    T* cr = c + i * ldc;
    X::store(cr, combine<T>(c0[i], cr, alpha, beta, read));
    X::store(cr + W, combine<T>(c1[i], cr + W, alpha, beta, read));
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
/// Every tile goes through the same vector formula (whole contiguous rows straight on C, others through
/// a row buffer), so a strided C gets the same bits as a contiguous one.
template <class T, class E>
inline void write_tile(const T* tile, int mr, int nr, const expr::MatOperand<T>& c, std::int64_t cb, std::int64_t i,
                       std::int64_t j, T alpha, T beta, bool first, bool last, const E& epi, std::int64_t b) {
  using X = Vec<T>;
  constexpr int W = X::W, NR = 2 * W;
  const bool read = !first || beta != T(0);
  const T beta_eff = first ? beta : T(1);
  if (c.col == 1 && nr == NR && (!last || expr::is_identity_epilogue<E>::value)) {
    // Whole contiguous rows: the same vector formula straight on C (no row buffer, no scalar copies).
    for (int r = 0; r < mr; ++r) {
      T* cr = c.at(cb, i + r, j);
#pragma GCC unroll 2
      for (int v = 0; v < 2; ++v)
        X::store(cr + v * W, combine<T>(X::load(tile + r * NR + v * W), cr + v * W, alpha, beta_eff, read));
    }
    return;
  }
  alignas(64) T row[NR];
  for (int r = 0; r < mr; ++r) {
    T* cr = c.at(cb, i + r, j);
    if (read)
      for (int q = 0; q < nr; ++q) row[q] = cr[q * c.col];
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v)
      X::store(row + v * W, combine<T>(X::load(tile + r * NR + v * W), row + v * W, alpha, beta_eff, read));
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

// ---- Pre-packed operands (gemm.hpp: gemm_pack_a, gemm_pack_b, gemm_packed) ----
//
// A whole operand packed once, in the panels the micro kernel reads, so a caller running many products
// on slices of it (the attention's tile pairs) packs it once instead of once per product. Depth runs in
// blocks of kb <= kKC; block [p, p + kc) (kc = min(kb, depth - p)) holds every panel of the operand,
// panel q at data + p * ext + q * R * kc (R = MR for A, NR for B; ext = rows or columns rounded up to R).

/// Panels of rows [r0, r1) (r0 a multiple of MR) and depth blocks from p_begin to p_end (multiples of kb,
/// or p_end = k) of A[b] (m x k) into the packed layout at dst.
template <class T>
inline void pack_a_part(const expr::MatOperand<const T>& a, std::int64_t b, std::int64_t m, std::int64_t k,
                        std::int64_t kb, std::int64_t r0, std::int64_t r1, std::int64_t p_begin, std::int64_t p_end,
                        T* dst) {
  constexpr int MR = Shape<T>::MR;
  const std::int64_t ext = (m + MR - 1) / MR * MR;
  for (std::int64_t p0 = p_begin; p0 < p_end; p0 += kb) {
    const std::int64_t kc = std::min(kb, k - p0);
    pack_a(a, b, r0, r1 - r0, m, p0, kc, dst + p0 * ext + r0 * kc);
  }
}

/// Panels of columns [c0, c1) (c0 a multiple of NR) and depth blocks [p_begin, p_end) of B[b] (k x n).
template <class T>
inline void pack_b_part(const expr::MatOperand<const T>& bm, std::int64_t b, std::int64_t k, std::int64_t n,
                        std::int64_t kb, std::int64_t c0, std::int64_t c1, std::int64_t p_begin, std::int64_t p_end,
                        T* dst) {
  constexpr int NR = Shape<T>::NR;
  const std::int64_t ext = (n + NR - 1) / NR * NR;
  for (std::int64_t p0 = p_begin; p0 < p_end; p0 += kb) {
    const std::int64_t kc = std::min(kb, k - p0);
    T* d = dst + p0 * ext;
    for (std::int64_t j = c0; j < c1; j += NR) pack_b_panel(bm, b, p0, kc, j, n, d + j * kc);
  }
}

/// C (m x n) = alpha * A B + beta * C (beta = 0: C not read), single-threaded, A and B packed: a and b
/// point at the depth block where the product starts in their layouts (ext a_ext, b_ext; depth blocks of
/// kb, each filled whole by the product except the operands' last), the product's rows starting at row
/// a_r0 of A's layout and its columns at column b_c0 of B's (multiples of MR, NR). The same micro tiles,
/// depth blocks and write as run(), so the same bits as an unpacked product with depth blocks of kb.
template <class T>
inline void run_packed(std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t kb, const T* a, std::int64_t a_ext,
                       std::int64_t a_r0, const T* b, std::int64_t b_ext, std::int64_t b_c0,
                       const expr::MatOperand<T>& c, T alpha, T beta) {
  constexpr int MR = Shape<T>::MR, NR = Shape<T>::NR;
  alignas(64) T tile[MR * NR];
  const expr::NoEpilogue epi{};
  for (std::int64_t p0 = 0; p0 < k; p0 += kb) {
    const std::int64_t kc = std::min(kb, k - p0);
    const bool first = p0 == 0, last = p0 + kc >= k;
    const T* ap = a + p0 * a_ext + a_r0 * kc;
    const T* bp = b + p0 * b_ext + b_c0 * kc;
    for (std::int64_t i0 = 0; i0 < m; i0 += kMC) {
      const std::int64_t mc = std::min(kMC, m - i0);
      for (std::int64_t jr = 0; jr < n; jr += NR) {
        const int nr = static_cast<int>(std::min<std::int64_t>(NR, n - jr));
        for (std::int64_t ir = i0; ir < i0 + mc; ir += MR) {
          if (c.col == 1 && nr == NR && ir + MR <= m) {
            micro_kernel_c(kc, ap + ir * kc, bp + jr * kc, c.at(0, ir, jr), c.row, alpha, first ? beta : T(1),
                           !first || beta != T(0));
            continue;
          }
          micro_kernel_alone(kc, ap + ir * kc, bp + jr * kc, tile);
          const int mr = static_cast<int>(std::min<std::int64_t>(MR, m - ir));
          write_tile(tile, mr, nr, c, 0, ir, jr, alpha, beta, first, last, epi, 0);
        }
      }
    }
  }
}
