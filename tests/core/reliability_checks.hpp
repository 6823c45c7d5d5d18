// The checks of test_reliability.cpp (float) and test_reliability_double.cpp over every host entry
// point (tests/support/entry_table.hpp). One file per element type: the table instantiates every entry
// point, so one file for both types was the longest compile of the suite.
// - determinism: the bits of every output are the same at 1, 2, 3 and 8 threads;
// - storage offsets not aligned to 16 bytes (every buffer one element past a 64-byte boundary) give
//   the bits of the aligned run;
// - a gradient output over an input's memory is rejected with an error naming both arguments, and
//   nothing is written.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "support/entry_table.hpp"

#if KDLOSS_OPENMP
#include <omp.h>
#endif

namespace kdloss_test::reliability {

using kdloss_test::table::Ctx;
using kdloss_test::table::Entry;

inline std::vector<unsigned char> run_bytes(const Entry& e, int shift) {
  Ctx c(shift);
  e.run(c);
  return c.bytes();
}

/// Largest difference in units in the last place between two byte images of T arrays (0 when the
/// bits are equal; NaN pairs count as equal when both are NaN).
template <class T>
double max_ulps(const std::vector<unsigned char>& a, const std::vector<unsigned char>& b) {
  double worst = 0;
  for (std::size_t i = 0; i + sizeof(T) <= a.size(); i += sizeof(T)) {
    T x, y;
    std::memcpy(&x, a.data() + i, sizeof(T));
    std::memcpy(&y, b.data() + i, sizeof(T));
    if (std::isnan(x) && std::isnan(y)) continue;
    if (x == y) continue;
    const double ulp = std::fabs(static_cast<double>(std::nextafter(x, y) - x));
    worst = std::max(worst, std::fabs(static_cast<double>(x) - static_cast<double>(y)) / ulp);
  }
  return worst;
}

template <class T>
void check_determinism() {
#if KDLOSS_OPENMP
  const int old = omp_get_max_threads();
  for (const Entry& e : kdloss_test::table::entries<T>()) {
    CAPTURE(e.name);
    omp_set_num_threads(1);
    const auto one = run_bytes(e, 0);
    for (int threads : {2, 3, 8}) {
      CAPTURE(threads);
      omp_set_num_threads(threads);
      const auto many = run_bytes(e, 0);
      REQUIRE(many.size() == one.size());
      if (e.nondeterministic.empty()) {
        if (many != one) FAIL_CHECK(e.name << ": " << max_ulps<T>(one, many) << " ulps apart at " << threads << " threads");
      } else {
        MESSAGE(e.name << " (documented nondeterministic: " << e.nondeterministic << "): " << max_ulps<T>(one, many)
                       << " ulps at " << threads << " threads");
      }
    }
  }
  omp_set_num_threads(old);
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

template <class T>
void check_misaligned() {
  for (const Entry& e : kdloss_test::table::entries<T>()) {
    CAPTURE(e.name);
    const auto aligned = run_bytes(e, 0), shifted = run_bytes(e, 1);
    REQUIRE(aligned.size() == shifted.size());
    if (aligned != shifted)
      FAIL_CHECK(e.name << ": storage one element off a 16-byte boundary changes the outputs by up to "
                        << max_ulps<T>(aligned, shifted) << " ulps");
  }
}

template <class T>
void check_aliasing() {
  for (const Entry& e : kdloss_test::table::entries<T>()) {
    if (e.alias.first.empty()) continue;
    CAPTURE(e.name);
    Ctx c(0, /*alias_first_grad=*/true);
    e.run(c);
    REQUIRE(c.aliased());
    CHECK_MESSAGE(!c.error().empty(), e.name << ": a gradient over an input's memory was accepted");
    CHECK_MESSAGE(c.error().find("'" + e.alias.first + "'") != std::string::npos, c.error());
    CHECK_MESSAGE(c.error().find("'" + e.alias.second + "'") != std::string::npos, c.error());
    CHECK_MESSAGE(c.untouched(), e.name << ": a rejected call wrote to its buffers");
    // The same gradient over every later input large enough to hold it: the teacher, parameters, an
    // upstream gradient. The table names only the first input, so the message must name the gradient
    // and say which argument it overlaps.
    for (int k = 1; k < c.inputs_seen(); ++k) {
      Ctx ck(0, /*alias_first_grad=*/true, k);
      e.run(ck);
      if (!ck.aliased()) continue;  // input k is smaller than the gradient
      CAPTURE(k);
      CHECK_MESSAGE(!ck.error().empty(), e.name << ": a gradient over input " << k << "'s memory was accepted");
      CHECK_MESSAGE(ck.error().find("'" + e.alias.first + "'") != std::string::npos, ck.error());
      CHECK_MESSAGE(ck.error().find("overlaps the memory of argument '") != std::string::npos, ck.error());
      CHECK_MESSAGE(ck.untouched(), e.name << ": a rejected call wrote to its buffers");
    }
  }
}

}  // namespace kdloss_test::reliability
