// kdloss_torch: the only translation unit that includes torch. It turns torch.Tensor objects into
// type-erased views (no copies), allocates outputs and workspaces through torch's allocator, picks
// torch's current CUDA stream, translates kdloss::Error into kdloss_torch.KdlossError, and builds the
// extension module from the families registered by the other csrc/*.cpp files.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <torch/csrc/autograd/python_variable.h>

#if defined(KDLOSS_TORCH_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <ATen/dlpack.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "binding.hpp"
#include "common.hpp"
#include "kdloss/interop/dlpack.hpp"
#include "kdloss/losses/feature/pointwise.hpp"

namespace kdloss_torch {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::float32: return "torch.float32";
    case DType::float64: return "torch.float64";
    case DType::float16: return "torch.float16";
    case DType::bfloat16: return "torch.bfloat16";
  }
  return "?";
}

namespace {

Dims dims_of(c10::IntArrayRef a) { return Dims::from(a.begin(), a.end()); }

const at::Tensor& unpack(py::handle obj, const char* fn, const char* name) {
  kdloss::detail::require(THPVariable_Check(obj.ptr()), fn, ": argument '", name, "' must be a torch.Tensor but is ",
                          std::string(py::str(py::type::of(obj).attr("__name__"))));
  return THPVariable_Unpack(obj.ptr());
}

/// `obj` (when given) is the Python tensor, for dtype names as Python spells them.
Arg arg_of(const at::Tensor& t, const char* fn, const char* name, py::handle obj = py::handle()) {
  Arg a;
  a.name = name;
  a.present = true;
  kdloss::detail::require(t.layout() == c10::kStrided, fn, ": argument '", name,
                          "' must be a strided (dense) tensor; convert it with .to_dense()");
  switch (t.scalar_type()) {
    case at::kFloat: a.dtype = DType::float32; break;
    case at::kDouble: a.dtype = DType::float64; break;
    case at::kHalf: a.dtype = DType::float16; break;
    case at::kBFloat16: a.dtype = DType::bfloat16; break;
    default:
      kdloss::detail::fail(fn, ": argument '", name, "' has dtype ",
                           obj ? std::string(py::str(obj.attr("dtype"))) : std::string(c10::toString(t.scalar_type())),
                           "; kdloss takes float32 and float64 (and float16/bfloat16 on CUDA)");
  }
  const c10::Device dev = t.device();
  if (dev.is_cpu())
    a.device = Device::host();
  else if (dev.is_cuda())
    a.device = Device::cuda(dev.index());
  else
    kdloss::detail::fail(fn, ": argument '", name, "' is on device ", dev.str(),
                         "; kdloss runs on CPU and CUDA tensors");
  kdloss::detail::require(t.dim() <= kdloss::kMaxRank, fn, ": argument '", name, "' has ", t.dim(),
                          " dimensions; kdloss views have at most ", kdloss::kMaxRank);
  kdloss::detail::require(!t.is_neg() && !t.is_conj(), fn, ": argument '", name,
                          "' carries a lazy negation bit; call .resolve_neg() first");
  a.shape = dims_of(t.sizes());
  a.strides = dims_of(t.strides());
  // data_ptr() includes the storage offset; the strides are in elements, as kdloss counts them.
  a.data = t.numel() == 0 && !t.has_storage() ? nullptr : t.data_ptr();
  return a;
}

/// Large host outputs (gradients, loss maps) are written once, right after allocation. From fresh
/// pages their first-touch page faults cost about as much as the loss itself (about 40 ms for a
/// 137 MB P2 gradient on 4 KiB pages), and with transparent huge pages the kernel may stall to
/// compact memory. So outputs of kLargeOutput bytes and more come from a small cache of mapped
/// blocks (2 MiB aligned, advised MADV_HUGEPAGE): a block returns to the cache when its tensor is
/// freed and the next step's output of the same size reuses it, already mapped. The cache keeps at
/// most KDLOSS_TORCH_HOST_CACHE_MB (default 1024) MiB of free blocks; 0 turns it off, and
/// kdloss_torch.empty_host_cache() unmaps the free blocks (like torch.cuda.empty_cache()).
/// KDLOSS_TORCH_HUGEPAGES=0 leaves the pages at 4 KiB.
constexpr std::size_t kLargeOutput = std::size_t(32) << 20;
constexpr std::size_t kHugePage = std::size_t(2) << 20;

std::size_t env_size(const char* name, std::size_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return static_cast<std::size_t>(std::strtoull(v, nullptr, 10));
}

class HostOutputCache {
 public:
  static HostOutputCache& instance() {
    static auto* cache = new HostOutputCache();  // never destroyed: tensors may outlive static teardown
    return *cache;
  }
  bool enabled() const { return limit_ > 0; }

  /// A block of at least `bytes` (rounded up to 2 MiB), or nullptr when mapping fails.
  void* take(std::size_t bytes) {
    const std::size_t size = round_up(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        free_bytes_ -= size;
        return p;
      }
    }
    return map(size);
  }
  /// Back from a freed tensor: cached while the free blocks stay under the limit, unmapped otherwise.
  void give_back(void* p, std::size_t bytes) {
    const std::size_t size = round_up(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (free_bytes_ + size <= limit_) {
        free_.emplace(size, p);
        free_bytes_ += size;
        return;
      }
    }
    unmap(p, size);
  }
  /// Unmaps every free block; returns the bytes released.
  std::size_t empty() {
    std::multimap<std::size_t, void*> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
      free_bytes_ = 0;
    }
    std::size_t released = 0;
    for (const auto& [size, p] : blocks) {
      unmap(p, size);
      released += size;
    }
    return released;
  }
  std::size_t free_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return free_bytes_;
  }

 private:
  HostOutputCache() : limit_(env_size("KDLOSS_TORCH_HOST_CACHE_MB", 1024) << 20) {}
  static std::size_t round_up(std::size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }
  static bool huge_pages() {
    static const bool on = env_size("KDLOSS_TORCH_HUGEPAGES", 1) != 0;
    return on;
  }
  static void* map(std::size_t size) {
#if defined(__linux__)
    // Over-map by one huge page and trim, so the block starts on a 2 MiB boundary.
    void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const auto begin = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = (begin + kHugePage - 1) & ~(kHugePage - 1);
    if (aligned > begin) munmap(raw, aligned - begin);
    const std::uintptr_t end = begin + size + kHugePage, used = aligned + size;
    if (end > used) munmap(reinterpret_cast<void*>(used), end - used);
#if defined(MADV_HUGEPAGE)
    if (huge_pages()) (void)madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);  // advice only
#endif
    return reinterpret_cast<void*>(aligned);
#else
    (void)size;
    return nullptr;
#endif
  }
  static void unmap(void* p, std::size_t size) {
#if defined(__linux__)
    munmap(p, size);
#else
    (void)p;
    (void)size;
#endif
  }

  std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;
  std::size_t free_bytes_ = 0;
  std::size_t limit_;
};

/// torch.empty_like(t) for a large host output from the cache (same sizes and strides as
/// at::empty_like gives), or an undefined tensor when the cache does not apply.
at::Tensor cached_empty_like(const at::Tensor& t) {
  HostOutputCache& cache = HostOutputCache::instance();
  if (!t.device().is_cpu() || !cache.enabled() || t.nbytes() < kLargeOutput) return {};
  const at::Tensor meta = at::empty_like(t, t.options().device(at::kMeta).requires_grad(false));
  const std::size_t bytes = at::detail::computeStorageNbytes(meta.sizes(), meta.strides(), meta.itemsize());
  void* p = cache.take(bytes);
  if (p == nullptr) return {};
  return at::from_blob(
      p, meta.sizes(), meta.strides(), [bytes](void* q) { HostOutputCache::instance().give_back(q, bytes); },
      t.options().requires_grad(false));
}

Output wrap(at::Tensor t, const char* name) {
  Output o;
  o.arg = arg_of(t, "kdloss_torch", name);
  o.tensor = py::reinterpret_steal<py::object>(THPVariable_Wrap(std::move(t)));
  return o;
}

at::Device torch_device(Device d) {
  return d.is_host() ? at::Device(at::kCPU) : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(d.index));
}

std::vector<std::pair<std::string, Registrar>>& registry() {
  static std::vector<std::pair<std::string, Registrar>> r;
  return r;
}

}  // namespace

Arg tensor_arg(py::handle obj, const char* fn, const char* name, bool optional) {
  if (obj.is_none()) {
    kdloss::detail::require(optional, fn, ": argument '", name, "' is None but is required");
    Arg a;
    a.name = name;
    return a;
  }
  return arg_of(unpack(obj, fn, name), fn, name, obj);
}

Output empty_like(py::handle like, const char* name) {
  const at::Tensor& t = unpack(like, "kdloss_torch", name);
  at::Tensor cached = cached_empty_like(t);
  return wrap(cached.defined() ? std::move(cached) : at::empty_like(t, t.options().requires_grad(false)), name);
}

Output empty(const Arg& like, const Dims& shape, const char* name) {
  std::vector<std::int64_t> sizes(shape.v.begin(), shape.v.begin() + shape.rank);
  at::ScalarType st = at::kFloat;
  switch (like.dtype) {
    case DType::float32: st = at::kFloat; break;
    case DType::float64: st = at::kDouble; break;
    case DType::float16: st = at::kHalf; break;
    case DType::bfloat16: st = at::kBFloat16; break;
  }
  return wrap(at::empty(sizes, at::TensorOptions().dtype(st).device(torch_device(like.device))), name);
}

struct Call::Impl {
  Device device;
  std::vector<at::Tensor> workspaces;  // released after the call; stream-ordered on CUDA
#if defined(KDLOSS_TORCH_WITH_CUDA)
  std::optional<c10::cuda::CUDAGuard> guard;
#endif
};

Call::Call(const char* fn, Device device) : impl_(new Impl{device, {}}) {
#if defined(KDLOSS_TORCH_WITH_CUDA)
  if (device.is_cuda()) impl_->guard.emplace(static_cast<c10::DeviceIndex>(device.index));
#else
  kdloss::detail::require(device.is_host(), fn, ": the tensors are on ", device.str(),
                          " but this build of kdloss_torch has no CUDA backend; rebuild it with KDLOSS_TORCH_CUDA=1");
#endif
}

Call::~Call() = default;

kdloss::Exec Call::exec(std::size_t bytes) {
  kdloss::Exec ex;
#if defined(KDLOSS_TORCH_WITH_CUDA)
  if (impl_->device.is_cuda()) {
    ex.stream =
        kdloss::Stream(c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(impl_->device.index)).stream());
    // torch's handle for the current device, already bound to the current stream (and to torch's
    // cuBLAS workspace): kdloss's matrix products run in the same order as torch's own.
    ex.blas = kdloss::BlasHandle(at::cuda::getCurrentCUDABlasHandle());
  }
#endif
  if (bytes == 0) return ex;
  constexpr std::size_t align = kdloss::detail::kWorkspaceAlignment;
  at::Tensor w = at::empty({static_cast<std::int64_t>(bytes + align)},
                           at::TensorOptions().dtype(at::kByte).device(torch_device(impl_->device)));
  const auto base = reinterpret_cast<std::uintptr_t>(w.data_ptr());
  ex.workspace = kdloss::Workspace{reinterpret_cast<void*>((base + align - 1) / align * align), bytes};
  impl_->workspaces.push_back(std::move(w));
  return ex;
}

Register::Register(const char* name, Registrar registrar) { registry().emplace_back(name, registrar); }

py::object empty_reserve(Device device, std::size_t bytes) {
  constexpr std::size_t align = kdloss::detail::kWorkspaceAlignment;
  at::Tensor t = at::empty({static_cast<std::int64_t>(bytes + align - 1)},
                           at::TensorOptions().dtype(at::kByte).device(torch_device(device)));
  return py::reinterpret_steal<py::object>(THPVariable_Wrap(std::move(t)));
}

kdloss::Reserve reserve_of(py::handle obj, const char* fn, const char* name) {
  const at::Tensor& t = unpack(obj, fn, name);
  kdloss::detail::require(t.scalar_type() == at::kByte && t.dim() == 1 && t.is_contiguous(), fn, ": argument '", name,
                          "' must be the uint8 buffer the forward call returned");
  constexpr std::size_t align = kdloss::detail::kWorkspaceAlignment;
  const auto base = reinterpret_cast<std::uintptr_t>(t.data_ptr());
  const std::uintptr_t aligned = (base + align - 1) / align * align;
  const std::size_t skip = aligned - base, n = static_cast<std::size_t>(t.numel());
  return kdloss::Reserve{reinterpret_cast<void*>(aligned), n > skip ? n - skip : 0};
}

namespace detail {

Flat flatten(const Entry& e, const py::sequence& tensors, kdloss::Mode mode) {
  const char* fn = e.fn.c_str();
  const std::size_t slots = e.inputs.size();
  kdloss::detail::require(py::len(tensors) == slots, fn, ": internal: ", py::len(tensors), " tensors for ", slots,
                          " inputs");
  Flat f;
  f.begin.resize(slots);
  f.count.resize(slots);
  f.in.reserve(slots);
  f.obj.reserve(slots);
  auto add = [&](py::handle obj, const std::string& name, bool optional) {
    f.in.push_back(tensor_arg(obj, fn, name.c_str(), optional));
    f.obj.push_back(obj);
  };
  for (std::size_t s = 0; s < slots; ++s) {
    f.begin[s] = f.in.size();
    const py::handle item = tensors[s];
    const std::string& name = e.inputs[s];
    if (e.kinds[s] == "tensor") {
      // a kept input (the forward's output) is passed in backward only
      const bool kept = !e.kept[s].empty();
      add(kept && mode != kdloss::Mode::backward ? py::handle(py::none()) : item, name, e.optional[s] || kept);
    } else {
      kdloss::detail::require(py::isinstance<py::sequence>(item) && !py::isinstance<py::str>(item), fn,
                              ": argument '", name, "' must be a sequence but is ",
                              std::string(py::str(py::type::of(item).attr("__name__"))));
      const py::sequence items = py::reinterpret_borrow<py::sequence>(item);
      const std::size_t n = py::len(items);
      kdloss::detail::require(n > 0, fn, ": argument '", name, "' is empty; pass at least one ", e.what[s]);
      for (std::size_t i = 0; i < n; ++i) {
        const std::string element = name + "[" + std::to_string(i) + "]";
        if (e.kinds[s] == "list") {
          add(items[i], element, false);
          continue;
        }
        const auto& fields = e.fields[s];
        const py::sequence tuple = py::reinterpret_borrow<py::sequence>(items[i]);
        kdloss::detail::require(py::len(tuple) == fields.size(), fn, ": internal: ", element, " has ", py::len(tuple),
                                " tensors for ", fields.size(), " fields");
        for (std::size_t k = 0; k < fields.size(); ++k) add(tuple[k], element + "." + fields[k], e.field_optional[s][k]);
      }
    }
    f.count[s] = f.in.size() - f.begin[s];
  }
  return f;
}

}  // namespace detail

void register_entry_class(py::module_& m) {
  py::class_<Entry>(m, "Entry",
                    "A kdloss entry point bound with python/csrc/binding.hpp: entry(mode, tensors, options=None, "
                    "grad_out=None, want=[], reserve=None) -> {output name: tensor}; kdloss_torch._function.Loss "
                    "makes it an autograd Function")
      .def_readonly("fn", &Entry::fn)
      .def_readonly("inputs", &Entry::inputs)
      .def_readonly("optional", &Entry::optional)
      .def_readonly("kinds", &Entry::kinds)
      .def_readonly("kept", &Entry::kept)
      .def_readonly("what", &Entry::what)
      .def_readonly("fields", &Entry::fields)
      .def_readonly("field_optional", &Entry::field_optional)
      .def_readonly("outputs", &Entry::outputs)
      .def_readonly("grads", &Entry::grads)
      .def_readonly("grad_of", &Entry::grad_of)
      .def_readonly("grad_slot", &Entry::grad_slot)
      .def_readonly("params", &Entry::params)
      .def_readonly("upstream", &Entry::upstream)
      .def_readonly("reserve", &Entry::reserve)
      .def_readonly("has_options", &Entry::has_options)
      .def_readonly("options_type", &Entry::options_type)
      .def(
          "__call__",
          [](const Entry& e, int mode, const py::sequence& tensors, py::handle options, py::handle grad_out,
             const std::vector<std::string>& want, py::handle reserve) {
            kdloss::detail::require(mode >= 0 && mode <= 2, e.fn, ": internal mode ", mode,
                                    " is not 0 (forward), 1 (backward) or 2 (forward_backward)");
            return e.run(e, static_cast<kdloss::Mode>(mode), tensors, options, grad_out, reserve, want);
          },
          py::arg("mode"), py::arg("tensors"), py::arg("options") = py::none(), py::arg("grad_out") = py::none(),
          py::arg("want") = std::vector<std::string>{}, py::arg("reserve") = py::none())
      .def("__repr__", [](const Entry& e) {
        std::string s = "<kdloss entry " + e.fn + "(";
        for (std::size_t i = 0; i < e.inputs.size(); ++i) s += (i ? ", " : "") + e.inputs[i];
        return s + ")>";
      });
}

namespace {

// ---- DLPack: tensors exported by any framework, through kdloss/interop/dlpack.hpp ----

/// A "dltensor" (DLManagedTensor) or "dltensor_versioned" (DLManagedTensorVersioned) capsule,
/// borrowed: it is not consumed, so its producer still owns (and frees) the memory.
struct Capsule {
  const DLManagedTensor* legacy = nullptr;
  const DLManagedTensorVersioned* versioned = nullptr;
};

Capsule capsule_of(py::handle obj, const char* name) {
  PyObject* p = obj.ptr();
  Capsule c;
  if (PyCapsule_IsValid(p, "dltensor_versioned"))
    c.versioned = static_cast<const DLManagedTensorVersioned*>(PyCapsule_GetPointer(p, "dltensor_versioned"));
  else if (PyCapsule_IsValid(p, "dltensor"))
    c.legacy = static_cast<const DLManagedTensor*>(PyCapsule_GetPointer(p, "dltensor"));
  else
    kdloss::detail::fail("kdloss_torch.dlpack: argument '", name,
                         "' must be an unconsumed DLPack capsule ('dltensor' or 'dltensor_versioned')");
  return c;
}

/// kdloss::interop::from_dlpack on either capsule kind (the versioned one checks the version and
/// the read-only flag).
template <class T>
View<T> view_of(const Capsule& c, const char* name) {
  return c.versioned ? kdloss::interop::from_dlpack<T>(*c.versioned, name)
                     : kdloss::interop::from_dlpack<T>(*c.legacy, name);
}

py::dict describe(const View<const float>& v) {
  py::dict d;
  d["shape"] = std::vector<std::int64_t>(v.shape.v.begin(), v.shape.v.begin() + v.shape.rank);
  d["strides"] = std::vector<std::int64_t>(v.strides.v.begin(), v.strides.v.begin() + v.strides.rank);
  d["device"] = v.device.str();
  d["data"] = reinterpret_cast<std::uintptr_t>(v.data);
  d["contiguous"] = v.is_contiguous();
  d["unique"] = v.is_unique();
  return d;
}

}  // namespace
}  // namespace kdloss_torch

PYBIND11_MODULE(_C, m) {
  namespace kt = kdloss_torch;
  using kdloss::View;
  m.doc() = "kdloss_torch._C: bindings of the kdloss C++ library (use the kdloss_torch package)";

  // KdlossError: every kdloss::Error, with the C++ message unchanged. A ValueError (bad arguments)
  // and a RuntimeError (CUDA failures) at once, so either except clause catches it.
  static PyObject* error_type = [] {
    PyObject* bases = PyTuple_Pack(2, PyExc_ValueError, PyExc_RuntimeError);
    PyObject* t = PyErr_NewExceptionWithDoc("kdloss_torch.KdlossError",
                                            "An error reported by the kdloss C++ library (kdloss::Error); the "
                                            "message is the library's.",
                                            bases, nullptr);
    Py_DECREF(bases);
    return t;
  }();
  m.attr("KdlossError") = py::handle(error_type);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const kdloss::Error& e) {
      PyErr_SetString(error_type, e.what());
    }
  });

#if defined(KDLOSS_TORCH_WITH_CUDA)
  m.attr("cuda_backend") = true;
#else
  m.attr("cuda_backend") = false;
#endif
  m.attr("kdloss_version") = std::to_string(KDLOSS_VERSION_MAJOR) + "." + std::to_string(KDLOSS_VERSION_MINOR) + "." +
                             std::to_string(KDLOSS_VERSION_PATCH);
  m.attr("workspace_alignment") = kdloss::detail::kWorkspaceAlignment;
  m.def(
      "empty_host_cache", [] { return kt::HostOutputCache::instance().empty(); },
      "Unmaps the free blocks of the host output cache; returns the bytes released");
  m.def(
      "host_cache_free_bytes", [] { return kt::HostOutputCache::instance().free_bytes(); },
      "Bytes of free blocks the host output cache holds");
  m.def(
      "empty_like", [](py::handle like) { return kt::empty_like(like, "like").tensor; }, py::arg("like"),
      "torch.empty_like for an output kdloss writes whole: a large host tensor comes from the host output cache "
      "(no page faults on reuse), anything else from torch");

  // DLPack adapter (kdloss/interop/dlpack.hpp) on capsules exported by torch (or anything else).
  m.def(
      "dlpack_view",
      [](py::handle capsule, const std::string& dtype, bool writable) {
        const kt::Capsule c = kt::capsule_of(capsule, "tensor");
        if (dtype == "float64") {
          const auto v =
              writable ? View<const double>(kt::view_of<double>(c, "tensor")) : kt::view_of<const double>(c, "tensor");
          return kt::describe(View<const float>(reinterpret_cast<const float*>(v.data), v.shape, v.strides, v.device));
        }
        kdloss::detail::require(dtype == "float32",
                                "kdloss_torch.dlpack_view: argument 'dtype' must be 'float32' or "
                                "'float64' but is '",
                                dtype, "'");
        return kt::describe(writable ? View<const float>(kt::view_of<float>(c, "tensor"))
                                     : kt::view_of<const float>(c, "tensor"));
      },
      py::arg("capsule"), py::arg("dtype") = "float32", py::arg("writable") = false,
      "Validates a DLPack capsule with kdloss::interop::from_dlpack and describes the view (the capsule is not "
      "consumed).");
  m.def(
      "dlpack_mse_loss",
      [](py::handle student, py::handle teacher, py::handle grad) {
        const auto s = kt::view_of<const float>(kt::capsule_of(student, "student"), "student");
        const auto t = kt::view_of<const float>(kt::capsule_of(teacher, "teacher"), "teacher");
        const auto g = kt::view_of<float>(kt::capsule_of(grad, "grad_student"), "grad_student");
        float value = 0;
        {
          py::gil_scoped_release nogil;
          kdloss::mse_loss_forward_backward(s, t, kdloss::host_scalar(&value), g);
        }
        return value;
      },
      py::arg("student"), py::arg("teacher"), py::arg("grad_student"),
      "kdloss::mse_loss_forward_backward on host float32 DLPack capsules: returns the value, writes the gradient.");

  kt::register_entry_class(m);  // before the families: their generic bindings are Entry objects
  kt::Options<kdloss::GradAccumulate>(m, "GradAccumulate",
                                      "kdloss::GradAccumulate: how a parameter gradient is written, grad = beta * "
                                      "grad + dL/dparam (beta 0 overwrites, 1 accumulates)")
      .field("beta", &kdloss::GradAccumulate::beta, "0: overwrite (the old contents are never read); 1: accumulate");
  auto families = kt::registry();
  std::sort(families.begin(), families.end());
  for (const auto& [name, registrar] : families) registrar(m);
}
