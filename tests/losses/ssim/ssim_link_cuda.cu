// Link check: a second CUDA translation unit that includes the SSIM family and the Gaussian filter
// op, as ssim_cuda.cu does. Every kernel those headers define must be a template (or otherwise
// ODR-safe): a plain __global__ function defined in a header would be defined in both objects and
// the test binary would fail to link with "multiple definition".
#include "kdloss/losses/ssim/ssim.hpp"
#include "kdloss/ops/filter.hpp"

namespace kdloss_test {
// Instantiates a pass and the per-plane kernels here too, so both objects hold their symbols.
std::size_t ssim_link_check_bytes() {
  return kdloss::ssim_loss_workspace_bytes(kdloss::cuda_view<const float>(nullptr, {1, 1, 16, 16})) +
         kdloss::ms_ssim_workspace_bytes(kdloss::cuda_view<const float>(nullptr, {1, 1, 16, 16}));
}
}  // namespace kdloss_test

template void kdloss::ssim::ssim_loss<float>(const kdloss::ssim::SsimLossArgs<float>&, kdloss::Mode,
                                             const kdloss::Exec&);
template void kdloss::ssim::ms_ssim_l1_loss<float>(const kdloss::ssim::MsSsimL1LossArgs<float>&, kdloss::Mode,
                                                   const kdloss::Exec&);
