// kdloss/backend/cpu/executor.hpp: evaluates elementwise expressions and their reductions on the host.
//
// The space is cut into chunks of at most kChunk elements along its innermost row. Each operand's
// chunk becomes a contiguous Eigen map (directly when its inner stride is 1, through a small
// gather buffer otherwise), so one templated formula runs vectorised over every layout.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/expr/space.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu {

inline constexpr std::int64_t kChunk = 1024;

template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<std::remove_cv_t<T>, Eigen::Dynamic, 1>>;
template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

namespace detail {

template <class... Views, std::size_t... K>
void collect_strides(const Dims& full, const std::tuple<Views...>& views, std::int64_t (*rows)[kMaxRank],
                     std::index_sequence<K...>) {
  ((void)expr::broadcast_strides(std::get<K>(views), full, rows[K]), ...);
}

/// A chunk-sized scratch row left uninitialised (a std::array inside a std::tuple would be
/// value-initialised: a memset per operand per chunk).
template <class T>
struct ChunkBuffer {
  ChunkBuffer() {}  // NOLINT: deliberately leaves `values` uninitialised
  T* data() { return values; }
  const T* data() const { return values; }
  T& operator[](std::int64_t j) { return values[j]; }
  const T& operator[](std::int64_t j) const { return values[j]; }
  T values[kChunk];
};

template <class R>
double sum_of(const R& r) {
  if constexpr (std::is_arithmetic_v<R>) return static_cast<double>(r);
  else return static_cast<double>(r.sum());
}

// GCC cannot see that a ChunkBuffer is read only after the gather filled it (-Wmaybe-uninitialized).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// Maps one chunk of every operand and calls f; scatters outputs whose rows are strided.
template <class F, class InTuple, class OutTuple, std::size_t... KI, std::size_t... KO>
double run_chunk(const expr::Space& space, F& f, const InTuple& ins, const OutTuple& outs, std::int64_t linear,
                 std::int64_t n, std::index_sequence<KI...>, std::index_sequence<KO...>) {
  constexpr std::size_t NI = sizeof...(KI);
  std::int64_t off[expr::kMaxOperands] = {};  // zeroed: GCC cannot see that offsets() fills it
  space.offsets(linear, off);
  std::tuple<ChunkBuffer<std::remove_cv_t<typename std::tuple_element_t<KI, InTuple>::value_type>>...> in_buf;
  std::tuple<ChunkBuffer<typename std::tuple_element_t<KO, OutTuple>::value_type>...> out_buf;
  auto in_ptr = [&](auto k_const) {
    constexpr std::size_t k = decltype(k_const)::value;
    const auto* p = std::get<k>(ins).data + off[k];
    const std::int64_t s = space.inner_stride(static_cast<int>(k));
    if (s == 1) return p;
    auto& buf = std::get<k>(in_buf);
    if (s == 0)  // broadcast along the row (a mask or a map): one value
      std::fill_n(buf.data(), n, *p);
    else
      for (std::int64_t j = 0; j < n; ++j) buf[j] = p[j * s];
    return static_cast<decltype(p)>(buf.data());
  };
  auto out_ptr = [&](auto k_const) {
    constexpr std::size_t k = decltype(k_const)::value;
    auto* p = std::get<k>(outs).data + off[NI + k];
    return space.inner_stride(static_cast<int>(NI + k)) == 1 ? p : std::get<k>(out_buf).data();
  };
  std::tuple<ConstArrayMap<typename std::tuple_element_t<KI, InTuple>::value_type>...> in_maps{
      {in_ptr(std::integral_constant<std::size_t, KI>{}), n}...};
  std::tuple<ArrayMap<typename std::tuple_element_t<KO, OutTuple>::value_type>...> out_maps{
      {out_ptr(std::integral_constant<std::size_t, KO>{}), n}...};
  double total = 0;
  using Result = decltype(f(std::get<KI>(in_maps)..., std::get<KO>(out_maps)...));
  if constexpr (std::is_void_v<Result>) {
    f(std::get<KI>(in_maps)..., std::get<KO>(out_maps)...);
  } else {
    total = sum_of(f(std::get<KI>(in_maps)..., std::get<KO>(out_maps)...));
  }
  auto scatter = [&](auto k_const) {
    constexpr std::size_t k = decltype(k_const)::value;
    const std::int64_t s = space.inner_stride(static_cast<int>(NI + k));
    if (s == 1) return;
    auto* p = std::get<k>(outs).data + off[NI + k];
    const auto& buf = std::get<k>(out_buf);
    for (std::int64_t j = 0; j < n; ++j) p[j * s] = buf[j];
  };
  (scatter(std::integral_constant<std::size_t, KO>{}), ...);
  (void)in_ptr;  // unused when there are no inputs (fill)
  (void)out_ptr;
  (void)scatter;
  return total;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace detail

/// Evaluates f over the broadcast of `ins` to `full`, writing `outs` (each of shape `full`) and
/// returning the double sum of what f returns (0 when f returns void).
///
/// f receives one Eigen array map per input, then one writable map per output:
///   double sq = transform_reduce(shape, [](const auto& s, const auto& t, auto& g) {
///     g = 2.0f * (s - t);                // written to the gradient view
///     return math::square(s - t);        // summed
///   }, std::tuple{student, teacher}, std::tuple{grad});
template <class F, class... I, class... O>
double transform_reduce(const Dims& full, F f, const std::tuple<View<const I>...>& ins,
                        const std::tuple<View<O>...>& outs) {
  constexpr int NI = sizeof...(I), NO = sizeof...(O);
  static_assert(NI + NO <= expr::kMaxOperands, "too many operands for one expression");
  std::int64_t strides[expr::kMaxOperands][kMaxRank] = {};
  detail::collect_strides(full, ins, strides, std::make_index_sequence<NI>{});
  detail::collect_strides(full, outs, strides + NI, std::make_index_sequence<NO>{});
  const expr::Space space = expr::make_space(full, strides, NI + NO, /*reorder=*/true);
  if (space.numel == 0) return 0.0;
  const std::int64_t inner = space.inner();
  const std::int64_t per_row = (inner + kChunk - 1) / kChunk;
  const std::int64_t tasks = space.numel / inner * per_row;
  // Chunk sums combined in a fixed order (ordered_sum): the bits do not depend on the thread count.
  return ordered_sum(tasks, space.numel > kParallelThreshold, [&](std::int64_t task) {
    const std::int64_t row = task / per_row;
    const std::int64_t col = (task % per_row) * kChunk;
    const std::int64_t n = std::min(kChunk, inner - col);
    return detail::run_chunk(space, f, ins, outs, row * inner + col, n, std::make_index_sequence<NI>{},
                             std::make_index_sequence<NO>{});
  });
}

/// Sets every element of `out` to `value`.
template <class O>
void fill(const View<O>& out, O value) {
  transform_reduce(out.shape, [value](auto& o) { o.setConstant(value); }, std::tuple<>{}, std::tuple{out});
}

/// Partial reduction: out[kept] = sum over the axes where `out` has extent 1 of f(ins...)
/// (broadcast to `full`). `out` has the rank of `full`, with extent 1 on every reduced axis.
///
///   // spatial attention G_s[b,0,h,w] = mean_c |A|
///   const float inv_c = 1.0f / static_cast<float>(A.shape[1]);
///   reduce_into(A.shape, [inv_c](const auto& a) { return math::abs(a) * inv_c; }, std::tuple{A}, gs);
template <class F, class O, class... I>
void reduce_into(const Dims& full, F f, const std::tuple<View<const I>...>& ins, const View<O>& out) {
  constexpr int NI = sizeof...(I);
  static_assert(NI + 1 <= expr::kMaxOperands, "too many operands for one expression");
  fill(out, O(0));
  std::int64_t strides[expr::kMaxOperands][kMaxRank] = {};
  detail::collect_strides(full, ins, strides, std::make_index_sequence<NI>{});
  expr::broadcast_strides(out, full, strides[NI]);
  const expr::Space space = expr::make_space(full, strides, NI + 1, /*reorder=*/false);
  if (space.numel == 0) return;
  // Leading kept dimensions are split between threads: no two threads touch one output.
  int split = 0;
  std::int64_t units = 1;
  while (split < space.rank - 1 && space.strides[NI][split] != 0) units *= space.shape[split++];
  const std::int64_t per_unit = space.numel / units;
  const std::int64_t inner = space.inner();
  const std::int64_t out_inner_stride = space.inner_stride(NI);
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (space.numel > kParallelThreshold && units > 1)
#endif
  for (std::int64_t unit = 0; unit < units; ++unit) {
    for (std::int64_t local = 0; local < per_unit; local += inner) {
      for (std::int64_t col = 0; col < inner; col += kChunk) {
        const std::int64_t n = std::min(kChunk, inner - col);
        const std::int64_t linear = unit * per_unit + local + col;
        std::int64_t off[expr::kMaxOperands] = {};  // zeroed: GCC cannot see that offsets() fills it
        space.offsets(linear, off);
        O* o = out.data + off[NI];
        // The chunk's values go through a map so they are summed by the same vectorised formula.
        std::array<O, kChunk> vals;
        ArrayMap<O> vals_map(vals.data(), n);
        auto chunk_values = [&](const auto&... in) { vals_map = f(in...); };  // run_chunk takes f by lvalue
        detail::run_chunk(space, chunk_values, ins, std::tuple<>{}, linear, n, std::make_index_sequence<NI>{},
                          std::make_index_sequence<0>{});
        if (out_inner_stride == 0) {
          *o += vals_map.sum();
        } else if (out_inner_stride == 1) {
          ArrayMap<O>(o, n) += vals_map;
        } else {
          for (std::int64_t j = 0; j < n; ++j) o[j * out_inner_stride] += vals[j];
        }
      }
    }
  }
}

} } }  // namespace kdloss::backend::cpu
