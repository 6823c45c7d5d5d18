// core/entry.hpp and core/types.hpp: the vocabulary of the one entry-point shape.
#include <doctest/doctest.h>

#include <type_traits>

#include "kdloss/core/entry.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/workspace.hpp"

TEST_CASE("Reduction{} is mean, PyTorch's default, never none") {
  CHECK(kdloss::Reduction{} == kdloss::Reduction::mean);
  kdloss::Reduction r{};
  CHECK(std::string(kdloss::to_string(r)) == "mean");
  CHECK(std::string(kdloss::to_string(kdloss::Reduction::none)) == "none");
}

TEST_CASE("Mode: what each mode writes") {
  using kdloss::Mode;
  CHECK(kdloss::writes_value(Mode::forward));
  CHECK_FALSE(kdloss::writes_gradients(Mode::forward));
  CHECK_FALSE(kdloss::writes_value(Mode::backward));
  CHECK(kdloss::writes_gradients(Mode::backward));
  CHECK(kdloss::writes_value(Mode::forward_backward));
  CHECK(kdloss::writes_gradients(Mode::forward_backward));
  CHECK(std::string(kdloss::to_string(Mode::forward_backward)) == "forward_backward");
}

TEST_CASE("absent/present: only a default-constructed view is absent") {
  float x = 1.0f;
  CHECK(kdloss::absent(kdloss::View<const float>{}));
  CHECK(kdloss::present(kdloss::host_scalar(&x)));                   // rank 0 with data: a scalar
  CHECK(kdloss::present(kdloss::host_view<float>(nullptr, {0, 3})));  // empty, but with a shape
  CHECK(kdloss::present(kdloss::host_view(&x, {1})));
}

TEST_CASE("Exec: defaults and the opaque handles") {
  const kdloss::Exec exec{};
  CHECK(exec.workspace.data == nullptr);
  CHECK(exec.stream.handle == nullptr);
  CHECK(exec.blas.handle == nullptr);
  struct FakeHandle {};
  FakeHandle h;
  CHECK(kdloss::BlasHandle(&h).handle == static_cast<void*>(&h));
  CHECK(kdloss::GradAccumulate{}.beta == 0.0);
  CHECK(kdloss::Reserve{}.bytes == 0);
}
