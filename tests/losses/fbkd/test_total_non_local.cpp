// fbkd::total_loss with its fourth term L_NLD: the total equals the three-term total plus the separately
// computed non_local_loss of every level (value, dS added to the other terms' part, every parameter
// gradient), central differences of the composed reference (tests/reference/losses/fbkd_non_local.hpp)
// for S and every parameter of NL_S, NL_T and the adaptation conv per level with the presets' per-level
// block settings, T untouched, the all-or-none rule, bad inputs with outputs untouched, the workspace
// query, and the presets' weights.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <cstdint>
#include <string>
#include <vector>

#include "kdloss/losses/fbkd/fbkd.hpp"
#include "reference/losses/fbkd_non_local.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_ref::ops::NonLocal;
using kdloss_ref::ops::NonLocalParams;
using kdloss_test::check_close;

namespace {

using Vec = std::vector<double>;

/// The per-level parameter and gradient lists in one order (g, θ, φ, conv_out, BN).
std::vector<Vec*> params_of(NonLocalParams& p) {
  return {&p.g_w, &p.g_b, &p.theta_w, &p.theta_b, &p.phi_w, &p.phi_b, &p.out_w, &p.out_b, &p.bn_w, &p.bn_b};
}
const char* const kParamNames[] = {"g_w", "g_b", "theta_w", "theta_b", "phi_w", "phi_b", "out_w", "out_b", "bn_w", "bn_b"};

/// One level in double: features, the three-term inputs, both blocks, the adaptation conv.
struct LevelData {
  Dims shape;
  std::int64_t m = 2;
  Vec s, t, a, c_hat, s_hat, aw, ab;
  NonLocalParams ps, pt;
  LevelData(Dims sh, std::int64_t m_, std::uint32_t seed) : shape(sh), m(m_) {
    const auto rnd = [&](std::int64_t n, double lo = -1.0, double hi = 1.0) {
      return kdloss_test::random_vector<double>(static_cast<std::size_t>(n), seed++, lo, hi);
    };
    const std::int64_t B = sh[0], C = sh[1], n = sh.product();
    s = rnd(n), t = rnd(n), a = rnd(n), c_hat = rnd(B * C), s_hat = rnd(B * sh[2] * sh[3]);
    aw = rnd(C * C), ab = rnd(C);
    for (NonLocalParams* p : {&ps, &pt}) {
      p->g_w = rnd(m * C), p->g_b = rnd(m), p->theta_w = rnd(m * C), p->theta_b = rnd(m);
      p->phi_w = rnd(m * C), p->phi_b = rnd(m), p->out_w = rnd(m * C), p->out_b = rnd(C);
      p->bn_w = rnd(C, 0.5, 1.5), p->bn_b = rnd(C);
    }
  }
  /// The reference L_NLD of this level with the options `o` and weight w.
  kdloss_ref::fbkd::NonLocalLoss ref(const ops::NonLocalOptions& o, double w) const {
    kdloss_ref::fbkd::NonLocalLoss r;
    r.block = NonLocal{shape[0], shape[1], shape[2], shape[3], m, NonLocal::dot_product, true, o.pool_g, o.pool_phi, true};
    REQUIRE(o.mode == ops::NonLocalMode::dot_product);
    r.weight = w;
    return r;
  }
};

/// Host buffers of one block's parameters and gradients (gradients start at `fill`).
template <class T>
struct Block {
  std::vector<std::vector<T>> p, g;
  Block(const NonLocalParams& src, double fill) {
    NonLocalParams q = src;
    for (Vec* v : params_of(q)) {
      p.emplace_back(v->begin(), v->end());
      g.emplace_back(v->size(), T(fill));
    }
  }
  void bind(ops::NonLocalArgs<T>& a, std::int64_t C, std::int64_t m, bool grads) {
    a.g_weight = host_view<const T>(p[0].data(), {m, C, 1, 1});
    a.g_bias = host_view<const T>(p[1].data(), {m});
    a.theta_weight = host_view<const T>(p[2].data(), {m, C});
    a.theta_bias = host_view<const T>(p[3].data(), {m});
    a.phi_weight = host_view<const T>(p[4].data(), {m, C});
    a.phi_bias = host_view<const T>(p[5].data(), {m});
    a.conv_out_weight = host_view<const T>(p[6].data(), {C, m, 1, 1});
    a.conv_out_bias = host_view<const T>(p[7].data(), {C});
    a.bn_weight = host_view<const T>(p[8].data(), {C});
    a.bn_bias = host_view<const T>(p[9].data(), {C});
    if (!grads) return;
    a.grad_g_weight = host_view(g[0].data(), {m, C});
    a.grad_g_bias = host_view(g[1].data(), {m});
    a.grad_theta_weight = host_view(g[2].data(), {m, C});
    a.grad_theta_bias = host_view(g[3].data(), {m});
    a.grad_phi_weight = host_view(g[4].data(), {m, C});
    a.grad_phi_bias = host_view(g[5].data(), {m});
    a.grad_conv_out_weight = host_view(g[6].data(), {C, m});
    a.grad_conv_out_bias = host_view(g[7].data(), {C});
    a.grad_bn_weight = host_view(g[8].data(), {C});
    a.grad_bn_bias = host_view(g[9].data(), {C});
  }
  std::vector<Vec> grads() const {
    std::vector<Vec> o;
    for (const auto& v : g) o.emplace_back(v.begin(), v.end());
    return o;
  }
};

/// The library's buffers of one level in type T.
template <class T>
struct Buffers {
  std::vector<T> s, t, a, c, sp, aw, ab, ga, gs, gc, gsp, gaw, gab;
  Block<T> bs, bt;
  Buffers(const LevelData& d, double fill)
      : s(d.s.begin(), d.s.end()), t(d.t.begin(), d.t.end()), a(d.a.begin(), d.a.end()),
        c(d.c_hat.begin(), d.c_hat.end()), sp(d.s_hat.begin(), d.s_hat.end()), aw(d.aw.begin(), d.aw.end()),
        ab(d.ab.begin(), d.ab.end()), ga(s.size(), T(-7)), gs(s.size(), T(-7)), gc(c.size(), T(-7)),
        gsp(sp.size(), T(-7)), gaw(aw.size(), T(fill)), gab(ab.size(), T(fill)), bs(d.ps, fill), bt(d.pt, fill) {}
  /// The level's views; `adapter`: A given (else A = S); `nld`: the non-local parameters given.
  fbkd::Level<T> level(const LevelData& d, bool adapter, bool nld) {
    const Dims& sh = d.shape;
    const std::int64_t B = sh[0], C = sh[1];
    fbkd::Level<T> lv(host_view<const T>(s.data(), sh), host_view<const T>(t.data(), sh));
    if (adapter) {
      lv.student_adapted = host_view<const T>(a.data(), sh);
      lv.grad_student_adapted = host_view(ga.data(), sh);
    }
    lv.student_channel = host_view<const T>(c.data(), {B, C});
    lv.student_spatial = host_view<const T>(sp.data(), {B, 1, sh[2], sh[3]});
    lv.grad_student = host_view(gs.data(), sh);
    lv.grad_student_channel = host_view(gc.data(), {B, C});
    lv.grad_student_spatial = host_view(gsp.data(), {B, 1, sh[2], sh[3]});
    if (!nld) return lv;
    bs.bind(lv.student_non_local, C, d.m, true);
    bt.bind(lv.teacher_non_local, C, d.m, true);
    lv.non_local_adapt_weight = host_view<const T>(aw.data(), {C, C, 1, 1});
    lv.non_local_adapt_bias = host_view<const T>(ab.data(), {C});
    lv.grad_non_local_adapt_weight = host_view(gaw.data(), {C, C});
    lv.grad_non_local_adapt_bias = host_view(gab.data(), {C});
    return lv;
  }
};

/// Two levels that the official preset's pools (8, 4) fit: P_0 8 x 8, P_1 4 x 5 (m = 2: the caller's
/// weights carry m, and the test keeps it small).
std::vector<LevelData> two_levels() { return {LevelData({2, 3, 8, 8}, 2, 11), LevelData({2, 3, 4, 5}, 2, 41)}; }

struct TotalRun {
  double value = 0;
  std::vector<Buffers<double>> bufs;
};

TotalRun run_total(const std::vector<LevelData>& data, const fbkd::Config& cfg, bool adapter, bool nld, Mode mode,
                   double up = 1.0, double fill = 0.0) {
  TotalRun r;
  r.bufs.reserve(data.size());
  std::vector<fbkd::Level<double>> lv;
  for (const auto& d : data) {
    r.bufs.emplace_back(d, fill);
    lv.push_back(r.bufs.back().level(d, adapter, nld));
  }
  fbkd::TotalLossArgs<double> args{lv, {}, {}, cfg};
  double out = -3, upv = up;
  if (mode == Mode::backward)
    args.grad_out = host_scalar<const double>(&upv);
  else
    args.out = host_scalar(&out);
  fbkd::total_loss(args, mode);
  r.value = out;
  return r;
}

double scale(const Vec& v) {
  double s = 1e-12;
  for (double e : v) s = std::max(s, std::fabs(e));
  return s;
}

}  // namespace

TEST_CASE("fbkd total with L_NLD: the total is the three-term total plus each level's non_local_loss") {
  const auto data = two_levels();
  for (const bool adapter : {true, false})
    for (auto cfg : {fbkd::Config::code_two_stage(), fbkd::Config::paper_one_stage()}) {
      CAPTURE(adapter);
      CAPTURE(fbkd::to_string(cfg.transfer_form));
      if (!adapter && cfg.transfer_form == fbkd::TransferForm::code) cfg.w_am = 0;  // A = S: no adapter gradient
      cfg.w_nld = 0.37;  // large enough that the L_NLD part shows in every gradient
      const TotalRun full = run_total(data, cfg, adapter, true, Mode::forward_backward);
      fbkd::Config three = cfg;
      three.w_nld = 0;
      const TotalRun rest = run_total(data, three, adapter, true, Mode::forward_backward);
      double sum = rest.value;
      for (std::size_t l = 0; l < data.size(); ++l) {
        CAPTURE(l);
        const LevelData& d = data[l];
        Buffers<double> b(d, 0.0);
        fbkd::NonLocalLossArgs<double> a;
        const Dims& sh = d.shape;
        a.student = host_view<const double>(b.s.data(), sh);
        a.teacher = host_view<const double>(b.t.data(), sh);
        b.bs.bind(a.student_block, sh[1], d.m, true);
        b.bt.bind(a.teacher_block, sh[1], d.m, true);
        a.adapt_weight = host_view<const double>(b.aw.data(), {sh[1], sh[1]});
        a.adapt_bias = host_view<const double>(b.ab.data(), {sh[1]});
        a.grad_student = host_view(b.gs.data(), sh);
        a.grad_adapt_weight = host_view(b.gaw.data(), {sh[1], sh[1]});
        a.grad_adapt_bias = host_view(b.gab.data(), {sh[1]});
        a.options.weight = cfg.w_nld;
        a.options.block = cfg.non_local_block(l);
        double v = 0;
        a.out = host_scalar(&v);
        fbkd::non_local_loss(a, Mode::forward_backward);
        sum += v;
        const auto& f = full.bufs[l];
        const auto& r = rest.bufs[l];
        Vec want_s(r.gs.begin(), r.gs.end());
        for (std::size_t i = 0; i < want_s.size(); ++i) want_s[i] += b.gs[i];
        check_close(f.gs, want_s, 1e-12, 1e-14, "grad_student = three-term part + L_NLD part");
        check_close(f.ga, r.ga, 1e-12, 0.0, "grad_student_adapted");
        check_close(f.gc, r.gc, 1e-12, 0.0, "grad_student_channel");
        check_close(f.gsp, r.gsp, 1e-12, 0.0, "grad_student_spatial");
        check_close(f.gaw, b.gaw, 1e-12, 1e-15, "grad_non_local_adapt_weight");
        check_close(f.gab, b.gab, 1e-12, 1e-15, "grad_non_local_adapt_bias");
        for (std::size_t k = 0; k < 10; ++k) {
          CAPTURE(kParamNames[k]);
          check_close(f.bs.g[k], b.bs.g[k], 1e-12, 1e-15, "student block");
          check_close(f.bt.g[k], b.bt.g[k], 1e-12, 1e-15, "teacher block");
        }
        CHECK(f.t == Buffers<double>(d, 0.0).t);  // T is read only
      }
      CHECK(full.value == doctest::Approx(sum).epsilon(1e-13));
      // forward alone and backward with an upstream agree with forward_backward.
      CHECK(run_total(data, cfg, adapter, true, Mode::forward).value == doctest::Approx(full.value).epsilon(1e-14));
      const TotalRun back = run_total(data, cfg, adapter, true, Mode::backward, 0.5);
      for (std::size_t l = 0; l < data.size(); ++l) {
        Vec half(full.bufs[l].gs.begin(), full.bufs[l].gs.end());
        for (double& e : half) e *= 0.5;
        check_close(back.bufs[l].gs, half, 1e-12, 1e-15, "backward, upstream 0.5");
        Vec bw(full.bufs[l].bt.g[0].begin(), full.bufs[l].bt.g[0].end());
        for (double& e : bw) e *= 0.5;
        check_close(back.bufs[l].bt.g[0], bw, 1e-12, 1e-15, "backward, teacher g_w");
      }
    }
}

TEST_CASE("fbkd total with L_NLD: central differences for S and every parameter of every level (both presets)") {
  for (auto cfg : {fbkd::Config::code_two_stage(), fbkd::Config::mmrazor_two_stage()}) {
    const std::string preset = fbkd::to_string(cfg.non_local_preset);
    CAPTURE(preset);
    // mmrazor's pools are 16, 8: maps of 16 x 16 and 8 x 9 (one image, C = 2 to stay fast).
    const std::vector<LevelData> data =
        cfg.non_local_preset == fbkd::NonLocalPreset::official
            ? two_levels()
            : std::vector<LevelData>{LevelData({1, 2, 16, 16}, 1, 5), LevelData({1, 2, 8, 9}, 1, 25)};
    cfg.w_nld = 0.3;
    const TotalRun got = run_total(data, cfg, true, true, Mode::forward_backward);
    for (std::size_t l = 0; l < data.size(); ++l) {
      CAPTURE(l);
      const LevelData& d = data[l];
      const auto ref = d.ref(cfg.non_local_block(l), cfg.w_nld);
      const auto& b = got.bufs[l];
      const auto f = [&](auto set) {
        return [&, set](const Vec& x) {
          LevelData e = d;
          set(e, x);
          return ref.value(e.s, e.t, e.ps, e.pt, e.aw, e.ab);
        };
      };
      const Vec ns = kdloss_test::numeric_gradient(d.s, f([](LevelData& e, const Vec& x) { e.s = x; }));
      // max-pool windows make a few central differences of S slightly less exact: 1e-6 of the scale
      check_close(b.gs, ns, 1e-5, 1e-6 * scale(ns), "grad_student (code form with an adapter: L_NLD only)");
      const Vec naw = kdloss_test::numeric_gradient(d.aw, f([](LevelData& e, const Vec& x) { e.aw = x; }));
      check_close(b.gaw, naw, 1e-6, 1e-7 * scale(naw), "grad_non_local_adapt_weight");
      const Vec nab = kdloss_test::numeric_gradient(d.ab, f([](LevelData& e, const Vec& x) { e.ab = x; }));
      check_close(b.gab, nab, 1e-6, 1e-7 * scale(nab), "grad_non_local_adapt_bias");
      for (int side = 0; side < 2; ++side) {
        CAPTURE(side == 0 ? "student block" : "teacher block");
        const Block<double>& blk = side == 0 ? b.bs : b.bt;
        // Biases feeding a training-mode BN have a zero gradient in theory: judge every gradient of the
        // block against the block's largest.
        std::vector<Vec> num;
        double big = 1e-12;
        for (std::size_t k = 0; k < 10; ++k) {
          LevelData base = d;
          const Vec x0 = *params_of(side == 0 ? base.ps : base.pt)[k];
          num.push_back(kdloss_test::numeric_gradient(x0, f([side, k](LevelData& e, const Vec& x) {
                                                        *params_of(side == 0 ? e.ps : e.pt)[k] = x;
                                                      })));
          big = std::max(big, scale(num.back()));
        }
        for (std::size_t k = 0; k < 10; ++k) {
          CAPTURE(kParamNames[k]);
          check_close(blk.g[k], num[k], 1e-5, 1e-7 * big, kParamNames[k]);
        }
      }
    }
  }
}

TEST_CASE("fbkd total with L_NLD: presets and their per-level block settings") {
  CHECK(fbkd::Config::code_two_stage().w_nld == 7e-5);
  CHECK(fbkd::Config::code_one_stage().w_nld == 4.2e-4);
  CHECK(fbkd::Config::paper_two_stage().w_nld == 7e-5);
  CHECK(fbkd::Config::paper_one_stage().w_nld == 4e-4);
  CHECK(fbkd::Config::mmrazor_two_stage().w_nld == 7e-5);
  const auto official = fbkd::Config::code_two_stage(), mmrazor = fbkd::Config::mmrazor_two_stage();
  const std::int64_t pools[] = {8, 4, 2, 2, 2}, m_off[] = {64, 64, 128, 128, 128};
  const std::int64_t mm_pools[] = {16, 8, 4, 4, 4}, m_mm[] = {64, 64, 128, 128, 128};
  for (std::size_t l = 0; l < 5; ++l) {
    CAPTURE(l);
    CHECK(official.non_local_block(l).mode == ops::NonLocalMode::dot_product);
    CHECK(official.non_local_block(l).pool_g == pools[l]);
    CHECK(official.non_local_block(l).pool_phi == pools[l]);
    CHECK(official.non_local_inter_channels(l, 256) == m_off[l]);
    CHECK(mmrazor.non_local_block(l).mode == ops::NonLocalMode::dot_product);
    CHECK(mmrazor.non_local_block(l).pool_g == mm_pools[l]);
    CHECK(mmrazor.non_local_block(l).pool_phi == mm_pools[l]);
    CHECK(mmrazor.non_local_inter_channels(l, 256) == m_mm[l]);
    CHECK(official.non_local_block(l).training);
  }
  CHECK(mmrazor.non_local_inter_channels(0, 3) == 1);  // max(C / reduction, 1)
}

TEST_CASE("fbkd total with L_NLD: all-or-none, w_nld = 0, accumulation, float, BN statistics, workspace") {
  const auto data = two_levels();
  auto cfg = fbkd::Config::code_two_stage();
  // w_nld = 0 with the blocks given: the three-term total; the blocks' gradients are not touched.
  {
    auto zero = cfg;
    zero.w_nld = 0;
    const TotalRun with = run_total(data, zero, true, true, Mode::forward_backward, 1.0, 0.25);
    const TotalRun without = run_total(data, zero, true, false, Mode::forward_backward);
    CHECK(with.value == without.value);
    CHECK(with.bufs[0].gaw == std::vector<double>(with.bufs[0].gaw.size(), 0.25));
    CHECK(with.bufs[1].bt.g[0] == std::vector<double>(with.bufs[1].bt.g[0].size(), 0.25));
    // No level gives the blocks: the three-term total whatever w_nld (the calls of before).
    CHECK(run_total(data, cfg, true, false, Mode::forward).value == without.value);
  }
  // Accumulation: beta = 1 adds to the 0.5 already there.
  {
    const TotalRun fresh = run_total(data, cfg, true, true, Mode::forward_backward);
    auto acc = cfg;
    acc.non_local_param_grads.beta = 1;
    const TotalRun more = run_total(data, acc, true, true, Mode::forward_backward, 1.0, 0.5);
    for (std::size_t l = 0; l < data.size(); ++l)
      for (std::size_t k = 0; k < 10; ++k) {
        Vec want(fresh.bufs[l].bs.g[k].begin(), fresh.bufs[l].bs.g[k].end());
        for (double& e : want) e += 0.5;
        check_close(more.bufs[l].bs.g[k], want, 1e-12, 1e-15, kParamNames[k]);
      }
  }
  // float against double; BN batch statistics of both blocks written by the forward.
  {
    std::vector<Buffers<float>> fb;
    fb.reserve(2);
    std::vector<fbkd::Level<float>> lv;
    std::vector<std::vector<float>> stats(8, std::vector<float>(3, -9.f));
    for (std::size_t l = 0; l < 2; ++l) {
      fb.emplace_back(data[l], 0.0);
      lv.push_back(fb.back().level(data[l], true, true));
      lv.back().student_non_local.bn_batch_mean = host_view(stats[4 * l].data(), {3});
      lv.back().student_non_local.bn_batch_var = host_view(stats[4 * l + 1].data(), {3});
      lv.back().teacher_non_local.bn_batch_mean = host_view(stats[4 * l + 2].data(), {3});
      lv.back().teacher_non_local.bn_batch_var = host_view(stats[4 * l + 3].data(), {3});
    }
    float out = -3;
    fbkd::total_loss_forward_backward(lv, host_scalar(&out), cfg);
    const TotalRun want = run_total(data, cfg, true, true, Mode::forward_backward);
    CHECK(out == doctest::Approx(want.value).epsilon(1e-5));
    for (std::size_t l = 0; l < 2; ++l) {
      check_close(fb[l].gs, want.bufs[l].gs, 2e-3, 2e-4 * scale(Vec(want.bufs[l].gs.begin(), want.bufs[l].gs.end())),
                  "float grad_student");
      for (const auto& st : {stats[4 * l], stats[4 * l + 1], stats[4 * l + 2], stats[4 * l + 3]})
        for (float e : st) CHECK(e != -9.f);
      for (float e : stats[4 * l + 1]) CHECK(e >= 0.f);
    }
  }
  // An exact-size caller workspace is enough, and the query covers the L_NLD region.
  {
    std::vector<Buffers<double>> bufs;
    bufs.reserve(2);
    std::vector<fbkd::Level<double>> lv;
    for (std::size_t l = 0; l < 2; ++l) {
      bufs.emplace_back(data[l], 0.0);
      lv.push_back(bufs.back().level(data[l], true, true));
    }
    auto paper = fbkd::Config::paper_two_stage();  // grad_student takes the scratch-map path too
    const std::size_t bytes = fbkd::total_loss_workspace_bytes(lv, paper);
    auto without = lv;
    for (auto& x : without) x.non_local_adapt_weight = {};
    CHECK(bytes > fbkd::total_loss_workspace_bytes(without, paper));
    std::vector<std::max_align_t> ws(bytes / sizeof(std::max_align_t) + 64);
    void* base = ws.data();
    std::size_t space = ws.size() * sizeof(std::max_align_t);
    REQUIRE(std::align(256, bytes, base, space) != nullptr);
    double out = 0;
    Exec ex;
    ex.workspace = {base, bytes};
    fbkd::total_loss_forward_backward(lv, host_scalar(&out), paper, ex);
    const TotalRun want = run_total(data, paper, true, true, Mode::forward_backward);
    CHECK(out == doctest::Approx(want.value).epsilon(1e-14));
    check_close(bufs[1].gs, want.bufs[1].gs, 1e-14, 0.0, "grad_student with the caller's workspace");
  }
}

TEST_CASE("fbkd total with L_NLD: bad inputs name the level and leave every output untouched") {
  const auto data = two_levels();
  const auto cfg = fbkd::Config::code_two_stage();
  const auto expect = [&](auto&& edit, const std::string& needle) {
    std::vector<Buffers<double>> bufs;
    bufs.reserve(2);
    std::vector<fbkd::Level<double>> lv;
    for (std::size_t l = 0; l < 2; ++l) {
      bufs.emplace_back(data[l], 0.5);
      lv.push_back(bufs.back().level(data[l], true, true));
    }
    std::vector<std::vector<double>> shapes_storage;
    edit(lv, bufs);
    double out = -3;
    std::string what;
    try {
      fbkd::total_loss_forward_backward(lv, host_scalar(&out), cfg);
    } catch (const Error& e) {
      what = e.what();
    }
    CAPTURE(what);
    CHECK(what.find(needle) != std::string::npos);
    CHECK(out == -3);
    for (const auto& b : bufs) {
      CHECK(b.gs == std::vector<double>(b.gs.size(), -7));
      CHECK(b.gaw == std::vector<double>(b.gaw.size(), 0.5));
      CHECK(b.bt.g[0] == std::vector<double>(b.bt.g[0].size(), 0.5));
    }
  };
  using L = std::vector<fbkd::Level<double>>;
  using Bs = std::vector<Buffers<double>>;
  expect([](L& lv, Bs&) { lv[1].non_local_adapt_weight = {}; },
         "argument 'levels[1].non_local_adapt_weight' is absent but config.w_nld");
  expect([](L& lv, Bs& b) { lv[1].non_local_adapt_weight = host_view<const double>(b[1].aw.data(), {3, 1, 3}); },
         "levels[1] (L_NLD): argument 'adapt_weight' has shape [3, 1, 3]");
  // Level 0 of the official preset pools by 8: a 4 x 5 map there is smaller than the stride.
  expect([](L& lv, Bs&) { std::swap(lv[0], lv[1]); }, "levels[0] (L_NLD)");
  expect([](L& lv, Bs& b) { lv[0].student_non_local.g_weight = host_view<const double>(b[0].bs.p[0].data(), {1, 3}); },
         "levels[0] (L_NLD)");
  expect([](L& lv, Bs& b) { lv[1].student_non_local.z = host_view(b[1].gs.data(), {2, 3, 4, 5}); },
         "which non_local_loss fills itself");
  expect([](L& lv, Bs&) { lv[1].student = {}; }, "levels[1].student' is absent");
}
