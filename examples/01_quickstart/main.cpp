// The kdloss demo: a synthetic teacher/student FPN pyramid, every implemented loss and its
// gradient on the CPU (and on the GPU when one is present), printed as a table: the feature losses,
// SSIM, FBKD (total, L_NLD with the official non-local blocks), DRKD (seed pixel relation, GloRe L_PR, the instance relation from maps + boxes)
// and the learnable blocks they use (ops::non_local, ops::glore). At full size the O(N^2) seed
// relation and the GloRe unit skip P2 (minutes per call there: docs/losses/pixel_relation.md).
//
//   kdloss_quickstart            # batch 2, C = 256, P2-P5 of an 800x1333 input
//   kdloss_quickstart --small    # batch 2, C = 32, P2-P5 of a 128x160 input
//
// The host compiler builds this file for the CPU rows (kdloss_quickstart); when CUDA is enabled, nvcc
// builds it again through main.cu (KDLOSS_DEMO_GPU_ROWS_ONLY; KDLOSS_CUDA_ENABLED is 1) for the GPU rows:
// the same loss calls serve both devices. scripts/demo.sh runs both.
#ifndef KDLOSS_DEMO_GPU_ROWS_ONLY
#define KDLOSS_DEMO_GPU_ROWS_ONLY 0
#endif
#include <kdloss/kdloss.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#if KDLOSS_CUDA_ENABLED
#include <cuda_runtime.h>
#endif

namespace {

using kdloss::Dims;
using kdloss::View;

struct Level {
  std::string name;
  Dims shape;
  std::vector<float> teacher, student;
};

/// Teacher: a few smooth "objects" per channel over weak noise; student: a noisy, damped copy.
std::vector<Level> make_pyramid(bool small) {
  const std::int64_t batch = 2, channels = small ? 32 : 256;
  const std::int64_t height = small ? 128 : 800, width = small ? 160 : 1333;
  std::mt19937 gen(2021);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<Level> levels;
  for (int p = 2; p <= 5; ++p) {
    const std::int64_t stride = std::int64_t(1) << p;
    const std::int64_t h = (height + stride - 1) / stride, w = (width + stride - 1) / stride;
    Level level{"P" + std::to_string(p), Dims{batch, channels, h, w}, {}, {}};
    const auto n = static_cast<std::size_t>(level.shape.product());
    level.teacher.resize(n);
    level.student.resize(n);
    for (std::int64_t b = 0; b < batch; ++b) {
      float cy[3], cx[3], radius[3];
      for (int o = 0; o < 3; ++o) cy[o] = unit(gen) * h, cx[o] = unit(gen) * w, radius[o] = 1.0f + unit(gen) * h / 6;
      for (std::int64_t c = 0; c < channels; ++c) {
        const float gain = 0.5f + unit(gen);
        for (std::int64_t y = 0; y < h; ++y)
          for (std::int64_t x = 0; x < w; ++x) {
            float v = 0.1f * noise(gen);
            for (int o = 0; o < 3; ++o) {
              const float dy = (y - cy[o]) / radius[o], dx = (x - cx[o]) / radius[o];
              v += gain * std::exp(-0.5f * (dy * dy + dx * dx));
            }
            const std::size_t i = static_cast<std::size_t>(((b * channels + c) * h + y) * w + x);
            level.teacher[i] = v;
            level.student[i] = 0.8f * v + 0.2f * noise(gen);
          }
      }
    }
    levels.push_back(std::move(level));
  }
  return levels;
}

/// Host or device memory for one run of the table; freed with the arena.
class Arena {
 public:
  explicit Arena(kdloss::Device device) : device_(device) {}
  ~Arena() {
    for (float* p : blocks_) {
#if KDLOSS_CUDA_ENABLED
      if (device_.is_cuda()) {
        cudaFree(p);
        continue;
      }
#endif
      delete[] p;
    }
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  kdloss::Device device() const { return device_; }
  float* alloc(std::size_t n, const float* init = nullptr) {
    float* p = nullptr;
#if KDLOSS_CUDA_ENABLED
    if (device_.is_cuda()) {
      cudaMalloc(&p, std::max<std::size_t>(n, 64) * sizeof(float));
      if (init) cudaMemcpy(p, init, n * sizeof(float), cudaMemcpyHostToDevice);
      else cudaMemset(p, 0, n * sizeof(float));
      blocks_.push_back(p);
      return p;
    }
#endif
    p = new float[std::max<std::size_t>(n, 64)]();
    if (init) std::copy(init, init + n, p);
    blocks_.push_back(p);
    return p;
  }
  std::vector<float> read(const float* p, std::size_t n) const {
    std::vector<float> host(n);
#if KDLOSS_CUDA_ENABLED
    if (device_.is_cuda()) {
      cudaMemcpy(host.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost);
      return host;
    }
#endif
    std::copy(p, p + n, host.data());
    return host;
  }
  View<float> view(float* p, const Dims& shape) const {
    return View<float>(p, shape, kdloss::contiguous_strides(shape), device_);
  }
  kdloss::Exec exec(std::size_t workspace_bytes, kdloss::Stream stream) {
    // Workspace in floats from the same arena: 256-byte aligned by cudaMalloc / rounded on the host.
    if (workspace_bytes == 0) return {kdloss::Workspace{}, stream};
    if (device_.is_host()) return {kdloss::Workspace{}, stream};  // the host call allocates its own
    float* p = alloc(workspace_bytes / sizeof(float) + 1);
    return {kdloss::Workspace{p, workspace_bytes}, stream};
  }

 private:
  kdloss::Device device_;
  std::vector<float*> blocks_;
};

/// A pyramid on one device: student and teacher of every level.
struct DevicePyramid {
  std::vector<View<const float>> student, teacher;
  std::vector<Dims> shape;
};

DevicePyramid upload(const std::vector<Level>& levels, Arena& arena) {
  DevicePyramid p;
  for (const auto& level : levels) {
    const auto n = level.student.size();
    p.student.push_back(arena.view(arena.alloc(n, level.student.data()), level.shape));
    p.teacher.push_back(arena.view(arena.alloc(n, level.teacher.data()), level.shape));
    p.shape.push_back(level.shape);
  }
  return p;
}

/// One row of the table: prepare buffers, then run the fused value + gradient call(s) over the
/// whole pyramid. `value` reads the loss back; `grad_norm` is the L2 norm over every gradient output.
class LossCase {
 public:
  virtual ~LossCase() = default;
  virtual const char* name() const = 0;
  virtual void prepare(const DevicePyramid& p, Arena& arena, kdloss::Stream stream) = 0;
  virtual void run() = 0;
  virtual double value(const Arena& arena) const {
    double v = 0;
    for (const auto& o : outs_) v += arena.read(o, 1)[0];
    return v;
  }
  double grad_norm(const Arena& arena) const {
    double acc = 0;
    for (const auto& g : grads_)
      for (float x : arena.read(g.data, static_cast<std::size_t>(g.numel()))) acc += double(x) * x;
    return std::sqrt(acc);
  }

 protected:
  std::vector<float*> outs_;
  std::vector<View<float>> grads_;
};

/// A loss evaluated level by level and summed: mse, l1, smooth-L1, distance, KL.
class PerLevelCase : public LossCase {
 public:
  using Call = std::function<void(View<const float>, View<const float>, View<float>, View<float>, const kdloss::Exec&)>;
  using Query = std::function<std::size_t(View<const float>)>;
  /// `first`: the first level the loss runs on (the full-size demo skips P2 for the O(N^2) relation).
  PerLevelCase(const char* name, Query query, Call call, std::size_t first = 0)
      : name_(name), query_(query), call_(call), first_(first) {}
  const char* name() const override { return name_; }
  void prepare(const DevicePyramid& p, Arena& arena, kdloss::Stream stream) override {
    p_ = p;
    p_.student.erase(p_.student.begin(), p_.student.begin() + static_cast<std::ptrdiff_t>(first_));
    p_.teacher.erase(p_.teacher.begin(), p_.teacher.begin() + static_cast<std::ptrdiff_t>(first_));
    p_.shape.erase(p_.shape.begin(), p_.shape.begin() + static_cast<std::ptrdiff_t>(first_));
    std::size_t need = 0;
    for (std::size_t l = 0; l < p_.student.size(); ++l) {
      outs_.push_back(arena.alloc(1));
      grads_.push_back(arena.view(arena.alloc(static_cast<std::size_t>(p_.shape[l].product())), p_.shape[l]));
      need = std::max(need, query_(p_.student[l]));
    }
    exec_ = arena.exec(need, stream);  // one workspace serves every level
  }
  void run() override {
    for (std::size_t l = 0; l < p_.student.size(); ++l)
      call_(p_.student[l], p_.teacher[l], View<float>(outs_[l], {}, {}, grads_[l].device), grads_[l], exec_);
  }

 private:
  const char* name_;
  Query query_;
  Call call_;
  std::size_t first_ = 0;
  DevicePyramid p_;
  kdloss::Exec exec_;
};

/// FBKD attention-guided total over the pyramid, one call. The code-form presets need the
/// student's adapted pooled features: here the adapters are identities (C_hat = mean_hw(S),
/// S_hat = mean_c(S)), computed once with kdloss::ops.
class FbkdCase : public LossCase {
 public:
  FbkdCase(const char* name, kdloss::fbkd::Config config) : name_(name), config_(config) {}
  const char* name() const override { return name_; }
  void prepare(const DevicePyramid& p, Arena& arena, kdloss::Stream stream) override {
    const bool code = config_.transfer_form == kdloss::fbkd::TransferForm::code;
    for (std::size_t l = 0; l < p.student.size(); ++l) {
      const Dims& sh = p.shape[l];
      // No adapter (A = S): grad_student receives the whole gradient wrt S.
      kdloss::fbkd::Level<float> level{p.student[l], p.teacher[l]};
      level.grad_student = arena.view(arena.alloc(static_cast<std::size_t>(sh.product())), sh);
      grads_.push_back(level.grad_student);
      if (code) {
        const Dims channel{sh[0], sh[1]}, spatial{sh[0], 1, sh[2], sh[3]};
        auto c_hat = arena.view(arena.alloc(static_cast<std::size_t>(channel.product())), channel);
        auto s_hat = arena.view(arena.alloc(static_cast<std::size_t>(spatial.product())), spatial);
        kdloss::ops::mean_over_positions(p.student[l], c_hat, {}, {kdloss::Workspace{}, stream});
        kdloss::ops::mean_over_channels(p.student[l], s_hat, {}, {kdloss::Workspace{}, stream});
        level.student_channel = c_hat;
        level.student_spatial = s_hat;
        level.grad_student_channel = arena.view(arena.alloc(static_cast<std::size_t>(channel.product())), channel);
        level.grad_student_spatial = arena.view(arena.alloc(static_cast<std::size_t>(spatial.product())), spatial);
        grads_.push_back(level.grad_student_channel);
        grads_.push_back(level.grad_student_spatial);
      }
      levels_.push_back(level);
    }
    outs_.push_back(arena.alloc(1));
    out_ = View<float>(outs_[0], {}, {}, arena.device());
    exec_ = arena.exec(kdloss::fbkd::total_loss_workspace_bytes(levels_, config_), stream);
  }
  void run() override { kdloss::fbkd::total_loss_forward_backward(levels_, out_, config_, exec_); }

 private:
  const char* name_;
  kdloss::fbkd::Config config_;
  std::vector<kdloss::fbkd::Level<float>> levels_;
  View<float> out_;
  kdloss::Exec exec_;
};

/// SSIM structural distillation over the pyramid (thesis eq. 1: per-level mean, summed), one call.
class SsimPyramidCase : public LossCase {
 public:
  SsimPyramidCase(const char* name, kdloss::SsimOptions options) : name_(name), options_(options) {}
  const char* name() const override { return name_; }
  void prepare(const DevicePyramid& p, Arena& arena, kdloss::Stream stream) override {
    students_ = p.student;
    teachers_ = p.teacher;
    for (const auto& sh : p.shape) grads_.push_back(arena.view(arena.alloc(static_cast<std::size_t>(sh.product())), sh));
    outs_.push_back(arena.alloc(1));
    out_ = View<float>(outs_[0], {}, {}, arena.device());
    exec_ = arena.exec(kdloss::ssim_pyramid_loss_workspace_bytes(students_, options_), stream);
  }
  void run() override {
    kdloss::ssim_pyramid_loss_forward_backward(students_, teachers_, out_, grads_, options_, exec_);
  }

 private:
  const char* name_;
  kdloss::SsimOptions options_;
  std::vector<View<const float>> students_, teachers_;
  View<float> out_;
  kdloss::Exec exec_;
};

/// Deterministic learnable parameters (a trained block's scale, not its zero initialisation), one
/// buffer each in the arena; `grads` collects the gradient buffers a case reports.
class Params {
 public:
  Params(Arena& arena, unsigned seed) : arena_(arena), gen_(seed) {}
  View<const float> weight(const Dims& shape, float scale, float offset = 0.0f) {
    std::normal_distribution<float> n(0.0f, scale);
    std::vector<float> v(static_cast<std::size_t>(shape.product()));
    for (float& x : v) x = offset + n(gen_);
    return arena_.view(arena_.alloc(v.size(), v.data()), shape);
  }
  View<float> grad(const Dims& shape, std::vector<View<float>>& grads) {
    grads.push_back(arena_.view(arena_.alloc(static_cast<std::size_t>(shape.product())), shape));
    return grads.back();
  }

 private:
  Arena& arena_;
  std::mt19937 gen_;
};

/// The FBKD non-local block's parameters and gradients (ops::NonLocalArgs without x, z and grad_z): g, θ, φ
/// (m x C, bias), W = conv_out (C x m, bias), BN (γ near 1, β) as the official NonLocalBlockND has them.
void non_local_params(kdloss::ops::NonLocalArgs<float>& b, std::int64_t c, std::int64_t m, Params& p,
                      std::vector<View<float>>& grads) {
  const float w_in = 1.0f / std::sqrt(float(c)), w_mid = 1.0f / std::sqrt(float(m));
  b.g_weight = p.weight({m, c}, w_in), b.g_bias = p.weight({m}, 0.1f);
  b.theta_weight = p.weight({m, c}, w_in), b.theta_bias = p.weight({m}, 0.1f);
  b.phi_weight = p.weight({m, c}, w_in), b.phi_bias = p.weight({m}, 0.1f);
  b.conv_out_weight = p.weight({c, m}, w_mid), b.conv_out_bias = p.weight({c}, 0.1f);
  b.bn_weight = p.weight({c}, 0.1f, 1.0f), b.bn_bias = p.weight({c}, 0.1f);
  b.grad_g_weight = p.grad({m, c}, grads), b.grad_g_bias = p.grad({m}, grads);
  b.grad_theta_weight = p.grad({m, c}, grads), b.grad_theta_bias = p.grad({m}, grads);
  b.grad_phi_weight = p.grad({m, c}, grads), b.grad_phi_bias = p.grad({m}, grads);
  b.grad_conv_out_weight = p.grad({c, m}, grads), b.grad_conv_out_bias = p.grad({c}, grads);
  b.grad_bn_weight = p.grad({c}, grads), b.grad_bn_bias = p.grad({c}, grads);
}

/// The DRKD GloRe unit's ten parameters and their gradients (num_mid = m).
void glore_params(kdloss::drkd::GloreUnitParams<float>& u, kdloss::drkd::GloreUnitGrads<float>& g, std::int64_t c,
                  std::int64_t m, Params& p, std::vector<View<float>>& grads) {
  const std::int64_t s = 2 * m;
  const float w_in = 1.0f / std::sqrt(float(c)), w_mid = 1.0f / std::sqrt(float(m)), w_s = 1.0f / std::sqrt(float(s));
  u.state_weight = p.weight({s, c}, w_in), u.state_bias = p.weight({s}, 0.1f);
  u.proj_weight = p.weight({m, c}, w_in), u.proj_bias = p.weight({m}, 0.1f);
  u.gcn_conv1_weight = p.weight({m, m}, w_mid), u.gcn_conv1_bias = p.weight({m}, 0.1f);
  u.gcn_conv2_weight = p.weight({s, s}, w_s), u.extend_weight = p.weight({c, s}, w_s);
  u.bn_weight = p.weight({c}, 0.1f, 1.0f), u.bn_bias = p.weight({c}, 0.1f);
  g.state_weight = p.grad({s, c}, grads), g.state_bias = p.grad({s}, grads);
  g.proj_weight = p.grad({m, c}, grads), g.proj_bias = p.grad({m}, grads);
  g.gcn_conv1_weight = p.grad({m, m}, grads), g.gcn_conv1_bias = p.grad({m}, grads);
  g.gcn_conv2_weight = p.grad({s, s}, grads), g.extend_weight = p.grad({c, s}, grads);
  g.bn_weight = p.grad({c}, grads), g.bn_bias = p.grad({c}, grads);
}

/// Levels [first, end) of a pyramid.
std::vector<std::size_t> level_range(const DevicePyramid& p, std::size_t first) {
  std::vector<std::size_t> v;
  for (std::size_t l = first; l < p.student.size(); ++l) v.push_back(l);
  return v;
}

/// A relation loss with a learnable block on each side and an adapter, level by level (FBKD L_NLD, DRKD
/// L_PR): `setup` fills level l's blocks and options; the case adds S, T, the adapter 1x1 conv, the value
/// and the gradients to S and the adapter (the blocks' gradients are set up by `setup`).
template <class Args>
class AdaptedRelationCase : public LossCase {
 public:
  using Setup = std::function<void(Args&, std::size_t, std::int64_t, Params&, std::vector<View<float>>&)>;
  using Query = std::function<std::size_t(const Args&)>;
  using Call = std::function<void(const Args&, const kdloss::Exec&)>;
  AdaptedRelationCase(const char* name, std::size_t first, unsigned seed, Setup setup, Query query, Call call)
      : name_(name), first_(first), seed_(seed), setup_(setup), query_(query), call_(call) {}
  const char* name() const override { return name_; }
  void prepare(const DevicePyramid& p, Arena& arena, kdloss::Stream stream) override {
    Params params(arena, seed_);
    std::size_t need = 0;
    for (std::size_t l : level_range(p, first_)) {
      const Dims& sh = p.shape[l];
      const std::int64_t c = sh[1];
      Args a;
      a.student = p.student[l];
      a.teacher = p.teacher[l];
      setup_(a, l, c, params, grads_);
      a.adapt_weight = params.weight({c, c}, 1.0f / std::sqrt(float(c)));
      a.adapt_bias = params.weight({c}, 0.1f);
      a.grad_adapt_weight = params.grad({c, c}, grads_);
      a.grad_adapt_bias = params.grad({c}, grads_);
      a.grad_student = params.grad(sh, grads_);
      outs_.push_back(arena.alloc(1));
      a.out = View<float>(outs_.back(), {}, {}, arena.device());
      need = std::max(need, query_(a));
      levels_.push_back(a);
    }
    exec_ = arena.exec(need, stream);
  }
  void run() override {
    for (const auto& a : levels_) call_(a, exec_);
  }

 private:
  const char* name_;
  std::size_t first_;
  unsigned seed_;
  Setup setup_;
  Query query_;
  Call call_;
  std::vector<Args> levels_;
  kdloss::Exec exec_;
};

/// FBKD L_NLD = w_n ||Adapt(NL_S(S)) - NL_T(T)||_F per level (official NonLocalBlockND settings: dot product,
/// pool 8, 4, 2, 2, m = C/4, C/4, C/2, C/2), gradients to S, both blocks and the adapter.
std::unique_ptr<LossCase> non_local_loss_case() {
  using A = kdloss::fbkd::NonLocalLossArgs<float>;
  return std::make_unique<AdaptedRelationCase<A>>(
      "fbkd L_NLD (official blocks, 7e-5)", 0, 5,
      [](A& a, std::size_t l, std::int64_t c, Params& params, std::vector<View<float>>& grads) {
        const std::int64_t m = l < 2 ? c / 4 : c / 2;
        non_local_params(a.student_block, c, m, params, grads);
        non_local_params(a.teacher_block, c, m, params, grads);
        a.options.weight = 7e-5;
        a.options.block = kdloss::ops::non_local_fbkd_options(static_cast<int>(l));
      },
      [](const A& a) { return kdloss::fbkd::non_local_loss_workspace_bytes(a); },
      [](const A& a, const kdloss::Exec& ex) { kdloss::fbkd::non_local_loss_forward_backward(a, ex); });
}

/// DRKD L_PR = 1e-3 ||Adapt(GloRe_S(S)) - GloRe_T(T)||_F per level (num_mid C/4 on the first two levels,
/// C after: the code's 64, 64, 256, 256 at C = 256), gradients to S, both units and the adapter.
std::unique_ptr<LossCase> glore_loss_case(std::size_t first) {
  using A = kdloss::drkd::GloreRelationLossArgs<float>;
  return std::make_unique<AdaptedRelationCase<A>>(
      first ? "drkd L_PR GloRe relation (P3-P5)" : "drkd L_PR GloRe relation", first, 6,
      [](A& a, std::size_t l, std::int64_t c, Params& params, std::vector<View<float>>& grads) {
        const std::int64_t m = l < 2 ? c / 4 : c;
        glore_params(a.student_glore, a.grad_student_glore, c, m, params, grads);
        glore_params(a.teacher_glore, a.grad_teacher_glore, c, m, params, grads);
      },
      [](const A& a) { return kdloss::drkd::glore_relation_loss_workspace_bytes(a); },
      [](const A& a, const kdloss::Exec& ex) { kdloss::drkd::glore_relation_loss_forward_backward(a, ex); });
}

/// DRKD's instance relation as the official code runs it, from the maps and the ground-truth boxes (code form:
/// ObjectRelation with its relation filter, L_IR + L_fg; levels 0 and 1, 3 x 3 RoIs at W_l / (4 W_0), 25 boxes
/// per image): drkd::instance_relation_maps_loss per level, gradients to S, both relations, the filters'
/// inputs' owners and both adapters.
class InstanceMapsCase : public LossCase {
 public:
  const char* name() const override { return "drkd instance relation (maps+boxes)"; }
  void prepare(const DevicePyramid& p, Arena& arena, kdloss::Stream stream) override {
    Params params(arena, 8);
    const std::int64_t B = p.shape[0][0], n = B * kBoxesPerImage;
    const float image_w = float(4 * p.shape[0][3]), image_h = float(4 * p.shape[0][2]);
    std::mt19937 gen(3);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    std::vector<float> boxes;
    for (std::int64_t k = 0; k < n; ++k) {  // boxes of 16 to 256 pixels inside the image
      const float x1 = u(gen) * (image_w - 16.0f), y1 = u(gen) * (image_h - 16.0f);
      boxes.insert(boxes.end(), {x1, y1, std::min(image_w, x1 + 16.0f + u(gen) * 240.0f),
                                 std::min(image_h, y1 + 16.0f + u(gen) * 240.0f)});
    }
    const View<const float> box_view = arena.view(arena.alloc(boxes.size(), boxes.data()), {n, 4});
    for (std::int64_t b = 0; b <= B; ++b) offsets_.push_back(b * kBoxesPerImage);
    std::size_t need = 0;
    for (std::size_t l = 0; l < std::min<std::size_t>(2, p.student.size()); ++l) {
      const Dims& sh = p.shape[l];
      const std::int64_t c = sh[1], d = c * 9, m = d / 2;
      kdloss::drkd::InstanceRelationMapsArgs<float> a;
      a.student_map = p.student[l];
      a.teacher_map = p.teacher[l];
      a.boxes = box_view;
      a.offsets = kdloss::host_view<const std::int64_t>(offsets_.data(), {B + 1});
      const auto relation = [&](kdloss::drkd::ObjectRelationParams<float>& r, kdloss::drkd::ObjectRelationGrads<float>& g) {
        const float w_in = 1.0f / std::sqrt(float(d)), w_mid = 1.0f / std::sqrt(float(m));
        r.theta_weight = params.weight({m, d}, w_in), r.theta_bias = params.weight({m}, 0.1f);
        r.phi_weight = params.weight({m, d}, w_in), r.phi_bias = params.weight({m}, 0.1f);
        r.g_weight = params.weight({m, d}, w_in), r.g_bias = params.weight({m}, 0.1f);
        r.W_weight = params.weight({d, m}, w_mid), r.W_bias = params.weight({d}, 0.1f);
        g.theta_weight = params.grad({m, d}, grads_), g.phi_weight = params.grad({m, d}, grads_);
        g.g_weight = params.grad({m, d}, grads_), g.W_weight = params.grad({d, m}, grads_);
      };
      relation(a.code.student_relation, a.code.grad_student_relation);
      relation(a.code.teacher_relation, a.code.grad_teacher_relation);
      // the code's per-call random filter layers nn.Linear(D, n_b), packed over the images
      a.code.student_filter = {params.weight({n, d}, 1.0f / std::sqrt(float(d))), params.weight({n}, 0.02f)};
      a.code.teacher_filter = {params.weight({n, d}, 1.0f / std::sqrt(float(d))), params.weight({n}, 0.02f)};
      a.code.relation_adapt_weight = params.weight({c, c}, 1.0f / std::sqrt(float(c)));
      a.code.relation_adapt_bias = params.weight({c}, 0.1f);
      a.code.feature_adapt_weight = params.weight({c, c}, 1.0f / std::sqrt(float(c)));
      a.code.feature_adapt_bias = params.weight({c}, 0.1f);
      a.code.grad_relation_adapt_weight = params.grad({c, c}, grads_);
      a.code.grad_feature_adapt_weight = params.grad({c, c}, grads_);
      a.options.spatial_scale = double(sh[3]) / (4.0 * double(p.shape[0][3]));
      a.grad_student_map = params.grad(sh, grads_);
      outs_.push_back(arena.alloc(1));
      a.out = View<float>(outs_.back(), {}, {}, arena.device());
      need = std::max(need, kdloss::drkd::instance_relation_maps_loss_workspace_bytes(a));
      levels_.push_back(a);
    }
    exec_ = arena.exec(need, stream);
  }
  void run() override {
    for (const auto& a : levels_) kdloss::drkd::instance_relation_maps_loss_forward_backward(a, exec_);
  }

 private:
  static constexpr std::int64_t kBoxesPerImage = 25;
  std::vector<std::int64_t> offsets_;
  std::vector<kdloss::drkd::InstanceRelationMapsArgs<float>> levels_;
  kdloss::Exec exec_;
};

/// One block op on the student pyramid, forward + backward with every gradient (grad_z = the teacher map
/// as an arbitrary upstream gradient); value = the mean of z over the levels.
class BlockOpCase : public LossCase {
 public:
  BlockOpCase(bool glore, std::size_t first) : glore_(glore), first_(first) {}
  const char* name() const override {
    return glore_ ? (first_ ? "op glore (DRKD unit, P3-P5)" : "op glore (DRKD unit)") : "op non_local (FBKD block)";
  }
  void prepare(const DevicePyramid& p, Arena& arena, kdloss::Stream stream) override {
    Params params(arena, glore_ ? 8 : 7);
    std::size_t need = 0;
    for (std::size_t l : level_range(p, first_)) {
      const Dims& sh = p.shape[l];
      const std::int64_t c = sh[1];
      float* z = arena.alloc(static_cast<std::size_t>(sh.product()));
      zs_.push_back({z, sh.product()});
      if (glore_) {
        kdloss::ops::GloreArgs<float> a;
        kdloss::drkd::GloreUnitParams<float> u;
        kdloss::drkd::GloreUnitGrads<float> g;
        glore_params(u, g, c, l < 2 ? c / 4 : c, params, grads_);
        a.state_weight = u.state_weight, a.state_bias = u.state_bias, a.proj_weight = u.proj_weight;
        a.proj_bias = u.proj_bias, a.gcn_conv1_weight = u.gcn_conv1_weight, a.gcn_conv1_bias = u.gcn_conv1_bias;
        a.gcn_conv2_weight = u.gcn_conv2_weight, a.extend_weight = u.extend_weight;
        a.bn_weight = u.bn_weight, a.bn_bias = u.bn_bias;
        a.grad_state_weight = g.state_weight, a.grad_state_bias = g.state_bias, a.grad_proj_weight = g.proj_weight;
        a.grad_proj_bias = g.proj_bias, a.grad_gcn_conv1_weight = g.gcn_conv1_weight;
        a.grad_gcn_conv1_bias = g.gcn_conv1_bias, a.grad_gcn_conv2_weight = g.gcn_conv2_weight;
        a.grad_extend_weight = g.extend_weight, a.grad_bn_weight = g.bn_weight, a.grad_bn_bias = g.bn_bias;
        a.x = p.student[l];
        a.out = arena.view(z, sh);
        a.grad_out = p.teacher[l];
        a.grad_x = params.grad(sh, grads_);
        need = std::max(need, kdloss::ops::glore_workspace_bytes(a));
        glore_args_.push_back(a);
      } else {
        kdloss::ops::NonLocalArgs<float> a;
        non_local_params(a, c, l < 2 ? c / 4 : c / 2, params, grads_);
        a.x = p.student[l];
        a.z = arena.view(z, sh);
        a.grad_z = p.teacher[l];
        a.grad_x = params.grad(sh, grads_);
        a.options = kdloss::ops::non_local_fbkd_options(static_cast<int>(l));
        need = std::max(need, kdloss::ops::non_local_workspace_bytes(a));
        nl_args_.push_back(a);
      }
    }
    exec_ = arena.exec(need, stream);
  }
  void run() override {
    for (const auto& a : glore_args_) kdloss::ops::glore_forward_backward(a, exec_);
    for (const auto& a : nl_args_) kdloss::ops::non_local_forward_backward(a, exec_);
  }
  double value(const Arena& arena) const override {
    double sum = 0, count = 0;
    for (const auto& [z, n] : zs_)
      for (float v : arena.read(z, static_cast<std::size_t>(n))) sum += v, count += 1;
    return count ? sum / count : 0.0;
  }

 private:
  bool glore_;
  std::size_t first_;
  std::vector<std::pair<float*, std::int64_t>> zs_;
  std::vector<kdloss::ops::GloreArgs<float>> glore_args_;
  std::vector<kdloss::ops::NonLocalArgs<float>> nl_args_;
  kdloss::Exec exec_;
};

/// `full`: the full-size pyramid, where the O(N^2) seed relation and the GloRe unit skip P2 (minutes per call).
std::vector<std::unique_ptr<LossCase>> loss_cases(bool full) {
  using kdloss::Reduction;
  using V = View<const float>;
  using G = View<float>;
  std::vector<std::unique_ptr<LossCase>> cases;
    cases.push_back(std::make_unique<PerLevelCase>(
      "mse (mean)", [](V s) { return kdloss::mse_loss_workspace_bytes(s); },
      [](V s, V t, G out, G g, const kdloss::Exec& ex) { kdloss::mse_loss_forward_backward(s, t, out, g, {Reduction::mean}, ex); }));
  cases.push_back(std::make_unique<PerLevelCase>(
      "l1 (mean)", [](V s) { return kdloss::l1_loss_workspace_bytes(s); },
      [](V s, V t, G out, G g, const kdloss::Exec& ex) { kdloss::l1_loss_forward_backward(s, t, out, g, {Reduction::mean}, ex); }));
  cases.push_back(std::make_unique<PerLevelCase>(
      "smooth_l1 (beta 1, mean)", [](V s) { return kdloss::smooth_l1_loss_workspace_bytes(s); }, [](V s, V t, G out, G g, const kdloss::Exec& ex) {
        kdloss::smooth_l1_loss_forward_backward(s, t, out, g, {1.0, Reduction::mean}, ex);
      }));
  cases.push_back(std::make_unique<PerLevelCase>(
      "distance (torch.dist)", [](V s) { return kdloss::distance_loss_workspace_bytes(s); },
      [](V s, V t, G out, G g, const kdloss::Exec& ex) { kdloss::distance_loss_forward_backward(s, t, out, g, {}, ex); }));
  cases.push_back(std::make_unique<PerLevelCase>(
      "kl over channels (T=4, batchmean)", [](V s) { return kdloss::kl_div_loss_workspace_bytes(s, {4.0, 1}); },
      [](V s, V t, G out, G g, const kdloss::Exec& ex) {
        kdloss::kl_div_loss_forward_backward(s, t, out, g, {4.0, 1, Reduction::batchmean}, ex);
      }));
  cases.push_back(std::make_unique<PerLevelCase>(
      "ssim (kornia, window 11, mean)", [](V s) { return kdloss::ssim_loss_workspace_bytes(s); },
      [](V s, V t, G out, G g, const kdloss::Exec& ex) {
        kdloss::ssim_loss_forward_backward(s, t, out, g, kdloss::SsimOptions{}, Reduction::mean, ex);
      }));
  kdloss::SsimOptions thesis;
  thesis.normalize = true;  // nu: features mapped to [0, 1] per (b, c), so L = 1 fits
  cases.push_back(std::make_unique<SsimPyramidCase>("ssim pyramid (thesis eq. 1, nu)", thesis));
  kdloss::MsSsimL1Options mixture;
  mixture.ms_ssim.window_size = 5;  // FPN levels are too small for 11 over five scales
  cases.push_back(std::make_unique<PerLevelCase>(
      "0.15 l1 + 0.85 ms-ssim (window 5)",
      [mixture](V s) { return kdloss::ms_ssim_l1_loss_workspace_bytes(s, mixture); },
      [mixture](V s, V t, G out, G g, const kdloss::Exec& ex) {
        kdloss::ms_ssim_l1_loss_forward_backward(s, t, out, g, mixture, ex);
      }));
  cases.push_back(std::make_unique<FbkdCase>("fbkd total, code two-stage", kdloss::fbkd::Config::code_two_stage()));
  cases.push_back(std::make_unique<FbkdCase>("fbkd total, code one-stage", kdloss::fbkd::Config::code_one_stage()));
  cases.push_back(std::make_unique<FbkdCase>("fbkd total, paper two-stage", kdloss::fbkd::Config::paper_two_stage()));
  cases.push_back(non_local_loss_case());
  const std::size_t relation_first = full ? 1 : 0;  // P2 of 800x1333: N = 66,800
  cases.push_back(std::make_unique<PerLevelCase>(
      full ? "drkd seed pixel relation (P3-P5)" : "drkd seed pixel relation (mean)",
      [](V s) {
        kdloss::drkd::PixelRelationLossArgs<float> a;
        a.student = a.teacher = s;
        return kdloss::drkd::pixel_relation_loss_workspace_bytes(a);
      },
      [](V s, V t, G out, G g, const kdloss::Exec& ex) { kdloss::drkd::pixel_relation_loss_forward_backward(s, t, out, g, {}, ex); },
      relation_first));
  cases.push_back(glore_loss_case(relation_first));
  cases.push_back(std::make_unique<InstanceMapsCase>());
  cases.push_back(std::make_unique<BlockOpCase>(false, 0));
  cases.push_back(std::make_unique<BlockOpCase>(true, relation_first));
  return cases;
}

/// The median of the timed calls (the mean of the two middle ones for an even count).
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

void print_row(const char* loss, const char* device, double value, double grad_norm, double ms, std::size_t calls) {
  std::printf("| %-36s | %-7s | %14.7g | %12.6g | %9.2f | %5zu |\n", loss, device, value, grad_norm, ms, calls);
  std::fflush(stdout);  // a row as soon as it is known, also when the output is a pipe or a file
}

/// Timed calls stop once they have taken this long in all (at least one runs): at full size a few losses
/// take seconds per call, and five of each would keep the demo running for many minutes.
constexpr double kTimedBudgetMs = 3000;

/// Runs every case on `device`: one call to warm up (first touch of the buffers, thread start-up,
/// the GPU's lazy module load), then up to `calls` timed calls (fewer once they pass kTimedBudgetMs);
/// the time is their median (host clock, or CUDA events on a stream), so a slow first call or a noisy
/// neighbour does not set it.
void run_table(const std::vector<Level>& levels, kdloss::Device device, int calls, bool small) {
  Arena arena(device);
  kdloss::Stream stream;
#if KDLOSS_CUDA_ENABLED
  cudaStream_t cuda_stream = nullptr;
  if (device.is_cuda()) {
    cudaStreamCreate(&cuda_stream);
    stream = kdloss::Stream(cuda_stream);
  }
#endif
  const DevicePyramid pyramid = upload(levels, arena);
  for (auto& loss : loss_cases(!small)) {
    loss->prepare(pyramid, arena, stream);
    loss->run();  // warm-up
    std::vector<double> times;
    double spent_ms = 0;
    for (int call = 0; call < calls && (call == 0 || spent_ms < kTimedBudgetMs); ++call) {
      double ms = 0;
#if KDLOSS_CUDA_ENABLED
      if (device.is_cuda()) {
        cudaEvent_t start, stop;
        cudaEventCreate(&start);
        cudaEventCreate(&stop);
        cudaEventRecord(start, cuda_stream);
        loss->run();
        cudaEventRecord(stop, cuda_stream);
        cudaEventSynchronize(stop);
        float elapsed = 0;
        cudaEventElapsedTime(&elapsed, start, stop);
        ms = elapsed;
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
      }
#endif
      if (device.is_host()) {
        const auto start = std::chrono::steady_clock::now();
        loss->run();
        ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      }
      times.push_back(ms);
      spent_ms += ms;
    }
    const double ms = median(times);
    print_row(loss->name(), device.is_host() ? "cpu" : "cuda:0", loss->value(arena), loss->grad_norm(arena), ms,
              times.size());
  }
#if KDLOSS_CUDA_ENABLED
  if (cuda_stream) cudaStreamDestroy(cuda_stream);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  bool small = false;
  int calls = 5;  // timed calls per loss after one warm-up (at most; see kTimedBudgetMs); the table shows their median
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--small") == 0) {
      small = true;
    } else if (std::strcmp(argv[i], "--calls") == 0 && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
      calls = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--small] [--calls N]\n", argv[0]);
      return 2;
    }
  }
  std::printf("kdloss %d.%d.%d demo: synthetic FPN pyramid, batch 2, %s; time = median of up to %d warm calls\n",
              KDLOSS_VERSION_MAJOR, KDLOSS_VERSION_MINOR, KDLOSS_VERSION_PATCH,
              small ? "C = 32, P2-P5 of a 128x160 input" : "C = 256, P2-P5 of an 800x1333 input", calls);
  const auto levels = make_pyramid(small);
  for (const auto& level : levels) std::printf("  %s %s\n", level.name.c_str(), level.shape.str().c_str());
  std::printf("\nEach loss: value summed over levels; |grad| = L2 norm over every gradient output of the call\n"
              "(d loss / d student; for FBKD also d/dC_hat, d/dS_hat or the paper L_AT's d/dS; for L_NLD, L_PR and\n"
              "the block ops also every parameter of the blocks and adapters; an op's value is the mean of its output);\n"
              "time = value + gradient (fused calls) over all levels, the median of the timed calls after one warm-up:\n"
              "%d, or fewer once they pass %.0f s in all (column calls).\n\n",
              calls, kTimedBudgetMs / 1e3);
  std::printf("| %-36s | %-7s | %14s | %12s | %9s | %5s |\n", "loss", "device", "value", "|grad|", "time (ms)",
              "calls");
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(38, '-').c_str(), std::string(9, '-').c_str(),
              std::string(16, '-').c_str(), std::string(14, '-').c_str(), std::string(11, '-').c_str(),
              std::string(7, '-').c_str());
#if !KDLOSS_DEMO_GPU_ROWS_ONLY
  run_table(levels, kdloss::Device::host(), calls, small);
#endif
#if KDLOSS_CUDA_ENABLED
  int devices = 0;
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) {
    run_table(levels, kdloss::Device::cuda(0), calls, small);
  } else {
    cudaGetLastError();
    std::printf("\n(no GPU present: GPU rows skipped)\n");
  }
#else
  std::printf("\n(GPU rows: kdloss_quickstart_cuda, where CUDA is enabled)\n");
#endif
  return 0;
}
