// pytorch-msssim's ssim and ms_ssim, and the thesis' l1 + MS-SSIM mixture: values against the naive
// double reference (short axes unsmoothed, the average-pool pyramid, relu), gradients against
// central differences, the conventions at negative cs, bad input, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kdloss/losses/ssim/ms_ssim.hpp"
#include "kdloss/losses/ssim/ssim.hpp"
#include "losses/ssim/ssim_gpu.hpp"
#include "losses/ssim/ssim_test_util.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;
using namespace kdloss_test::ssim;

namespace {

const ChannelReduction kChannel[] = {ChannelReduction::mean, ChannelReduction::per_image, ChannelReduction::none};

const char* name(ChannelReduction r) {
  return r == ChannelReduction::mean ? "mean" : r == ChannelReduction::per_image ? "per_image" : "none";
}

/// Reduces per-channel values [B*C] as the option asks.
std::vector<double> reduce(const std::vector<double>& v, const Dims& d, ChannelReduction r) {
  if (r == ChannelReduction::none) return v;
  if (r == ChannelReduction::mean) return {ref::mean(v)};
  std::vector<double> out(d[0], 0.0);
  for (std::int64_t b = 0; b < d[0]; ++b)
    for (std::int64_t c = 0; c < d[1]; ++c) out[b] += v[b * d[1] + c] / static_cast<double>(d[1]);
  return out;
}
Dims out_dims(const Dims& d, ChannelReduction r) {
  return r == ChannelReduction::mean ? Dims{} : r == ChannelReduction::per_image ? Dims{d[0]} : Dims{d[0], d[1]};
}

std::vector<double> ref_index(const std::vector<double>& s, const std::vector<double>& t, const Dims& d,
                              const MsSsimOptions& o, ChannelReduction r) {
  return reduce(ref::msssim_ssim_per_channel(s, t, ref_shape(d), o.window_size, o.sigma, o.data_range,
                                             o.nonnegative_ssim, o.normalize),
                d, r);
}
std::vector<double> ref_ms(const std::vector<double>& s, const std::vector<double>& t, const Dims& d,
                           const MsSsimOptions& o, ChannelReduction r) {
  return reduce(
      ref::ms_ssim_per_channel(s, t, ref_shape(d), o.window_size, o.sigma, o.data_range, o.weights, o.normalize), d, r);
}
double ref_mix(const std::vector<double>& s, const std::vector<double>& t, const Dims& d, const MsSsimL1Options& o) {
  std::vector<double> a = s, b = t;
  if (o.ms_ssim.normalize) a = ref::nu(s, ref_shape(d)), b = ref::nu(t, ref_shape(d));
  double l1 = 0;
  for (std::size_t i = 0; i < a.size(); ++i) l1 += std::fabs(a[i] - b[i]);
  l1 /= static_cast<double>(a.size());
  return o.l1_weight * l1 + (1 - o.l1_weight) * (1 - ref_ms(s, t, d, o.ms_ssim, ChannelReduction::mean)[0]);
}

void make_pair(const Dims& d, std::uint32_t seed, std::vector<double>& s, std::vector<double>& t, double scale = 1.0) {
  const auto n = static_cast<std::size_t>(d.product());
  s = random_vector<double>(n, seed, 0.0, scale);
  t = random_vector<double>(n, seed + 1, 0.0, scale);
  for (std::size_t i = 0; i < n; ++i) t[i] = 0.7 * s[i] + 0.3 * t[i];
}

}  // namespace

TEST_CASE("ssim_index matches pytorch-msssim's ssim (reductions, nonnegative, short axes, data_range)") {
  const Dims shapes[] = {Dims{2, 3, 17, 19}, Dims{2, 2, 7, 30}, Dims{1, 2, 5, 4}};
  for (const Dims& d : shapes)
    for (ChannelReduction r : kChannel)
      for (bool nonneg : {false, true}) {
        CAPTURE(d.str());
        const std::string red_name = name(r);
        CAPTURE(red_name);
        CAPTURE(nonneg);
        std::vector<double> s, t;
        make_pair(d, 1, s, t, 255.0);  // 8-bit range with the default data_range 255
        for (std::size_t i = 0; i < s.size(); i += 3) t[i] = 255.0 - t[i];  // some channels anti-correlated
        MsSsimOptions o;
        o.nonnegative_ssim = nonneg;
        const auto want = ref_index(s, t, d, o, r);
        std::vector<double> got(want.size());
        ssim_index(host_view(s.data(), d), host_view(t.data(), d),
                   View<double>(got.data(), out_dims(d, r), contiguous_strides(out_dims(d, r)), Device::host()), o, r);
        check_close(got, want, 1e-12, 1e-14);
      }
}

TEST_CASE("ms_ssim matches pytorch-msssim's ms_ssim (pyramid with odd sizes, short levels, weights)") {
  const Dims shapes[] = {Dims{2, 2, 37, 41}, Dims{1, 3, 50, 26}, Dims{2, 1, 9, 12}};
  for (const Dims& d : shapes)
    for (int window : {3, 5, 7})
      for (ChannelReduction r : kChannel) {
        CAPTURE(d.str());
        CAPTURE(window);
        const std::string red_name = name(r);
        CAPTURE(red_name);
        std::vector<double> s, t;
        make_pair(d, 2 + window, s, t);
        MsSsimOptions o;
        o.window_size = window;
        o.data_range = 1.0;
        const auto want = ref_ms(s, t, d, o, r);
        std::vector<double> got(want.size());
        std::vector<float> gotf(want.size());
        const std::vector<float> sf(s.begin(), s.end()), tf(t.begin(), t.end());
        const Dims od = out_dims(d, r);
        ms_ssim(host_view(s.data(), d), host_view(t.data(), d), View<double>(got.data(), od, contiguous_strides(od), Device::host()),
                o, r);
        ms_ssim(host_view(sf.data(), d), host_view(tf.data(), d), View<float>(gotf.data(), od, contiguous_strides(od), Device::host()),
                o, r);
        check_close(got, want, 1e-12, 1e-14, "double");
        check_close(gotf, want, 1e-5, 1e-6, "float");
      }
  // Three levels with custom weights and nu.
  const Dims d{1, 2, 23, 31};
  std::vector<double> s, t;
  make_pair(d, 20, s, t, 4.0);
  MsSsimOptions o;
  o.window_size = 5;
  o.data_range = 1.0;
  o.weights = {0.2, 0.3, 0.5};
  o.normalize = true;
  double got = 0;
  ms_ssim(host_view(s.data(), d), host_view(t.data(), d), host_scalar(&got), o);
  CHECK(got == doctest::Approx(ref_ms(s, t, d, o, ChannelReduction::mean)[0]).epsilon(1e-12));
}

TEST_CASE("ssim_index and ms_ssim gradients equal central differences (double)") {
  const Dims d{2, 2, 13, 11};
  std::vector<double> s, t;
  make_pair(d, 30, s, t);
  const auto at = probe_positions(d);
  for (ChannelReduction r : kChannel)
    for (int variant = 0; variant < 4; ++variant) {
      MsSsimOptions o;
      o.window_size = 5;
      o.data_range = 1.0;
      o.nonnegative_ssim = variant == 1;
      o.normalize = variant == 2;
      if (variant == 3) o.weights = {0.5, 0.5};
      const std::string red_name = name(r);
        CAPTURE(red_name);
      CAPTURE(variant);
      const Dims od = out_dims(d, r);
      const auto up = r == ChannelReduction::mean ? std::vector<double>{0.8}
                                                  : random_vector<double>(static_cast<std::size_t>(od.product()), 31);
      const View<const double> upv(up.data(), od, contiguous_strides(od), Device::host());
      std::vector<double> gs(s.size()), gt(s.size());
      ssim_index_backward(host_view(s.data(), d), host_view(t.data(), d), upv, host_view(gs.data(), d),
                          host_view(gt.data(), d), o, r);
      check_close(pick(gs, at), numeric_at(s, at, [&](const std::vector<double>& x) { return weighted(ref_index(x, t, d, o, r), up); }),
                  1e-6, 1e-9, "ssim_index grad_x");
      check_close(pick(gt, at), numeric_at(t, at, [&](const std::vector<double>& y) { return weighted(ref_index(s, y, d, o, r), up); }),
                  1e-6, 1e-9, "ssim_index grad_y");
      ms_ssim_backward(host_view(s.data(), d), host_view(t.data(), d), upv, host_view(gs.data(), d),
                       host_view(gt.data(), d), o, r);
      check_close(pick(gs, at), numeric_at(s, at, [&](const std::vector<double>& x) { return weighted(ref_ms(x, t, d, o, r), up); }),
                  1e-6, 1e-9, "ms_ssim grad_x");
      check_close(pick(gt, at), numeric_at(t, at, [&](const std::vector<double>& y) { return weighted(ref_ms(s, y, d, o, r), up); }),
                  1e-6, 1e-9, "ms_ssim grad_y");
    }
}

TEST_CASE("ms_ssim_l1_loss is 0.15 l1 + 0.85 (1 - MS-SSIM) by default; value, gradient, fused") {
  const Dims d{2, 3, 21, 18};
  std::vector<double> s, t;
  make_pair(d, 40, s, t);
  for (double w : {0.15, 0.0, 1.0})
    for (bool normalize : {false, true}) {
      MsSsimL1Options o;
      o.l1_weight = w;
      o.ms_ssim.window_size = 3;
      o.ms_ssim.normalize = normalize;
      CAPTURE(w);
      CAPTURE(normalize);
      double got = 0, fused = 0;
      ms_ssim_l1_loss(host_view(s.data(), d), host_view(t.data(), d), host_scalar(&got), o);
      CHECK(got == doctest::Approx(ref_mix(s, t, d, o)).epsilon(1e-12));
      const double up = 1.3;
      std::vector<double> g(s.size()), g2(s.size());
      ms_ssim_l1_loss_backward(host_view(s.data(), d), host_view(t.data(), d), host_scalar<const double>(&up),
                               host_view(g.data(), d), o);
      const auto at = probe_positions(d);
      check_close(pick(g, at), numeric_at(s, at, [&](const std::vector<double>& x) { return up * ref_mix(x, t, d, o); }),
                  1e-6, 1e-9, "grad");
      ms_ssim_l1_loss_forward_backward(host_view(s.data(), d), host_view(t.data(), d), host_scalar(&fused),
                                       host_view(g2.data(), d), o);
      CHECK(fused == doctest::Approx(got).epsilon(1e-14));
      for (auto& v : g2) v *= up;
      // Same sums in another order (the upstream scales the weights before the adjoint instead of after).
      check_close(g2, g, 1e-9, 1e-16, "fused grad");
    }
  MsSsimL1Options def;
  CHECK(def.l1_weight == 0.15);
  CHECK(def.ms_ssim.data_range == 1.0);
}

TEST_CASE("negative cs and ssim: relu'd levels give MS-SSIM 0 with a zero (not NaN) gradient") {
  // t = 1 - s: cov = -var at every level, so cs ~ -1 < 0, relu(cs) = 0 and ms = 0 per channel.
  // pytorch-msssim's backward there is 0^(w - 1) * 0 = inf * 0; kdloss's convention is 0.
  const Dims d{1, 2, 24, 20};
  const auto n = static_cast<std::size_t>(d.product());
  const auto s = random_vector<double>(n, 50, 0, 1);
  std::vector<double> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = 1.0 - s[i];
  MsSsimOptions o;
  o.window_size = 5;
  o.data_range = 1.0;
  double v = -1;
  std::vector<double> g(n, -1.0);
  ms_ssim_forward_backward(host_view(s.data(), d), host_view(t.data(), d), host_scalar(&v), host_view(g.data(), d), o);
  CHECK(v == 0.0);
  for (double e : g) REQUIRE(e == 0.0);
  // ssim_index without the relu stays negative with a finite gradient; with it, 0 and 0.
  ssim_index_forward_backward(host_view(s.data(), d), host_view(t.data(), d), host_scalar(&v), host_view(g.data(), d), o);
  CHECK(v < 0);
  CHECK(kdloss_test::all_finite(g));
  o.nonnegative_ssim = true;
  ssim_index_forward_backward(host_view(s.data(), d), host_view(t.data(), d), host_scalar(&v), host_view(g.data(), d), o);
  CHECK(v == 0.0);
  for (double e : g) REQUIRE(e == 0.0);
  // Constant inputs: var = cov = 0, cs = C2 / C2 = 1; finite everywhere.
  const std::vector<double> flat(n, 0.25);
  ms_ssim_forward_backward(host_view(flat.data(), d), host_view(flat.data(), d), host_scalar(&v), host_view(g.data(), d), o);
  CHECK(v == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(kdloss_test::all_finite(g));
}

TEST_CASE("an empty batch reduces to 0 (PyTorch's mean over nothing is NaN)") {
  const Dims d{0, 3, 12, 12};
  float v = -1, loss = -1;
  ms_ssim(host_view(static_cast<const float*>(nullptr), d), host_view(static_cast<const float*>(nullptr), d),
          host_scalar(&v));
  CHECK(v == 0.0f);
  ms_ssim_l1_loss(host_view(static_cast<const float*>(nullptr), d), host_view(static_cast<const float*>(nullptr), d),
                  host_scalar(&loss));
  CHECK(loss == doctest::Approx(0.85f));  // (1 - w)(1 - 0) + w * 0: the MS-SSIM term of nothing is 0
  ssim_loss(host_view(static_cast<const float*>(nullptr), d), host_view(static_cast<const float*>(nullptr), d),
            host_scalar(&loss));
  CHECK(loss == 0.0f);
}

TEST_CASE("ssim_index / ms_ssim: bad input throws a clear error and leaves outputs untouched") {
  const Dims d{2, 3, 16, 16};
  const auto n = static_cast<std::size_t>(d.product());
  const auto s = random_vector<float>(n, 60, 0, 1), t = random_vector<float>(n, 61, 0, 1);
  std::vector<float> outs(6, 42.0f), g(n, 42.0f);
  auto sv = host_view(s.data(), d);
  auto tv = host_view(t.data(), d);
  auto check = [&](auto&& call, const std::string& needle) {
    throws_with(call, needle);
    for (float v : outs) REQUIRE(v == 42.0f);
    for (float v : g) REQUIRE(v == 42.0f);
  };
  MsSsimOptions bad;
  bad.weights = {};
  check([&] { ms_ssim(sv, tv, host_scalar(outs.data()), bad); }, "kdloss::ms_ssim: option 'weights' must hold 1 to 8");
  bad.weights = {0.5, -0.5};
  check([&] { ms_ssim(sv, tv, host_scalar(outs.data()), bad); }, "option 'weights' must be finite and >= 0");
  MsSsimOptions range;
  range.data_range = 0;
  check([&] { ssim_index(sv, tv, host_scalar(outs.data()), range); }, "option 'data_range' must be finite and > 0");
  MsSsimOptions even;
  even.window_size = 8;
  check([&] { ssim_index(sv, tv, host_scalar(outs.data()), even); }, "'window_size' must be odd but is 8");
  check([&] { ssim_index(sv, tv, host_view(outs.data(), {3}), {}, ChannelReduction::per_image); },
        "argument 'out' has shape [3] but expected [2]");
  check([&] { ms_ssim(sv, tv, host_view(outs.data(), {2, 2}), {}, ChannelReduction::none); },
        "argument 'out' has shape [2, 2] but expected [2, 3]");
  const float one = 1.0f;
  check([&] { ms_ssim_backward(sv, tv, host_scalar(&one), host_view(g.data(), {2, 3, 16, 15})); },
        "argument 'grad_student' has shape [2, 3, 16, 15]");
  MsSsimL1Options mix;
  mix.l1_weight = 1.5;
  check([&] { ms_ssim_l1_loss(sv, tv, host_scalar(outs.data()), mix); }, "option 'l1_weight' must be in [0, 1]");
  CHECK(ms_ssim_workspace_bytes(cuda_view(s.data(), d)) > ssim_index_workspace_bytes(cuda_view(s.data(), d)));
}

KDLOSS_GPU_TEST("ssim_index / ms_ssim / mixture: GPU agrees with CPU (reductions, dtypes, teacher, nu)") {
#if KDLOSS_TEST_CUDA
  const Dims d{2, 6, 45, 38};
  std::vector<double> s, t;
  make_pair(d, 70, s, t);
  for (auto kind : {kdloss_test::GpuSsimKind::index, kdloss_test::GpuSsimKind::ms_ssim, kdloss_test::GpuSsimKind::mixture})
    for (ChannelReduction r : kChannel)
      for (bool fused : {false, true}) {
        if (kind == kdloss_test::GpuSsimKind::mixture && r != ChannelReduction::mean) continue;
        CAPTURE(int(kind));
        const std::string red_name = name(r);
        CAPTURE(red_name);
        CAPTURE(fused);
        kdloss_test::GpuSsimCall call;
        call.kind = kind;
        call.shape = d;
        call.ms.window_size = 5;
        call.ms.data_range = 1.0;
        call.ms.nonnegative_ssim = r == ChannelReduction::per_image;
        call.ms.normalize = r == ChannelReduction::none;
        call.channel = r;
        call.fused = fused;
        call.teacher_grad = !fused && kind != kdloss_test::GpuSsimKind::mixture;
        call.channel_last = r == ChannelReduction::mean;
        const Dims od = kind == kdloss_test::GpuSsimKind::mixture ? Dims{} : out_dims(d, r);
        MsSsimL1Options mix;
        mix.ms_ssim = call.ms;
        // The CPU double run (value, grad_student, grad_teacher) on inputs s and t.
        auto cpu = [&](const std::vector<double>& si, const std::vector<double>& ti) {
          std::vector<double> value(static_cast<std::size_t>(od.product())), gs(si.size()), gt(si.size());
          const std::vector<double> ones(value.size(), 1.0);
          const View<double> ov(value.data(), od, contiguous_strides(od), Device::host());
          const View<const double> upv(ones.data(), od, contiguous_strides(od), Device::host());
          if (kind == kdloss_test::GpuSsimKind::index) {
            ssim_index(host_view(si.data(), d), host_view(ti.data(), d), ov, call.ms, r);
            ssim_index_backward(host_view(si.data(), d), host_view(ti.data(), d), upv, host_view(gs.data(), d),
                                host_view(gt.data(), d), call.ms, r);
          } else if (kind == kdloss_test::GpuSsimKind::ms_ssim) {
            ms_ssim(host_view(si.data(), d), host_view(ti.data(), d), ov, call.ms, r);
            ms_ssim_backward(host_view(si.data(), d), host_view(ti.data(), d), upv, host_view(gs.data(), d),
                             host_view(gt.data(), d), call.ms, r);
          } else {
            ms_ssim_l1_loss_forward_backward(host_view(si.data(), d), host_view(ti.data(), d), ov,
                                             host_view(gs.data(), d), mix);
          }
          return std::vector<std::vector<double>>{value, gs, gt};
        };
        const auto want = cpu(s, t);
        call.dtype = 1;
        auto g64 = kdloss_test::ssim_on_gpu(call, s, t);
        check_close(g64.value, want[0], 1e-12, 1e-14, "double value");
        check_close(g64.grad_s, want[1], 1e-10, 1e-14, "double grad_student");
        if (call.teacher_grad) check_close(g64.grad_t, want[2], 1e-10, 1e-14, "double grad_teacher");
        // float and half / bfloat16 (values and gradients): the reference is the CPU double run on the
        // inputs as the dtype holds them. The GPU accumulates in float; a gradient element sums window^2
        // products per level of partials that cancel (and, with nu, the planes' min/max corrections), so
        // its error is relative to the largest gradient (1e-4 of it), not to itself; half / bf16 outputs
        // add the format's rounding (2^-11, 2^-8) twice (partials stored per level, then the result).
        const auto max_abs = [](const std::vector<double>& v) {
          double m = 0;
          for (double x : v) m = std::max(m, std::fabs(x));
          return m;
        };
        for (int dtype : {0, 2, 3}) {
          CAPTURE(dtype);
          const auto want_r = cpu(kdloss_test::as_gpu_dtype(dtype, s), kdloss_test::as_gpu_dtype(dtype, t));
          call.dtype = dtype;
          const auto got = kdloss_test::ssim_on_gpu(call, s, t);
          const double rel = dtype == 0 ? 1e-5 : dtype == 2 ? 1e-3 : 8e-3;
          check_close(got.value, want_r[0], rel, 1e-6 * max_abs(want_r[0]), "value");
          check_close(got.grad_s, want_r[1], std::max(rel, 1e-4), 1e-4 * max_abs(want_r[1]), "grad_student");
          if (call.teacher_grad)
            check_close(got.grad_t, want_r[2], std::max(rel, 1e-4), 1e-4 * max_abs(want_r[2]), "grad_teacher");
        }
      }
#endif
}

TEST_CASE("ms entry shape: Args, _check, _workspace_bytes, run per Mode; the mixture's teacher gradient") {
  const Dims d{2, 2, 21, 18};
  std::vector<double> s, t;
  make_pair(d, 44, s, t);
  const auto sv = host_view<const double>(s.data(), d), tv = host_view<const double>(t.data(), d);
  MsSsimOptions o;
  o.window_size = 3;
  o.data_range = 1.0;
  // ms_ssim(args, forward_backward) == the wrapper.
  double want = 0, got = 0;
  std::vector<double> want_g(s.size()), g(s.size());
  kdloss::ms_ssim_forward_backward(sv, tv, host_scalar(&want), host_view(want_g.data(), d), o);
  ssim::MsSsimArgs<double> m;
  m.student = sv;
  m.teacher = tv;
  m.out = host_scalar(&got);
  m.grad_student = host_view(g.data(), d);
  m.options = o;
  CHECK(ssim::ms_ssim_workspace_bytes(m) == kdloss::ms_ssim_workspace_bytes(sv, o));
  ssim::ms_ssim_check(m, Mode::forward_backward);
  ssim::ms_ssim(m, Mode::forward_backward);
  CHECK(got == want);
  check_close(g, want_g, 0, 0, "ms_ssim gradient");
  // ssim_index(args): per-image values.
  ssim::SsimIndexArgs<double> x;
  std::vector<double> per(2), want_per(2);
  x.student = sv;
  x.teacher = tv;
  x.out = host_view(per.data(), {2});
  x.options = o;
  x.reduction = ChannelReduction::per_image;
  kdloss::ssim_index(sv, tv, host_view(want_per.data(), {2}), o, ChannelReduction::per_image);
  CHECK(ssim::ssim_index_workspace_bytes(x) == kdloss::ssim_index_workspace_bytes(sv, o));
  ssim::ssim_index(x, Mode::forward);
  check_close(per, want_per, 0, 0, "ssim_index per_image");
  x.out = host_scalar(&got);
  throws_with([&] { ssim::ssim_index_check(x, Mode::forward); }, "kdloss::ssim_index_check: argument 'out'");
  // The mixture through its Args also gives d loss / d teacher (central differences in double).
  ssim::MsSsimL1LossArgs<double> l;
  std::vector<double> gt(s.size());
  l.student = sv;
  l.teacher = tv;
  l.out = host_scalar(&got);
  l.grad_teacher = host_view(gt.data(), d);
  l.options.ms_ssim = o;
  CHECK(ssim::ms_ssim_l1_loss_workspace_bytes(l) == kdloss::ms_ssim_l1_loss_workspace_bytes(sv, l.options));
  ssim::ms_ssim_l1_loss(l, Mode::forward_backward);
  const auto at = probe_positions(d);
  const auto want_gt = numeric_at(t, at, [&](const std::vector<double>& y) {
    double v = 0;
    kdloss::ms_ssim_l1_loss(sv, host_view<const double>(y.data(), d), host_scalar(&v), l.options);
    return v;
  });
  check_close(pick(gt, at), want_gt, 1e-6, 1e-9, "mixture grad_teacher");
}
