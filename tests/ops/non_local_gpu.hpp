// Host-callable GPU run of ops::non_local (non_local_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// One block on the GPU. mode: 0 embedded_gaussian, 1 gaussian, 2 dot_product, 3 concatenation.
/// params, row-major, empty = absent: g_w [m, C], g_b, theta_w, theta_b, phi_w, phi_b, concat_w [2m],
/// out_w [C, m], out_b, bn_w, bn_b, running_mean, running_var.
struct NonLocalGpuCase {
  int mode = 0;
  std::int64_t B = 0, C = 0, H = 0, W = 0, m = 0, pool = 1;
  bool training = true, norm = true, use_scale = true, channels_last = false;
  std::vector<double> x, grad_z;
  std::vector<std::vector<double>> params;
};

/// forward (with a reserve) then backward (reading it) on a fresh stream and cuBLAS handle, in float
/// (dtype 0) or double (1). Returns z, grad_x, then the gradient of every present parameter in the order
/// of `params` (empty where the parameter is absent or has no gradient), NCHW row-major.
std::vector<std::vector<double>> non_local_on_gpu(int dtype, const NonLocalGpuCase& c);

}  // namespace kdloss_test
