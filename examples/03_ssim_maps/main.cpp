// 03_ssim_maps: what the SSIM distillation loss looks at. A synthetic teacher feature map (smooth
// "objects" over a textured background), a student that has the objects' brightness but blurred
// structure and a missing texture patch, and kornia's per-pixel SSIM loss map between them
// (ssim_loss with reduction none), written as PNG images next to the MSE map for comparison.
//
//   kdloss_ssim_maps [output_dir]     # writes teacher.png, student.png, ssim_loss_map.png, mse_map.png
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <kdloss/losses/feature/pointwise.hpp>
#include <kdloss/losses/ssim/ssim.hpp>
#include <kdloss/ops/filter.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr std::int64_t kH = 100, kW = 167;  // P3 of an 800x1333 input

/// A viridis-like colour ramp: dark blue (0) through teal and green to yellow (1).
void colour(double v, unsigned char* rgb) {
  static const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  v = std::clamp(v, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(v));
  const double f = v - i;
  for (int c = 0; c < 3; ++c) rgb[c] = static_cast<unsigned char>(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]));
}

/// Writes a map as a PNG, scaled by 3 with nearest neighbours, min-max normalised.
bool write_png(const std::string& path, const std::vector<float>& map, std::int64_t h, std::int64_t w) {
  const auto [lo, hi] = std::minmax_element(map.begin(), map.end());
  const double range = *hi > *lo ? *hi - *lo : 1.0;
  constexpr int kScale = 3;
  std::vector<unsigned char> rgb(static_cast<std::size_t>(h * w * kScale * kScale * 3));
  for (std::int64_t y = 0; y < h * kScale; ++y)
    for (std::int64_t x = 0; x < w * kScale; ++x)
      colour((map[(y / kScale) * w + x / kScale] - *lo) / range, &rgb[(y * w * kScale + x) * 3]);
  return stbi_write_png(path.c_str(), static_cast<int>(w * kScale), static_cast<int>(h * kScale), 3, rgb.data(),
                        static_cast<int>(w * kScale * 3)) != 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  std::mt19937 gen(7);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  // Teacher: three Gaussian blobs ("objects") over a fine sinusoidal texture and weak noise.
  std::vector<float> teacher(kH * kW), student(kH * kW), texture(kH * kW);
  const double blobs[3][4] = {{30, 40, 9, 1.0}, {62, 110, 14, 0.8}, {75, 35, 6, 0.9}};  // row, col, radius, height
  for (std::int64_t y = 0; y < kH; ++y)
    for (std::int64_t x = 0; x < kW; ++x) {
      double v = 0;
      for (const auto& b : blobs) v += b[3] * std::exp(-((y - b[0]) * (y - b[0]) + (x - b[1]) * (x - b[1])) / (2 * b[2] * b[2]));
      texture[y * kW + x] = static_cast<float>(0.15 * std::sin(0.9 * x) * std::sin(0.7 * y) + 0.03 * noise(gen));
      teacher[y * kW + x] = static_cast<float>(v) + texture[y * kW + x];
    }
  // Student: the objects blurred (structure lost), the texture missing on the right third.
  const kdloss::Dims shape{1, 1, kH, kW};
  std::vector<float> blurred(kH * kW);
  kdloss::ops::gaussian_filter(kdloss::host_view<const float>(teacher.data(), shape),
                               kdloss::host_view(blurred.data(), shape), {7, 2.5, kdloss::ops::Padding::reflect});
  for (std::int64_t y = 0; y < kH; ++y)
    for (std::int64_t x = 0; x < kW; ++x) {
      const std::int64_t i = y * kW + x;
      student[i] = blurred[i] + (x < 2 * kW / 3 ? 0.6f * texture[i] : 0.0f);
    }

  const auto s = kdloss::host_view<const float>(student.data(), shape);
  const auto t = kdloss::host_view<const float>(teacher.data(), shape);
  std::vector<float> ssim_map(kH * kW), mse_map(kH * kW);
  kdloss::SsimOptions opt;  // kornia ssim_loss(student, teacher, window_size=11)
  kdloss::ssim_loss(s, t, kdloss::host_view(ssim_map.data(), shape), opt, kdloss::Reduction::none);
  kdloss::mse_loss(s, t, kdloss::host_view(mse_map.data(), shape), {kdloss::Reduction::none});
  float ssim = 0, mse = 0, ms = 0;
  kdloss::ssim_loss(s, t, kdloss::host_scalar(&ssim), opt);
  kdloss::mse_loss(s, t, kdloss::host_scalar(&mse));
  kdloss::MsSsimOptions ms_opt;
  ms_opt.window_size = 7;
  ms_opt.data_range = 1.0;
  kdloss::ms_ssim(s, t, kdloss::host_scalar(&ms), ms_opt);
  std::printf("%-26s %.6f\n%-26s %.6f\n%-26s %.6f\n", "ssim_loss (kornia, mean)", ssim, "mse_loss", mse,
              "ms_ssim (window 7)", ms);

  bool ok = true;
  ok &= write_png(dir + "/teacher.png", teacher, kH, kW);
  ok &= write_png(dir + "/student.png", student, kH, kW);
  ok &= write_png(dir + "/ssim_loss_map.png", ssim_map, kH, kW);
  ok &= write_png(dir + "/mse_map.png", mse_map, kH, kW);
  if (!ok) {
    std::fprintf(stderr, "kdloss_ssim_maps: could not write the PNG images to %s\n", dir.c_str());
    return 1;
  }
  std::printf("wrote %s/{teacher,student,ssim_loss_map,mse_map}.png\n", dir.c_str());
  return 0;
}
