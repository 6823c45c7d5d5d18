// Host benchmarks of ops::non_local, forward + backward (every gradient: x and all parameters), with the
// official FBKD per-level settings on P2-P5 of an 800x1333 input (batch 2, C = 256):
//   P2 200x336 (m 64, s 8), P3 100x168 (m 64, s 4), P4 50x84 (m 128, s 2), P5 25x42 (m 128, s 2),
// in dot-product and embedded-Gaussian modes, per level and for the whole pyramid ("P2-P5").
// Counters: state_MB (the reserve), workspace_MB, tensors_MB (x, z, grad_z, grad_x, parameters and their
// gradients), maxrss_MB (the process's peak resident set: meaningful with one benchmark per process).
// bench/compare_non_local_torch.py runs mmcv's NonLocal2d eagerly on the same shapes.
//
// Also dot product at P2 without sub-sampling (N' = N), which eager cannot allocate.
//
//   OMP_NUM_THREADS=2 ./kdloss_bench_non_local_cpu --benchmark_filter='P2-P5' --benchmark_min_time=0.01
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_relation_common.hpp"
#include "kdloss/ops/non_local.hpp"

namespace {

struct Level {
  const char* name;
  std::int64_t h, w, m, s;
};
const Level kLevels[] = {{"P2", 200, 336, 64, 8}, {"P3", 100, 168, 64, 4}, {"P4", 50, 84, 128, 2}, {"P5", 25, 42, 128, 2}};
constexpr std::int64_t kBatch = 2, kChannels = 256;

std::vector<float> filled(std::int64_t n, std::uint64_t seed, float scale) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * kdloss_bench::fill_value(i, seed);
  return v;
}

using Aligned = kdloss_bench::AlignedBuffer;

/// One block's buffers and arguments at one level, forward + backward with every gradient.
struct Block {
  std::int64_t C = kChannels, m, H, W;
  std::vector<float> x, gz, z, gx, gw, gb, tw, tb, pw, pb, ow, ob, bw, bb, d_gw, d_gb, d_tw, d_tb, d_pw, d_pb, d_ow,
      d_ob, d_bw, d_bb;
  kdloss::ops::NonLocalArgs<float> a;
  std::unique_ptr<Aligned> reserve, ws;
  Block(const Level& l, kdloss::ops::NonLocalMode mode) : m(l.m), H(l.h), W(l.w) {
    const std::int64_t n = kBatch * C * H * W;
    const float wscale = 1.0f / 16.0f;  // 1/sqrt(C): scores of moderate size
    x = filled(n, 1, 1.f), gz = filled(n, 2, 1.f), z.resize(n), gx.resize(n);
    gw = filled(m * C, 3, wscale), gb = filled(m, 4, 0.1f), tw = filled(m * C, 5, wscale), tb = filled(m, 6, 0.1f);
    pw = filled(m * C, 7, wscale), pb = filled(m, 8, 0.1f), ow = filled(C * m, 9, 0.125f), ob = filled(C, 10, 0.1f);
    bw = filled(C, 11, 1.f), bb = filled(C, 12, 0.1f);
    for (auto* v : {&d_gw, &d_tw, &d_pw}) v->resize(m * C);
    for (auto* v : {&d_gb, &d_tb, &d_pb}) v->resize(m);
    d_ow.resize(C * m);
    for (auto* v : {&d_ob, &d_bw, &d_bb}) v->resize(C);
    using kdloss::host_view;
    const kdloss::Dims map{kBatch, C, H, W}, mc{m, C}, vm{m}, vc{C};
    a.x = host_view<const float>(x.data(), map);
    a.g_weight = host_view<const float>(gw.data(), mc), a.g_bias = host_view<const float>(gb.data(), vm);
    a.theta_weight = host_view<const float>(tw.data(), mc), a.theta_bias = host_view<const float>(tb.data(), vm);
    a.phi_weight = host_view<const float>(pw.data(), mc), a.phi_bias = host_view<const float>(pb.data(), vm);
    a.conv_out_weight = host_view<const float>(ow.data(), {C, m}), a.conv_out_bias = host_view<const float>(ob.data(), vc);
    a.bn_weight = host_view<const float>(bw.data(), vc), a.bn_bias = host_view<const float>(bb.data(), vc);
    a.z = host_view(z.data(), map);
    a.grad_z = host_view<const float>(gz.data(), map);
    a.grad_x = host_view(gx.data(), map);
    a.grad_g_weight = host_view(d_gw.data(), mc), a.grad_g_bias = host_view(d_gb.data(), vm);
    a.grad_theta_weight = host_view(d_tw.data(), mc), a.grad_theta_bias = host_view(d_tb.data(), vm);
    a.grad_phi_weight = host_view(d_pw.data(), mc), a.grad_phi_bias = host_view(d_pb.data(), vm);
    a.grad_conv_out_weight = host_view(d_ow.data(), {C, m}), a.grad_conv_out_bias = host_view(d_ob.data(), vc);
    a.grad_bn_weight = host_view(d_bw.data(), vc), a.grad_bn_bias = host_view(d_bb.data(), vc);
    a.options = kdloss::ops::non_local_fbkd_options(0);
    a.options.mode = mode;
    a.options.pool_g = a.options.pool_phi = l.s;
    reserve = std::make_unique<Aligned>(kdloss::ops::non_local_reserve_bytes(a));
    a.reserve = {reserve->data, reserve->bytes};
    ws = std::make_unique<Aligned>(kdloss::ops::non_local_workspace_bytes(a));
  }
  /// Forward (z, reserve), then backward reading the reserve: a training step's two calls.
  void step() {
    const kdloss::Exec exec{kdloss::Workspace{ws->data, ws->bytes}};
    kdloss::ops::non_local(a, kdloss::Mode::forward, exec);
    kdloss::ops::non_local(a, kdloss::Mode::backward, exec);
  }
  double tensor_bytes() const {
    std::size_t n = 0;
    for (const auto* v : {&x, &gz, &z, &gx, &gw, &gb, &tw, &tb, &pw, &pb, &ow, &ob, &bw, &bb, &d_gw, &d_gb, &d_tw,
                          &d_tb, &d_pw, &d_pb, &d_ow, &d_ob, &d_bw, &d_bb})
      n += v->size() * sizeof(float);
    return static_cast<double>(n);
  }
};

void register_levels(kdloss::ops::NonLocalMode mode, const char* mode_name, std::vector<Level> levels,
                     const std::string& label) {
  const std::string name = std::string("non_local/forward_backward/") + mode_name + "/" + label;
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    // Blocks built one level at a time, as a detector's loop over levels would (peak: one level's state).
    double state_mb = 0, ws_mb = 0, tensors_mb = 0;
    for (auto _ : state) {
      for (const Level& l : levels) {
        state.PauseTiming();
        Block b(l, mode);
        state.ResumeTiming();
        b.step();
        benchmark::DoNotOptimize(b.z.data());
        state_mb = std::max(state_mb, static_cast<double>(b.reserve->bytes) / 1e6);
        ws_mb = std::max(ws_mb, static_cast<double>(b.ws->bytes) / 1e6);
        tensors_mb = std::max(tensors_mb, b.tensor_bytes() / 1e6);
      }
    }
    state.counters["state_MB"] = state_mb;
    state.counters["workspace_MB"] = ws_mb;
    state.counters["tensors_MB"] = tensors_mb;
    state.counters["maxrss_MB"] = kdloss_bench::peak_rss_mb();
    state.counters["threads"] = kdloss_bench::host_threads();
  })->Unit(benchmark::kMillisecond)->UseRealTime();
}

const bool registered = [] {
  for (auto [mode, mode_name] : {std::pair{kdloss::ops::NonLocalMode::dot_product, "dot_product"},
                                 std::pair{kdloss::ops::NonLocalMode::embedded_gaussian, "embedded_gaussian"}}) {
    register_levels(mode, mode_name, {std::begin(kLevels), std::end(kLevels)}, "P2-P5");
    for (const Level& l : kLevels)
      register_levels(mode, mode_name, {l}, std::string(l.name) + ",N=" + std::to_string(l.h * l.w) +
                                                ",N'=" + std::to_string((l.h / l.s) * (l.w / l.s)));
  }
  // Dot product at P2 without sub-sampling (N' = N): eager's relation matrix alone would be B N N' 4 = 36 GB.
  const Level full{"P2", 200, 336, 64, 1};
  register_levels(kdloss::ops::NonLocalMode::dot_product, "dot_product", {full}, "P2,N=67200,N'=67200");
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
