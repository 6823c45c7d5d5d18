// GPU attention backend (backend/cuda/attention.cuh) against a naive double reference of the formulas in
// expr/attention.hpp: o, lse, grad_q, grad_k, grad_v; strided and channels-first operands, sizes off the
// tiles, n_k = 1, large logits, wide feature dims (several column chunks), gradients not wanted; float,
// double, half and bfloat16; the simple, blocked and tensor-core kernels; a forward without lse;
// two runs bit-identical. GPU-only: the
// cases are skipped (and the test main says so) without a device.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/attention_gpu.hpp"
#include "kdloss/backend/cuda/attention_geometry.hpp"
#include "support/test_support.hpp"

TEST_CASE("cuda attention: scratch sizes are answered without CUDA headers (256-byte multiples)") {
  using namespace kdloss::backend::cuda::attention_geometry;
  CHECK(backward_scratch_bytes(2, 70, 4) == 768);  // 140 floats = 560 bytes
  CHECK(backward_scratch_bytes(1, 64, 8) == 512);
  CHECK(backward_scratch_bytes(0, 70, 4) == 0);
  // lse in the scratch only for the 2-byte (tensor-core) forward that keeps none itself
  CHECK(forward_scratch_bytes(2, 70, 2, false) == 768);
  CHECK(forward_scratch_bytes(2, 70, 2, true) == 0);
  CHECK(forward_scratch_bytes(2, 70, 4, false) == 0);
  CHECK(forward_scratch_bytes(2, 70, 8, false) == 0);
}

#if KDLOSS_TEST_CUDA
namespace {

using kdloss_test::AttnOperand;
using kdloss_test::AttnProblem;

/// Physical layouts of a logical [B, n, f] operand.
enum class Layout { contiguous, channels_first, padded };

constexpr double kFill = -5.0;  // output storage before the call: gaps must keep it

AttnOperand place(const std::vector<double>& v, std::int64_t B, std::int64_t n, std::int64_t f, Layout layout) {
  AttnOperand op;
  std::int64_t size = 0;
  switch (layout) {
    case Layout::contiguous:
      op.batch = n * f, op.row = f, op.col = 1, size = B * n * f;
      break;
    case Layout::channels_first:  // a [B, C, H, W] map read as [B, H*W, C]
      op.batch = n * f, op.row = 1, op.col = n, size = B * n * f;
      break;
    case Layout::padded:
      op.offset = 2, op.batch = n * (f + 3) + 5, op.row = f + 3, op.col = 1, size = 2 + B * op.batch;
      break;
  }
  op.storage.assign(static_cast<std::size_t>(size), kFill);
  if (v.empty()) return op;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t c = 0; c < f; ++c)
        op.storage[op.offset + b * op.batch + i * op.row + c * op.col] = v[(b * n + i) * f + c];
  return op;
}

/// The logical [B, n, f] values of `storage` laid out as `op`; checks every other element kept kFill.
std::vector<double> gather(const std::vector<double>& storage, const AttnOperand& op, std::int64_t B, std::int64_t n,
                           std::int64_t f, const char* what) {
  REQUIRE(storage.size() == op.storage.size());
  std::vector<double> v(static_cast<std::size_t>(B * n * f));
  std::vector<char> used(storage.size(), 0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t c = 0; c < f; ++c) {
        const std::int64_t at = op.offset + b * op.batch + i * op.row + c * op.col;
        v[(b * n + i) * f + c] = storage[at];
        used[at] = 1;
      }
  for (std::size_t at = 0; at < storage.size(); ++at)
    if (!used[at] && storage[at] != kFill) {
      FAIL_CHECK(what << ": storage[" << at << "] outside the view was written");
      break;
    }
  return v;
}

struct Reference {
  std::vector<double> o, lse, grad_q, grad_k, grad_v;
};

/// The formulas of expr/attention.hpp in double, row-major [B, n, f] operands. The backward's D uses
/// `o_used` (the forward output the backend itself was given).
Reference reference(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                    const std::vector<double>& grad_o, const std::vector<double>* o_used, std::int64_t B,
                    std::int64_t nq, std::int64_t nk, std::int64_t d, std::int64_t dv, double scale) {
  Reference r;
  r.o.assign(B * nq * dv, 0.0), r.lse.assign(B * nq, 0.0);
  r.grad_q.assign(B * nq * d, 0.0), r.grad_k.assign(B * nk * d, 0.0), r.grad_v.assign(B * nk * dv, 0.0);
  std::vector<double> s(nk), p(nk);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < nq; ++i) {
      double mx = -INFINITY;
      for (std::int64_t j = 0; j < nk; ++j) {
        double t = 0;
        for (std::int64_t f = 0; f < d; ++f) t += q[(b * nq + i) * d + f] * k[(b * nk + j) * d + f];
        s[j] = scale * t;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (std::int64_t j = 0; j < nk; ++j) sum += std::exp(s[j] - mx);
      const double lse = mx + std::log(sum);
      r.lse[b * nq + i] = lse;
      for (std::int64_t j = 0; j < nk; ++j) p[j] = std::exp(s[j] - lse);
      for (std::int64_t f = 0; f < dv; ++f) {
        double t = 0;
        for (std::int64_t j = 0; j < nk; ++j) t += p[j] * v[(b * nk + j) * dv + f];
        r.o[(b * nq + i) * dv + f] = t;
      }
      const std::vector<double>& o = o_used ? *o_used : r.o;
      double D = 0;
      for (std::int64_t f = 0; f < dv; ++f) D += grad_o[(b * nq + i) * dv + f] * o[(b * nq + i) * dv + f];
      for (std::int64_t j = 0; j < nk; ++j) {
        double dp = 0;
        for (std::int64_t f = 0; f < dv; ++f) dp += grad_o[(b * nq + i) * dv + f] * v[(b * nk + j) * dv + f];
        const double ds = p[j] * (dp - D);
        for (std::int64_t f = 0; f < d; ++f) {
          r.grad_q[(b * nq + i) * d + f] += scale * ds * k[(b * nk + j) * d + f];
          r.grad_k[(b * nk + j) * d + f] += scale * ds * q[(b * nq + i) * d + f];
        }
        for (std::int64_t f = 0; f < dv; ++f) r.grad_v[(b * nk + j) * dv + f] += p[j] * grad_o[(b * nq + i) * dv + f];
      }
    }
  return r;
}

const char* dtype_name(int dtype) {
  static const char* names[] = {"float", "double", "half", "bfloat16"};
  return names[dtype];
}

/// Relative tolerance per element type; the absolute one is the same times the largest |reference|.
/// half / bfloat16 outputs round to 11 / 8 bits; float accumulates in float.
double tolerance(int dtype) {
  static const double t[] = {5e-4, 1e-9, 4e-3, 3e-2};
  return t[dtype];
}

void compare(const std::vector<double>& got, const std::vector<double>& want, double tol, const char* what) {
  double big = 0;
  for (double w : want) big = std::max(big, std::fabs(w));
  kdloss_test::check_close(got, want, tol, tol * std::max(big, 1e-3), what);
}

struct Case {
  std::int64_t B, nq, nk, d, dv;
  double scale;
  Layout q, k, v, o, grad_o, grad_q, grad_k, grad_v;
  double q_amplitude = 1.0;  // large values make large logits
  bool want_k = true;
  bool self = false;  // q = k = v (the seed relation)
};

struct Inputs {
  std::vector<double> q, k, v, grad_o;
};

Inputs inputs_of(const Case& c, int dtype, std::uint32_t seed) {
  Inputs in;
  auto make = [&](std::int64_t n, std::uint32_t s, double amp) {
    auto x = kdloss_test::random_vector<double>(static_cast<std::size_t>(n), s, -amp, amp);
    return kdloss_test::round_to_dtype(dtype, x);
  };
  in.q = make(c.B * c.nq * c.d, seed, c.q_amplitude);
  in.k = c.self ? in.q : make(c.B * c.nk * c.d, seed + 1, 1.0);
  in.v = c.self ? in.q : make(c.B * c.nk * c.dv, seed + 2, 1.0);
  in.grad_o = make(c.B * c.nq * c.dv, seed + 3, 1.0);
  return in;
}

AttnProblem problem_of(const Case& c, const Inputs& in) {
  AttnProblem p;
  p.batch = c.B, p.n_q = c.nq, p.n_k = c.nk, p.d = c.d, p.dv = c.dv, p.scale = c.scale;
  p.q = place(in.q, c.B, c.nq, c.d, c.q);
  p.k = place(in.k, c.B, c.nk, c.d, c.k);
  p.v = place(in.v, c.B, c.nk, c.dv, c.v);
  p.grad_o = place(in.grad_o, c.B, c.nq, c.dv, c.grad_o);
  p.o = place({}, c.B, c.nq, c.dv, c.o);
  p.grad_q = place({}, c.B, c.nq, c.d, c.grad_q);
  if (c.want_k) p.grad_k = place({}, c.B, c.nk, c.d, c.grad_k);
  p.grad_v = place({}, c.B, c.nk, c.dv, c.grad_v);
  return p;
}

void check_case(const Case& c, int dtype, int path, std::uint32_t seed) {
  CAPTURE(dtype_name(dtype));
  CAPTURE(path);
  const Inputs in = inputs_of(c, dtype, seed);
  const AttnProblem p = problem_of(c, in);
  const auto got = kdloss_test::attention_on_gpu(dtype, path, p, true);
  const auto o = gather(got.o, p.o, c.B, c.nq, c.dv, "o");
  const auto want = reference(in.q, in.k, in.v, in.grad_o, &o, c.B, c.nq, c.nk, c.d, c.dv, c.scale);
  const double tol = tolerance(dtype);
  compare(o, want.o, tol, "o");
  compare(got.lse, want.lse, dtype == 1 ? tol : tolerance(0), "lse");
  compare(gather(got.grad_q, p.grad_q, c.B, c.nq, c.d, "grad_q"), want.grad_q, tol, "grad_q");
  if (c.want_k) compare(gather(got.grad_k, p.grad_k, c.B, c.nk, c.d, "grad_k"), want.grad_k, tol, "grad_k");
  else CHECK(got.grad_k.empty());
  compare(gather(got.grad_v, p.grad_v, c.B, c.nk, c.dv, "grad_v"), want.grad_v, tol, "grad_v");
}

const Layout C = Layout::contiguous, F = Layout::channels_first, P = Layout::padded;

const Case kCases[] = {
    // sizes off every tile (16, 32, 64) and dv > 64 (the 256-column chunk of the blocked float kernels)
    {2, 70, 83, 40, 72, 1.0 / std::sqrt(40.0), C, C, C, C, C, C, C, C},
    // strided / channels-first operands everywhere, d over 256 (two grad_q / grad_k chunks)
    {2, 33, 65, 300, 20, 0.05, F, P, F, P, F, P, F, P},
    // dv over 256: two forward blocks per query tile must agree on the weights
    {1, 17, 20, 8, 270, 0.3, P, F, C, F, P, C, P, F},
    // n_k = 1: o = v_0 in every row, grad_q = grad_k = 0; grad_k not wanted
    {2, 5, 1, 3, 7, 1.0, C, P, F, C, F, P, C, C, 1.0, false},
    // large logits (up to a few hundred): the online softmax must not overflow
    {1, 40, 50, 24, 16, 1.0, C, F, C, C, C, C, C, C, 60.0},
    // the seed relation: F as [H*W, C] from a channels-first map, q = k = v, scale 1/sqrt(C)
    {1, 150, 150, 64, 64, 0.125, F, F, F, F, F, F, F, F, 1.0, true, true},
};

}  // namespace
#endif

KDLOSS_GPU_TEST("cuda attention: simple, blocked and tensor-core kernels match the double reference (o, lse, gradients)") {
#if KDLOSS_TEST_CUDA
  std::uint32_t seed = 900;
  for (const Case& c : kCases) {
    CAPTURE(c.nq);
    CAPTURE(c.nk);
    CAPTURE(c.d);
    CAPTURE(c.dv);
    for (int dtype = 0; dtype < kdloss_test::kAttnDtypes; ++dtype)
      for (int path : {1, 2, 3}) check_case(c, dtype, path, seed);
    seed += 10;
  }
  // automatic: blocked for float, tensor cores for the half forward
  check_case(kCases[0], 0, 0, 7);
  check_case(kCases[1], 2, 0, 8);
#endif
}

KDLOSS_GPU_TEST("cuda attention: a forward without an lse buffer keeps it in the scratch and writes the same o") {
#if KDLOSS_TEST_CUDA
  const Case& c = kCases[0];
  for (int dtype = 0; dtype < kdloss_test::kAttnDtypes; ++dtype)
    for (int path : {0, 1, 2, 3}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(path);
      AttnProblem p = problem_of(c, inputs_of(c, dtype, 55));
      const auto with_lse = kdloss_test::attention_on_gpu(dtype, path, p, false);
      p.keep_lse = false;
      const auto without = kdloss_test::attention_on_gpu(dtype, path, p, false);
      CHECK(without.lse.empty());
      CHECK(without.o == with_lse.o);
    }
#endif
}

KDLOSS_GPU_TEST("cuda attention: n_k = 1 gives o = v_0 exactly and grad_q, grad_k at rounding level") {
#if KDLOSS_TEST_CUDA
  const Case& c = kCases[3];
  for (int dtype = 0; dtype < kdloss_test::kAttnDtypes; ++dtype) {
    CAPTURE(dtype_name(dtype));
    const Inputs in = inputs_of(c, dtype, 31);
    const AttnProblem p = problem_of(c, in);
    const auto got = kdloss_test::attention_on_gpu(dtype, 2, p, true);
    const auto o = gather(got.o, p.o, c.B, c.nq, c.dv, "o");
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t i = 0; i < c.nq; ++i)
        for (std::int64_t f = 0; f < c.dv; ++f) CHECK(o[(b * c.nq + i) * c.dv + f] == in.v[b * c.dv + f]);
    // dS = P (dP - D) with P = 1 and dP, D two float sums of the same products (in different orders).
    const double zero_tol = dtype == 1 ? 1e-13 : 1e-5;
    for (double g : gather(got.grad_q, p.grad_q, c.B, c.nq, c.d, "grad_q")) CHECK(std::fabs(g) <= zero_tol);
  }
#endif
}

KDLOSS_GPU_TEST("cuda attention: two runs are bit-identical (float, half, double; every path)") {
#if KDLOSS_TEST_CUDA
  const Case c{2, 200, 190, 64, 80, 0.125, C, F, C, C, P, C, C, C};
  for (int dtype : {0, 1, 2})
    for (int path : {1, 2, 3}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(path);
      const AttnProblem p = problem_of(c, inputs_of(c, dtype, 77));
      const auto first = kdloss_test::attention_on_gpu(dtype, path, p, true);
      const auto second = kdloss_test::attention_on_gpu(dtype, path, p, true);
      CHECK(first.o == second.o);
      CHECK(first.lse == second.lse);
      CHECK(first.grad_q == second.grad_q);
      CHECK(first.grad_k == second.grad_k);
      CHECK(first.grad_v == second.grad_v);
    }
#endif
}
