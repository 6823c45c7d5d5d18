// GPU benchmarks of ops::roi_align at DRKD's shapes (the cases of bench_roi_align_cpu.cpp: P2 and P3
// of an 800x1333 input at batch 2, C = 256, 100 boxes per image, output 3x3), float and half, NCHW:
// forward, the deterministic backward, forward_backward and forward_backward in max mode, timed with
// CUDA events. bench/compare_roi_align_torch.py --device cuda times torchvision's atomic backward on
// the same shapes.
//
//   ./kdloss_bench_roi_align_cuda --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <cuda_fp16.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_common_cuda.cuh"
#include "kdloss/ops/roi_align.hpp"

namespace {

struct RoiCase {
  std::string name;
  kdloss::Dims shape;
  double scale;
};

template <class T>
void register_case(const RoiCase& c, const std::string& what, const std::string& dtype) {
  const std::string name = "roi_align/" + c.name + "/" + dtype + "/" + what;
  benchmark::RegisterBenchmark(name.c_str(), [c, what](benchmark::State& state) {
    const kdloss::Dims& s = c.shape;
    const auto hb = kdloss_bench::detection_boxes(s[0], 100, 7);
    const std::int64_t K = static_cast<std::int64_t>(hb.size() / 5);
    const kdloss::Dims o{K, s[1], 3, 3};
    const auto hx = kdloss_bench::filled<T>(static_cast<std::size_t>(s.product()), 1);
    const auto hgy = kdloss_bench::filled<T>(static_cast<std::size_t>(o.product()), 2);
    std::vector<T> hboxes(hb.size());
    for (std::size_t i = 0; i < hb.size(); ++i) hboxes[i] = T(hb[i]);
    kdloss_bench::DeviceArray<T> x(hx.size()), y(hgy.size()), gy(hgy.size()), gx(hx.size()), boxes(hb.size());
    x.upload(hx);
    gy.upload(hgy);
    boxes.upload(hboxes);
    const kdloss::Device dev = kdloss::Device::cuda(0);
    kdloss::ops::RoiAlignArgs<T> args;
    args.x = kdloss::View<const T>(x.get(), s, kdloss::contiguous_strides(s), dev);
    args.boxes = kdloss::View<const T>(boxes.get(), kdloss::Dims{K, 5}, kdloss::Dims{5, 1}, dev);
    args.y = kdloss::View<T>(y.get(), o, kdloss::contiguous_strides(o), dev);
    args.grad_y = kdloss::View<const T>(gy.get(), o, kdloss::contiguous_strides(o), dev);
    args.grad_x = kdloss::View<T>(gx.get(), s, kdloss::contiguous_strides(s), dev);
    args.options.output_height = args.options.output_width = 3;
    args.options.spatial_scale = c.scale;
    kdloss::Mode mode = kdloss::Mode::forward_backward;
    if (what == "forward") mode = kdloss::Mode::forward;
    if (what == "backward") mode = kdloss::Mode::backward;
    if (what == "forward_backward_max") args.options.pool_mode = kdloss::ops::RoiPoolMode::max;
    kdloss_bench::DeviceArray<unsigned char> ws(kdloss::ops::roi_align_workspace_bytes(args) + 1);
    const auto run = [&](cudaStream_t stream) {
      kdloss::ops::roi_align(args, mode, kdloss::Exec{{ws.get(), ws.size()}, kdloss::Stream(stream)});
    };
    kdloss_bench::time_on_stream(state, run, run);  // the first call warms up
    state.SetLabel(kdloss_bench::device_name());
  })->UseManualTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<RoiCase> cases{{"P2_2x256x200x334", {2, 256, 200, 334}, 0.25},
                                   {"P3_2x256x100x167", {2, 256, 100, 167}, 0.125}};
  for (const auto& c : cases)
    for (const char* what : {"forward", "backward", "forward_backward", "forward_backward_max"}) {
      register_case<float>(c, what, "float");
      register_case<__half>(c, what, "half");
    }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
