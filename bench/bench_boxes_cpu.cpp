// Host benchmarks of the DETR box pieces at DETRDistill's shapes (batch 2, 300 queries, 80 classes):
//   giou_loss fwd+bwd over 600 matched pairs (mmdet form, gradients to the predictions),
//   matching_cost [2, 300, 20] for the mmdet HungarianAssigner (focal) and DETRDistill (soft-BCE,
//   300 teacher targets per image: the product form), pairwise generalized_box_iou [300, 20] x 2.
// bench/compare_boxes_torch.py runs the same cases with torchvision / PyTorch eager.
//
//   OMP_NUM_THREADS=1 ./kdloss_bench_boxes_cpu --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/losses/detr/detr.hpp"
#include "kdloss/ops/boxes.hpp"

namespace {

std::vector<float> cxcywh(std::size_t n, int seed) {
  std::vector<float> b(4 * n);
  for (std::size_t i = 0; i < n; ++i) {
    const float u = 0.5f * (kdloss_bench::fill_value(4 * i, seed) + 1.0f);
    const float v = 0.5f * (kdloss_bench::fill_value(4 * i + 1, seed) + 1.0f);
    b[4 * i] = 0.2f + 0.6f * u, b[4 * i + 1] = 0.2f + 0.6f * v;
    b[4 * i + 2] = 0.05f + 0.2f * u * v, b[4 * i + 3] = 0.05f + 0.2f * (1 - u * v);
  }
  return b;
}

void BM_giou_loss(benchmark::State& state) {
  const std::int64_t n = 600;
  auto p = cxcywh(n, 1), t = cxcywh(n, 2);
  std::vector<float> gp(p.size());
  float loss = 0;
  kdloss::ops::GIoULossArgs<float> a;
  a.pred = kdloss::host_view<const float>(p.data(), {n, 4});
  a.target = kdloss::host_view<const float>(t.data(), {n, 4});
  a.out = kdloss::host_scalar(&loss);
  a.grad_pred = kdloss::host_view(gp.data(), {n, 4});
  a.options.form = kdloss::ops::OverlapForm::mmdet;
  a.options.eps = 1e-6;
  a.options.format = kdloss::ops::BoxFormat::cxcywh;
  for (auto _ : state) {
    kdloss::ops::giou_loss(a, kdloss::Mode::forward_backward);
    benchmark::DoNotOptimize(loss);
  }
}
BENCHMARK(BM_giou_loss)->Name("giou_loss/600_pairs/fwd_bwd")->Unit(benchmark::kMicrosecond);

void cost_case(benchmark::State& state, bool soft) {
  const std::int64_t B = 2, Q = 300, C = 80, per = soft ? 300 : 20, T = B * per;
  std::vector<float> logits(static_cast<std::size_t>(B * Q * C)), probs(static_cast<std::size_t>(T * C));
  for (std::size_t i = 0; i < logits.size(); ++i) logits[i] = 4 * kdloss_bench::fill_value(i, 3);
  for (std::size_t i = 0; i < probs.size(); ++i) probs[i] = 0.5f * (kdloss_bench::fill_value(i, 4) + 1);
  auto boxes = cxcywh(static_cast<std::size_t>(B * Q), 5), tb = cxcywh(static_cast<std::size_t>(T), 6);
  for (std::size_t i = 0; i < tb.size(); i += 4) {  // pixel xyxy in a 640 x 480 image
    const float cx = tb[i], cy = tb[i + 1], w = tb[i + 2], h = tb[i + 3];
    tb[i] = (cx - w / 2) * 640, tb[i + 1] = (cy - h / 2) * 480, tb[i + 2] = (cx + w / 2) * 640,
    tb[i + 3] = (cy + h / 2) * 480;
  }
  std::vector<std::int64_t> labels(static_cast<std::size_t>(T)), offsets = {0, per, 2 * per};
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i * 7 % C);
  std::vector<float> sizes = {480, 640, 480, 640}, out(static_cast<std::size_t>(B * Q * per));
  kdloss::detr::MatchingCostArgs<float> a;
  a.pred_logits = kdloss::host_view<const float>(logits.data(), {B, Q, C});
  a.pred_boxes = kdloss::host_view<const float>(boxes.data(), {B, Q, 4});
  if (soft) a.target_probs = kdloss::host_view<const float>(probs.data(), {T, C});
  else a.target_labels = kdloss::host_view<const std::int64_t>(labels.data(), {T});
  a.target_boxes = kdloss::host_view<const float>(tb.data(), {T, 4});
  a.targets = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(offsets.data(), {3})};
  a.sizes = kdloss::host_view<const float>(sizes.data(), {B, 2});
  a.out = kdloss::host_view(out.data(), {B, Q, per});
  a.options = soft ? kdloss::detr::MatchingCostOptions::detrdistill() : kdloss::detr::MatchingCostOptions::mmdet_hungarian();
  kdloss::detail::HostScratch ws;
  const std::size_t bytes = kdloss::detr::matching_cost_workspace_bytes(a);
  const kdloss::Exec exec{kdloss::Workspace{ws.get(bytes), bytes}};
  for (auto _ : state) {
    kdloss::detr::matching_cost(a, kdloss::Mode::forward, exec);
    benchmark::DoNotOptimize(out.data());
  }
}
void BM_cost_focal(benchmark::State& state) { cost_case(state, false); }
void BM_cost_soft(benchmark::State& state) { cost_case(state, true); }
BENCHMARK(BM_cost_focal)->Name("matching_cost/mmdet_focal/2x300x20")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cost_soft)->Name("matching_cost/detrdistill_soft_bce/2x300x300")->Unit(benchmark::kMicrosecond);

void BM_pairwise(benchmark::State& state) {
  const std::int64_t B = 2, N = 300, M = 20;
  auto a = cxcywh(static_cast<std::size_t>(B * N), 7), b = cxcywh(static_cast<std::size_t>(B * M), 8);
  std::vector<float> out(static_cast<std::size_t>(B * N * M));
  kdloss::ops::BoxOverlapOptions o;
  o.format = kdloss::ops::BoxFormat::cxcywh;
  for (auto _ : state) {
    kdloss::ops::generalized_box_iou(kdloss::host_view<const float>(a.data(), {B, N, 4}),
                                     kdloss::host_view<const float>(b.data(), {B, M, 4}),
                                     kdloss::host_view(out.data(), {B, N, M}), o);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_pairwise)->Name("generalized_box_iou/2x300x20")->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
