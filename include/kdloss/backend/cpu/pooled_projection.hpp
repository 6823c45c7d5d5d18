// kdloss/backend/cpu/pooled_projection.hpp: the host's fused backward through a max-pooled 1x1
// projection (expr/pooled_projection.hpp). Each sum runs in the same order whatever the walk and the thread
// count, so the bits depend on neither: the channel-major walk splits each window row's channels among the
// threads (a channel's W gradient and its strip of grad x belong to one thread; b's gradient is summed
// before, on one); the position-major walk runs one window at a time on one thread.
//
//   std::size_t bytes = backend::cpu::pooled_projection::scratch_bytes(P, backend::cpu::max_threads());
//   backend::cpu::pooled_projection::run(P, scratch, bytes);
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/expr/pooled_projection.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::pooled_projection {

using expr::PooledProjectionBackPass;

/// Scratch of the channel-major walk for `slots` threads, in carve order: per
/// window row the argmax offsets into the strip's tile [m, Wp] (int64), then W^T and dW^T [C, m], db [m],
/// the row's pooled gradients [m, Wp], the tile's starting values [s, Wp s], and per thread the strip of x
/// and its gradient [s, Wp s] (acc_t<T>).
template <class T>
std::int64_t planes_bytes(const PooledProjectionBackPass<T>& P, std::int64_t slots) {
  const std::int64_t C = P.x.shape[1], m = P.weight.shape[0];
  const std::int64_t s = P.stride, Wp = P.grad_y.shape[3];
  const std::int64_t row = Wp * m, tile = s * Wp * s;
  return row * 8 + (2 * m * C + m + row + tile + 2 * tile * slots) * static_cast<std::int64_t>(sizeof(acc_t<T>));
}

/// Scratch of run for `threads` threads: the channel-major walk's, or the
/// position-major walk's (channels-last x), which reuses the same room for one window of x and of its
/// gradient [s^2, C], W and dW [m, C], db [m] and s^2 flags.
template <class T>
std::size_t scratch_bytes(const PooledProjectionBackPass<T>& P, int threads) {
  const std::int64_t C = P.x.shape[1], m = P.weight.shape[0];
  const std::int64_t s = P.stride, k = s * s;
  const std::int64_t planes = planes_bytes(P, threads);
  const std::int64_t windows = (2 * k * C + 2 * m * C + m) * static_cast<std::int64_t>(sizeof(acc_t<T>)) + k;
  return static_cast<std::size_t>(std::max(planes, windows));
}

/// Evaluates P (expr/pooled_projection.hpp) with `bytes` of scratch at `scratch` (scratch_bytes for up to
/// max_threads() threads; fewer bytes run on fewer threads).
/// Only the argmax positions feed W's gradient (where the dense product would also multiply the zero
/// gradient elsewhere by x: equal unless x holds inf or NaN there). Channel-major x (NCHW) with windows of
/// at least m positions is walked one channel plane at a time per window row, the strip of s rows copied in
/// order and gathered at the argmaxes; otherwise (channels-last x, small windows) one window at a time.
template <class T>
void run(const PooledProjectionBackPass<T>& P, void* scratch, std::size_t bytes) {
  using A = acc_t<T>;
  const View<const T>& x = P.x;
  const View<const T>& G = P.grad_y;
  const View<const T>& w = P.weight;
  const std::int64_t B = x.shape[0], C = x.shape[1], s = P.stride, k = s * s;
  const std::int64_t m = G.shape[1], Hp = G.shape[2], Wp = G.shape[3];
  const bool want_x = P.grad_x.data != nullptr, want_w = P.grad_weight.data != nullptr,
             want_b = P.grad_bias.data != nullptr;
  const bool narrow = P.narrow_argmax;
  const auto* idx8 = static_cast<const unsigned char*>(P.argmax);
  const auto* idx32 = static_cast<const std::int32_t*>(P.argmax);
  const auto argmax = [&](std::int64_t b, std::int64_t o, std::int64_t hp, std::int64_t wp) {
    const std::int64_t at = ((b * m + o) * Hp + hp) * Wp + wp;
    return narrow ? static_cast<std::int64_t>(idx8[at]) : static_cast<std::int64_t>(idx32[at]);
  };
  const auto grad_at = [&](std::int64_t b, std::int64_t o, std::int64_t hp, std::int64_t wp) {
    return static_cast<A>(G.data[b * G.strides[0] + o * G.strides[1] + hp * G.strides[2] + wp * G.strides[3]]);
  };
  const Dims& xs = x.strides;
  const View<T>& gx = P.grad_x;
  // W's and b's gradients accumulate as dw[o * dwo + c * dwc] (transposed in the channel-major walk).
  // The window walk transposes k positions x C channels per window and runs its m x C products over
  // contiguous channels; the plane walk reads x in order but gathers and scatters m x C values one by one:
  // it pays off where a window holds at least m positions (FBKD's P2: s = 8, m = 64).
  const bool channel_major = xs[1] >= xs[3] && k >= m;
  A* dw = nullptr;
  A* db = nullptr;
  std::int64_t dwo = C, dwc = 1;
  if (channel_major) {
    const std::int64_t row = m * Wp, cols = Wp * s, tile = s * cols;
    // As many threads as the scratch was carved for (a workspace sized for fewer runs on fewer).
    std::int64_t slots = max_threads();
    while (slots > 1 && planes_bytes(P, slots) > static_cast<std::int64_t>(bytes)) --slots;
    const std::int64_t tasks = std::min(slots, C);  // both at least 1
    auto* toff = static_cast<std::int64_t*>(scratch);
    A* wt = reinterpret_cast<A*>(toff + row);
    dw = wt + m * C;
    db = dw + m * C;
    A* gv = db + m;
    A* start = gv + row;
    A* strips = start + tile;  // per task: the strip of x, then its gradient
    dwo = 1, dwc = m;
    std::fill(dw, dw + m * C, A(0));
    std::fill(db, db + m, A(0));
    for (std::int64_t o = 0; o < m; ++o)
      for (std::int64_t c = 0; c < C; ++c) wt[c * m + o] = static_cast<A>(w.data[o * w.strides[0] + c * w.strides[1]]);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t hp = 0; hp < Hp; ++hp) {
        // The row's argmaxes (o-major) as offsets into the strip's tile [s, Wp s]. Windows do not overlap,
        // so o-major order still adds each position's terms in o order.
        for (std::int64_t o = 0; o < m; ++o)
          for (std::int64_t wp = 0; wp < Wp; ++wp) {
            const std::int64_t kk = argmax(b, o, hp, wp);
            toff[o * Wp + wp] = (kk / s) * cols + wp * s + kk % s;
            gv[o * Wp + wp] = grad_at(b, o, hp, wp);
          }
        if (want_b)
          for (std::int64_t o = 0; o < m; ++o)
            for (std::int64_t wp = 0; wp < Wp; ++wp) db[o] += gv[o * Wp + wp];
        // The tile starts each channel at +0 where an argmax falls (the sum the window walk starts from)
        // and at -0 elsewhere, which grad x's write-back adds as it is: x + (-0) is x for every x.
        if (want_x) {
          std::fill(start, start + tile, A(-0.0));
          for (std::int64_t i = 0; i < row; ++i) start[toff[i]] = A(0);
        }
        run_tasks(tasks, C * tile > kParallelThreshold, [&](std::int64_t task) {
          A* xt = strips + 2 * tile * task;
          A* acc = xt + tile;
          if (want_x) std::copy(start, start + tile, acc);
          for (std::int64_t c = C * task / tasks, c_end = C * (task + 1) / tasks; c < c_end; ++c) {
            if (want_w) {
              // The strip read in order first (the prefetcher follows it), then gathered at the argmaxes.
              const T* xc = x.data + b * xs[0] + c * xs[1] + hp * s * xs[2];
              for (std::int64_t kh = 0; kh < s; ++kh) {
                const T* __restrict in = xc + kh * xs[2];
                A* __restrict to = xt + kh * cols;
                if (xs[3] == 1)
                  for (std::int64_t col = 0; col < cols; ++col) to[col] = static_cast<A>(in[col]);
                else
                  for (std::int64_t col = 0; col < cols; ++col) to[col] = static_cast<A>(in[col * xs[3]]);
              }
              A* d = dw + c * m;
              for (std::int64_t o = 0; o < m; ++o) {
                const A* __restrict g = gv + o * Wp;
                const std::int64_t* __restrict off = toff + o * Wp;
                A sum = d[o];
                for (std::int64_t wp = 0; wp < Wp; ++wp) sum += g[wp] * xt[off[wp]];
                d[o] = sum;
              }
            }
            if (!want_x) continue;
            const A* __restrict wc = wt + c * m;
            for (std::int64_t o = 0; o < m; ++o) {
              const A* __restrict g = gv + o * Wp;
              const std::int64_t* __restrict off = toff + o * Wp;
              const A wo = wc[o];
              for (std::int64_t wp = 0; wp < Wp; ++wp) acc[off[wp]] += g[wp] * wo;
            }
            T* gxc = gx.data + b * gx.strides[0] + c * gx.strides[1] + hp * s * gx.strides[2];
            const std::int64_t gs3 = gx.strides[3];
            for (std::int64_t kh = 0; kh < s; ++kh) {
              T* __restrict r = gxc + kh * gx.strides[2];
              const A* __restrict v = acc + kh * cols;
              if (gs3 == 1)
                for (std::int64_t col = 0; col < cols; ++col) r[col] = static_cast<T>(static_cast<A>(r[col]) + v[col]);
              else
                for (std::int64_t col = 0; col < cols; ++col)
                  r[col * gs3] = static_cast<T>(static_cast<A>(r[col * gs3]) + v[col]);
            }
            std::copy(start, start + tile, acc);
          }
        });
      }
  } else {
    A* xw = static_cast<A*>(scratch);
    A* gxw = xw + k * C;
    A* wa = gxw + k * C;
    dw = wa + m * C;
    db = dw + m * C;
    unsigned char* touched = reinterpret_cast<unsigned char*>(db + m);
    std::fill(gxw, gxw + k * C, A(0));
    std::fill(dw, dw + m * C, A(0));
    std::fill(db, db + m, A(0));
    std::fill(touched, touched + k, static_cast<unsigned char>(0));
    for (std::int64_t o = 0; o < m; ++o)
      for (std::int64_t c = 0; c < C; ++c) wa[o * C + c] = static_cast<A>(w.data[o * w.strides[0] + c * w.strides[1]]);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t hp = 0; hp < Hp; ++hp)
        for (std::int64_t wp = 0; wp < Wp; ++wp) {
          if (want_w)
            for (std::int64_t c = 0; c < C; ++c) {
              const T* xc = x.data + b * xs[0] + c * xs[1] + hp * s * xs[2] + wp * s * xs[3];
              for (std::int64_t kh = 0; kh < s; ++kh)
                for (std::int64_t kw = 0; kw < s; ++kw)
                  xw[(kh * s + kw) * C + c] = static_cast<A>(xc[kh * xs[2] + kw * xs[3]]);
            }
          for (std::int64_t o = 0; o < m; ++o) {
            const A gv = grad_at(b, o, hp, wp);
            const std::int64_t kk = argmax(b, o, hp, wp);
            if (want_b) db[o] += gv;
            if (want_w) {
              A* __restrict d = dw + o * C;
              const A* __restrict xr = xw + kk * C;
              for (std::int64_t c = 0; c < C; ++c) d[c] += gv * xr[c];
            }
            if (want_x) {
              A* __restrict gr = gxw + kk * C;
              const A* __restrict wr = wa + o * C;
              for (std::int64_t c = 0; c < C; ++c) gr[c] += gv * wr[c];
              touched[kk] = 1;
            }
          }
          if (!want_x) continue;
          for (std::int64_t kk = 0; kk < k; ++kk) {
            if (!touched[kk]) continue;
            T* out = gx.data + b * gx.strides[0] + (hp * s + kk / s) * gx.strides[2] + (wp * s + kk % s) * gx.strides[3];
            A* gr = gxw + kk * C;
            for (std::int64_t c = 0; c < C; ++c) {
              T& r = out[c * gx.strides[1]];
              r = static_cast<T>(static_cast<A>(r) + gr[c]);
              gr[c] = A(0);
            }
            touched[kk] = 0;
          }
        }
  }
  const double pb = P.param_beta;
  const auto put = [pb](T& dst, A v) { dst = pb == 0.0 ? static_cast<T>(v) : static_cast<T>(static_cast<A>(pb) * static_cast<A>(dst) + v); };
  if (want_w) {
    const View<T>& gw = P.grad_weight;
    for (std::int64_t o = 0; o < m; ++o)
      for (std::int64_t c = 0; c < C; ++c) put(gw.data[o * gw.strides[0] + c * gw.strides[1]], dw[o * dwo + c * dwc]);
  }
  if (want_b)
    for (std::int64_t o = 0; o < m; ++o) put(P.grad_bias.data[o * P.grad_bias.strides[0]], db[o]);
}

} } }  // namespace kdloss::backend::cpu::pooled_projection
