// Naive double-precision reference of ops/roi_align.hpp, written from torchvision's roi_align CPU
// kernel (roi_align_kernel.cpp, roi_align_common.h) and mmcv's max mode: per output, per sample, four
// bilinear corners. Row-major [B, C, H, W] input, boxes as [K, 5] rows (image, x1, y1, x2, y2) with the
// image index already an integer. Independent of the library (no table, no factorisation).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace kdloss_ref::ops {

struct RoiAlignRefOptions {
  std::int64_t ph = 1, pw = 1;
  double scale = 1.0;
  std::int64_t sampling = -1;
  bool aligned = false;
  bool max_mode = false;
};

struct RoiCorner {
  std::int64_t y, x;
  double w;
};

/// The four corners of sample (y, x) on an h x w map; false when the sample is outside [-1, size].
inline bool roi_ref_corners(double y, double x, std::int64_t h, std::int64_t w, RoiCorner out[4]) {
  if (h <= 0 || w <= 0 || y < -1.0 || y > double(h) || x < -1.0 || x > double(w)) return false;
  if (y <= 0) y = 0;
  if (x <= 0) x = 0;
  std::int64_t yl = static_cast<std::int64_t>(y), xl = static_cast<std::int64_t>(x), yh, xh;
  if (yl >= h - 1) {
    yh = yl = h - 1;
    y = double(yl);
  } else {
    yh = yl + 1;
  }
  if (xl >= w - 1) {
    xh = xl = w - 1;
    x = double(xl);
  } else {
    xh = xl + 1;
  }
  const double ly = y - double(yl), lx = x - double(xl), hy = 1 - ly, hx = 1 - lx;
  out[0] = {yl, xl, hy * hx};
  out[1] = {yl, xh, hy * lx};
  out[2] = {yh, xl, ly * hx};
  out[3] = {yh, xh, ly * lx};
  return true;
}

/// Calls f(p, q, iy, ix, y, x, count) for every sample of box `box` (5 numbers).
template <class F>
void roi_ref_samples(const double* box, const RoiAlignRefOptions& o, F&& f) {
  const double off = o.aligned ? 0.5 : 0.0;
  const double x1 = box[1] * o.scale - off, y1 = box[2] * o.scale - off;
  const double x2 = box[3] * o.scale - off, y2 = box[4] * o.scale - off;
  double rw = x2 - x1, rh = y2 - y1;
  if (!o.aligned) {
    rw = std::max(rw, 1.0);
    rh = std::max(rh, 1.0);
  }
  const double bh = rh / double(o.ph), bw = rw / double(o.pw);
  const std::int64_t gh = o.sampling > 0 ? o.sampling : static_cast<std::int64_t>(std::ceil(rh / double(o.ph)));
  const std::int64_t gw = o.sampling > 0 ? o.sampling : static_cast<std::int64_t>(std::ceil(rw / double(o.pw)));
  const double count = std::max<double>(double(gh * gw), 1.0);
  for (std::int64_t p = 0; p < o.ph; ++p)
    for (std::int64_t q = 0; q < o.pw; ++q)
      for (std::int64_t iy = 0; iy < gh; ++iy)
        for (std::int64_t ix = 0; ix < gw; ++ix)
          f(p, q, iy, ix, y1 + double(p) * bh + (double(iy) + 0.5) * bh / double(gh),
            x1 + double(q) * bw + (double(ix) + 0.5) * bw / double(gw), count);
}

/// y [K, C, ph, pw] and, when gy is given, grad_x [B, C, H, W] (zero-initialised here).
inline void roi_align(const std::vector<double>& x, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                      const std::vector<double>& boxes5, const RoiAlignRefOptions& o, std::vector<double>* y,
                      const std::vector<double>* gy, std::vector<double>* gx) {
  const std::int64_t K = static_cast<std::int64_t>(boxes5.size() / 5), P = o.ph * o.pw;
  if (y) y->assign(static_cast<std::size_t>(K * C * P), 0.0);
  if (gx) gx->assign(static_cast<std::size_t>(B * C * H * W), 0.0);
  for (std::int64_t k = 0; k < K; ++k) {
    const double* box = &boxes5[static_cast<std::size_t>(5 * k)];
    const std::int64_t b = static_cast<std::int64_t>(box[0]);
    for (std::int64_t c = 0; c < C; ++c) {
      const double* plane = &x[static_cast<std::size_t>((b * C + c) * H * W)];
      const std::size_t out0 = static_cast<std::size_t>((k * C + c) * P);
      std::vector<double> sum(static_cast<std::size_t>(P), 0.0), best(static_cast<std::size_t>(P), -10000.0);
      std::vector<double> best_y(static_cast<std::size_t>(P), 0), best_x(static_cast<std::size_t>(P), 0);
      std::vector<char> has(static_cast<std::size_t>(P), 0);
      roi_ref_samples(box, o, [&](std::int64_t p, std::int64_t q, std::int64_t, std::int64_t, double sy, double sx,
                                  double count) {
        RoiCorner cs[4] = {};
        const bool valid = roi_ref_corners(sy, sx, H, W, cs);
        const std::size_t j = static_cast<std::size_t>(p * o.pw + q);
        double v = 0;
        if (valid)
          for (const auto& cn : cs) v += cn.w * plane[cn.y * W + cn.x];
        if (o.max_mode) {
          if (v > best[j]) best[j] = v, best_y[j] = sy, best_x[j] = sx, has[j] = valid ? 1 : 0;
        } else {
          sum[j] += v / count;
          if (gx && valid)
            for (const auto& cn : cs)
              (*gx)[static_cast<std::size_t>((b * C + c) * H * W + cn.y * W + cn.x)] += (*gy)[out0 + j] * cn.w / count;
        }
      });
      for (std::int64_t j = 0; j < P; ++j) {
        if (y) (*y)[out0 + static_cast<std::size_t>(j)] = o.max_mode ? best[j] : sum[j];
        if (o.max_mode && gx && has[j]) {
          RoiCorner cs[4] = {};
          roi_ref_corners(best_y[j], best_x[j], H, W, cs);
          for (const auto& cn : cs)
            (*gx)[static_cast<std::size_t>((b * C + c) * H * W + cn.y * W + cn.x)] += (*gy)[out0 + j] * cn.w;
        }
      }
    }
  }
}

}  // namespace kdloss_ref::ops
