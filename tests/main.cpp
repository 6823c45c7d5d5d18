// The single test main: says up front whether GPU cases run or are skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "support/test_support.hpp"

int main(int argc, char** argv) {
  std::printf("kdloss tests: %s\n", kdloss_test::gpu_status().c_str());
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (!kdloss_test::gpu_available())
    std::printf("kdloss tests: GPU test cases were SKIPPED (%s)\n", kdloss_test::gpu_status().c_str());
  return rc;
}
