// fuzz/validation_fuzzer.cpp: libFuzzer harness for kdloss's argument validation (issue 12 §3).
//
// One input drives one call. The first bytes pick the target (an entry point, or the DLPack
// adapter), the element type and how the call is made:
//  - check only ("wild"): `<entry>_check` (and `<entry>_workspace_bytes`) on views with arbitrary
//    metadata (huge, zero, negative and overlapping strides, huge extents, null data, CUDA or
//    out-of-range devices): validation must not read the data, so the views need no real memory;
//  - full call: `<entry>(args, mode, exec)` on views whose every addressed element lies inside a
//    buffer the harness owns (shapes and strides are bounded by construction: at most 4096
//    elements per view), with fuzzed workspaces (absent, too small, null with bytes, misaligned)
//    and reserves, gradient outputs that alias inputs or each other, and fuzzed options.
// The rules: no crash, no sanitizer report (build with -fsanitize=fuzzer,address,undefined), only
// kdloss::Error is thrown, and a rejected call (kdloss::Error) leaves every byte of every buffer
// (inputs, outputs, workspace, reserve) as it was. `_check` never writes, accepted or not.
// See docs/fuzzing.md.
#include <fuzzer/FuzzedDataProvider.h>

#include <dlpack/dlpack.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kdloss/interop/dlpack.hpp"
#include "kdloss/kdloss.hpp"

namespace {

using kdloss::Device;
using kdloss::DeviceKind;
using kdloss::Dims;
using kdloss::Mode;
using kdloss::View;

[[noreturn]] void defect(const std::string& what) {
  std::fprintf(stderr, "kdloss fuzz: DEFECT: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

constexpr std::int64_t kMaxNumel = 4096;    // elements a backed view may hold
constexpr std::int64_t kMaxSpan = 1 << 15;  // elements a backed view's buffer may span

/// One buffer the call can see: 64 guard bytes on both sides, filled with a known pattern.
struct Buffer {
  std::unique_ptr<unsigned char[]> storage;
  std::size_t bytes = 0;  // usable bytes (between the guards)
  unsigned char* data() const { return storage.get() + 64; }
};

class Fuzz {
 public:
  Fuzz(FuzzedDataProvider& p, bool wild) : fdp(p), wild_(wild) {}

  FuzzedDataProvider& fdp;

  bool wild() const { return wild_; }
  /// A small random dimension in [lo, hi] (lo when the input is exhausted).
  std::int64_t dim(std::int64_t lo, std::int64_t hi) { return fdp.ConsumeIntegralInRange<std::int64_t>(lo, hi); }
  bool coin(int one_in) { return fdp.ConsumeIntegralInRange<int>(0, one_in - 1) == one_in - 1; }

  /// A scalar option: usually `def`, sometimes NaN, infinities, negative, zero, tiny or huge.
  double scalar(double def) {
    static const double table[] = {std::numeric_limits<double>::quiet_NaN(),
                                   std::numeric_limits<double>::infinity(),
                                   -std::numeric_limits<double>::infinity(),
                                   -1.0, 0.0, -0.0, 1e-300, 1e300, 0.5, 2.0, 1e-8, 100.0, -1e-3,
                                   std::numeric_limits<double>::denorm_min()};
    const int pick = fdp.ConsumeIntegralInRange<int>(0, 31);
    if (pick < static_cast<int>(sizeof table / sizeof table[0])) return table[pick];
    return def;
  }
  /// An int option (axes, window sizes): usually `def`, sometimes anything in a wide range.
  int integer(int def) {
    const int pick = fdp.ConsumeIntegralInRange<int>(0, 7);
    if (pick == 0) return fdp.ConsumeIntegralInRange<int>(-8, 24);
    if (pick == 1) return fdp.ConsumeBool() ? std::numeric_limits<int>::max() : std::numeric_limits<int>::min();
    return def;
  }
  /// An enum option, out of range now and then.
  template <class E>
  E enumeration(E def, int count) {
    const int pick = fdp.ConsumeIntegralInRange<int>(0, 7);
    if (pick == 0) return static_cast<E>(fdp.ConsumeIntegralInRange<int>(-2, count + 2));
    if (pick == 1) return static_cast<E>(fdp.ConsumeIntegralInRange<int>(0, count - 1));
    return def;
  }
  Mode mode() {
    const int m = fdp.ConsumeIntegralInRange<int>(0, 8);
    return m < 3 ? static_cast<Mode>(m) : m == 8 ? static_cast<Mode>(5) : Mode::forward_backward;
  }

  template <class T>
  View<const T> in(const Dims& nominal) {
    return make<T>(nominal, false, false);
  }
  template <class T>
  View<const T> opt_in(const Dims& nominal) {
    return make<T>(nominal, false, true);
  }
  template <class T>
  View<T> out(const Dims& nominal) {
    return make<T>(nominal, true, true);
  }

  /// A buffer of `bytes` usable bytes (guard-filled); returns its start.
  unsigned char* buffer(std::size_t bytes, unsigned char fill = 0x7d) {
    Buffer b;
    b.storage.reset(new unsigned char[bytes + 128]);
    b.bytes = bytes;
    std::memset(b.storage.get(), 0xa5, bytes + 128);
    std::memset(b.data(), fill, bytes);
    bufs_.push_back(std::move(b));
    return bufs_.back().data();
  }
  /// Every byte the call can reach (guards included).
  std::vector<unsigned char> snapshot() const {
    std::vector<unsigned char> all;
    for (const Buffer& b : bufs_) all.insert(all.end(), b.storage.get(), b.storage.get() + b.bytes + 128);
    return all;
  }

  /// A 256-aligned workspace/reserve-like region: absent, exact, too small, null with bytes,
  /// misaligned, or larger; returns {data, bytes}.
  std::pair<void*, std::size_t> scratch(std::size_t needed) {
    const int kind = fdp.ConsumeIntegralInRange<int>(0, 7);
    if (kind == 0 || needed > (std::size_t{1} << 24)) return {nullptr, 0};
    if (kind == 1) return {nullptr, needed + 1};  // null with bytes
    const std::size_t have = needed + 512;
    unsigned char* raw = buffer(have + 256);
    auto base = reinterpret_cast<std::uintptr_t>(raw);
    unsigned char* aligned = raw + (256 - base % 256) % 256;
    if (kind == 2) return {aligned, needed ? needed - 1 : 0};  // too small
    if (kind == 3) return {aligned + fdp.ConsumeIntegralInRange<int>(1, 255), needed};  // misaligned
    if (kind == 4) return {aligned, needed + 256};
    return {aligned, needed};
  }

 private:
  template <class T>
  View<T> make(const Dims& nominal, bool output, bool optional) {
    using E = std::remove_const_t<T>;
    if (optional && coin(8)) return {};  // absent
    Dims shape = nominal;
    // ---- the shape: usually as asked, sometimes bent
    switch (fdp.ConsumeIntegralInRange<int>(0, 15)) {
      case 0:
        if (shape.rank > 0) shape.v[fdp.ConsumeIntegralInRange<int>(0, shape.rank - 1)] = dim(0, 9);
        break;
      case 1:
        if (shape.rank > 0) --shape.rank;
        break;
      case 2:
        if (shape.rank < kdloss::kMaxRank) shape.v[shape.rank++] = dim(0, 3);
        break;
      case 3:
        shape.rank = fdp.ConsumeIntegralInRange<int>(0, kdloss::kMaxRank);
        for (int i = 0; i < shape.rank; ++i) shape.v[i] = dim(0, 5);
        break;
      case 4:
        if (wild_ && shape.rank > 0)
          shape.v[fdp.ConsumeIntegralInRange<int>(0, shape.rank - 1)] = std::int64_t{1} << dim(20, 40);
        break;
      default:
        break;
    }
    bool huge_dim = false;
    for (int i = 0; i < shape.rank; ++i) huge_dim = huge_dim || shape.v[i] > 64;
    if (!wild_ && shape.product() > kMaxNumel) shape = nominal;  // a backed view stays small
    // ---- the strides: contiguous, permuted, flipped, broadcast, overlapping, padded, huge
    Dims strides = kdloss::contiguous_strides(shape);
    switch (fdp.ConsumeIntegralInRange<int>(0, 15)) {
      case 0:  // channels-last style: dim 1 innermost
        if (shape.rank >= 3) {
          std::int64_t step = 1;
          strides.v[1] = step;
          step *= std::max<std::int64_t>(shape.v[1], 1);
          for (int i = shape.rank - 1; i >= 2; --i) strides.v[i] = step, step *= std::max<std::int64_t>(shape.v[i], 1);
          strides.v[0] = step;
        }
        break;
      case 1:  // negative
        if (shape.rank > 0) {
          const int d = fdp.ConsumeIntegralInRange<int>(0, shape.rank - 1);
          strides.v[d] = -strides.v[d];
        }
        break;
      case 2:  // broadcast
        if (shape.rank > 0) strides.v[fdp.ConsumeIntegralInRange<int>(0, shape.rank - 1)] = 0;
        break;
      case 3:  // overlapping
        for (int i = 0; i < shape.rank; ++i) strides.v[i] = fdp.ConsumeIntegralInRange<std::int64_t>(-2, 2);
        break;
      case 4:  // padded
        for (int i = 0; i < shape.rank; ++i) strides.v[i] *= 2;
        break;
      case 5:  // huge (metadata only; a backed view falls back below)
        if (shape.rank > 0 && !huge_dim) {
          const int d = fdp.ConsumeIntegralInRange<int>(0, shape.rank - 1);
          strides.v[d] = (fdp.ConsumeBool() ? 1 : -1) * (std::int64_t{1} << dim(20, 40));
        }
        break;
      default:
        break;
    }
    // ---- the device, and a null pointer now and then
    Device device = Device::host();
    switch (fdp.ConsumeIntegralInRange<int>(0, 31)) {
      case 0: device = Device::cuda(0); break;
      case 1: device = Device::cuda(fdp.ConsumeIntegralInRange<int>(-2, 3)); break;
      case 2: device = Device{static_cast<DeviceKind>(fdp.ConsumeIntegralInRange<int>(2, 5)), 0}; break;
      default: break;
    }
    const bool null_data = coin(24);

    View<T> probe;
    probe.shape = shape;
    probe.strides = strides;
    auto [lo, hi] = probe.extent_range();
    if (!wild_ && hi - lo > kMaxSpan) {  // keep a backed view's buffer small
      strides = kdloss::contiguous_strides(shape);
      probe.strides = strides;
      std::tie(lo, hi) = probe.extent_range();
    }
    // ---- the memory: a buffer spanning every addressed element (aliasing: an earlier one)
    E* base = nullptr;
    const std::size_t span = static_cast<std::size_t>(wild_ ? std::min<std::int64_t>(hi - lo, 16) : hi - lo);
    if (output && !views_.empty() && coin(6)) {
      const Placed& p = views_[fdp.ConsumeIntegralInRange<std::size_t>(0, views_.size() - 1)];
      if (p.bytes >= span * sizeof(E) && p.elem == sizeof(E)) base = static_cast<E*>(p.start);
    }
    if (base == nullptr) {
      unsigned char* mem = buffer(std::max<std::size_t>(span, 1) * sizeof(E));
      if (!output) fill(reinterpret_cast<E*>(mem), std::max<std::size_t>(span, 1));
      base = reinterpret_cast<E*>(mem);
      views_.push_back({mem, std::max<std::size_t>(span, 1) * sizeof(E), sizeof(E)});
    }
    T* data = null_data ? nullptr : (wild_ ? base : base - lo);
    View<T> v;
    v.data = data;
    v.shape = shape;
    v.strides = strides;
    v.device = device;
    return v;
  }

  template <class E>
  void fill(E* p, std::size_t n) {
    const int kind = fdp.ConsumeIntegralInRange<int>(0, 7);
    for (std::size_t i = 0; i < n; ++i) {
      double v = std::sin(0.7 * static_cast<double>(i) + 0.3) * 0.5 + 0.5;
      if (kind == 1 && i % 5 == 2) v = std::numeric_limits<double>::quiet_NaN();
      if (kind == 2 && i % 7 == 3) v = (i % 2 ? 1 : -1) * std::numeric_limits<double>::infinity();
      if (kind == 3) v = 0;
      if (kind == 4) v = (i % 2 ? 1e30 : -1e30);
      p[i] = static_cast<E>(v);
    }
  }

  struct Placed {
    void* start;
    std::size_t bytes;
    std::size_t elem;
  };
  bool wild_;
  std::vector<Buffer> bufs_;
  std::vector<Placed> views_;
};

/// Runs one entry point: wild: its check (and workspace query) only, must not write; backed: the
/// full call with a fuzzed workspace, must not write when it throws. `reserve` (may be null) is
/// the args' Reserve when the entry has one; `reserve_bytes` its query.
template <class Args, class Check, class Call, class Ws, class Rs>
void drive(Fuzz& f, Args& a, Mode m, Check check, Call call, Ws ws_bytes, kdloss::Reserve* reserve, Rs reserve_bytes) {
  if (f.wild()) {
    const auto before = f.snapshot();
    try {
      check(a, m);
    } catch (const kdloss::Error&) {
    }
    try {
      (void)ws_bytes(a);
    } catch (const kdloss::Error&) {
    }
    if (f.snapshot() != before) defect("a _check or _workspace_bytes call wrote to a buffer");
    return;
  }
  bool check_ok = true;
  try {
    check(a, m);
  } catch (const kdloss::Error&) {
    check_ok = false;
  }
  std::size_t need = 0;
  try {
    need = ws_bytes(a);
  } catch (const kdloss::Error&) {
  }
  const auto [wp, wb] = f.scratch(need);
  kdloss::Exec exec;
  exec.workspace = {wp, wb};
  if (reserve != nullptr) {
    std::size_t rneed = 0;
    try {
      rneed = reserve_bytes(a);
    } catch (const kdloss::Error&) {
    }
    const auto [rp, rb] = f.scratch(rneed);
    *reserve = {rp, rb};
    if (m == Mode::backward && rp != nullptr && check_ok) {
      // backward reads what forward left there: fill it first (a garbage reserve is the caller's bug)
      try {
        call(a, Mode::forward, exec);
      } catch (const kdloss::Error&) {
        *reserve = {};
      }
    }
  }
  const auto before = f.snapshot();
  try {
    call(a, m, exec);
  } catch (const kdloss::Error& e) {
    if (f.snapshot() != before) defect(std::string("a rejected call wrote to a buffer: ") + e.what());
    return;
  }
  if (!check_ok) defect("_check rejected arguments that the call itself accepted");
}

template <class Args, class Check, class Call, class Ws>
void drive(Fuzz& f, Args& a, Mode m, Check check, Call call, Ws ws) {
  drive(f, a, m, check, call, ws, nullptr, [](const Args&) { return std::size_t{0}; });
}

#define KDF_CHECK(fnname) [](const auto& x, Mode mm) { fnname##_check(x, mm); }
#define KDF_CALL(fnname) [](const auto& x, Mode mm, const kdloss::Exec& e) { fnname(x, mm, e); }
#define KDF_WS(fnname) [](const auto& x) { return fnname##_workspace_bytes(x); }
#define KDF_DRIVE(fnname) drive(f, a, m, KDF_CHECK(fnname), KDF_CALL(fnname), KDF_WS(fnname))

/// The nominal sizes of one call: small, so accepted calls are cheap.
struct Sizes {
  std::int64_t B, C, H, W;
  explicit Sizes(Fuzz& f) : B(f.dim(1, 2)), C(f.dim(1, 4)), H(f.dim(1, 24)), W(f.dim(1, 24)) {}
  Dims feat() const { return {B, C, H, W}; }
  Dims map() const { return {B, H, W}; }
  Dims map1() const { return {B, 1, H, W}; }
  Dims chan() const { return {B, C}; }
};

template <class T, class Args>
void pointwise_views(Fuzz& f, Args& a, const Sizes& s, bool reduced) {
  a.student = f.in<T>(s.feat());
  a.teacher = f.in<T>(s.feat());
  a.out = f.out<T>(reduced ? Dims{} : s.feat());
  a.grad_out = f.opt_in<T>(reduced ? Dims{} : s.feat());
  a.grad_student = f.out<T>(s.feat());
}

template <class T>
void ssim_options(Fuzz& f, kdloss::ssim::SsimOptions& o) {
  o.window_size = f.integer(f.fdp.ConsumeBool() ? 3 : 11);
  o.sigma = f.scalar(1.5);
  o.max_val = f.scalar(1.0);
  o.k1 = f.scalar(0.01);
  o.k2 = f.scalar(0.03);
  o.alpha = f.scalar(1.0);
  o.beta = f.scalar(1.0);
  o.gamma = f.scalar(1.0);
  o.eps = f.scalar(1e-12);
  o.padding = f.enumeration(kdloss::ops::Padding::reflect, 3);
  o.clamp = f.fdp.ConsumeBool();
  o.normalize = f.fdp.ConsumeBool();
  o.three_component = f.fdp.ConsumeBool();
}

void ms_options(Fuzz& f, kdloss::ssim::MsSsimOptions& o) {
  o.window_size = f.integer(3);
  o.sigma = f.scalar(1.5);
  o.data_range = f.scalar(1.0);
  o.k1 = f.scalar(0.01);
  o.k2 = f.scalar(0.03);
  o.nonnegative_ssim = f.fdp.ConsumeBool();
  o.weights.resize(static_cast<std::size_t>(f.dim(0, 6)));
  for (double& w : o.weights) w = f.scalar(0.3);
  o.normalize = f.fdp.ConsumeBool();
}

template <class T>
kdloss::fbkd::Level<T> fbkd_level(Fuzz& f, const Sizes& s) {
  kdloss::fbkd::Level<T> l;
  l.student = f.opt_in<T>(s.feat());
  l.teacher = f.in<T>(s.feat());
  l.student_adapted = f.opt_in<T>(s.feat());
  l.student_channel = f.opt_in<T>(s.chan());
  l.student_spatial = f.opt_in<T>(s.map1());
  l.grad_student_adapted = f.out<T>(s.feat());
  l.grad_student = f.out<T>(s.feat());
  l.grad_student_channel = f.out<T>(s.chan());
  l.grad_student_spatial = f.out<T>(s.map1());
  return l;
}

/// One non-local block's parameters over C channels with m inter channels (weights present, biases
/// optional), its BN statistics outputs and some parameter gradients; `all` adds the rest (the
/// concatenation weight, the running statistics, every bias gradient) as optional views.
template <class T>
void non_local_params(Fuzz& f, std::int64_t C, std::int64_t m, kdloss::ops::NonLocalArgs<T>& b, bool all) {
  const Dims mc{m, C}, cm{C, m}, c{C}, mm{m};
  b.g_weight = f.in<T>(mc);
  b.g_bias = f.opt_in<T>(mm);
  b.theta_weight = f.in<T>(mc);
  b.theta_bias = f.opt_in<T>(mm);
  b.phi_weight = f.in<T>(mc);
  b.phi_bias = f.opt_in<T>(mm);
  b.conv_out_weight = f.in<T>(cm);
  b.conv_out_bias = f.opt_in<T>(c);
  b.bn_weight = f.opt_in<T>(c);
  b.bn_bias = f.opt_in<T>(c);
  b.bn_batch_mean = f.out<T>(c);
  b.grad_g_weight = f.out<T>(mc);
  b.grad_theta_weight = f.out<T>(mc);
  b.grad_conv_out_weight = f.out<T>(cm);
  b.grad_bn_weight = f.out<T>(c);
  if (!all) return;
  b.concat_project_weight = f.opt_in<T>({2 * m});
  b.bn_running_mean = f.opt_in<T>(c);
  b.bn_running_var = f.opt_in<T>(c);
  b.bn_batch_var = f.out<T>(c);
  b.grad_g_bias = f.out<T>(mm);
  b.grad_theta_bias = f.out<T>(mm);
  b.grad_phi_weight = f.out<T>(mc);
  b.grad_phi_bias = f.out<T>(mm);
  b.grad_concat_project_weight = f.out<T>({2 * m});
  b.grad_conv_out_bias = f.out<T>(c);
  b.grad_bn_bias = f.out<T>(c);
}

/// ops::NonLocalOptions with fuzzed mode, pools, BN settings and accumulation.
void non_local_options(Fuzz& f, kdloss::ops::NonLocalOptions& o) {
  o.mode = f.enumeration(kdloss::ops::NonLocalMode::embedded_gaussian, 4);
  o.use_scale = f.fdp.ConsumeBool();
  o.pool_g = f.fdp.ConsumeBool() ? f.dim(1, 3) : f.fdp.ConsumeIntegralInRange<std::int64_t>(-2, 40);
  o.pool_phi = f.fdp.ConsumeBool() ? o.pool_g : f.fdp.ConsumeIntegralInRange<std::int64_t>(-2, 40);
  if (f.coin(16)) o.pool_g = std::numeric_limits<std::int64_t>::max();
  o.norm = !f.coin(4);
  o.training = !f.coin(4);
  o.bn_eps = f.scalar(1e-5);
  o.param_grads.beta = f.scalar(0.0);
}

/// L_NLD's blocks and adaptation conv on a level (m inter channels; weights present, biases optional).
template <class T>
void fbkd_non_local(Fuzz& f, const Sizes& s, std::int64_t m, kdloss::fbkd::Level<T>& l) {
  const Dims c{s.C}, cc{s.C, s.C};
  for (auto* b : {&l.student_non_local, &l.teacher_non_local}) non_local_params<T>(f, s.C, m, *b, false);
  l.non_local_adapt_weight = f.in<T>(cc);
  l.non_local_adapt_bias = f.opt_in<T>(c);
  l.grad_non_local_adapt_weight = f.out<T>(cc);
  l.grad_non_local_adapt_bias = f.out<T>(c);
}

/// One GloRe unit over C channels (num_mid 1 to 3): its ten parameters, their gradients and the BN
/// statistics outputs.
template <class T>
void glore_unit(Fuzz& f, std::int64_t C, kdloss::drkd::GloreUnitParams<T>& p, kdloss::drkd::GloreUnitGrads<T>& g,
                kdloss::drkd::GloreUnitStats<T>& st) {
  const std::int64_t mid = f.dim(1, 3), sm = 2 * mid;
  const Dims sc{sm, C}, sv{sm}, mc{mid, C}, mv{mid}, mm{mid, mid}, ss{sm, sm}, cs{C, sm}, c{C};
  p = {f.in<T>(sc), f.in<T>(sv), f.in<T>(mc), f.in<T>(mv), f.in<T>(mm), f.in<T>(mv), f.in<T>(ss), f.in<T>(cs),
       f.in<T>(c), f.in<T>(c)};
  g = {f.out<T>(sc), f.out<T>(sv), f.out<T>(mc), f.out<T>(mv), f.out<T>(mm), f.out<T>(mv), f.out<T>(ss),
       f.out<T>(cs), f.out<T>(c), f.out<T>(c)};
  st = {f.out<T>(c), f.out<T>(c)};
}

/// Host offsets [B + 1] of a ragged batch over `rows` (a view's described extent, possibly huge):
/// usually monotone from 0 to rows, sometimes decreasing, not starting at 0 or not ending at rows.
std::int64_t* offsets_for(Fuzz& f, std::int64_t B, std::int64_t rows) {
  auto* off = reinterpret_cast<std::int64_t*>(f.buffer(static_cast<std::size_t>(B + 1) * sizeof(std::int64_t)));
  off[0] = 0;
  for (std::int64_t b = 1; b <= B; ++b) off[b] = b == B ? rows : rows / B * b;
  if (f.coin(8)) off[f.fdp.ConsumeIntegralInRange<std::int64_t>(0, B)] = f.dim(-1, 6);
  return off;
}

/// The code form's relation modules, filters, adapters, their gradients and options over RoIs of
/// [n, C, P, P] (student) and [n, ct, P, P] (teacher): what instance_relation_loss takes besides the
/// features, the boxes and the values.
template <class T>
void object_relation_args(Fuzz& f, kdloss::drkd::InstanceRelationLossArgs<T>& a, std::int64_t n, std::int64_t C,
                          std::int64_t ct, std::int64_t P) {
  const auto relation = [&](std::int64_t D, kdloss::drkd::ObjectRelationParams<T>& p,
                            kdloss::drkd::ObjectRelationGrads<T>& g) {
    const std::int64_t I = f.dim(1, 4);
    const Dims id{I, D}, iv{I}, di{D, I}, dv{D};
    p = {f.in<T>(id), f.opt_in<T>(iv), f.in<T>(id), f.opt_in<T>(iv), f.in<T>(id), f.opt_in<T>(iv), f.in<T>(di),
         f.opt_in<T>(dv)};
    g = {f.out<T>(id), f.out<T>(iv), f.out<T>(id), f.out<T>(iv), f.out<T>(id), f.out<T>(iv), f.out<T>(di),
         f.out<T>(dv)};
  };
  relation(C * P * P, a.student_relation, a.grad_student_relation);
  relation(ct * P * P, a.teacher_relation, a.grad_teacher_relation);
  if (f.fdp.ConsumeBool()) {
    a.student_filter = {f.opt_in<T>({n, C * P * P}), f.opt_in<T>({n})};
    a.grad_student_filter = {f.out<T>({n, C * P * P}), f.out<T>({n})};
  }
  if (f.fdp.ConsumeBool()) {
    a.teacher_filter = {f.opt_in<T>({n, ct * P * P}), f.opt_in<T>({n})};
    a.grad_teacher_filter = {f.out<T>({n, ct * P * P}), f.out<T>({n})};
  }
  a.relation_adapt_weight = f.in<T>({ct, C});
  a.relation_adapt_bias = f.opt_in<T>({ct});
  a.feature_adapt_weight = f.opt_in<T>({ct, C});
  a.feature_adapt_bias = f.opt_in<T>({ct});
  a.grad_relation_adapt_weight = f.out<T>({ct, C});
  a.grad_relation_adapt_bias = f.out<T>({ct});
  a.grad_feature_adapt_weight = f.out<T>({ct, C});
  a.grad_feature_adapt_bias = f.out<T>({ct});
  a.options.relation_weight = f.scalar(4e-3);
  a.options.feature_weight = f.scalar(2.4e-3);
  a.options.param_grads.beta = f.scalar(0.0);
}

/// instance_relation_maps_loss's form, pooling options and the chosen form's own arguments (maps, boxes and
/// values left to the caller); returns the RoI size it sized the relation for.
template <class T>
std::int64_t instance_maps_options(Fuzz& f, kdloss::drkd::InstanceRelationMapsArgs<T>& a, std::int64_t n,
                                   std::int64_t C, std::int64_t ct) {
  auto& o = a.options;
  o.form = f.enumeration(kdloss::drkd::InstanceForm::code, 3);
  o.output_size = f.fdp.ConsumeBool() ? 2 : f.integer(1);
  o.spatial_scale = f.scalar(0.25);
  o.sampling_ratio = f.fdp.ConsumeBool() ? -1 : f.integer(2);
  o.aligned = f.fdp.ConsumeBool();
  o.image0_pooling = f.fdp.ConsumeBool();
  o.map_grad.beta = f.scalar(0.0);
  const std::int64_t P = std::max<std::int64_t>(std::min<std::int64_t>(o.output_size, 4), 1);
  if (o.form == kdloss::drkd::InstanceForm::code) {
    object_relation_args<T>(f, a.code, n, C, ct, P);
  } else {
    a.paper.teacher_scores = f.opt_in<T>({n});
    a.paper.student_scores = f.opt_in<T>({n});
    a.paper.options.threshold_from = f.enumeration(kdloss::drkd::ConfidenceThreshold::teacher_mean, 3);
    a.paper.options.threshold = f.scalar(0.5);
    a.paper.options.mask_columns = f.fdp.ConsumeBool();
    a.paper.options.alpha = f.scalar(std::numeric_limits<double>::infinity());
    a.paper.options.reduction = f.enumeration(kdloss::Reduction::mean, 4);
  }
  if (f.fdp.ConsumeIntegralInRange<int>(0, 15) == 0) a.code.student = f.in<T>({n, C, P, P});  // bound by the entry
  return P;
}

template <class T>
void entry(Fuzz& f, int which) {
  using namespace kdloss;
  const Sizes s(f);
  const Mode m = f.mode();
  switch (which) {
    case 0: {
      MseLossArgs<T> a;
      a.options.reduction = f.enumeration(Reduction::mean, 4);
      pointwise_views<T>(f, a, s, a.options.reduction != Reduction::none);
      KDF_DRIVE(mse_loss);
      break;
    }
    case 1: {
      L1LossArgs<T> a;
      a.options.reduction = f.enumeration(Reduction::mean, 4);
      pointwise_views<T>(f, a, s, a.options.reduction != Reduction::none);
      KDF_DRIVE(l1_loss);
      break;
    }
    case 2: {
      SmoothL1LossArgs<T> a;
      a.options.reduction = f.enumeration(Reduction::mean, 4);
      a.options.beta = f.scalar(1.0);
      pointwise_views<T>(f, a, s, a.options.reduction != Reduction::none);
      KDF_DRIVE(smooth_l1_loss);
      break;
    }
    case 3: {
      DistanceLossArgs<T> a;
      pointwise_views<T>(f, a, s, true);
      KDF_DRIVE(distance_loss);
      break;
    }
    case 4: {
      KlDivLossArgs<T> a;
      a.options.temperature = f.scalar(2.0);
      a.options.class_axis = f.integer(1);
      a.options.reduction = f.enumeration(Reduction::batchmean, 4);
      a.student_logits = f.in<T>(s.feat());
      a.teacher_logits = f.in<T>(s.feat());
      a.out = f.out<T>(a.options.reduction == Reduction::none ? s.feat() : Dims{});
      a.grad_out = f.opt_in<T>(a.options.reduction == Reduction::none ? s.feat() : Dims{});
      a.grad_student = f.out<T>(s.feat());
      KDF_DRIVE(kl_div_loss);
      break;
    }
    case 5:
    case 6: {
      fbkd::AttentionMapArgs<T> a;
      const Dims o = which == 5 ? s.map() : s.chan();
      a.x = f.in<T>(s.feat());
      a.out = f.out<T>(o);
      a.grad_out = f.opt_in<T>(o);
      a.grad_x = f.out<T>(s.feat());
      if (which == 5) {
        KDF_DRIVE(fbkd::spatial_attention);
      } else {
        KDF_DRIVE(fbkd::channel_attention);
      }
      break;
    }
    case 7: {
      fbkd::AttentionMasksArgs<T> a;
      a.student = f.in<T>(s.feat());
      a.teacher = f.in<T>(s.feat());
      a.mask_spatial = f.out<T>(s.map());
      a.mask_channel = f.out<T>(s.chan());
      a.options.form = f.enumeration(fbkd::MaskForm::code, 2);
      a.options.spatial_temperature = f.scalar(0.5);
      a.options.channel_temperature = f.scalar(0.5);
      KDF_DRIVE(fbkd::attention_masks);
      break;
    }
    case 8: {
      fbkd::AttentionTransferLossArgs<T> a;
      pointwise_views<T>(f, a, s, true);
      KDF_DRIVE(fbkd::attention_transfer_loss);
      break;
    }
    case 9: {
      fbkd::PooledAttentionTransferLossArgs<T> a;
      a.student_channel = f.in<T>(s.chan());
      a.student_spatial = f.in<T>(s.map1());
      a.teacher = f.in<T>(s.feat());
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_student_channel = f.out<T>(s.chan());
      a.grad_student_spatial = f.out<T>(s.map1());
      KDF_DRIVE(fbkd::pooled_attention_transfer_loss);
      break;
    }
    case 10: {
      fbkd::MaskedFeatureLossArgs<T> a;
      a.student_adapted = f.in<T>(s.feat());
      a.teacher = f.in<T>(s.feat());
      a.mask_spatial = f.in<T>(s.map());
      a.mask_channel = f.opt_in<T>(s.chan());
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_student_adapted = f.out<T>(s.feat());
      KDF_DRIVE(fbkd::masked_feature_loss);
      break;
    }
    case 11: {
      fbkd::TotalLossArgs<T> a;
      const int levels = static_cast<int>(f.dim(0, 2));
      for (int i = 0; i < levels; ++i) a.levels.push_back(fbkd_level<T>(f, s));
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.options = f.fdp.ConsumeBool() ? fbkd::Config::paper_two_stage() : fbkd::Config::code_one_stage();
      a.options.mask_form = f.enumeration(a.options.mask_form, 2);
      a.options.transfer_form = f.enumeration(a.options.transfer_form, 2);
      a.options.spatial_temperature = f.scalar(a.options.spatial_temperature);
      a.options.channel_temperature = f.scalar(a.options.channel_temperature);
      a.options.w_am = f.scalar(a.options.w_am);
      a.options.w_at = f.scalar(a.options.w_at);
      a.options.use_channel_mask = f.fdp.ConsumeBool();
      // L_NLD (the fourth term): blocks on every level, or on none, or (rarely) on some.
      a.options.w_nld = f.scalar(a.options.w_nld);
      a.options.non_local_preset = f.enumeration(a.options.non_local_preset, 2);
      a.options.non_local_param_grads.beta = f.scalar(0.0);
      if (f.fdp.ConsumeBool()) {
        const std::int64_t mid = f.dim(1, 3);
        for (auto& lv : a.levels)
          if (f.fdp.ConsumeIntegralInRange<int>(0, 7) != 0) fbkd_non_local<T>(f, s, mid, lv);
      }
      KDF_DRIVE(fbkd::total_loss);
      break;
    }
    case 12: {
      ssim::SsimLossArgs<T> a;
      ssim_options<T>(f, a.options);
      a.reduction = f.enumeration(Reduction::mean, 4);
      const bool reduced = a.reduction != Reduction::none;
      a.student = f.in<T>(s.feat());
      a.teacher = f.in<T>(s.feat());
      a.out = f.out<T>(reduced ? Dims{} : s.feat());
      a.grad_out = f.opt_in<T>(reduced ? Dims{} : s.feat());
      a.grad_student = f.out<T>(s.feat());
      a.grad_teacher = f.out<T>(s.feat());
      KDF_DRIVE(ssim::ssim_loss);
      break;
    }
    case 13: {
      ssim::SsimMapArgs<T> a;
      ssim_options<T>(f, a.options);
      a.student = f.in<T>(s.feat());
      a.teacher = f.in<T>(s.feat());
      a.out = f.out<T>(s.feat());
      a.grad_out = f.opt_in<T>(s.feat());
      a.grad_student = f.out<T>(s.feat());
      a.grad_teacher = f.out<T>(s.feat());
      KDF_DRIVE(ssim::ssim_map);
      break;
    }
    case 14: {
      ssim::SsimPyramidLossArgs<T> a;
      ssim_options<T>(f, a.options);
      const int levels = static_cast<int>(f.dim(0, 3));
      Dims level = s.feat();
      for (int i = 0; i < levels; ++i) {
        a.students.push_back(f.in<T>(level));
        a.teachers.push_back(f.in<T>(level));
        if (!f.coin(8)) a.grad_students.push_back(f.out<T>(level));
        level.v[2] = (level.v[2] + 1) / 2;
        level.v[3] = (level.v[3] + 1) / 2;
      }
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      KDF_DRIVE(ssim::ssim_pyramid_loss);
      break;
    }
    case 15:
    case 16: {
      ssim::SsimIndexArgs<T> a;
      ms_options(f, a.options);
      a.reduction = f.enumeration(ssim::ChannelReduction::mean, 3);
      const Dims o = a.reduction == ssim::ChannelReduction::none ? s.chan()
                     : a.reduction == ssim::ChannelReduction::per_image ? Dims{s.B}
                                                                         : Dims{};
      a.student = f.in<T>(s.feat());
      a.teacher = f.in<T>(s.feat());
      a.out = f.out<T>(o);
      a.grad_out = f.opt_in<T>(o);
      a.grad_student = f.out<T>(s.feat());
      a.grad_teacher = f.out<T>(s.feat());
      if (which == 15) {
        KDF_DRIVE(ssim::ssim_index);
      } else {
        ssim::MsSsimArgs<T> b;
        static_cast<ssim::SsimIndexArgs<T>&>(b) = a;
        drive(f, b, m, KDF_CHECK(ssim::ms_ssim), KDF_CALL(ssim::ms_ssim), KDF_WS(ssim::ms_ssim));
      }
      break;
    }
    case 17: {
      ssim::MsSsimL1LossArgs<T> a;
      ms_options(f, a.options.ms_ssim);
      a.options.l1_weight = f.scalar(0.15);
      a.student = f.in<T>(s.feat());
      a.teacher = f.in<T>(s.feat());
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_student = f.out<T>(s.feat());
      a.grad_teacher = f.out<T>(s.feat());
      KDF_DRIVE(ssim::ms_ssim_l1_loss);
      break;
    }
    case 18:
    case 19: {
      ops::SoftmaxArgs<T> a;
      a.x = f.in<T>(s.feat());
      a.axis = f.integer(1);
      a.out = f.out<T>(s.feat());
      a.y = f.opt_in<T>(s.feat());
      a.grad_out = f.opt_in<T>(s.feat());
      a.grad_x = f.out<T>(s.feat());
      a.options.temperature = f.scalar(1.0);
      if (which == 18) {
        a.options.scale = f.scalar(1.0);
        KDF_DRIVE(ops::softmax);
      } else {
        ops::LogSoftmaxArgs<T> b{a.x, a.axis, a.out, a.y, a.grad_out, a.grad_x, {a.options.temperature}};
        drive(f, b, m, KDF_CHECK(ops::log_softmax), KDF_CALL(ops::log_softmax), KDF_WS(ops::log_softmax));
      }
      break;
    }
    case 20:
    case 21: {
      ops::MeanArgs<T> a;
      const Dims o = which == 20 ? s.map1() : s.chan();
      a.x = f.in<T>(s.feat());
      a.out = f.out<T>(o);
      a.grad_out = f.opt_in<T>(o);
      a.grad_x = f.out<T>(s.feat());
      a.options.absolute = f.fdp.ConsumeBool();
      if (which == 20) {
        KDF_DRIVE(ops::mean_over_channels);
      } else {
        KDF_DRIVE(ops::mean_over_positions);
      }
      break;
    }
    case 22: {
      ops::GaussianFilterArgs<T> a;
      a.options.window_size = f.integer(f.fdp.ConsumeBool() ? 3 : 11);
      a.options.sigma = f.scalar(1.5);
      a.options.padding = f.enumeration(ops::Padding::reflect, 3);
      a.x = f.in<T>(s.feat());
      a.out = f.out<T>(s.feat());
      a.grad_out = f.opt_in<T>(s.feat());
      a.grad_x = f.out<T>(s.feat());
      KDF_DRIVE(ops::gaussian_filter);
      break;
    }
    case 23: {
      ops::MatmulArgs<T> a;
      const std::int64_t M = s.H, K = s.W, N = f.dim(1, 24);
      a.options.trans_a = f.fdp.ConsumeBool();
      a.options.trans_b = f.fdp.ConsumeBool();
      a.options.sum_batches = f.fdp.ConsumeBool();
      a.options.alpha = f.scalar(1.0);
      a.options.beta = f.scalar(0.0);
      const bool batched = f.fdp.ConsumeBool();
      auto mat = [&](std::int64_t r, std::int64_t c) { return batched ? Dims{s.B, r, c} : Dims{r, c}; };
      a.a = f.in<T>(a.options.trans_a ? mat(K, M) : mat(M, K));
      a.b = f.in<T>(a.options.trans_b ? mat(N, K) : mat(K, N));
      a.c = f.out<T>(batched && !a.options.sum_batches ? Dims{s.B, M, N} : Dims{M, N});
      drive(
          f, a, m, [](const auto& x, Mode) { ops::matmul_check(x); },
          [](const auto& x, Mode, const Exec& e) { ops::matmul(x, e); }, KDF_WS(ops::matmul));
      break;
    }
    case 24: {
      ops::LinearArgs<T> a;
      const std::int64_t out_c = f.dim(1, 6);
      const Dims y = {s.B, out_c, s.H, s.W};
      a.x = f.in<T>(s.feat());
      a.weight = f.in<T>({out_c, s.C});
      a.bias = f.opt_in<T>({out_c});
      a.y = f.out<T>(y);
      a.grad_y = f.opt_in<T>(y);
      a.grad_x = f.out<T>(s.feat());
      a.grad_weight = f.out<T>({out_c, s.C});
      a.grad_bias = f.out<T>({out_c});
      a.options.param_grads.beta = f.scalar(0.0);
      a.options.input_grad.beta = f.scalar(0.0);
      KDF_DRIVE(ops::linear);
      break;
    }
    case 25: {
      ops::MaxPool2dArgs<T> a;
      a.options.stride = f.fdp.ConsumeBool() ? 2 : f.fdp.ConsumeIntegralInRange<std::int64_t>(-3, 30);
      if (f.coin(16)) a.options.stride = std::numeric_limits<std::int64_t>::max();
      a.options.input_grad.beta = f.scalar(0.0);
      const std::int64_t st = std::max<std::int64_t>(a.options.stride, 1);
      const Dims y = {s.B, s.C, s.H / st, s.W / st};
      a.x = f.in<T>(s.feat());
      a.y = f.out<T>(y);
      a.grad_y = f.opt_in<T>(y);
      a.grad_x = f.out<T>(s.feat());
      drive(f, a, m, KDF_CHECK(ops::max_pool2d), KDF_CALL(ops::max_pool2d), KDF_WS(ops::max_pool2d), &a.reserve,
            [](const auto& x) { return ops::max_pool2d_reserve_bytes(x); });
      break;
    }
    case 26: {
      ops::BatchNormArgs<T> a;
      a.options.training = f.fdp.ConsumeBool();
      a.options.eps = f.scalar(1e-5);
      a.options.param_grads.beta = f.scalar(0.0);
      const Dims c{s.C};
      a.x = f.in<T>(s.feat());
      a.weight = f.opt_in<T>(c);
      a.bias = f.opt_in<T>(c);
      a.running_mean = f.opt_in<T>(c);
      a.running_var = f.opt_in<T>(c);
      a.y = f.out<T>(s.feat());
      a.batch_mean = f.out<T>(c);
      a.batch_var = f.out<T>(c);
      a.grad_y = f.opt_in<T>(s.feat());
      a.grad_x = f.out<T>(s.feat());
      a.grad_weight = f.out<T>(c);
      a.grad_bias = f.out<T>(c);
      drive(f, a, m, KDF_CHECK(ops::batch_norm), KDF_CALL(ops::batch_norm), KDF_WS(ops::batch_norm), &a.reserve,
            [](const auto& x) { return ops::batch_norm_reserve_bytes(x); });
      break;
    }
    case 27:
    case 28: {
      const std::int64_t n = s.H, k = s.W, dk = s.C, dv = f.dim(1, 6);
      const Dims th{s.B, n, dk}, ph{s.B, k, dk}, g{s.B, k, dv}, y{s.B, n, dv};
      if (which == 27) {
        ops::DotRelationArgs<T> a;
        a.theta = f.in<T>(th);
        a.phi = f.in<T>(ph);
        a.g = f.in<T>(g);
        a.y = f.out<T>(y);
        a.grad_y = f.opt_in<T>(y);
        a.grad_theta = f.out<T>(th);
        a.grad_phi = f.out<T>(ph);
        a.grad_g = f.out<T>(g);
        a.options.divide_by_keys = f.fdp.ConsumeBool();
        a.options.input_grads.beta = f.scalar(0.0);
        KDF_DRIVE(ops::dot_relation);
      } else {
        ops::ConcatRelationArgs<T> a;
        a.theta = f.in<T>(th);
        a.phi = f.in<T>(ph);
        a.g = f.in<T>(g);
        a.weight = f.in<T>({2 * dk});
        a.y = f.out<T>(y);
        a.grad_y = f.opt_in<T>(y);
        a.grad_theta = f.out<T>(th);
        a.grad_phi = f.out<T>(ph);
        a.grad_g = f.out<T>(g);
        a.grad_weight = f.out<T>({2 * dk});
        a.options.divide_by_keys = f.fdp.ConsumeBool();
        a.options.input_grads.beta = f.scalar(0.0);
        a.options.param_grads.beta = f.scalar(0.0);
        KDF_DRIVE(ops::concat_relation);
      }
      break;
    }
    case 29: {
      // roi_align's check reads the host boxes and offsets (their values are validated), so it is
      // fuzzed with backed views only; the fill patterns give indices in [0, 1], NaN, inf, 0 and 1e30.
      if (f.wild()) break;
      ops::RoiAlignArgs<T> a;
      const bool ragged = f.fdp.ConsumeBool();
      const std::int64_t K = f.dim(0, 5);
      a.options.output_height = f.fdp.ConsumeBool() ? 3 : f.integer(2);
      a.options.output_width = f.fdp.ConsumeBool() ? 3 : f.integer(1);
      a.options.spatial_scale = f.scalar(0.5);
      a.options.sampling_ratio = f.fdp.ConsumeBool() ? -1 : f.integer(2);
      a.options.aligned = f.fdp.ConsumeBool();
      a.options.pool_mode = f.fdp.ConsumeBool() ? ops::RoiPoolMode::avg : ops::RoiPoolMode::max;
      a.options.input_grad.beta = f.scalar(0.0);
      const std::int64_t ph = std::max<std::int64_t>(std::min<std::int64_t>(a.options.output_height, 8), 1);
      const std::int64_t pw = std::max<std::int64_t>(std::min<std::int64_t>(a.options.output_width, 8), 1);
      const Dims y{K, s.C, ph, pw};
      a.x = f.in<T>(s.feat());
      a.boxes = f.in<T>({K, ragged ? 4 : 5});
      std::int64_t offsets[3] = {0, 0, K};
      offsets[1] = f.dim(0, K + 1);  // K + 1: not monotone / not ending at K
      if (ragged && f.fdp.ConsumeBool()) a.offsets = kdloss::host_view<const std::int64_t>(offsets, {s.B + 1});
      a.y = f.out<T>(y);
      a.grad_y = f.opt_in<T>(y);
      a.grad_x = f.out<T>(s.feat());
      KDF_DRIVE(ops::roi_align);
      break;
    }
    case 30: {
      ops::DistanceArgs<T> a;
      a.a = f.in<T>(s.feat());
      a.b = f.in<T>(s.feat());
      a.options.per_item = f.fdp.ConsumeBool();
      a.options.sum_items = f.fdp.ConsumeBool();
      a.options.weight = f.scalar(1.0);
      const bool one = !a.options.per_item || a.options.sum_items;
      a.out = f.out<T>(one ? Dims{} : Dims{s.B});
      a.grad_out = f.opt_in<T>(one ? Dims{} : Dims{s.B});
      a.grad_a = f.out<T>(s.feat());
      a.grad_b = f.out<T>(s.feat());
      KDF_DRIVE(ops::distance);
      break;
    }
    case 31: {
      static const std::int64_t offsets[] = {0, 1, 3};  // 1 and 2 boxes
      drkd::InstanceRelationPaperLossArgs<T> a;
      a.student = f.in<T>({3, s.C, 3, 3});
      a.teacher = f.in<T>({3, s.C, 3, 3});
      a.boxes.offsets = host_view<const std::int64_t>(offsets, {3});
      a.teacher_scores = f.in<T>({3});
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_student = f.out<T>({3, s.C, 3, 3});
      a.options.alpha = f.scalar(2.0);
      a.options.mask_columns = f.fdp.ConsumeBool();
      KDF_DRIVE(drkd::instance_relation_paper_loss);
      break;
    }
    case 32: {
      ops::BoxConvertArgs<T> a;
      const Dims b{s.B, s.H, 4};
      a.boxes = f.in<T>(b);
      a.out = f.out<T>(b);
      a.grad_out = f.opt_in<T>(b);
      a.grad_boxes = f.out<T>(b);
      a.options.in_fmt = f.enumeration(ops::BoxFormat::cxcywh, 3);
      a.options.out_fmt = f.enumeration(ops::BoxFormat::xyxy, 3);
      KDF_DRIVE(ops::box_convert);
      break;
    }
    case 33: {
      ops::BoxScaleArgs<T> a;
      const Dims b{s.B, s.H, 4};
      a.boxes = f.in<T>(b);
      a.sizes = f.in<T>({s.B, 2});
      a.out = f.out<T>(b);
      a.grad_out = f.opt_in<T>(b);
      a.grad_boxes = f.out<T>(b);
      a.options.clamp = f.fdp.ConsumeBool();
      a.options.normalize = f.fdp.ConsumeBool();
      KDF_DRIVE(ops::box_scale);
      break;
    }
    case 34: {
      ops::BoxOverlapArgs<T> a;
      a.boxes1 = f.in<T>({s.B, s.H, 4});
      a.boxes2 = f.in<T>({s.B, s.W, 4});
      a.out = f.out<T>({s.B, s.H, s.W});
      a.options.giou = f.fdp.ConsumeBool();
      a.options.form = f.enumeration(ops::OverlapForm::detr, 3);
      a.options.eps = f.scalar(1e-6);
      a.options.format = f.enumeration(ops::BoxFormat::xyxy, 3);
      KDF_DRIVE(ops::box_overlap);
      break;
    }
    case 35: {
      ops::GIoULossArgs<T> a;
      a.options.reduction = f.enumeration(Reduction::sum, 4);
      a.options.form = f.enumeration(ops::OverlapForm::mmdet, 3);
      a.options.eps = f.scalar(1e-6);
      a.options.scale = f.scalar(1.0);
      const Dims b{s.H, 4}, v = a.options.reduction == Reduction::none ? Dims{s.H} : Dims{};
      a.pred = f.in<T>(b);
      a.target = f.in<T>(b);
      a.weight = f.opt_in<T>({s.H});
      a.out = f.out<T>(v);
      a.grad_out = f.opt_in<T>(v);
      a.grad_pred = f.out<T>(b);
      a.grad_target = f.out<T>(b);
      KDF_DRIVE(ops::giou_loss);
      break;
    }
    case 36:
    case 37: {
      // the assignment: backed int64 views of fuzzed lengths and values (validation reads them)
      const auto indices = [&](std::int64_t n, std::int64_t hi) {
        auto* p = reinterpret_cast<std::int64_t*>(f.buffer(static_cast<std::size_t>(n) * sizeof(std::int64_t)));
        for (std::int64_t k = 0; k < n; ++k) p[k] = f.coin(8) ? f.dim(-2, hi + 2) : (k * 3) % (hi > 0 ? hi : 1);
        return kdloss::host_view<const std::int64_t>(p, {n});
      };
      const std::int64_t Q = s.H, K = f.dim(0, 6), Tn = f.dim(1, 8);
      if (which == 36) {
        detr::MatchedClassLossArgs<T> a;
        a.logits = f.in<T>({s.B, Q, s.C});
        if (f.fdp.ConsumeBool()) a.target_probs = f.in<T>({Tn, s.C});
        else a.target_labels = indices(Tn, s.C);
        a.pred_rows = indices(K, s.B * Q);
        a.target_rows = indices(f.coin(8) ? K + 1 : K, Tn);
        a.out = f.out<T>({});
        a.grad_out = f.opt_in<T>({});
        a.grad_logits = f.out<T>({s.B, Q, s.C});
        a.options.kind = f.enumeration(detr::MatchedClassLossOptions::Kind::soft_bce, 2);
        a.options.alpha = f.scalar(0.25);
        a.options.gamma = f.scalar(2.0);
        a.options.normalizer.kind = f.enumeration(detr::Normalizer::Kind::matched_pairs, 3);
        a.options.normalizer.value = f.scalar(1.0);
        KDF_DRIVE(detr::matched_class_loss);
      } else {
        detr::MatchedBoxLossArgs<T> a;
        a.pred_boxes = f.in<T>({s.B, Q, 4});
        a.target_boxes = f.in<T>({Tn, 4});
        a.pred_rows = indices(K, s.B * Q);
        a.target_rows = indices(K, Tn);
        a.sizes = f.opt_in<T>({s.B, 2});
        a.out_l1 = f.out<T>({});
        a.out_giou = f.out<T>({});
        a.grad_out_l1 = f.opt_in<T>({});
        a.grad_out_giou = f.opt_in<T>({});
        a.grad_pred_boxes = f.out<T>({s.B, Q, 4});
        a.options.form = f.enumeration(ops::OverlapForm::mmdet, 3);
        a.options.eps = f.scalar(1e-6);
        a.options.format = f.enumeration(ops::BoxFormat::cxcywh, 3);
        a.options.normalizer.value = f.scalar(1.0);
        KDF_DRIVE(detr::matched_box_loss);
      }
      break;
    }
    case 38: {
      detr::MatchingCostArgs<T> a;
      const std::int64_t Q = s.H, T_all = f.dim(0, 8);
      auto* off = reinterpret_cast<std::int64_t*>(f.buffer(static_cast<std::size_t>(s.B + 1) * sizeof(std::int64_t)));
      off[0] = 0;
      for (std::int64_t b = 1; b <= s.B; ++b) off[b] = b == s.B ? T_all : (f.coin(8) ? f.dim(-1, 9) : T_all * b / s.B);
      a.targets = Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(off, {s.B + 1})};
      auto* lab = reinterpret_cast<std::int64_t*>(f.buffer(static_cast<std::size_t>(T_all) * sizeof(std::int64_t)));
      for (std::int64_t t = 0; t < T_all; ++t) lab[t] = f.coin(8) ? f.dim(-1, s.C + 1) : t % s.C;
      a.options.class_cost = f.enumeration(detr::MatchingCostOptions::ClassCost::focal, 4);
      a.options.target_in_pixels = f.fdp.ConsumeBool();
      a.options.giou_form = f.enumeration(ops::OverlapForm::mmdet, 3);
      a.options.giou_eps = f.scalar(1e-6);
      a.options.class_weight = f.scalar(2.0);
      a.pred_logits = f.opt_in<T>({s.B, Q, s.C});
      a.pred_boxes = f.in<T>({s.B, Q, 4});
      a.target_probs = f.opt_in<T>({T_all, s.C});
      a.target_labels = kdloss::host_view<const std::int64_t>(lab, {T_all});
      a.target_boxes = f.in<T>({T_all, 4});
      a.sizes = f.opt_in<T>({s.B, 2});
      a.out = f.out<T>({s.B, Q, f.dim(0, 9)});
      KDF_DRIVE(detr::matching_cost);
      break;
    }
    case 39: {  // issue 11: batched assignment (integer outputs, optional host sizes possibly out of range)
      ops::LinearSumAssignmentArgs<T> a;
      const std::int64_t Q = s.H, Tn = s.W, K = std::min(Q, Tn);
      a.cost = f.in<T>({s.B, Q, Tn});
      a.row_ind = f.out<std::int64_t>({s.B, K});
      a.col_ind = f.out<std::int64_t>({s.B, K});
      a.count = f.out<std::int64_t>({s.B});
      a.status = f.out<std::int64_t>({s.B});
      a.options.maximize = f.fdp.ConsumeBool();
      std::vector<std::int64_t> rows(static_cast<std::size_t>(s.B));
      for (auto& r : rows) r = f.fdp.ConsumeIntegralInRange<std::int64_t>(-1, Q + 1);
      if (f.fdp.ConsumeBool()) a.rows = kdloss::host_view<const std::int64_t>(rows.data(), {s.B});
      KDF_DRIVE(ops::linear_sum_assignment);
      break;
    }
    case 40: {  // detr::contrastive_query_loss
      const std::int64_t K = f.dim(0, 2), n = s.H, d = s.C;
      const Dims dims = K == 0 ? Dims{n, d} : Dims{K, n, d};
      detr::ContrastiveQueryArgs<T> a;
      a.teacher = f.in<T>(dims);
      a.student = f.in<T>(dims);
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_teacher = f.out<T>(dims);
      a.grad_student = f.out<T>(dims);
      a.options.temperature = f.scalar(0.07);
      a.options.weight = f.scalar(0.2);
      a.options.eps = f.scalar(1e-12);
      a.options.normalize = f.fdp.ConsumeBool();
      KDF_DRIVE(detr::contrastive_query_loss);
      break;
    }
    case 41: {  // detr::target_aware_feature_loss
      const std::int64_t K = f.dim(1, 2), Q = f.dim(1, 6), C = f.dim(1, 4), G = f.dim(0, 3);
      std::vector<std::int64_t> offsets = {0, f.dim(0, G), G};
      offsets.resize(static_cast<std::size_t>(s.B + 1));
      offsets.back() = G;
      if (f.coin(8)) offsets[0] = f.dim(-2, 2);
      detr::TargetAwareFeatureArgs<T> a;
      a.teacher_scores = f.in<T>({K, s.B, Q, C});
      a.teacher_boxes = f.in<T>({K, s.B, Q, 4});
      a.teacher_queries = f.in<T>({K, s.B, Q, s.C});
      a.gt_boxes = f.in<T>({G, 4});
      a.gt_images = kdloss::Segments<std::int64_t>{
          kdloss::host_view<const std::int64_t>(offsets.data(), {static_cast<std::int64_t>(offsets.size())})};
      const std::int64_t levels = f.dim(0, 2);
      for (std::int64_t l = 0; l < levels; ++l) {
        const Dims lv{s.B, s.C, f.dim(1, 8), f.dim(1, 8)};
        a.teacher_features.push_back(f.in<T>(lv));
        a.student_features.push_back(f.in<T>(lv));
        if (!f.coin(4)) a.grad_student_features.push_back(f.out<T>(lv));
      }
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.options.topk = f.fdp.ConsumeBool() ? f.dim(-1, 30) : 1;
      a.options.mask_min = f.scalar(0.01);
      a.options.norm_eps = f.scalar(1e-12);
      a.options.iou_eps = f.scalar(1e-6);
      a.options.weight = f.scalar(1.0);
      KDF_DRIVE(detr::target_aware_feature_loss);
      break;
    }
    case 42: {  // detr::logits_distillation_loss
      const std::int64_t K = f.dim(1, 2), Q = f.dim(0, 5), N = f.dim(0, 5), C = s.C;
      detr::LogitsDistillationArgs<T> a;
      a.student_logits = f.in<T>({K, s.B, Q, C});
      a.student_boxes = f.in<T>({K, s.B, Q, 4});
      a.teacher_logits = f.in<T>({K, s.B, N, C});
      a.teacher_boxes = f.in<T>({K, s.B, N, 4});
      a.sizes = f.opt_in<T>({s.B, 2});
      a.out = f.out<T>({});
      a.out_cls = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_student_logits = f.out<T>({K, s.B, Q, C});
      a.grad_student_boxes = f.out<T>({K, s.B, Q, 4});
      a.options.l1_weight = f.scalar(5.0);
      a.options.num_pos = f.scalar(0.0);
      a.options.score_threshold = f.scalar(0.3);
      a.options.split = f.enumeration(detr::LogitsDistillationOptions::Split::none, 2);
      a.options.negative_class = f.enumeration(detr::LogitsDistillationOptions::NegativeClass::background, 3);
      KDF_DRIVE(detr::logits_distillation_loss);
      break;
    }
    case 43: {  // detr::query_prior_loss
      const std::int64_t K = f.dim(1, 2), Q = f.dim(1, 5), C = s.C, G = f.dim(0, 3), P = f.dim(0, 4);
      std::vector<std::int64_t> pairs(static_cast<std::size_t>(2 * P)), labels(static_cast<std::size_t>(G));
      for (auto& v : pairs) v = f.dim(-1, 6);
      for (auto& v : labels) v = f.dim(-1, 4);
      std::vector<std::int64_t> layers(static_cast<std::size_t>(K + 1), P);
      layers[0] = 0;
      if (K == 2) layers[1] = f.dim(0, P);
      detr::QueryPriorLossArgs<T> a;
      a.logits = f.in<T>({K, s.B, Q, C});
      a.boxes = f.in<T>({K, s.B, Q, 4});
      a.gt_boxes = f.in<T>({G, 4});
      a.sizes = f.opt_in<T>({s.B, 2});
      a.gt_labels = kdloss::host_view<const std::int64_t>(labels.data(), {G});
      a.pred_rows = kdloss::host_view<const std::int64_t>(pairs.data(), {P});
      a.target_rows = kdloss::host_view<const std::int64_t>(pairs.data() + P, {P});
      a.layers = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(layers.data(), {K + 1})};
      a.out_cls = f.out<T>({});
      a.out_l1 = f.out<T>({});
      a.out_giou = f.out<T>({});
      a.grad_out_cls = f.opt_in<T>({});
      a.grad_out_l1 = f.opt_in<T>({});
      a.grad_out_giou = f.opt_in<T>({});
      a.grad_logits = f.out<T>({K, s.B, Q, C});
      a.grad_boxes = f.out<T>({K, s.B, Q, 4});
      a.options.num_pos = f.scalar(0.0);
      KDF_DRIVE(detr::query_prior_loss);
      break;
    }
    case 44: {  // ops::softmax_relation (with its reserve: the log-sum-exp of every query row)
      const std::int64_t n = s.H, k = s.W, dk = s.C, dv = f.dim(1, 6);
      const Dims th{s.B, n, dk}, ph{s.B, k, dk}, g{s.B, k, dv}, y{s.B, n, dv};
      ops::SoftmaxRelationArgs<T> a;
      a.theta = f.in<T>(th);
      a.phi = f.in<T>(ph);
      a.g = f.in<T>(g);
      a.y = f.out<T>(y);  // optional in backward (absent: recomputed)
      a.grad_y = f.opt_in<T>(y);
      a.grad_theta = f.out<T>(th);
      a.grad_phi = f.out<T>(ph);
      a.grad_g = f.out<T>(g);
      if (f.coin(4)) a.grad_theta = {};
      a.options.scale = f.scalar(0.5);
      drive(f, a, m, KDF_CHECK(ops::softmax_relation), KDF_CALL(ops::softmax_relation),
            KDF_WS(ops::softmax_relation), &a.reserve, [](const auto& x) { return ops::softmax_relation_reserve_bytes(x); });
      break;
    }
    case 45: {  // ops::non_local (with its reserve)
      ops::NonLocalArgs<T> a;
      non_local_options(f, a.options);
      const std::int64_t mid = f.dim(1, 3);
      a.x = f.in<T>(s.feat());
      non_local_params<T>(f, s.C, mid, a, true);
      a.z = f.out<T>(s.feat());
      a.grad_z = f.opt_in<T>(s.feat());
      a.grad_x = f.out<T>(s.feat());
      drive(f, a, m, KDF_CHECK(ops::non_local), KDF_CALL(ops::non_local), KDF_WS(ops::non_local), &a.reserve,
            [](const auto& x) { return ops::non_local_reserve_bytes(x); });
      break;
    }
    case 46: {  // ops::glore (with its reserve)
      drkd::GloreUnitParams<T> p;
      drkd::GloreUnitGrads<T> g;
      drkd::GloreUnitStats<T> st;
      const View<const T> x = f.in<T>(s.feat());
      glore_unit<T>(f, s.C, p, g, st);
      ops::GloreArgs<T> a = drkd::detail::unit_args(x, p, g, {});
      const Dims c{s.C};
      a.options.bn_eps = f.scalar(1e-4);
      a.options.training = !f.coin(4);
      a.options.param_grads.beta = f.scalar(0.0);
      a.bn_running_mean = f.opt_in<T>(c);
      a.bn_running_var = f.opt_in<T>(c);
      a.out = f.out<T>(s.feat());
      a.bn_batch_mean = st.bn_batch_mean;
      a.bn_batch_var = st.bn_batch_var;
      a.grad_out = f.opt_in<T>(s.feat());
      a.grad_x = f.out<T>(s.feat());
      drive(f, a, m, KDF_CHECK(ops::glore), KDF_CALL(ops::glore), KDF_WS(ops::glore), &a.reserve,
            [](const auto& x) { return ops::glore_reserve_bytes(x); });
      break;
    }
    case 47: {  // ops::cosine_relation (host offsets; sometimes ending at x's described rows, huge or not)
      ops::CosineRelationArgs<T> a;
      a.x = f.in<T>({s.H, s.C * s.W});
      std::int64_t* off = offsets_for(f, s.B, a.x.rank() > 0 ? a.x.shape[0] : s.H);
      a.segments.offsets = kdloss::host_view<const std::int64_t>(off, {s.B + 1});
      std::int64_t pairs = 0;
      for (std::int64_t b = 0; b < s.B; ++b) {  // sum n_b^2 of the sizes clamped to [0, 64] (a wild x is huge)
        const std::int64_t nb = std::min<std::int64_t>(std::max<std::int64_t>(off[b + 1] - off[b], 0), 64);
        pairs += nb * nb;
      }
      a.out = f.out<T>({pairs});
      a.grad_out = f.opt_in<T>({pairs});
      a.grad_x = f.out<T>({s.H, s.C * s.W});
      a.options.eps = f.scalar(1e-12);
      KDF_DRIVE(ops::cosine_relation);
      break;
    }
    case 48: {  // fbkd::non_local_loss (one level's L_NLD)
      fbkd::NonLocalLossArgs<T> a;
      non_local_options(f, a.options.block);
      a.options.weight = f.scalar(7e-5);
      a.options.param_grads.beta = f.scalar(0.0);
      const std::int64_t mid = f.dim(1, 3);
      a.student = f.in<T>(s.feat());
      a.teacher = f.in<T>(s.feat());
      non_local_params<T>(f, s.C, mid, a.student_block, f.fdp.ConsumeBool());
      non_local_params<T>(f, s.C, mid, a.teacher_block, f.fdp.ConsumeBool());
      if (f.coin(16)) a.student_block.x = a.student;  // must be left absent
      a.adapt_weight = f.in<T>({s.C, s.C});
      a.adapt_bias = f.opt_in<T>({s.C});
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_student = f.out<T>(s.feat());
      a.grad_adapt_weight = f.out<T>({s.C, s.C});
      a.grad_adapt_bias = f.out<T>({s.C});
      KDF_DRIVE(fbkd::non_local_loss);
      break;
    }
    case 49: {  // drkd::glore_relation_loss (two GloRe units and the adapter)
      drkd::GloreRelationLossArgs<T> a;
      const std::int64_t ct = f.dim(1, 4);
      const Dims tfeat{s.B, ct, s.H, s.W};
      a.student = f.in<T>(s.feat());
      a.teacher = f.in<T>(tfeat);
      glore_unit<T>(f, s.C, a.student_glore, a.grad_student_glore, a.student_bn_stats);
      glore_unit<T>(f, ct, a.teacher_glore, a.grad_teacher_glore, a.teacher_bn_stats);
      a.adapt_weight = f.in<T>({ct, s.C});
      a.adapt_bias = f.opt_in<T>({ct});
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_student = f.out<T>(s.feat());
      a.grad_adapt_weight = f.out<T>({ct, s.C});
      a.grad_adapt_bias = f.out<T>({ct});
      a.options.weight = f.scalar(1e-3);
      a.options.bn_eps = f.scalar(1e-4);
      a.options.param_grads.beta = f.scalar(0.0);
      KDF_DRIVE(drkd::glore_relation_loss);
      break;
    }
    case 50: {  // drkd::pixel_relation_loss
      drkd::PixelRelationLossArgs<T> a;
      a.student = f.in<T>(s.feat());
      a.teacher = f.in<T>(s.feat());
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_student = f.out<T>(s.feat());
      a.options.reduction = f.enumeration(Reduction::mean, 4);
      a.options.scale = f.scalar(0.0);
      KDF_DRIVE(drkd::pixel_relation_loss);
      break;
    }
    case 51: {  // drkd::instance_relation_loss (the code form: relation modules, filters, adapters)
      drkd::InstanceRelationLossArgs<T> a;
      const std::int64_t n = f.dim(0, 5), P = f.dim(1, 3), ct = f.dim(1, 4);
      const Dims sfeat{n, s.C, P, P}, tfeat{n, ct, P, P};
      a.student = f.in<T>(sfeat);
      a.teacher = f.in<T>(tfeat);
      std::int64_t* off = offsets_for(f, s.B, a.student.rank() > 0 ? a.student.shape[0] : n);
      a.boxes.offsets = kdloss::host_view<const std::int64_t>(off, {s.B + 1});
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_student = f.out<T>(sfeat);
      object_relation_args<T>(f, a, n, s.C, ct, P);
      KDF_DRIVE(drkd::instance_relation_loss);
      break;
    }
    case 52: {  // drkd::instance_relation_maps_loss (RoIAlign of the boxes, then either instance form)
      // the pooling's check reads the host boxes and offsets: backed views only (as roi_align, case 29)
      if (f.wild()) break;
      drkd::InstanceRelationMapsArgs<T> a;
      const std::int64_t n = f.dim(0, 5), ct = f.dim(1, 4);
      const Dims tfeat{s.B, ct, s.H, s.W};
      a.student_map = f.in<T>(s.feat());
      a.teacher_map = f.in<T>(tfeat);
      const std::int64_t P = instance_maps_options(f, a, n, s.C, ct);
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      a.grad_student_map = f.out<T>(s.feat());
      a.boxes = f.in<T>({n, f.fdp.ConsumeIntegralInRange<int>(0, 7) == 0 ? 5 : 4});
      std::int64_t* off = offsets_for(f, s.B, n);
      a.offsets = kdloss::host_view<const std::int64_t>(off, {s.B + 1});
      (void)P;
      KDF_DRIVE(drkd::instance_relation_maps_loss);
      break;
    }
    case 53: {  // drkd::total_loss (up to two levels, each with the terms the input picks)
      if (f.wild()) break;
      drkd::TotalLevel<T> levels[2];
      drkd::TotalLossArgs<T> a;
      a.level_count = static_cast<std::size_t>(f.dim(0, 2));
      a.levels = f.fdp.ConsumeIntegralInRange<int>(0, 15) == 0 ? nullptr : levels;
      const std::int64_t n = f.dim(0, 4);
      for (int l = 0; l < 2; ++l) {
        drkd::TotalLevel<T>& lv = levels[l];
        const std::int64_t ct = f.dim(1, 4);
        const Dims sf{s.B, s.C, l == 0 ? s.H : f.dim(1, 12), l == 0 ? s.W : f.dim(1, 12)};
        const Dims tf{s.B, ct, sf[2], sf[3]};
        lv.student = f.in<T>(sf);
        lv.teacher = f.in<T>(tf);
        lv.grad_student = f.out<T>(sf);
        lv.pixel = f.enumeration(drkd::PixelTerm::none, 4);
        if (lv.pixel == drkd::PixelTerm::glore) {
          glore_unit<T>(f, s.C, lv.glore.student_glore, lv.glore.grad_student_glore, lv.glore.student_bn_stats);
          glore_unit<T>(f, ct, lv.glore.teacher_glore, lv.glore.grad_teacher_glore, lv.glore.teacher_bn_stats);
          lv.glore.adapt_weight = f.in<T>({ct, s.C});
          lv.glore.adapt_bias = f.opt_in<T>({ct});
          lv.glore.grad_adapt_weight = f.out<T>({ct, s.C});
          if (f.fdp.ConsumeIntegralInRange<int>(0, 7) == 0) lv.glore.student = lv.student;  // bound by the total
        }
        lv.seed_options.reduction = f.enumeration(Reduction::mean, 4);
        lv.instance = f.fdp.ConsumeBool();
        if (lv.instance) instance_maps_options(f, lv.instance_args, n, s.C, ct);
        if (lv.instance && f.fdp.ConsumeIntegralInRange<int>(0, 7) == 0) lv.instance_args.out = f.out<T>({});
      }
      a.boxes = f.opt_in<T>({n, 4});
      std::int64_t* off = offsets_for(f, s.B, n);
      if (f.fdp.ConsumeIntegralInRange<int>(0, 7) != 0) a.offsets = kdloss::host_view<const std::int64_t>(off, {s.B + 1});
      a.out = f.out<T>({});
      a.grad_out = f.opt_in<T>({});
      KDF_DRIVE(drkd::total_loss);
      break;
    }
    default:
      break;
  }
}
constexpr int kEntries = 54;

/// The DLPack adapter: random DLTensor fields. Accepted: the view must describe exactly the
/// tensor's memory (data + byte_offset, shape, strides or compact strides, device).
template <class T>
void dlpack(FuzzedDataProvider& fdp) {
  using E = std::remove_const_t<T>;
  alignas(64) static unsigned char memory[256];
  std::int64_t shape[12], strides[12];
  DLTensor t{};
  t.ndim = fdp.ConsumeIntegralInRange<int>(-3, 9);
  const int n = std::max(0, std::min(t.ndim, 12));
  for (int i = 0; i < n; ++i) {
    switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
      case 0: shape[i] = -fdp.ConsumeIntegralInRange<std::int64_t>(1, 4); break;
      case 1: shape[i] = std::int64_t{1} << fdp.ConsumeIntegralInRange<int>(20, 62); break;
      case 2: shape[i] = std::numeric_limits<std::int64_t>::max(); break;
      default: shape[i] = fdp.ConsumeIntegralInRange<std::int64_t>(0, 6); break;
    }
    strides[i] = fdp.ConsumeBool() ? fdp.ConsumeIntegral<std::int64_t>() : fdp.ConsumeIntegralInRange<std::int64_t>(-8, 8);
  }
  t.shape = fdp.ConsumeIntegralInRange<int>(0, 15) == 0 ? nullptr : shape;
  t.strides = fdp.ConsumeBool() ? nullptr : strides;
  t.dtype.code = fdp.ConsumeIntegralInRange<std::uint8_t>(0, 7);
  t.dtype.bits = fdp.ConsumeBool() ? fdp.ConsumeIntegral<std::uint8_t>() : (fdp.ConsumeBool() ? 16 : sizeof(E) * 8);
  t.dtype.lanes = fdp.ConsumeIntegralInRange<int>(0, 7) == 0 ? fdp.ConsumeIntegral<std::uint16_t>() : 1;
  if (fdp.ConsumeIntegralInRange<int>(0, 3) == 0) t.dtype = {2, sizeof(E) * 8, 1};  // the right dtype
  // the raw int32 (a newer producer's device type may lie outside this header's enum)
  const std::int32_t device_type = fdp.ConsumeBool() ? 1 : fdp.ConsumeIntegralInRange<std::int32_t>(-1, 40);
  std::memcpy(&t.device.device_type, &device_type, sizeof device_type);
  t.device.device_id = fdp.ConsumeIntegralInRange<int>(-2, 3);
  t.data = fdp.ConsumeIntegralInRange<int>(0, 7) == 0 ? nullptr : memory + fdp.ConsumeIntegralInRange<int>(0, 7);
  t.byte_offset = fdp.ConsumeBool() ? fdp.ConsumeIntegralInRange<std::uint64_t>(0, 64) : fdp.ConsumeIntegral<std::uint64_t>();
  unsigned char before[sizeof memory];
  std::memcpy(before, memory, sizeof memory);
  try {
    const View<T> v = kdloss::interop::from_dlpack<T>(t, "tensor");
    if (v.rank() != t.ndim) defect("from_dlpack: rank differs from ndim");
    for (int i = 0; i < v.rank(); ++i) {
      if (v.shape.v[i] != t.shape[i]) defect("from_dlpack: shape differs");
      if (t.strides != nullptr && v.strides.v[i] != t.strides[i]) defect("from_dlpack: strides differ");
    }
    if (t.data != nullptr &&
        reinterpret_cast<std::uintptr_t>(v.data) != reinterpret_cast<std::uintptr_t>(t.data) + t.byte_offset)
      defect("from_dlpack: data is not data + byte_offset");
    if (t.data != nullptr && reinterpret_cast<std::uintptr_t>(v.data) % alignof(E) != 0)
      defect("from_dlpack: accepted a misaligned pointer");
    std::int32_t type = 0;
    std::memcpy(&type, &t.device.device_type, sizeof type);
    if (!(type == 1 || type == 2 || type == 3 || type == 13)) defect("from_dlpack: accepted an unknown device");
    if (t.dtype.code != 2 || t.dtype.bits != sizeof(E) * 8 || t.dtype.lanes != 1)
      defect("from_dlpack: accepted a wrong dtype (half/bf16/int/lanes)");
  } catch (const kdloss::Error&) {
  }
  if (std::memcmp(before, memory, sizeof memory) != 0) defect("from_dlpack wrote to the tensor's memory");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  const int target = fdp.ConsumeIntegralInRange<int>(0, kEntries);  // kEntries: the DLPack adapter
  const bool dbl = fdp.ConsumeBool();
  const bool wild = fdp.ConsumeIntegralInRange<int>(0, 3) == 0;
  try {
    if (target == kEntries) {
      const int kind = fdp.ConsumeIntegralInRange<int>(0, 2);
      if (dbl) {
        kind == 0 ? dlpack<const double>(fdp) : dlpack<double>(fdp);
      } else {
        kind == 0 ? dlpack<const float>(fdp) : dlpack<float>(fdp);
      }
      return 0;
    }
    Fuzz f(fdp, wild);
    if (dbl)
      entry<double>(f, target);
    else
      entry<float>(f, target);
  } catch (const kdloss::Error&) {
    // building the arguments themselves (a View constructor) may reject them: that is fine
  } catch (const std::exception& e) {
    defect(std::string("an exception other than kdloss::Error escaped: ") + e.what());
  }
  return 0;
}
