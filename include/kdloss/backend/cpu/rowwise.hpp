// kdloss/backend/cpu/rowwise.hpp: runs a row operation (see ops/softmax.hpp) over every row on the host.
#pragma once
#include <cstdint>
#include <tuple>
#include <utility>

#include "kdloss/backend/cpu/executor.hpp"
#include "kdloss/expr/rows.hpp"

namespace kdloss::backend::cpu {

/// One row as a row operation sees it: loads of inputs and stores of outputs by column, and
/// reductions over the columns. The GPU's Row offers the same members, cooperatively.
template <class InPtrs, class OutPtrs>
struct HostRow {
  InPtrs in_ptrs;
  OutPtrs out_ptrs;
  const std::int64_t* in_step;
  const std::int64_t* out_step;
  std::int64_t n;

  std::int64_t size() const { return n; }
  template <std::size_t K, class Acc>
  Acc in(std::int64_t j) const {
    return static_cast<Acc>(std::get<K>(in_ptrs)[j * in_step[K]]);
  }
  template <std::size_t K, class Acc>
  void out(std::int64_t j, Acc v) const {
    using O = std::remove_pointer_t<std::tuple_element_t<K, OutPtrs>>;
    std::get<K>(out_ptrs)[j * out_step[K]] = static_cast<O>(v);
  }
  template <class Acc, class F>
  Acc sum(F f) const {
    Acc acc = Acc(0);
    for (std::int64_t j = 0; j < n; ++j) acc += f(j);
    return acc;
  }
  template <class Acc, class F>
  Acc max(F f) const {
    Acc m = f(0);
    for (std::int64_t j = 1; j < n; ++j) {
      const Acc v = f(j);
      m = v > m ? v : m;
    }
    return m;
  }
  template <class F>
  void for_each(F f) const {
    for (std::int64_t j = 0; j < n; ++j) f(j);
  }
};

template <class... I, class... O, std::size_t... KI, std::size_t... KO>
auto make_host_row(const std::tuple<View<const I>...>& ins, const std::tuple<View<O>...>& outs,
                   const std::int64_t* off, const expr::Rows& rows, std::index_sequence<KI...>,
                   std::index_sequence<KO...>) {
  auto in_ptrs = std::make_tuple((std::get<KI>(ins).data + off[KI])...);
  auto out_ptrs = std::make_tuple((std::get<KO>(outs).data + off[sizeof...(KI) + KO])...);
  return HostRow<decltype(in_ptrs), decltype(out_ptrs)>{in_ptrs, out_ptrs, rows.step, rows.step + sizeof...(KI),
                                                        rows.length};
}

/// Calls op(row) for every row of `full` along `axis`; returns the double sum of op's returns
/// (0 when op returns void). Rows are split between threads.
template <class Acc, class Op, class... I, class... O>
double rowwise(const Dims& full, int axis, Op op, const std::tuple<View<const I>...>& ins,
               const std::tuple<View<O>...>& outs) {
  constexpr int NI = sizeof...(I), NO = sizeof...(O);
  static_assert(NI + NO <= expr::kMaxOperands, "too many operands for one row operation");
  std::int64_t strides[expr::kMaxOperands][kMaxRank] = {};
  detail::collect_strides(full, ins, strides, std::make_index_sequence<NI>{});
  detail::collect_strides(full, outs, strides + NI, std::make_index_sequence<NO>{});
  const expr::Rows rows = expr::make_rows(full, axis, strides, NI + NO);
  const std::int64_t count = rows.count();
  double total = 0;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) reduction(+ : total) if (count * rows.length > kParallelThreshold && count > 1)
#endif
  for (std::int64_t r = 0; r < count; ++r) {
    std::int64_t off[expr::kMaxOperands];
    rows.outer.offsets(r, off);
    auto row = make_host_row(ins, outs, off, rows, std::make_index_sequence<NI>{}, std::make_index_sequence<NO>{});
    if constexpr (std::is_void_v<decltype(op.template operator()<Acc>(row))>) {
      op.template operator()<Acc>(row);
    } else {
      total += static_cast<double>(op.template operator()<Acc>(row));
    }
  }
  return total;
}

}  // namespace kdloss::backend::cpu
