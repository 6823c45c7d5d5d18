// kdloss/core/validate.hpp: argument checks run once at the boundary, before any output is written.
#pragma once
#include <cstdint>
#include <string>
#include <utility>

#include "kdloss/config.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/view.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// Names the function in every message; each check names the argument and the shapes.
struct Checker {
  const char* fn;

  template <class T>
  void not_null(const View<T>& v, const char* arg) const {
    require(v.numel() == 0 || v.data != nullptr, fn, ": argument '", arg, "' has a null data pointer");
  }
  template <class T>
  void rank(const View<T>& v, const char* arg, int expected) const {
    require(v.rank() == expected, fn, ": argument '", arg, "' must have rank ", expected, " but has shape ",
            v.shape.str());
  }
  template <class T>
  void rank_between(const View<T>& v, const char* arg, int lo, int hi) const {
    require(v.rank() >= lo && v.rank() <= hi, fn, ": argument '", arg, "' must have rank ", lo, " to ", hi,
            " but has shape ", v.shape.str());
  }
  template <class T>
  void shape(const View<T>& v, const char* arg, const Dims& expected) const {
    require(v.shape == expected, fn, ": argument '", arg, "' has shape ", v.shape.str(), " but expected ",
            expected.str());
  }
  template <class A, class B>
  void same_shape(const View<A>& a, const char* arg_a, const View<B>& b, const char* arg_b) const {
    require(a.shape == b.shape, fn, ": arguments '", arg_a, "' ", a.shape.str(), " and '", arg_b, "' ",
            b.shape.str(), " must have the same shape");
  }
  template <class T>
  void device(const View<T>& v, const char* arg, Device expected) const {
    require(v.device == expected, fn, ": argument '", arg, "' is on ", v.device.str(), " but the call runs on ",
            expected.str(), "; all views of one call must be on the same device");
  }
  template <class T>
  void nonempty(const View<T>& v, const char* arg) const {
    require(v.numel() > 0, fn, ": argument '", arg, "' with shape ", v.shape.str(), " is empty");
  }
  /// The one-element output of a reduced loss: rank 0, or any shape holding one element.
  template <class T>
  void scalar_output(const View<T>& v, const char* arg) const {
    require(v.numel() == 1, fn, ": argument '", arg, "' must hold exactly one element (the reduced loss) but has shape ",
            v.shape.str());
    not_null(v, arg);
  }
  /// Outputs need one address per element: no zero strides, no overlapping strides.
  template <class T>
  void unique(const View<T>& v, const char* arg) const {
    require(v.is_unique(), fn, ": output argument '", arg, "' with shape ", v.shape.str(), " and strides ",
            v.strides.str(), " addresses some element twice (zero or overlapping strides); outputs need unique elements");
  }
  /// An output must not share memory with any other argument of the call.
  template <class A, class B>
  void disjoint(const View<A>& out, const char* arg_out, const View<B>& other, const char* arg_other) const {
    if (out.numel() == 0 || other.numel() == 0 || out.data == nullptr || other.data == nullptr) return;
    // Byte addresses in wrapping unsigned arithmetic, not pointer arithmetic: a check-only call may
    // describe a view far beyond any allocation (pointer overflow is undefined; the fuzzer found it).
    const auto bytes_at = [](const auto* data, std::int64_t element) {
      return reinterpret_cast<std::uintptr_t>(data) + static_cast<std::uintptr_t>(element) * sizeof(*data);
    };
    const auto [lo_a, hi_a] = out.extent_range();
    const auto [lo_b, hi_b] = other.extent_range();
    const std::uintptr_t a0 = bytes_at(out.data, lo_a), a1 = bytes_at(out.data, hi_a);
    const std::uintptr_t b0 = bytes_at(other.data, lo_b), b1 = bytes_at(other.data, hi_b);
    require(a1 <= b0 || b1 <= a0, fn, ": output argument '", arg_out, "' overlaps the memory of argument '",
            arg_other, "'; outputs must not alias other arguments");
  }
};

} } }  // namespace kdloss::detail
