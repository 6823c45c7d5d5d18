// kdloss/backend/cpu/additive_relu.hpp: the host evaluation of expr::AdditiveReluPass without the N x N'
// pairs. Per image: the scores a = P u and b = Q v; the keys sorted by b, and suffix sums over that order
// of x_j and b_j x_j; then for query i the active keys {j : b_j > -a_i} are the suffix from one binary
// search, and
//   y_i  = scale * (a_i * S_x[p_i] + S_bx[p_i]),        dA_i = scale * dy_i . S_x[p_i].
// The backward sorts the queries by a the same way (suffix sums of dy_i and a_i dy_i), so for key j
//   dB_j = scale * x_j . T_dy[q_j],                     dx_j = scale * (T_ady[q_j] + b_j T_dy[q_j]).
// Cost O((N + N') (m + c) + N log N + N' log N') per image. Sums run in double (the query and key terms
// of a_i S_x + S_bx can be large and of opposite signs). An image with a non-finite score, value or
// upstream gradient runs the pairs directly instead (O(N N' (m + c)) for that image), which reproduces a
// dense evaluation's NaN and infinity rules exactly (0 * inf = NaN for inactive pairs, inf - inf, ...).
// Every output element is computed by one thread from the same inputs in the same order, and the
// parameter gradient sums fixed chunks of rows in a fixed order: the bits do not depend on the threads.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/additive_relu.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::additive_relu {

/// Rows per partial sum of the parameter gradient (fixed, so the bits do not depend on the threads).
inline constexpr std::int64_t kChunk = 256;

inline std::int64_t chunks(std::int64_t rows) { return (rows + kChunk - 1) / kChunk; }

/// One image's scratch (reused image after image).
struct Scratch {
  double *a, *b, *sa, *sb, *sx, *sbx, *tdy, *tady, *ga, *gb, *part, *dw;
  std::int64_t *oa, *ob, *ra, *rb;  // sort orders and their inverses
};
inline Scratch carve(kdloss::detail::Carver& cv, std::int64_t n, std::int64_t n2, std::int64_t m, std::int64_t c,
                     bool backward) {
  const auto z = [](std::int64_t k) { return static_cast<std::size_t>(k); };
  Scratch s{};
  s.a = cv.take<double>(z(n));
  s.b = cv.take<double>(z(n2));
  s.sb = cv.take<double>(z(n2));
  s.ob = cv.take<std::int64_t>(z(n2));
  s.rb = cv.take<std::int64_t>(z(n2));
  s.sx = cv.take<double>(z((n2 + 1) * c));
  s.sbx = cv.take<double>(z((n2 + 1) * c));
  if (backward) {
    s.sa = cv.take<double>(z(n));
    s.oa = cv.take<std::int64_t>(z(n));
    s.ra = cv.take<std::int64_t>(z(n));
    s.tdy = cv.take<double>(z((n + 1) * c));
    s.tady = cv.take<double>(z((n + 1) * c));
    s.ga = cv.take<double>(z(n));
    s.gb = cv.take<double>(z(n2));
    s.part = cv.take<double>(z((chunks(n) + chunks(n2)) * m));
    s.dw = cv.take<double>(z(2 * m));
  }
  return s;
}
/// Scratch bytes of run(P, ...).
template <class T>
std::size_t scratch_bytes(const expr::AdditiveReluPass<T>& P) {
  kdloss::detail::Carver counter;
  carve(counter, P.n, P.n2, P.m, P.c, P.backward());
  return counter.bytes();
}

namespace detail {

template <class T>
double ld(const T* p) {
  return static_cast<double>(*p);
}
/// out = beta * out + v (beta 0 never reads out).
template <class T>
void put(T* out, double v, double beta) {
  *out = static_cast<T>(beta == 0 ? v : beta * static_cast<double>(*out) + v);
}
inline double relu(double s) { return s > 0 || s != s ? s : 0.0; }
/// torch's threshold_backward: the gradient passes unless s <= 0 (a NaN score passes it).
inline bool passes(double s) { return !(s <= 0); }

/// Keys (or queries) sorted by score, ties by index; sorted scores in `sorted`.
inline void sort_by_score(const double* score, std::int64_t n, std::int64_t* order, double* sorted) {
  std::iota(order, order + n, std::int64_t{0});
  std::sort(order, order + n, [&](std::int64_t i, std::int64_t j) {
    return score[i] < score[j] || (score[i] == score[j] && i < j);
  });
  for (std::int64_t k = 0; k < n; ++k) sorted[k] = score[order[k]];
}

/// s1[p, k] = sum_{r >= p} v(order[r], k) and s2[p, k] = sum_{r >= p} weight[order[r]] v(order[r], k)
/// (s2 null: skipped), p in [0, n], rows of c doubles. The rows of v are first copied to their sorted place
/// in s1 reading v in its own order (a channels-first view read row by row in sorted order would miss the
/// cache on every element), then summed in place from the end; threads over rows, then channel blocks.
template <class T>
void suffix_sums(const expr::MatOperand<const T>& v, std::int64_t b, const std::int64_t* order, std::int64_t* rank,
                 std::int64_t n, std::int64_t c, const double* weight, double* s1, double* s2) {
  for (std::int64_t r = 0; r < n; ++r) rank[order[r]] = r;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (n * c > kParallelThreshold)
#endif
  for (std::int64_t i = 0; i < n; ++i) {
    double* dst = s1 + rank[i] * c;
    for (std::int64_t k = 0; k < c; ++k) dst[k] = ld(v.at(b, i, k));
  }
  constexpr std::int64_t kBlock = 8;
  const std::int64_t blocks = (c + kBlock - 1) / kBlock;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (n * c > kParallelThreshold)
#endif
  for (std::int64_t kb = 0; kb < blocks; ++kb) {
    const std::int64_t k0 = kb * kBlock, k1 = std::min(c, k0 + kBlock);
    for (std::int64_t k = k0; k < k1; ++k) {
      s1[n * c + k] = 0;
      if (s2) s2[n * c + k] = 0;
    }
    for (std::int64_t r = n - 1; r >= 0; --r) {
      const double wr = s2 ? weight[order[r]] : 0.0;
      for (std::int64_t k = k0; k < k1; ++k) {
        const double x = s1[r * c + k];
        s1[r * c + k] = s1[(r + 1) * c + k] + x;
        if (s2) s2[r * c + k] = s2[(r + 1) * c + k] + wr * x;
      }
    }
  }
}

template <class T>
bool all_finite(const expr::MatOperand<const T>& v, std::int64_t b, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t k = 0; k < cols; ++k)
      if (!std::isfinite(ld(v.at(b, i, k)))) return false;
  return true;
}

/// a_i = u . p_i and b_j = v . q_j of image b.
template <class T>
void scores(const expr::AdditiveReluPass<T>& P, std::int64_t b, const Scratch& s) {
  const std::int64_t n = P.n, total = P.n + P.n2;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (total * P.m > kParallelThreshold)
#endif
  for (std::int64_t r = 0; r < total; ++r) {
    const bool query = r < n;
    const auto& rows = query ? P.p : P.q;
    const std::int64_t row = query ? r : r - n, off = query ? 0 : P.m;
    double acc = 0;
    for (std::int64_t k = 0; k < P.m; ++k) acc += ld(P.w + (off + k) * P.w_stride) * ld(rows.at(b, row, k));
    (query ? s.a[row] : s.b[row]) = acc;
  }
}

/// The pairs of image b directly (non-finite inputs), every product taken per pair as a dense evaluation
/// takes it (0 * inf = NaN for an inactive pair): y, dx, dp, dq and image b's share of dw in s.part.
template <class T>
void pairs(const expr::AdditiveReluPass<T>& P, std::int64_t b, const Scratch& s) {
  const std::int64_t n = P.n, n2 = P.n2, c = P.c, m = P.m;
  const double scale = P.scale;
  const auto ds = [&](std::int64_t i, std::int64_t j) {  // dL/dscore_ij
    if (!passes(s.a[i] + s.b[j])) return 0.0;
    double acc = 0;
    for (std::int64_t k = 0; k < c; ++k) acc += ld(P.dy.at(b, i, k)) * ld(P.x.at(b, j, k));
    return scale * acc;
  };
  const auto wk = [&](std::int64_t k) { return ld(P.w + k * P.w_stride); };
  if (P.forward()) {
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t k = 0; k < c; ++k) {
        double acc = 0;
        for (std::int64_t j = 0; j < n2; ++j) acc += relu(s.a[i] + s.b[j]) * scale * ld(P.x.at(b, j, k));
        *P.y.at(b, i, k) = static_cast<T>(acc);
      }
  }
  if (!P.backward()) return;
  const std::int64_t cn = chunks(n), cn2 = chunks(n2);
  // Queries: dp_i = sum_j ds_ij u; the u half of dw by chunks of queries. Keys: dq_j, dx_j, the v half.
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (std::int64_t ch = 0; ch < cn + cn2; ++ch) {
    const bool query = ch < cn;
    const std::int64_t first = (query ? ch : ch - cn) * kChunk, last = std::min(query ? n : n2, first + kChunk);
    const std::int64_t others = query ? n2 : n, off = query ? 0 : m;
    const auto& rows = query ? P.p : P.q;
    const auto& out = query ? P.dp : P.dq;
    double* part = s.part + ch * m;
    for (std::int64_t k = 0; k < m; ++k) part[k] = 0;
    std::vector<double> d(static_cast<std::size_t>(others));
    for (std::int64_t r = first; r < last; ++r) {
      for (std::int64_t o = 0; o < others; ++o) d[o] = query ? ds(r, o) : ds(o, r);
      for (std::int64_t k = 0; k < m; ++k) {
        double grad = 0;
        for (std::int64_t o = 0; o < others; ++o) {
          grad += d[o] * wk(off + k);
          part[k] += d[o] * ld(rows.at(b, r, k));
        }
        if (out.data) put(out.at(b, r, k), grad, P.beta_in);
      }
      if (!query && P.dx.data)
        for (std::int64_t k = 0; k < c; ++k) {
          double v = 0;
          for (std::int64_t i = 0; i < n; ++i) v += relu(s.a[i] + s.b[r]) * scale * ld(P.dy.at(b, i, k));
          put(P.dx.at(b, r, k), v, P.beta_in);
        }
    }
  }
}

/// Image b by sorts, suffix sums and binary searches (every input finite).
template <class T>
void sorted(const expr::AdditiveReluPass<T>& P, std::int64_t b, const Scratch& s) {
  const std::int64_t n = P.n, n2 = P.n2, c = P.c;
  const double scale = P.scale;
  sort_by_score(s.b, n2, s.ob, s.sb);
  suffix_sums(P.x, b, s.ob, s.rb, n2, c, s.b, s.sx, P.forward() ? s.sbx : nullptr);
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (n * c > kParallelThreshold)
#endif
  for (std::int64_t i = 0; i < n; ++i) {
    const double a = s.a[i];
    const std::int64_t p = std::upper_bound(s.sb, s.sb + n2, -a) - s.sb;  // first key with b > -a
    const double* sx = s.sx + p * c;
    if (P.forward()) {
      const double* sbx = s.sbx + p * c;
      for (std::int64_t k = 0; k < c; ++k) *P.y.at(b, i, k) = static_cast<T>(scale * (a * sx[k] + sbx[k]));
    }
    if (P.backward()) {
      double acc = 0;
      for (std::int64_t k = 0; k < c; ++k) acc += ld(P.dy.at(b, i, k)) * sx[k];
      s.ga[i] = scale * acc;
    }
  }
  if (!P.backward()) return;
  sort_by_score(s.a, n, s.oa, s.sa);
  suffix_sums(P.dy, b, s.oa, s.ra, n, c, s.a, s.tdy, s.tady);
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (n2 * c > kParallelThreshold)
#endif
  for (std::int64_t j = 0; j < n2; ++j) {
    const double bj = s.b[j];
    const std::int64_t q = std::upper_bound(s.sa, s.sa + n, -bj) - s.sa;  // first query with a > -b
    const double *tdy = s.tdy + q * c, *tady = s.tady + q * c;
    double acc = 0;
    for (std::int64_t k = 0; k < c; ++k) acc += ld(P.x.at(b, j, k)) * tdy[k];
    s.gb[j] = scale * acc;
    if (P.dx.data)
      for (std::int64_t k = 0; k < c; ++k) put(P.dx.at(b, j, k), scale * (tady[k] + bj * tdy[k]), P.beta_in);
  }
}

/// dp = ga u, dq = gb v, and image b's share of dw in s.part (fixed chunks).
template <class T>
void finish(const expr::AdditiveReluPass<T>& P, std::int64_t b, const Scratch& s) {
  const std::int64_t n = P.n, m = P.m, cn = chunks(n), cn2 = chunks(P.n2);
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if ((n + P.n2) * m > kParallelThreshold)
#endif
  for (std::int64_t r = 0; r < n + P.n2; ++r) {
    const bool query = r < n;
    const std::int64_t row = query ? r : r - n, off = query ? 0 : m;
    const auto& out = query ? P.dp : P.dq;
    if (!out.data) continue;
    const double g = query ? s.ga[row] : s.gb[row];
    for (std::int64_t k = 0; k < m; ++k) put(out.at(b, row, k), g * ld(P.w + (off + k) * P.w_stride), P.beta_in);
  }
  if (!P.dw) return;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if ((n + P.n2) * m > kParallelThreshold)
#endif
  for (std::int64_t ch = 0; ch < cn + cn2; ++ch) {
    const bool query = ch < cn;
    const std::int64_t first = (query ? ch : ch - cn) * kChunk;
    const std::int64_t last = std::min(query ? n : P.n2, first + kChunk);
    const auto& rows = query ? P.p : P.q;
    const double* g = query ? s.ga : s.gb;
    double* part = s.part + ch * m;
    for (std::int64_t k = 0; k < m; ++k) part[k] = 0;
    for (std::int64_t r = first; r < last; ++r)
      for (std::int64_t k = 0; k < m; ++k) part[k] += g[r] * ld(rows.at(b, r, k));
  }
}

/// Adds image b's chunk partials to the running dw, chunk after chunk.
template <class T>
void add_partials(const expr::AdditiveReluPass<T>& P, const Scratch& s) {
  const std::int64_t cn = chunks(P.n), cn2 = chunks(P.n2);
  for (std::int64_t ch = 0; ch < cn + cn2; ++ch) {
    double* dw = s.dw + (ch < cn ? 0 : P.m);
    for (std::int64_t k = 0; k < P.m; ++k) dw[k] += s.part[ch * P.m + k];
  }
}

}  // namespace detail

/// Evaluates P with `scratch` of scratch_bytes(P) bytes.
template <class T>
void run(const expr::AdditiveReluPass<T>& P, void* scratch) {
  kdloss::detail::Carver cv(scratch);
  const Scratch s = carve(cv, P.n, P.n2, P.m, P.c, P.backward());
  if (P.backward()) std::fill(s.dw, s.dw + 2 * P.m, 0.0);
  for (std::int64_t b = 0; b < P.batch; ++b) {
    detail::scores(P, b, s);
    bool finite = std::all_of(s.a, s.a + P.n, [](double v) { return std::isfinite(v); }) &&
                  std::all_of(s.b, s.b + P.n2, [](double v) { return std::isfinite(v); }) &&
                  detail::all_finite(P.x, b, P.n2, P.c);
    if (P.backward()) finite = finite && detail::all_finite(P.dy, b, P.n, P.c);
    if (finite) {
      detail::sorted(P, b, s);
      if (P.backward()) detail::finish(P, b, s);
    } else {
      detail::pairs(P, b, s);
    }
    if (P.dw) detail::add_partials(P, s);
  }
  if (P.dw)
    for (std::int64_t k = 0; k < 2 * P.m; ++k) detail::put(P.dw + k * P.dw_stride, s.dw[k], P.beta_param);
}

} } }  // namespace kdloss::backend::cpu::additive_relu
