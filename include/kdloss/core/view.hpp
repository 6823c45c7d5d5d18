// kdloss/core/view.hpp: strided, rank-N views over raw pointers (strides in elements, as DLPack counts them).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <numeric>
#include <sstream>
#include <string>
#include <type_traits>

#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/error.hpp"

namespace kdloss {  // a vocabulary type: outside the ABI namespace (core/error.hpp)

/// A shape or a stride list: at most kMaxRank extents.
struct Dims {
  int rank = 0;
  std::array<std::int64_t, kMaxRank> v{};

  Dims() = default;
  Dims(std::initializer_list<std::int64_t> list) {
    error_detail::require(list.size() <= static_cast<std::size_t>(kMaxRank), "kdloss: rank ", list.size(),
                    " exceeds the maximum rank ", kMaxRank);
    rank = static_cast<int>(list.size());
    std::copy(list.begin(), list.end(), v.begin());
  }
  template <class It>
  static Dims from(It first, It last) {
    Dims d;
    for (; first != last; ++first) {
      error_detail::require(d.rank < kMaxRank, "kdloss: rank exceeds the maximum rank ", kMaxRank);
      d.v[d.rank++] = static_cast<std::int64_t>(*first);
    }
    return d;
  }
  KDLOSS_HOST_DEVICE std::int64_t operator[](int i) const { return v[i]; }
  KDLOSS_HOST_DEVICE std::int64_t& operator[](int i) { return v[i]; }
  KDLOSS_HOST_DEVICE int size() const { return rank; }
  std::int64_t product() const {
    std::int64_t p = 1;
    for (int i = 0; i < rank; ++i) p *= v[i];
    return p;
  }
  friend bool operator==(const Dims& a, const Dims& b) {
    if (a.rank != b.rank) return false;
    for (int i = 0; i < a.rank; ++i)
      if (a.v[i] != b.v[i]) return false;
    return true;
  }
  friend bool operator!=(const Dims& a, const Dims& b) { return !(a == b); }
  std::string str() const {
    std::ostringstream os;
    os << '[';
    for (int i = 0; i < rank; ++i) os << (i ? ", " : "") << v[i];
    os << ']';
    return os.str();
  }
};

/// Row-major (C order) strides for a shape.
inline Dims contiguous_strides(const Dims& shape) {
  Dims s;
  s.rank = shape.rank;
  std::int64_t step = 1;
  for (int i = shape.rank - 1; i >= 0; --i) {
    s.v[i] = step;
    step *= std::max<std::int64_t>(shape.v[i], 1);
  }
  return s;
}

/// A typed, strided view: pointer, shape, strides (elements, may be 0 or negative) and device.
/// Use `View<const float>` for inputs and `View<float>` for outputs.
///
///   std::vector<float> buf(2 * 256 * 100 * 167);
///   auto feat = kdloss::host_view(buf.data(), {2, 256, 100, 167});     // contiguous NCHW
///   auto nhwc = kdloss::host_view(p, {2, 256, 100, 167}, {256 * 100 * 167, 1, 167 * 256, 256});
///   auto loss = kdloss::host_scalar(&value);                            // rank-0 output
template <class T>
struct View {
  using value_type = T;
  T* data = nullptr;
  Dims shape;
  Dims strides;
  Device device = Device::host();

  View() = default;
  View(T* d, Dims sh, Dims st, Device dev) : data(d), shape(sh), strides(st), device(dev) {
    error_detail::require(shape.rank == strides.rank, "kdloss: a view's shape ", shape.str(), " and strides ",
                    strides.str(), " differ in rank");
    for (int i = 0; i < shape.rank; ++i)
      error_detail::require(shape.v[i] >= 0, "kdloss: a view's shape ", shape.str(), " has a negative extent");
  }
  /// Views of `T` convert to views of `const T`.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  View(const View<U>& other) : data(other.data), shape(other.shape), strides(other.strides), device(other.device) {}

  int rank() const { return shape.rank; }
  std::int64_t numel() const { return shape.product(); }
  std::int64_t size(int dim) const { return shape.v[dim]; }
  std::int64_t stride(int dim) const { return strides.v[dim]; }

  /// True when the elements are laid out in row-major order without gaps.
  bool is_contiguous() const {
    if (numel() <= 1) return true;
    std::int64_t step = 1;
    for (int i = rank() - 1; i >= 0; --i) {
      if (shape.v[i] != 1 && strides.v[i] != step) return false;
      step *= shape.v[i];
    }
    return true;
  }

  /// True when no two indices address the same element (required of gradient outputs).
  /// Sorts the dimensions by |stride|; each must step past the whole span of the smaller ones.
  bool is_unique() const {
    if (numel() <= 1) return true;
    std::array<int, kMaxRank> order{};
    int n = 0;
    for (int i = 0; i < rank(); ++i)
      if (shape.v[i] > 1) order[n++] = i;
    for (int i = 1; i < n; ++i)  // insertion sort by |stride|: at most kMaxRank entries
      for (int j = i; j > 0 && std::abs(strides.v[order[j]]) < std::abs(strides.v[order[j - 1]]); --j)
        std::swap(order[j], order[j - 1]);
    std::int64_t span = 1;  // elements covered by the dimensions seen so far
    for (int k = 0; k < n; ++k) {
      const std::int64_t s = std::abs(strides.v[order[k]]);
      if (s < span) return false;
      span = s * (shape.v[order[k]] - 1) + span;
    }
    return true;
  }

  /// Offset (elements) of the lowest and one-past-highest addressed element, relative to data.
  std::pair<std::int64_t, std::int64_t> extent_range() const {
    // Wrapping arithmetic: extents and strides of a view that is only validated may be absurd, and
    // signed overflow is undefined; the validators reject such views by other checks.
    std::uint64_t lo = 0, hi = 0;
    if (numel() == 0) return {0, 0};
    for (int i = 0; i < rank(); ++i) {
      const std::int64_t extent = shape.v[i] - 1;
      const std::uint64_t reach = static_cast<std::uint64_t>(strides.v[i]) * static_cast<std::uint64_t>(extent);
      (strides.v[i] < 0 ? lo : hi) += reach;
    }
    return {static_cast<std::int64_t>(lo), static_cast<std::int64_t>(hi + 1)};
  }

  /// Element at a multi-index (host views only; for tests and examples).
  template <class... Idx>
  T& operator()(Idx... idx) const {
    const std::int64_t index[] = {static_cast<std::int64_t>(idx)..., 0};
    std::int64_t off = 0;
    for (int i = 0; i < static_cast<int>(sizeof...(Idx)); ++i) off += index[i] * strides.v[i];
    return data[off];
  }

  /// Reorders the dimensions: result dim i is this view's dim order[i].
  View permute(std::initializer_list<int> order) const {
    View r = *this;
    int i = 0;
    for (int d : order) {
      r.shape.v[i] = shape.v[d];
      r.strides.v[i] = strides.v[d];
      ++i;
    }
    return r;
  }
  /// Keeps [begin, end) with a step along one dimension.
  View slice(int dim, std::int64_t begin, std::int64_t end, std::int64_t step = 1) const {
    View r = *this;
    r.data = data + begin * strides.v[dim];
    r.shape.v[dim] = (end - begin + step - 1) / step;
    r.strides.v[dim] = strides.v[dim] * step;
    return r;
  }
  /// Same memory with new extents (sizes of 1 inserted or a dim broadcast by stride 0).
  View with(Dims new_shape, Dims new_strides) const { return View(data, new_shape, new_strides, device); }
};

template <class T>
View<T> host_view(T* data, Dims shape) {
  return View<T>(data, shape, contiguous_strides(shape), Device::host());
}
template <class T>
View<T> host_view(T* data, Dims shape, Dims strides) {
  return View<T>(data, shape, strides, Device::host());
}
/// Contiguous view on CUDA device 0; for another device pass the strides too (an overload taking
/// only a device index would silently win over a braced single stride such as {2}).
template <class T>
View<T> cuda_view(T* data, Dims shape) {
  return View<T>(data, shape, contiguous_strides(shape), Device::cuda(0));
}
template <class T>
View<T> cuda_view(T* data, Dims shape, Dims strides, int device_index = 0) {
  return View<T>(data, shape, strides, Device::cuda(device_index));
}
/// A rank-0 view of one element: where a reduced loss value is written.
template <class T>
View<T> host_scalar(T* data) {
  return View<T>(data, Dims{}, Dims{}, Device::host());
}
template <class T>
View<T> cuda_scalar(T* data, int device_index = 0) {
  return View<T>(data, Dims{}, Dims{}, Device::cuda(device_index));
}

}  // namespace kdloss
