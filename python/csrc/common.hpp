// kdloss_torch: what every family binding file shares. No torch headers here: the family files
// (feature.cpp, ops.cpp, fbkd.cpp, ...) see tensors only as type-erased `Arg`s, so a CUDA build can
// compile them with nvcc (where kdloss's CUDA backend lives) while torch_glue.cpp, the one
// translation unit that includes torch, is compiled by the host compiler.
//
// Adding a loss family = one new file csrc/<family>.cpp that starts with
//   #include "binding.hpp"
//   KDLOSS_TORCH_FAMILY(family, m) { kdloss_torch::bind<...>(m, ...); }
// (setup.py compiles every csrc/*.cpp; binding.hpp is the generic binding of an entry point), plus
// its Python module kdloss_torch/<family>.py (kdloss_torch._function.Loss over each entry).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kdloss/core/device.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"

#if KDLOSS_CUDA_ENABLED
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace kdloss_torch {

namespace py = pybind11;
using kdloss::Device;
using kdloss::Dims;
using kdloss::View;

enum class DType { float32, float64, float16, bfloat16 };
const char* dtype_name(DType d);

/// One tensor argument of a call: pointer (storage offset applied), shape, strides in elements,
/// device and dtype; `present` is false for None. The tensor itself stays owned by Python.
struct Arg {
  void* data = nullptr;
  Dims shape, strides;
  Device device = Device::host();
  DType dtype = DType::float32;
  bool present = false;
  std::string name;

  template <class T>
  View<const T> in() const {
    if (!present) return {};
    return View<const T>(static_cast<const T*>(data), shape, strides, device);
  }
  template <class T>
  View<T> out() const {
    if (!present) return {};
    return View<T>(static_cast<T*>(data), shape, strides, device);
  }
};

/// A tensor created for a call's output, and its Arg.
struct Output {
  py::object tensor = py::none();
  Arg arg;
};

// ---- implemented in torch_glue.cpp ----

/// The Arg of a Python object that must be a torch.Tensor (or None when `optional`): strided
/// layout, dtype float32/float64/float16/bfloat16, CPU or CUDA, rank <= 6. Throws kdloss::Error.
Arg tensor_arg(py::handle obj, const char* fn, const char* name, bool optional = false);
/// torch.empty_like(like) (same dtype, device and, for dense tensors, the same strides).
Output empty_like(py::handle like, const char* name);
/// torch.empty(shape) with the dtype and device of `like`, contiguous.
Output empty(const Arg& like, const Dims& shape, const char* name);

/// A reserve buffer (state that backward reads from forward, core/entry.hpp) of at least `bytes` bytes
/// on `device`: a byte tensor from torch's allocator that Python keeps from forward to backward.
py::object empty_reserve(Device device, std::size_t bytes);
/// The 256-aligned reserve inside such a tensor (the same pointer and size for the same tensor).
kdloss::Reserve reserve_of(py::handle tensor, const char* fn, const char* name);

/// One kdloss call on a device: selects that CUDA device for the duration of the call, uses torch's
/// current stream there, and allocates the workspace through torch's allocator (the caching
/// allocator on CUDA; ordered on the stream, so freeing it after the call is safe).
class Call {
 public:
  Call(const char* fn, Device device);
  ~Call();
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;
  /// An Exec with a workspace of at least `bytes` bytes aligned to 256, the current stream and (on
  /// CUDA) torch's current cuBLAS handle, which is bound to that stream.
  kdloss::Exec exec(std::size_t bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Family registration: each family file registers a function that adds its bindings to the
/// extension module (collected in torch_glue.cpp, run in name order when the module loads).
using Registrar = void (*)(py::module_&);
struct Register {
  Register(const char* name, Registrar registrar);
};

// ---- helpers (header-only) ----

/// Every present argument must have the dtype of the first one.
inline void same_dtype(const char* fn, const Arg& a, const Arg& b) {
  if (!a.present || !b.present) return;
  kdloss::detail::require(a.dtype == b.dtype, fn, ": argument '", b.name, "' has dtype ", dtype_name(b.dtype), " but '",
                          a.name, "' has dtype ", dtype_name(a.dtype), "; pass both in one dtype");
}

/// The bytes a workspace query asks for, or 0 when the query itself rejects the arguments: the
/// entry point then reports the problem under its own name (the queries validate less, and name
/// themselves, e.g. "kdloss::kl_div_loss_workspace_bytes").
template <class Query>
std::size_t workspace_bytes(Query&& query) {
  try {
    return query();
  } catch (const kdloss::Error&) {
    return 0;
  }
}

template <class T>
struct Tag {
  using type = T;
};

/// Calls f(Tag<T>{}) with T the element type of `a`: float, double, and (in CUDA builds, where
/// kdloss's GPU backend takes them) __half and __nv_bfloat16.
template <class F>
decltype(auto) dispatch(const char* fn, const Arg& a, F&& f) {
  switch (a.dtype) {
    case DType::float32: return f(Tag<float>{});
    case DType::float64: return f(Tag<double>{});
#if KDLOSS_CUDA_ENABLED
    case DType::float16: return f(Tag<__half>{});
    case DType::bfloat16: return f(Tag<__nv_bfloat16>{});
#endif
    default: break;
  }
  kdloss::detail::fail(fn, ": argument '", a.name, "' has dtype ", dtype_name(a.dtype),
                       "; float16 and bfloat16 run on CUDA tensors in a CUDA build of kdloss_torch only (this build "
                       "has no CUDA backend); use float32 or float64");
}

/// Like dispatch, for entry points that run on the host in float and double only (the DETRDistill losses):
/// a half or bfloat16 tensor is an error naming them, and no half instantiation is compiled.
template <class F>
decltype(auto) dispatch_float_double(const char* fn, const Arg& a, F&& f) {
  switch (a.dtype) {
    case DType::float32: return f(Tag<float>{});
    case DType::float64: return f(Tag<double>{});
    default: break;
  }
  kdloss::detail::fail(fn, ": argument '", a.name, "' has dtype ", dtype_name(a.dtype),
                       "; this loss runs in float32 or float64 only");
}

}  // namespace kdloss_torch

/// Defines the registration function of a family: KDLOSS_TORCH_FAMILY(feature, m) { m.def(...); }
#define KDLOSS_TORCH_FAMILY(family, module_var)                                                                   \
  static void kdloss_torch_register_##family(::pybind11::module_& module_var);                                    \
  static const ::kdloss_torch::Register kdloss_torch_registrar_##family(#family, kdloss_torch_register_##family); \
  static void kdloss_torch_register_##family(::pybind11::module_& module_var)
