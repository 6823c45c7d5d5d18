// NaN and +-inf inputs in the SSIM family propagate as kornia / pytorch-msssim (PyTorch) propagate
// them: NaN in, NaN out, in values and gradients; no clamp or relu swallows a NaN. Also the
// normalisation nu on planes that are all NaN or all infinite (no read outside the plane).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/losses/ssim/ssim.hpp"
#include "losses/ssim/ssim_gpu.hpp"
#include "losses/ssim/ssim_test_util.hpp"

using namespace kdloss;
using kdloss_test::random_vector;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

/// [1, 2, 24, 24] inputs in [0, 1]; plane 0 gets `bad` at (12, 12).
const Dims kShape{1, 2, 24, 24};

struct Inputs {
  Dims d = kShape;  // (a member initializer list here trips GCC 12's -Wmaybe-uninitialized at -O3)
  std::vector<double> s, t;
  explicit Inputs(double bad, bool in_teacher = false) {
    const auto n = static_cast<std::size_t>(d.product());
    s = random_vector<double>(n, 41, 0.0, 1.0);
    t = random_vector<double>(n, 42, 0.0, 1.0);
    (in_teacher ? t : s)[12 * 24 + 12] = bad;
  }
  std::size_t at(int p, int r, int c) const { return static_cast<std::size_t>((p * 24 + r) * 24 + c); }
};

bool all_nan(const std::vector<double>& v, std::size_t from, std::size_t to) {
  for (std::size_t i = from; i < to; ++i)
    if (!std::isnan(v[i])) return false;
  return true;
}
bool all_finite(const std::vector<double>& v, std::size_t from, std::size_t to) {
  for (std::size_t i = from; i < to; ++i)
    if (!std::isfinite(v[i])) return false;
  return true;
}

}  // namespace

TEST_CASE("ssim_loss / ssim_map: NaN and +-inf inputs give NaN values and gradients near them, finite elsewhere") {
  for (double bad : {kNaN, kInf, -kInf})
    for (bool in_teacher : {false, true})
      for (int form = 0; form < 3; ++form) {
        CAPTURE(bad);
        CAPTURE(in_teacher);
        CAPTURE(form);
        Inputs in(bad, in_teacher);
        SsimOptions o;
        if (form == 1) o.clamp = false;
        // Contrast only (alpha = gamma = 0): the clamp of the variances at 0 must not turn NaN into 0.
        if (form == 2) o.alpha = 0, o.gamma = 0;
        const auto sv = host_view<const double>(in.s.data(), in.d), tv = host_view<const double>(in.t.data(), in.d);
        std::vector<double> map(in.s.size()), gs(in.s.size()), gt(in.s.size());
        ssim_map(sv, tv, host_view(map.data(), in.d), o);
        CHECK(std::isnan(map[in.at(0, 12, 12)]));
        CHECK(std::isnan(map[in.at(0, 7, 17)]));       // the window (11) still reaches (12, 12)
        CHECK(std::isfinite(map[in.at(0, 0, 0)]));
        CHECK(std::isfinite(map[in.at(0, 23, 6)]));
        CHECK(all_finite(map, in.at(1, 0, 0), map.size()));  // the other plane
        double loss = 0;
        ssim_loss(sv, tv, host_scalar(&loss), o);
        CHECK(std::isnan(loss));
        const double one = 1.0;
        ssim_loss_backward(sv, tv, host_scalar(&one), host_view(gs.data(), in.d), host_view(gt.data(), in.d), o);
        for (const auto* g : {&gs, &gt}) {
          CHECK(std::isnan((*g)[in.at(0, 12, 12)]));
          CHECK(std::isnan((*g)[in.at(0, 3, 21)]));    // read by outputs whose window holds (12, 12)
          CHECK(std::isfinite((*g)[in.at(0, 0, 0)]));  // read by no such output
          CHECK(all_finite(*g, in.at(1, 0, 0), g->size()));
        }
        // forward_backward: the same NaN value and the same pattern.
        double loss_fb = 0;
        std::vector<double> gs_fb(in.s.size());
        ssim_loss_forward_backward(sv, tv, host_scalar(&loss_fb), host_view(gs_fb.data(), in.d), o);
        CHECK(std::isnan(loss_fb));
        for (std::size_t i = 0; i < gs.size(); ++i) CHECK(std::isnan(gs_fb[i]) == std::isnan(gs[i]));
      }
}

TEST_CASE("ssim normalize (nu): one NaN makes its whole plane NaN; all-NaN / all-inf planes stay in bounds") {
  // (v - min) / (max - min) in PyTorch: min and max are NaN when the plane holds one, so is every nu(v).
  for (double bad : {kNaN, kInf, -kInf}) {
    CAPTURE(bad);
    Inputs in(bad);
    SsimOptions o;
    o.normalize = true;
    const auto sv = host_view<const double>(in.s.data(), in.d), tv = host_view<const double>(in.t.data(), in.d);
    std::vector<double> map(in.s.size()), gs(in.s.size(), 0.0);
    ssim_map(sv, tv, host_view(map.data(), in.d), o);
    if (std::isnan(bad)) {
      CHECK(all_nan(map, 0, in.at(1, 0, 0)));
    } else {
      // +inf: max - min = inf, nu = 0 at finite pixels and NaN at the inf; -inf: -min / range = NaN everywhere.
      CHECK(std::isnan(map[in.at(0, 12, 12)]));
      if (bad < 0) CHECK(all_nan(map, 0, in.at(1, 0, 0)));
    }
    CHECK(all_finite(map, in.at(1, 0, 0), map.size()));
    std::vector<double> up(map.size(), 1.0);
    ssim_map_backward(sv, tv, host_view<const double>(up.data(), in.d), host_view(gs.data(), in.d), o);
    CHECK(std::isnan(gs[in.at(0, 12, 12)]));
    CHECK(all_finite(gs, in.at(1, 0, 0), gs.size()));
  }
  // Planes that are entirely NaN or entirely +-inf (the min/max pass once indexed one row past such
  // a plane): NaN values and gradients in that plane, the other plane untouched by it.
  for (double fill : {kNaN, kInf, -kInf}) {
    CAPTURE(fill);
    Inputs in(0.5);
    for (std::size_t i = 0; i < in.at(1, 0, 0); ++i) in.s[i] = fill;
    SsimOptions o;
    o.normalize = true;
    const auto sv = host_view<const double>(in.s.data(), in.d), tv = host_view<const double>(in.t.data(), in.d);
    std::vector<double> map(in.s.size()), gs(in.s.size(), 0.0), gt(in.s.size(), 0.0);
    ssim_map(sv, tv, host_view(map.data(), in.d), o);
    CHECK(all_nan(map, 0, in.at(1, 0, 0)));
    CHECK(all_finite(map, in.at(1, 0, 0), map.size()));
    std::vector<double> up(map.size(), 1.0);
    ssim_map_backward(sv, tv, host_view<const double>(up.data(), in.d), host_view(gs.data(), in.d),
                      host_view(gt.data(), in.d), o);
    CHECK(all_nan(gs, 0, in.at(1, 0, 0)));
    CHECK(all_finite(gs, in.at(1, 0, 0), gs.size()));
    CHECK(all_finite(gt, in.at(1, 0, 0), gt.size()));
  }
}

TEST_CASE("ssim_index / ms_ssim / ms_ssim_l1_loss: a NaN or inf channel is NaN, the others are not") {
  for (double bad : {kNaN, kInf}) {
    CAPTURE(bad);
    Inputs in(bad);
    MsSsimOptions o;
    o.data_range = 1.0;
    o.window_size = 3;
    o.weights = {0.5, 0.3, 0.2};
    const auto sv = host_view<const double>(in.s.data(), in.d), tv = host_view<const double>(in.t.data(), in.d);
    std::vector<double> per(2), gs(in.s.size());
    const Dims pd{1, 2};
    ssim_index(sv, tv, host_view(per.data(), pd), o, ChannelReduction::none);
    CHECK(std::isnan(per[0]));
    CHECK(std::isfinite(per[1]));
    // pytorch-msssim's relu(cs) keeps a NaN (torch.relu(nan) is nan): the product is NaN, not 0.
    ms_ssim(sv, tv, host_view(per.data(), pd), o, ChannelReduction::none);
    CHECK(std::isnan(per[0]));
    CHECK(std::isfinite(per[1]));
    // Its gradient: d prod / d cs_i is NaN, and a level's mean spreads it over the whole plane.
    std::vector<double> up{1.0, 1.0};
    ms_ssim_backward(sv, tv, host_view<const double>(up.data(), pd), host_view(gs.data(), in.d), o,
                     ChannelReduction::none);
    CHECK(all_nan(gs, 0, in.at(1, 0, 0)));
    CHECK(all_finite(gs, in.at(1, 0, 0), gs.size()));
    o.nonnegative_ssim = true;
    ssim_index(sv, tv, host_view(per.data(), pd), o, ChannelReduction::none);
    CHECK(std::isnan(per[0]));
    double loss = 0;
    MsSsimL1Options mo;
    mo.ms_ssim = o;
    ms_ssim_l1_loss(sv, tv, host_scalar(&loss), mo);
    CHECK(std::isnan(loss));
  }
}

KDLOSS_GPU_TEST("ssim normalize on the GPU: all-NaN / all-inf planes give what the CPU gives (NaN, in bounds)") {
#if KDLOSS_TEST_CUDA
  for (double fill : {kNaN, kInf, -kInf}) {
    CAPTURE(fill);
    Inputs in(0.5);
    for (std::size_t i = 0; i < in.at(1, 0, 0); ++i) in.s[i] = fill;
    kdloss_test::GpuSsimCall call;
    call.kind = kdloss_test::GpuSsimKind::map;
    call.dtype = 1;
    call.shape = in.d;
    call.ssim.normalize = true;
    call.teacher_grad = true;
    const auto r = kdloss_test::ssim_on_gpu(call, in.s, in.t);
    REQUIRE(r.value.size() == in.s.size());
    CHECK(all_nan(r.value, 0, in.at(1, 0, 0)));
    CHECK(all_finite(r.value, in.at(1, 0, 0), r.value.size()));
    CHECK(all_nan(r.grad_s, 0, in.at(1, 0, 0)));
    CHECK(all_finite(r.grad_s, in.at(1, 0, 0), r.grad_s.size()));
  }
#endif
}
