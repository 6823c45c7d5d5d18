// kdloss/core/packet.hpp: a fixed-width bundle of values that behaves like a scalar in the row
// operations (ops/softmax.hpp, losses/feature/kl_div.hpp), so the host row executor can run one
// operation on N neighbouring rows at once with vector arithmetic and Eigen's vectorised exp/log.
// Every operator evaluates immediately (no expression templates), so lambdas may return packets
// built from temporaries, as they return scalars.
#pragma once
#include <Eigen/Core>
#include <type_traits>

namespace kdloss::math {

template <int N>
struct PacketMask;

/// N values of type T; arithmetic, comparisons and the math:: functions act lane by lane.
///
///   Packet<float, 8> x(ptr_to_8_floats_loaded_elsewhere_as_array), y = math::exp(x * 0.25f - 1.0f);
template <class T, int N>
struct Packet {
  using Scalar = T;
  using Array = Eigen::Array<T, N, 1>;
  Array v;

  Packet() = default;
  /// A scalar broadcast to every lane (as Acc(x) reads in the row operations).
  template <class S, class = std::enable_if_t<std::is_arithmetic_v<S>>>
  Packet(S x) : v(Array::Constant(static_cast<T>(x))) {}  // NOLINT: implicit, like a scalar
  explicit Packet(const Array& a) : v(a) {}

  friend Packet operator+(const Packet& a, const Packet& b) { return Packet(Array(a.v + b.v)); }
  friend Packet operator-(const Packet& a, const Packet& b) { return Packet(Array(a.v - b.v)); }
  friend Packet operator*(const Packet& a, const Packet& b) { return Packet(Array(a.v * b.v)); }
  friend Packet operator/(const Packet& a, const Packet& b) { return Packet(Array(a.v / b.v)); }
  Packet operator-() const { return Packet(Array(-v)); }
  Packet& operator+=(const Packet& b) {
    v += b.v;
    return *this;
  }
  friend PacketMask<N> operator>(const Packet& a, const Packet& b) { return {a.v > b.v}; }
  friend PacketMask<N> operator<(const Packet& a, const Packet& b) { return {a.v < b.v}; }

  Packet exp() const { return Packet(Array(v.exp())); }
  Packet log() const { return Packet(Array(v.log())); }
  Packet sqrt() const { return Packet(Array(v.sqrt())); }
  Packet abs() const { return Packet(Array(v.abs())); }
  Packet square() const { return Packet(Array(v.square())); }
  Packet max(const Packet& b) const { return Packet(Array(v.max(b.v))); }
  Packet min(const Packet& b) const { return Packet(Array(v.min(b.v))); }
  /// The sum of the lanes (a row operation's result over N rows).
  T sum() const { return v.sum(); }
};

/// The lanes where a comparison holds; select() as math::select calls it.
template <int N>
struct PacketMask {
  Eigen::Array<bool, N, 1> m;
  template <class T>
  Packet<T, N> select(const Packet<T, N>& a, const Packet<T, N>& b) const {
    return Packet<T, N>(typename Packet<T, N>::Array(m.select(a.v, b.v)));
  }
};

}  // namespace kdloss::math
