// Host benchmarks of the SSIM family (float): kornia's ssim_loss (11x11 window, reflect 'same',
// mean) forward, backward and fused forward_backward at the FPN levels of an 800x1333 input
// (batch 2, C = 256; P2-P5 is the whole pyramid, one call per level) and small shapes;
// ms_ssim_l1_loss (window 5) and the ops::gaussian_filter building block; next to baselines that
// move the same bytes with no arithmetic. bytes/s counts student + teacher reads (+ the gradient
// write). The calls get a reused 256-byte aligned workspace of the size their query asks for (the
// engine's per-thread rows: their only memory besides inputs and outputs).
//
//   ./kdloss_bench_ssim_cpu --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/losses/ssim/ssim.hpp"
#include "kdloss/ops/filter.hpp"

namespace {

using kdloss_bench::HostLevel;
using Level = HostLevel<float>;

constexpr kdloss_bench::Traffic kForward{2, 0};
constexpr kdloss_bench::Traffic kWithGradient{2, 1};

/// A 256-byte aligned host workspace reused across iterations (grown on the untimed first pass).
kdloss::Workspace workspace(std::size_t bytes) {
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  static std::unique_ptr<void, Free> buffer;
  static std::size_t size = 0;
  if (bytes > size) {
    buffer.reset(std::aligned_alloc(256, (bytes + 255) / 256 * 256));
    size = bytes;
  }
  return kdloss::Workspace{buffer.get(), size};
}
kdloss::Exec exec_for(std::size_t bytes) { return kdloss::Exec{workspace(bytes), kdloss::Stream()}; }

kdloss::MsSsimL1Options mixture_options() {
  kdloss::MsSsimL1Options o;
  o.ms_ssim.window_size = 5;  // FPN levels are far below pytorch-msssim's 161-pixel minimum for 11
  return o;
}

/// Registers one benchmark whose call gets the workspace `query` asks for.
template <class Body, class Query>
void add(const std::string& name, const kdloss_bench::ShapeCase& c, kdloss_bench::Traffic traffic, Body body,
         Query query) {
  kdloss_bench::register_host<float>(name, c, traffic, [body, query](Level& l) {
    const std::size_t bytes = query(l);
    body(l, exec_for(bytes));
  });
}

void register_ssim_benchmarks() {
  const kdloss::SsimOptions kornia;  // window 11, sigma 1.5, reflect 'same', max_val 1, eps 1e-12, clamp
  auto ssim_bytes = [kornia](Level& l) { return kdloss::ssim_loss_workspace_bytes(l.s(), kornia); };
  for (const auto& c : kdloss_bench::feature_cases()) {
    kdloss_bench::register_host_baselines<float>(c);
    add("ssim_loss/forward", c, kForward,
        [kornia](Level& l, const kdloss::Exec& ex) {
          kdloss::ssim_loss(l.s(), l.t(), l.out(), kornia, kdloss::Reduction::mean, ex);
        },
        ssim_bytes);
    add("ssim_loss/backward", c, kWithGradient,
        [kornia](Level& l, const kdloss::Exec& ex) {
          kdloss::ssim_loss_backward(l.s(), l.t(), l.up(), l.g(), kornia, kdloss::Reduction::mean, ex);
        },
        ssim_bytes);
    add("ssim_loss/forward_backward", c, kWithGradient,
        [kornia](Level& l, const kdloss::Exec& ex) {
          kdloss::ssim_loss_forward_backward(l.s(), l.t(), l.out(), l.g(), kornia, kdloss::Reduction::mean, ex);
        },
        ssim_bytes);
    add("ms_ssim_l1/forward_backward", c, kWithGradient,
        [](Level& l, const kdloss::Exec& ex) {
          kdloss::ms_ssim_l1_loss_forward_backward(l.s(), l.t(), l.out(), l.g(), mixture_options(), ex);
        },
        [](Level& l) { return kdloss::ms_ssim_l1_loss_workspace_bytes(l.s(), mixture_options()); });
    add("gaussian_filter/forward", c, kdloss_bench::Traffic{1, 1},
        [](Level& l, const kdloss::Exec& ex) { kdloss::ops::gaussian_filter(l.s(), l.g(), {}, ex); },
        [](Level& l) { return kdloss::ops::gaussian_filter_workspace_bytes(l.s()); });
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_ssim_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("kdloss_host_threads", std::to_string(kdloss_bench::host_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
