// 04_relation_pictures: what the FBKD and DRKD relation losses look at, teacher beside student.
//
// A synthetic detector feature map (one FPN level, C = 32 channels, 40 x 64 positions: P4 of a 640 x 1024
// image): objects are Gaussian blobs whose channel response is their class's signature (two cars share
// one class, a person has another, a small sign a third), over a weak textured background. The student
// sees the same scene less sharply: blurrier, slightly weaker objects, class signatures mixed towards a
// common response (less discriminative channels), the small sign missed, more noise. Everything runs through
// kdloss:
//   - fbkd_features.png     G_s = mean_c |x| (fbkd::spatial_attention), teacher | student;
//   - fbkd_spatial_masks.png the FBKD spatial masks M = H W softmax(G_s / 0.5) (ops::softmax with the
//                           temperature and scale options), teacher | student | their mean, which weights
//                           the code's masked feature loss;
//   - non_local_relation.png the relation row of one query position q (the centre of the left car, marked)
//                           over the map: softmax_j(x_q . x_j / sqrt(C)), the embedded-Gaussian pairwise
//                           function with identity projections, which is also the seed pixel relation
//                           G(F) = softmax(F F^T / sqrt(C)) F of DRKD (ops::softmax_relation with g = I,
//                           so y_q is the row), teacher | student;
//   - non_local_relation_dot.png the same row in FBKD's dot-product form x_q . x_j / N (ops::dot_relation).
// Teacher and student panels of one picture share one colour scale (viridis, dark = low).
//
//   kdloss_relation_pictures [output_dir]    # writes the four PNGs (docs/images in the docs)
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <kdloss/losses/fbkd/masks.hpp>
#include <kdloss/ops/dot_relation.hpp>
#include <kdloss/ops/softmax.hpp>
#include <kdloss/ops/softmax_relation.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr std::int64_t kC = 32, kH = 40, kW = 64, kN = kH * kW;
constexpr int kScale = 4, kGap = 8;

struct Object {
  double row, col, radius_y, radius_x, height;
  int cls;
};
// Two cars (class 0), a person (class 1), a small sign (class 2, missed by the student).
const Object kObjects[] = {{24, 14, 5, 8, 1.0, 0}, {27, 44, 4.5, 7, 0.9, 0}, {18, 30, 7, 2.5, 0.9, 1}, {8, 54, 2, 2, 0.8, 2}};
// The query of the relation pictures: the centre of the left car.
constexpr std::int64_t kQueryRow = 24, kQueryCol = 14;

/// [C, H, W] feature maps of teacher and student.
void make_features(std::vector<float>& teacher, std::vector<float>& student) {
  std::mt19937 gen(2021);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  double signature[3][kC], common[kC];  // per class: which channels respond (sparse, positive)
  for (auto& s : signature)
    for (double& v : s) v = unit(gen) < 0.3 ? 0.5 + unit(gen) : 0.05 * unit(gen);
  for (double& v : common) v = 0.5 * unit(gen);
  std::vector<double> texture_phase(kC);
  for (double& p : texture_phase) p = 6.28 * unit(gen);
  teacher.assign(kC * kN, 0.0f);
  student.assign(kC * kN, 0.0f);
  for (std::int64_t c = 0; c < kC; ++c)
    for (std::int64_t y = 0; y < kH; ++y)
      for (std::int64_t x = 0; x < kW; ++x) {
        double t = 0.08 * std::sin(0.8 * x + texture_phase[c]) * std::cos(0.6 * y) + 0.03 * normal(gen);
        double s = 0.06 * std::sin(0.8 * x + texture_phase[c]) * std::cos(0.6 * y) + 0.06 * normal(gen);
        for (const Object& o : kObjects) {
          const double dy = (y - o.row) / o.radius_y, dx = (x - o.col) / o.radius_x;
          t += o.height * signature[o.cls][c] * std::exp(-0.5 * (dy * dy + dx * dx));
          if (o.cls == 2) continue;  // the student misses the small sign
          const double by = (y - o.row) / (1.4 * o.radius_y), bx = (x - o.col) / (1.4 * o.radius_x);
          s += 0.9 * o.height * (0.4 * signature[o.cls][c] + 0.6 * common[c]) * std::exp(-0.5 * (by * by + bx * bx));
        }
        teacher[(c * kH + y) * kW + x] = static_cast<float>(t);
        student[(c * kH + y) * kW + x] = static_cast<float>(s);
      }
}

/// A viridis-like colour ramp: dark blue (0) through teal and green to yellow (1).
void colour(double v, unsigned char* rgb) {
  static const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  v = std::clamp(v, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(v));
  const double f = v - i;
  for (int c = 0; c < 3; ++c) rgb[c] = static_cast<unsigned char>(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]));
}

/// Writes [H, W] panels side by side (scaled by kScale, kGap white pixels apart), on one shared colour scale
/// (min to max over all panels); `mark` draws a white ring around the query position on every panel.
bool write_panels(const std::string& path, const std::vector<std::vector<float>>& panels, bool mark) {
  float lo = panels[0][0], hi = lo;
  for (const auto& p : panels)
    for (float v : p) lo = std::min(lo, v), hi = std::max(hi, v);
  const double range = hi > lo ? hi - lo : 1.0;
  const std::int64_t pw = kW * kScale, ph = kH * kScale, n = static_cast<std::int64_t>(panels.size());
  const std::int64_t width = n * pw + (n - 1) * kGap;
  std::vector<unsigned char> rgb(static_cast<std::size_t>(width * ph * 3), 255);
  for (std::int64_t k = 0; k < n; ++k)
    for (std::int64_t y = 0; y < ph; ++y)
      for (std::int64_t x = 0; x < pw; ++x) {
        unsigned char* px = &rgb[static_cast<std::size_t>((y * width + k * (pw + kGap) + x) * 3)];
        colour((panels[k][(y / kScale) * kW + x / kScale] - lo) / range, px);
        if (mark) {
          const double dy = y + 0.5 - (kQueryRow + 0.5) * kScale, dx = x + 0.5 - (kQueryCol + 0.5) * kScale;
          const double r = std::sqrt(dy * dy + dx * dx);
          if (r > 2.2 * kScale && r < 2.2 * kScale + 2.0) px[0] = px[1] = px[2] = 255;
        }
      }
  return stbi_write_png(path.c_str(), static_cast<int>(width), static_cast<int>(ph), 3, rgb.data(),
                        static_cast<int>(width * 3)) != 0;
}

using kdloss::Dims;

/// G_s = mean_c |x| and the FBKD spatial mask H W softmax(G_s / 0.5), each [H * W].
void spatial(const std::vector<float>& x, std::vector<float>& g, std::vector<float>& mask) {
  g.assign(kN, 0.0f);
  mask.assign(kN, 0.0f);
  kdloss::fbkd::spatial_attention(kdloss::host_view<const float>(x.data(), {1, kC, kH, kW}),
                                  kdloss::host_view(g.data(), {1, kH, kW}));
  kdloss::ops::SoftmaxOptions o;
  o.temperature = 0.5;            // the FBKD code's spatial temperature
  o.scale = static_cast<double>(kN);  // times H W: the mask's mean is 1
  kdloss::ops::softmax(kdloss::host_view<const float>(g.data(), {1, kN}), 1, kdloss::host_view(mask.data(), {1, kN}), o);
}

/// The relation row of the query over the map: y_q = sum_j f(x_q, x_j) e_j with g = I (N x N), so y_q[j] is
/// f(x_q, x_j): softmax_j(x_q . x_j / sqrt(C)) (softmax) or x_q . x_j / N (dot product).
std::vector<float> relation_row(const std::vector<float>& x, bool softmax) {
  const std::int64_t q = kQueryRow * kW + kQueryCol;
  const auto map = kdloss::host_view<const float>(x.data(), {1, kC, kH, kW});
  const auto all = kdloss::ops::relation_operand(map);  // [1, N, C] over the [C, H, W] storage
  const kdloss::View<const float> query(x.data() + q, Dims{1, 1, kC}, Dims{kC * kN, 1, kN}, kdloss::Device::host());
  std::vector<float> eye(static_cast<std::size_t>(kN * kN), 0.0f), row(kN, 0.0f);
  for (std::int64_t j = 0; j < kN; ++j) eye[static_cast<std::size_t>(j * kN + j)] = 1.0f;
  const auto g = kdloss::host_view<const float>(eye.data(), {1, kN, kN});
  const auto y = kdloss::host_view(row.data(), {1, 1, kN});
  if (softmax) {
    kdloss::ops::SoftmaxRelationArgs<float> r;
    r.theta = query, r.phi = all, r.g = g, r.y = y;
    r.options.scale = 1.0 / std::sqrt(static_cast<double>(kC));
    kdloss::ops::softmax_relation(r, kdloss::Mode::forward);
  } else {
    kdloss::ops::DotRelationArgs<float> r;
    r.theta = query, r.phi = all, r.g = g, r.y = y;
    kdloss::ops::dot_relation(r, kdloss::Mode::forward);
  }
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  std::vector<float> teacher, student;
  make_features(teacher, student);
  std::vector<float> gt, gs, mt, ms;
  spatial(teacher, gt, mt);
  spatial(student, gs, ms);
  std::vector<float> mean_mask(kN);
  for (std::int64_t i = 0; i < kN; ++i) mean_mask[i] = 0.5f * (mt[i] + ms[i]);
  const auto rt = relation_row(teacher, true), rs = relation_row(student, true);
  const auto dt = relation_row(teacher, false), ds = relation_row(student, false);

  const auto peak = [](const std::vector<float>& v) { return *std::max_element(v.begin(), v.end()); };
  const auto mass_on = [](const std::vector<float>& row, const Object& o) {  // share of a row inside an object
    double in = 0, all = 0;
    for (std::int64_t y = 0; y < kH; ++y)
      for (std::int64_t x = 0; x < kW; ++x) {
        const double dy = (y - o.row) / o.radius_y, dx = (x - o.col) / o.radius_x;
        all += row[y * kW + x];
        if (dy * dy + dx * dx <= 1.0) in += row[y * kW + x];
      }
    return in / all;
  };
  std::printf("spatial mask peak: teacher %.2f, student %.2f (mean 1)\n", peak(mt), peak(ms));
  std::printf("softmax relation of the query (left car), share inside: its car / the other car / the person\n");
  std::printf("  teacher %.3f / %.3f / %.3f\n  student %.3f / %.3f / %.3f\n", mass_on(rt, kObjects[0]),
              mass_on(rt, kObjects[1]), mass_on(rt, kObjects[2]), mass_on(rs, kObjects[0]), mass_on(rs, kObjects[1]),
              mass_on(rs, kObjects[2]));

  bool ok = true;
  ok &= write_panels(dir + "/fbkd_features.png", {gt, gs}, false);
  ok &= write_panels(dir + "/fbkd_spatial_masks.png", {mt, ms, mean_mask}, false);
  ok &= write_panels(dir + "/non_local_relation.png", {rt, rs}, true);
  ok &= write_panels(dir + "/non_local_relation_dot.png", {dt, ds}, true);
  if (!ok) {
    std::fprintf(stderr, "kdloss_relation_pictures: could not write the PNG images to %s\n", dir.c_str());
    return 1;
  }
  std::printf("wrote %s/{fbkd_features,fbkd_spatial_masks,non_local_relation,non_local_relation_dot}.png\n",
              dir.c_str());
  return 0;
}
