// backend::cpu::pool_sums on float NCHW inputs: the packet walk (one loop per run of contiguous
// positions evaluating every term, compiled per instruction set), with runs that end inside a
// packet, several blocks per image and terms switched off, against double sums.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "kdloss/backend/cpu/pooling.hpp"
#include "kdloss/ops/pooling.hpp"
#include "support/test_support.hpp"

using namespace kdloss;

TEST_CASE("cpu::pool_sums: float NCHW packet walk matches double sums (tails, blocks, terms off)") {
  // 4550 positions: blocks of 4096 and 454 per image, runs of 1024 and 6-position scalar tails.
  for (const Dims shape : {Dims{2, 3, 70, 65}, Dims{1, 5, 3, 3}, Dims{3, 2, 1, 7}}) {
    CAPTURE(shape.str());
    const std::int64_t nb = shape[0], nc = shape[1], np = shape[2] * shape[3];
    const auto n = static_cast<std::size_t>(shape.product());
    const auto x = kdloss_test::random_vector<float>(n, 21), y = kdloss_test::random_vector<float>(n, 22);
    std::vector<double> abs_c(static_cast<std::size_t>(nb * np)), xy_c(abs_c.size());
    std::vector<double> y_p(static_cast<std::size_t>(nb * nc)), xy_p(y_p.size());
    for (std::size_t i = 0; i < n; ++i) {  // i = (b * nc + c) * np + j
      const auto pos = static_cast<std::size_t>(static_cast<std::int64_t>(i) / (nc * np) * np) +
                       i % static_cast<std::size_t>(np);
      const auto chan = i / static_cast<std::size_t>(np);
      const double xi = x[i], yi = y[i];
      abs_c[pos] += std::fabs(xi) / static_cast<double>(nc);
      xy_c[pos] += xi * yi;
      y_p[chan] += yi / static_cast<double>(np);
      xy_p[chan] += xi * yi;
    }
    const Dims sp{nb, 1, shape[2], shape[3]}, ch{nb, nc, 1, 1};
    auto product = [](const auto& a, const auto& b) { return a * b; };
    using ops::detail::MeanTerm;
    using ops::detail::OnInputs;
    using Product = decltype(product);
    std::vector<float> g_abs_c(abs_c.size(), -1), g_xy_c(abs_c.size(), -1), g_y_p(y_p.size(), -1),
        g_xy_p(y_p.size(), -1);
    backend::cpu::pool_sums(
        shape, std::tuple{host_view<const float>(x.data(), shape), host_view<const float>(y.data(), shape)},
        std::tuple{
            expr::PoolTerm<OnInputs<MeanTerm<true>, 0>, float>{{{1.0 / static_cast<double>(nc)}},
                                                              host_view(g_abs_c.data(), sp), expr::PoolAxis::channels},
            expr::PoolTerm<Product, float>{product, View<float>{}, expr::PoolAxis::channels},
            expr::PoolTerm<Product, float>{product, host_view(g_xy_c.data(), sp), expr::PoolAxis::channels},
            expr::PoolTerm<OnInputs<MeanTerm<false>, 1>, float>{{{1.0 / static_cast<double>(np)}},
                                                               host_view(g_y_p.data(), ch), expr::PoolAxis::positions},
            expr::PoolTerm<Product, float>{product, host_view(g_xy_p.data(), ch), expr::PoolAxis::positions},
            expr::PoolTerm<Product, float>{product, View<float>{}, expr::PoolAxis::positions}});
    kdloss_test::check_close(g_abs_c, abs_c, 1e-5, 1e-6, "|x| / C over channels");
    kdloss_test::check_close(g_xy_c, xy_c, 1e-5, 1e-6, "x*y over channels");
    kdloss_test::check_close(g_y_p, y_p, 1e-5, 1e-6, "y / HW over positions");
    kdloss_test::check_close(g_xy_p, xy_p, 1e-5, 1e-4, "x*y over positions");
  }
}
