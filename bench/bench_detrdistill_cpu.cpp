// Host benchmarks of the DETRDistill losses at the official code's sizes (Deformable DETR, 800x1333 input,
// batch 2, 300 queries, 80 classes, 256 channels, 6 decoder layers), float:
// - feature/*: detr::target_aware_feature_loss over 6 layers x 4 neck levels (strides 8..64: 100x167,
//   50x84, 25x42, 13x21), top-100, forward_backward (value + grad of the 4 student maps); "forward" the value.
// - contrastive: detr::contrastive_query_loss, 6 layers x [600, 512] projections, forward_backward.
// - logits: detr::logits_distillation_loss, 6 layers, 300 x 300 x 80: pseudo-targets, cost, assignment, loss,
//   forward_backward.
// Counter: the workspace bytes the call needs.
//
//   OMP_NUM_THREADS=1 ./kdloss_bench_detrdistill_cpu --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/losses/detr/contrastive.hpp"
#include "kdloss/losses/detr/feature_distillation.hpp"
#include "kdloss/losses/detr/logits_distillation.hpp"

namespace {

std::vector<float> filled(std::int64_t n, std::uint64_t seed, float scale = 1.f, float offset = 0.f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = kdloss_bench::fill_value(i, seed) * scale + offset;
  return v;
}

struct FeatureCase {
  static constexpr std::int64_t K = 6, B = 2, Q = 300, C = 80, D = 256;
  const std::int64_t H[4] = {100, 50, 25, 13}, W[4] = {167, 84, 42, 21};
  std::vector<float> scores = filled(K * B * Q * C, 1, 0.5f, 0.5f), boxes, queries = filled(K * B * Q * D, 3);
  std::vector<float> gt = {100, 100, 400, 300, 500, 200, 900, 700, 50, 600, 300, 790};
  std::vector<std::int64_t> offsets = {0, 2, 3};
  std::vector<std::vector<float>> ft, fs, gs;
  kdloss::detr::TargetAwareFeatureArgs<float> args;
  float loss = 0;
  FeatureCase() {
    const auto r = filled(K * B * Q * 4, 2, 0.5f, 0.5f);
    boxes.resize(r.size());
    for (std::size_t i = 0; i < r.size(); i += 4) {
      boxes[i] = 1000 * r[i];
      boxes[i + 1] = 600 * r[i + 1];
      boxes[i + 2] = boxes[i] + 20 + 300 * r[i + 2];
      boxes[i + 3] = boxes[i + 1] + 20 + 200 * r[i + 3];
    }
    args.teacher_scores = kdloss::host_view<const float>(scores.data(), {K, B, Q, C});
    args.teacher_boxes = kdloss::host_view<const float>(boxes.data(), {K, B, Q, 4});
    args.teacher_queries = kdloss::host_view<const float>(queries.data(), {K, B, Q, D});
    args.gt_boxes = kdloss::host_view<const float>(gt.data(), {3, 4});
    args.gt_images = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(offsets.data(), {3})};
    for (int l = 0; l < 4; ++l) {
      const kdloss::Dims d{B, D, H[l], W[l]};
      ft.push_back(filled(d.product(), 10 + l));
      fs.push_back(filled(d.product(), 20 + l));
      gs.emplace_back(static_cast<std::size_t>(d.product()));
    }
    for (int l = 0; l < 4; ++l) {
      const kdloss::Dims d{B, D, H[l], W[l]};
      args.teacher_features.push_back(kdloss::host_view<const float>(ft[l].data(), d));
      args.student_features.push_back(kdloss::host_view<const float>(fs[l].data(), d));
      args.grad_student_features.push_back(kdloss::host_view(gs[l].data(), d));
    }
    args.out = kdloss::host_scalar(&loss);
  }
};

void BM_feature(benchmark::State& state, kdloss::Mode mode) {
  FeatureCase c;
  if (mode == kdloss::Mode::forward) c.args.grad_student_features.clear();
  for (auto _ : state) {
    kdloss::detr::target_aware_feature_loss(c.args, mode);
    benchmark::DoNotOptimize(c.loss);
  }
  state.counters["workspace_MiB"] =
      static_cast<double>(kdloss::detr::target_aware_feature_loss_workspace_bytes(c.args)) / (1 << 20);
}
BENCHMARK_CAPTURE(BM_feature, train_6x4, kdloss::Mode::forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_feature, forward_6x4, kdloss::Mode::forward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_contrastive(benchmark::State& state) {
  const std::int64_t K = 6, N = 600, D = 512;
  auto pt = filled(K * N * D, 1), ps = filled(K * N * D, 2);
  std::vector<float> gt(pt.size()), gs(pt.size());
  float loss = 0;
  kdloss::detr::ContrastiveQueryArgs<float> a;
  a.teacher = kdloss::host_view<const float>(pt.data(), {K, N, D});
  a.student = kdloss::host_view<const float>(ps.data(), {K, N, D});
  a.out = kdloss::host_scalar(&loss);
  a.grad_teacher = kdloss::host_view(gt.data(), {K, N, D});
  a.grad_student = kdloss::host_view(gs.data(), {K, N, D});
  for (auto _ : state) {
    kdloss::detr::contrastive_query_loss(a, kdloss::Mode::forward_backward);
    benchmark::DoNotOptimize(loss);
  }
  state.counters["workspace_MiB"] = static_cast<double>(kdloss::detr::contrastive_query_loss_workspace_bytes(a)) / (1 << 20);
}
BENCHMARK(BM_contrastive)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_logits(benchmark::State& state) {
  const std::int64_t K = 6, B = 2, Q = 300, C = 80;
  auto sl = filled(K * B * Q * C, 1, 2.f, -3.f), tl = filled(K * B * Q * C, 2, 2.f, -3.f);
  auto sb = filled(K * B * Q * 4, 3, 0.15f, 0.35f), tb = filled(K * B * Q * 4, 4, 0.15f, 0.35f);
  std::vector<float> hw = {800, 1067, 800, 1199}, gl(sl.size()), gb(sb.size());
  float loss = 0;
  kdloss::detr::LogitsDistillationArgs<float> a;
  a.student_logits = kdloss::host_view<const float>(sl.data(), {K, B, Q, C});
  a.student_boxes = kdloss::host_view<const float>(sb.data(), {K, B, Q, 4});
  a.teacher_logits = kdloss::host_view<const float>(tl.data(), {K, B, Q, C});
  a.teacher_boxes = kdloss::host_view<const float>(tb.data(), {K, B, Q, 4});
  a.sizes = kdloss::host_view<const float>(hw.data(), {B, 2});
  a.out = kdloss::host_scalar(&loss);
  a.grad_student_logits = kdloss::host_view(gl.data(), {K, B, Q, C});
  a.grad_student_boxes = kdloss::host_view(gb.data(), {K, B, Q, 4});
  for (auto _ : state) {
    kdloss::detr::logits_distillation_loss(a, kdloss::Mode::forward_backward);
    benchmark::DoNotOptimize(loss);
  }
}
BENCHMARK(BM_logits)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
