// Device-side counterparts of bench_common.hpp: device buffers per shape case, CUDA-event timing
// and the registration helper. A new GPU loss benchmark is one register_cuda(...) call per entry
// point and shape case; the body enqueues work on the stream it is given:
//
//   for (const auto& c : kdloss_bench::feature_cases())
//     kdloss_bench::register_cuda<float>("mse/forward", c, {2, 0},
//         [](kdloss_bench::DeviceLevel<float>& l, cudaStream_t stream) {
//           kdloss::mse_loss(l.s(), l.t(), l.out(), kdloss::Reduction::mean,
//                            l.exec(stream, kdloss::mse_loss_workspace_bytes(l.s())));
//         });
#pragma once
#include <cub/block/block_reduce.cuh>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"

namespace kdloss_bench {

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

/// RAII device allocation of `count` elements.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t count) : count_(count) {
    if (count) cuda_check(cudaMalloc(&ptr_, count * sizeof(T)), "cudaMalloc");
  }
  ~DeviceArray() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceArray(DeviceArray&& o) noexcept : ptr_(o.ptr_), count_(o.count_) { o.ptr_ = nullptr, o.count_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(count_, o.count_);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return ptr_; }
  std::size_t size() const { return count_; }
  void upload(const std::vector<T>& host) {
    cuda_check(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  }

 private:
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

/// One tensor's worth of device buffers (student, teacher, gradient, one-element output and
/// upstream gradient) and a workspace that grows to what the calls ask for.
template <class T>
struct DeviceLevel {
  kdloss::Dims shape;
  DeviceArray<T> student, teacher, grad, value, upstream;
  DeviceArray<unsigned char> workspace;
  DeviceArray<float> read_sum_result;  // accumulator of the memread baseline


  explicit DeviceLevel(const kdloss::Dims& s)
      : shape(s),
        student(static_cast<std::size_t>(s.product())),
        teacher(static_cast<std::size_t>(s.product())),
        grad(static_cast<std::size_t>(s.product())),
        value(1),
        upstream(1),
        read_sum_result(1) {
    const auto n = static_cast<std::size_t>(s.product());
    std::vector<T> host(n);
    for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<T>(fill_value(i, 1));
    student.upload(host);
    for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<T>(fill_value(i, 2));
    teacher.upload(host);
    cuda_check(cudaMemset(grad.get(), 0, n * sizeof(T)), "cudaMemset");
    upstream.upload(std::vector<T>{T(1)});
  }
  kdloss::View<const T> s() const { return kdloss::cuda_view<const T>(student.get(), shape); }
  kdloss::View<const T> t() const { return kdloss::cuda_view<const T>(teacher.get(), shape); }
  kdloss::View<T> g() const { return kdloss::cuda_view(grad.get(), shape); }
  kdloss::View<T> out() const { return kdloss::cuda_scalar(value.get()); }
  kdloss::View<const T> up() const { return kdloss::cuda_scalar<const T>(upstream.get()); }
  std::int64_t numel() const { return shape.product(); }

  /// The call's Exec on `stream` with at least `bytes` of workspace. Grows (cudaMalloc, which
  /// synchronises) only on the first, untimed pass.
  kdloss::Exec exec(cudaStream_t stream, std::size_t bytes) {
    if (workspace.size() < bytes) workspace = DeviceArray<unsigned char>(bytes);
    return kdloss::Exec{kdloss::Workspace{workspace.get(), workspace.size()}, kdloss::Stream(stream)};
  }
};

template <class T>
struct DeviceFeatures {
  std::vector<DeviceLevel<T>> levels;
};

/// Device buffers of `shape_case`, built on first use; one case on the device at a time.
template <class T>
DeviceFeatures<T>& device_features(const ShapeCase& shape_case) {
  static std::string cached_name;
  static std::unique_ptr<DeviceFeatures<T>> cached;
  if (!cached || cached_name != shape_case.name) {
    cached.reset();
    cached = std::make_unique<DeviceFeatures<T>>();
    cached->levels.reserve(shape_case.shapes.size());
    for (const auto& s : shape_case.shapes) cached->levels.emplace_back(s);
    cached_name = shape_case.name;
  }
  return *cached;
}

/// Times work enqueued on one stream with a pair of CUDA events.
class EventTimer {
 public:
  EventTimer() {
    cuda_check(cudaEventCreate(&start_), "cudaEventCreate");
    cuda_check(cudaEventCreate(&stop_), "cudaEventCreate");
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start(cudaStream_t s) { cuda_check(cudaEventRecord(start_, s), "cudaEventRecord"); }
  /// Seconds between start() and now on the stream; waits for the stream to get there.
  double stop(cudaStream_t s) {
    cuda_check(cudaEventRecord(stop_, s), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(stop_), "cudaEventSynchronize");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
    return static_cast<double>(ms) * 1e-3;
  }

 private:
  cudaEvent_t start_{}, stop_{};
};

inline std::string device_name() {
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "?";
  return prop.name;
}

/// On a stream of its own: `prepare(stream)` untimed (warm-up, reserves, lazy workspace growth), then
/// `enqueue(stream)` once per iteration between two CUDA events; the elapsed GPU time is the iteration's.
template <class Prepare, class Enqueue>
void time_on_stream(benchmark::State& state, Prepare&& prepare, Enqueue&& enqueue) {
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  prepare(stream);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  EventTimer timer;
  for (auto _ : state) {
    timer.start(stream);
    enqueue(stream);
    state.SetIterationTime(timer.stop(stream));
  }
  cuda_check(cudaStreamDestroy(stream), "cudaStreamDestroy");
}

/// Registers "<name>/<case>" timed on the GPU: each iteration enqueues `body(level, stream)` for
/// every tensor of the case between two events; the elapsed GPU time is the iteration's time.
template <class T, class Body>
void register_cuda(const std::string& name, const ShapeCase& shape_case, Traffic traffic, Body body) {
  benchmark::RegisterBenchmark((name + "/" + shape_case.name).c_str(),
                               [shape_case, traffic, body](benchmark::State& state) {
                                 auto& features = device_features<T>(shape_case);
                                 const auto all = [&](cudaStream_t stream) {
                                   for (auto& level : features.levels) body(level, stream);
                                 };
                                 time_on_stream(state, all, all);
                                 report(state, shape_case, traffic, sizeof(T), device_name());
                               })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

// ---- device baselines: the same bytes moved without any loss arithmetic ----

namespace baseline_kernels {

inline constexpr int kThreads = 256;

template <class T>
__global__ void __launch_bounds__(kThreads) read_sum(const T* a, const T* b, std::int64_t n, float* result) {
  float local = 0;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    local += static_cast<float>(a[i]) + static_cast<float>(b[i]);
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const float block_sum = Reduce(temp).Sum(local);
  if (threadIdx.x == 0) atomicAdd(result, block_sum);
}

template <class T>
__global__ void __launch_bounds__(kThreads) subtract(const T* a, const T* b, T* out, std::int64_t n) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    out[i] = a[i] - b[i];
}

/// Enough blocks to fill the GPU several times over, never more than the work.
inline int blocks_for(std::int64_t n) {
  static const int sms = [] {
    int device = 0, count = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device);
    return count > 0 ? count : 1;
  }();
  const std::int64_t want = (n + kThreads - 1) / kThreads;
  const std::int64_t cap = static_cast<std::int64_t>(sms) * 16;
  return static_cast<int>(want < 1 ? 1 : (want > cap ? cap : want));
}

}  // namespace baseline_kernels

/// Registers baseline/memread (sum of student and teacher), baseline/memcpy (device-to-device
/// copy of student) and baseline/read2_write1 (gradient = student - teacher) for one case.
template <class T>
void register_cuda_baselines(const ShapeCase& shape_case) {
  using namespace baseline_kernels;
  register_cuda<T>("baseline/memread", shape_case, {2, 0}, [](DeviceLevel<T>& l, cudaStream_t stream) {
    read_sum<<<blocks_for(l.numel()), kThreads, 0, stream>>>(l.student.get(), l.teacher.get(), l.numel(),
                                                               l.read_sum_result.get());
    cuda_check(cudaGetLastError(), "read_sum");
  });
  register_cuda<T>("baseline/memcpy", shape_case, {1, 1}, [](DeviceLevel<T>& l, cudaStream_t stream) {
    cuda_check(cudaMemcpyAsync(l.grad.get(), l.student.get(), static_cast<std::size_t>(l.numel()) * sizeof(T),
                               cudaMemcpyDeviceToDevice, stream),
               "cudaMemcpyAsync");
  });
  register_cuda<T>("baseline/read2_write1", shape_case, {2, 1}, [](DeviceLevel<T>& l, cudaStream_t stream) {
    subtract<<<blocks_for(l.numel()), kThreads, 0, stream>>>(l.student.get(), l.teacher.get(), l.grad.get(),
                                                             l.numel());
    cuda_check(cudaGetLastError(), "subtract");
  });
}

}  // namespace kdloss_bench
