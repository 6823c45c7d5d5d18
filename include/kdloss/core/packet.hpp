// kdloss/core/packet.hpp: a fixed-width bundle of values that behaves like a scalar in the row
// operations (ops/softmax.hpp, losses/feature/kl_div.hpp), so the host row executor can run one
// operation on N neighbouring rows at once with vector arithmetic and vectorised exp/log.
// Every operator evaluates immediately (no expression templates), so lambdas may return packets
// built from temporaries, as they return scalars.
//
// With GCC or clang (host code) a packet is a GNU vector (`vector_size`), so whatever instruction
// set the enclosing function is compiled for (the host backend compiles its hot row loops once per
// ISA, backend/cpu/parallel.hpp) runs it at full width: 8 floats are one AVX2 register in the
// x86-64-v3 clone and two SSE2 registers in the baseline one. float exp and log are polynomials on
// the packet (packet_exp_f32 / packet_log_f32 below, Cephes' kernels, within 2 ulp of the correctly
// rounded value); double keeps Eigen's exp and log (as accurate as the scalar std:: functions to
// the double tests' 1e-10). Elsewhere (nvcc's front end, MSVC) a packet is an Eigen array.
#pragma once
#include <Eigen/Core>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kdloss/config.hpp"

#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(KDLOSS_NO_VECTOR_EXTENSIONS)
#define KDLOSS_PACKET_GNU_VECTORS 1
#else
#define KDLOSS_PACKET_GNU_VECTORS 0
#endif

// Packets are passed and returned by value between inline functions. GCC warns once per
// translation unit that a 32-byte vector is returned differently with and without AVX, which
// matters only for calls between separately compiled functions and never happens here (the row
// loops that use packets are flattened, backend/cpu/rowwise.hpp). The warning is reported at
// whichever function of the translation unit GCC happens to expand, so it is switched off for the
// rest of the translation unit (-Wpsabi only).
#if defined(__GNUC__) && !defined(__clang__) && KDLOSS_PACKET_GNU_VECTORS
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
// clang reports it where the header's functions are defined: switched off for this header only.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpsabi"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace math {

namespace packet_detail {

#if KDLOSS_PACKET_GNU_VECTORS
template <class T, int N>
struct storage {
#if defined(__clang__)
  typedef T type __attribute__((vector_size(sizeof(T) * N)));
#else
  typedef T type __attribute__((vector_size(sizeof(T) * N), aligned(16)));  // 16: see float_or_eigen
#endif
};
/// Lanes as a vector of T; compare results are vectors of same-width integers (0 or -1 per lane).
template <class T, int N>
using vec_t = typename storage<T, N>::type;
template <class V, class S>
KDLOSS_FORCEINLINE V broadcast(S x) {
  return V{} + x;
}
template <class M, class V>
KDLOSS_FORCEINLINE V select(const M& m, const V& a, const V& b) {
  return m ? a : b;
}
template <class V>
KDLOSS_FORCEINLINE auto less(const V& a, const V& b) {
  return a < b;
}

/// exp on a vector of floats: x = m ln2 + r (m = round(x / ln2), |r| <= ln2 / 2), exp(r) by Cephes'
/// degree-7 polynomial, times 2^m applied as two powers of two (so results down to the smallest
/// subnormal and up to overflow come out right). exp(-inf) = 0, exp(+inf) = +inf, NaN stays NaN.
template <class VF, class VI>
KDLOSS_FORCEINLINE VF packet_exp_f32(const VF& x) {
  const VF hi = broadcast<VF>(89.0f), lo = broadcast<VF>(-104.0f);
  VF xc = select(x < hi, x, hi);
  xc = select(xc > lo, xc, lo);
  // Round to nearest by adding 1.5 * 2^23: the integer m is then the low bits of t.
  const VF magic = broadcast<VF>(12582912.0f);
  const VF t = xc * 1.44269504088896341f + magic;
  const VF m = t - magic;
  const VI mi = (VI)t - (VI)magic;
  VF r = xc - m * 0.693359375f;
  r = r + m * 2.12194440e-4f;
  VF y = broadcast<VF>(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const VI e1 = mi >> 1, e2 = mi - e1;  // m in [-150, 129]: each half a normal power of two
  y = y * (VF)((e1 + 127) << 23);
  y = y * (VF)((e2 + 127) << 23);
  return select(x == x, y, x);
}

/// Natural log on a vector of floats: x = 2^e * f with f in [sqrt(1/2), sqrt(2)), log(f) by Cephes'
/// degree-10 polynomial in f - 1, e ln2 added in two parts. Subnormals are scaled first.
/// log(0) = -inf, log(+inf) = +inf, log(negative) and log(NaN) are NaN.
template <class VF, class VI>
KDLOSS_FORCEINLINE VF packet_log_f32(const VF& x) {
  const VI subnormal = x < std::numeric_limits<float>::min();
  const VF xs = select(subnormal, x * 8388608.0f, x);  // 2^23
  const VI bits = (VI)xs;
  VI e = ((bits >> 23) & 0xff) - 126 + (subnormal & -23);
  VF f = (VF)((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  const VI below = f < 0.707106781186547524f;  // move to [sqrt(1/2), sqrt(2)): f = 2f, e -= 1
  e = e + below;
  const VF f1 = f - 1.0f;
  f = select(below, f1 + f, f1);
  const VF ef = __builtin_convertvector(e, VF);
  const VF f2 = f * f;
  VF y = broadcast<VF>(7.0376836292e-2f);
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * (f2 * f);
  y = y - ef * 2.12194440e-4f;
  y = y - f2 * 0.5f;
  VF out = (f + y) + ef * 0.693359375f;
  const VF inf = broadcast<VF>(std::numeric_limits<float>::infinity());
  out = select(x == inf, inf, out);
  out = select(x == 0.0f, -inf, out);
  return select(x >= 0.0f, out, broadcast<VF>(std::numeric_limits<float>::quiet_NaN()));
}
#else
template <class T, int N>
using vec_t = Eigen::Array<T, N, 1>;
template <class V, class S>
V broadcast(S x) {
  return V::Constant(x);
}
template <class M, class V>
V select(const M& m, const V& a, const V& b) {
  return m.select(a, b);
}
template <class VF, class VI>
VF packet_exp_f32(const VF& x);  // GNU vectors only: never called here
template <class VF, class VI>
VF packet_log_f32(const VF& x);
template <class V>
Eigen::Array<bool, V::RowsAtCompileTime, 1> less(const V& a, const V& b) {
  return a < b;
}
#endif

}  // namespace packet_detail

/// N values of type T; arithmetic, comparisons and the math:: functions act lane by lane.
///
///   auto x = math::Packet<float, 8>::load(ptr_to_8_floats), y = math::exp(x * 0.25f - 1.0f);
template <class T, int N>
struct Packet {
  using Scalar = T;
  using Vec = packet_detail::vec_t<T, N>;
  static constexpr int size = N;
  Vec v;

  Packet() = default;
  /// A scalar broadcast to every lane (as Acc(x) reads in the row operations).
  template <class S, class = std::enable_if_t<std::is_arithmetic_v<S>>>
  Packet(S x) : v(packet_detail::broadcast<Vec>(static_cast<T>(x))) {}  // NOLINT: implicit, like a scalar
  explicit Packet(const Vec& a) : v(a) {}

  /// N contiguous values.
  static Packet load(const T* p) {
    Packet r;
    std::memcpy(static_cast<void*>(&r.v), p, sizeof(T) * N);
    return r;
  }
  void store(T* p) const { std::memcpy(p, static_cast<const void*>(&v), sizeof(T) * N); }
  T lane(int l) const { return v[l]; }
  void set_lane(int l, T x) { v[l] = x; }

  friend Packet operator+(const Packet& a, const Packet& b) { return Packet(Vec(a.v + b.v)); }
  friend Packet operator-(const Packet& a, const Packet& b) { return Packet(Vec(a.v - b.v)); }
  friend Packet operator*(const Packet& a, const Packet& b) { return Packet(Vec(a.v * b.v)); }
  friend Packet operator/(const Packet& a, const Packet& b) { return Packet(Vec(a.v / b.v)); }
  Packet operator-() const { return Packet(Vec(-v)); }
  Packet& operator+=(const Packet& b) {
    v = v + b.v;
    return *this;
  }
  friend auto operator>(const Packet& a, const Packet& b) { return mask(packet_detail::less(b.v, a.v)); }
  friend auto operator<(const Packet& a, const Packet& b) { return mask(packet_detail::less(a.v, b.v)); }

  Packet exp() const {
    return float_or_eigen([](const auto& x) { return Packet(packet_detail::packet_exp_f32<Vec, IVec>(x)); },
                          [](const auto& a) { return a.exp(); });
  }
  Packet log() const {
    return float_or_eigen([](const auto& x) { return Packet(packet_detail::packet_log_f32<Vec, IVec>(x)); },
                          [](const auto& a) { return a.log(); });
  }
  Packet sqrt() const {
    return eigen([](const auto& a) { return a.sqrt(); });
  }
  Packet abs() const { return Packet(packet_detail::select(packet_detail::less(v, Vec(Packet(T(0)).v)), Vec(-v), v)); }
  Packet square() const { return Packet(Vec(v * v)); }
  /// b where b > this, else this (NaN lanes of b are skipped, as the scalar row max does).
  Packet max(const Packet& b) const { return Packet(packet_detail::select(packet_detail::less(v, b.v), b.v, v)); }
  Packet min(const Packet& b) const { return Packet(packet_detail::select(packet_detail::less(b.v, v), b.v, v)); }
  /// The sum of the lanes (a row operation's result over N rows).
  T sum() const {
    T s = v[0];
    for (int l = 1; l < N; ++l) s += v[l];
    return s;
  }

  /// The lanes' comparison results; select() as math::select calls it.
  template <class M>
  struct Mask {
    M m;
    Packet select(const Packet& a, const Packet& b) const { return Packet(packet_detail::select(m, a.v, b.v)); }
  };

 private:
  template <class M>
  static Mask<M> mask(const M& m) {
    return {m};
  }
  using IVec = packet_detail::vec_t<std::int32_t, N>;
  /// f32(v) for float packets of GNU vectors, else eigen(generic). (Functions return packets, never
  /// bare vectors: a packet's 16-byte alignment keeps it out of the AVX/non-AVX return ABI split.)
  template <class F32, class Generic>
  Packet float_or_eigen(F32 f32, Generic generic) const {
#if KDLOSS_PACKET_GNU_VECTORS
    if constexpr (std::is_same_v<T, float>)
      return f32(v);
    else
      return eigen(generic);
#else
    (void)f32;
    return eigen(generic);
#endif
  }
  /// f applied to the lanes as an Eigen array (functions Eigen vectorises and the packet does not).
  template <class F>
  Packet eigen(F f) const {
    Eigen::Array<T, N, 1> a;
    std::memcpy(static_cast<void*>(a.data()), static_cast<const void*>(&v), sizeof(T) * N);
    a = f(a);
    Packet r;
    std::memcpy(static_cast<void*>(&r.v), static_cast<const void*>(a.data()), sizeof(T) * N);
    return r;
  }
};

} } }  // namespace kdloss::math

#if defined(__clang__)
#pragma clang diagnostic pop
#endif
