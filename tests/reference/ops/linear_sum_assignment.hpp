// Double references of ops::linear_sum_assignment: a plain port of scipy's rectangular_lsap as
// losses.md 5.1 describes it (index list of remaining columns, boolean SR/SC, full dual-update loops:
// none of the backend's reordering), and a brute-force optimum over all injections for small problems.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace kdloss_ref::ops {

/// scipy's result for one dense row-major problem: status 0 ok, 1 infeasible, 2 invalid; rows/cols the pairs.
struct LsaResult {
  int status = 0;
  std::vector<std::int64_t> rows, cols;
};

inline LsaResult scipy_lsa(std::vector<double> c, std::int64_t nr, std::int64_t nc, bool maximize) {
  LsaResult out;
  if (nr == 0 || nc == 0) return out;
  const bool transpose = nc < nr;
  if (transpose) {
    std::vector<double> t(c.size());
    for (std::int64_t i = 0; i < nr; ++i)
      for (std::int64_t j = 0; j < nc; ++j) t[j * nr + i] = c[i * nc + j];
    c.swap(t);
    std::swap(nr, nc);
  }
  if (maximize)
    for (double& x : c) x = -x;
  for (double x : c)
    if (std::isnan(x) || x == -INFINITY) {
      out.status = 2;
      return out;
    }
  std::vector<double> u(nr, 0), v(nc, 0), spc(nc);
  std::vector<std::int64_t> path(nc, -1), col4row(nr, -1), row4col(nc, -1);
  std::vector<bool> SR(nr), SC(nc);
  for (std::int64_t cur = 0; cur < nr; ++cur) {
    std::vector<std::int64_t> remaining(nc);
    for (std::int64_t it = 0; it < nc; ++it) remaining[it] = nc - it - 1;
    std::int64_t num = nc;
    std::fill(SR.begin(), SR.end(), false);
    std::fill(SC.begin(), SC.end(), false);
    std::fill(spc.begin(), spc.end(), INFINITY);
    double minVal = 0;
    std::int64_t i = cur, sink = -1;
    while (sink == -1) {
      std::int64_t index = -1;
      double lowest = INFINITY;
      SR[i] = true;
      for (std::int64_t it = 0; it < num; ++it) {
        const std::int64_t j = remaining[it];
        const double r = minVal + c[i * nc + j] - u[i] - v[j];
        if (r < spc[j]) path[j] = i, spc[j] = r;
        if (spc[j] < lowest || (spc[j] == lowest && row4col[j] == -1)) lowest = spc[j], index = it;
      }
      minVal = lowest;
      if (minVal == INFINITY) {
        out.status = 1;
        return out;
      }
      const std::int64_t j = remaining[index];
      if (row4col[j] == -1)
        sink = j;
      else
        i = row4col[j];
      SC[j] = true;
      remaining[index] = remaining[--num];
    }
    u[cur] += minVal;
    for (std::int64_t r = 0; r < nr; ++r)
      if (SR[r] && r != cur) u[r] += minVal - spc[col4row[r]];
    for (std::int64_t j = 0; j < nc; ++j)
      if (SC[j]) v[j] -= minVal - spc[j];
    std::int64_t j = sink;
    while (true) {
      const std::int64_t r = path[j];
      row4col[j] = r;
      std::swap(col4row[r], j);
      if (r == cur) break;
    }
  }
  if (transpose) {
    std::vector<std::int64_t> order(nr);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return col4row[a] < col4row[b]; });
    for (std::int64_t v2 : order) out.rows.push_back(col4row[v2]), out.cols.push_back(v2);
  } else {
    for (std::int64_t r = 0; r < nr; ++r) out.rows.push_back(r), out.cols.push_back(col4row[r]);
  }
  return out;
}

/// The least total cost over every assignment of min(nr, nc) pairs avoiding +inf entries (brute force,
/// small problems); +inf when there is none.
inline double brute_force_min(const std::vector<double>& c, std::int64_t nr, std::int64_t nc) {
  const bool t = nc < nr;
  const std::int64_t n = t ? nc : nr, m = t ? nr : nc;
  const auto at = [&](std::int64_t a, std::int64_t b) { return t ? c[b * nc + a] : c[a * nc + b]; };
  std::vector<std::int64_t> perm(m);
  std::iota(perm.begin(), perm.end(), 0);
  double best = INFINITY;
  do {  // every permutation of the m columns; the first n give an injection (repeats are harmless)
    double s = 0;
    for (std::int64_t a = 0; a < n; ++a) s += at(a, perm[a]);
    best = std::min(best, s);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

}  // namespace kdloss_ref::ops
