// drkd::total_loss (the DRKD total over a pyramid: the pixel relation of every level plus the instance
// relation of the instance levels, from the maps and the boxes): equal to its terms called one by one
// (values, level gradients, parameter gradients), both presets, central differences through the whole
// total, backward scaling, a level without terms, and bad input naming the level and the term.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <vector>

#include "kdloss/losses/drkd/total.hpp"
#include "losses/drkd/instance_relation_gpu.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

/// Storage that keeps every buffer's address (views point into it).
struct Store {
  std::deque<std::vector<double>> buffers;
  std::uint32_t seed = 100;
  View<const double> in(const Dims& d, double scale = 0.5) {
    buffers.push_back(random_vector<double>(static_cast<std::size_t>(d.product()), seed++, -scale, scale));
    return host_view<const double>(buffers.back().data(), d);
  }
  View<double> out(const Dims& d) {
    buffers.emplace_back(static_cast<std::size_t>(d.product()), -7.0);
    return host_view(buffers.back().data(), d);
  }
};

/// A two-level pyramid of two images (C = 4: 8 x 12 and 4 x 6, an image of 32 x 48) with three boxes.
struct Pyramid {
  static constexpr std::int64_t B = 2, C = 4, m = 2, I = 6, D = C * 9;
  Store st;
  std::vector<double> boxes = {2, 3, 30, 20,  10, 0, 47, 31,  5, 6.5, 12, 29};
  std::vector<std::int64_t> offsets = {0, 2, 3};
  drkd::TotalLevel<double> levels[2];
  double out = -7, up = 1;

  drkd::GloreUnitParams<double> unit() {
    drkd::GloreUnitParams<double> u;
    u.state_weight = st.in({2 * m, C});
    u.state_bias = st.in({2 * m});
    u.proj_weight = st.in({m, C});
    u.proj_bias = st.in({m});
    u.gcn_conv1_weight = st.in({m, m});
    u.gcn_conv1_bias = st.in({m});
    u.gcn_conv2_weight = st.in({2 * m, 2 * m});
    u.extend_weight = st.in({C, 2 * m});
    u.bn_weight = st.in({C});
    u.bn_bias = st.in({C});
    return u;
  }
  drkd::ObjectRelationParams<double> relation() {
    drkd::ObjectRelationParams<double> r;
    r.theta_weight = st.in({I, D}, 0.2);
    r.theta_bias = st.in({I});
    r.phi_weight = st.in({I, D}, 0.2);
    r.phi_bias = st.in({I});
    r.g_weight = st.in({I, D}, 0.2);
    r.g_bias = st.in({I});
    r.W_weight = st.in({D, I}, 0.2);
    r.W_bias = st.in({D});
    return r;
  }

  /// code: the code preset with every parameter; else the paper preset (teacher scores, column mask).
  explicit Pyramid(bool code, Mode mode = Mode::forward_backward) {
    const Dims maps[2] = {Dims{B, C, 8, 12}, Dims{B, C, 4, 6}};
    for (int l = 0; l < 2; ++l) {
      drkd::TotalLevel<double>& lv = levels[l];
      lv.student = st.in(maps[l], 1.0);
      lv.teacher = st.in(maps[l], 1.0);
      if (writes_gradients(mode)) lv.grad_student = st.out(maps[l]);
      if (code) {
        lv.glore.student_glore = unit();
        lv.glore.teacher_glore = unit();
        lv.glore.adapt_weight = st.in({C, C});
        lv.glore.adapt_bias = st.in({C});
        lv.glore.options.weight = 0.5;  // large enough that both terms matter in the checks
        if (writes_gradients(mode)) lv.glore.grad_student_glore.state_weight = st.out({2 * m, C});
        drkd::InstanceRelationLossArgs<double>& r = lv.instance_args.code;
        r.student_relation = relation();
        r.teacher_relation = relation();
        r.relation_adapt_weight = st.in({C, C});
        r.feature_adapt_weight = st.in({C, C});
        r.options.relation_weight = 0.3;
        r.options.feature_weight = 0.2;
        if (writes_gradients(mode)) r.grad_student_relation.theta_weight = st.out({I, D});
      } else {
        drkd::InstanceRelationPaperLossArgs<double>& p = lv.instance_args.paper;
        p.teacher_scores = st.in({3});
        p.options.mask_columns = true;
      }
    }
    if (code)
      drkd::use_code_preset(levels, 2);
    else
      drkd::use_paper_preset(levels, 2);
  }
  drkd::TotalLossArgs<double> args(Mode mode) {
    drkd::TotalLossArgs<double> a;
    a.levels = levels;
    a.level_count = 2;
    a.boxes = host_view<const double>(boxes.data(), {3, 4});
    a.offsets = host_view<const std::int64_t>(offsets.data(), {3});
    if (writes_value(mode)) a.out = host_scalar(&out);
    if (mode == Mode::backward) a.grad_out = host_scalar<const double>(&up);
    return a;
  }
};

std::vector<double> values(const View<double>& v) { return kdloss_test::to_vector(v); }

/// The terms one by one, as a caller would run them without the total: the sum of the values, each
/// level's summed student gradient, and the two tracked parameter gradients per level.
struct Separate {
  double value = 0;
  std::vector<double> grads[2], glore_state[2], theta[2];
};

Separate run_separately(bool code) {
  Pyramid p(code);
  Separate s;
  for (int l = 0; l < 2; ++l) {
    drkd::TotalLevel<double>& lv = p.levels[l];
    double v = 0;
    std::vector<double> g(static_cast<std::size_t>(lv.student.numel()));
    if (code) {
      drkd::GloreRelationLossArgs<double> a = lv.glore;
      a.student = lv.student;
      a.teacher = lv.teacher;
      a.out = host_scalar(&v);
      a.grad_student = host_view(g.data(), lv.student.shape);
      drkd::glore_relation_loss(a, Mode::forward_backward);
      s.glore_state[l] = values(lv.glore.grad_student_glore.state_weight);
    } else {
      drkd::PixelRelationLossArgs<double> a;
      a.student = lv.student;
      a.teacher = lv.teacher;
      a.out = host_scalar(&v);
      a.grad_student = host_view(g.data(), lv.student.shape);
      drkd::pixel_relation_loss(a, Mode::forward_backward);
    }
    s.value += v;
    drkd::InstanceRelationMapsArgs<double> m = lv.instance_args;
    m.student_map = lv.student;
    m.teacher_map = lv.teacher;
    m.boxes = host_view<const double>(p.boxes.data(), {3, 4});
    m.offsets = host_view<const std::int64_t>(p.offsets.data(), {3});
    m.options.spatial_scale = l == 0 ? 0.25 : 0.125;  // W_l / (4 W_0)
    m.out = host_scalar(&v);
    m.grad_student_map = host_view(g.data(), lv.student.shape);
    m.options.map_grad.beta = 1.0;
    drkd::instance_relation_maps_loss(m, Mode::forward_backward);
    s.value += v;
    s.grads[l] = g;
    if (code) s.theta[l] = values(lv.instance_args.code.grad_student_relation.theta_weight);
  }
  return s;
}

void check_against_separate(bool code) {
  const Separate want = run_separately(code);
  Pyramid p(code);
  drkd::total_loss(p.args(Mode::forward_backward), Mode::forward_backward);
  CHECK(p.out == doctest::Approx(want.value).epsilon(1e-14));
  for (int l = 0; l < 2; ++l) {
    check_close(values(p.levels[l].grad_student), want.grads[l], 1e-14, 1e-16, "levels[l].grad_student");
    if (!code) continue;
    CHECK(values(p.levels[l].glore.grad_student_glore.state_weight) == want.glore_state[l]);
    CHECK(values(p.levels[l].instance_args.code.grad_student_relation.theta_weight) == want.theta[l]);
  }
}

}  // namespace

TEST_CASE("drkd::total_loss equals its terms called one by one") {
  SUBCASE("the code preset: GloRe L_PR at every level, L_IR + L_fg at levels 0 and 1") { check_against_separate(true); }
  SUBCASE("the paper preset: the seed's pixel relation and cosine instance relation") { check_against_separate(false); }
}

TEST_CASE("drkd::total_loss: central differences through the whole total (paper preset)") {
  Pyramid p(false);
  drkd::total_loss(p.args(Mode::forward_backward), Mode::forward_backward);
  for (int l = 0; l < 2; ++l) {
    std::vector<double>& map = *std::find_if(p.st.buffers.begin(), p.st.buffers.end(), [&](const std::vector<double>& b) {
      return b.data() == p.levels[l].student.data;
    });
    const auto value = [&](const std::vector<double>& x) {
      const std::vector<double> keep = map;
      map = x;
      Pyramid& q = p;
      double v = 0;
      drkd::TotalLossArgs<double> a = q.args(Mode::forward);
      a.out = host_scalar(&v);
      drkd::total_loss(a, Mode::forward);
      map = keep;
      return v;
    };
    const std::vector<double> fd = kdloss_test::numeric_gradient(map, value, 1e-6);
    check_close(values(p.levels[l].grad_student), fd, 1e-6, 1e-9, "grad_student against central differences");
  }
}

TEST_CASE("drkd::total_loss: backward scales by grad_out; a level without terms gets a zero gradient") {
  Pyramid fb(true);
  drkd::total_loss(fb.args(Mode::forward_backward), Mode::forward_backward);
  Pyramid bw(true, Mode::backward);
  bw.up = -0.5;
  drkd::total_loss(bw.args(Mode::backward), Mode::backward);
  for (int l = 0; l < 2; ++l) {
    std::vector<double> want = values(fb.levels[l].grad_student);
    for (double& g : want) g *= -0.5;
    check_close(values(bw.levels[l].grad_student), want, 1e-12, 1e-16, "backward grad_student");
  }
  CHECK(bw.out == -7.0);  // backward writes no value

  Pyramid off(false);
  off.levels[1].pixel = drkd::PixelTerm::none;
  off.levels[1].instance = false;
  drkd::total_loss(off.args(Mode::forward_backward), Mode::forward_backward);
  for (double g : values(off.levels[1].grad_student)) REQUIRE(g == 0.0);
  CHECK(std::isfinite(off.out));

  // No level at all: the value is 0.
  drkd::TotalLossArgs<double> none;
  double v = -7;
  none.out = host_scalar(&v);
  drkd::total_loss(none, Mode::forward);
  CHECK(v == 0.0);
}

TEST_CASE("drkd::total_loss: bad input names the level and the term, and writes nothing") {
  const auto expect = [](auto&& edit, const char* needle) {
    Pyramid p(true);
    drkd::TotalLossArgs<double> a = p.args(Mode::forward_backward);
    edit(p, a);
    kdloss_test::expect_error([&] { drkd::total_loss(a, Mode::forward_backward); }, needle, [&] {
      CHECK(p.out == -7.0);
      for (int l = 0; l < 2; ++l) {
        for (double g : values(p.levels[l].grad_student)) REQUIRE(g == -7.0);
        for (double g : values(p.levels[l].glore.grad_student_glore.state_weight)) REQUIRE(g == -7.0);
      }
    });
  };
  expect([](Pyramid& p, auto&) { p.levels[1].glore.student = p.levels[1].student; },
         "argument 'levels[1].glore.student' must be absent");
  expect([](Pyramid& p, auto&) { p.levels[0].instance_args.code.relation_adapt_weight = {}; },
         "kdloss::drkd::total_loss_forward_backward: levels[0] (the instance relation): "
         "kdloss::drkd::instance_relation_maps_loss_workspace_bytes: in the relation");
  expect([](Pyramid& p, auto&) { p.levels[1].glore.adapt_weight = host_view<const double>(nullptr, {4, 3}); },
         "levels[1] (L_PR, the GloRe relation)");
  expect([](Pyramid& p, auto&) { p.levels[1].grad_student = View<double>(p.levels[0].grad_student.data, Dims{2, 4, 4, 6}, Dims{96, 24, 6, 1}, Device::host()); },
         "argument 'levels[1].grad_student' overlaps the memory of argument 'levels[0].grad_student'");
  expect([](Pyramid& p, auto&) { p.levels[0].pixel = static_cast<drkd::PixelTerm>(9); }, "argument 'levels[0].pixel' is 9");
  expect([](Pyramid& p, auto& a) {
    for (auto& lv : p.levels) lv.instance = false;
    a.levels = p.levels;
  }, "arguments 'boxes' and 'offsets' are given but no level runs an instance term");
  expect([](Pyramid&, auto& a) { a.levels = nullptr; }, "argument 'levels' is null but level_count is 2");
}

KDLOSS_GPU_TEST("drkd::total_loss: the GPU agrees with the CPU (paper preset; float, double)") {
#if KDLOSS_TEST_CUDA
  Pyramid p(false);
  p.levels[1].instance_args.paper.teacher_scores = p.levels[0].instance_args.paper.teacher_scores;  // one set, as on the GPU
  drkd::total_loss(p.args(Mode::forward_backward), Mode::forward_backward);
  std::vector<double> want{p.out};
  std::vector<kdloss_test::MapsLevel> levels;
  for (int l = 0; l < 2; ++l) {
    const auto g = values(p.levels[l].grad_student);
    want.insert(want.end(), g.begin(), g.end());
    const Dims& d = p.levels[l].student.shape;
    levels.push_back({d[0], d[1], d[1], d[2], d[3], kdloss_test::to_vector(p.levels[l].student),
                      kdloss_test::to_vector(p.levels[l].teacher)});
  }
  const std::vector<double> scores = kdloss_test::to_vector(p.levels[0].instance_args.paper.teacher_scores);
  for (int dtype : {1, 0}) {
    CAPTURE(dtype);
    const auto got = kdloss_test::total_paper_on_gpu(dtype, levels, p.boxes, p.offsets, scores);
    const double tol = dtype == 1 ? 1e-10 : 3e-4;
    check_close(got, want, tol, tol * 5e-2, "value and every level's grad_student");
  }
#endif
}
