// kdloss/interop/dlpack.hpp: an optional adapter from DLPack tensors to kdloss views.
//
// Any framework that exports DLPack (PyTorch, JAX, CuPy, TensorFlow, Paddle, NumPy) can hand its
// buffers to kdloss through this header: a DLTensor becomes a validated View<T> (dtype, device,
// byte offset, strides, alignment), with no copy. It is not part of the umbrella header: include it
// yourself, after a DLPack header if you have one of your own.
//
//   #include <dlpack/dlpack.h>              // or PyTorch's <ATen/dlpack.h>: same structs
//   #include <kdloss/interop/dlpack.hpp>
//
//   DLManagedTensor* s = ...;               // e.g. torch.utils.dlpack.to_dlpack(x) on the Python side
//   auto student = kdloss::interop::from_dlpack<const float>(s->dl_tensor, "student");
//   kdloss::mse_loss(student, teacher, kdloss::host_scalar(&loss));
//
// The view borrows the memory: keep the DLPack tensor (and its owner) alive while it is used.
// Works with DLPack 0.6 and later (DLDevice, kDLCUDA); DLManagedTensorVersioned (DLPack >= 1.0)
// is accepted too, and its read-only flag is honoured.
#pragma once

#if !defined(DLPACK_DLPACK_H_)  // include guard of both <dlpack/dlpack.h> and <ATen/dlpack.h>
#if defined(__has_include)
#if __has_include(<dlpack/dlpack.h>)
#include <dlpack/dlpack.h>
#endif
#endif
#endif
#if !defined(DLPACK_DLPACK_H_)
#error "kdloss/interop/dlpack.hpp needs a DLPack header: install dlpack (Debian: libdlpack-dev), or include <ATen/dlpack.h> (PyTorch) or your own dlpack.h first"
#endif

#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/view.hpp"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace interop {

/// The DLPack data type that a View<T> reads: {code, bits, lanes}. Specialise it for other types.
template <class T>
struct dlpack_type;  // undefined: only the types below have a DLPack spelling
template <>
struct dlpack_type<float> {
  static constexpr std::uint8_t code = 2, bits = 32;  // kDLFloat
  static constexpr const char* name = "float32";
};
template <>
struct dlpack_type<double> {
  static constexpr std::uint8_t code = 2, bits = 64;  // kDLFloat
  static constexpr const char* name = "float64";
};
#if defined(__CUDACC__)
template <>
struct dlpack_type<__half> {
  static constexpr std::uint8_t code = 2, bits = 16;  // kDLFloat
  static constexpr const char* name = "float16";
};
template <>
struct dlpack_type<__nv_bfloat16> {
  static constexpr std::uint8_t code = 4, bits = 16;  // kDLBfloat
  static constexpr const char* name = "bfloat16";
};
#endif

namespace detail {

/// Names by numeric value, so the adapter compiles against every DLPack version.
inline std::string device_type_name(int type) {
  switch (type) {
    case 1: return "CPU";
    case 2: return "CUDA";
    case 3: return "CUDAHost";
    case 4: return "OpenCL";
    case 7: return "Vulkan";
    case 8: return "Metal";
    case 9: return "VPI";
    case 10: return "ROCM";
    case 11: return "ROCMHost";
    case 12: return "ExtDev";
    case 13: return "CUDAManaged";
    case 14: return "OneAPI";
    case 15: return "WebGPU";
    case 16: return "Hexagon";
    default: return "device type " + std::to_string(type);
  }
}

inline std::string dtype_name(const DLDataType& t) {
  std::ostringstream os;
  switch (t.code) {
    case 0: os << "int" << int(t.bits); break;
    case 1: os << "uint" << int(t.bits); break;
    case 2: os << "float" << int(t.bits); break;
    case 3: os << "opaque handle"; break;
    case 4: os << "bfloat" << int(t.bits); break;
    case 5: os << "complex" << int(t.bits); break;
    case 6: os << "bool"; break;
    default: os << "type code " << int(t.code) << " (" << int(t.bits) << " bits)"; break;
  }
  if (t.lanes != 1) os << "x" << t.lanes;
  return os.str();
}

}  // namespace detail

/// Where a DLPack device lives for kdloss: CPU and pinned host memory (kDLCUDAHost) are the host;
/// kDLCUDA and managed memory (kDLCUDAManaged) are CUDA device `device_id`. Anything else throws.
inline Device device_from_dlpack(const DLDevice& device, const char* arg = "tensor",
                                 const char* fn = "kdloss::interop::from_dlpack") {
  // Read the int32 DLPack transmits, not the enum: a newer producer may send a device type this
  // header's DLDeviceType lacks (kDLHexagon = 16, ...), and loading that through the enum is undefined.
  static_assert(sizeof(device.device_type) == sizeof(std::int32_t), "DLPack's device_type is an int32");
  std::int32_t type = 0;
  std::memcpy(&type, &device.device_type, sizeof type);
  if (type == 1 || type == 3) return Device::host();
  if (type == 2 || type == 13) {
    ::kdloss::detail::require(device.device_id >= 0, fn, ": argument '", arg, "' has CUDA device id ",
                              device.device_id, "; expected a device index >= 0");
    return Device::cuda(device.device_id);
  }
  ::kdloss::detail::fail(fn, ": argument '", arg, "' lives on DLPack device ", detail::device_type_name(type),
                         " (device_type ", type,
                         "); kdloss views live on the host (CPU, CUDAHost) or on CUDA devices (CUDA, CUDAManaged)");
}

/// A view of the DLPack tensor's memory, after checking everything that would make it wrong:
/// - dtype: code, bits and lanes must be those of T (float32 for float, float64 for double; float16
///   and bfloat16 for __half and __nv_bfloat16 in CUDA translation units);
/// - device: see device_from_dlpack;
/// - rank: 0 to kMaxRank, extents >= 0;
/// - data: not null unless the tensor is empty; data + byte_offset aligned to alignof(T);
/// - strides: in elements, any values (0 and negative included); a null strides pointer means
///   compact row-major, as DLPack specifies.
/// Every mismatch throws kdloss::Error naming the argument, the expected and the actual value.
///
///   auto s = kdloss::interop::from_dlpack<const float>(managed->dl_tensor, "student");
template <class T>
View<T> from_dlpack(const DLTensor& tensor, const char* arg = "tensor",
                    const char* fn = "kdloss::interop::from_dlpack") {
  using E = std::remove_cv_t<T>;
  using Want = dlpack_type<E>;
  const DLDataType dt = tensor.dtype;
  ::kdloss::detail::require(dt.code == Want::code && dt.bits == Want::bits && dt.lanes == 1, fn, ": argument '", arg,
                            "' has DLPack dtype ", detail::dtype_name(dt), " but the view reads ", Want::name);
  const Device device = device_from_dlpack(tensor.device, arg, fn);
  ::kdloss::detail::require(tensor.ndim >= 0 && tensor.ndim <= kMaxRank, fn, ": argument '", arg, "' has ",
                            tensor.ndim, " dimensions; kdloss views have at most ", kMaxRank);
  ::kdloss::detail::require(tensor.ndim == 0 || tensor.shape != nullptr, fn, ": argument '", arg, "' has ",
                            tensor.ndim, " dimensions but a null shape pointer");
  Dims shape;
  shape.rank = tensor.ndim;
  for (int i = 0; i < tensor.ndim; ++i) shape.v[i] = tensor.shape[i];
  for (int i = 0; i < shape.rank; ++i)
    ::kdloss::detail::require(shape.v[i] >= 0, fn, ": argument '", arg, "' has a negative extent in shape ",
                              shape.str());
  const std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  std::int64_t count = 1;  // the product of max(extent, 1): every contiguous stride, so it must fit
  for (int i = 0; i < shape.rank; ++i) {
    const std::int64_t n = shape.v[i] > 1 ? shape.v[i] : 1;
    ::kdloss::detail::require(count <= kMax / n, fn, ": argument '", arg, "' with shape ", shape.str(),
                              " holds more elements than a 64-bit index can count");
    count *= n;
  }
  Dims strides = contiguous_strides(shape);
  if (tensor.strides != nullptr)
    for (int i = 0; i < tensor.ndim; ++i) strides.v[i] = tensor.strides[i];

  // Element count and address span must fit in int64 (views index with it): a tensor whose extents
  // or strides overflow it cannot describe real memory, and computing with them would be undefined.
  bool empty = false;
  for (int i = 0; i < shape.rank; ++i) empty = empty || shape.v[i] == 0;
  const std::int64_t numel = empty ? 0 : shape.product();
  std::int64_t span = 0;
  for (int i = 0; i < shape.rank && !empty; ++i) {
    const std::int64_t n = shape.v[i], s = strides.v[i];
    const std::int64_t abs_s = s == std::numeric_limits<std::int64_t>::min() ? kMax : (s < 0 ? -s : s);
    ::kdloss::detail::require(n == 1 || abs_s <= (kMax - span) / (n - 1), fn, ": argument '", arg, "' with shape ",
                              shape.str(), " and strides ", strides.str(),
                              " addresses more elements than a 64-bit index can count");
    span += abs_s * (n - 1);
  }
  ::kdloss::detail::require(tensor.data != nullptr || numel == 0, fn, ": argument '", arg,
                            "' has a null data pointer but holds ", numel, " elements of shape ", shape.str());
  const auto address = reinterpret_cast<std::uintptr_t>(tensor.data) + static_cast<std::uintptr_t>(tensor.byte_offset);
  if (tensor.data != nullptr)
    ::kdloss::detail::require(address % alignof(E) == 0, fn, ": argument '", arg, "' starts at data + byte_offset = 0x",
                              std::hex, address, std::dec, " (byte_offset ", tensor.byte_offset,
                              "), which is not aligned to ", alignof(E), " bytes (the alignment of ", Want::name, ")");
  T* data = tensor.data == nullptr ? nullptr : reinterpret_cast<T*>(address);
  return View<T>(data, shape, strides, device);
}

/// The same for the legacy managed tensor (capsule name "dltensor").
template <class T>
View<T> from_dlpack(const DLManagedTensor& managed, const char* arg = "tensor",
                    const char* fn = "kdloss::interop::from_dlpack") {
  return from_dlpack<T>(managed.dl_tensor, arg, fn);
}

#if defined(DLPACK_MAJOR_VERSION) && DLPACK_MAJOR_VERSION >= 1
/// The same for the versioned managed tensor of DLPack >= 1.0 (capsule name "dltensor_versioned"):
/// refuses a newer major version, and a read-only tensor for a writable view (View<float>, an output).
template <class T>
View<T> from_dlpack(const DLManagedTensorVersioned& managed, const char* arg = "tensor",
                    const char* fn = "kdloss::interop::from_dlpack") {
  ::kdloss::detail::require(managed.version.major <= DLPACK_MAJOR_VERSION, fn, ": argument '", arg,
                            "' uses DLPack ", managed.version.major, ".", managed.version.minor,
                            ", a newer major version than this adapter's (", DLPACK_MAJOR_VERSION, ")");
  if constexpr (!std::is_const_v<T>)
    ::kdloss::detail::require((managed.flags & DLPACK_FLAG_BITMASK_READ_ONLY) == 0, fn, ": argument '", arg,
                              "' is read-only (DLPACK_FLAG_BITMASK_READ_ONLY) but is used as an output view");
  return from_dlpack<T>(managed.dl_tensor, arg, fn);
}
#endif

} } }  // namespace kdloss::interop
