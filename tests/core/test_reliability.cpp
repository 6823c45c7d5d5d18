// Issue 12 §4 and §5 over every host entry point, float (test_reliability_double.cpp: double): the checks are in reliability_checks.hpp.
#include "core/reliability_checks.hpp"

using namespace kdloss_test::reliability;

TEST_CASE("reliability (float): every host entry point gives the same bits at 1, 2, 3 and 8 threads") {
  check_determinism<float>();
}

TEST_CASE("reliability (float): storage offsets not aligned to 16 bytes give the aligned run's bits") {
  check_misaligned<float>();
}

TEST_CASE("reliability (float): a gradient output over any input's memory is rejected, naming both, writing nothing") {
  check_aliasing<float>();
}
