// Host-callable GPU runs of ops::max_pool2d (max_pool_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// ops::max_pool2d with stride s over x [B, C, H, W] (contiguous NCHW, or channel-last views when
/// `channels_last`) on the GPU; dtype 0 float, 1 double, 2 half, 3 bfloat16. Runs a forward (filling a
/// device reserve when `with_reserve`), a separate backward (reading that reserve, or recomputing the
/// argmax from x), and a fused forward_backward. Returns y, grad_x of the backward and grad_x of the
/// forward_backward, concatenated row-major.
std::vector<double> max_pool_on_gpu(int dtype, bool channels_last, bool with_reserve, const std::vector<double>& x,
                                    const std::vector<double>& grad_y, std::int64_t B, std::int64_t C, std::int64_t H,
                                    std::int64_t W, std::int64_t s);

}  // namespace kdloss_test
