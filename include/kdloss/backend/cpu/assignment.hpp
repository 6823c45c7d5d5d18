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
#include "kdloss/config.hpp"
#include "kdloss/expr/assignment.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::assignment {

namespace status = ::kdloss::expr::assignment_status;

using expr::problem_size;
using Slot = expr::AssignmentSlotPointers;

#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(KDLOSS_NO_VECTOR_EXTENSIONS)
#define KDLOSS_LSA_VECTORS 1
// Natural (32-byte) alignment: the arrays are read and written through memcpy only, and an 8-byte
// aligned vector type made GCC spill the lane minima in halves and reload them whole (a failed store
// forward per step) where the whole build targets AVX2 (-march=x86-64-v3 or a native AVX2 machine):
// 4x slower there.
typedef double lsa_v4d __attribute__((vector_size(32)));
typedef std::int64_t lsa_v4i __attribute__((vector_size(32)));
#else
#define KDLOSS_LSA_VECTORS 0
#endif

/// One search step over the remaining positions [0, num) for row i, in one pass: relax the
/// shortest-path costs (scipy: r = minVal + cost[i, j] - u[i] - v[j]; if r < spc[j] then path[j] = i,
/// spc[j] = r) and pick scipy's column: the least spc, among ties the last unassigned one in scan
/// order, else the first one. Returns the chosen position, or -1 when every spc is +inf (infeasible).
///
/// Lane l of the 4-lane loop sees positions l, l + 4, ... and applies scipy's sequential test to its
/// own positions; the lanes are then merged: among the lanes holding the global minimum, the largest
/// chosen position that is unassigned, else the smallest chosen position (each lane's chosen position
/// is then its first tie). Both give what scipy's single sequential scan gives.
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN inline std::int64_t relax_pick(const double* crow, const std::int64_t* col,
                                                                     const double* vw, double* spcw,
                                                                     std::int64_t* pathw, const std::int64_t* freew,
                                                                     std::int64_t num, std::int64_t full,
                                                                     double minVal, double ui, std::int64_t i) {
  const double inf = std::numeric_limits<double>::infinity();
  std::int64_t p = 0;
  double lo = inf;
  std::int64_t index = -1;
  (void)full;  // used by the vector path only
#if KDLOSS_LSA_VECTORS
  if (num >= 8) {
    // two sets of 4 lanes (positions 8q + l and 8q + 4 + l): independent dependency chains
    lsa_v4d lo4 = {inf, inf, inf, inf}, lo4b = lo4;
    lsa_v4i idx4 = {-1, -1, -1, -1}, idx4b = idx4, pos = {0, 1, 2, 3};
    const lsa_v4i iv = {i, i, i, i}, four = {4, 4, 4, 4}, eight = {8, 8, 8, 8};
    // before the first removal of a search, position q holds column num - 1 - q (scipy's reverse fill):
    // read the cost row backwards instead of through the column ids
    const bool reverse_order = num == full;
    const auto step = [&](std::int64_t q, const lsa_v4i& at, lsa_v4d& lo_, lsa_v4i& idx_) {
      lsa_v4d c;
      if (reverse_order) {
        const double* back = crow + (num - 4 - q);
        c = lsa_v4d{back[3], back[2], back[1], back[0]};
      } else {
        c = lsa_v4d{crow[col[q]], crow[col[q + 1]], crow[col[q + 2]], crow[col[q + 3]]};
      }
      lsa_v4d v, s;
      lsa_v4i pa, f;
      std::memcpy(&v, vw + q, sizeof v);
      std::memcpy(&s, spcw + q, sizeof s);
      std::memcpy(&pa, pathw + q, sizeof pa);
      std::memcpy(&f, freew + q, sizeof f);
      const lsa_v4d r = ((minVal + c) - ui) - v;
      const lsa_v4i m = r < s;
      s = m ? r : s;
      pa = m ? iv : pa;
      std::memcpy(spcw + q, &s, sizeof s);
      std::memcpy(pathw + q, &pa, sizeof pa);
      const lsa_v4i take = (s < lo_) | ((s == lo_) & f);
      lo_ = take ? s : lo_;
      idx_ = take ? at : idx_;
    };
    for (; p + 8 <= num; p += 8, pos += eight) {
      step(p, pos, lo4, idx4);
      step(p + 4, pos + four, lo4b, idx4b);
    }
    if (p + 4 <= num) {
      step(p, pos, lo4, idx4);
      p += 4;
    }
    // fold the second set into the first with the merge rule (largest unassigned tie, else smallest)
    for (int l = 0; l < 4; ++l) {
      const std::int64_t qa = idx4[l], qb = idx4b[l];
      if (qb < 0) continue;
      bool take_b;
      if (qa < 0 || lo4b[l] < lo4[l]) {
        take_b = true;
      } else if (lo4[l] < lo4b[l]) {
        take_b = false;
      } else {
        const bool fa = freew[qa] != 0, fb = freew[qb] != 0;
        take_b = (fa && fb) ? qb > qa : fa ? false : fb ? true : qb < qa;
      }
      if (take_b) lo4[l] = lo4b[l], idx4[l] = qb;
    }
    for (int l = 0; l < 4; ++l) lo = lo4[l] < lo ? lo4[l] : lo;
    std::int64_t last_free = -1, first = -1;
    for (int l = 0; l < 4; ++l) {
      const std::int64_t q = idx4[l];
      if (q < 0 || !(lo4[l] == lo)) continue;
      if (freew[q]) last_free = q > last_free ? q : last_free;
      first = (first < 0 || q < first) ? q : first;
    }
    index = last_free >= 0 ? last_free : first;
  }
#endif
  for (; p < num; ++p) {  // scipy's loop (the whole scan without vectors, the tail with them)
    const double r = minVal + crow[col[p]] - ui - vw[p];
    if (r < spcw[p]) {
      pathw[p] = i;
      spcw[p] = r;
    }
    if (spcw[p] < lo || (spcw[p] == lo && freew[p])) {
      lo = spcw[p];
      index = p;
    }
  }
  return lo < inf ? index : -1;
}

/// Swaps positions a and b of the per-position search arrays.
inline void swap_positions(Slot& S, std::int64_t a, std::int64_t b) {
  std::swap(S.col[a], S.col[b]);
  std::swap(S.vw[a], S.vw[b]);
  std::swap(S.spcw[a], S.spcw[b]);
  std::swap(S.pathw[a], S.pathw[b]);
  std::swap(S.freew[a], S.freew[b]);
}

/// Solves the N x M problem (N <= M) in slot S (its cost already copied), leaving the assignment in
/// S.col4row. Returns a status code.
///
/// Between searches the per-position arrays are in scipy's initial scan order (position p holds
/// column M - 1 - p, vw the dual v of that column, freew whether it is unassigned): a search records
/// its removals and undoes them afterwards (O(path length)), instead of rebuilding M entries per row.
inline std::int64_t solve(Slot& S, std::int64_t N, std::int64_t M) {
  const double inf = std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < N; ++i) S.u[i] = 0, S.col4row[i] = -1;
  for (std::int64_t p = 0; p < M; ++p) {
    S.col[p] = M - 1 - p, S.vw[p] = 0, S.freew[p] = -1, S.pathw[p] = -1;
    S.row4col[p] = -1;
  }
  std::int64_t* removed = S.removed;  // the positions chosen, in order (to undo the removals)
  for (std::int64_t cur = 0; cur < N; ++cur) {
    for (std::int64_t p = 0; p < M; ++p) S.spcw[p] = inf;
    std::int64_t num = M, visited = 0, sink = -1, i = cur;
    double minVal = 0;
    while (sink == -1) {
      S.visited[visited++] = i;
      const std::int64_t k = relax_pick(S.cost + i * M, S.col, S.vw, S.spcw, S.pathw, S.freew, num, M, minVal, S.u[i], i);
      if (k < 0) return status::infeasible;  // scipy: minVal == INFINITY
      minVal = S.spcw[k];
      const std::int64_t j = S.col[k];
      if (S.freew[k])
        sink = j;
      else
        i = S.row4col[j];
      // scipy: remaining[index] = remaining[--num]; the removed position goes to the tail (scanned set)
      removed[M - num] = k;
      S.scanned[M - num] = j;
      --num;
      swap_positions(S, k, num);
    }
    for (std::int64_t t = M - num - 1; t >= 0; --t) swap_positions(S, removed[t], M - 1 - t);  // back to scan order
    // dual update, as scipy: u[cur] += minVal; u[i] += minVal - spc[col4row[i]]; v[j] -= minVal - spc[j]
    // (column j sits at position M - 1 - j again)
    S.u[cur] += minVal;
    for (std::int64_t t = 1; t < visited; ++t) {
      const std::int64_t r = S.visited[t];
      S.u[r] += minVal - S.spcw[M - 1 - S.col4row[r]];
    }
    for (std::int64_t t = 0; t < M - num; ++t) {  // the scanned columns (scipy's SC)
      const std::int64_t p = M - 1 - S.scanned[t];
      S.vw[p] -= minVal - S.spcw[p];
    }
    // augment
    std::int64_t j = sink;
    while (true) {
      const std::int64_t r = S.pathw[M - 1 - j];
      S.row4col[j] = r;
      std::swap(S.col4row[r], j);
      if (r == cur) break;
    }
    S.freew[M - 1 - sink] = 0;
  }
  return status::ok;
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
    Slot S = layout.at(base);
    const bool transpose = nc < nr;
    const std::int64_t N = transpose ? nc : nr, M = transpose ? nr : nc;
    // the float64 working copy, read along the source rows (transposed when cols < rows)
    for (std::int64_t i = 0; i < nr && st == status::ok; ++i) {
      const T* src = P.cost + b * P.cs0 + i * P.cs1;
      double* dst = transpose ? S.cost + i : S.cost + i * M;
      const std::int64_t step = transpose ? M : 1;
      int bad = 0;
      for (std::int64_t j = 0; j < nc; ++j) {
        double x = static_cast<double>(src[j * P.cs2]);
        if (P.maximize) x = -x;
        bad |= (x != x) | (x == -std::numeric_limits<double>::infinity());
        dst[j * step] = x;
      }
      if (bad) st = status::invalid;
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
/// thread solves which problem), thread t in slot t of `workspace`. The team has at most `slots`
/// threads: with more threads than problems, a thread numbered past the slots the workspace holds
/// could otherwise take a problem (a heap overflow found by the reliability table at 8 threads).
template <class T>
void run(const expr::AssignmentBatch<T>& P, void* workspace) {
  const expr::AssignmentSlot layout = expr::AssignmentSlot::make(P.slot_rows(), P.slot_cols());
  const std::int64_t slots = host_slots(P.batch);
  const double work = static_cast<double>(P.slot_rows()) * static_cast<double>(P.slot_cols()) *
                      static_cast<double>(P.slot_rows()) * static_cast<double>(P.batch);
  (void)slots;
  (void)work;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast<int>(slots > 0 ? slots : 1)) \
    if (slots > 1 && work > static_cast<double>(kParallelThreshold))
#endif
  for (std::int64_t b = 0; b < P.batch; ++b) {
    const int t = thread_id();
    run_problem(P, b, static_cast<unsigned char*>(workspace) + static_cast<std::size_t>(t) * layout.bytes, layout);
  }
}

} } }  // namespace kdloss::backend::cpu::assignment
