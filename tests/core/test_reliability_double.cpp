// Issue 12 §4 and §5 over every host entry point, double (test_reliability.cpp: float): the checks are in reliability_checks.hpp.
#include "core/reliability_checks.hpp"

using namespace kdloss_test::reliability;

TEST_CASE("reliability (double): every host entry point gives the same bits at 1, 2, 3 and 8 threads") {
  check_determinism<double>();
}

TEST_CASE("reliability (double): storage offsets not aligned to 16 bytes give the aligned run's bits") {
  check_misaligned<double>();
}

TEST_CASE("reliability (double): a gradient output over any input's memory is rejected, naming both, writing nothing") {
  check_aliasing<double>();
}
