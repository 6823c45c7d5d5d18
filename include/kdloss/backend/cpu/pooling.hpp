// kdloss/backend/cpu/pooling.hpp: several sums over the channels and over the positions of
// functions of the same [B,C,H,W] inputs, in one pass over those inputs.
//
// Work is cut into tasks of (image, block of kPoolBlock positions). A task walks the block channel
// by channel (NCHW: contiguous runs of positions), or position by position when every input has its
// channels innermost (channel-last: contiguous runs of channels). It keeps its per-position sums
// (one row per channel-axis term) in cache; its per-channel sums go to a task-private slot and are
// combined afterwards in a fixed order, so the result does not depend on the thread count.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "kdloss/backend/cpu/executor.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/packet.hpp"
#include "kdloss/expr/pool.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu {

/// Positions per task: its per-position sums stay in L2 while it walks the channels.
inline constexpr std::int64_t kPoolBlock = 4096;

namespace detail {

/// Offset of position j (row-major over [H,W]) of image b in a rank-4 map view [B,1,H,W].
template <class O>
std::int64_t map_offset(const View<O>& out, std::int64_t b, std::int64_t j, std::int64_t w) {
  return b * out.strides[0] + (j / w) * out.strides[2] + (j % w) * out.strides[3];
}

}  // namespace detail

/// Positions per packet of the float NCHW walk (pool_run_packets).
inline constexpr int kPoolPacket = 8;

inline namespace KDLOSS_CPU_ISA_NAMESPACE {
/// Every term on one run of n contiguous positions of one channel, all inputs and sums float:
/// term k adds f(inputs) to rows[k][0..n) (a sum over the channels) or to *chans[k] (a sum over
/// the positions); terms with neither are off. One loop over the run evaluates all the terms on
/// math::Packet values, compiled once per instruction set with the terms inlined (AVX2/FMA where
/// the machine has it), the positions that do not fill a packet on scalars.
template <class Terms, std::size_t... K, std::size_t... KT>
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN void pool_run_packets(const Terms& terms, const float* const* in, std::int64_t n,
                                                           float* const* rows, double* const* chans,
                                                           std::index_sequence<K...>, std::index_sequence<KT...>) {
  using P = math::Packet<float, kPoolPacket>;
  constexpr std::size_t NT = sizeof...(KT);
  P acc[NT];
  float tail[NT];
  for (std::size_t k = 0; k < NT; ++k) {
    acc[k] = P(0.0f);
    tail[k] = 0.0f;
  }
  auto add = [&](auto kt, std::int64_t j, auto& sum, const auto&... x) {
    constexpr std::size_t k = decltype(kt)::value;
    if (rows[k]) {
      if constexpr (sizeof...(x) > 0 && std::is_same_v<std::decay_t<decltype(sum)>, P>)
        (P::load(rows[k] + j) + std::get<k>(terms).f(x...)).store(rows[k] + j);
      else
        rows[k][j] += std::get<k>(terms).f(x...);
    } else if (chans[k]) {
      sum += std::get<k>(terms).f(x...);
    }
  };
  const std::int64_t packed = n - n % kPoolPacket;
  for (std::int64_t j = 0; j < packed; j += kPoolPacket) {
    const P x[] = {P::load(in[K] + j)...};
    (add(std::integral_constant<std::size_t, KT>{}, j, acc[KT], x[K]...), ...);
  }
  for (std::int64_t j = packed; j < n; ++j) {
    const float x[] = {in[K][j]...};
    (add(std::integral_constant<std::size_t, KT>{}, j, tail[KT], x[K]...), ...);
  }
  for (std::size_t k = 0; k < NT; ++k)
    if (!rows[k] && chans[k]) *chans[k] += static_cast<double>(acc[k].sum()) + static_cast<double>(tail[k]);
}
}  // namespace KDLOSS_CPU_ISA_NAMESPACE

/// For every term k of `terms`: terms[k].out = sum over terms[k].axis of terms[k].f(ins...), where
/// the inputs are broadcast to `full` = [B,C,H,W]. Outputs are overwritten; null ones are skipped.
///
///   // G_s(S) and mean_hw(T) in one pass (f receives one Eigen array map per input)
///   pool_sums(student.shape, std::tuple{student, teacher},
///             std::tuple{expr::PoolTerm<AbsOf0, float>{{1.0 / C}, gs, expr::PoolAxis::channels},
///                        expr::PoolTerm<MeanOf1, float>{{1.0 / HW}, pc, expr::PoolAxis::positions}});
template <class... I, class... F, class... O>
void pool_sums(const Dims& full, const std::tuple<View<const I>...>& ins,
               const std::tuple<expr::PoolTerm<F, O>...>& terms) {
  constexpr int NI = sizeof...(I);
  constexpr std::size_t NT = sizeof...(F);
  static_assert(NI >= 1 && NI <= expr::kMaxOperands, "pool_sums takes 1 to kMaxOperands inputs");
  const std::int64_t nb = full[0], nc = full[1], w = full[3], np = full[2] * full[3];
  auto for_each_term = [&](auto&& fn) {
    std::apply([&](const auto&... t) { (fn(t), ...); }, terms);
  };
  if (nb * nc * np == 0) {  // a sum over nothing is 0
    for_each_term([](const auto& t) {
      if (t.out.data) fill(t.out, std::remove_cv_t<std::remove_reference_t<decltype(*t.out.data)>>(0));
    });
    return;
  }
  std::int64_t strides[expr::kMaxOperands][kMaxRank] = {};
  detail::collect_strides(full, ins, strides, std::make_index_sequence<NI>{});
  // Channels innermost in memory (channel-last inputs): walk each position's channels as one
  // contiguous run, over the space permuted to [B,H,W,C]; otherwise walk each channel's positions.
  bool channels_inner = nc > 1;
  for (int k = 0; k < NI; ++k) channels_inner = channels_inner && strides[k][1] == 1 && strides[k][3] != 1;
  const Dims walk = channels_inner ? Dims{nb, full[2], full[3], nc} : full;
  if (channels_inner)
    for (int k = 0; k < NI; ++k) {
      const std::int64_t sc = strides[k][1];
      strides[k][1] = strides[k][2];
      strides[k][2] = strides[k][3];
      strides[k][3] = sc;
    }
  const expr::Space space = expr::make_space(walk, strides, NI, /*reorder=*/false);
  const std::int64_t inner = space.inner();
  // NCHW float inputs whose positions are contiguous, float sums: one packet loop per run.
  constexpr bool all_float = (std::is_same_v<std::remove_cv_t<I>, float> && ...) && (std::is_same_v<O, float> && ...);
  bool packets = all_float && !channels_inner;
  for (int k = 0; k < NI; ++k) packets = packets && space.inner_stride(k) == 1;
  const std::int64_t blocks = (np + kPoolBlock - 1) / kPoolBlock, tasks = nb * blocks;
  // Per-channel sums of each task and term (terms over positions only; the others leave theirs unused).
  std::vector<double> partial(static_cast<std::size_t>(tasks) * NT * static_cast<std::size_t>(nc), 0.0);

#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (nb * nc * np > kParallelThreshold && tasks > 1)
#endif
  for (std::int64_t task = 0; task < tasks; ++task) {
    const std::int64_t b = task / blocks, j0 = (task % blocks) * kPoolBlock, len = std::min(kPoolBlock, np - j0);
    std::tuple<std::vector<O>...> rows;  // per-position sums of the channel-axis terms
    std::size_t k = 0;
    std::apply([&](auto&... r) { ((r.assign(static_cast<std::size_t>(len), O(0))), ...); }, rows);
    double* task_chan = partial.data() + (static_cast<std::size_t>(task) * NT) * static_cast<std::size_t>(nc);
    // Runs every term on `n` elements from `linear`: elements of channel c at positions j.. (channels
    // outer) or of position j at channels c.. (channels inner).
    auto run = [&](std::int64_t linear, std::int64_t n, std::int64_t c, std::int64_t j) {
      if constexpr (all_float) {
        if (packets) {
          std::int64_t off[expr::kMaxOperands] = {};
          space.offsets(linear, off);
          const float* in[NI];
          std::apply([&](const auto&... v) {
            std::size_t i = 0;
            ((in[i] = v.data + off[i], ++i), ...);
          }, ins);
          float* row_ptrs[NT];
          double* chan_ptrs[NT];
          std::size_t t = 0;
          auto place = [&](const auto& term, auto& row) {
            const bool on = term.out.data != nullptr, over_channels = term.axis == expr::PoolAxis::channels;
            row_ptrs[t] = on && over_channels ? row.data() + (j - j0) : nullptr;
            chan_ptrs[t] = on && !over_channels ? task_chan + t * static_cast<std::size_t>(nc) + c : nullptr;
            ++t;
          };
          std::apply([&](const auto&... tm) { std::apply([&](auto&... r) { (place(tm, r), ...); }, rows); }, terms);
          pool_run_packets(terms, in, n, row_ptrs, chan_ptrs, std::make_index_sequence<NI>{},
                           std::make_index_sequence<NT>{});
          return;
        }
      }
      auto body = [&](const auto&... x) {
        k = 0;
        auto one = [&](const auto& term, auto& row) {
          using Out = typename std::remove_reference_t<decltype(row)>::value_type;
          double* chan = task_chan + k * static_cast<std::size_t>(nc) + c;
          ++k;
          if (!term.out.data) return;
          const bool over_channels = term.axis == expr::PoolAxis::channels;
          if (!channels_inner && over_channels)
            ArrayMap<Out>(row.data() + (j - j0), n) += term.f(x...);
          else if (!channels_inner)
            *chan += static_cast<double>(term.f(x...).sum());
          else if (over_channels)
            row[static_cast<std::size_t>(j - j0)] += static_cast<Out>(term.f(x...).sum());
          else
            Eigen::Map<Eigen::ArrayXd>(chan, n) += term.f(x...).template cast<double>();
        };
        std::apply([&](const auto&... t) { std::apply([&](auto&... r) { (one(t, r), ...); }, rows); }, terms);
      };
      detail::run_chunk(space, body, ins, std::tuple<>{}, linear, n, std::make_index_sequence<NI>{},
                        std::make_index_sequence<0>{});
    };
    if (channels_inner) {
      for (std::int64_t j = j0; j < j0 + len; ++j)
        for (std::int64_t c = 0; c < nc;) {
          const std::int64_t linear = (b * np + j) * nc + c;
          const std::int64_t n = std::min({kChunk, nc - c, inner - linear % inner});
          run(linear, n, c, j);
          c += n;
        }
    } else {
      for (std::int64_t c = 0; c < nc; ++c)
        for (std::int64_t j = j0; j < j0 + len;) {
          const std::int64_t linear = (b * nc + c) * np + j;
          const std::int64_t n = std::min({kChunk, j0 + len - j, inner - linear % inner});
          run(linear, n, c, j);
          j += n;
        }
    }
    // This task's positions of the channel-axis outputs are complete.
    auto store = [&](const auto& term, const auto& row) {
      if (!term.out.data || term.axis != expr::PoolAxis::channels) return;
      for (std::int64_t j = 0; j < len; ++j) term.out.data[detail::map_offset(term.out, b, j0 + j, w)] = row[j];
    };
    std::apply([&](const auto&... t) { std::apply([&](const auto&... r) { (store(t, r), ...); }, rows); }, terms);
  }
  // The position-axis outputs: sum the tasks of each image in block order.
  std::size_t k = 0;
  for_each_term([&](const auto& term) {
    if (term.out.data && term.axis == expr::PoolAxis::positions) {
      for (std::int64_t b = 0; b < nb; ++b)
        for (std::int64_t c = 0; c < nc; ++c) {
          double total = 0;
          for (std::int64_t blk = 0; blk < blocks; ++blk)
            total += partial[((static_cast<std::size_t>(b * blocks + blk)) * NT + k) * static_cast<std::size_t>(nc) +
                             static_cast<std::size_t>(c)];
          using Out = std::remove_cv_t<std::remove_reference_t<decltype(*term.out.data)>>;
          term.out.data[b * term.out.strides[0] + c * term.out.strides[1]] = static_cast<Out>(total);
        }
    }
    ++k;
  });
}

} } }  // namespace kdloss::backend::cpu
