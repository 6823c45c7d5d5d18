// kdloss/core/workspace.hpp: caller-provided scratch memory, carved into aligned pieces (CUB's idiom).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/error.hpp"

namespace kdloss {  // Workspace, BlasHandle and Exec: vocabulary types, outside the ABI namespace

/// Scratch memory on the same device as the call's views. Query the size first:
///
///   std::size_t bytes = kdloss::mse_loss_workspace_bytes(student);   // or pass Workspace{} to a GPU call
///   void* scratch; cudaMallocAsync(&scratch, bytes, stream);
///   kdloss::mse_loss(student, teacher, out, {}, {kdloss::Workspace{scratch, bytes}, kdloss::Stream(stream)});
///
/// On the host a null workspace is allowed: the call then allocates what it needs itself.
/// On a GPU a workspace smaller than the query is an error; nothing is allocated there.
struct Workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

/// A cuBLAS handle kept as an opaque pointer (cublasHandle_t), so host-only code needs no CUDA headers.
/// Matrix products on the GPU run on the caller's handle (the PyTorch bridge passes torch's current one);
/// kdloss sets the handle's stream to the call's stream for the duration of the call and restores it.
/// A null handle on a GPU call that needs one is an error. Ignored by the host backend.
struct BlasHandle {
  void* handle = nullptr;
  constexpr BlasHandle() = default;
  template <class HandlePtr>
  explicit BlasHandle(HandlePtr* h) : handle(static_cast<void*>(h)) {}
};

/// How a call runs: its scratch memory, (on the GPU) its stream, and the cuBLAS handle for the calls
/// that multiply matrices. Trailing argument of every entry point.
struct Exec {
  Workspace workspace{};
  Stream stream{};
  BlasHandle blas{};
};

inline namespace KDLOSS_ABI_NAMESPACE {
namespace detail {

inline constexpr std::size_t kWorkspaceAlignment = 256;

inline std::size_t align_up(std::size_t n, std::size_t a = kWorkspaceAlignment) { return (n + a - 1) / a * a; }

/// Hands out aligned pieces of one buffer. With a null base it only counts, so the same
/// carving code answers the size query and carves the real buffer.
class Carver {
 public:
  explicit Carver(void* base = nullptr) : base_(static_cast<std::byte*>(base)) {}
  template <class T>
  T* take(std::size_t count) {
    const std::size_t offset = used_;
    used_ = align_up(used_ + count * sizeof(T));
    return base_ ? reinterpret_cast<T*>(base_ + offset) : nullptr;
  }
  std::size_t bytes() const { return used_; }

 private:
  std::byte* base_;
  std::size_t used_ = 0;
};

/// Host scratch for a call whose caller passed no workspace (host only).
class HostScratch {
 public:
  void* get(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    storage_.reset(new std::max_align_t[(bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t) +
                                        kWorkspaceAlignment / sizeof(std::max_align_t)]);
    auto p = reinterpret_cast<std::uintptr_t>(storage_.get());
    return reinterpret_cast<void*>(align_up(p));
  }

 private:
  std::unique_ptr<std::max_align_t[]> storage_;
};

/// Checks the caller's workspace against the query, returning the base to carve from.
inline void* resolve_workspace(const char* fn, Device device, const Workspace& ws, std::size_t needed,
                               HostScratch& host_scratch) {
  if (needed == 0) return nullptr;
  if (ws.data == nullptr) {
    require(device.is_host(), fn, ": argument 'workspace' is null but this call on ", device.str(), " needs ",
            needed, " bytes; size a buffer with the loss's *_workspace_bytes query");
    return host_scratch.get(needed);
  }
  require(ws.bytes >= needed, fn, ": argument 'workspace' has ", ws.bytes, " bytes but this call needs ", needed,
          " bytes (size it with the loss's *_workspace_bytes query)");
  require(reinterpret_cast<std::uintptr_t>(ws.data) % kWorkspaceAlignment == 0, fn,
          ": argument 'workspace' must be aligned to ", kWorkspaceAlignment, " bytes");
  return ws.data;
}

}  // namespace detail
}  // namespace KDLOSS_ABI_NAMESPACE
}  // namespace kdloss
