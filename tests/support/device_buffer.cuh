// RAII device memory for the *_cuda.cu test helpers.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace kdloss_test {

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  std::size_t count = 0;
  explicit DeviceBuffer(std::size_t n) : count(n) {
    if (n) cuda_check(cudaMalloc(&ptr, n * sizeof(T)), "cudaMalloc");
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    if (count) cuda_check(cudaMemcpy(ptr, host.data(), count * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  std::vector<T> to_host() const {
    std::vector<T> host(count);
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    if (count) cuda_check(cudaMemcpy(host.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return host;
  }
};

/// Test values (kept in double) in a device element type: float, double, or __half / __nv_bfloat16
/// through float.
template <class T>
std::vector<T> from_double(const std::vector<double>& v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else {
    std::vector<T> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r[i] = T(static_cast<float>(v[i]));
    return r;
  }
}
/// Device results back in double for comparison with the references.
template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else {
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r[i] = static_cast<double>(static_cast<float>(v[i]));
    return r;
  }
}

/// Appends a device buffer's values, in double, to a GPU helper's results.
template <class T>
void append_double(std::vector<double>& r, const DeviceBuffer<T>& b) {
  const auto h = to_double(b.to_host());
  r.insert(r.end(), h.begin(), h.end());
}

/// Workspace on the device sized by a query.
struct DeviceWorkspace {
  DeviceBuffer<unsigned char> buffer;
  explicit DeviceWorkspace(std::size_t bytes) : buffer(bytes) {}
};

}  // namespace kdloss_test
