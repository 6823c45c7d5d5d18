// drkd::instance_relation_maps_loss (RoIAlign of the ground-truth boxes, then DRKD's instance relation in
// the code or the paper form): the double references of both parts composed, central differences on the
// student map (RoIAlign is linear in the map, so they are exact up to rounding), image-0 pooling, gradient
// accumulation, strided maps, degenerate box counts, the NaN rule and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kdloss/losses/drkd/instance_relation_maps.hpp"
#include "losses/drkd/instance_relation_args.hpp"
#include "losses/drkd/instance_relation_gpu.hpp"
#include "reference/losses/drkd_instance_paper.hpp"
#include "reference/losses/drkd_instance_relation.hpp"
#include "reference/ops/roi_align.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_ref::losses::InstancePaper;
using kdloss_ref::losses::InstanceRelation;
using kdloss_ref::losses::InstanceRelationInputs;
using kdloss_test::check_close;
using kdloss_test::random_vector;
using In = InstanceRelationInputs;

namespace {

/// A small pyramid level: maps [B, C, H, W], boxes per image (image pixels), RoIs of P x P at scale 1/2.
struct MapsProblem {
  std::int64_t B = 2, Cs = 3, Ct = 2, H = 9, W = 11, P = 2, I = 5;
  std::vector<std::int64_t> offsets = {0, 2, 5};
  double scale = 0.5;
  std::int64_t sampling = 2;
  bool image0 = false;
  std::vector<double> S, T, boxes;  // boxes [n, 4]

  std::int64_t n() const { return offsets.back(); }
  void fill(std::uint32_t seed) {
    S = random_vector<double>(static_cast<std::size_t>(B * Cs * H * W), seed, -1.0, 1.0);
    T = random_vector<double>(static_cast<std::size_t>(B * Ct * H * W), seed + 1, -1.0, 1.0);
    const double all[] = {1, 2, 12, 15,   4.5, 0, 21, 9,   0, 0, 21, 17,   7, 3.25, 9, 16,   13, 11, 22, 18};
    boxes.assign(all, all + 4 * n());
  }
  /// [n, C, P, P] pooled by the reference RoIAlign (image 0 for every box when image0).
  std::vector<double> pool(const std::vector<double>& map, std::int64_t C) const {
    std::vector<double> b5;
    for (std::int64_t b = 0; b + 1 < static_cast<std::int64_t>(offsets.size()); ++b)
      for (std::int64_t k = offsets[b]; k < offsets[b + 1]; ++k) {
        b5.push_back(image0 ? 0.0 : double(b));
        for (int c = 0; c < 4; ++c) b5.push_back(boxes[k * 4 + c]);
      }
    kdloss_ref::ops::RoiAlignRefOptions o;
    o.ph = o.pw = P;
    o.scale = scale;
    o.sampling = sampling;
    std::vector<double> y;
    kdloss_ref::ops::roi_align(map, B, C, H, W, b5, o, &y, nullptr, nullptr);
    return y;
  }
  InstanceRelation relation() const {
    InstanceRelation r;
    r.offsets = offsets;
    r.Cs = Cs, r.Ct = Ct, r.P = P, r.Q = P, r.Is = I, r.It = I;
    r.relation_weight = 0.7, r.feature_weight = 0.3;
    return r;
  }
};

/// The relation's parameters (every input of the reference but the two features).
In relation_inputs(const InstanceRelation& r, std::uint32_t seed) {
  In in;
  const auto s = kdloss_test::instance_relation_shapes(r);
  for (int k = In::s_theta_w; k < In::count; ++k)
    if (s[k].rank > 0) in.v[k] = random_vector<double>(static_cast<std::size_t>(s[k].product()), seed + k, -0.5, 0.5);
  return in;
}

/// The reference value of the code form on the maps.
double reference_code(const MapsProblem& p, const InstanceRelation& r, In in, const std::vector<double>& S) {
  in.v[In::student] = p.pool(S, p.Cs);
  in.v[In::teacher] = p.pool(p.T, p.Ct);
  return r.loss(in);
}

/// Everything one library call needs: the relation's views over `prm` and the maps' views.
template <class T>
struct Bound {
  std::vector<std::vector<T>> store = std::vector<std::vector<T>>(In::count),
                              grads = std::vector<std::vector<T>>(In::count);
  std::vector<T> S, Tm, boxes, gS;
  drkd::InstanceRelationMapsArgs<T> args;
  T out = T(-7), up = T(1);

  Bound(const MapsProblem& p, const InstanceRelation& r, const In& prm, Mode mode) {
    const auto shapes = kdloss_test::instance_relation_shapes(r);
    std::vector<View<const T>> v(In::count);
    std::vector<View<T>> g(In::count);
    for (int k = In::s_theta_w; k < In::count; ++k) {
      if (shapes[k].rank == 0) continue;
      store[k].assign(prm.v[k].begin(), prm.v[k].end());
      v[k] = host_view<const T>(store[k].data(), shapes[k]);
      grads[k].assign(store[k].size(), T(-7));
      g[k] = host_view<T>(grads[k].data(), shapes[k]);
    }
    args.code = kdloss_test::instance_relation_args<T>(r, v, g, mode);
    args.code.student = args.code.teacher = {};
    args.code.boxes = {};
    args.code.grad_student = {};
    S.assign(p.S.begin(), p.S.end());
    Tm.assign(p.T.begin(), p.T.end());
    boxes.assign(p.boxes.begin(), p.boxes.end());
    gS.assign(S.size(), T(-7));
    args.student_map = host_view<const T>(S.data(), {p.B, p.Cs, p.H, p.W});
    args.teacher_map = host_view<const T>(Tm.data(), {p.B, p.Ct, p.H, p.W});
    args.boxes = host_view<const T>(boxes.data(), {p.n(), 4});
    args.offsets = host_view<const std::int64_t>(p.offsets.data(), {static_cast<std::int64_t>(p.offsets.size())});
    args.options.output_size = p.P;
    args.options.spatial_scale = p.scale;
    args.options.sampling_ratio = p.sampling;
    args.options.image0_pooling = p.image0;
    if (writes_value(mode)) args.out = host_scalar(&out);
    if (mode == Mode::backward) args.grad_out = host_scalar<const T>(&up);
    if (writes_gradients(mode)) args.grad_student_map = host_view(gS.data(), {p.B, p.Cs, p.H, p.W});
  }
};

void check_code_form(MapsProblem p) {
  p.fill(11);
  const InstanceRelation r = p.relation();
  const In prm = relation_inputs(r, 40);
  Bound<double> b(p, r, prm, Mode::forward_backward);
  drkd::instance_relation_maps_loss(b.args, Mode::forward_backward);
  const double want = reference_code(p, r, prm, p.S);
  CHECK(b.out == doctest::Approx(want).epsilon(1e-12));
  const auto fd = kdloss_test::numeric_gradient(p.S, [&](const std::vector<double>& S) { return reference_code(p, r, prm, S); });
  check_close(b.gS, fd, 1e-6, 1e-9, "grad_student_map");
  // The relation's own gradients equal instance_relation_loss's on the library's pooled features.
  std::vector<double> rs(static_cast<std::size_t>(p.n() * p.Cs * p.P * p.P)), rt(static_cast<std::size_t>(p.n() * p.Ct * p.P * p.P));
  Bound<double> direct(p, r, prm, Mode::forward_backward);
  ops::RoiAlignOptions o;
  o.output_height = o.output_width = p.P;
  o.spatial_scale = p.scale;
  o.sampling_ratio = p.sampling;
  std::vector<double> b5;
  for (std::int64_t i = 0; i + 1 < static_cast<std::int64_t>(p.offsets.size()); ++i)
    for (std::int64_t k = p.offsets[i]; k < p.offsets[i + 1]; ++k) {
      b5.push_back(p.image0 ? 0.0 : double(i));
      for (int c = 0; c < 4; ++c) b5.push_back(p.boxes[k * 4 + c]);
    }
  const View<const double> boxes5 = host_view<const double>(b5.data(), {p.n(), 5});
  ops::roi_align(direct.args.student_map, boxes5, host_view(rs.data(), {p.n(), p.Cs, p.P, p.P}), o);
  ops::roi_align(direct.args.teacher_map, boxes5, host_view(rt.data(), {p.n(), p.Ct, p.P, p.P}), o);
  drkd::InstanceRelationLossArgs<double> rel = direct.args.code;
  rel.student = host_view<const double>(rs.data(), {p.n(), p.Cs, p.P, p.P});
  rel.teacher = host_view<const double>(rt.data(), {p.n(), p.Ct, p.P, p.P});
  rel.boxes.offsets = direct.args.offsets;
  double value = 0;
  rel.out = host_scalar(&value);
  drkd::instance_relation_loss(rel, Mode::forward_backward);
  CHECK(value == b.out);
  for (int k = In::s_theta_w; k < In::count; ++k) CHECK(direct.grads[k] == b.grads[k]);
}

}  // namespace

TEST_CASE("drkd::instance_relation_maps_loss code form: the references composed, central differences on the map") {
  SUBCASE("per image (the default)") { check_code_form(MapsProblem{}); }
  SUBCASE("image-0 pooling (the code's batch-index bug)") {
    MapsProblem p;
    p.image0 = true;
    check_code_form(p);
  }
  SUBCASE("an image without boxes, one box, adaptive sampling, aligned off") {
    MapsProblem p;
    p.B = 3;
    p.offsets = {0, 0, 1, 3};
    p.sampling = -1;
    check_code_form(p);
  }
}

TEST_CASE("drkd::instance_relation_maps_loss: image-0 pooling leaves the other maps' gradient zero (or beta * old)") {
  MapsProblem p;
  p.image0 = true;
  p.fill(3);
  const InstanceRelation r = p.relation();
  const In prm = relation_inputs(r, 9);
  Bound<double> b(p, r, prm, Mode::forward_backward);
  b.args.options.map_grad.beta = 0.0;
  std::fill(b.gS.begin(), b.gS.end(), std::numeric_limits<double>::quiet_NaN());  // beta 0 never reads it
  drkd::instance_relation_maps_loss(b.args, Mode::forward_backward);
  const std::size_t per_image = static_cast<std::size_t>(p.Cs * p.H * p.W);
  for (std::size_t e = per_image; e < b.gS.size(); ++e) REQUIRE(b.gS[e] == 0.0);
  CHECK(kdloss_test::all_finite(b.gS));
}

TEST_CASE("drkd::instance_relation_maps_loss: backward scales by grad_out and accumulates with map_grad.beta") {
  MapsProblem p;
  p.fill(5);
  const InstanceRelation r = p.relation();
  const In prm = relation_inputs(r, 17);
  Bound<double> fb(p, r, prm, Mode::forward_backward);
  drkd::instance_relation_maps_loss(fb.args, Mode::forward_backward);
  for (const bool image0 : {false, true}) {
    p.image0 = image0;
    Bound<double> fb0(p, r, prm, Mode::forward_backward);
    drkd::instance_relation_maps_loss(fb0.args, Mode::forward_backward);
    Bound<double> bw(p, r, prm, Mode::backward);
    bw.up = 0.5;
    bw.args.options.map_grad.beta = 1.0;
    const std::vector<double> old = random_vector<double>(bw.gS.size(), 99);
    bw.gS = old;
    bw.args.grad_student_map = host_view(bw.gS.data(), {p.B, p.Cs, p.H, p.W});
    drkd::instance_relation_maps_loss(bw.args, Mode::backward);
    std::vector<double> want(old.size());
    for (std::size_t e = 0; e < old.size(); ++e) want[e] = old[e] + 0.5 * fb0.gS[e];
    check_close(bw.gS, want, 1e-12, 1e-15, "beta * old + grad_out * dL/dS");
  }
  CHECK(fb.out > 0);
}

TEST_CASE("drkd::instance_relation_maps_loss paper form: cosine relation with the confidence mask") {
  MapsProblem p;
  p.fill(21);
  InstancePaper ref;
  ref.offsets = p.offsets;
  ref.Ds = p.Cs * p.P * p.P;
  ref.Dt = p.Ct * p.P * p.P;
  ref.weight = 2.0;
  ref.columns = true;
  const std::vector<double> scores = {0.9, 0.2, 0.7, 0.8, 0.1};
  const auto value = [&](const std::vector<double>& S) { return ref.loss(p.pool(S, p.Cs), p.pool(p.T, p.Ct), scores, {}); };
  const InstanceRelation r = p.relation();
  Bound<double> b(p, r, In{}, Mode::forward_backward);
  b.args.code = {};
  b.args.options.form = drkd::InstanceForm::paper;
  b.args.paper.teacher_scores = host_view<const double>(scores.data(), {5});
  b.args.paper.options.weight = 2.0;
  b.args.paper.options.mask_columns = true;
  drkd::instance_relation_maps_loss(b.args, Mode::forward_backward);
  CHECK(b.out == doctest::Approx(value(p.S)).epsilon(1e-12));
  check_close(b.gS, kdloss_test::numeric_gradient(p.S, value), 1e-6, 1e-9, "grad_student_map");
}

TEST_CASE("drkd::instance_relation_maps_loss: float against double, channels-last maps, no boxes at all, NaN") {
  MapsProblem p;
  p.fill(31);
  const InstanceRelation r = p.relation();
  const In prm = relation_inputs(r, 50);
  Bound<double> d(p, r, prm, Mode::forward_backward);
  drkd::instance_relation_maps_loss(d.args, Mode::forward_backward);
  Bound<float> f(p, r, prm, Mode::forward_backward);
  drkd::instance_relation_maps_loss(f.args, Mode::forward_backward);
  CHECK(f.out == doctest::Approx(d.out).epsilon(1e-4));
  check_close(f.gS, d.gS, 2e-3, 1e-5, "float grad_student_map");

  // Channels-last student and teacher maps: the same values and gradient.
  Bound<double> cl(p, r, prm, Mode::forward_backward);
  std::vector<double> s_nhwc(p.S.size()), t_nhwc(p.T.size());
  for (std::int64_t i = 0; i < p.B; ++i)
    for (std::int64_t y = 0; y < p.H; ++y)
      for (std::int64_t x = 0; x < p.W; ++x) {
        for (std::int64_t c = 0; c < p.Cs; ++c)
          s_nhwc[((i * p.H + y) * p.W + x) * p.Cs + c] = p.S[((i * p.Cs + c) * p.H + y) * p.W + x];
        for (std::int64_t c = 0; c < p.Ct; ++c)
          t_nhwc[((i * p.H + y) * p.W + x) * p.Ct + c] = p.T[((i * p.Ct + c) * p.H + y) * p.W + x];
      }
  cl.args.student_map = View<const double>(s_nhwc.data(), Dims{p.B, p.Cs, p.H, p.W},
                                           Dims{p.H * p.W * p.Cs, 1, p.W * p.Cs, p.Cs}, Device::host());
  cl.args.teacher_map = View<const double>(t_nhwc.data(), Dims{p.B, p.Ct, p.H, p.W},
                                           Dims{p.H * p.W * p.Ct, 1, p.W * p.Ct, p.Ct}, Device::host());
  drkd::instance_relation_maps_loss(cl.args, Mode::forward_backward);
  CHECK(cl.out == doctest::Approx(d.out).epsilon(1e-13));
  check_close(cl.gS, d.gS, 1e-12, 1e-15, "channels-last grad_student_map");

  // No boxes anywhere: value 0, zero gradient.
  MapsProblem e = p;
  e.offsets = {0, 0, 0};
  Bound<double> none(e, e.relation(), relation_inputs(e.relation(), 50), Mode::forward_backward);
  drkd::instance_relation_maps_loss(none.args, Mode::forward_backward);
  CHECK(none.out == 0.0);
  for (double g : none.gS) REQUIRE(g == 0.0);

  // A NaN in the student map under a box reaches the value, as in PyTorch.
  Bound<double> nan(p, r, prm, Mode::forward);
  nan.S[((0 * p.Cs + 1) * p.H + 3) * p.W + 4] = std::numeric_limits<double>::quiet_NaN();
  drkd::instance_relation_maps_loss(nan.args, Mode::forward);
  CHECK(std::isnan(nan.out));
}

TEST_CASE("drkd::instance_relation_maps_loss: bad input names the argument and writes nothing") {
  MapsProblem p;
  p.fill(41);
  const InstanceRelation r = p.relation();
  const In prm = relation_inputs(r, 60);
  const auto expect = [&](auto&& edit, const char* needle) {
    Bound<double> b(p, r, prm, Mode::forward_backward);
    edit(b);
    kdloss_test::expect_error([&] { drkd::instance_relation_maps_loss(b.args, Mode::forward_backward); }, needle, [&] {
      CHECK(b.out == -7.0);
      for (double g : b.gS) REQUIRE(g == -7.0);
      for (double g : b.grads[In::s_theta_w]) REQUIRE(g == -7.0);
    });
  };
  std::vector<double> five(p.n() * 5);
  expect([&](Bound<double>& b) { b.args.boxes = host_view<const double>(five.data(), {p.n(), 5}); },
         "argument 'boxes' must be [n, 4]");
  std::vector<std::int64_t> three = {0, 5};
  expect([&](Bound<double>& b) { b.args.offsets = host_view<const std::int64_t>(three.data(), {2}); },
         "argument 'offsets' [2] must have B + 1 = 3 entries");
  expect([&](Bound<double>& b) { b.args.code.student = b.args.student_map; }, "argument 'code.student' must be absent");
  expect([&](Bound<double>& b) { b.args.code.relation_adapt_weight = {}; },
         "kdloss::drkd::instance_relation_maps_loss_forward_backward: in the relation: "
         "kdloss::drkd::instance_relation_loss_workspace_bytes: argument 'relation_adapt_weight' is absent");
  expect([&](Bound<double>& b) { b.args.grad_student_map = host_view(b.gS.data(), {p.B, p.Cs, p.H, p.W - 1}); },
         "grad_student_map");
  expect([&](Bound<double>& b) { b.boxes[2] = std::numeric_limits<double>::quiet_NaN(); },
         "kdloss::drkd::instance_relation_maps_loss_forward_backward: pooling the maps: kdloss::ops::roi_align");
  expect([&](Bound<double>& b) { b.args.grad_student_map = host_view(b.store[In::s_theta_w].data(), {p.B, p.Cs, p.H, p.W}); },
         "grad_student_map");
  expect([&](Bound<double>& b) { b.args.options.form = static_cast<drkd::InstanceForm>(7); }, "option 'form' is 7");
}

KDLOSS_GPU_TEST("drkd::instance_relation_maps_loss: the GPU agrees with the CPU (float, double) and repeats its bits") {
#if KDLOSS_TEST_CUDA
  for (const bool image0 : {false, true}) {
    CAPTURE(image0);
    MapsProblem p;
    p.image0 = image0;
    p.fill(71);
    const InstanceRelation r = p.relation();
    const In prm = relation_inputs(r, 80);
    Bound<double> cpu(p, r, prm, Mode::forward_backward);
    drkd::instance_relation_maps_loss(cpu.args, Mode::forward_backward);
    std::vector<double> want{cpu.out};
    want.insert(want.end(), cpu.gS.begin(), cpu.gS.end());
    for (int k = In::s_theta_w; k < In::count; ++k) want.insert(want.end(), cpu.grads[k].begin(), cpu.grads[k].end());
    kdloss_test::MapsLevel level{p.B, p.Cs, p.Ct, p.H, p.W, p.S, p.T};
    for (int dtype : {1, 0}) {
      CAPTURE(dtype);
      const auto got = kdloss_test::instance_relation_maps_on_gpu(dtype, r, prm, level, p.boxes, p.scale, p.sampling, image0);
      const double tol = dtype == 1 ? 1e-10 : 3e-4;
      check_close(got, want, tol, tol * 5e-2, "value, grad_student_map and every parameter gradient");
      CHECK(kdloss_test::instance_relation_maps_on_gpu(dtype, r, prm, level, p.boxes, p.scale, p.sampling, image0) == got);
    }
  }
#endif
}
