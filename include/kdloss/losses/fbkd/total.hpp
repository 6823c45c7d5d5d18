// kdloss/losses/fbkd/total.hpp: the weighted FBKD total over pyramid levels, forward and analytic
// backward in one call:
//
//   value = sum over levels of  w_am * L_AM + w_at * L_AT + w_nld * L_NLD
//
// with the masks, L_AM and L_AT of masks.hpp / masked_feature.hpp / attention_transfer.hpp and L_NLD of
// non_local_loss.hpp (the level's two non-local blocks and adaptation conv), in the forms a Config names
// (presets: Config::code_two_stage() etc.; the blocks' per-level settings: Config::non_local_block).
//
// Each level's maps, masks and norms live in one caller workspace carved once for the whole call;
// the per-level norms go to double slots on the device and a final one-thread combine writes the
// weighted total to `out`, so a GPU call never synchronises with the host.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "kdloss/config.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/losses/fbkd/kernels.hpp"
#include "kdloss/losses/fbkd/masked_feature.hpp"
#include "kdloss/losses/fbkd/masks.hpp"
#include "kdloss/losses/fbkd/non_local_loss.hpp"
#include "kdloss/losses/fbkd/options.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace fbkd {

/// One pyramid level of an FBKD call. Leave a view default-constructed (`{}`) when it does not apply:
/// an optional input that is not given, or a gradient that is not requested.
///
/// Inputs (all [B,C,H,W] unless noted; any strides; teacher features are never differentiated):
/// - student S: the student's feature. Its maps enter the masks (detached) and the paper L_AT.
///  Required unless only the code-form L_AT is active (w_am = 0).
/// - teacher T: required.
/// - student_adapted A: the student's feature after the caller's 1x1 adapter, used by L_AM. Default S.
/// - student_channel C_hat [B,C] (or [B,C,1,1]) = Linear(mean_hw(S)) and student_spatial S_hat
///  [B,1,H,W] (or [B,H,W]) = Conv3x3(mean_c(S)): the caller's adapted pooled features, required by the
///  code-form L_AT (ops::mean_over_positions / mean_over_channels compute the plain means).
///
/// Gradient outputs (written by backward and forward_backward, ignored by the forward; each is
/// overwritten, not accumulated; a term that is switched off writes zeros):
/// - grad_student_adapted: d value / dA (the L_AM term).
/// - grad_student: d value / dS. With an adapter (A given) that is the paper L_AT's part through the
///  abs-means (zero in the code form). Without one (A = S) it is the whole gradient, L_AM included, and
///  grad_student_adapted must be left out.
/// - grad_student_channel, grad_student_spatial: d value / dC_hat and dS_hat (the code L_AT); backprop
///  them through your adapters and then through the plain means (ops::*_backward).
///
/// L_NLD (config.w_nld != 0; every level then needs S and these): student_non_local / teacher_non_local,
/// the parameters of NL_S / NL_T (g, θ, φ, conv_out, BN; ops::NonLocalArgs with x, z, grad_z, grad_x and
/// reserve left absent: the total fills them; `options` is replaced by config.non_local_block(level)), their
/// parameter gradient outputs (accumulated per config.non_local_param_grads) and their BN batch statistics
/// outputs (bn_batch_mean / bn_batch_var, optional: fold them into the running statistics as PyTorch's BN
/// does, ops::batch_norm_update_running_stats); non_local_adapt_weight [C,C] (or [C,C,1,1]) and
/// non_local_adapt_bias [C] (optional): the adaptation conv on NL_S(S), with grad_non_local_adapt_weight /
/// _bias. The L_NLD part of dS goes to grad_student (added to the other terms' part). T gets no gradient;
/// NL_T's parameters do (the reference code trains the teacher's block through this term).
///
///   const kdloss::Dims p3_shape{2, 256, 100, 168};
///   std::vector<float> s3(p3_shape.product()), t3(s3.size()), a3(s3.size()), ga3(s3.size());
///   kdloss::fbkd::Level<float> p3{kdloss::host_view<const float>(s3.data(), p3_shape),
///                                 kdloss::host_view<const float>(t3.data(), p3_shape)};
///   p3.student_adapted = kdloss::host_view<const float>(a3.data(), p3_shape);
///   p3.grad_student_adapted = kdloss::host_view(ga3.data(), p3_shape);
///
/// L_NLD on that level: the official level-1 blocks (m = 64, pooled by 4) and the adaptation conv, with
/// the gradients of the student block's g and of the adaptation weight (every level of the call then
/// gives its blocks):
///
///   std::vector<float> w64(64 * 256, 0.01f), w_out(256 * 64, 0.01f), gamma(256, 1.f), adapt(256 * 256);
///   std::vector<float> d_g(64 * 256), d_adapt(256 * 256);
///   for (auto* blk : {&p3.student_non_local, &p3.teacher_non_local}) {
///     blk->g_weight = kdloss::host_view<const float>(w64.data(), {64, 256});
///     blk->theta_weight = blk->g_weight;
///     blk->phi_weight = blk->g_weight;
///     blk->conv_out_weight = kdloss::host_view<const float>(w_out.data(), {256, 64});
///     blk->bn_weight = kdloss::host_view<const float>(gamma.data(), {256});
///   }
///   p3.student_non_local.grad_g_weight = kdloss::host_view(d_g.data(), {64, 256});
///   p3.non_local_adapt_weight = kdloss::host_view<const float>(adapt.data(), {256, 256});
///   p3.grad_non_local_adapt_weight = kdloss::host_view(d_adapt.data(), {256, 256});
///   auto with_nld = kdloss::fbkd::Config::code_two_stage();   // w_nld = 7e-5, NonLocalPreset::official
///   kdloss::ops::NonLocalOptions p3_blocks = with_nld.non_local_block(1);   // what the total runs there
template <class T>
struct Level {
  Level() = default;
  /// The common case: S and T, and A when there is an adapter; set the other fields by name.
  Level(View<const T> student_, View<const T> teacher_, View<const T> student_adapted_ = {})
      : student(student_), teacher(teacher_), student_adapted(student_adapted_) {}

  View<const T> student;
  View<const T> teacher;
  View<const T> student_adapted;
  View<const T> student_channel;
  View<const T> student_spatial;
  View<T> grad_student_adapted;
  View<T> grad_student;
  View<T> grad_student_channel;
  View<T> grad_student_spatial;
  ops::NonLocalArgs<T> student_non_local{}, teacher_non_local{};
  View<const T> non_local_adapt_weight{}, non_local_adapt_bias{};
  View<T> grad_non_local_adapt_weight{}, grad_non_local_adapt_bias{};
};

namespace detail {

/// Which passes a configuration needs: a term with weight 0 is not computed at all.
struct Plan {
  bool am = false, am_channel = false, at_paper = false, at_code = false, nld = false;
  /// `non_local`: does any level of the call give the non-local parameters (L_NLD runs when it does and
  /// w_nld != 0; a call without them computes the three other terms).
  static Plan of(const Config& c, bool non_local) {
    Plan p;
    p.nld = c.w_nld != 0 && non_local;
    p.am = c.w_am != 0;
    p.am_channel = p.am && c.use_channel_mask;
    p.at_paper = c.w_at != 0 && c.transfer_form == TransferForm::paper;
    p.at_code = c.w_at != 0 && c.transfer_form == TransferForm::code;
    return p;
  }
  bool spatial_maps() const { return am || at_paper; }
  bool channel_maps() const { return am_channel || at_paper; }
  bool needs_student() const { return am || at_paper || nld; }
  /// Do the AM / AT terms write a part of grad_student (which L_NLD's part is then added to)?
  bool other_grad_s(bool a_is_s) const { return at_paper || (a_is_s && am); }
  /// Without the channel mask, L_AM^2 = sum over (b, position) of M_s * sum_c (T - A)^2: the inner sums
  /// come out of the pass that builds the maps, and the norm needs no second pass over A and T.
  bool am_by_rows() const { return am && !am_channel; }
};

/// Does any of the levels give L_NLD's parameters (its adaptation conv)?
template <class T>
bool has_non_local(const Level<T>* levels, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i)
    if (present(levels[i].non_local_adapt_weight)) return true;
  return false;
}

/// Workspace pieces of one level, in the accumulation type.
template <class A>
struct LevelBuffers {
  MaskBuffers<A> maps;
  ExtraSums<A> sums;  // mean_c(T), mean_hw(T) (code L_AT); sum_c (T - A)^2 (L_AM by rows)
};

/// The whole call's workspace: the slots, then every level's buffers, then the shared partials.
template <class A>
struct Layout {
  double* slots = nullptr;
  std::vector<LevelBuffers<A>> levels;
  double* partials = nullptr;
  std::size_t bytes = 0;
};

template <class A>
Layout<A> carve_total(void* base, const std::vector<Geometry>& geos, const Plan& plan, Device device) {
  Carver carver(base);
  Layout<A> lay;
  lay.slots = carver.take<double>(geos.size() * kSlotsPerLevel);
  std::int64_t largest = 1;
  for (const Geometry& g : geos) {
    LevelBuffers<A> b;
    b.maps = carve_masks<A>(carver, g, plan.spatial_maps(), plan.channel_maps(), plan.am, plan.am_channel);
    if (plan.at_code) {
      b.sums.ps_t = carver.take<A>(static_cast<std::size_t>(g.b * g.hw()));
      b.sums.pc_t = carver.take<A>(static_cast<std::size_t>(g.b * g.c));
    }
    if (plan.am_by_rows()) b.sums.am_rows = carver.take<A>(static_cast<std::size_t>(g.b * g.hw()));
    lay.levels.push_back(b);
    largest = std::max(largest, g.numel());
  }
  lay.partials = carve_partials(carver, device, largest);
  lay.bytes = carver.bytes();
  return lay;
}

/// A validated level: shapes normalised to rank 4, A resolved, gradients to write.
template <class T>
struct Prepared {
  Geometry g;
  View<const T> s, t, a, c_hat, s_hat;
  View<T> grad_a, grad_s, grad_c, grad_sp;
  bool a_is_s = false;  // no adapter: grad_s takes the L_AM part too
  NonLocalLossArgs<T> nld{};  // L_NLD's level (when the plan has it); grad_student set at run time
};

/// Argument names: "levels[i].field" for the total, "field" for the single-level entry points.
struct Names {
  bool indexed;
  std::size_t level = 0;
  std::string operator()(const char* field) const {
    return indexed ? "levels[" + std::to_string(level) + "]." + field : std::string(field);
  }
};

template <class T>
void check_input(const ::kdloss::detail::Checker& ck, const View<const T>& v, const std::string& name,
                 const View<const T>& teacher, const std::string& teacher_name) {
  ck.not_null(v, name.c_str());
  ck.same_shape(v, name.c_str(), teacher, teacher_name.c_str());
  ck.device(v, name.c_str(), teacher.device);
}
template <class T>
void check_grad(const ::kdloss::detail::Checker& ck, const View<T>& v, const std::string& name, Device device) {
  ck.not_null(v, name.c_str());
  ck.device(v, name.c_str(), device);
  ck.unique(v, name.c_str());
}

template <class T>
std::vector<Prepared<T>> prepare(const ::kdloss::detail::Checker& ck, const Level<T>* levels, std::size_t count,
                                 const Plan& plan, Mode mode, Device device, bool indexed) {
  std::vector<Prepared<T>> out;
  out.reserve(count);
  Names name{indexed};
  for (std::size_t i = 0; i < count; ++i) {
    name.level = i;
    const Level<T>& lv = levels[i];
    Prepared<T> p;
    const std::string tn = name("teacher");
    require_present(ck, lv.teacher, tn.c_str(), "every FBKD term needs the teacher");
    ck.not_null(lv.teacher, tn.c_str());
    ck.rank(lv.teacher, tn.c_str(), 4);
    ck.nonempty(lv.teacher, tn.c_str());
    ck.device(lv.teacher, tn.c_str(), device);
    p.t = lv.teacher;
    p.g = Geometry::of(lv.teacher.shape);
    const std::string sn = name("student");
    if (plan.needs_student())
      ::kdloss::detail::require(!absent(lv.student), ck.fn, ": argument '", sn,
                                "' is absent but the configuration needs it (L_AM masks, the paper L_AT or L_NLD)");
    if (!absent(lv.student)) check_input(ck, lv.student, sn, lv.teacher, tn);
    p.s = lv.student;
    if (!absent(lv.student_adapted)) check_input(ck, lv.student_adapted, name("student_adapted"), lv.teacher, tn);
    p.a_is_s = absent(lv.student_adapted);
    p.a = p.a_is_s ? lv.student : lv.student_adapted;
    const std::string cn = name("student_channel"), spn = name("student_spatial");
    if (plan.at_code) {
      ::kdloss::detail::require(!absent(lv.student_channel), ck.fn, ": argument '", cn,
                                "' is absent but the code-form L_AT needs it (Linear(mean_hw(S)), [B,C])");
      ::kdloss::detail::require(!absent(lv.student_spatial), ck.fn, ": argument '", spn,
                                "' is absent but the code-form L_AT needs it (Conv3x3(mean_c(S)), [B,1,H,W])");
    }
    if (!absent(lv.student_channel)) {
      ck.not_null(lv.student_channel, cn.c_str());
      ops::detail::check_channel_map(ck, lv.student_channel, cn.c_str(), lv.teacher.shape);
      ck.device(lv.student_channel, cn.c_str(), device);
      p.c_hat = ops::detail::as_channel_map(lv.student_channel);
    }
    if (!absent(lv.student_spatial)) {
      ck.not_null(lv.student_spatial, spn.c_str());
      ops::detail::check_spatial_map(ck, lv.student_spatial, spn.c_str(), lv.teacher.shape);
      ck.device(lv.student_spatial, spn.c_str(), device);
      p.s_hat = ops::detail::as_spatial_map(lv.student_spatial);
    }
    if (mode != Mode::forward) {
      if (!absent(lv.grad_student_adapted)) {
        const std::string n = name("grad_student_adapted");
        ::kdloss::detail::require(!p.a_is_s, ck.fn, ": argument '", n, "' is given but '", name("student_adapted"),
                                  "' is absent: A is the student itself, and '", name("grad_student"),
                                  "' receives the whole gradient (L_AM included); leave '", n, "' out");
        check_grad(ck, lv.grad_student_adapted, n, device);
        ck.shape(lv.grad_student_adapted, n.c_str(), lv.teacher.shape);
        p.grad_a = lv.grad_student_adapted;
      }
      if (!absent(lv.grad_student)) {
        const std::string n = name("grad_student");
        check_grad(ck, lv.grad_student, n, device);
        ck.shape(lv.grad_student, n.c_str(), lv.teacher.shape);
        p.grad_s = lv.grad_student;
      }
      if (!absent(lv.grad_student_channel)) {
        const std::string n = name("grad_student_channel");
        check_grad(ck, lv.grad_student_channel, n, device);
        ops::detail::check_channel_map(ck, lv.grad_student_channel, n.c_str(), lv.teacher.shape);
        p.grad_c = ops::detail::as_channel_map(lv.grad_student_channel);
      }
      if (!absent(lv.grad_student_spatial)) {
        const std::string n = name("grad_student_spatial");
        check_grad(ck, lv.grad_student_spatial, n, device);
        ops::detail::check_spatial_map(ck, lv.grad_student_spatial, n.c_str(), lv.teacher.shape);
        p.grad_sp = ops::detail::as_spatial_map(lv.grad_student_spatial);
      }
    }
    out.push_back(p);
  }
  return out;
}

/// The L_NLD arguments of level `l` (grad_student: the level's own, or absent; run_checked redirects it to
/// a scratch map when the other terms write a part of it).
template <class T>
NonLocalLossArgs<T> non_local_level_args(const Level<T>& lv, const Prepared<T>& p, const Config& cfg, std::size_t l) {
  NonLocalLossArgs<T> a;
  a.student = p.s;
  a.teacher = p.t;
  a.student_block = lv.student_non_local;
  a.teacher_block = lv.teacher_non_local;
  a.adapt_weight = lv.non_local_adapt_weight;
  a.adapt_bias = lv.non_local_adapt_bias;
  a.grad_student = p.grad_s;
  a.grad_adapt_weight = lv.grad_non_local_adapt_weight;
  a.grad_adapt_bias = lv.grad_non_local_adapt_bias;
  a.options.weight = cfg.w_nld;
  a.options.block = cfg.non_local_block(l);
  a.options.param_grads = cfg.non_local_param_grads;
  return a;
}

/// Bytes of the L_NLD region (after the total's own layout): the largest level's non_local_loss plan,
/// plus a [B,C,H,W] map for its dS when the other terms also write grad_student.
template <class T>
std::size_t non_local_region_bytes(const char* fn, const std::vector<Prepared<T>>& levels, const Plan& plan, Mode mode) {
  std::size_t most = 0;
  if (!plan.nld) return 0;
  for (const Prepared<T>& p : levels) {
    Carver c(nullptr);
    if (writes_gradients(mode) && present(p.grad_s) && plan.other_grad_s(p.a_is_s))
      c.take<T>(static_cast<std::size_t>(p.g.numel()));
    std::size_t plan_bytes = 0;
    for (Mode m : {Mode::forward, mode}) plan_bytes = std::max(plan_bytes, non_local_loss_plan(fn, p.nld, m, nullptr).bytes);
    most = std::max(most, c.bytes() + plan_bytes);
  }
  return most;
}

/// Every output must be disjoint from every input and from every other output of the call.
template <class T>
void check_aliasing(const ::kdloss::detail::Checker& ck, const Level<T>* levels, std::size_t count, Mode mode,
                    const View<T>& out, const View<const T>& grad_out, bool indexed) {
  std::vector<std::pair<View<const T>, std::string>> ins;
  std::vector<std::pair<View<T>, std::string>> outs;
  Names name{indexed};
  for (std::size_t i = 0; i < count; ++i) {
    name.level = i;
    const Level<T>& lv = levels[i];
    ins.push_back({lv.student, name("student")});
    ins.push_back({lv.teacher, name("teacher")});
    ins.push_back({lv.student_adapted, name("student_adapted")});
    ins.push_back({lv.student_channel, name("student_channel")});
    ins.push_back({lv.student_spatial, name("student_spatial")});
    if (mode != Mode::forward) {
      outs.push_back({lv.grad_student_adapted, name("grad_student_adapted")});
      outs.push_back({lv.grad_student, name("grad_student")});
      outs.push_back({lv.grad_student_channel, name("grad_student_channel")});
      outs.push_back({lv.grad_student_spatial, name("grad_student_spatial")});
    }
  }
  if (mode != Mode::backward) outs.push_back({out, "out"});
  if (mode == Mode::backward) ins.push_back({grad_out, "grad_out"});
  for (std::size_t o = 0; o < outs.size(); ++o) {
    if (absent(outs[o].first)) continue;
    for (const auto& in : ins)
      if (!absent(in.first)) ck.disjoint(outs[o].first, outs[o].second.c_str(), in.first, in.second.c_str());
    for (std::size_t k = o + 1; k < outs.size(); ++k)
      if (!absent(outs[k].first))
        ck.disjoint(outs[o].first, outs[o].second.c_str(), View<const T>(outs[k].first), outs[k].second.c_str());
  }
}

template <class T>
std::size_t total_workspace_bytes(const Level<T>* levels, std::size_t count, const Config& cfg) {
  std::vector<Geometry> geos;
  Device device = Device::host();
  std::vector<Prepared<T>> nld;
  const Plan plan = Plan::of(cfg, has_non_local(levels, count));
  for (std::size_t i = 0; i < count; ++i) {
    if (levels[i].teacher.rank() != 4) continue;  // invalid: the call itself will say so
    geos.push_back(Geometry::of(levels[i].teacher.shape));
    device = levels[i].teacher.device;
    if (!plan.nld || levels[i].student.shape != levels[i].teacher.shape) continue;
    Prepared<T> p;
    p.g = geos.back();
    p.s = levels[i].student;
    p.t = levels[i].teacher;
    p.a_is_s = absent(levels[i].student_adapted);
    p.grad_s = levels[i].grad_student;
    p.nld = non_local_level_args(levels[i], p, cfg, i);
    nld.push_back(p);
  }
  const std::size_t own = carve_total<acc_t<T>>(nullptr, geos, plan, device).bytes;
  return own + non_local_region_bytes("kdloss::fbkd::total_loss_workspace_bytes", nld, plan, Mode::forward_backward);
}

/// A validated total call: its device and its prepared levels.
template <class T>
struct Checked {
  Device device;
  std::vector<Prepared<T>> levels;
  bool non_local = false;  // the levels give L_NLD's parameters
};

/// Every check of a total-shaped call (the total and the single-level L_AT entries); throws before
/// anything is written.
template <class T>
Checked<T> check_total(const char* fn, Mode mode, const Level<T>* levels, std::size_t count, const Config& cfg,
                       const View<T>& out, const View<const T>& grad_out, bool indexed) {
  const ::kdloss::detail::Checker ck{fn};
  check_config(fn, cfg);
  const Plan plan = Plan::of(cfg, has_non_local(levels, count));
  // The device of the call: that of the loss output (or of the upstream gradient for backward).
  Device device;
  if (mode == Mode::backward) {
    ::kdloss::detail::require(grad_out.numel() == 1, fn,
                              ": argument 'grad_out' must hold one element (the upstream gradient of the loss) but "
                              "has shape ",
                              grad_out.shape.str());
    ck.not_null(grad_out, "grad_out");
    device = grad_out.device;
  } else {
    ck.scalar_output(out, "out");
    device = out.device;
  }
  ::kdloss::detail::require_backend<T>(fn, device);
  Checked<T> c{device, prepare(ck, levels, count, plan, mode, device, indexed), has_non_local(levels, count)};
  check_aliasing(ck, levels, count, mode, out, grad_out, indexed);
  if (plan.nld) {
    Names name{indexed};
    for (std::size_t i = 0; i < count; ++i) {
      name.level = i;
      ::kdloss::detail::require(present(levels[i].non_local_adapt_weight), fn, ": argument '",
                                name("non_local_adapt_weight"), "' is absent but config.w_nld = ", cfg.w_nld,
                                " != 0 and another level gives its non-local blocks: L_NLD runs on every level or "
                                "on none (set config.w_nld = 0, or leave out every level's blocks, to drop the term)");
      c.levels[i].nld = non_local_level_args(levels[i], c.levels[i], cfg, i);
      const std::string where = std::string(fn) + ": levels[" + std::to_string(i) + "] (L_NLD)";
      check_non_local_level(where.c_str(), c.levels[i].nld, mode, false);
    }
  }
  return c;
}

/// The engine behind the total and the L_AT entry points: runs a checked call.
template <class T>
void run_checked(const char* fn, const Checked<T>& checked, Mode mode, const Config& cfg, const View<T>& out,
                 const View<const T>& grad_out, const Exec& exec) {
  const Plan plan = Plan::of(cfg, checked.non_local);
  const Device device = checked.device;
  const std::vector<Prepared<T>>& lv = checked.levels;
  std::vector<Geometry> geos;
  for (const auto& p : lv) geos.push_back(p.g);
  using Acc = acc_t<T>;
  ::kdloss::detail::HostScratch scratch;
  const std::size_t own = carve_total<Acc>(nullptr, geos, plan, device).bytes;
  const std::size_t needed = own + non_local_region_bytes(fn, lv, plan, mode);
  void* ws = ::kdloss::detail::resolve_workspace(fn, device, exec.workspace, needed, scratch);
  const Layout<Acc> lay = carve_total<Acc>(ws, geos, plan, device);

  const Stream stream = exec.stream;
  const Upstream<T> upstream{mode == Mode::backward ? grad_out.data : nullptr};
  for (std::size_t l = 0; l < lv.size(); ++l) {
    const Prepared<T>& p = lv[l];
    const Geometry& g = p.g;
    const LevelBuffers<Acc>& b = lay.levels[l];
    double* slots = lay.slots + l * kSlotsPerLevel;
    // One pass over S, T and A for the maps and every other per-position or per-channel sum, then the masks.
    level_sums<Acc>(device, stream, p.s, p.t, p.a, g, b.maps, b.sums);
    compute_masks<Acc>(device, stream, g, b.maps, cfg.mask());
    auto spatial = [&](Acc* q) { return q ? spatial_buffer<const Acc>(q, g, device) : View<const Acc>{}; };
    auto channel = [&](Acc* q) { return q ? channel_buffer<const Acc>(q, g, device) : View<const Acc>{}; };
    const View<const Acc> ms = spatial(b.maps.ms), mc = channel(b.maps.mc);
    const View<const Acc> gs_s = spatial(b.maps.gs_s), gs_t = spatial(b.maps.gs_t);
    const View<const Acc> gc_s = channel(b.maps.gc_s), gc_t = channel(b.maps.gc_t);
    const View<const Acc> ps_t = spatial(b.sums.ps_t), pc_t = channel(b.sums.pc_t);
    // Norms into the level's slots.
    if (plan.am_by_rows())
      norm_into<Acc>(device, stream, ms.shape, Product{}, std::tuple{ms, spatial(b.sums.am_rows)}, lay.partials,
                     slots + 0);
    else if (plan.am)
      masked_norm<Acc>(device, stream, p.a, p.t, ms, mc, plan.am_channel, lay.partials, slots + 0);
    if (plan.at_paper) {
      norm_into<Acc>(device, stream, gs_s.shape, SquaredDifference{}, std::tuple{gs_s, gs_t}, lay.partials, slots + 1);
      norm_into<Acc>(device, stream, gc_s.shape, SquaredDifference{}, std::tuple{gc_s, gc_t}, lay.partials, slots + 2);
    }
    if (plan.at_code) {
      norm_into<Acc>(device, stream, ps_t.shape, SquaredDifference{}, std::tuple{p.s_hat, ps_t}, lay.partials,
                     slots + 1);
      norm_into<Acc>(device, stream, pc_t.shape, SquaredDifference{}, std::tuple{p.c_hat, pc_t}, lay.partials,
                     slots + 2);
    }
    if (mode == Mode::forward) continue;
    // Gradients, scaled by the weights and the upstream gradient (read on the device).
    if (!absent(p.grad_a)) {
      if (plan.am)
        masked_norm_grad<Acc>(device, stream, p.a, p.t, ms, mc, plan.am_channel, slots, upstream, cfg.w_am, p.grad_a);
      else
        zero_fill<Acc>(device, stream, p.grad_a);
    }
    if (!absent(p.grad_s)) {
      const bool am_part = p.a_is_s && plan.am;
      if (plan.at_paper) {
        // The paper L_AT's gradient reads only the map differences: G(S) - G(T), in place.
        const View<Acc> ds = spatial_buffer(b.maps.gs_s, g, device), dc = channel_buffer(b.maps.gc_s, g, device);
        ::kdloss::detail::transform<Acc>(device, stream, ds.shape, Difference{}, std::tuple{gs_s, gs_t}, std::tuple{ds});
        ::kdloss::detail::transform<Acc>(device, stream, dc.shape, Difference{}, std::tuple{gc_s, gc_t}, std::tuple{dc});
        const double inv_c = 1.0 / static_cast<double>(g.c), inv_hw = 1.0 / static_cast<double>(g.hw());
        if (am_part) {  // L_AM and L_AT in one pass over S and T
          const PaperTotalGrad<T> f{slots, upstream, cfg.w_am, cfg.w_at, inv_c, inv_hw};
          if (plan.am_channel)
            ::kdloss::detail::transform<Acc>(device, stream, g.feature(), f, std::tuple{p.s, p.t, ms, mc, gs_s, gc_s},
                                             std::tuple{p.grad_s});
          else
            ::kdloss::detail::transform<Acc>(device, stream, g.feature(), f, std::tuple{p.s, p.t, ms, gs_s, gc_s},
                                             std::tuple{p.grad_s});
        } else {
          ::kdloss::detail::transform<Acc>(device, stream, g.feature(),
                                           PaperTransferGrad<T>{slots + 1, upstream, cfg.w_at, inv_c, inv_hw},
                                           std::tuple{p.s, gs_s, gc_s}, std::tuple{p.grad_s});
        }
      } else if (am_part) {
        masked_norm_grad<Acc>(device, stream, p.a, p.t, ms, mc, plan.am_channel, slots, upstream, cfg.w_am, p.grad_s);
      } else {
        zero_fill<Acc>(device, stream, p.grad_s);
      }
    }
    if (!absent(p.grad_sp)) {
      if (plan.at_code)
        ::kdloss::detail::transform<Acc>(device, stream, ps_t.shape,
                                         WeightedDistanceGrad<T>{slots + 1, upstream, cfg.w_at},
                                         std::tuple{p.s_hat, ps_t}, std::tuple{p.grad_sp});
      else
        zero_fill<Acc>(device, stream, p.grad_sp);
    }
    if (!absent(p.grad_c)) {
      if (plan.at_code)
        ::kdloss::detail::transform<Acc>(device, stream, pc_t.shape,
                                         WeightedDistanceGrad<T>{slots + 2, upstream, cfg.w_at},
                                         std::tuple{p.c_hat, pc_t}, std::tuple{p.grad_c});
      else
        zero_fill<Acc>(device, stream, p.grad_c);
    }
  }
  // L_NLD level by level on one region after the total's own buffers (the levels run in turn): its norm
  // into the level's fourth slot, its dS into grad_student (or a scratch map added to the other terms' part).
  for (std::size_t l = 0; plan.nld && l < lv.size(); ++l) {
    const Prepared<T>& p = lv[l];
    NonLocalLossArgs<T> a = p.nld;
    Carver region(static_cast<unsigned char*>(ws) + own);
    View<T> part{};
    if (!writes_gradients(mode)) {
      a.grad_student = {};
    } else if (present(p.grad_s) && plan.other_grad_s(p.a_is_s)) {
      part = View<T>(region.take<T>(static_cast<std::size_t>(p.g.numel())), p.t.shape, contiguous_strides(p.t.shape),
                     device);
      a.grad_student = part;
    }
    const NonLocalLossPlan<T> np =
        non_local_loss_plan(fn, a, mode, static_cast<unsigned char*>(ws) + own + region.bytes());
    run_non_local_level(np, mode, device, exec, lay.slots + l * kSlotsPerLevel + 3, cfg.w_nld, upstream);
    if (present(part))
      ::kdloss::detail::transform<Acc>(device, stream, p.t.shape, Sum{}, std::tuple{View<const T>(p.grad_s), View<const T>(part)},
                                       std::tuple{p.grad_s});
  }
  if (mode != Mode::backward)
    combine_into<Acc>(device, stream, lay.slots, static_cast<std::int64_t>(lv.size()), plan.am ? cfg.w_am : 0.0,
                      (plan.at_paper || plan.at_code) ? cfg.w_at : 0.0, lay.partials, out.data,
                      plan.nld ? cfg.w_nld : 0.0);
}

/// Check, then run.
template <class T>
void run_total(const char* fn, Mode mode, const Level<T>* levels, std::size_t count, const Config& cfg,
               const View<T>& out, const View<const T>& grad_out, bool indexed, const Exec& exec) {
  run_checked(fn, check_total(fn, mode, levels, count, cfg, out, grad_out, indexed), mode, cfg, out, grad_out, exec);
}

inline constexpr const char* kTotalLossNames[3] = {"kdloss::fbkd::total_loss", "kdloss::fbkd::total_loss_backward",
                                                   "kdloss::fbkd::total_loss_forward_backward"};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Public entry points. All views of one call are on one device; on a GPU pass a workspace of
// total_loss_workspace_bytes(args) bytes and a stream in `exec`.

/// The options of total_loss: the forms, temperatures and weights (options.hpp; presets
/// Config::code_two_stage() etc.).
using TotalLossOptions = Config;

/// The arguments of one total_loss call: the pyramid levels (inputs and requested gradients), the
/// one-element loss output (forward, forward_backward), the one-element upstream gradient
/// (backward) and the configuration.
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> s(shape.product(), 0.5f), t(shape.product(), 0.25f), gs(shape.product());
///   kdloss::fbkd::TotalLossArgs<float> args;
///   kdloss::fbkd::Level<float> level{kdloss::host_view<const float>(s.data(), shape),
///                                    kdloss::host_view<const float>(t.data(), shape)};
///   level.grad_student = kdloss::host_view(gs.data(), shape);
///   args.levels = {level};
///   float value = 0;
///   args.out = kdloss::host_scalar(&value);
///   args.options = kdloss::fbkd::Config::paper_two_stage();
///   kdloss::fbkd::total_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct TotalLossArgs {
  std::vector<Level<T>> levels{};
  View<T> out{};             // the value: forward, forward_backward
  View<const T> grad_out{};  // dL/dvalue, one element: backward
  Config options{};
};

/// Throws kdloss::Error naming the argument ("levels[i].field") and the shapes when `args` cannot
/// run in `mode`; writes nothing.
///
///   kdloss::fbkd::TotalLossArgs<float> args;   // its views filled in as in TotalLossArgs's example
///   kdloss::fbkd::total_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void total_loss_check(const TotalLossArgs<T>& args, Mode mode) {
  detail::check_total<T>(detail::kTotalLossNames[mode_index(mode)], mode, args.levels.data(),
                         args.levels.size(), args.options, args.out, args.grad_out, true);
}

/// Workspace bytes of total_loss on these levels and options, enough for every mode (slots, the
/// maps, masks and pooled teacher features of every level, and one reduction scratch on a GPU).
/// 0 bytes is fine on the host, where a null workspace means "allocate".
///
///   kdloss::fbkd::TotalLossArgs<float> args;   // its views filled in as in TotalLossArgs's example
///   std::size_t bytes = kdloss::fbkd::total_loss_workspace_bytes(args);
template <class T>
std::size_t total_loss_workspace_bytes(const TotalLossArgs<T>& args) {
  return detail::total_workspace_bytes<T>(args.levels.data(), args.levels.size(), args.options);
}

/// Checks, then runs: forward writes value = sum over levels of w_am * L_AM + w_at * L_AT + w_nld * L_NLD
/// to `out` (and the blocks' BN batch statistics where asked for);
/// backward writes the requested gradients times grad_out (recomputing the masks and norms first);
/// forward_backward writes the value and the gradients of the value itself. No host synchronisation.
///
///   kdloss::fbkd::TotalLossArgs<float> args;   // its views filled in as in TotalLossArgs's example
///   kdloss::fbkd::total_loss(args, kdloss::Mode::forward_backward);
template <class T>
void total_loss(const TotalLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::run_total<T>(detail::kTotalLossNames[mode_index(mode)], mode, args.levels.data(), args.levels.size(),
                       args.options, args.out, args.grad_out, true, exec);
}

/// value = sum over levels of config.w_am * L_AM + config.w_at * L_AT, written to `out` (one element,
/// on the device of the views). Gradient views in `levels` are ignored.
///
///   const kdloss::Dims p4{2, 8, 6, 5}, p5{2, 8, 3, 3};
///   std::vector<float> s4(p4.product(), 0.5f), t4(p4.product(), 0.25f), s5(p5.product(), 1.f), t5(p5.product());
///   std::vector<kdloss::fbkd::Level<float>> levels = {
///       {kdloss::host_view<const float>(s4.data(), p4), kdloss::host_view<const float>(t4.data(), p4)},
///       {kdloss::host_view<const float>(s5.data(), p5), kdloss::host_view<const float>(t5.data(), p5)}};
///   auto cfg = kdloss::fbkd::Config::paper_two_stage();   // code-form presets need student_channel/_spatial
///   float value;
///   kdloss::fbkd::total_loss(levels, kdloss::host_scalar(&value), cfg);
template <class T, class O>
void total_loss(const std::vector<Level<T>>& levels, const View<O>& out, const Config& config = {},
                const Exec& exec = {}) {
  TotalLossArgs<T> a{levels, out, {}, config};
  total_loss(a, Mode::forward, exec);
}

/// Writes the requested gradient views of `levels`: grad_out * d value / d (A, S, C_hat, S_hat), with
/// grad_out one element on the device (an autograd backward's incoming gradient). Recomputes the
/// masks and norms first; no host synchronisation.
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> s(shape.product(), 0.5f), t(shape.product(), 0.25f), gs(shape.product());
///   kdloss::fbkd::Level<float> level{kdloss::host_view<const float>(s.data(), shape),
///                                    kdloss::host_view<const float>(t.data(), shape)};
///   level.grad_student = kdloss::host_view(gs.data(), shape);
///   const float grad_out = 1;
///   kdloss::fbkd::total_loss_backward(std::vector<kdloss::fbkd::Level<float>>{level},
///                                     kdloss::host_scalar(&grad_out), kdloss::fbkd::Config::paper_two_stage());
template <class T, class G>
void total_loss_backward(const std::vector<Level<T>>& levels, const View<G>& grad_out, const Config& config = {},
                         const Exec& exec = {}) {
  TotalLossArgs<T> a{levels, {}, grad_out, config};
  total_loss(a, Mode::backward, exec);
}

/// The value and the requested gradients (of the value itself) in one call: what a training step needs.
///
///   const kdloss::Dims shape{2, 8, 6, 5}, ch{2, 8}, sp{2, 1, 6, 5};
///   std::vector<float> s(shape.product(), 0.5f), t(shape.product(), 0.25f), a(shape.product(), 0.3f),
///       c_hat(ch.product()), s_hat(sp.product()), ga(shape.product()), gc(ch.product()), gsp(sp.product());
///   auto cfg = kdloss::fbkd::Config::code_two_stage();
///   kdloss::fbkd::Level<float> lv{kdloss::host_view<const float>(s.data(), shape),
///                                 kdloss::host_view<const float>(t.data(), shape),
///                                 kdloss::host_view<const float>(a.data(), shape)};
///   lv.student_channel = kdloss::host_view<const float>(c_hat.data(), ch);
///   lv.student_spatial = kdloss::host_view<const float>(s_hat.data(), sp);
///   lv.grad_student_adapted = kdloss::host_view(ga.data(), shape);
///   lv.grad_student_channel = kdloss::host_view(gc.data(), ch);
///   lv.grad_student_spatial = kdloss::host_view(gsp.data(), sp);
///   std::vector<kdloss::fbkd::Level<float>> levels{lv};
///   float value;
///   kdloss::fbkd::total_loss_forward_backward(levels, kdloss::host_scalar(&value), cfg);
template <class T, class O>
void total_loss_forward_backward(const std::vector<Level<T>>& levels, const View<O>& out, const Config& config = {},
                                 const Exec& exec = {}) {
  TotalLossArgs<T> a{levels, out, {}, config};
  total_loss(a, Mode::forward_backward, exec);
}

/// total_loss_workspace_bytes(args) of a call on these levels and this configuration.
///
///   std::vector<kdloss::fbkd::Level<float>> levels(1);   // fill in the views first
///   std::size_t bytes = kdloss::fbkd::total_loss_workspace_bytes(levels, kdloss::fbkd::Config::code_two_stage());
template <class T>
std::size_t total_loss_workspace_bytes(const std::vector<Level<T>>& levels, const Config& config = {}) {
  return detail::total_workspace_bytes<T>(levels.data(), levels.size(), config);
}

} } }  // namespace kdloss::fbkd
