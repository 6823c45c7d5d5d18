// kdloss/expr/assignment.hpp: one batched linear-sum-assignment call (ops/linear_sum_assignment.hpp),
// described for the backends (backend/cpu/assignment.hpp, backend/cuda/assignment.cuh): the padded
// cost view, the per-problem sizes, the outputs and the per-problem scratch ("slot") layout.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

/// Per-problem status codes written to the status view (int64).
namespace assignment_status {
inline constexpr std::int64_t ok = 0;          // solved (an empty problem too)
inline constexpr std::int64_t infeasible = 1;  // no complete matching avoids the forbidden (+inf) entries
inline constexpr std::int64_t invalid = 2;     // NaN or -inf after maximize's negation (GPU; the host throws)
inline constexpr std::int64_t bad_size = 3;    // rows[b] or cols[b] outside [0, Q] / [0, T] (GPU; the host throws)
}  // namespace assignment_status

/// Pointers into one problem's scratch (AssignmentSlot::at).
struct AssignmentSlotPointers {
  double *cost, *u, *vw, *spcw;
  std::int64_t *col, *pathw, *freew, *removed, *scanned, *row4col, *col4row, *visited;
};

/// Byte offsets of one problem's scratch ("slot") for problems of at most N rows and M columns
/// after the transposition (N <= M): the float64 working copy of the cost [N, M], the duals u [N]
/// v [M] and the per-column search arrays (kept in scipy's scan order: backend/cpu/assignment.hpp). 256-byte aligned pieces.
struct AssignmentSlot {
  std::size_t cost = 0, u = 0, vw = 0, spcw = 0;                                 // double
  std::size_t col = 0, pathw = 0, freew = 0, removed = 0, scanned = 0, row4col = 0;  // int64, M each
  std::size_t col4row = 0, visited = 0;                              // int64, N each
  std::size_t bytes = 0;

  KDLOSS_HOST_DEVICE static constexpr std::size_t align(std::size_t n) { return (n + 255) / 256 * 256; }
  KDLOSS_HOST_DEVICE static AssignmentSlot make(std::int64_t N, std::int64_t M) {
    AssignmentSlot s;
    const std::size_t n = static_cast<std::size_t>(N), m = static_cast<std::size_t>(M) + 4;  // +4: packet tails
    std::size_t at = 0;
    const auto take = [&at](std::size_t count) {
      const std::size_t here = at;
      at = align(at + count * 8);
      return here;
    };
    s.cost = take(n * static_cast<std::size_t>(M));
    s.u = take(n);
    s.vw = take(m);
    s.spcw = take(m);
    s.col = take(m);
    s.pathw = take(m);
    s.freew = take(m);
    s.removed = take(m);
    s.scanned = take(m);
    s.row4col = take(m);
    s.col4row = take(n);
    s.visited = take(n);
    s.bytes = at;
    return s;
  }
  KDLOSS_HOST_DEVICE AssignmentSlotPointers at(void* base) const {
    auto* p = static_cast<unsigned char*>(base);
    AssignmentSlotPointers S;
    S.cost = reinterpret_cast<double*>(p + cost);
    S.u = reinterpret_cast<double*>(p + u);
    S.vw = reinterpret_cast<double*>(p + vw);
    S.spcw = reinterpret_cast<double*>(p + spcw);
    S.col = reinterpret_cast<std::int64_t*>(p + col);
    S.pathw = reinterpret_cast<std::int64_t*>(p + pathw);
    S.freew = reinterpret_cast<std::int64_t*>(p + freew);
    S.removed = reinterpret_cast<std::int64_t*>(p + removed);
    S.scanned = reinterpret_cast<std::int64_t*>(p + scanned);
    S.row4col = reinterpret_cast<std::int64_t*>(p + row4col);
    S.col4row = reinterpret_cast<std::int64_t*>(p + col4row);
    S.visited = reinterpret_cast<std::int64_t*>(p + visited);
    return S;
  }
};

/// One batched call: B problems, problem b the top-left rows[b] x cols[b] block of cost[b]
/// (rows/cols null: the full Q x T). Outputs [B, K] with K = min(Q, T), count/status [B] (null when
/// the caller did not ask). Element (b, i, j) of the cost lies at cost[b*cs0 + i*cs1 + j*cs2].
template <class T>
struct AssignmentBatch {
  const T* cost = nullptr;
  std::int64_t cs0 = 0, cs1 = 0, cs2 = 0;
  std::int64_t batch = 0, Q = 0, Tn = 0;
  const std::int64_t* rows = nullptr;
  std::int64_t rows_stride = 0;
  const std::int64_t* cols = nullptr;
  std::int64_t cols_stride = 0;
  std::int64_t* row_ind = nullptr;
  std::int64_t ri0 = 0, ri1 = 0;
  std::int64_t* col_ind = nullptr;
  std::int64_t ci0 = 0, ci1 = 0;
  std::int64_t* count = nullptr;
  std::int64_t count_stride = 0;
  std::int64_t* status = nullptr;
  std::int64_t status_stride = 0;
  bool maximize = false;

  KDLOSS_HOST_DEVICE std::int64_t K() const { return Q < Tn ? Q : Tn; }
  KDLOSS_HOST_DEVICE std::int64_t slot_rows() const { return K(); }
  KDLOSS_HOST_DEVICE std::int64_t slot_cols() const { return Q < Tn ? Tn : Q; }
};

/// The sizes (rows, cols) of problem b: read from the size views, or the full Q x T.
template <class T>
KDLOSS_HOST_DEVICE inline void problem_size(const AssignmentBatch<T>& P, std::int64_t b, std::int64_t& nr,
                                            std::int64_t& nc) {
  nr = P.rows ? P.rows[b * P.rows_stride] : P.Q;
  nc = P.cols ? P.cols[b * P.cols_stride] : P.Tn;
}

} } }  // namespace kdloss::expr
