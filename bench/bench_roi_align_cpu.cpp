// Host benchmarks of ops::roi_align at DRKD's shapes: FPN levels P2 [2, 256, 200, 334] (spatial scale
// 1/4) and P3 [2, 256, 100, 167] (1/8) of an 800x1333 input, 100 ground-truth-like boxes per image
// (sides uniform in [32, 480] pixels, inside the image; the same generator as
// bench/compare_roi_align_torch.py), output 3x3, sampling_ratio -1, aligned False, float, NCHW.
// Per level: forward, backward, forward_backward, and forward_backward in max mode.
//
//   OMP_NUM_THREADS=2 ./kdloss_bench_roi_align_cpu --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/ops/roi_align.hpp"

namespace {

struct RoiCase {
  std::string name;
  kdloss::Dims shape;
  double scale;
};

struct RoiBuffers {
  std::vector<float> x, boxes, y, gy, gx;
  kdloss::ops::RoiAlignArgs<float> args;
  std::vector<unsigned char> ws_storage;

  explicit RoiBuffers(const RoiCase& c) {
    const kdloss::Dims& s = c.shape;
    boxes = kdloss_bench::detection_boxes(s[0], 100, 7);
    const std::int64_t K = static_cast<std::int64_t>(boxes.size() / 5);
    const kdloss::Dims o{K, s[1], 3, 3};
    x = kdloss_bench::filled<float>(static_cast<std::size_t>(s.product()), 1);
    y.assign(static_cast<std::size_t>(o.product()), 0.f);
    gy = kdloss_bench::filled<float>(y.size(), 2);
    gx.assign(x.size(), 0.f);
    args.x = kdloss::host_view<const float>(x.data(), s);
    args.boxes = kdloss::host_view<const float>(boxes.data(), {K, 5});
    args.y = kdloss::host_view(y.data(), o);
    args.grad_y = kdloss::host_view<const float>(gy.data(), o);
    args.grad_x = kdloss::host_view(gx.data(), s);
    args.options.output_height = args.options.output_width = 3;
    args.options.spatial_scale = c.scale;
  }
};

void register_case(const RoiCase& c, const std::string& what) {
  const std::string name = "roi_align/" + c.name + "/" + what;
  benchmark::RegisterBenchmark(name.c_str(), [c, what](benchmark::State& state) {
    RoiBuffers b(c);
    auto args = b.args;
    kdloss::Mode mode = kdloss::Mode::forward_backward;
    if (what == "forward") mode = kdloss::Mode::forward;
    if (what == "backward") mode = kdloss::Mode::backward;
    if (what == "forward_backward_max") args.options.pool_mode = kdloss::ops::RoiPoolMode::max;
    kdloss::detail::HostScratch scratch;
    const std::size_t bytes = kdloss::ops::roi_align_workspace_bytes(args);
    const kdloss::Exec exec{kdloss::Workspace{scratch.get(bytes), bytes}};
    kdloss::ops::roi_align(args, mode, exec);  // warms caches and threads
    for (auto _ : state) kdloss::ops::roi_align(args, mode, exec);
    state.SetLabel("threads=" + std::to_string(kdloss_bench::host_threads()));
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<RoiCase> cases{{"P2_2x256x200x334", {2, 256, 200, 334}, 0.25},
                                   {"P3_2x256x100x167", {2, 256, 100, 167}, 0.125}};
  for (const auto& c : cases)
    for (const char* what : {"forward", "backward", "forward_backward", "forward_backward_max"}) register_case(c, what);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
