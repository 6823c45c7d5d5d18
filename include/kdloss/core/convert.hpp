// kdloss/core/convert.hpp: element <-> accumulation-type conversions, written once for host and
// device code (half and bfloat16 through float, in translation units nvcc compiles).
//
//   float v = kdloss::load_as<float>(ptr);       // ptr: const float*, const __half*, ...
//   kdloss::store_as(out_ptr, v);                // rounds to nearest for half and bfloat16
//   double d = kdloss::convert<double>(v);
#pragma once

#if KDLOSS_CUDA_ENABLED
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kdloss/config.hpp"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {

namespace detail {
template <class To, class From>
struct Convert {
  static KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE To apply(const From& v) { return static_cast<To>(v); }
};
#if KDLOSS_CUDA_ENABLED
template <class To>
struct Convert<To, __half> {
  static KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE To apply(const __half& v) { return static_cast<To>(__half2float(v)); }
};
template <class To>
struct Convert<To, __nv_bfloat16> {
  static KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE To apply(const __nv_bfloat16& v) {
    return static_cast<To>(__bfloat162float(v));
  }
};
template <class From>
struct Convert<__half, From> {
  static KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE __half apply(const From& v) {
    return __float2half_rn(static_cast<float>(v));
  }
};
template <class From>
struct Convert<__nv_bfloat16, From> {
  static KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE __nv_bfloat16 apply(const From& v) {
    return __float2bfloat16_rn(static_cast<float>(v));
  }
};
template <>
struct Convert<__half, __half> {
  static KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE __half apply(const __half& v) { return v; }
};
template <>
struct Convert<__nv_bfloat16, __nv_bfloat16> {
  static KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE __nv_bfloat16 apply(const __nv_bfloat16& v) { return v; }
};
#endif
}  // namespace detail

/// v as a To (half and bfloat16 go through float; stores round to nearest even).
template <class To, class From>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE To convert(const From& v) {
  return detail::Convert<To, From>::apply(v);
}
/// *p as the accumulation type Acc.
template <class Acc, class T>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE Acc load_as(const T* p) {
  return convert<Acc>(*p);
}
/// *p = v, converted to the element type.
template <class T, class Acc>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE void store_as(T* p, Acc v) {
  *p = convert<T>(v);
}

} }  // namespace kdloss
