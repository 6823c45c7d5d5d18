// kdloss/backend/cpu/channel_stats.hpp: the per-channel passes of expr/channel_stats.hpp on the host.
//
// A channel's B*H*W elements are cut into tasks of kChannelBlock consecutive elements (row-major over
// b, h, w); a task walks every channel over its elements. Reductions keep one partial per (task,
// channel), in double, and combine the partials in task order: the tasks depend on the shape alone,
// so the result is the same bits for any thread count. Moments are two-pass inside a task (mean of
// the task's elements, then the squared deviations from it, re-read from cache) and merged across
// tasks with Chan's pairwise formula, so a large mean does not cancel the variance away.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/expr/channel_stats.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu {

/// Elements of one channel per task (16 KiB of floats: a task's second pass re-reads them from L1).
inline constexpr std::int64_t kChannelBlock = 4096;

namespace channel_detail {

/// The (b, h, w) axes of N rank-4 views over one [B, C, H, W] space, extent-1 axes dropped and
/// neighbours merged where every view allows it: element e of a channel (row-major over b, h, w)
/// lies in runs of inner() elements, each view's run at stride inner_stride(k).
template <int N>
struct PlaneWalk {
  int dims = 0;
  std::int64_t extent[3] = {1, 1, 1};
  std::int64_t stride[N][3] = {};
  std::int64_t chan[N] = {};

  std::int64_t inner() const { return dims ? extent[dims - 1] : 1; }
  std::int64_t inner_stride(int k) const { return dims ? stride[k][dims - 1] : 0; }
  std::int64_t offset(int k, std::int64_t c, std::int64_t e) const {
    std::int64_t off = c * chan[k];
    for (int d = dims - 1; d >= 0; --d) {
      off += (e % extent[d]) * stride[k][d];
      e /= extent[d];
    }
    return off;
  }
  /// fn(e, len) for the runs covering elements [e0, e1) of a channel.
  template <class F>
  void runs(std::int64_t e0, std::int64_t e1, F&& fn) const {
    const std::int64_t in = inner();
    for (std::int64_t e = e0; e < e1;) {
      const std::int64_t len = std::min(e1 - e, in - e % in);
      fn(e, len);
      e += len;
    }
  }
};

template <int N>
PlaneWalk<N> plane_walk(const Dims& shape, const std::array<Dims, N>& strides) {
  PlaneWalk<N> p;
  for (int k = 0; k < N; ++k) p.chan[k] = strides[k][1];
  for (int d : {0, 2, 3}) {
    if (shape[d] == 1) continue;
    bool merge = p.dims > 0;
    for (int k = 0; k < N && merge; ++k) merge = p.stride[k][p.dims - 1] == strides[k][d] * shape[d];
    if (merge) {
      p.extent[p.dims - 1] *= shape[d];
      for (int k = 0; k < N; ++k) p.stride[k][p.dims - 1] = strides[k][d];
    } else {
      p.extent[p.dims] = shape[d];
      for (int k = 0; k < N; ++k) p.stride[k][p.dims] = strides[k][d];
      ++p.dims;
    }
  }
  return p;
}

inline std::int64_t tasks_of(std::int64_t per_channel) { return (per_channel + kChannelBlock - 1) / kChannelBlock; }

/// fn(task, e0, e1) for every task over the elements [e0, e1) of each of `nc` channels of `per`
/// elements, on the host threads (each task writes only its own partials).
template <class F>
void for_each_task(std::int64_t per, std::int64_t nc, F&& fn) {
  run_tasks(tasks_of(per), per * nc > kParallelThreshold,
            [&](std::int64_t t) { fn(t, t * kChannelBlock, std::min(per, (t + 1) * kChannelBlock)); });
}

}  // namespace channel_detail

inline namespace KDLOSS_CPU_ISA_NAMESPACE {
/// sum of (x - shift)^Power over a run (Power 1 or 2), in double with 8 interleaved accumulators (a
/// fixed order, vectorised by the compiler in each instruction-set clone).
template <int Power, class T>
KDLOSS_CPU_CLONES double channel_run_sum(const T* p, std::int64_t n, std::int64_t s, double shift) {
  auto term = [&](double v) { return Power == 1 ? v - shift : (v - shift) * (v - shift); };
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t j = 0;
  if (s == 1)
    for (; j + 8 <= n; j += 8)
      for (int k = 0; k < 8; ++k) acc[k] += term(static_cast<double>(p[j + k]));
  double tail = 0;
  for (; j < n; ++j) tail += term(static_cast<double>(p[j * s]));
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

/// sum g and sum g * (x - center) over a run.
template <class X, class G>
KDLOSS_CPU_CLONES void channel_run_cross(const X* x, std::int64_t sx, const G* g, std::int64_t sg, std::int64_t n,
                                         double center, double& sum_g, double& sum_gx) {
  double ag[4] = {0, 0, 0, 0}, ax[4] = {0, 0, 0, 0};
  std::int64_t j = 0;
  if (sx == 1 && sg == 1)
    for (; j + 4 <= n; j += 4)
      for (int k = 0; k < 4; ++k) {
        const double gv = static_cast<double>(g[j + k]);
        ag[k] += gv;
        ax[k] += gv * (static_cast<double>(x[j + k]) - center);
      }
  double tg = 0, tx = 0;
  for (; j < n; ++j) {
    const double gv = static_cast<double>(g[j * sg]);
    tg += gv;
    tx += gv * (static_cast<double>(x[j * sx]) - center);
  }
  sum_g += ((ag[0] + ag[2]) + (ag[1] + ag[3])) + tg;
  sum_gx += ((ax[0] + ax[2]) + (ax[1] + ax[3])) + tx;
}

/// out = a * g + b * (x - m) + d over a run (a null g or x drops its term), evaluated in double.
template <class X, class G, class O>
KDLOSS_CPU_CLONES void channel_run_affine(const X* x, std::int64_t sx, const G* g, std::int64_t sg, O* out,
                                          std::int64_t so, std::int64_t n, double a, double b, double m, double d) {
  if (x && g) {
    if (sx == 1 && sg == 1 && so == 1)
      for (std::int64_t j = 0; j < n; ++j)
        out[j] = static_cast<O>(a * static_cast<double>(g[j]) + (b * (static_cast<double>(x[j]) - m) + d));
    else
      for (std::int64_t j = 0; j < n; ++j)
        out[j * so] =
            static_cast<O>(a * static_cast<double>(g[j * sg]) + (b * (static_cast<double>(x[j * sx]) - m) + d));
  } else if (x) {
    if (sx == 1 && so == 1)
      for (std::int64_t j = 0; j < n; ++j) out[j] = static_cast<O>(b * (static_cast<double>(x[j]) - m) + d);
    else
      for (std::int64_t j = 0; j < n; ++j) out[j * so] = static_cast<O>(b * (static_cast<double>(x[j * sx]) - m) + d);
  } else if (g) {
    if (sg == 1 && so == 1)
      for (std::int64_t j = 0; j < n; ++j) out[j] = static_cast<O>(a * static_cast<double>(g[j]) + d);
    else
      for (std::int64_t j = 0; j < n; ++j) out[j * so] = static_cast<O>(a * static_cast<double>(g[j * sg]) + d);
  } else {
    for (std::int64_t j = 0; j < n; ++j) out[j * so] = static_cast<O>(d);
  }
}
}  // namespace KDLOSS_CPU_ISA_NAMESPACE

/// For each channel c of x [B, C, H, W]: fin(c, count, mean, m2), m2 = sum over the channel of
/// (x - mean)^2, all double (an empty channel gives count 0, mean NaN, m2 0).
template <class T, class Fin>
void channel_moments(const View<const T>& x, Fin fin) {
  const std::int64_t nc = x.shape[1], per = x.shape[0] * x.shape[2] * x.shape[3];
  const auto walk = channel_detail::plane_walk<1>(x.shape, {x.strides});
  const std::int64_t tasks = channel_detail::tasks_of(per);
  std::vector<expr::Moments<double>> part(static_cast<std::size_t>(tasks * nc));
  channel_detail::for_each_task(per, nc, [&](std::int64_t t, std::int64_t e0, std::int64_t e1) {
    const double count = static_cast<double>(e1 - e0);
    for (std::int64_t c = 0; c < nc; ++c) {
      double sum = 0, m2 = 0;
      const auto each = [&](auto&& fn) {
        walk.runs(e0, e1, [&](std::int64_t e, std::int64_t len) { fn(x.data + walk.offset(0, c, e), len); });
      };
      each([&](const T* p, std::int64_t len) { sum += channel_run_sum<1>(p, len, walk.inner_stride(0), 0.0); });
      const double mean = sum / count;
      each([&](const T* p, std::int64_t len) { m2 += channel_run_sum<2>(p, len, walk.inner_stride(0), mean); });
      part[static_cast<std::size_t>(t * nc + c)] = expr::Moments<double>{count, mean, m2};
    }
  });
  for (std::int64_t c = 0; c < nc; ++c) {
    expr::Moments<double> m{0, 0, 0};
    for (std::int64_t t = 0; t < tasks; ++t)
      m = expr::Moments<double>::merge(m, part[static_cast<std::size_t>(t * nc + c)]);  // in task order
    fin(c, m.count, m.count == 0 ? std::numeric_limits<double>::quiet_NaN() : m.mean, m.m2);
  }
}

/// For each channel c: fin(c, sum g, sum g * (x - center(c))) over the channel's elements (double).
template <class X, class G, class Center, class Fin>
void channel_cross_sums(const View<const X>& x, const View<const G>& g, Center center, Fin fin) {
  const std::int64_t nc = x.shape[1], per = x.shape[0] * x.shape[2] * x.shape[3];
  const auto walk = channel_detail::plane_walk<2>(x.shape, {x.strides, g.strides});
  const std::int64_t tasks = channel_detail::tasks_of(per);
  std::vector<double> part(static_cast<std::size_t>(tasks * nc * 2));
  std::vector<double> centers(static_cast<std::size_t>(nc));
  for (std::int64_t c = 0; c < nc; ++c) centers[static_cast<std::size_t>(c)] = center(c);
  channel_detail::for_each_task(per, nc, [&](std::int64_t t, std::int64_t e0, std::int64_t e1) {
    for (std::int64_t c = 0; c < nc; ++c) {
      double sg = 0, sx = 0;
      walk.runs(e0, e1, [&](std::int64_t e, std::int64_t len) {
        channel_run_cross(x.data + walk.offset(0, c, e), walk.inner_stride(0), g.data + walk.offset(1, c, e),
                          walk.inner_stride(1), len, centers[static_cast<std::size_t>(c)], sg, sx);
      });
      part[static_cast<std::size_t>((t * nc + c) * 2)] = sg;
      part[static_cast<std::size_t>((t * nc + c) * 2 + 1)] = sx;
    }
  });
  for (std::int64_t c = 0; c < nc; ++c) {
    double sg = 0, sx = 0;
    for (std::int64_t t = 0; t < tasks; ++t) {
      sg += part[static_cast<std::size_t>((t * nc + c) * 2)];
      sx += part[static_cast<std::size_t>((t * nc + c) * 2 + 1)];
    }
    fin(c, sg, sx);
  }
}

/// out = scale_g[c] * g + scale_x[c] * (x - center[c]) + shift[c] (expr::ChannelAffine); x or g may
/// be null views when their scale is null. Elementwise: any partition gives the same bits.
template <class X, class G, class O>
void channel_affine(const View<const X>& x, const View<const G>& g, const View<O>& out, const expr::ChannelAffine& f) {
  const std::int64_t nc = out.shape[1], per = out.shape[0] * out.shape[2] * out.shape[3];
  const bool use_x = f.scale_x != nullptr, use_g = f.scale_g != nullptr;
  const auto walk = channel_detail::plane_walk<3>(
      out.shape, {use_x ? x.strides : out.strides, use_g ? g.strides : out.strides, out.strides});
  channel_detail::for_each_task(per, nc, [&](std::int64_t, std::int64_t e0, std::int64_t e1) {
    for (std::int64_t c = 0; c < nc; ++c) {
      const double a = use_g ? f.scale_g[c] : 0.0, b = use_x ? f.scale_x[c] : 0.0;
      const double m = f.center ? f.center[c] : 0.0, d = f.shift ? f.shift[c] : 0.0;
      walk.runs(e0, e1, [&](std::int64_t e, std::int64_t len) {
        channel_run_affine(use_x ? x.data + walk.offset(0, c, e) : static_cast<const X*>(nullptr), walk.inner_stride(0),
                           use_g ? g.data + walk.offset(1, c, e) : static_cast<const G*>(nullptr), walk.inner_stride(1),
                           out.data + walk.offset(2, c, e), walk.inner_stride(2), len, a, b, m, d);
      });
    }
  });
}

/// f(c) for every channel c in [0, n).
template <class F>
void for_each_channel(std::int64_t n, F f) {
  for (std::int64_t c = 0; c < n; ++c) f(c);
}

} } }  // namespace kdloss::backend::cpu
