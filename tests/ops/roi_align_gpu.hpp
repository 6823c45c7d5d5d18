// Host-callable GPU runs of ops::roi_align (roi_align_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// One GPU configuration of ops::roi_align over x [B, C, H, W] (contiguous NCHW, or channel-last when
/// `channels_last`) and boxes given as [K, 5] rows (image-grouped; sent as [K, 4] + offsets when
/// `ragged`). dtype 0 float, 1 double, 2 half, 3 bfloat16.
struct RoiAlignGpuCase {
  int dtype = 0;
  bool channels_last = false, ragged = false, aligned = false, max_mode = false;
  std::int64_t B = 1, C = 1, H = 1, W = 1, ph = 1, pw = 1, sampling = -1;
  double scale = 1.0;
};

/// Runs forward, backward twice and forward_backward; returns y, then grad_x of the first backward,
/// then grad_x of the second (the bit-identity check), then y and grad_x of the forward_backward,
/// concatenated row-major, as the device's dtype holds them (converted to double).
std::vector<double> roi_align_on_gpu(const RoiAlignGpuCase& c, const std::vector<double>& x,
                                     const std::vector<double>& boxes5, const std::vector<double>& grad_y);

}  // namespace kdloss_test
