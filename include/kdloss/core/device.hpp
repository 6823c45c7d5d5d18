// kdloss/core/device.hpp: where a buffer lives, and the stream work is ordered on.
#pragma once
#include <string>

#include "kdloss/config.hpp"
#include "kdloss/core/error.hpp"

namespace kdloss {  // a vocabulary type: outside the ABI namespace (core/error.hpp)

enum class DeviceKind { host, cuda };

/// A buffer's location: host memory, or the memory of CUDA device `index`.
struct Device {
  DeviceKind kind = DeviceKind::host;
  int index = 0;

  static constexpr Device host() { return Device{DeviceKind::host, 0}; }
  static constexpr Device cuda(int index = 0) { return Device{DeviceKind::cuda, index}; }
  constexpr bool is_host() const { return kind == DeviceKind::host; }
  constexpr bool is_cuda() const { return kind == DeviceKind::cuda; }
  friend constexpr bool operator==(Device a, Device b) {
    return a.kind == b.kind && (a.kind == DeviceKind::host || a.index == b.index);
  }
  friend constexpr bool operator!=(Device a, Device b) { return !(a == b); }
  std::string str() const { return is_host() ? std::string("host") : "cuda:" + std::to_string(index); }
};

/// A CUDA stream handle kept as an opaque pointer, so host-only code needs no CUDA headers.
/// A default Stream is the legacy default stream. Ignored by the host backend.
///
///   cudaStream_t s; cudaStreamCreate(&s);
///   kdloss::mse_loss(student, teacher, out, {}, {{workspace, bytes}, kdloss::Stream(s)});
struct Stream {
  void* handle = nullptr;
  constexpr Stream() = default;
  template <class StreamPtr>
  explicit Stream(StreamPtr* s) : handle(static_cast<void*>(s)) {}
};

}  // namespace kdloss
