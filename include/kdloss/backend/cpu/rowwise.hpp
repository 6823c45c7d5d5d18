// kdloss/backend/cpu/rowwise.hpp: runs a row operation (see ops/softmax.hpp) over every row on the host.
//
// Rows whose neighbours lie next to each other in memory (a class axis strided by H x W: the rows
// of neighbouring pixels are adjacent) run kRowPacket at a time when the operation allows it (its
// kPacketRows member): the operation then sees math::Packet values, one lane per row, and every
// exp and log of the row is a vector operation. Float packets run in a function compiled once per
// instruction set (KDLOSS_CPU_CLONES: AVX2/FMA where the machine has it, even in a build without
// -march) into which the whole operation is inlined. Other rows run one at a time.
#pragma once
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kdloss/backend/cpu/executor.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/packet.hpp"
#include "kdloss/expr/rows.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu {

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

/// kRowPacket neighbouring rows at once, lane l being row r0 + l: loads and stores move one value
/// per lane (lane_step apart: 1 for adjacent rows, 0 for an operand broadcast across rows).
template <class InPtrs, class OutPtrs, int N>
struct HostPacketRow {
  InPtrs in_ptrs;
  OutPtrs out_ptrs;
  const std::int64_t* step;       // per operand, along the row
  const std::int64_t* lane_step;  // per operand, between neighbouring rows
  std::int64_t n;

  std::int64_t size() const { return n; }
  template <std::size_t K, class Acc>
  Acc in(std::int64_t j) const {
    using S = typename Acc::Scalar;
    using I = std::remove_cv_t<std::remove_pointer_t<std::tuple_element_t<K, InPtrs>>>;
    const auto* p = std::get<K>(in_ptrs) + j * step[K];
    if constexpr (std::is_same_v<I, S>)
      if (lane_step[K] == 1) return Acc::load(p);
    Acc a;
    for (int l = 0; l < N; ++l) a.set_lane(l, static_cast<S>(p[l * lane_step[K]]));
    return a;
  }
  template <std::size_t K, class Acc>
  void out(std::int64_t j, const Acc& v) const {
    constexpr std::size_t NI = std::tuple_size_v<InPtrs>;
    using O = std::remove_pointer_t<std::tuple_element_t<K, OutPtrs>>;
    auto* p = std::get<K>(out_ptrs) + j * step[NI + K];
    if constexpr (std::is_same_v<O, typename Acc::Scalar>)
      if (lane_step[NI + K] == 1) return v.store(p);
    for (int l = 0; l < N; ++l) p[l * lane_step[NI + K]] = static_cast<O>(v.lane(l));
  }
  template <class Acc, class F>
  Acc sum(F f) const {
    Acc acc(0);
    for (std::int64_t j = 0; j < n; ++j) acc += f(j);
    return acc;
  }
  template <class Acc, class F>
  Acc max(F f) const {
    Acc m = f(0);
    for (std::int64_t j = 1; j < n; ++j) m = m.max(f(j));
    return m;
  }
  template <class F>
  void for_each(F f) const {
    for (std::int64_t j = 0; j < n; ++j) f(j);
  }
};

/// Rows per packet: 8 floats or doubles (two or four SIMD registers at SSE2 / AVX widths).
inline constexpr int kRowPacket = 8;

template <class Op, class = void>
struct packet_rows : std::false_type {};
template <class Op>
struct packet_rows<Op, std::void_t<decltype(Op::kPacketRows)>> : std::bool_constant<Op::kPacketRows> {};

/// The operands' pointers at element offsets `off` (inputs first): (input pointers, output pointers).
template <class... I, class... O, std::size_t... KI, std::size_t... KO>
auto row_pointers(const std::tuple<View<const I>...>& ins, const std::tuple<View<O>...>& outs,
                  const std::int64_t* off, std::index_sequence<KI...>, std::index_sequence<KO...>) {
  return std::make_pair(std::make_tuple((std::get<KI>(ins).data + off[KI])...),
                        std::make_tuple((std::get<KO>(outs).data + off[sizeof...(KI) + KO])...));
}

template <class... I, class... O, std::size_t... KI, std::size_t... KO>
auto make_host_row(const std::tuple<View<const I>...>& ins, const std::tuple<View<O>...>& outs,
                   const std::int64_t* off, const expr::Rows& rows, std::index_sequence<KI...> ki,
                   std::index_sequence<KO...> ko) {
  auto [in_ptrs, out_ptrs] = row_pointers(ins, outs, off, ki, ko);
  return HostRow<decltype(in_ptrs), decltype(out_ptrs)>{in_ptrs, out_ptrs, rows.step, rows.step + sizeof...(KI),
                                                        rows.length};
}

/// op(row) with values of type V (a scalar, or a packet of rows); its result summed to a double
/// (0 when op returns void).
template <class V, class Op, class Row>
double run_row(const Op& op, const Row& row) {
  if constexpr (std::is_void_v<decltype(op.template operator()<V>(row))>) {
    op.template operator()<V>(row);
    return 0.0;
  } else if constexpr (std::is_arithmetic_v<V>) {
    return static_cast<double>(op.template operator()<V>(row));
  } else {
    return static_cast<double>(op.template operator()<V>(row).sum());
  }
}

inline namespace KDLOSS_CPU_ISA_NAMESPACE {
/// One packet of float rows, compiled once per instruction set (AVX2/FMA and baseline on x86-64,
/// backend/cpu/parallel.hpp) with the whole row operation inlined into it, so its packet
/// arithmetic, exp and log run at the machine's vector width whatever the build's -march. Double
/// rows stay on the baseline path: their exp and log are Eigen's (the double tests' 1e-10).
template <class Acc, class Op, class Row>
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN double run_packet_row_isa(const Op& op, const Row& row) {
  return run_row<math::Packet<Acc, kRowPacket>>(op, row);
}
}  // namespace KDLOSS_CPU_ISA_NAMESPACE

/// Runs op on every row of `rows`, kRowPacket neighbouring rows at a time along the innermost outer
/// axis (the rows left over at the end of each line one at a time). Returns the double sum of op's
/// returns.
template <class Acc, class Op, class... I, class... O>
double packet_rowwise(const expr::Rows& rows, const std::int64_t* lane_step, Op op,
                      const std::tuple<View<const I>...>& ins, const std::tuple<View<O>...>& outs) {
  constexpr int NI = sizeof...(I), NO = sizeof...(O);
  const std::int64_t line = rows.outer.inner(), lines = rows.count() / line;
  const std::int64_t packets = line / kRowPacket, tail = line % kRowPacket, per_line = packets + tail;
  // Row results combined in a fixed order (ordered_sum): the bits do not depend on the thread count.
  return ordered_sum(lines * per_line, rows.count() * rows.length > kParallelThreshold, [&](std::int64_t task) {
    const std::int64_t k = task % per_line;
    const std::int64_t r = (task / per_line) * line + (k < packets ? k * kRowPacket : packets * kRowPacket + k - packets);
    std::int64_t off[expr::kMaxOperands] = {};
    rows.outer.offsets(r, off);
    if (k < packets) {
      auto [in_ptrs, out_ptrs] =
          row_pointers(ins, outs, off, std::make_index_sequence<NI>{}, std::make_index_sequence<NO>{});
      const HostPacketRow<decltype(in_ptrs), decltype(out_ptrs), kRowPacket> row{in_ptrs, out_ptrs, rows.step,
                                                                                 lane_step, rows.length};
      if constexpr (std::is_same_v<Acc, float>)
        return run_packet_row_isa<Acc>(op, row);
      else
        return run_row<math::Packet<Acc, kRowPacket>>(op, row);
    }
    return run_row<Acc>(op,
                        make_host_row(ins, outs, off, rows, std::make_index_sequence<NI>{}, std::make_index_sequence<NO>{}));
  });
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
  if constexpr (packet_rows<Op>::value) {
    // Neighbouring rows adjacent (or broadcast) in every operand, and more than one element per row.
    const int last = rows.outer.rank - 1;
    bool adjacent = last >= 0 && rows.outer.shape[last] >= kRowPacket && rows.length > 1;
    std::int64_t lane_step[expr::kMaxOperands] = {};
    for (int k = 0; adjacent && k < NI + NO; ++k) {
      lane_step[k] = rows.outer.strides[k][last];
      adjacent = lane_step[k] == 0 || lane_step[k] == 1;
    }
    if (adjacent) return packet_rowwise<Acc>(rows, lane_step, op, ins, outs);
  }
  return ordered_sum(count, count * rows.length > kParallelThreshold && count > 1, [&](std::int64_t r) {
    std::int64_t off[expr::kMaxOperands];
    rows.outer.offsets(r, off);
    return run_row<Acc>(
        op, make_host_row(ins, outs, off, rows, std::make_index_sequence<NI>{}, std::make_index_sequence<NO>{}));
  });
}

} } }  // namespace kdloss::backend::cpu
