// The host executor (backend::cpu::transform_reduce, reduce_into, fill) against naive loops over
// every layout the views allow, the dispatch layer in front of it, and (GPU builds with a device)
// the CUDA executor against the host one.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/executor_functors.hpp"
#include "backend/executor_gpu.hpp"
#include "kdloss/backend/cpu/executor.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/core/packet.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::DiffAndProduct;
using kdloss_test::ProductPlusSelf;

namespace {

/// Marks storage the view does not address: it must survive every call unchanged.
constexpr double kSentinel = -777.0;

/// Physical layouts of a logical row-major tensor.
enum class Layout {
  contiguous,
  channel_last,  // dim 1 innermost in memory (NHWC for a 4-D NCHW tensor)
  transposed,    // memory order fully reversed
  padded,        // gaps after every innermost memory row
  stepped,       // every other element (inner stride 2, as a step-2 slice)
  flipped,       // odd dims walk backwards (negative strides)
  mixed,         // channel-last, padded and flipped at once
};
const Layout kLayouts[] = {Layout::contiguous, Layout::channel_last, Layout::transposed, Layout::padded,
                           Layout::stepped,    Layout::flipped,      Layout::mixed};

const char* name(Layout l) {
  switch (l) {
    case Layout::contiguous: return "contiguous";
    case Layout::channel_last: return "channel_last";
    case Layout::transposed: return "transposed";
    case Layout::padded: return "padded";
    case Layout::stepped: return "stepped";
    case Layout::flipped: return "flipped";
    case Layout::mixed: return "mixed";
  }
  return "?";
}

/// A view over its own storage, holding given logical values; unaddressed storage holds kSentinel.
template <class T>
struct Tensor {
  std::vector<T> storage;
  View<T> view;

  std::int64_t offset() const { return view.data - storage.data(); }
  View<const T> in() const { return view; }
  std::vector<double> logical() const {
    const auto v = kdloss_test::to_vector(view);
    return std::vector<double>(v.begin(), v.end());
  }
  std::int64_t sentinels() const {
    return std::count(storage.begin(), storage.end(), static_cast<T>(kSentinel));
  }
  kdloss_test::GpuOperand gpu() const {
    return {std::vector<double>(storage.begin(), storage.end()), offset(), view.shape, view.strides};
  }
};

template <class T>
Tensor<T> make_tensor(const std::vector<double>& values, const Dims& shape, Layout layout) {
  const int rank = shape.rank;
  std::vector<int> order(static_cast<std::size_t>(rank));  // memory order, outermost first
  for (int d = 0; d < rank; ++d) order[d] = d;
  if ((layout == Layout::channel_last || layout == Layout::mixed) && rank > 2)
    std::rotate(order.begin() + 1, order.begin() + 2, order.end());
  if (layout == Layout::transposed) std::reverse(order.begin(), order.end());
  const std::int64_t pad = (layout == Layout::padded || layout == Layout::mixed) ? 3 : 0;
  const std::int64_t inner_step = layout == Layout::stepped ? 2 : 1;

  Dims strides;
  strides.rank = rank;
  std::int64_t step = inner_step;
  for (int k = rank - 1; k >= 0; --k) {
    const int d = order[k];
    strides[d] = step;
    step *= shape[d] + (k == rank - 1 ? pad : 0);
  }
  std::int64_t offset = 0;
  if (layout == Layout::flipped || layout == Layout::mixed)
    for (int d = 1; d < rank; d += 2) {
      offset += (std::max<std::int64_t>(shape[d], 1) - 1) * strides[d];
      strides[d] = -strides[d];
    }

  Tensor<T> t;
  t.storage.assign(static_cast<std::size_t>(std::max<std::int64_t>(step, 1)), static_cast<T>(kSentinel));
  t.view = host_view(t.storage.data() + offset, shape, strides);
  REQUIRE(values.size() == static_cast<std::size_t>(shape.product()));
  for (std::int64_t i = 0; i < shape.product(); ++i) {
    std::int64_t off = 0, rem = i;
    for (int d = rank - 1; d >= 0; --d) {
      off += (rem % shape[d]) * strides[d];
      rem /= shape[d];
    }
    t.view.data[off] = static_cast<T>(values[static_cast<std::size_t>(i)]);
  }
  return t;
}

/// Value of `v` at the index `idx` of the space `full` it is broadcast to.
template <class T>
double value_at(const View<T>& v, const Dims& full, const std::vector<std::int64_t>& idx) {
  const int lead = full.rank - v.rank();
  std::int64_t off = 0;
  for (int d = 0; d < v.rank(); ++d) off += (v.shape[d] == 1 ? 0 : idx[lead + d]) * v.strides[d];
  return static_cast<double>(v.data[off]);
}

std::vector<std::int64_t> unravel(std::int64_t i, const Dims& shape) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(shape.rank));
  for (int d = shape.rank - 1; d >= 0; --d) {
    idx[d] = i % shape[d];
    i /= shape[d];
  }
  return idx;
}

struct NaiveMapReduce {
  double total = 0;
  std::vector<double> map;  // a - 2 b, row-major over full
};

/// DiffAndProduct evaluated element by element in double.
template <class T>
NaiveMapReduce naive_diff_and_product(const Dims& full, const View<T>& a, const View<T>& b) {
  NaiveMapReduce r;
  for (std::int64_t i = 0; i < full.product(); ++i) {
    const auto idx = unravel(i, full);
    const double x = value_at(a, full, idx), y = value_at(b, full, idx);
    r.map.push_back(x - 2 * y);
    r.total += x * y + x;
  }
  return r;
}

/// ProductPlusSelf summed over the axes where out_shape has extent 1; row-major over out_shape.
template <class T>
std::vector<double> naive_reduce(const Dims& full, const View<T>& a, const View<T>& b, const Dims& out_shape) {
  std::vector<double> out(static_cast<std::size_t>(out_shape.product()), 0.0);
  for (std::int64_t i = 0; i < full.product(); ++i) {
    const auto idx = unravel(i, full);
    std::int64_t o = 0;
    for (int d = 0; d < full.rank; ++d) o = o * out_shape[d] + (out_shape[d] == 1 ? 0 : idx[d]);
    const double x = value_at(a, full, idx), y = value_at(b, full, idx);
    out[static_cast<std::size_t>(o)] += x * y + x;
  }
  return out;
}

/// `full` with extent 1 on the given axes.
Dims reduced_shape(Dims full, std::initializer_list<int> axes) {
  for (int d : axes) full[d] = 1;
  return full;
}

/// Relative tolerance of sums computed in T; absolute slack for sums that cancel to near zero.
template <class T>
double rel_tol() {
  return std::is_same_v<T, double> ? 1e-12 : 2e-5;
}
template <class T>
double abs_tol(std::int64_t terms) {
  return (std::is_same_v<T, double> ? 1e-13 : 1e-6) * static_cast<double>(std::max<std::int64_t>(terms, 1));
}

template <class T>
void check_transform_reduce(const Dims& full, const Tensor<T>& a, const Tensor<T>& b, Layout out_layout) {
  auto out = make_tensor<T>(std::vector<double>(static_cast<std::size_t>(full.product()), 9.0), full, out_layout);
  const std::int64_t gaps = out.sentinels();
  const double total =
      backend::cpu::transform_reduce(full, DiffAndProduct{}, std::tuple{a.in(), b.in()}, std::tuple{out.view});
  const auto want = naive_diff_and_product(full, a.view, b.view);
  CHECK(kdloss_test::close(total, want.total, rel_tol<T>(), abs_tol<T>(full.product())));
  kdloss_test::check_close(out.logical(), want.map, rel_tol<T>(), 0.0, "map");
  CHECK(out.sentinels() == gaps);
}

template <class T>
void check_reduce_into(const Dims& full, const Tensor<T>& a, const Tensor<T>& b, const Dims& out_shape,
                       Layout out_layout) {
  // Garbage in the output first: reduce_into overwrites, it does not accumulate into the caller's values.
  auto out = make_tensor<T>(std::vector<double>(static_cast<std::size_t>(out_shape.product()), 5.0), out_shape,
                            out_layout);
  const std::int64_t gaps = out.sentinels();
  backend::cpu::reduce_into(full, ProductPlusSelf{}, std::tuple{a.in(), b.in()}, out.view);
  const std::int64_t terms = out_shape.product() ? full.product() / out_shape.product() : 0;
  kdloss_test::check_close(out.logical(), naive_reduce(full, a.view, b.view, out_shape), rel_tol<T>(),
                           abs_tol<T>(terms), "reduced");
  CHECK(out.sentinels() == gaps);
}

}  // namespace

TEST_CASE_TEMPLATE("cpu::transform_reduce matches a naive loop for every pair of layouts", T, float, double) {
  // Small; over the parallel threshold; an inner row longer than one chunk and not a multiple of it.
  for (const Dims full : {Dims{2, 3, 5, 7}, Dims{2, 8, 40, 72}, Dims{3, 2500}}) {
    const auto va = kdloss_test::random_vector<double>(static_cast<std::size_t>(full.product()), 1);
    const auto vb = kdloss_test::random_vector<double>(static_cast<std::size_t>(full.product()), 2);
    for (Layout la : kLayouts)
      for (Layout lb : kLayouts) {
        CAPTURE(full.str());
        CAPTURE(name(la));
        CAPTURE(name(lb));
        const auto a = make_tensor<T>(va, full, la), b = make_tensor<T>(vb, full, lb);
        check_transform_reduce(full, a, b, lb == Layout::contiguous ? la : lb);
      }
  }
}

TEST_CASE_TEMPLATE("cpu::transform_reduce with broadcast inputs", T, float, double) {
  const Dims full{2, 6, 9, 11};
  const auto va = kdloss_test::random_vector<double>(static_cast<std::size_t>(full.product()), 3);
  // Masks of the shapes detection losses use, in every layout, plus a stride-0 expanded view.
  for (const Dims mask_shape : {Dims{2, 1, 9, 11}, Dims{2, 6, 1, 1}, Dims{1, 6, 1, 11}, Dims{9, 11}, Dims{}})
    for (Layout la : {Layout::contiguous, Layout::mixed, Layout::flipped})
      for (Layout lm : kLayouts) {
        CAPTURE(mask_shape.str());
        CAPTURE(name(la));
        CAPTURE(name(lm));
        const auto a = make_tensor<T>(va, full, la);
        const auto mask = make_tensor<T>(kdloss_test::random_vector<double>(mask_shape.product(), 4), mask_shape, lm);
        check_transform_reduce(full, a, mask, la);
        check_transform_reduce(full, mask, a, Layout::padded);  // broadcast operand first
      }
  SUBCASE("expanded view: the full shape with stride 0 on C") {
    const Dims mask_shape{2, 1, 9, 11};
    for (Layout lm : kLayouts) {
      CAPTURE(name(lm));
      auto mask = make_tensor<T>(kdloss_test::random_vector<double>(mask_shape.product(), 5), mask_shape, lm);
      auto expanded = mask;
      expanded.view = mask.view.with(full, Dims{mask.view.strides[0], 0, mask.view.strides[2], mask.view.strides[3]});
      expanded.view.data = expanded.storage.data() + mask.offset();
      const auto a = make_tensor<T>(va, full, Layout::channel_last);
      check_transform_reduce(full, a, expanded, Layout::contiguous);
      check_transform_reduce(full, expanded, a, Layout::contiguous);
    }
  }
}

TEST_CASE("cpu::transform_reduce at rank 0, rank 6 and on empty shapes") {
  SUBCASE("rank 0") {
    double x = 1.5, y = -0.25, o = 0;
    const double total = backend::cpu::transform_reduce(
        Dims{}, DiffAndProduct{}, std::tuple{host_scalar<const double>(&x), host_scalar<const double>(&y)},
        std::tuple{host_scalar(&o)});
    CHECK(total == doctest::Approx(1.5 * -0.25 + 1.5));
    CHECK(o == doctest::Approx(2.0));
  }
  SUBCASE("rank 6") {
    const Dims full{2, 3, 1, 4, 2, 5};
    const auto va = kdloss_test::random_vector<double>(full.product(), 6);
    const auto vb = kdloss_test::random_vector<double>(24, 7);
    for (Layout la : kLayouts) {
      CAPTURE(name(la));
      check_transform_reduce(full, make_tensor<double>(va, full, la),
                             make_tensor<double>(vb, Dims{2, 3, 1, 4, 1, 1}, Layout::flipped), la);
    }
  }
  SUBCASE("empty: nothing is read or written and the sum is 0") {
    for (const Dims full : {Dims{2, 0, 3}, Dims{0}, Dims{4, 5, 0}}) {
      CAPTURE(full.str());
      std::vector<float> guard(8, 3.0f);
      const auto a = host_view<const float>(guard.data(), full);
      const auto o = host_view(guard.data() + 4, full);
      const double total = backend::cpu::transform_reduce(full, DiffAndProduct{}, std::tuple{a, a}, std::tuple{o});
      CHECK(total == 0.0);
      CHECK(guard == std::vector<float>(8, 3.0f));
    }
  }
}

TEST_CASE("cpu::transform_reduce: maps without a sum, sums without outputs, and fill") {
  const Dims full{3, 4, 50};
  const auto va = kdloss_test::random_vector<double>(full.product(), 8);
  const auto vb = kdloss_test::random_vector<double>(full.product(), 9);
  const auto a = make_tensor<double>(va, full, Layout::channel_last);
  const auto b = make_tensor<double>(vb, full, Layout::flipped);
  const auto want = naive_diff_and_product(full, a.view, b.view);

  SUBCASE("a void functor only maps") {
    auto out = make_tensor<double>(std::vector<double>(full.product(), 0.0), full, Layout::stepped);
    const double total = backend::cpu::transform_reduce(
        full, [](const auto& x, const auto& y, auto& o) { o = x - (y + y); }, std::tuple{a.in(), b.in()},
        std::tuple{out.view});
    CHECK(total == 0.0);
    kdloss_test::check_close(out.logical(), want.map, 1e-14);
  }
  SUBCASE("no outputs only sums") {
    const double total =
        backend::cpu::transform_reduce(full, ProductPlusSelf{}, std::tuple{a.in(), b.in()}, std::tuple<>{});
    CHECK(kdloss_test::close(total, want.total, 1e-12, 1e-12));
  }
  SUBCASE("two outputs in different layouts") {
    auto o1 = make_tensor<double>(std::vector<double>(full.product(), 0.0), full, Layout::transposed);
    auto o2 = make_tensor<double>(std::vector<double>(full.product(), 0.0), full, Layout::padded);
    backend::cpu::transform_reduce(
        full,
        [](const auto& x, const auto& y, auto& d, auto& p) {
          d = x - (y + y);
          p = x * y + x;
        },
        std::tuple{a.in(), b.in()}, std::tuple{o1.view, o2.view});
    kdloss_test::check_close(o1.logical(), want.map, 1e-14);
    double sum = 0;
    for (double v : o2.logical()) sum += v;
    CHECK(kdloss_test::close(sum, want.total, 1e-12, 1e-12));
  }
  SUBCASE("fill writes every addressed element and nothing else") {
    for (Layout l : kLayouts) {
      CAPTURE(name(l));
      auto out = make_tensor<float>(std::vector<double>(full.product(), 0.0), full, l);
      const std::int64_t gaps = out.sentinels();
      backend::cpu::fill(out.view, 2.5f);
      CHECK(out.logical() == std::vector<double>(full.product(), 2.5));
      CHECK(out.sentinels() == gaps);
    }
  }
}

TEST_CASE_TEMPLATE("cpu::reduce_into matches a naive loop over axis sets and layouts", T, float, double) {
  const Dims full{2, 6, 9, 11};
  const auto va = kdloss_test::random_vector<double>(full.product(), 10);
  const auto vb = kdloss_test::random_vector<double>(full.product(), 11);
  const std::vector<std::pair<const char*, Dims>> targets = {
      {"mean over C -> [B,1,H,W]", reduced_shape(full, {1})},
      {"over H,W -> [B,C,1,1]", reduced_shape(full, {2, 3})},
      {"over axis 0 only", reduced_shape(full, {0})},
      {"over the innermost axis", reduced_shape(full, {3})},
      {"over B,H,W -> [1,C,1,1]", reduced_shape(full, {0, 2, 3})},
      {"over C,W", reduced_shape(full, {1, 3})},
      {"over everything", reduced_shape(full, {0, 1, 2, 3})},
      {"over nothing", full},
  };
  for (const auto& target : targets)
    for (Layout lin : kLayouts)
      for (Layout lout : {Layout::contiguous, Layout::padded, Layout::stepped, Layout::flipped, Layout::channel_last}) {
        const char* what = target.first;
        const Dims& out_shape = target.second;
        CAPTURE(what);
        CAPTURE(name(lin));
        CAPTURE(name(lout));
        const auto a = make_tensor<T>(va, full, lin);
        const auto b = make_tensor<T>(vb, full, lin == Layout::contiguous ? Layout::transposed : Layout::contiguous);
        check_reduce_into(full, a, b, out_shape, lout);
      }
}

TEST_CASE_TEMPLATE("cpu::reduce_into with broadcast inputs and on shapes large enough to run in parallel", T, float,
                   double) {
  SUBCASE("broadcast masks") {
    const Dims full{2, 6, 9, 11};
    const auto va = kdloss_test::random_vector<double>(full.product(), 12);
    for (const Dims mask_shape : {Dims{2, 1, 9, 11}, Dims{2, 6, 1, 1}, Dims{11}})
      for (const Dims out_shape : {reduced_shape(full, {1}), reduced_shape(full, {2, 3}), reduced_shape(full, {0})})
        for (Layout l : {Layout::contiguous, Layout::mixed}) {
          CAPTURE(mask_shape.str());
          CAPTURE(out_shape.str());
          CAPTURE(name(l));
          const auto a = make_tensor<T>(va, full, l);
          const auto mask = make_tensor<T>(kdloss_test::random_vector<double>(mask_shape.product(), 13), mask_shape, l);
          check_reduce_into(full, a, mask, out_shape, Layout::contiguous);
          check_reduce_into(full, mask, a, out_shape, Layout::padded);
        }
  }
  SUBCASE("parallel split over the kept leading dims") {
    const Dims full{4, 16, 30, 31};  // 59520 elements: above the parallel threshold
    const auto va = kdloss_test::random_vector<double>(full.product(), 14);
    const auto vb = kdloss_test::random_vector<double>(full.product(), 15);
    for (const Dims out_shape : {reduced_shape(full, {1}), reduced_shape(full, {2, 3}), reduced_shape(full, {0}),
                                 reduced_shape(full, {3}), reduced_shape(full, {1, 2})})
      for (Layout l : {Layout::contiguous, Layout::channel_last, Layout::flipped}) {
        CAPTURE(out_shape.str());
        CAPTURE(name(l));
        check_reduce_into(full, make_tensor<T>(va, full, l), make_tensor<T>(vb, full, Layout::contiguous), out_shape,
                          l);
      }
  }
}

TEST_CASE("cpu::reduce_into at rank 0, rank 6 and on empty shapes") {
  SUBCASE("rank 0") {
    double x = 3.0, y = 0.5, o = 99.0;
    backend::cpu::reduce_into(Dims{}, ProductPlusSelf{},
                              std::tuple{host_scalar<const double>(&x), host_scalar<const double>(&y)},
                              host_scalar(&o));
    CHECK(o == doctest::Approx(4.5));
  }
  SUBCASE("rank 6 over axes 1, 3 and 5") {
    const Dims full{2, 3, 2, 4, 3, 5};
    const auto va = kdloss_test::random_vector<double>(full.product(), 16);
    const auto vb = kdloss_test::random_vector<double>(full.product(), 17);
    for (Layout l : kLayouts) {
      CAPTURE(name(l));
      check_reduce_into(full, make_tensor<double>(va, full, l), make_tensor<double>(vb, full, Layout::transposed),
                        reduced_shape(full, {1, 3, 5}), l);
    }
  }
  SUBCASE("an empty reduced axis gives zeros") {
    const Dims full{2, 0, 3};
    std::vector<double> in(1, 1.0);
    const auto a = host_view<const double>(in.data(), full);
    std::vector<double> out(6, 42.0);
    backend::cpu::reduce_into(full, ProductPlusSelf{}, std::tuple{a, a}, host_view(out.data(), {2, 1, 3}));
    CHECK(out == std::vector<double>(6, 0.0));
  }
  SUBCASE("an empty kept axis writes nothing") {
    const Dims full{0, 4};
    std::vector<double> in(1, 1.0), out(3, 42.0);
    const auto a = host_view<const double>(in.data(), full);
    backend::cpu::reduce_into(full, ProductPlusSelf{}, std::tuple{a, a}, host_view(out.data(), {0, 1}));
    CHECK(out == std::vector<double>(3, 42.0));
  }
}

TEST_CASE("dispatch: host calls run the host executor; device views need a CUDA translation unit") {
  const Dims full{4, 5};
  const auto va = kdloss_test::random_vector<double>(20, 18), vb = kdloss_test::random_vector<double>(20, 19);
  const auto a = make_tensor<double>(va, full, Layout::flipped), b = make_tensor<double>(vb, full, Layout::padded);
  const auto want = naive_diff_and_product(full, a.view, b.view);

  SUBCASE("transform_reduce stores the finalised sum") {
    auto out = make_tensor<double>(std::vector<double>(20, 0.0), full, Layout::contiguous);
    float result = 0;
    detail::transform_reduce<double>(Device::host(), Stream{}, full, DiffAndProduct{}, std::tuple{a.in(), b.in()},
                                     std::tuple{out.view}, nullptr, detail::Scale{0.5}, &result);
    CHECK(result == doctest::Approx(0.5 * want.total).epsilon(1e-6));
    kdloss_test::check_close(out.logical(), want.map, 1e-14);
  }
  SUBCASE("transform maps only") {
    auto out = make_tensor<double>(std::vector<double>(20, 0.0), full, Layout::stepped);
    detail::transform<double>(Device::host(), Stream{}, full,
                              [](const auto& x, const auto& y, auto& o) { o = x - (y + y); },
                              std::tuple{a.in(), b.in()}, std::tuple{out.view});
    kdloss_test::check_close(out.logical(), want.map, 1e-14);
  }
  SUBCASE("reduce_into") {
    auto out = make_tensor<double>(std::vector<double>(4, 0.0), Dims{4, 1}, Layout::contiguous);
    detail::reduce_into<double>(Device::host(), Stream{}, full, ProductPlusSelf{}, std::tuple{a.in(), b.in()},
                                out.view);
    kdloss_test::check_close(out.logical(), naive_reduce(full, a.view, b.view, Dims{4, 1}), 1e-12);
  }
  SUBCASE("reduction scratch: none on the host, one double per block on the GPU") {
    detail::Carver host_carver;
    CHECK(detail::carve_reduction(host_carver, Device::host(), 1 << 20) == nullptr);
    CHECK(host_carver.bytes() == 0);
    detail::Carver gpu_carver;
    detail::carve_reduction(gpu_carver, Device::cuda(), 1 << 20);
    CHECK(gpu_carver.bytes() ==
          detail::align_up(sizeof(double) * static_cast<std::size_t>(backend::cuda::reduce_blocks(1 << 20))));
    CHECK(backend::cuda::reduce_blocks(0) == 1);
    CHECK(backend::cuda::reduce_blocks(std::int64_t{1} << 40) == backend::cuda::kMaxReduceBlocks);
  }
  SUBCASE("a host translation unit refuses device views and the host refuses GPU-only types") {
    try {
      detail::require_backend<float>("kdloss::thing", Device::cuda(0));
      FAIL("expected kdloss::Error");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("kdloss::thing") != std::string::npos);
      CHECK(msg.find("cuda:0") != std::string::npos);
      CHECK(msg.find("nvcc") != std::string::npos);
    }
    CHECK_NOTHROW(detail::require_backend<float>("f", Device::host()));
    CHECK_NOTHROW(detail::require_backend<const double>("f", Device::host()));
    CHECK_THROWS_AS(detail::require_backend<short>("f", Device::host()), Error);
  }
}

// ---- GPU: the CUDA executor agrees with the host executor ----

#if KDLOSS_TEST_CUDA
namespace {

using kdloss_test::GpuDtype;

/// Values exact in half precision (multiples of 1/64 in [-2, 2]), so every backend sees the same
/// inputs; their products and partial sums are exact in float too, so summation order cannot matter.
std::vector<double> exact_values(std::int64_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<double>(static_cast<int>(gen() % 257) - 128) / 64.0;
  return v;
}

const char* name(GpuDtype d) { return d == GpuDtype::f32 ? "float" : d == GpuDtype::f64 ? "double" : "half"; }

/// GPU float sums are grouped differently from the host's; half inputs are exact (see exact_values).
double gpu_rel_tol(GpuDtype d) { return d == GpuDtype::f64 ? 1e-12 : 1e-5; }

/// The host reference of a GPU run: the same layout in float (f32, f16) or double (f64).
template <class T>
void compare_transform_reduce(GpuDtype dtype, const Dims& full, const Dims& b_shape, Layout la, Layout lb,
                              Layout lout) {
  const auto va = exact_values(full.product(), 20), vb = exact_values(b_shape.product(), 21);
  const auto a = make_tensor<T>(va, full, la), b = make_tensor<T>(vb, b_shape, lb);
  auto out = make_tensor<T>(std::vector<double>(full.product(), 9.0), full, lout);
  const auto gpu = kdloss_test::gpu_transform_reduce(dtype, full, a.gpu(), b.gpu(), out.gpu());
  const double cpu_total =
      backend::cpu::transform_reduce(full, DiffAndProduct{}, std::tuple{a.in(), b.in()}, std::tuple{out.view});
  CHECK(kdloss_test::close(gpu.total, cpu_total, gpu_rel_tol(dtype), 1e-6));
  // The map a - 2b is exact in every type here, so the whole storage (gaps included) must agree.
  kdloss_test::check_close(gpu.out_storage, std::vector<double>(out.storage.begin(), out.storage.end()), 0.0, 0.0,
                           "map storage");
}

template <class T>
void compare_reduce_into(GpuDtype dtype, const Dims& full, const Dims& out_shape, Layout la, Layout lout) {
  const auto va = exact_values(full.product(), 22), vb = exact_values(full.product(), 23);
  const auto a = make_tensor<T>(va, full, la), b = make_tensor<T>(vb, full, Layout::contiguous);
  auto out = make_tensor<T>(std::vector<double>(out_shape.product(), 5.0), out_shape, lout);
  const auto gpu = kdloss_test::gpu_reduce_into(dtype, full, a.gpu(), b.gpu(), out.gpu());
  backend::cpu::reduce_into(full, ProductPlusSelf{}, std::tuple{a.in(), b.in()}, out.view);
  const std::int64_t terms = out_shape.product() ? full.product() / out_shape.product() : 0;
  kdloss_test::check_close(gpu, std::vector<double>(out.storage.begin(), out.storage.end()), gpu_rel_tol(dtype),
                           1e-6 * static_cast<double>(std::max<std::int64_t>(terms, 1)), "reduced storage");
}

template <class F>
void for_each_dtype(F f) {
  for (GpuDtype d : {GpuDtype::f32, GpuDtype::f64, GpuDtype::f16}) {
    CAPTURE(name(d));
    if (d == GpuDtype::f64) f(d, double{});
    else f(d, float{});
  }
}

}  // namespace
#endif

KDLOSS_GPU_TEST("cuda::transform_reduce agrees with the host executor (float, double, half with float accumulation)") {
#if KDLOSS_TEST_CUDA
  struct Case {
    Dims full, b_shape;
    Layout la, lb, lout;
  };
  const Case cases[] = {
      {Dims{2, 8, 40, 72}, Dims{2, 8, 40, 72}, Layout::contiguous, Layout::contiguous, Layout::contiguous},
      {Dims{2, 8, 40, 72}, Dims{2, 8, 40, 72}, Layout::channel_last, Layout::flipped, Layout::padded},
      {Dims{2, 6, 9, 11}, Dims{2, 1, 9, 11}, Layout::mixed, Layout::stepped, Layout::transposed},
      {Dims{2, 6, 9, 11}, Dims{2, 6, 1, 1}, Layout::transposed, Layout::contiguous, Layout::flipped},
      {Dims{3, 2500}, Dims{2500}, Layout::stepped, Layout::flipped, Layout::contiguous},
      {Dims{2, 3, 1, 4, 2, 5}, Dims{2, 3, 1, 4, 1, 1}, Layout::mixed, Layout::flipped, Layout::channel_last},
      {Dims{}, Dims{}, Layout::contiguous, Layout::contiguous, Layout::contiguous},
  };
  for (const auto& c : cases) {
    CAPTURE(c.full.str());
    CAPTURE(name(c.la));
    CAPTURE(name(c.lb));
    for_each_dtype([&](GpuDtype d, auto type) {
      compare_transform_reduce<decltype(type)>(d, c.full, c.b_shape, c.la, c.lb, c.lout);
    });
  }
#endif
}

KDLOSS_GPU_TEST("cuda::reduce_into agrees with the host executor on both kernel paths") {
#if KDLOSS_TEST_CUDA
  struct Case {
    Dims full, out_shape;
    Layout la, lout;
  };
  const Dims big{2, 6, 48, 50};  // H*W = 2400: long reductions take the block-per-output kernel
  const Case cases[] = {
      {big, reduced_shape(big, {1}), Layout::contiguous, Layout::contiguous},
      {big, reduced_shape(big, {1}), Layout::channel_last, Layout::padded},
      {big, reduced_shape(big, {2, 3}), Layout::contiguous, Layout::contiguous},
      {big, reduced_shape(big, {2, 3}), Layout::flipped, Layout::stepped},
      {big, reduced_shape(big, {0}), Layout::mixed, Layout::flipped},
      {big, reduced_shape(big, {0, 1, 2, 3}), Layout::transposed, Layout::contiguous},
      {big, big, Layout::stepped, Layout::channel_last},
      {Dims{2, 3, 2, 4, 3, 5}, reduced_shape(Dims{2, 3, 2, 4, 3, 5}, {1, 3, 5}), Layout::mixed, Layout::flipped},
      {Dims{}, Dims{}, Layout::contiguous, Layout::contiguous},
  };
  for (const auto& c : cases) {
    CAPTURE(c.full.str());
    CAPTURE(c.out_shape.str());
    CAPTURE(name(c.la));
    CAPTURE(name(c.lout));
    for_each_dtype([&](GpuDtype d, auto type) {
      compare_reduce_into<decltype(type)>(d, c.full, c.out_shape, c.la, c.lout);
    });
  }
#endif
}

KDLOSS_GPU_TEST("cuda::reduce_into over an empty axis writes zeros to every output, as the host does") {
#if KDLOSS_TEST_CUDA
  kdloss_test::GpuOperand in{{0.0}, 0, Dims{2, 0, 3}, contiguous_strides(Dims{2, 0, 3})};
  kdloss_test::GpuOperand out{std::vector<double>(6, 42.0), 0, Dims{2, 1, 3}, contiguous_strides(Dims{2, 1, 3})};
  for (GpuDtype d : {GpuDtype::f32, GpuDtype::f64}) {
    CAPTURE(name(d));
    CHECK(kdloss_test::gpu_reduce_into(d, Dims{2, 0, 3}, in, in, out) == std::vector<double>(6, 0.0));
  }
#endif
}

// ---------------------------------------------------------------------------------------------
// core/packet.hpp: the packet exp and log that the host row executor's float rows run on, in the
// baseline build (called here directly) and in the instruction-set clone the row loops use
// (backend/cpu/parallel.hpp; the AVX2/FMA one on a machine that has it).

namespace {

using FloatPacket = math::Packet<float, 8>;

/// Distance of `got` from the double `want`, in units of the float spacing at `want` (subnormal
/// spacing below the smallest normal); 0 for matching infinities and NaNs, and for infinity where
/// `want` rounds to infinity in float.
double ulps(float got, double want) {
  if (std::isnan(want)) return std::isnan(got) ? 0.0 : 1e30;
  if (std::isinf(static_cast<float>(want))) return got == static_cast<float>(want) ? 0.0 : 1e30;  // overflows
  const float w = std::fabs(static_cast<float>(want));
  const double spacing = std::max(static_cast<double>(std::nextafter(w, INFINITY) - w), 0x1p-149);
  return std::fabs(static_cast<double>(got) - want) / spacing;
}

template <bool kLog>
void packet_math_baseline(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; i += 8) {
    const auto p = FloatPacket::load(x + i);
    (kLog ? p.log() : p.exp()).store(y + i);
  }
}
template <bool kLog>
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN void packet_math_isa(const float* x, float* y, std::size_t n) {
  packet_math_baseline<kLog>(x, y, n);
}

template <bool kLog>
void check_packet_math(std::vector<float> x) {
  while (x.size() % 8 != 0) x.push_back(1.0f);
  std::vector<float> base(x.size()), isa(x.size());
  packet_math_baseline<kLog>(x.data(), base.data(), x.size());
  packet_math_isa<kLog>(x.data(), isa.data(), x.size());
  double worst_base = 0, worst_isa = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double want = kLog ? std::log(static_cast<double>(x[i])) : std::exp(static_cast<double>(x[i]));
    worst_base = std::max(worst_base, ulps(base[i], want));
    worst_isa = std::max(worst_isa, ulps(isa[i], want));
    if (!(ulps(base[i], want) <= 2.0 && ulps(isa[i], want) <= 2.0))
      FAIL_CHECK((kLog ? "log(" : "exp(") << x[i] << ") = " << base[i] << " / " << isa[i] << ", want " << want);
  }
  MESSAGE((kLog ? "packet log" : "packet exp") << ": worst " << worst_base << " ulp (baseline), " << worst_isa
                                               << " ulp (clone)");
}

}  // namespace

TEST_CASE("math::Packet<float>: exp within 2 ulp from underflow to overflow, with -inf, +inf and NaN") {
  std::vector<float> x;
  for (float v = -110.0f; v < 92.0f; v += 0.00731f) x.push_back(v);
  for (float v : {-INFINITY, INFINITY, NAN, 0.0f, -0.0f, 1e-30f, -1e-30f, 88.72f, 88.7228f, 88.73f, -87.33f, -87.34f,
                  -103.2f, -103.9f, -103.98f, -104.5f, -1000.0f, 1000.0f})
    x.push_back(v);
  check_packet_math<false>(x);
}

TEST_CASE("math::Packet<float>: log within 2 ulp over every binade and on subnormals, 0, inf, negatives and NaN") {
  std::vector<float> x;
  for (float v = 0x1p-149f; v < 3e38f; v = std::max(v * 1.00037f, std::nextafter(v, INFINITY))) x.push_back(v);
  for (float v : {0.0f, -0.0f, -1.0f, -1e-40f, INFINITY, -INFINITY, NAN, 1.0f, 0x1p-126f, 0.70710677f, 0.70710683f,
                  1.4142135f, 2.0f})
    x.push_back(v);
  check_packet_math<true>(x);
}
