// Shared pieces of the kdloss benchmarks: detection shapes, host buffers, traffic counters and
// the registration helper. A new loss benchmark is one register_host(...) call per entry point
// and shape case:
//
//   for (const auto& c : kdloss_bench::feature_cases())
//     kdloss_bench::register_host<float>("mse_sum/forward", c, {2, 0}, [](kdloss_bench::HostLevel<float>& l) {
//       kdloss::mse_loss(l.s(), l.t(), l.out(), kdloss::Reduction::sum);
//     });
//
// Buffers of one shape case are built once and reused by the benchmarks that follow it, so
// register case-major (every benchmark of P2, then of P3, ...) to fill the big levels once.
#pragma once
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kdloss/backend/cpu/executor.hpp"
#include "kdloss/core/view.hpp"

#if KDLOSS_OPENMP
#include <omp.h>
#endif

namespace kdloss_bench {

// ---- shapes ----

/// One benchmark shape: a single tensor, or several run back to back (the whole FPN pyramid).
struct ShapeCase {
  std::string name;
  std::vector<kdloss::Dims> shapes;

  std::int64_t numel() const {
    std::int64_t n = 0;
    for (const auto& s : shapes) n += s.product();
    return n;
  }
};

/// FPN levels of an 800x1333 input at batch 2, C = 256 (strides 4, 8, 16, 32).
inline std::vector<ShapeCase> fpn_levels() {
  return {{"P2", {kdloss::Dims{2, 256, 200, 334}}},
          {"P3", {kdloss::Dims{2, 256, 100, 167}}},
          {"P4", {kdloss::Dims{2, 256, 50, 84}}},
          {"P5", {kdloss::Dims{2, 256, 25, 42}}}};
}

/// The whole pyramid as one case: a training step computes the loss on every level.
inline ShapeCase fpn_pyramid() {
  ShapeCase all{"P2-P5", {}};
  for (const auto& level : fpn_levels()) all.shapes.push_back(level.shapes[0]);
  return all;
}

/// Small shapes, where launch and thread start-up costs show (P5 itself is in fpn_levels).
inline std::vector<ShapeCase> small_cases() { return {{"1x64x16x16", {kdloss::Dims{1, 64, 16, 16}}}}; }

/// Every case of the feature benchmarks, largest first: P2, P3, P4, P5, P2-P5, then the small ones.
inline std::vector<ShapeCase> feature_cases() {
  auto cases = fpn_levels();
  cases.push_back(fpn_pyramid());
  for (auto& c : small_cases()) cases.push_back(std::move(c));
  return cases;
}

// ---- traffic ----

/// Full tensors read and written per element by one call (scalars ignored), for bytes/s counters.
/// forward with a reduction reads student and teacher: {2, 0}; backward and fused also write the
/// gradient: {2, 1}.
struct Traffic {
  int reads = 0;
  int writes = 0;
  std::int64_t bytes(std::int64_t numel, std::size_t element_size) const {
    return static_cast<std::int64_t>(reads + writes) * numel * static_cast<std::int64_t>(element_size);
  }
};

/// Threads the host loops run on (the library's OpenMP loops and the baselines alike).
inline int host_threads() {
#if KDLOSS_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Sets bytes/s from the traffic of one iteration, and a label naming the case and the threads.
inline void report(benchmark::State& state, const ShapeCase& shape_case, Traffic traffic, std::size_t element_size,
                   const std::string& label_suffix) {
  const std::int64_t bytes = traffic.bytes(shape_case.numel(), element_size);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.counters["elements"] = static_cast<double>(shape_case.numel());
  state.SetLabel(shape_case.name + " " + label_suffix);
}

/// Deterministic values in [-1, 1] without the cost of a random engine on 10^8 elements.
inline float fill_value(std::uint64_t i, std::uint64_t seed) {
  std::uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ (seed * 0xBF58476D1CE4E5B9ull);
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return static_cast<float>(static_cast<double>(x >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/// n values fill_value(i, seed) as T (the inputs and upstream gradients of the op benchmarks).
template <class T>
std::vector<T> filled(std::size_t n, std::uint64_t seed) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(fill_value(i, seed));
  return v;
}

/// Ground-truth-like boxes of an 800x1333 image: `per_image` per image, sides uniform in [32, 480]
/// pixels, inside the image, as [K, 5] rows (image index, x1, y1, x2, y2) grouped by image (the
/// generator of bench/compare_roi_align_torch.py).
inline std::vector<float> detection_boxes(std::int64_t images, std::int64_t per_image, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> side(32.0, 480.0), u(0.0, 1.0);
  std::vector<float> v;
  for (std::int64_t b = 0; b < images; ++b)
    for (std::int64_t k = 0; k < per_image; ++k) {
      const double w = side(gen), h = side(gen);
      const double x1 = u(gen) * (1333.0 - w), y1 = u(gen) * (800.0 - h);
      const float row[5] = {float(b), float(x1), float(y1), float(x1 + w), float(y1 + h)};
      v.insert(v.end(), row, row + 5);
    }
  return v;
}

// ---- host buffers ----

/// One tensor's worth of host buffers: student, teacher, gradient, and one-element output and
/// upstream gradient, with views ready to pass to a loss.
template <class T>
struct HostLevel {
  kdloss::Dims shape;
  std::vector<T> student, teacher, grad;
  T value = 0;
  T upstream = 1;

  explicit HostLevel(const kdloss::Dims& s) : shape(s) {
    const auto n = static_cast<std::size_t>(s.product());
    student.resize(n);
    teacher.resize(n);
    grad.assign(n, T(0));  // written now, so page faults stay out of the timed loop
    for (std::size_t i = 0; i < n; ++i) {
      student[i] = static_cast<T>(fill_value(i, 1));
      teacher[i] = static_cast<T>(fill_value(i, 2));
    }
  }
  kdloss::View<const T> s() const { return kdloss::host_view<const T>(student.data(), shape); }
  kdloss::View<const T> t() const { return kdloss::host_view<const T>(teacher.data(), shape); }
  kdloss::View<T> g() { return kdloss::host_view(grad.data(), shape); }
  kdloss::View<T> out() { return kdloss::host_scalar(&value); }
  kdloss::View<const T> up() const { return kdloss::host_scalar<const T>(&upstream); }
  std::int64_t numel() const { return shape.product(); }
};

template <class T>
struct HostFeatures {
  std::vector<HostLevel<T>> levels;
};

/// The buffers of `shape_case`, built on first use and kept until another case is asked for
/// (one case in memory at a time: P2-P5 alone is about 0.55 GB of float buffers).
template <class T>
HostFeatures<T>& host_features(const ShapeCase& shape_case) {
  static std::string cached_name;
  static std::unique_ptr<HostFeatures<T>> cached;
  if (!cached || cached_name != shape_case.name) {
    cached.reset();  // free the old case before allocating the new one
    cached = std::make_unique<HostFeatures<T>>();
    cached->levels.reserve(shape_case.shapes.size());
    for (const auto& s : shape_case.shapes) cached->levels.emplace_back(s);
    cached_name = shape_case.name;
  }
  return *cached;
}

/// Registers "<name>/<case>": `body(level)` runs once per tensor of the case per iteration.
/// Wall time is reported (the work runs on several threads); one untimed pass first warms
/// caches and the thread pool.
template <class T, class Body>
void register_host(const std::string& name, const ShapeCase& shape_case, Traffic traffic, Body body) {
  benchmark::RegisterBenchmark((name + "/" + shape_case.name).c_str(),
                               [shape_case, traffic, body](benchmark::State& state) {
                                 auto& features = host_features<T>(shape_case);
                                 for (auto& level : features.levels) body(level);
                                 for (auto _ : state)
                                   for (auto& level : features.levels) body(level);
                                 report(state, shape_case, traffic, sizeof(T),
                                        "threads=" + std::to_string(host_threads()));
                               })
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

// ---- host baselines: the same bytes moved without any loss arithmetic ----

/// Runs f(begin, end) over [0, n) split evenly between the host threads, with the library's
/// policy: one thread below kParallelThreshold elements.
template <class F>
double parallel_sum(std::int64_t n, F f) {
  double total = 0;
#if KDLOSS_OPENMP
#pragma omp parallel reduction(+ : total) if (n > kdloss::backend::cpu::kParallelThreshold)
  {
    const std::int64_t threads = omp_get_num_threads(), me = omp_get_thread_num();
    const std::int64_t begin = n * me / threads, end = n * (me + 1) / threads;
    total += f(begin, end);
  }
#else
  total = f(0, n);
#endif
  return total;
}

/// Reads student and teacher once, both streams side by side as a loss reads them (a vectorised
/// sum of s + t): the floor for any loss that reads them.
template <class T>
double memread(const HostLevel<T>& level) {
  const T* s = level.student.data();
  const T* t = level.teacher.data();
  return parallel_sum(level.numel(), [s, t](std::int64_t begin, std::int64_t end) {
    using Map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    return static_cast<double>((Map(s + begin, end - begin) + Map(t + begin, end - begin)).sum());
  });
}

/// Copies student into the gradient buffer: one read and one write per element.
template <class T>
void memcpy_student(HostLevel<T>& level) {
  const T* s = level.student.data();
  T* g = level.grad.data();
  parallel_sum(level.numel(), [s, g](std::int64_t begin, std::int64_t end) {
    std::copy(s + begin, s + end, g + begin);
    return 0.0;
  });
}

/// gradient = student - teacher: the traffic of a backward or fused pass (two reads, one write).
template <class T>
void read2_write1(HostLevel<T>& level) {
  const T* s = level.student.data();
  const T* t = level.teacher.data();
  T* g = level.grad.data();
  parallel_sum(level.numel(), [s, t, g](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) g[i] = s[i] - t[i];
    return 0.0;
  });
}

/// Registers baseline/memread, baseline/memcpy and baseline/read2_write1 for one case.
template <class T>
void register_host_baselines(const ShapeCase& shape_case) {
  register_host<T>("baseline/memread", shape_case, {2, 0},
                   [](HostLevel<T>& l) { benchmark::DoNotOptimize(memread(l)); });
  register_host<T>("baseline/memcpy", shape_case, {1, 1}, [](HostLevel<T>& l) {
    memcpy_student(l);
    benchmark::ClobberMemory();
  });
  register_host<T>("baseline/read2_write1", shape_case, {2, 1}, [](HostLevel<T>& l) {
    read2_write1(l);
    benchmark::ClobberMemory();
  });
}

}  // namespace kdloss_bench
