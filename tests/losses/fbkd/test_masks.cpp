// FBKD attention maps and masks: both forms against the reference, layouts, per-image behaviour,
// degenerate inputs, bad inputs, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "kdloss/losses/fbkd/masks.hpp"
#include "losses/fbkd/fbkd_gpu.hpp"
#include "losses/fbkd/fbkd_test_util.hpp"

using namespace kdloss;
using fbkd_test::Vec;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

Vec ref_masks(const Vec& s, const Vec& t, const Dims& shape, const fbkd::MaskOptions& o) {
  kdloss_ref::fbkd::Level l;
  l.shape = fbkd_test::ref_shape(shape);
  l.s = s;
  l.t = t;
  kdloss_ref::fbkd::Config c;
  c.paper_mask = o.form == fbkd::MaskForm::paper;
  c.t_s = o.spatial_temperature;
  c.t_c = o.channel_temperature;
  const auto m = kdloss_ref::fbkd::masks_of(l, c);
  Vec r = m.ms;
  r.insert(r.end(), m.mc.begin(), m.mc.end());
  return r;
}

template <class T>
Vec lib_masks(const Vec& s, const Vec& t, const Dims& shape, const fbkd::MaskOptions& o) {
  const std::vector<T> sf(s.begin(), s.end()), tf(t.begin(), t.end());
  std::vector<T> ms(static_cast<std::size_t>(shape[0] * shape[2] * shape[3]), T(-1)),
      mc(static_cast<std::size_t>(shape[0] * shape[1]), T(-1));
  fbkd::attention_masks(host_view(sf.data(), shape), host_view(tf.data(), shape),
                        host_view(ms.data(), {shape[0], 1, shape[2], shape[3]}),
                        host_view(mc.data(), {shape[0], shape[1]}), o);
  Vec r(ms.begin(), ms.end());
  r.insert(r.end(), mc.begin(), mc.end());
  return r;
}

const fbkd::MaskOptions kOptions[] = {{fbkd::MaskForm::code, 0.5, 0.5},
                                      {fbkd::MaskForm::code, 0.1, 0.3},
                                      {fbkd::MaskForm::paper, 0.1, 0.1},
                                      {fbkd::MaskForm::paper, 0.5, 2.0}};

}  // namespace

TEST_CASE("fbkd masks: both forms match the double reference (float and double)") {
  for (Dims shape : {Dims{2, 5, 4, 6}, Dims{3, 1, 3, 3}, Dims{2, 4, 1, 1}, Dims{1, 1, 1, 1}}) {
    const auto n = static_cast<std::size_t>(shape.product());
    const auto s = random_vector<double>(n, 1, -2, 2), t = random_vector<double>(n, 2, -2, 2);
    for (const auto& o : kOptions) {
      CAPTURE(shape.str());
      CAPTURE(fbkd::to_string(o.form));
      CAPTURE(o.spatial_temperature);
      const auto want = ref_masks(s, t, shape, o);
      check_close(lib_masks<double>(s, t, shape, o), want, 1e-13, 1e-15, "double");
      check_close(lib_masks<float>(s, t, shape, o), want, 1e-5, 1e-6, "float");
      // Each mask averages to 1 over its positions / channels (HW * softmax, C * softmax).
      const auto got = lib_masks<double>(s, t, shape, o);
      const std::int64_t hw = shape[2] * shape[3];
      for (std::int64_t b = 0; b < shape[0]; ++b) {
        double sum_s = 0, sum_c = 0;
        for (std::int64_t j = 0; j < hw; ++j) sum_s += got[b * hw + j];
        for (std::int64_t c = 0; c < shape[1]; ++c) sum_c += got[shape[0] * hw + b * shape[1] + c];
        CHECK(sum_s == doctest::Approx(static_cast<double>(hw)).epsilon(1e-12));
        CHECK(sum_c == doctest::Approx(static_cast<double>(shape[1])).epsilon(1e-12));
      }
    }
  }
}

TEST_CASE("fbkd masks: the paper and code forms differ, and the code form is symmetric in S and T") {
  const Dims shape{2, 6, 5, 4};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 3, -2, 2), t = random_vector<double>(n, 4, -2, 2);
  const auto code = lib_masks<double>(s, t, shape, {fbkd::MaskForm::code, 0.5, 0.5});
  const auto paper = lib_masks<double>(s, t, shape, {fbkd::MaskForm::paper, 0.5, 0.5});
  double diff = 0;
  for (std::size_t i = 0; i < code.size(); ++i) diff = std::max(diff, std::fabs(code[i] - paper[i]));
  CHECK(diff > 1e-3);
  for (auto form : {fbkd::MaskForm::code, fbkd::MaskForm::paper})
    check_close(lib_masks<double>(t, s, shape, {form, 0.5, 0.5}), lib_masks<double>(s, t, shape, {form, 0.5, 0.5}),
                1e-14, 1e-15, "swapped");
}

TEST_CASE("fbkd masks: per image (batch slices give the same masks), layouts, and optional outputs") {
  const Dims shape{3, 4, 5, 6};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 5), t = random_vector<double>(n, 6);
  const fbkd::MaskOptions o{fbkd::MaskForm::code, 0.3, 0.7};
  const auto all = lib_masks<double>(s, t, shape, o);
  const std::int64_t hw = 30, c = 4;
  // Image 1 alone, through batch-sliced views.
  Vec ms1(static_cast<std::size_t>(hw)), mc1(static_cast<std::size_t>(c));
  fbkd::attention_masks(host_view(s.data(), shape).slice(0, 1, 2), host_view(t.data(), shape).slice(0, 1, 2),
                        host_view(ms1.data(), {1, 5, 6}), host_view(mc1.data(), {1, 4}), o);
  check_close(ms1, Vec(all.begin() + hw, all.begin() + 2 * hw), 1e-14, 1e-15, "spatial");
  check_close(mc1, Vec(all.begin() + 3 * hw + c, all.begin() + 3 * hw + 2 * c), 1e-14, 1e-15, "channel");
  // Channel-last inputs, transposed outputs, and one mask at a time.
  const auto s_nhwc = kdloss_test::relayout(s, shape, {0, 2, 3, 1});
  const auto t_rev = kdloss_test::relayout(t, shape, {3, 2, 1, 0});
  Vec zeros_s(static_cast<std::size_t>(3 * hw), 0.0), zeros_c(static_cast<std::size_t>(3 * c), 0.0);
  auto ms_t = kdloss_test::relayout(zeros_s, {3, 5, 6}, {2, 1, 0});
  auto mc_t = kdloss_test::relayout(zeros_c, {3, 4}, {1, 0}, 2);
  fbkd::attention_masks(View<const double>(s_nhwc.view), View<const double>(t_rev.view), ms_t.view, View<double>{}, o);
  fbkd::attention_masks(View<const double>(s_nhwc.view), View<const double>(t_rev.view), View<double>{}, mc_t.view, o);
  check_close(kdloss_test::to_vector(ms_t.view), Vec(all.begin(), all.begin() + 3 * hw), 1e-14, 1e-15, "strided M_s");
  check_close(kdloss_test::to_vector(mc_t.view), Vec(all.begin() + 3 * hw, all.end()), 1e-14, 1e-15, "strided M_c");
  // Attention maps alone (the abs-means).
  Vec gs(static_cast<std::size_t>(3 * hw)), gc(static_cast<std::size_t>(3 * c));
  fbkd::spatial_attention(host_view(s.data(), shape), host_view(gs.data(), {3, 5, 6}));
  fbkd::channel_attention(host_view(s.data(), shape), host_view(gc.data(), {3, 4, 1, 1}));
  check_close(gs, kdloss_ref::fbkd::mean_over_channels(s, fbkd_test::ref_shape(shape), true), 1e-14, 1e-15, "G_s");
  check_close(gc, kdloss_ref::fbkd::mean_over_positions(s, fbkd_test::ref_shape(shape), true), 1e-14, 1e-15, "G_c");
}

TEST_CASE("fbkd masks: degenerate inputs give finite masks (all-zero features give all-ones masks)") {
  for (Dims shape : {Dims{2, 3, 4, 5}, Dims{1, 1, 1, 1}, Dims{2, 1, 3, 1}}) {
    const auto n = static_cast<std::size_t>(shape.product());
    const Vec zeros(n, 0.0), big = random_vector<double>(n, 7, -300, 300);
    for (auto form : {fbkd::MaskForm::code, fbkd::MaskForm::paper}) {
      const auto m0 = lib_masks<float>(zeros, zeros, shape, {form, 0.1, 0.1});
      for (double v : m0) CHECK(v == doctest::Approx(1.0).epsilon(1e-6));
      // Large maps at a small temperature: the max is subtracted, nothing overflows.
      const auto m1 = lib_masks<float>(big, big, shape, {form, 0.01, 0.01});
      CHECK(kdloss_test::all_finite(m1));
    }
  }
}

TEST_CASE("fbkd masks: bad inputs throw a clear error and leave outputs untouched") {
  const Dims shape{2, 3, 4, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<float>(n, 8), t = random_vector<float>(n, 9);
  std::vector<float> ms(40, 42.0f), mc(6, 42.0f);
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  auto msv = host_view(ms.data(), {2, 4, 5});
  auto mcv = host_view(mc.data(), {2, 3});
  auto check = [&](auto&& call, const std::string& needle) {
    fbkd_test::expect_error(call, needle);
    for (float v : ms) REQUIRE(v == 42.0f);
    for (float v : mc) REQUIRE(v == 42.0f);
  };
  check(
      [&] {
        fbkd::attention_masks(sv, host_view(t.data(), {2, 3, 5, 4}), msv, mcv);
      },
      "kdloss::fbkd::attention_masks: arguments 'student' [2, 3, 4, 5] and 'teacher' [2, 3, 5, 4] must have the same "
      "shape");
  check(
      [&] {
        fbkd::attention_masks(sv, tv, host_view(ms.data(), {2, 5, 4}), mcv);
      },
      "argument 'mask_spatial' has shape [2, 5, 4] but expected [2, 1, 4, 5] or [2, 4, 5]");
  check(
      [&] {
        fbkd::attention_masks(sv, tv, msv, host_view(mc.data(), {3, 2}));
      },
      "argument 'mask_channel' has shape [3, 2] but expected [2, 3] or [2, 3, 1, 1]");
  check([&] { fbkd::attention_masks(sv, host_view(static_cast<const float*>(nullptr), shape), msv, mcv); },
        "argument 'teacher' has a null data pointer");
  check(
      [&] {
        fbkd::attention_masks(sv, tv, msv, mcv, {fbkd::MaskForm::code, 0.0, 0.5});
      },
      "argument 'options.spatial_temperature' must be > 0");
  check(
      [&] {
        fbkd::attention_masks(sv, tv, msv, mcv, {fbkd::MaskForm::paper, 0.5, -1.0});
      },
      "argument 'options.channel_temperature' must be > 0");
  check(
      [&] {
        fbkd::attention_masks(sv, tv, host_view(ms.data(), {2, 4, 5}, {0, 5, 1}), mcv);
      },
      "'mask_spatial' with shape [2, 4, 5] and strides [0, 5, 1] addresses some element twice");
  check(
      [&] {
        fbkd::attention_masks(sv, tv, msv, cuda_view(mc.data(), {2, 3}));
      },
      "argument 'mask_channel' is on cuda:0 but the call runs on host");
  check([&] { fbkd::attention_masks(sv, tv, View<float>{}, View<float>{}); }, "are both absent");
  check(
      [&] {
        fbkd::attention_masks(sv, tv, msv, host_view(ms.data() + 10, {2, 3}));
      },
      "'mask_channel' overlaps the memory of argument 'mask_spatial'");
  {
    std::vector<float> s_copy = s;
    fbkd_test::expect_error(
        [&] {
          fbkd::attention_masks(host_view<const float>(s_copy.data(), shape), tv, host_view(s_copy.data(), {2, 4, 5}),
                                mcv);
        },
        "'mask_spatial' overlaps the memory of argument 'student'");
    CHECK(s_copy == s);
  }
  alignas(256) static unsigned char small[256];
  check(
      [&] {
        fbkd::attention_masks(sv, tv, msv, mcv, {}, Exec{Workspace{small, 8}, Stream()});
      },
      "argument 'workspace' has 8 bytes but this call needs");
  CHECK(fbkd::attention_masks_workspace_bytes(sv) >
        fbkd::attention_masks_workspace_bytes(fbkd::AttentionMasksArgs<float>{sv, tv, msv, {}, {}}));
  CHECK(fbkd::attention_masks_workspace_bytes(sv) ==
        fbkd::attention_masks_workspace_bytes(fbkd::AttentionMasksArgs<float>{sv, tv, msv, mcv, {}}));
}

KDLOSS_GPU_TEST("fbkd masks: GPU agrees with CPU (warp and block rows; float, double, half)") {
#if KDLOSS_TEST_CUDA
  // 48 x 50 = 2400 positions: long rows run one block per image on the GPU.
  for (Dims shape : {Dims{2, 7, 5, 6}, Dims{2, 3, 48, 50}, Dims{1, 2100, 1, 2}}) {
    const auto n = static_cast<std::size_t>(shape.product());
    const auto s = random_vector<double>(n, 10, -2, 2), t = random_vector<double>(n, 11, -2, 2);
    for (const auto& o : kOptions) {
      CAPTURE(shape.str());
      CAPTURE(fbkd::to_string(o.form));
      const auto want = ref_masks(s, t, shape, o);
      const auto on_gpu = [&](int dtype) {
        return kdloss_test::masks_on_gpu(dtype, s, t, shape, static_cast<int>(o.form), o.spatial_temperature,
                                         o.channel_temperature);
      };
      check_close(on_gpu(1), want, 1e-12, 1e-15, "double");
      check_close(on_gpu(0), want, 1e-5, 1e-6, "float");
      // half inputs: maps of rounded features, divided by t = 0.1 inside exp; a few percent.
      check_close(on_gpu(2), want, 5e-2, 1e-2, "half");
    }
  }
#endif
}

TEST_CASE("fbkd masks and attention maps: NaN and +-inf inputs propagate as PyTorch's") {
  // A NaN or inf entry makes its image's maps NaN or inf there, and its image's softmax rows (hence
  // both masks of that image) NaN, as torch.softmax; the other image is untouched. The maps' backward
  // is sgn(x) * g / n with sgn(NaN) = 0 (PyTorch's abs backward).
  const Dims shape{2, 3, 4, 5};
  const auto rs = fbkd_test::ref_shape(shape);
  for (int input = 0; input < 2; ++input)
    for (double v : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
      CAPTURE(input);
      CAPTURE(v);
      auto s = random_vector<double>(120, 90), t = random_vector<double>(120, 91);
      (input == 0 ? s : t)[67] = v;  // image 1
      for (const auto& o : kOptions) {
        const Vec want = ref_masks(s, t, shape, o);
        kdloss_test::check_same_nonfinite(lib_masks<double>(s, t, shape, o), want, 1e-12, 1e-15, "masks");
        kdloss_test::check_same_nonfinite(lib_masks<float>(s, t, shape, o), want, 1e-5, 1e-6, "float masks");
      }
      // The maps, forward and backward (with a non-finite upstream entry too).
      Vec gs(40), gc(6), gx(120), gx2(120);
      Vec g_s = random_vector<double>(40, 92), g_c = random_vector<double>(6, 93);
      g_s[3] = v;
      g_c[1] = v;
      fbkd::spatial_attention_forward_backward(host_view<const double>(s.data(), shape),
                                               host_view<const double>(g_s.data(), {2, 4, 5}),
                                               host_view(gs.data(), {2, 4, 5}), host_view(gx.data(), shape));
      fbkd::channel_attention_forward_backward(host_view<const double>(s.data(), shape),
                                               host_view<const double>(g_c.data(), {2, 3}), host_view(gc.data(), {2, 3}),
                                               host_view(gx2.data(), shape));
      kdloss_test::check_same_nonfinite(gs, kdloss_ref::fbkd::mean_over_channels(s, rs, true), 1e-14, 0, "G_s");
      kdloss_test::check_same_nonfinite(gc, kdloss_ref::fbkd::mean_over_positions(s, rs, true), 1e-14, 0, "G_c");
      Vec want_s(120), want_c(120);
      for (std::int64_t b = 0; b < 2; ++b)
        for (std::int64_t c = 0; c < 3; ++c)
          for (std::int64_t p = 0; p < 20; ++p) {
            const std::int64_t k = (b * 3 + c) * 20 + p;
            want_s[k] = kdloss_ref::fbkd::sgn(s[k]) * (g_s[b * 20 + p] / 3.0);
            want_c[k] = kdloss_ref::fbkd::sgn(s[k]) * (g_c[b * 3 + c] / 20.0);
          }
      kdloss_test::check_same_nonfinite(gx, want_s, 1e-14, 0, "grad through G_s");
      kdloss_test::check_same_nonfinite(gx2, want_c, 1e-14, 0, "grad through G_c");
    }
}
