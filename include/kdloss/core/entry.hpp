// kdloss/core/entry.hpp: the one entry-point shape every loss and op follows (CUTLASS's device API in
// miniature), and the small vocabulary it is written in.
//
// For an entry point E (mse_loss, ssim_loss, fbkd::total_loss, ops::linear, ...):
//
//   template <class T> struct EArgs { views, optional views, gradient outputs, EOptions options; };
//   template <class T> void        E_check(const EArgs<T>& args, Mode mode);   // throws kdloss::Error, writes nothing
//   template <class T> std::size_t E_workspace_bytes(const EArgs<T>& args);    // enough for every Mode
//   template <class T> std::size_t E_reserve_bytes(const EArgs<T>& args);      // only where forward keeps state
//   template <class T> void        E(const EArgs<T>& args, Mode mode, const Exec& exec = {});  // check, then run
//
// and thin wrappers that read like PyTorch: E(student, teacher, out, options = {}, exec = {}),
// E_backward(...), E_forward_backward(...). Options are structs, never loose scalars.
#pragma once
#include <cstddef>

#include "kdloss/config.hpp"
#include "kdloss/core/view.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {

/// What one call computes. forward writes the value; backward reads the upstream gradient
/// (`grad_out`) and writes the gradients; forward_backward writes the value and the gradients of the
/// value itself in one pass (training needs both).
enum class Mode { forward, backward, forward_backward };

inline const char* to_string(Mode m) {
  switch (m) {
    case Mode::forward: return "forward";
    case Mode::backward: return "backward";
    case Mode::forward_backward: return "forward_backward";
  }
  return "?";
}
/// The index of a Mode into a per-mode table of names; a value outside the enum (a cast integer)
/// throws kdloss::Error instead of indexing past the table.
inline int mode_index(Mode m) {
  const int i = static_cast<int>(m);
  detail::require(i >= 0 && i <= 2, "kdloss: Mode value ", i, " is not forward, backward or forward_backward");
  return i;
}
constexpr bool writes_value(Mode m) { return m != Mode::backward; }
constexpr bool writes_gradients(Mode m) { return m != Mode::forward; }

/// The names an entry point's errors carry, one per Mode (kdloss::mse_loss, kdloss::mse_loss_backward,
/// kdloss::mse_loss_forward_backward), so a message names the wrapper the caller used.
struct EntryNames {
  const char* forward;
  const char* backward;
  const char* forward_backward;
  const char* operator()(Mode m) const {
    return m == Mode::forward ? forward : m == Mode::backward ? backward : forward_backward;
  }
};

/// An optional view the caller left out: default-constructed (null data and rank 0). A rank-0 view
/// with data (a scalar) or an empty view with a shape is present. This is the one test for optional
/// inputs and for gradients that are not requested.
template <class T>
constexpr bool absent(const View<T>& v) {
  return v.data == nullptr && v.rank() == 0;
}
template <class T>
constexpr bool present(const View<T>& v) {
  return !absent(v);
}

/// How a parameter gradient (grad_weight, grad_bias, ...) is written: grad = beta * grad + dL/dparam.
/// beta = 0 overwrites (the old contents are never read, so NaN garbage does not leak in); beta = 1
/// accumulates, as autograd does across uses of one weight. Batch reductions run in a fixed order, so
/// the bits do not depend on the thread count.
struct GradAccumulate {
  double beta = 0.0;
};

/// State that backward needs from forward (batch-norm statistics, max-pool argmax, a softmax's
/// log-sum-exp), in a caller-owned buffer on the call's device sized by E_reserve_bytes: forward
/// fills it, backward of the same arguments reads it (cuDNN's reserve space). Must be aligned to 256
/// bytes; an entry that can recompute the state accepts an absent reserve in backward and says so.
struct Reserve {
  void* data = nullptr;
  std::size_t bytes = 0;
};

} }  // namespace kdloss
