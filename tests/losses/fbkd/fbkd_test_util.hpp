// Helpers shared by the FBKD tests: random levels, the library's total run on host buffers, and the
// mapping from kdloss::fbkd::Config to the reference's configuration.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kdloss/losses/fbkd/fbkd.hpp"
#include "reference/losses/fbkd.hpp"
#include "support/test_support.hpp"

namespace fbkd_test {

using kdloss::Dims;
using Vec = std::vector<double>;

inline kdloss_ref::fbkd::Shape ref_shape(const Dims& d) { return {d[0], d[1], d[2], d[3]}; }

inline kdloss_ref::fbkd::Config ref_config(const kdloss::fbkd::Config& c) {
  kdloss_ref::fbkd::Config r;
  r.paper_mask = c.mask_form == kdloss::fbkd::MaskForm::paper;
  r.paper_transfer = c.transfer_form == kdloss::fbkd::TransferForm::paper;
  r.t_s = c.spatial_temperature;
  r.t_c = c.channel_temperature;
  r.w_am = c.w_am;
  r.w_at = c.w_at;
  r.channel_mask = c.use_channel_mask;
  return r;
}

struct Preset {
  const char* name;
  kdloss::fbkd::Config config;
};
inline std::vector<Preset> presets() {
  using kdloss::fbkd::Config;
  return {{"code_two_stage", Config::code_two_stage()},
          {"code_one_stage", Config::code_one_stage()},
          {"paper_two_stage", Config::paper_two_stage()},
          {"paper_one_stage", Config::paper_one_stage()},
          {"paper_two_stage without channel mask", [] {
             Config c = Config::paper_two_stage();
             c.use_channel_mask = false;
             return c;
           }()}};
}

/// A random level with every input given (A, C_hat, S_hat distinct from S).
inline kdloss_ref::fbkd::Level random_level(const Dims& shape, std::uint32_t seed, bool with_adapted = true) {
  const auto s = kdloss_ref::fbkd::Shape{shape[0], shape[1], shape[2], shape[3]};
  kdloss_ref::fbkd::Level l;
  l.shape = s;
  l.s = kdloss_test::random_vector<double>(static_cast<std::size_t>(s.numel()), seed);
  l.t = kdloss_test::random_vector<double>(static_cast<std::size_t>(s.numel()), seed + 1);
  if (with_adapted) l.a = kdloss_test::random_vector<double>(static_cast<std::size_t>(s.numel()), seed + 2);
  l.c_hat = kdloss_test::random_vector<double>(static_cast<std::size_t>(s.b * s.c), seed + 3);
  l.s_hat = kdloss_test::random_vector<double>(static_cast<std::size_t>(s.b * s.hw()), seed + 4);
  return l;
}

/// What the library computed for one level.
struct Grads {
  Vec a, s, c, sp;
};
struct Result {
  double value = 0;
  std::vector<Grads> grads;
};

/// Runs the library's total on host copies of `levels` in element type T: mode 0 forward,
/// 1 backward with upstream `up`, 2 forward_backward. Requests every gradient (that of A only when A
/// is given: without an adapter grad_student takes the whole gradient).
template <class T>
Result run_total(const std::vector<kdloss_ref::fbkd::Level>& levels, const kdloss::fbkd::Config& cfg, int mode,
                 double up = 1.0) {
  using namespace kdloss;
  std::vector<std::vector<T>> keep;
  keep.reserve(levels.size() * 9);
  auto own = [&](const Vec& v) -> T* {
    keep.emplace_back(v.begin(), v.end());
    return keep.back().data();
  };
  std::vector<fbkd::Level<T>> lv;
  for (const auto& l : levels) {
    const auto& s = l.shape;
    const Dims sh{s.b, s.c, s.h, s.w}, sp{s.b, 1, s.h, s.w}, ch{s.b, s.c};
    fbkd::Level<T> x(host_view<const T>(own(l.s), sh), host_view<const T>(own(l.t), sh));
    if (!l.a.empty()) x.student_adapted = host_view<const T>(own(l.a), sh);
    x.student_channel = host_view<const T>(own(l.c_hat), ch);
    x.student_spatial = host_view<const T>(own(l.s_hat), sp);
    if (!l.a.empty()) x.grad_student_adapted = host_view(own(Vec(l.t.size(), -7.0)), sh);
    x.grad_student = host_view(own(Vec(l.t.size(), -7.0)), sh);
    x.grad_student_channel = host_view(own(Vec(l.c_hat.size(), -7.0)), ch);
    x.grad_student_spatial = host_view(own(Vec(l.s_hat.size(), -7.0)), sp);
    lv.push_back(x);
  }
  T out = T(-7), upv = static_cast<T>(up);
  if (mode == 0) fbkd::total_loss(lv, host_scalar(&out), cfg);
  if (mode == 1) fbkd::total_loss_backward(lv, host_scalar<const T>(&upv), cfg);
  if (mode == 2) fbkd::total_loss_forward_backward(lv, host_scalar(&out), cfg);
  Result r;
  r.value = static_cast<double>(out);
  auto back = [](const View<T>& v) {
    if (v.data == nullptr) return Vec{};  // not requested
    const auto x = kdloss_test::to_vector(v);
    return Vec(x.begin(), x.end());
  };
  for (const auto& x : lv)
    r.grads.push_back({back(x.grad_student_adapted), back(x.grad_student), back(x.grad_student_channel),
                       back(x.grad_student_spatial)});
  return r;
}

/// The reference gradients by central differences, masks held at their unperturbed values
/// (they are detached constants). With an adapter, S is perturbed only where the paper L_AT reads it
/// and A as itself; without one (A = S) S is perturbed everywhere and there is no gradient of A.
/// C_hat and S_hat are perturbed as themselves.
inline std::vector<Grads> numeric_grads(const std::vector<kdloss_ref::fbkd::Level>& levels, const kdloss::fbkd::Config& cfg) {
  const kdloss_ref::fbkd::Config rc = ref_config(cfg);
  std::vector<kdloss_ref::fbkd::Masks> masks;
  for (const auto& l : levels) masks.push_back(kdloss_ref::fbkd::masks_of(l, rc));
  std::vector<Grads> out(levels.size());
  for (std::size_t i = 0; i < levels.size(); ++i) {
    auto with = [&](auto set) {
      return [&, set](const Vec& x) {
        auto copy = levels;
        set(copy[i], x);
        return kdloss_ref::fbkd::total(copy, rc, &masks);
      };
    };
    if (!levels[i].a.empty())
      out[i].a = kdloss_test::numeric_gradient(levels[i].a, with([](kdloss_ref::fbkd::Level& l, const Vec& x) { l.a = x; }));
    out[i].s = kdloss_test::numeric_gradient(levels[i].s, with([](kdloss_ref::fbkd::Level& l, const Vec& x) { l.s = x; }));
    out[i].c =
        kdloss_test::numeric_gradient(levels[i].c_hat, with([](kdloss_ref::fbkd::Level& l, const Vec& x) { l.c_hat = x; }));
    out[i].sp =
        kdloss_test::numeric_gradient(levels[i].s_hat, with([](kdloss_ref::fbkd::Level& l, const Vec& x) { l.s_hat = x; }));
  }
  return out;
}

inline double max_abs(const Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}
inline Vec scaled(const Vec& v, double k) {
  Vec r(v);
  for (double& x : r) x *= k;
  return r;
}

/// Gradients agree to `rel` of each entry plus `floor` of the largest entry of the expected gradient
/// (entries near 0 would otherwise need their own tolerance). Against central differences the floor
/// must cover their rounding noise: eps * |total| / h ~ 1e-11 on gradients of ~1e-6 (weights 7e-5).
inline void check_grads(const Grads& got, const Grads& want, double rel, const std::string& what, double floor = -1) {
  CAPTURE(what);
  const double f = floor < 0 ? rel : floor;
  auto one = [&](const Vec& g, const Vec& w, const char* name) {
    kdloss_test::check_close(g, w, rel, f * max_abs(w) + 1e-300, name);
  };
  one(got.a, want.a, "grad_student_adapted");
  one(got.s, want.s, "grad_student");
  one(got.c, want.c, "grad_student_channel");
  one(got.sp, want.sp, "grad_student_spatial");
}

/// Expects a kdloss::Error whose message contains `needle`.
template <class F>
void expect_error(F&& call, const std::string& needle) {
  try {
    call();
    FAIL("expected kdloss::Error containing: " << needle);
  } catch (const kdloss::Error& e) {
    CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
  }
}

/// One non-finite input of the NaN-rule tests: NaN, +inf or -inf at one entry of S, T, A, C_hat or S_hat.
struct Poison {
  const char* input;  // "s", "t", "a", "c_hat", "s_hat"
  double value;
};
inline std::vector<Poison> poisons() {
  std::vector<Poison> out;
  for (const char* in : {"s", "t", "a", "c_hat", "s_hat"})
    for (double v : {std::nan(""), HUGE_VAL, -HUGE_VAL}) out.push_back({in, v});
  return out;
}
/// Writes p.value at entry `at` of the named input of `l` (false when the level has no such input).
inline bool poison(kdloss_ref::fbkd::Level& l, const Poison& p, std::size_t at) {
  const std::string in(p.input);
  Vec& v = in == "s" ? l.s : in == "t" ? l.t : in == "a" ? l.a : in == "c_hat" ? l.c_hat : l.s_hat;
  if (v.empty()) return false;
  v[at % v.size()] = p.value;
  return true;
}
/// Every gradient has NaN / inf where autograd's has them, and agrees elsewhere.
inline void check_grads_nonfinite(const Grads& got, const kdloss_ref::fbkd::Grads& want, double rel, double abs_tol,
                                  const std::string& what) {
  CAPTURE(what);
  kdloss_test::check_same_nonfinite(got.a, want.a, rel, abs_tol, "grad_student_adapted");
  kdloss_test::check_same_nonfinite(got.s, want.s, rel, abs_tol, "grad_student");
  kdloss_test::check_same_nonfinite(got.c, want.c_hat, rel, abs_tol, "grad_student_channel");
  kdloss_test::check_same_nonfinite(got.sp, want.s_hat, rel, abs_tol, "grad_student_spatial");
}

}  // namespace fbkd_test
