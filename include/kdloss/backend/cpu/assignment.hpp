// kdloss/backend/cpu/assignment.hpp: the host backend of a batched linear-sum-assignment call
// (expr/assignment.hpp): scipy's rectangular_lsap (Crouse's shortest augmenting path, scipy >= 1.6
// form) reproduced operation for operation in float64, so the assignment is scipy's bit for bit,
// ties included. Problems run in parallel, one per thread at a time, each in its own scratch slot.
//
// Speed without changing a single floating-point operation: scipy scans the remaining columns
// through an index list (remaining[it]) into column-indexed arrays. Here the per-column search
// arrays are kept *in scan order* (position p holds column col[p]; removing position k moves the last
// remaining position into k, exactly as scipy's remaining[index] = remaining[--n]), so the scan reads
// them contiguously, four lanes at a time, and the columns already scanned (scipy's SC) are the tail.
// The minimum and scipy's tie rule (the last unassigned tied column in scan order, else the first
// tied one) are found in a second contiguous pass over the same positions.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/expr/assignment.hpp"

namespace kdloss::backend::cpu::assignment {

namespace status = ::kdloss::expr::assignment_status;

/// The sizes of problem b (rows, cols), read from the views or the full Q x T.
template <class T>
inline void problem_size(const expr::AssignmentBatch<T>& P, std::int64_t b, std::int64_t& nr, std::int64_t& nc) {
  nr = P.rows ? P.rows[b * P.rows_stride] : P.Q;
  nc = P.cols ? P.cols[b * P.cols_stride] : P.Tn;
}

/// Pointers into one slot.
struct Slot {
  double *cost, *u, *v, *spc, *vw, *spcw;
  std::int64_t *col, *pathw, *freew, *path, *row4col, *col4row, *visited;
  Slot(void* base, const expr::AssignmentSlot& s) {
    auto* p = static_cast<unsigned char*>(base);
    cost = reinterpret_cast<double*>(p + s.cost);
    u = reinterpret_cast<double*>(p + s.u);
    v = reinterpret_cast<double*>(p + s.v);
    spc = reinterpret_cast<double*>(p + s.spc);
    vw = reinterpret_cast<double*>(p + s.vw);
    spcw = reinterpret_cast<double*>(p + s.spcw);
    col = reinterpret_cast<std::int64_t*>(p + s.col);
    pathw = reinterpret_cast<std::int64_t*>(p + s.pathw);
    freew = reinterpret_cast<std::int64_t*>(p + s.freew);
    path = reinterpret_cast<std::int64_t*>(p + s.path);
    row4col = reinterpret_cast<std::int64_t*>(p + s.row4col);
    col4row = reinterpret_cast<std::int64_t*>(p + s.col4row);
    visited = reinterpret_cast<std::int64_t*>(p + s.visited);
  }
};

#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(KDLOSS_NO_VECTOR_EXTENSIONS)
#define KDLOSS_LSA_VECTORS 1
typedef double lsa_v4d __attribute__((vector_size(32), aligned(8)));
typedef std::int64_t lsa_v4i __attribute__((vector_size(32), aligned(8)));
#else
#define KDLOSS_LSA_VECTORS 0
#endif

/// One search step over the remaining positions [0, num) for row i: relax the shortest-path costs
/// (scipy: r = minVal + cost[i, j] - u[i] - v[j]; if r < spc[j] then path[j] = i, spc[j] = r) and
/// return the minimum of the relaxed costs.
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN inline double relax(const double* crow, const std::int64_t* col, const double* vw,
                                                         double* spcw, std::int64_t* pathw, std::int64_t num,
                                                         double minVal, double ui, std::int64_t i) {
  const double inf = std::numeric_limits<double>::infinity();
  std::int64_t p = 0;
  double lo = inf;
#if KDLOSS_LSA_VECTORS
  lsa_v4d lo4 = {inf, inf, inf, inf};
  const lsa_v4i iv = {i, i, i, i};
  for (; p + 4 <= num; p += 4) {
    const lsa_v4d c = {crow[col[p]], crow[col[p + 1]], crow[col[p + 2]], crow[col[p + 3]]};
    lsa_v4d v, s;
    std::memcpy(&v, vw + p, sizeof v);
    std::memcpy(&s, spcw + p, sizeof s);
    const lsa_v4d r = ((minVal + c) - ui) - v;
    const lsa_v4i m = r < s;
    s = m ? r : s;
    lsa_v4i pa;
    std::memcpy(&pa, pathw + p, sizeof pa);
    pa = m ? iv : pa;
    std::memcpy(spcw + p, &s, sizeof s);
    std::memcpy(pathw + p, &pa, sizeof pa);
    lo4 = s < lo4 ? s : lo4;
  }
  for (int l = 0; l < 4; ++l) lo = lo4[l] < lo ? lo4[l] : lo;
#endif
  for (; p < num; ++p) {
    const double r = minVal + crow[col[p]] - ui - vw[p];
    if (r < spcw[p]) {
      pathw[p] = i;
      spcw[p] = r;
    }
    lo = spcw[p] < lo ? spcw[p] : lo;
  }
  return lo;
}

/// scipy's choice among the positions whose cost equals the minimum `lo`: the last one whose column
/// is unassigned (freew = -1), else the first one.
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN inline std::int64_t pick(const double* spcw, const std::int64_t* freew,
                                                              std::int64_t num, double lo) {
  std::int64_t last_free = -1, first = num;
  std::int64_t p = 0;
#if KDLOSS_LSA_VECTORS
  lsa_v4i lf = {-1, -1, -1, -1}, fi = {num, num, num, num};
  lsa_v4i pos = {0, 1, 2, 3};
  const lsa_v4i four = {4, 4, 4, 4};
  for (; p + 4 <= num; p += 4, pos += four) {
    lsa_v4d s;
    lsa_v4i f;
    std::memcpy(&s, spcw + p, sizeof s);
    std::memcpy(&f, freew + p, sizeof f);
    const lsa_v4i eq = s == lo;
    lf = (eq & f) != 0 ? pos : lf;
    fi = (eq != 0) & (fi == num) ? pos : fi;
  }
  for (int l = 0; l < 4; ++l) {
    last_free = lf[l] > last_free ? lf[l] : last_free;
    first = fi[l] < first ? fi[l] : first;
  }
#endif
  for (; p < num; ++p) {
    if (spcw[p] == lo) {
      if (freew[p]) last_free = p;
      if (first == num) first = p;
    }
  }
  return last_free >= 0 ? last_free : first;
}

/// Solves the N x M problem (N <= M) in slot S (its cost already copied), leaving the assignment in
/// S.col4row. Returns a status code.
inline std::int64_t solve(Slot& S, std::int64_t N, std::int64_t M) {
  const double inf = std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < N; ++i) S.u[i] = 0, S.col4row[i] = -1;
  for (std::int64_t j = 0; j < M; ++j) S.v[j] = 0, S.row4col[j] = -1;
  for (std::int64_t cur = 0; cur < N; ++cur) {
    // scipy's remaining list, filled in reverse (M-1, ..., 0); the search arrays in scan order
    for (std::int64_t p = 0; p < M; ++p) {
      const std::int64_t j = M - 1 - p;
      S.col[p] = j;
      S.vw[p] = S.v[j];
      S.spcw[p] = inf;
      S.freew[p] = S.row4col[j] == -1 ? -1 : 0;
      S.pathw[p] = -1;
    }
    std::int64_t num = M, visited = 0, sink = -1, i = cur;
    double minVal = 0;
    while (sink == -1) {
      S.visited[visited++] = i;
      const double lo = relax(S.cost + i * M, S.col, S.vw, S.spcw, S.pathw, num, minVal, S.u[i], i);
      if (!(lo < inf)) return status::infeasible;  // scipy: minVal == INFINITY
      const std::int64_t k = pick(S.spcw, S.freew, num, lo);
      minVal = S.spcw[k];
      const std::int64_t j = S.col[k];
      if (S.freew[k])
        sink = j;
      else
        i = S.row4col[j];
      // scipy: remaining[index] = remaining[--num]; the removed position goes to the tail (scanned set)
      --num;
      std::swap(S.col[k], S.col[num]);
      std::swap(S.vw[k], S.vw[num]);
      std::swap(S.spcw[k], S.spcw[num]);
      std::swap(S.pathw[k], S.pathw[num]);
      std::swap(S.freew[k], S.freew[num]);
    }
    // the scanned columns (scipy's SC) are positions [num, M): their costs and paths, by column
    for (std::int64_t p = num; p < M; ++p) S.spc[S.col[p]] = S.spcw[p], S.path[S.col[p]] = S.pathw[p];
    // dual update, as scipy: u[cur] += minVal; u[i] += minVal - spc[col4row[i]]; v[j] -= minVal - spc[j]
    S.u[cur] += minVal;
    for (std::int64_t t = 1; t < visited; ++t) {
      const std::int64_t r = S.visited[t];
      S.u[r] += minVal - S.spc[S.col4row[r]];
    }
    for (std::int64_t p = num; p < M; ++p) S.v[S.col[p]] -= minVal - S.spcw[p];
    // augment
    std::int64_t j = sink;
    while (true) {
      const std::int64_t r = S.path[j];
      S.row4col[j] = r;
      std::swap(S.col4row[r], j);
      if (r == cur) break;
    }
  }
  return status::ok;
}

/// Reads entry (i, j) of problem b's cost as double (maximize: negated).
template <class T>
inline double entry(const expr::AssignmentBatch<T>& P, std::int64_t b, std::int64_t i, std::int64_t j) {
  const double x = static_cast<double>(P.cost[b * P.cs0 + i * P.cs1 + j * P.cs2]);
  return P.maximize ? -x : x;
}

/// Solves problem b in slot memory `base` and writes its outputs (padding -1, count, status).
template <class T>
void run_problem(const expr::AssignmentBatch<T>& P, std::int64_t b, void* base, const expr::AssignmentSlot& layout) {
  const std::int64_t K = P.K();
  std::int64_t* ri = P.row_ind + b * P.ri0;
  std::int64_t* ci = P.col_ind + b * P.ci0;
  std::int64_t nr = 0, nc = 0;
  problem_size(P, b, nr, nc);
  std::int64_t st = status::ok, pairs = 0;
  if (nr < 0 || nr > P.Q || nc < 0 || nc > P.Tn) {
    st = status::bad_size;
  } else if (nr > 0 && nc > 0) {
    Slot S(base, layout);
    const bool transpose = nc < nr;
    const std::int64_t N = transpose ? nc : nr, M = transpose ? nr : nc;
    for (std::int64_t a = 0; a < N && st == status::ok; ++a) {
      double* row = S.cost + a * M;
      for (std::int64_t c = 0; c < M; ++c) {
        const double x = transpose ? entry(P, b, c, a) : entry(P, b, a, c);
        if (x != x || x == -std::numeric_limits<double>::infinity()) {
          st = status::invalid;
          break;
        }
        row[c] = x;
      }
    }
    if (st == status::ok) st = solve(S, N, M);
    if (st == status::ok) {
      pairs = N;
      if (!transpose) {
        for (std::int64_t a = 0; a < N; ++a) ri[a * P.ri1] = a, ci[a * P.ci1] = S.col4row[a];
      } else {
        // scipy sorts the pairs by the original row (argsort of col4row): scatter by row, then compact
        for (std::int64_t r = 0; r < M; ++r) S.row4col[r] = -1;
        for (std::int64_t a = 0; a < N; ++a) S.row4col[S.col4row[a]] = a;
        std::int64_t k = 0;
        for (std::int64_t r = 0; r < M; ++r)
          if (S.row4col[r] >= 0) ri[k * P.ri1] = r, ci[k * P.ci1] = S.row4col[r], ++k;
      }
    }
  }
  for (std::int64_t k = pairs; k < K; ++k) ri[k * P.ri1] = -1, ci[k * P.ci1] = -1;
  if (P.count) P.count[b * P.count_stride] = pairs;
  if (P.status) P.status[b * P.status_stride] = st;
}

/// Slots the host call carves: one per thread that can run a problem.
inline std::int64_t host_slots(std::int64_t batch) {
  const std::int64_t t = max_threads();
  return batch < t ? batch : t;
}

/// Runs every problem of P, problems in parallel (dynamic schedule: the bits do not depend on which
/// thread solves which problem), thread t in slot t of `workspace`.
template <class T>
void run(const expr::AssignmentBatch<T>& P, void* workspace) {
  const expr::AssignmentSlot layout = expr::AssignmentSlot::make(P.slot_rows(), P.slot_cols());
  const std::int64_t slots = host_slots(P.batch);
  const double work = static_cast<double>(P.slot_rows()) * static_cast<double>(P.slot_cols()) *
                      static_cast<double>(P.slot_rows()) * static_cast<double>(P.batch);
  (void)slots;
  (void)work;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (slots > 1 && work > static_cast<double>(kParallelThreshold))
#endif
  for (std::int64_t b = 0; b < P.batch; ++b) {
    const int t = thread_id();
    run_problem(P, b, static_cast<unsigned char*>(workspace) + static_cast<std::size_t>(t) * layout.bytes, layout);
  }
}

}  // namespace kdloss::backend::cpu::assignment
