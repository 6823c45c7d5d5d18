// Host benchmarks of DRKD's instance relation, float: both levels (l = 0, 1) of a batch of 2 images with
// 100 ground-truth boxes each, RoI features [200, 256, 3, 3] per level (D = 2304, I = 1152), the code's
// modules. "code/train": drkd::instance_relation_loss forward_backward per level with grad_student and every
// parameter gradient (both ObjectRelations, both adapters), the filters drawn per call as inputs;
// "paper/train": drkd::instance_relation_paper_loss forward_backward per level (teacher-mean confidence,
// rows only); "code/maps": drkd::instance_relation_maps_loss from the FPN maps and the boxes (RoIAlign of both
// sides, the relation, the pooling's backward). The other two start from RoI features.
//
//   OMP_NUM_THREADS=2 ./kdloss_bench_drkd_instance_cpu --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kdloss/losses/drkd/instance_relation.hpp"
#include "kdloss/losses/drkd/instance_relation_maps.hpp"
#include "kdloss/losses/drkd/instance_relation_paper.hpp"

namespace {

constexpr std::int64_t kImages = 2, kBoxes = 100, kC = 256, kN = kImages * kBoxes, kD = kC * 9, kI = kD / 2;

std::vector<float> filled(std::int64_t n, std::uint32_t seed, float scale) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = scale * (static_cast<float>(s >> 8) / 16777216.0f * 2.0f - 1.0f);
  }
  return v;
}

struct Side {
  std::vector<std::vector<float>> p, g;
  explicit Side(std::uint32_t seed) {
    const float kd = 1.f / std::sqrt(float(kD)), ki = 1.f / std::sqrt(float(kI));
    p = {filled(kI * kD, seed, kd), filled(kI, seed + 1, kd), filled(kI * kD, seed + 2, kd), filled(kI, seed + 3, kd),
         filled(kI * kD, seed + 4, kd), filled(kI, seed + 5, kd), filled(kD * kI, seed + 6, ki), filled(kD, seed + 7, ki),
         filled(kN * kD, seed + 8, kd), filled(kN, seed + 9, kd)};
    for (const auto& v : p) g.emplace_back(v.size());
  }
  kdloss::drkd::ObjectRelationParams<float> params() const {
    using kdloss::host_view;
    return {host_view<const float>(p[0].data(), {kI, kD}), host_view<const float>(p[1].data(), {kI}),
            host_view<const float>(p[2].data(), {kI, kD}), host_view<const float>(p[3].data(), {kI}),
            host_view<const float>(p[4].data(), {kI, kD}), host_view<const float>(p[5].data(), {kI}),
            host_view<const float>(p[6].data(), {kD, kI}), host_view<const float>(p[7].data(), {kD})};
  }
  kdloss::drkd::ObjectRelationGrads<float> grads() {
    using kdloss::host_view;
    return {host_view(g[0].data(), {kI, kD}), host_view(g[1].data(), {kI}), host_view(g[2].data(), {kI, kD}),
            host_view(g[3].data(), {kI}),     host_view(g[4].data(), {kI, kD}), host_view(g[5].data(), {kI}),
            host_view(g[6].data(), {kD, kI}), host_view(g[7].data(), {kD})};
  }
  kdloss::drkd::RelationFilter<float> filter() const {
    return {kdloss::host_view<const float>(p[8].data(), {kN, kD}), kdloss::host_view<const float>(p[9].data(), {kN})};
  }
};

/// The code's modules of both levels and their gradients: everything instance_relation_loss takes but the
/// features, the boxes and the values.
struct CodeModules {
  Side s[2] = {Side(10), Side(30)}, t[2] = {Side(50), Side(70)};
  std::vector<float> aw = filled(kC * kC, 90, 1.f / 16), ab = filled(kC, 91, 1.f / 16), gaw = std::vector<float>(kC * kC),
                     gab = std::vector<float>(kC), fw = filled(kC * kC, 92, 1.f / 16), fb = filled(kC, 93, 1.f / 16),
                     gfw = std::vector<float>(kC * kC), gfb = std::vector<float>(kC);
  kdloss::drkd::InstanceRelationLossArgs<float> args(int l) {
    using kdloss::host_view;
    kdloss::drkd::InstanceRelationLossArgs<float> a;
    a.student_relation = s[l].params();
    a.teacher_relation = t[l].params();
    a.student_filter = s[l].filter();
    a.teacher_filter = t[l].filter();
    a.relation_adapt_weight = host_view<const float>(aw.data(), {kC, kC});
    a.relation_adapt_bias = host_view<const float>(ab.data(), {kC});
    a.feature_adapt_weight = host_view<const float>(fw.data(), {kC, kC});
    a.feature_adapt_bias = host_view<const float>(fb.data(), {kC});
    a.grad_student_relation = s[l].grads();
    a.grad_teacher_relation = t[l].grads();
    a.grad_relation_adapt_weight = host_view(gaw.data(), {kC, kC});
    a.grad_relation_adapt_bias = host_view(gab.data(), {kC});
    a.grad_feature_adapt_weight = host_view(gfw.data(), {kC, kC});
    a.grad_feature_adapt_bias = host_view(gfb.data(), {kC});
    a.options.param_grads.beta = 1.0;
    return a;
  }
};

void code_train(benchmark::State& state) {
  using kdloss::host_view;
  const std::int64_t offsets[] = {0, kBoxes, kN};
  std::vector<float> rs[2] = {filled(kN * kD, 1, 1.f), filled(kN * kD, 2, 1.f)},
                     rt[2] = {filled(kN * kD, 3, 1.f), filled(kN * kD, 4, 1.f)}, gs(kN * kD);
  CodeModules modules;
  float loss = 0;
  std::size_t bytes = 0;
  for (auto _ : state) {
    for (int l = 0; l < 2; ++l) {
      kdloss::drkd::InstanceRelationLossArgs<float> a = modules.args(l);
      a.student = host_view<const float>(rs[l].data(), {kN, kC, 3, 3});
      a.teacher = host_view<const float>(rt[l].data(), {kN, kC, 3, 3});
      a.boxes.offsets = host_view<const std::int64_t>(offsets, {3});
      a.out = kdloss::host_scalar(&loss);
      a.grad_student = host_view(gs.data(), {kN, kC, 3, 3});
      bytes = kdloss::drkd::instance_relation_loss_workspace_bytes(a);
      kdloss::drkd::instance_relation_loss(a, kdloss::Mode::forward_backward);
    }
    benchmark::DoNotOptimize(loss);
  }
  state.counters["workspace_MB"] = double(bytes) / 1e6;
}

/// "code/maps": the whole level from the FPN maps (P2 [2, 256, 200, 336] and P3 [2, 256, 100, 168] of an
/// 800 x 1344 input) and the boxes: drkd::instance_relation_maps_loss, RoIAlign both sides, the relation and
/// the pooling's backward into the student map.
void code_maps(benchmark::State& state) {
  using kdloss::host_view;
  const std::int64_t offsets[] = {0, kBoxes, kN};
  const std::int64_t H[2] = {200, 100}, W[2] = {336, 168};
  std::vector<float> S[2], T[2], G[2];
  for (int l = 0; l < 2; ++l) {
    S[l] = filled(kImages * kC * H[l] * W[l], 5 + l, 1.f);
    T[l] = filled(kImages * kC * H[l] * W[l], 7 + l, 1.f);
    G[l].resize(S[l].size());
  }
  std::vector<float> boxes(kN * 4);
  std::vector<float> u = filled(kN * 4, 11, 0.5f);
  for (std::int64_t k = 0; k < kN; ++k) {  // boxes of 16 to 400 pixels inside the 800 x 1344 image
    const float x1 = (u[k * 4] + 0.5f) * 900.f, y1 = (u[k * 4 + 1] + 0.5f) * 380.f;
    boxes[k * 4] = x1, boxes[k * 4 + 1] = y1;
    boxes[k * 4 + 2] = x1 + 16.f + (u[k * 4 + 2] + 0.5f) * 384.f, boxes[k * 4 + 3] = y1 + 16.f + (u[k * 4 + 3] + 0.5f) * 384.f;
  }
  CodeModules modules;
  float loss = 0;
  std::size_t bytes = 0;
  for (auto _ : state) {
    for (int l = 0; l < 2; ++l) {
      kdloss::drkd::InstanceRelationMapsArgs<float> a;
      a.code = modules.args(l);
      a.student_map = host_view<const float>(S[l].data(), {kImages, kC, H[l], W[l]});
      a.teacher_map = host_view<const float>(T[l].data(), {kImages, kC, H[l], W[l]});
      a.boxes = host_view<const float>(boxes.data(), {kN, 4});
      a.offsets = host_view<const std::int64_t>(offsets, {3});
      a.options.spatial_scale = l == 0 ? 0.25 : 0.125;
      a.out = kdloss::host_scalar(&loss);
      a.grad_student_map = host_view(G[l].data(), {kImages, kC, H[l], W[l]});
      bytes = kdloss::drkd::instance_relation_maps_loss_workspace_bytes(a);
      kdloss::drkd::instance_relation_maps_loss(a, kdloss::Mode::forward_backward);
    }
    benchmark::DoNotOptimize(loss);
  }
  state.counters["workspace_MB"] = double(bytes) / 1e6;
}

void paper_train(benchmark::State& state) {
  using kdloss::host_view;
  const std::int64_t offsets[] = {0, kBoxes, kN};
  std::vector<float> rs = filled(kN * kD, 1, 1.f), rt = filled(kN * kD, 3, 1.f), gs(kN * kD),
                     sc = filled(kN, 5, 0.5f);
  for (auto& x : sc) x += 0.5f;
  float loss = 0;
  for (auto _ : state) {
    for (int l = 0; l < 2; ++l) {
      kdloss::drkd::InstanceRelationPaperLossArgs<float> a;
      a.student = host_view<const float>(rs.data(), {kN, kC, 3, 3});
      a.teacher = host_view<const float>(rt.data(), {kN, kC, 3, 3});
      a.boxes.offsets = host_view<const std::int64_t>(offsets, {3});
      a.teacher_scores = host_view<const float>(sc.data(), {kN});
      a.out = kdloss::host_scalar(&loss);
      a.grad_student = host_view(gs.data(), {kN, kC, 3, 3});
      kdloss::drkd::instance_relation_paper_loss(a, kdloss::Mode::forward_backward);
    }
    benchmark::DoNotOptimize(loss);
  }
}

}  // namespace

BENCHMARK(code_train)->Name("drkd_instance/code/train/2levels_b2_100boxes")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(code_maps)->Name("drkd_instance/code/maps/2levels_b2_100boxes")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(paper_train)->Name("drkd_instance/paper/train/2levels_b2_100boxes")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
