// kdloss/ops/linear_sum_assignment.hpp: batched linear sum assignment that returns exactly what
// scipy.optimize.linear_sum_assignment returns, ties included, on the host and on the GPU. See
// docs/ops/linear_sum_assignment.md.
//
// Semantics are scipy's (scipy/optimize/rectangular_lsap, >= 1.6), per problem:
//   - the cost is read as float64 whatever the element type (float, double; half, bfloat16 on the GPU);
//   - an empty problem (0 rows or 0 columns) gives no pairs before any other check;
//   - maximize negates the costs first, and only then are they validated: NaN or -inf is invalid
//     (so with maximize, +inf is invalid and -inf is the forbidden pair);
//   - +inf marks a forbidden pair; a problem with no complete matching avoiding them is infeasible;
//   - when the problem has fewer columns than rows it is transposed, solved, and the pairs sorted by row;
//   - Crouse's shortest augmenting path in scipy's exact order: columns scanned in scipy's reverse
//     remaining-list order, and among tied columns the last unassigned one in scan order wins (the
//     first tied one when none is unassigned).
// Output per problem: min(rows, cols) pairs (row_ind ascending, col_ind), as scipy's two arrays.
//
// Batching (ragged): cost is a padded [B, Q, T] view (any strides); problem b is its top-left
// rows[b] x cols[b] block, with rows/cols int64 [B] views of per-problem sizes (absent: Q, T for every
// problem). From a ragged batch with offsets (core/ragged.hpp), sizes[b] = offsets[b+1] - offsets[b].
// Outputs row_ind/col_ind int64 [B, K], K = min(Q, T): pair k of problem b at [b, k] for
// k < count[b], -1 after. count and status are int64 [B].
//
// Errors: on the host a NaN/-inf entry or a size outside [0, Q]/[0, T] throws kdloss::Error before
// anything is written (naming the argument, the problem and the entry). An infeasible problem is
// reported in status[b] (1) with count 0 and -1 pairs; with status absent on the host it throws after
// the run. On the GPU everything is reported in status (1 infeasible, 2 invalid entry, 3 bad size),
// never by a host synchronisation: the call is one kernel launch and can be captured in a CUDA graph.
//
// Entry-point shape (core/entry.hpp): LinearSumAssignmentArgs, linear_sum_assignment_check,
// linear_sum_assignment_workspace_bytes, linear_sum_assignment(args, mode, exec) (Mode::forward only:
// an assignment has no gradient), and the wrapper linear_sum_assignment(cost, row_ind, col_ind, ...).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/backend/dispatch_assignment.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/assignment.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

/// Per-problem status codes of linear_sum_assignment (the status view).
namespace assignment_status = ::kdloss::expr::assignment_status;

/// Options of linear_sum_assignment.
struct LinearSumAssignmentOptions {
  bool maximize = false;  // scipy's maximize: the costs are negated first, then validated
};

/// The arguments of one batched call. cost [B, Q, T] float/double (half/bfloat16 on the GPU), any
/// strides; rows, cols optional int64 [B] sizes (problem b = cost[b, :rows[b], :cols[b]]); row_ind,
/// col_ind int64 [B, min(Q, T)] (written whole: pairs then -1); count, status optional int64 [B].
///
///   std::vector<double> c = {4, 1, 3, 2, 0, 5, 3, 2, 2};            // scipy's docstring example
///   std::vector<std::int64_t> r(3), k(3);
///   kdloss::ops::LinearSumAssignmentArgs<double> args;
///   args.cost = kdloss::host_view<const double>(c.data(), {1, 3, 3});
///   args.row_ind = kdloss::host_view(r.data(), {1, 3});
///   args.col_ind = kdloss::host_view(k.data(), {1, 3});
///   kdloss::ops::linear_sum_assignment(args, kdloss::Mode::forward);   // k = {1, 0, 2}
template <class T>
struct LinearSumAssignmentArgs {
  using value_type = T;
  View<const T> cost{};
  View<const std::int64_t> rows{};  // optional per-problem row counts, <= Q
  View<const std::int64_t> cols{};  // optional per-problem column counts, <= T
  View<std::int64_t> row_ind{};
  View<std::int64_t> col_ind{};
  View<std::int64_t> count{};   // optional: pairs of each problem (min(rows, cols); 0 when not solved)
  View<std::int64_t> status{};  // optional on the host, required on the GPU: assignment_status codes
  LinearSumAssignmentOptions options{};
};

namespace lsa_detail {

inline constexpr const char* kName = "kdloss::ops::linear_sum_assignment";

template <class T>
std::int64_t pairs_width(const LinearSumAssignmentArgs<T>& a) {
  return a.cost.shape[1] < a.cost.shape[2] ? a.cost.shape[1] : a.cost.shape[2];
}

template <class T>
void check_shapes(const char* fn, const LinearSumAssignmentArgs<T>& a) {
  const kdloss::detail::Checker ck{fn};
  using kdloss::detail::require;
  require(present(a.cost), fn, ": argument 'cost' is absent");
  ck.rank(a.cost, "cost", 3);
  ck.not_null(a.cost, "cost");
}

template <class T>
void check(const LinearSumAssignmentArgs<T>& a, Mode mode) {
  const char* fn = kName;
  const kdloss::detail::Checker ck{fn};
  using kdloss::detail::require;
  require(mode == Mode::forward, fn, ": an assignment has no gradient; only Mode::forward is valid, not ",
          to_string(mode));
  check_shapes(fn, a);
  kdloss::detail::require_backend<T>(fn, a.cost.device);
  const Device dev = a.cost.device;
  const std::int64_t B = a.cost.shape[0], K = pairs_width(a);
  const auto out = [&](const View<std::int64_t>& v, const char* name, const Dims& shape) {
    ck.not_null(v, name);
    ck.shape(v, name, shape);
    ck.device(v, name, dev);
    ck.unique(v, name);
    ck.disjoint(v, name, a.cost, "cost");
    ck.disjoint(v, name, a.rows, "rows");
    ck.disjoint(v, name, a.cols, "cols");
  };
  require(present(a.row_ind), fn, ": argument 'row_ind' is absent but the call writes it");
  require(present(a.col_ind), fn, ": argument 'col_ind' is absent but the call writes it");
  out(a.row_ind, "row_ind", Dims{B, K});
  out(a.col_ind, "col_ind", Dims{B, K});
  ck.disjoint(a.row_ind, "row_ind", a.col_ind, "col_ind");
  if (present(a.count)) {
    out(a.count, "count", Dims{B});
    ck.disjoint(a.count, "count", a.row_ind, "row_ind");
    ck.disjoint(a.count, "count", a.col_ind, "col_ind");
  }
  if (present(a.status)) {
    out(a.status, "status", Dims{B});
    ck.disjoint(a.status, "status", a.row_ind, "row_ind");
    ck.disjoint(a.status, "status", a.col_ind, "col_ind");
    if (present(a.count)) ck.disjoint(a.status, "status", a.count, "count");
  } else {
    require(dev.is_host(), fn, ": argument 'status' is absent but a call on ", dev.str(),
            " reports infeasible and invalid problems only there (no host synchronisation); pass an int64 [", B,
            "] view");
  }
  const auto sizes = [&](const View<const std::int64_t>& v, const char* name) {
    if (absent(v)) return;
    ck.not_null(v, name);
    ck.shape(v, name, Dims{B});
    ck.device(v, name, dev);
  };
  sizes(a.rows, "rows");
  sizes(a.cols, "cols");
}

/// The checks that read values (host calls only, after check, before anything is written): the
/// sizes in range and scipy's entry test after maximize's negation, skipped for empty problems.
/// Not part of linear_sum_assignment_check, which reads shapes only (a check never touches data).
template <class T>
void check_values(const LinearSumAssignmentArgs<T>& a) {
  const char* fn = kName;
  using kdloss::detail::require;
  const std::int64_t B = a.cost.shape[0], Q = a.cost.shape[1], Tn = a.cost.shape[2];
  const auto sizes = [&](const View<const std::int64_t>& v, const char* name, std::int64_t limit) {
    if (absent(v)) return;
    for (std::int64_t b = 0; b < B; ++b)
      require(v(b) >= 0 && v(b) <= limit, fn, ": argument '", name, "' gives problem ", b, " size ", v(b),
              ", outside [0, ", limit, "] (cost has shape ", a.cost.shape.str(), ")");
  };
  sizes(a.rows, "rows", Q);
  sizes(a.cols, "cols", Tn);
  if constexpr (kdloss::detail::host_types_v<T>) {
    // NaN, or the value that becomes -inf after the negation: x != x || x == bad, one branch-free pass
    // per row (then the slow path finds and names the first offending entry)
    const double bad = a.options.maximize ? std::numeric_limits<double>::infinity()
                                          : -std::numeric_limits<double>::infinity();
    const std::int64_t s0 = a.cost.strides[0], s1 = a.cost.strides[1], s2 = a.cost.strides[2];
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t nr = present(a.rows) ? a.rows(b) : Q, nc = present(a.cols) ? a.cols(b) : Tn;
      if (nr == 0 || nc == 0) continue;
      bool any = false;
      for (std::int64_t i = 0; i < nr && !any; ++i) {
        const T* row = a.cost.data + b * s0 + i * s1;
        int hit = 0;
        if (s2 == 1) {
          for (std::int64_t j = 0; j < nc; ++j) hit |= (row[j] != row[j]) | (static_cast<double>(row[j]) == bad);
        } else {
          for (std::int64_t j = 0; j < nc; ++j)
            hit |= (row[j * s2] != row[j * s2]) | (static_cast<double>(row[j * s2]) == bad);
        }
        any = hit != 0;
      }
      if (!any) continue;
      for (std::int64_t i = 0; i < nr; ++i)
        for (std::int64_t j = 0; j < nc; ++j) {
          const double x = a.options.maximize ? -static_cast<double>(a.cost(b, i, j)) : static_cast<double>(a.cost(b, i, j));
          require(!(x != x) && x != -std::numeric_limits<double>::infinity(), fn, ": argument 'cost' of problem ", b,
                  " contains invalid numeric entries (scipy: 'matrix contains invalid numeric entries'): cost[", b,
                  ", ", i, ", ", j, "] = ", static_cast<double>(a.cost(b, i, j)),
                  a.options.maximize ? " (NaN or +inf with maximize)" : " (NaN or -inf)");
        }
    }
  }
}

template <class T>
expr::AssignmentBatch<T> batch_of(const LinearSumAssignmentArgs<T>& a, std::int64_t* status) {
  expr::AssignmentBatch<T> P;
  P.cost = a.cost.data;
  P.cs0 = a.cost.strides[0], P.cs1 = a.cost.strides[1], P.cs2 = a.cost.strides[2];
  P.batch = a.cost.shape[0], P.Q = a.cost.shape[1], P.Tn = a.cost.shape[2];
  if (present(a.rows)) P.rows = a.rows.data, P.rows_stride = a.rows.strides[0];
  if (present(a.cols)) P.cols = a.cols.data, P.cols_stride = a.cols.strides[0];
  P.row_ind = a.row_ind.data, P.ri0 = a.row_ind.strides[0], P.ri1 = a.row_ind.strides[1];
  P.col_ind = a.col_ind.data, P.ci0 = a.col_ind.strides[0], P.ci1 = a.col_ind.strides[1];
  if (present(a.count)) P.count = a.count.data, P.count_stride = a.count.strides[0];
  if (present(a.status)) P.status = a.status.data, P.status_stride = a.status.strides[0];
  if (status) P.status = status, P.status_stride = 1;
  P.maximize = a.options.maximize;
  return P;
}

}  // namespace lsa_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run; writes nothing and
/// reads no data. Errors: mode other than forward; cost absent or not rank 3; row_ind/col_ind not
/// [B, min(Q, T)]; count/status not [B]; rows/cols not [B]; views on another device; overlapping
/// outputs; on the GPU an absent status. (The call itself also rejects, on the host and before writing
/// anything, a size outside [0, Q] / [0, T] and a NaN or -inf entry of a nonempty problem.)
///
///   kdloss::ops::LinearSumAssignmentArgs<double> args;   // views filled in as in the Args example
///   kdloss::ops::linear_sum_assignment_check(args, kdloss::Mode::forward);
template <class T>
void linear_sum_assignment_check(const LinearSumAssignmentArgs<T>& args, Mode mode = Mode::forward) {
  lsa_detail::check(args, mode);
}

/// Workspace bytes: float64 working copy of one problem and its search arrays (about
/// 8 * (N * M + 12 * M + 3 * N) bytes for N = min(Q, T), M = max(Q, T)), one per host thread on the
/// host (allocated by the call when the caller passes none), one per problem on the GPU.
///
///   kdloss::ops::LinearSumAssignmentArgs<double> args;   // views filled in as in the Args example
///   std::size_t bytes = kdloss::ops::linear_sum_assignment_workspace_bytes(args);
template <class T>
std::size_t linear_sum_assignment_workspace_bytes(const LinearSumAssignmentArgs<T>& args) {
  lsa_detail::check_shapes("kdloss::ops::linear_sum_assignment_workspace_bytes", args);
  const Dims& s = args.cost.shape;
  const std::int64_t N = s[1] < s[2] ? s[1] : s[2], M = s[1] < s[2] ? s[2] : s[1];
  return kdloss::detail::assignment_workspace_bytes(args.cost.device, s[0], N, M);
}

/// Checks, then solves every problem (see the header comment for the exact semantics). On the host
/// the problems run in parallel; with status absent an infeasible problem throws after the run
/// (the other problems' outputs are written). On the GPU: one launch, no host synchronisation.
///
///   std::vector<float> c(2 * 4 * 3, 1.0f);                 // two all-equal 4 x 3 problems
///   std::vector<std::int64_t> rows = {4, 2}, r(2 * 3), k(2 * 3), n(2), st(2);
///   kdloss::ops::LinearSumAssignmentArgs<float> args;
///   args.cost = kdloss::host_view<const float>(c.data(), {2, 4, 3});
///   args.rows = kdloss::host_view<const std::int64_t>(rows.data(), {2});   // problem 1 is 2 x 3
///   args.row_ind = kdloss::host_view(r.data(), {2, 3});
///   args.col_ind = kdloss::host_view(k.data(), {2, 3});
///   args.count = kdloss::host_view(n.data(), {2});
///   args.status = kdloss::host_view(st.data(), {2});
///   kdloss::ops::linear_sum_assignment(args, kdloss::Mode::forward);   // n = {3, 2}
template <class T>
void linear_sum_assignment(const LinearSumAssignmentArgs<T>& args, Mode mode = Mode::forward,
                           const Exec& exec = {}) {
  linear_sum_assignment_check(args, mode);
  if (args.cost.device.is_host()) lsa_detail::check_values(args);
  const std::size_t bytes = linear_sum_assignment_workspace_bytes(args);
  kdloss::detail::HostScratch host;
  void* ws = kdloss::detail::resolve_workspace(lsa_detail::kName, args.cost.device, exec.workspace, bytes, host);
  const std::int64_t B = args.cost.shape[0];
  std::vector<std::int64_t> own_status;
  if (absent(args.status) && args.cost.device.is_host()) own_status.assign(static_cast<std::size_t>(B), 0);
  const auto P = lsa_detail::batch_of(args, own_status.empty() ? nullptr : own_status.data());
  kdloss::detail::linear_sum_assignment(args.cost.device, exec.stream, P, ws);
  for (std::int64_t b = 0; b < static_cast<std::int64_t>(own_status.size()); ++b)
    kdloss::detail::require(own_status[static_cast<std::size_t>(b)] == assignment_status::ok, lsa_detail::kName,
                            ": problem ", b, " is infeasible (scipy: 'cost matrix is infeasible'): no complete "
                            "matching avoids its forbidden entries; pass a 'status' view to get per-problem statuses");
}

/// scipy.optimize.linear_sum_assignment over a batch of equal-size problems: cost [B, Q, T],
/// row_ind/col_ind [B, min(Q, T)]. Throws for NaN/-inf entries and infeasible problems.
///
///   std::vector<double> c = {4, 1, 3, 2, 0, 5, 3, 2, 2};
///   std::vector<std::int64_t> r(3), k(3);
///   kdloss::ops::linear_sum_assignment(kdloss::host_view<const double>(c.data(), {1, 3, 3}),
///                                      kdloss::host_view(r.data(), {1, 3}), kdloss::host_view(k.data(), {1, 3}));
template <class C>
void linear_sum_assignment(const View<C>& cost, const View<std::int64_t>& row_ind, const View<std::int64_t>& col_ind,
                           const LinearSumAssignmentOptions& options = {}, const Exec& exec = {}) {
  using T = std::remove_const_t<C>;
  LinearSumAssignmentArgs<T> a;
  a.cost = cost;
  a.row_ind = row_ind;
  a.col_ind = col_ind;
  a.options = options;
  linear_sum_assignment(a, Mode::forward, exec);
}

}  // namespace ops
} }  // namespace kdloss
