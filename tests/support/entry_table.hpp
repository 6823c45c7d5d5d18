// One table of every host entry point, each run in forward_backward (or forward, then backward) on
// inputs large enough to cross backend/cpu/parallel.hpp's kParallelThreshold (2^15 elements), so
// that the reliability tests (tests/core/test_determinism.cpp: thread counts; test_input_edge_cases.cpp:
// misaligned storage, gradient outputs that alias an input) run over all of them.
//
// To add an entry point: append a row to entries<T>() below. A row allocates its views from the Ctx
// (ctx.in: seeded random input; ctx.out: an output; ctx.grad: a gradient output), then makes the call
// inside ctx.call(...). Name in `alias` the gradient argument its first ctx.grad() is passed as and the
// input argument its first ctx.in() is passed as: the aliasing test hands the call that gradient over
// the input's memory and expects an error naming both; it then lays the same gradient over each later
// input in turn (the teacher, weights, an upstream gradient) and expects an error naming the gradient. A row that is not bitwise deterministic across
// thread counts says so in `nondeterministic` (documented on its docs page, with the measured spread).
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kdloss/kdloss.hpp"

namespace kdloss_test::table {

using kdloss::Dims;
using kdloss::Mode;
using kdloss::View;

/// The buffers of one call. Inputs hold seeded random values, outputs a sentinel byte pattern. Every
/// buffer starts `shift` elements past a 64-byte boundary (shift 1: not 16-byte aligned).
class Ctx {
 public:
  /// In aliasing mode the first gradient output lies over input number `alias_input` (in ctx.in() order)
  /// when that input is large enough.
  explicit Ctx(int shift = 0, bool alias_first_grad = false, int alias_input = 0)
      : shift_(shift), alias_(alias_first_grad), alias_input_(alias_input) {}

  /// A contiguous input of `shape` with values uniform in [lo, hi) from `seed`.
  template <class T>
  View<const T> in(const Dims& shape, std::uint32_t seed, double lo = -1.0, double hi = 1.0) {
    T* p = alloc<T>(shape.product());
    std::mt19937 gen(seed);
    std::uniform_real_distribution<double> dist(lo, hi);
    for (std::int64_t i = 0; i < shape.product(); ++i) p[i] = static_cast<T>(dist(gen));
    if (inputs_seen_++ == alias_input_) alias_in_ = p, alias_in_bytes_ = static_cast<std::size_t>(shape.product()) * sizeof(T);
    return kdloss::host_view<const T>(p, shape);
  }
  /// A contiguous output of `shape` (rank 0: a scalar).
  template <class T>
  View<T> out(const Dims& shape) {
    return kdloss::host_view<T>(alloc<T>(shape.product()), shape);
  }
  /// A gradient output; in aliasing mode the first one lies over the chosen input's memory.
  template <class T>
  View<T> grad(const Dims& shape) {
    const std::size_t bytes = static_cast<std::size_t>(shape.product()) * sizeof(T);
    if (alias_ && !aliased_ && !grad_seen_ && alias_in_ && bytes <= alias_in_bytes_) {
      aliased_ = true;
      grad_seen_ = true;
      return kdloss::host_view<T>(static_cast<T*>(alias_in_), shape);
    }
    grad_seen_ = true;
    return out<T>(shape);
  }
  /// Runs the call. In aliasing mode it must throw kdloss::Error; the message is kept, and every
  /// buffer (inputs included) must hold the bytes it held before the call.
  template <class F>
  void call(F&& f) {
    if (!alias_) {
      f();
      return;
    }
    const auto before = bytes();
    try {
      f();
    } catch (const kdloss::Error& e) {
      error_ = e.what();
    }
    untouched_ = bytes() == before;
  }

  /// Every buffer's bytes, in allocation order (inputs included: an in-place call shows there).
  std::vector<unsigned char> bytes() const {
    std::vector<unsigned char> all;
    for (const auto& b : buffers_) all.insert(all.end(), b.data, b.data + b.bytes);
    return all;
  }
  bool aliased() const { return aliased_; }
  /// How many inputs the call allocated (ctx.in() calls).
  int inputs_seen() const { return inputs_seen_; }
  const std::string& error() const { return error_; }
  bool untouched() const { return untouched_; }

 private:
  struct Buffer {
    std::unique_ptr<unsigned char[]> storage;
    unsigned char* data;
    std::size_t bytes;
  };
  template <class T>
  T* alloc(std::int64_t n) {
    const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(T);
    Buffer b;
    b.storage.reset(new unsigned char[bytes + 64 + 64]);
    auto base = reinterpret_cast<std::uintptr_t>(b.storage.get());
    base = (base + 63) / 64 * 64;
    b.data = reinterpret_cast<unsigned char*>(base) + static_cast<std::size_t>(shift_) * sizeof(T);
    b.bytes = bytes;
    std::memset(b.data, 0x7d, bytes);  // the sentinel (a float/double of about 2e37 / 1e296)
    buffers_.push_back(std::move(b));
    return reinterpret_cast<T*>(buffers_.back().data);
  }

  int shift_;
  bool alias_;
  int alias_input_;
  int inputs_seen_ = 0;
  bool aliased_ = false, untouched_ = true, grad_seen_ = false;
  void* alias_in_ = nullptr;
  std::size_t alias_in_bytes_ = 0;
  std::string error_;
  std::vector<Buffer> buffers_;
};

struct Entry {
  std::string name;
  std::function<void(Ctx&)> run;
  /// The gradient (or output) argument a first ctx.grad() is passed as, and the input argument the
  /// first ctx.in() is passed as: an aliasing error must name both. Empty: the call has no such pair.
  std::pair<std::string, std::string> alias;
  /// Not bitwise deterministic across thread counts: why, and the measured spread (empty: deterministic).
  std::string nondeterministic = {};
};

// The shapes: 2 x 16 x 40 x 32 = 40960 elements per feature, past kParallelThreshold = 32768.
inline const Dims kFeat{2, 16, 40, 32}, kMap{2, 40, 32}, kChan{2, 16}, kCoarse{2, 16, 20, 16};

template <class T, class Args, class Call>
void pointwise_row(Ctx& c, Call call, kdloss::Reduction r) {
  Args a;
  a.student = c.in<T>(kFeat, 1);
  a.teacher = c.in<T>(kFeat, 2);
  a.out = c.out<T>(r == kdloss::Reduction::none ? kFeat : Dims{});
  a.grad_student = c.grad<T>(kFeat);
  a.options.reduction = r;
  c.call([&] { call(a, Mode::forward_backward); });
}

/// One non-local block's parameters (C channels, m inter) and every parameter gradient, seeds from `seed`.
template <class T>
void non_local_params(Ctx& c, kdloss::ops::NonLocalArgs<T>& b, std::int64_t C, std::int64_t m, std::uint32_t& seed) {
  b.g_weight = c.in<T>({m, C}, seed++);
  b.g_bias = c.in<T>({m}, seed++);
  b.theta_weight = c.in<T>({m, C}, seed++);
  b.theta_bias = c.in<T>({m}, seed++);
  b.phi_weight = c.in<T>({m, C}, seed++);
  b.phi_bias = c.in<T>({m}, seed++);
  b.conv_out_weight = c.in<T>({C, m}, seed++);
  b.conv_out_bias = c.in<T>({C}, seed++);
  b.bn_weight = c.in<T>({C}, seed++, 0.5, 1.5);
  b.bn_bias = c.in<T>({C}, seed++);
  b.grad_g_weight = c.grad<T>({m, C});
  b.grad_g_bias = c.grad<T>({m});
  b.grad_theta_weight = c.grad<T>({m, C});
  b.grad_theta_bias = c.grad<T>({m});
  b.grad_phi_weight = c.grad<T>({m, C});
  b.grad_phi_bias = c.grad<T>({m});
  b.grad_conv_out_weight = c.grad<T>({C, m});
  b.grad_conv_out_bias = c.grad<T>({C});
  b.grad_bn_weight = c.grad<T>({C});
  b.grad_bn_bias = c.grad<T>({C});
}

template <class T>
std::vector<Entry> entries() {
  using namespace kdloss;
  const std::pair<std::string, std::string> gs{"grad_student", "student"};
  std::vector<Entry> e;
  // ---- feature losses
  e.push_back({"mse_loss mean", [](Ctx& c) {
                 pointwise_row<T, MseLossArgs<T>>(c, [](const auto& a, Mode m) { mse_loss(a, m); }, Reduction::mean);
               }, gs});
  e.push_back({"mse_loss none", [](Ctx& c) {
                 pointwise_row<T, MseLossArgs<T>>(c, [](const auto& a, Mode m) { mse_loss(a, m); }, Reduction::none);
               }, gs});
  e.push_back({"l1_loss sum", [](Ctx& c) {
                 pointwise_row<T, L1LossArgs<T>>(c, [](const auto& a, Mode m) { l1_loss(a, m); }, Reduction::sum);
               }, gs});
  e.push_back({"smooth_l1_loss mean", [](Ctx& c) {
                 pointwise_row<T, SmoothL1LossArgs<T>>(c, [](const auto& a, Mode m) { smooth_l1_loss(a, m); },
                                                       Reduction::mean);
               }, gs});
  e.push_back({"distance_loss", [](Ctx& c) {
                 DistanceLossArgs<T> a;
                 a.student = c.in<T>(kFeat, 1);
                 a.teacher = c.in<T>(kFeat, 2);
                 a.out = c.out<T>({});
                 a.grad_student = c.grad<T>(kFeat);
                 c.call([&] { distance_loss(a, Mode::forward_backward); });
               }, gs});
  for (int axis : {1, 3}) {
    e.push_back({"kl_div_loss class_axis " + std::to_string(axis), [axis](Ctx& c) {
                   KlDivLossArgs<T> a;
                   a.student_logits = c.in<T>(kFeat, 1, -4, 4);
                   a.teacher_logits = c.in<T>(kFeat, 2, -4, 4);
                   a.out = c.out<T>({});
                   a.grad_student = c.grad<T>(kFeat);
                   a.options.temperature = 2.0;
                   a.options.class_axis = axis;
                   c.call([&] { kl_div_loss(a, Mode::forward_backward); });
                 }, {"grad_student", "student_logits"}});
  }
  // ---- FBKD
  e.push_back({"fbkd::spatial_attention", [](Ctx& c) {
                 fbkd::SpatialAttentionArgs<T> a;
                 a.x = c.in<T>(kFeat, 1);
                 a.out = c.out<T>(kMap);
                 a.grad_out = c.in<T>(kMap, 3);
                 a.grad_x = c.grad<T>(kFeat);
                 c.call([&] { fbkd::spatial_attention(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  e.push_back({"fbkd::channel_attention", [](Ctx& c) {
                 fbkd::ChannelAttentionArgs<T> a;
                 a.x = c.in<T>(kFeat, 1);
                 a.out = c.out<T>(kChan);
                 a.grad_out = c.in<T>(kChan, 3);
                 a.grad_x = c.grad<T>(kFeat);
                 c.call([&] { fbkd::channel_attention(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  e.push_back({"fbkd::attention_masks", [](Ctx& c) {
                 fbkd::AttentionMasksArgs<T> a;
                 a.student = c.in<T>(kFeat, 1);
                 a.teacher = c.in<T>(kFeat, 2);
                 a.mask_spatial = c.out<T>(kMap);
                 a.mask_channel = c.out<T>(kChan);
                 a.options = {fbkd::MaskForm::paper, 0.1, 0.1};
                 c.call([&] { fbkd::attention_masks(a, Mode::forward); });
               }, {}});
  e.push_back({"fbkd::attention_transfer_loss", [](Ctx& c) {
                 fbkd::AttentionTransferLossArgs<T> a;
                 a.student = c.in<T>(kFeat, 1);
                 a.teacher = c.in<T>(kFeat, 2);
                 a.out = c.out<T>({});
                 a.grad_student = c.grad<T>(kFeat);
                 c.call([&] { fbkd::attention_transfer_loss(a, Mode::forward_backward); });
               }, gs});
  e.push_back({"fbkd::pooled_attention_transfer_loss", [](Ctx& c) {
                 fbkd::PooledAttentionTransferLossArgs<T> a;
                 a.student_channel = c.in<T>(kChan, 1);
                 a.student_spatial = c.in<T>({2, 1, 40, 32}, 2);
                 a.teacher = c.in<T>(kFeat, 3);
                 a.out = c.out<T>({});
                 a.grad_student_channel = c.grad<T>(kChan);
                 a.grad_student_spatial = c.grad<T>({2, 1, 40, 32});
                 c.call([&] { fbkd::pooled_attention_transfer_loss(a, Mode::forward_backward); });
               }, {"grad_student_channel", "student_channel"}});
  e.push_back({"fbkd::masked_feature_loss", [](Ctx& c) {
                 fbkd::MaskedFeatureLossArgs<T> a;
                 a.student_adapted = c.in<T>(kFeat, 1);
                 a.teacher = c.in<T>(kFeat, 2);
                 a.mask_spatial = c.in<T>(kMap, 3, 0, 1);
                 a.mask_channel = c.in<T>(kChan, 4, 0, 1);
                 a.out = c.out<T>({});
                 a.grad_student_adapted = c.grad<T>(kFeat);
                 c.call([&] { fbkd::masked_feature_loss(a, Mode::forward_backward); });
               }, {"grad_student_adapted", "student_adapted"}});
  e.push_back({"fbkd::total_loss paper, two levels", [](Ctx& c) {
                 fbkd::TotalLossArgs<T> a;
                 fbkd::Level<T> l0{c.in<T>(kFeat, 1), c.in<T>(kFeat, 2), c.in<T>(kFeat, 3)};
                 fbkd::Level<T> l1{c.in<T>(kCoarse, 4), c.in<T>(kCoarse, 5), c.in<T>(kCoarse, 6)};
                 l0.grad_student = c.grad<T>(kFeat);
                 l0.grad_student_adapted = c.grad<T>(kFeat);
                 l1.grad_student = c.grad<T>(kCoarse);
                 l1.grad_student_adapted = c.grad<T>(kCoarse);
                 a.levels = {l0, l1};
                 a.out = c.out<T>({});
                 a.options = fbkd::Config::paper_two_stage();
                 c.call([&] { fbkd::total_loss(a, Mode::forward_backward); });
               }, {"levels[0].grad_student", "levels[0].student"}});
  e.push_back({"fbkd::total_loss code form", [](Ctx& c) {
                 fbkd::TotalLossArgs<T> a;
                 fbkd::Level<T> l0{c.in<T>(kFeat, 1), c.in<T>(kFeat, 2), c.in<T>(kFeat, 3)};
                 l0.student_channel = c.in<T>(kChan, 4);
                 l0.student_spatial = c.in<T>({2, 1, 40, 32}, 5);
                 l0.grad_student_adapted = c.grad<T>(kFeat);
                 l0.grad_student_channel = c.grad<T>(kChan);
                 l0.grad_student_spatial = c.grad<T>({2, 1, 40, 32});
                 a.levels = {l0};
                 a.out = c.out<T>({});
                 a.options = fbkd::Config::code_one_stage();
                 c.call([&] { fbkd::total_loss(a, Mode::forward_backward); });
               }, {"levels[0].grad_student_adapted", "levels[0].student"}});
  // ---- SSIM family
  e.push_back({"ssim_loss", [](Ctx& c) {
                 ssim::SsimLossArgs<T> a;
                 a.student = c.in<T>(kFeat, 1, 0, 1);
                 a.teacher = c.in<T>(kFeat, 2, 0, 1);
                 a.out = c.out<T>({});
                 a.grad_student = c.grad<T>(kFeat);
                 a.grad_teacher = c.grad<T>(kFeat);
                 c.call([&] { ssim::ssim_loss(a, Mode::forward_backward); });
               }, gs});
  e.push_back({"ssim_loss normalize, three components, valid", [](Ctx& c) {
                 ssim::SsimLossArgs<T> a;
                 a.student = c.in<T>(kFeat, 1);
                 a.teacher = c.in<T>(kFeat, 2);
                 a.out = c.out<T>({});
                 a.grad_student = c.grad<T>(kFeat);
                 a.options.normalize = true;
                 a.options.alpha = 0;
                 a.options.padding = ops::Padding::valid;
                 a.reduction = Reduction::sum;
                 c.call([&] { ssim::ssim_loss(a, Mode::forward_backward); });
               }, gs});
  e.push_back({"ssim_map", [](Ctx& c) {
                 ssim::SsimMapArgs<T> a;
                 a.student = c.in<T>(kFeat, 1, 0, 1);
                 a.teacher = c.in<T>(kFeat, 2, 0, 1);
                 a.grad_out = c.in<T>(kFeat, 3);
                 a.grad_student = c.grad<T>(kFeat);
                 a.grad_teacher = c.grad<T>(kFeat);
                 c.call([&] { ssim::ssim_map(a, Mode::backward); });
               }, gs});
  e.push_back({"ssim_pyramid_loss", [](Ctx& c) {
                 ssim::SsimPyramidLossArgs<T> a;
                 a.students = {c.in<T>(kFeat, 1, 0, 1), c.in<T>(kCoarse, 2, 0, 1)};
                 a.teachers = {c.in<T>(kFeat, 3, 0, 1), c.in<T>(kCoarse, 4, 0, 1)};
                 a.out = c.out<T>({});
                 a.grad_students = {c.grad<T>(kFeat), c.grad<T>(kCoarse)};
                 c.call([&] { ssim::ssim_pyramid_loss(a, Mode::forward_backward); });
               }, {"grad_students[0]", "students[0]"}});
  e.push_back({"ssim_index", [](Ctx& c) {
                 ssim::SsimIndexArgs<T> a;
                 a.student = c.in<T>(kFeat, 1, 0, 1);
                 a.teacher = c.in<T>(kFeat, 2, 0, 1);
                 a.out = c.out<T>({});
                 a.grad_student = c.grad<T>(kFeat);
                 a.grad_teacher = c.grad<T>(kFeat);
                 a.options.data_range = 1.0;
                 c.call([&] { ssim::ssim_index(a, Mode::forward_backward); });
               }, gs});
  e.push_back({"ms_ssim", [](Ctx& c) {
                 const Dims shape{2, 4, 64, 80};
                 ssim::MsSsimArgs<T> a;
                 a.student = c.in<T>(shape, 1, 0, 1);
                 a.teacher = c.in<T>(shape, 2, 0, 1);
                 a.out = c.out<T>({});
                 a.grad_student = c.grad<T>(shape);
                 a.grad_teacher = c.grad<T>(shape);
                 a.options.data_range = 1.0;
                 a.options.window_size = 7;
                 a.options.weights = {0.3, 0.3, 0.4};
                 c.call([&] { ssim::ms_ssim(a, Mode::forward_backward); });
               }, gs});
  e.push_back({"ms_ssim_l1_loss", [](Ctx& c) {
                 const Dims shape{2, 4, 64, 80};
                 ssim::MsSsimL1LossArgs<T> a;
                 a.student = c.in<T>(shape, 1, 0, 1);
                 a.teacher = c.in<T>(shape, 2, 0, 1);
                 a.out = c.out<T>({});
                 a.grad_student = c.grad<T>(shape);
                 a.options.ms_ssim.window_size = 7;
                 a.options.ms_ssim.weights = {0.3, 0.3, 0.4};
                 c.call([&] { ssim::ms_ssim_l1_loss(a, Mode::forward_backward); });
               }, gs});
  // ---- ops
  for (int axis : {1, 3}) {
    e.push_back({"ops::softmax axis " + std::to_string(axis), [axis](Ctx& c) {
                   ops::SoftmaxArgs<T> a;
                   a.x = c.in<T>(kFeat, 1, -4, 4);
                   a.axis = axis;
                   a.out = c.out<T>(kFeat);
                   a.grad_out = c.in<T>(kFeat, 2);
                   a.grad_x = c.grad<T>(kFeat);
                   c.call([&] { ops::softmax(a, Mode::forward_backward); });
                 }, {"grad_x", "x"}});
    e.push_back({"ops::log_softmax axis " + std::to_string(axis), [axis](Ctx& c) {
                   ops::LogSoftmaxArgs<T> a;
                   a.x = c.in<T>(kFeat, 1, -4, 4);
                   a.axis = axis;
                   a.out = c.out<T>(kFeat);
                   a.grad_out = c.in<T>(kFeat, 2);
                   a.grad_x = c.grad<T>(kFeat);
                   c.call([&] { ops::log_softmax(a, Mode::forward_backward); });
                 }, {"grad_x", "x"}});
  }
  for (bool absolute : {false, true}) {
    const std::string abs = absolute ? " absolute" : "";
    e.push_back({"ops::mean_over_channels" + abs, [absolute](Ctx& c) {
                   ops::MeanOverChannelsArgs<T> a;
                   a.x = c.in<T>(kFeat, 1);
                   a.out = c.out<T>({2, 1, 40, 32});
                   a.grad_out = c.in<T>({2, 1, 40, 32}, 2);
                   a.grad_x = c.grad<T>(kFeat);
                   a.options.absolute = absolute;
                   c.call([&] { ops::mean_over_channels(a, Mode::forward_backward); });
                 }, {"grad_x", "x"}});
    e.push_back({"ops::mean_over_positions" + abs, [absolute](Ctx& c) {
                   ops::MeanOverPositionsArgs<T> a;
                   a.x = c.in<T>(kFeat, 1);
                   a.out = c.out<T>(kChan);
                   a.grad_out = c.in<T>(kChan, 2);
                   a.grad_x = c.grad<T>(kFeat);
                   a.options.absolute = absolute;
                   c.call([&] { ops::mean_over_positions(a, Mode::forward_backward); });
                 }, {"grad_x", "x"}});
  }
  e.push_back({"ops::gaussian_filter", [](Ctx& c) {
                 ops::GaussianFilterArgs<T> a;
                 a.x = c.in<T>(kFeat, 1);
                 a.out = c.out<T>(kFeat);
                 a.grad_out = c.in<T>(kFeat, 2);
                 a.grad_x = c.grad<T>(kFeat);
                 c.call([&] { ops::gaussian_filter(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  e.push_back({"ops::matmul", [](Ctx& c) {
                 ops::MatmulArgs<T> a;
                 a.a = c.in<T>({96, 256}, 1);
                 a.b = c.in<T>({256, 160}, 2);
                 a.c = c.grad<T>({96, 160});
                 c.call([&] { ops::matmul(a); });
               }, {"c", "a"}});
  e.push_back({"ops::matmul sum_batches, trans_b", [](Ctx& c) {
                 ops::MatmulArgs<T> a;
                 a.a = c.in<T>({4, 64, 128}, 1);
                 a.b = c.in<T>({4, 96, 128}, 2);
                 a.c = c.grad<T>({64, 96});
                 a.options.trans_b = true;
                 a.options.sum_batches = true;
                 c.call([&] { ops::matmul(a); });
               }, {"c", "a"}});
  e.push_back({"ops::linear 1x1 conv", [](Ctx& c) {
                 ops::LinearArgs<T> a;
                 a.x = c.in<T>({2, 64, 16, 20}, 1);
                 a.weight = c.in<T>({48, 64}, 2);
                 a.bias = c.in<T>({48}, 3);
                 a.y = c.out<T>({2, 48, 16, 20});
                 a.grad_y = c.in<T>({2, 48, 16, 20}, 4);
                 a.grad_x = c.grad<T>({2, 64, 16, 20});
                 a.grad_weight = c.grad<T>({48, 64});
                 a.grad_bias = c.grad<T>({48});
                 c.call([&] { ops::linear(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  // ---- issue 9 ops: max pooling, batch norm, relations
  e.push_back({"ops::max_pool2d stride 4, reserve", [](Ctx& c) {
                 ops::MaxPool2dArgs<T> a;
                 a.x = c.in<T>(kFeat, 1);
                 a.y = c.out<T>(kdloss::Dims{2, 16, 10, 8});
                 a.grad_y = c.in<T>(kdloss::Dims{2, 16, 10, 8}, 2);
                 a.grad_x = c.grad<T>(kFeat);
                 a.options.stride = 4;
                 std::vector<unsigned char> reserve(ops::max_pool2d_reserve_bytes(a) + 256);
                 void* aligned = reserve.data() + (256 - reinterpret_cast<std::uintptr_t>(reserve.data()) % 256) % 256;
                 a.reserve = kdloss::Reserve{aligned, ops::max_pool2d_reserve_bytes(a)};
                 c.call([&] { ops::max_pool2d(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  e.push_back({"ops::batch_norm training", [](Ctx& c) {
                 ops::BatchNormArgs<T> a;
                 a.x = c.in<T>(kFeat, 1);
                 a.weight = c.in<T>(kdloss::Dims{16}, 2);
                 a.bias = c.in<T>(kdloss::Dims{16}, 3);
                 a.y = c.out<T>(kFeat);
                 a.batch_mean = c.out<T>(kdloss::Dims{16});
                 a.batch_var = c.out<T>(kdloss::Dims{16});
                 a.grad_y = c.in<T>(kFeat, 4);
                 a.grad_x = c.grad<T>(kFeat);
                 a.grad_weight = c.grad<T>(kdloss::Dims{16});
                 a.grad_bias = c.grad<T>(kdloss::Dims{16});
                 c.call([&] { ops::batch_norm(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  e.push_back({"ops::dot_relation", [](Ctx& c) {
                 ops::DotRelationArgs<T> a;
                 a.theta = c.in<T>(kdloss::Dims{2, 1280, 16}, 1);
                 a.phi = c.in<T>(kdloss::Dims{2, 320, 16}, 2);
                 a.g = c.in<T>(kdloss::Dims{2, 320, 24}, 3);
                 a.y = c.out<T>(kdloss::Dims{2, 1280, 24});
                 a.grad_y = c.in<T>(kdloss::Dims{2, 1280, 24}, 4);
                 a.grad_theta = c.grad<T>(kdloss::Dims{2, 1280, 16});
                 a.grad_phi = c.grad<T>(kdloss::Dims{2, 320, 16});
                 a.grad_g = c.grad<T>(kdloss::Dims{2, 320, 24});
                 c.call([&] { ops::dot_relation(a, Mode::forward_backward); });
               }, {"grad_theta", "theta"}});
  e.push_back({"ops::concat_relation", [](Ctx& c) {
                 ops::ConcatRelationArgs<T> a;
                 a.theta = c.in<T>(kdloss::Dims{2, 1280, 16}, 1);
                 a.phi = c.in<T>(kdloss::Dims{2, 320, 16}, 2);
                 a.g = c.in<T>(kdloss::Dims{2, 320, 24}, 3);
                 a.weight = c.in<T>(kdloss::Dims{32}, 5);
                 a.y = c.out<T>(kdloss::Dims{2, 1280, 24});
                 a.grad_y = c.in<T>(kdloss::Dims{2, 1280, 24}, 4);
                 a.grad_theta = c.grad<T>(kdloss::Dims{2, 1280, 16});
                 a.grad_phi = c.grad<T>(kdloss::Dims{2, 320, 16});
                 a.grad_g = c.grad<T>(kdloss::Dims{2, 320, 24});
                 a.grad_weight = c.grad<T>(kdloss::Dims{32});
                 c.call([&] { ops::concat_relation(a, Mode::forward_backward); });
               }, {"grad_theta", "theta"}});
  // ---- issue 10: RoIAlign ([K, 5] boxes in avg mode; ragged boxes in max mode)
  const auto roi_boxes = [](View<const T> boxes, bool with_index) {
    T* p = const_cast<T*>(boxes.data);
    const std::int64_t cols = with_index ? 5 : 4;
    for (std::int64_t k = 0; k < boxes.shape[0]; ++k) {
      T* r = p + k * cols;
      if (with_index) *r++ = static_cast<T>(k % 2);
      const T x1 = static_cast<T>((k * 7) % 50), y1 = static_cast<T>((k * 5) % 60);
      r[0] = x1 - 3, r[1] = y1 - 2, r[2] = x1 + static_cast<T>(5 + k % 23), r[3] = y1 + static_cast<T>(4 + k % 19);
    }
  };
  e.push_back({"ops::roi_align [K, 5], avg", [roi_boxes](Ctx& c) {
                 ops::RoiAlignArgs<T> a;
                 a.x = c.in<T>(kFeat, 1);
                 a.boxes = c.in<T>(kdloss::Dims{24, 5}, 2);
                 roi_boxes(a.boxes, true);
                 a.y = c.out<T>(kdloss::Dims{24, kFeat[1], 3, 3});
                 a.grad_y = c.in<T>(kdloss::Dims{24, kFeat[1], 3, 3}, 3);
                 a.grad_x = c.grad<T>(kFeat);
                 a.options.output_height = a.options.output_width = 3;
                 a.options.spatial_scale = 0.5;
                 c.call([&] { ops::roi_align(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  e.push_back({"ops::roi_align ragged, max, aligned", [roi_boxes](Ctx& c) {
                 ops::RoiAlignArgs<T> a;
                 a.x = c.in<T>(kFeat, 1);
                 a.boxes = c.in<T>(kdloss::Dims{20, 4}, 2);
                 roi_boxes(a.boxes, false);
                 static const std::int64_t offsets[] = {0, 12, 20};
                 a.offsets = kdloss::host_view<const std::int64_t>(offsets, {3});
                 a.y = c.out<T>(kdloss::Dims{20, kFeat[1], 2, 3});
                 a.grad_y = c.in<T>(kdloss::Dims{20, kFeat[1], 2, 3}, 3);
                 a.grad_x = c.grad<T>(kFeat);
                 a.options.output_height = 2, a.options.output_width = 3;
                 a.options.spatial_scale = 0.5, a.options.sampling_ratio = 2, a.options.aligned = true;
                 a.options.pool_mode = ops::RoiPoolMode::max;
                 c.call([&] { ops::roi_align(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  e.push_back({"ops::distance ragged items", [](Ctx& c) {
                 static const std::int64_t offsets[] = {0, 1, 1, 2};
                 ops::DistanceArgs<T> a;
                 a.a = c.in<T>(kFeat, 1);
                 a.b = c.in<T>(kFeat, 2);
                 a.segments.offsets = kdloss::host_view<const std::int64_t>(offsets, {4});
                 a.out = c.out<T>(kdloss::Dims{3});
                 a.grad_a = c.grad<T>(kFeat);
                 a.grad_b = c.out<T>(kFeat);
                 c.call([&] { ops::distance(a, Mode::forward_backward); });
               }, {"grad_a", "a"}});
  e.push_back({"ops::cosine_relation", [](Ctx& c) {
                 static const std::int64_t offsets[] = {0, 40, 64};
                 ops::CosineRelationArgs<T> a;
                 a.x = c.in<T>(kdloss::Dims{64, 576}, 1);
                 a.segments.offsets = kdloss::host_view<const std::int64_t>(offsets, {3});
                 a.out = c.out<T>(kdloss::Dims{40 * 40 + 24 * 24});
                 a.grad_out = c.in<T>(kdloss::Dims{40 * 40 + 24 * 24}, 2);
                 a.grad_x = c.grad<T>(kdloss::Dims{64, 576});
                 c.call([&] { ops::cosine_relation(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  e.push_back({"drkd::instance_relation_loss", [](Ctx& c) {
                 static const std::int64_t offsets[] = {0, 40, 40, 64};
                 const std::int64_t n = 64, C = 64, D = C * 9, I = 32;
                 drkd::InstanceRelationLossArgs<T> a;
                 a.student = c.in<T>(kdloss::Dims{n, C, 3, 3}, 1);
                 a.teacher = c.in<T>(kdloss::Dims{n, C, 3, 3}, 2);
                 a.boxes.offsets = kdloss::host_view<const std::int64_t>(offsets, {4});
                 const auto rel = [&](std::uint32_t seed) {
                   const double k = 0.05;
                   return drkd::ObjectRelationParams<T>{
                       c.in<T>(kdloss::Dims{I, D}, seed, -k, k),     c.in<T>(kdloss::Dims{I}, seed + 1, -k, k),
                       c.in<T>(kdloss::Dims{I, D}, seed + 2, -k, k), c.in<T>(kdloss::Dims{I}, seed + 3, -k, k),
                       c.in<T>(kdloss::Dims{I, D}, seed + 4, -k, k), c.in<T>(kdloss::Dims{I}, seed + 5, -k, k),
                       c.in<T>(kdloss::Dims{D, I}, seed + 6, -k, k), c.in<T>(kdloss::Dims{D}, seed + 7, -k, k)};
                 };
                 a.student_relation = rel(10);
                 a.teacher_relation = rel(20);
                 a.student_filter = {c.in<T>(kdloss::Dims{n, D}, 30, -0.05, 0.05), c.in<T>(kdloss::Dims{n}, 31)};
                 a.teacher_filter = {c.in<T>(kdloss::Dims{n, D}, 32, -0.05, 0.05), c.in<T>(kdloss::Dims{n}, 33)};
                 a.relation_adapt_weight = c.in<T>(kdloss::Dims{C, C}, 40, -0.1, 0.1);
                 a.feature_adapt_weight = c.in<T>(kdloss::Dims{C, C}, 41, -0.1, 0.1);
                 a.out = c.out<T>(kdloss::Dims{});
                 a.grad_student = c.grad<T>(kdloss::Dims{n, C, 3, 3});
                 a.grad_student_relation.theta_weight = c.out<T>(kdloss::Dims{I, D});
                 a.grad_teacher_relation.W_weight = c.out<T>(kdloss::Dims{D, I});
                 a.grad_relation_adapt_weight = c.out<T>(kdloss::Dims{C, C});
                 c.call([&] { drkd::instance_relation_loss(a, Mode::forward_backward); });
               }, {"grad_student", "student"}});
  e.push_back({"drkd::instance_relation_paper_loss", [](Ctx& c) {
                 static const std::int64_t offsets[] = {0, 40, 64};
                 drkd::InstanceRelationPaperLossArgs<T> a;
                 a.student = c.in<T>(kdloss::Dims{64, 64, 3, 3}, 1);
                 a.teacher = c.in<T>(kdloss::Dims{64, 64, 3, 3}, 2);
                 a.boxes.offsets = kdloss::host_view<const std::int64_t>(offsets, {3});
                 a.teacher_scores = c.in<T>(kdloss::Dims{64}, 3, 0.0, 1.0);
                 a.out = c.out<T>(kdloss::Dims{});
                 a.grad_student = c.grad<T>(kdloss::Dims{64, 64, 3, 3});
                 a.options.alpha = 30.0;
                 c.call([&] { drkd::instance_relation_paper_loss(a, Mode::forward_backward); });
               }, {"grad_student", "student"}});
  // ---- boxes and the DETR element losses and costs (ops/boxes.hpp, losses/detr)
  e.push_back({"ops::box_convert", [](Ctx& c) {
                 ops::BoxConvertArgs<T> a;
                 a.boxes = c.in<T>(Dims{16384, 4}, 1);
                 a.out = c.out<T>(Dims{16384, 4});
                 a.grad_out = c.in<T>(Dims{16384, 4}, 2);
                 a.grad_boxes = c.grad<T>(Dims{16384, 4});
                 c.call([&] { ops::box_convert(a, Mode::forward_backward); });
               }, {"grad_boxes", "boxes"}});
  e.push_back({"ops::box_scale clamp", [](Ctx& c) {
                 ops::BoxScaleArgs<T> a;
                 a.boxes = c.in<T>(Dims{4, 4096, 4}, 1, -0.2, 1.2);
                 a.sizes = c.in<T>(Dims{4, 2}, 2, 100, 800);
                 a.out = c.out<T>(Dims{4, 4096, 4});
                 a.grad_out = c.in<T>(Dims{4, 4096, 4}, 3);
                 a.grad_boxes = c.grad<T>(Dims{4, 4096, 4});
                 a.options.clamp = true;
                 c.call([&] { ops::box_scale(a, Mode::forward_backward); });
               }, {"grad_boxes", "boxes"}});
  e.push_back({"ops::box_overlap giou", [](Ctx& c) {
                 ops::BoxOverlapArgs<T> a;
                 a.boxes1 = c.in<T>(Dims{2, 300, 4}, 1);
                 a.boxes2 = c.in<T>(Dims{2, 100, 4}, 2);
                 a.out = c.out<T>(Dims{2, 300, 100});
                 a.options.giou = true;
                 c.call([&] { ops::box_overlap(a, Mode::forward); });
               }, {}});
  e.push_back({"ops::giou_loss mmdet sum", [](Ctx& c) {
                 ops::GIoULossArgs<T> a;
                 a.pred = c.in<T>(Dims{9000, 4}, 1);
                 a.target = c.in<T>(Dims{9000, 4}, 2);
                 a.weight = c.in<T>(Dims{9000}, 3, 0.5, 1.5);
                 a.out = c.out<T>({});
                 a.grad_pred = c.grad<T>(Dims{9000, 4});
                 a.grad_target = c.out<T>(Dims{9000, 4});
                 a.options.form = ops::OverlapForm::mmdet;
                 a.options.eps = 1e-6;
                 c.call([&] { ops::giou_loss(a, Mode::forward_backward); });
               }, {"grad_pred", "pred"}});
  e.push_back({"detr::matched_class_loss focal", [](Ctx& c) {
                 static const std::vector<std::int64_t> rows = [] {
                   std::vector<std::int64_t> r(600);
                   for (std::int64_t i = 0; i < 600; ++i) r[i] = i;
                   return r;
                 }();
                 static const std::vector<std::int64_t> targets = [] {
                   std::vector<std::int64_t> r(600);
                   for (std::int64_t i = 0; i < 600; ++i) r[i] = (i * 7) % 600;
                   return r;
                 }();
                 detr::MatchedClassLossArgs<T> a;
                 a.logits = c.in<T>(Dims{2, 300, 80}, 1, -4, 4);
                 a.target_probs = c.in<T>(Dims{600, 80}, 2, 0, 1);
                 a.pred_rows = host_view<const std::int64_t>(rows.data(), {600});
                 a.target_rows = host_view<const std::int64_t>(targets.data(), {600});
                 a.out = c.out<T>({});
                 a.grad_logits = c.grad<T>(Dims{2, 300, 80});
                 a.options.kind = detr::MatchedClassLossOptions::Kind::focal;
                 c.call([&] { detr::matched_class_loss(a, Mode::forward_backward); });
               }, {"grad_logits", "logits"}});
  e.push_back({"detr::matched_box_loss pixels", [](Ctx& c) {
                 static const std::vector<std::int64_t> rows = [] {
                   std::vector<std::int64_t> r(600);
                   for (std::int64_t i = 0; i < 600; ++i) r[i] = i;
                   return r;
                 }();
                 detr::MatchedBoxLossArgs<T> a;
                 a.pred_boxes = c.in<T>(Dims{2, 300, 4}, 1, 0.1, 0.9);
                 a.target_boxes = c.in<T>(Dims{600, 4}, 2, 0.1, 0.9);
                 a.pred_rows = host_view<const std::int64_t>(rows.data(), {600});
                 a.target_rows = host_view<const std::int64_t>(rows.data(), {600});
                 a.sizes = c.in<T>(Dims{2, 2}, 3, 100, 800);
                 a.out_l1 = c.out<T>({});
                 a.out_giou = c.out<T>({});
                 a.grad_pred_boxes = c.grad<T>(Dims{2, 300, 4});
                 c.call([&] { detr::matched_box_loss(a, Mode::forward_backward); });
               }, {"grad_pred_boxes", "pred_boxes"}});
  e.push_back({"detr::matching_cost detrdistill", [](Ctx& c) {
                 static const std::vector<std::int64_t> offsets = {0, 100, 200};
                 detr::MatchingCostArgs<T> a;
                 a.pred_logits = c.in<T>(Dims{2, 300, 80}, 1, -4, 4);
                 a.pred_boxes = c.in<T>(Dims{2, 300, 4}, 2, 0.1, 0.9);
                 a.target_probs = c.in<T>(Dims{200, 80}, 3, 0, 1);
                 a.target_boxes = c.in<T>(Dims{200, 4}, 4, 0, 100);
                 a.targets = Segments<std::int64_t>{host_view<const std::int64_t>(offsets.data(), {3})};
                 a.sizes = c.in<T>(Dims{2, 2}, 5, 100, 800);
                 a.out = c.out<T>(Dims{2, 300, 100});
                 a.options = detr::MatchingCostOptions::detrdistill();
                 c.call([&] { detr::matching_cost(a); });
               }, {}});
  // ---- FBKD L_NLD: one level, and the total with its fourth term (official pools 8 and 4 on the two levels)
  e.push_back({"fbkd::non_local_loss", [](Ctx& c) {
                 fbkd::NonLocalLossArgs<T> a;
                 a.student = c.in<T>(kFeat, 1);
                 a.teacher = c.in<T>(kFeat, 2);
                 a.grad_student = c.grad<T>(kFeat);
                 std::uint32_t seed = 20;
                 non_local_params<T>(c, a.student_block, 16, 4, seed);
                 non_local_params<T>(c, a.teacher_block, 16, 4, seed);
                 a.adapt_weight = c.in<T>({16, 16}, seed++);
                 a.adapt_bias = c.in<T>({16}, seed++);
                 a.grad_adapt_weight = c.grad<T>({16, 16});
                 a.grad_adapt_bias = c.grad<T>({16});
                 a.out = c.out<T>({});
                 a.options.weight = 7e-5;
                 a.options.block = ops::non_local_fbkd_options(0);
                 c.call([&] { fbkd::non_local_loss(a, Mode::forward_backward); });
               }, {"grad_student", "student"}});
  e.push_back({"fbkd::total_loss with L_NLD, paper form, two levels", [](Ctx& c) {
                 fbkd::TotalLossArgs<T> a;
                 fbkd::Level<T> l0{c.in<T>(kFeat, 1), c.in<T>(kFeat, 2), c.in<T>(kFeat, 3)};
                 fbkd::Level<T> l1{c.in<T>(kCoarse, 4), c.in<T>(kCoarse, 5), c.in<T>(kCoarse, 6)};
                 l0.grad_student = c.grad<T>(kFeat);
                 l1.grad_student = c.grad<T>(kCoarse);
                 std::uint32_t seed = 30;
                 for (fbkd::Level<T>* l : {&l0, &l1}) {
                   non_local_params<T>(c, l->student_non_local, 16, 4, seed);
                   non_local_params<T>(c, l->teacher_non_local, 16, 4, seed);
                   l->non_local_adapt_weight = c.in<T>({16, 16, 1, 1}, seed++);
                   l->non_local_adapt_bias = c.in<T>({16}, seed++);
                   l->grad_non_local_adapt_weight = c.grad<T>({16, 16, 1, 1});
                   l->grad_non_local_adapt_bias = c.grad<T>({16});
                 }
                 a.levels = {l0, l1};
                 a.out = c.out<T>({});
                 a.options = fbkd::Config::paper_two_stage();
                 c.call([&] { fbkd::total_loss(a, Mode::forward_backward); });
               }, {"levels[0].grad_student", "levels[0].student"}});
  // ---- issue 11: the DETR family
  e.push_back({"ops::linear_sum_assignment batch 8 of 60 x 40", [](Ctx& c) {
                 ops::LinearSumAssignmentArgs<T> a;
                 a.cost = c.in<T>(kdloss::Dims{8, 60, 40}, 1);
                 a.row_ind = c.grad<std::int64_t>(kdloss::Dims{8, 40});
                 a.col_ind = c.out<std::int64_t>(kdloss::Dims{8, 40});
                 a.count = c.out<std::int64_t>(kdloss::Dims{8});
                 a.status = c.out<std::int64_t>(kdloss::Dims{8});
                 c.call([&] { ops::linear_sum_assignment(a, Mode::forward); });
               }, {"row_ind", "cost"}});
  // ---- issue 11: DETRDistill (losses/detr)
  e.push_back({"detr::contrastive_query_loss", [](Ctx& c) {
                 detr::ContrastiveQueryArgs<T> a;
                 a.teacher = c.in<T>(kdloss::Dims{2, 200, 96}, 1);
                 a.student = c.in<T>(kdloss::Dims{2, 200, 96}, 2);
                 a.out = c.out<T>({});
                 a.grad_teacher = c.grad<T>(kdloss::Dims{2, 200, 96});
                 a.grad_student = c.grad<T>(kdloss::Dims{2, 200, 96});
                 c.call([&] { detr::contrastive_query_loss(a, Mode::forward_backward); });
               }, {"grad_teacher", "teacher"}});
  e.push_back({"detr::target_aware_feature_loss", [](Ctx& c) {
                 static const std::int64_t offsets[] = {0, 3, 3};  // image 1 without ground truth
                 detr::TargetAwareFeatureArgs<T> a;
                 a.student_features = {c.in<T>(kFeat, 1), c.in<T>(kCoarse, 2)};
                 a.teacher_features = {c.in<T>(kFeat, 3), c.in<T>(kCoarse, 4)};
                 a.teacher_scores = c.in<T>(kdloss::Dims{2, 2, 30, 8}, 5, 0.0, 1.0);
                 a.teacher_queries = c.in<T>(kdloss::Dims{2, 2, 30, 16}, 6);
                 const View<T> boxes = c.out<T>(kdloss::Dims{2, 2, 30, 4});
                 const View<T> gt = c.out<T>(kdloss::Dims{3, 4});
                 for (std::int64_t i = 0; i < 2 * 2 * 30; ++i)
                   for (int j = 0; j < 4; ++j) boxes.data[i * 4 + j] = static_cast<T>((i % 7) + (j < 2 ? 0 : 9 + i % 5));
                 for (std::int64_t g = 0; g < 3; ++g)
                   for (int j = 0; j < 4; ++j) gt.data[g * 4 + j] = static_cast<T>(2 * g + (j < 2 ? 0 : 12));
                 a.teacher_boxes = View<const T>(boxes.data, boxes.shape, boxes.strides, boxes.device);
                 a.gt_boxes = View<const T>(gt.data, gt.shape, gt.strides, gt.device);
                 a.gt_images = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(offsets, {3})};
                 a.options.topk = 20;
                 a.out = c.out<T>({});
                 a.grad_student_features = {c.grad<T>(kFeat), c.grad<T>(kCoarse)};
                 c.call([&] { detr::target_aware_feature_loss(a, Mode::forward_backward); });
               }, {"grad_student_features[0]", "student_features[0]"}});
  e.push_back({"detr::logits_distillation_loss", [](Ctx& c) {
                 const kdloss::Dims lg{2, 2, 40, 80}, bx{2, 2, 40, 4};
                 detr::LogitsDistillationArgs<T> a;
                 a.student_logits = c.in<T>(lg, 1, -4, 2);
                 a.student_boxes = c.in<T>(bx, 2, 0.1, 0.5);
                 a.teacher_logits = c.in<T>(lg, 3, -4, 2);
                 a.teacher_boxes = c.in<T>(bx, 4, 0.1, 0.5);
                 a.sizes = c.in<T>(kdloss::Dims{2, 2}, 5, 300, 900);
                 a.out = c.out<T>({});
                 a.grad_student_logits = c.grad<T>(lg);
                 a.grad_student_boxes = c.grad<T>(bx);
                 c.call([&] { detr::logits_distillation_loss(a, Mode::forward_backward); });
               }, {"grad_student_logits", "student_logits"}});
  e.push_back({"detr::query_prior_loss", [](Ctx& c) {
                 static const std::int64_t pred[] = {3, 17, 40, 41, 5, 70}, target[] = {0, 1, 2, 3, 1, 2},
                                           layers[] = {0, 4, 6}, labels[] = {1, 7, 3, 0};
                 const kdloss::Dims lg{2, 2, 40, 80}, bx{2, 2, 40, 4};
                 detr::QueryPriorLossArgs<T> a;
                 a.logits = c.in<T>(lg, 1, -4, 2);
                 a.boxes = c.in<T>(bx, 2, 0.1, 0.5);
                 a.gt_boxes = c.in<T>(kdloss::Dims{4, 4}, 3, 0.1, 0.5);
                 a.sizes = c.in<T>(kdloss::Dims{2, 2}, 4, 300, 900);
                 a.gt_labels = kdloss::host_view<const std::int64_t>(labels, {4});
                 a.pred_rows = kdloss::host_view<const std::int64_t>(pred, {6});
                 a.target_rows = kdloss::host_view<const std::int64_t>(target, {6});
                 a.layers = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(layers, {3})};
                 a.out_cls = c.out<T>({});
                 a.out_l1 = c.out<T>({});
                 a.out_giou = c.out<T>({});
                 a.grad_logits = c.grad<T>(lg);
                 a.grad_boxes = c.grad<T>(bx);
                 c.call([&] { detr::query_prior_loss(a, Mode::forward_backward); });
               }, {"grad_logits", "logits"}});
  // ---- the relation ops and losses of issues 9 and 10 (ops::softmax_relation, ops::non_local, ops::glore,
  // drkd::glore_relation_loss, drkd::pixel_relation_loss)
  e.push_back({"ops::softmax_relation", [](Ctx& c) {
                 ops::SoftmaxRelationArgs<T> a;
                 a.theta = c.in<T>(kdloss::Dims{2, 1280, 16}, 1);
                 a.phi = c.in<T>(kdloss::Dims{2, 320, 16}, 2);
                 a.g = c.in<T>(kdloss::Dims{2, 320, 24}, 3);
                 a.y = c.out<T>(kdloss::Dims{2, 1280, 24});
                 a.grad_y = c.in<T>(kdloss::Dims{2, 1280, 24}, 4);
                 a.grad_theta = c.grad<T>(kdloss::Dims{2, 1280, 16});
                 a.grad_phi = c.grad<T>(kdloss::Dims{2, 320, 16});
                 a.grad_g = c.grad<T>(kdloss::Dims{2, 320, 24});
                 a.options.scale = 0.25;
                 c.call([&] { ops::softmax_relation(a, Mode::forward_backward); });
               }, {"grad_theta", "theta"}});
  e.push_back({"ops::non_local embedded_gaussian, pooled, BN", [](Ctx& c) {
                 ops::NonLocalArgs<T> a;
                 a.x = c.in<T>(kFeat, 1);
                 a.grad_x = c.grad<T>(kFeat);
                 std::uint32_t seed = 10;
                 non_local_params<T>(c, a, 16, 4, seed);
                 a.z = c.out<T>(kFeat);
                 a.bn_batch_mean = c.out<T>({16});
                 a.bn_batch_var = c.out<T>({16});
                 a.grad_z = c.in<T>(kFeat, seed++);
                 a.options = ops::non_local_mmcv_options(ops::NonLocalMode::embedded_gaussian);
                 a.options.norm = true;
                 c.call([&] { ops::non_local(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  // one GloRe unit over C channels with m = 4 (state 8): parameters from `seed`, every gradient
  const auto glore_unit = [](Ctx& c, std::int64_t C, std::uint32_t seed) {
    const std::int64_t m = 4, s2 = 2 * m;
    drkd::GloreUnitParams<T> p{c.in<T>({s2, C}, seed, -0.3, 0.3),     c.in<T>({s2}, seed + 1),
                               c.in<T>({m, C}, seed + 2, -0.3, 0.3),  c.in<T>({m}, seed + 3),
                               c.in<T>({m, m}, seed + 4, -0.3, 0.3),  c.in<T>({m}, seed + 5),
                               c.in<T>({s2, s2}, seed + 6, -0.3, 0.3), c.in<T>({C, s2}, seed + 7, -0.3, 0.3),
                               c.in<T>({C}, seed + 8, 0.5, 1.5),      c.in<T>({C}, seed + 9)};
    drkd::GloreUnitGrads<T> g{c.grad<T>({s2, C}), c.grad<T>({s2}),     c.grad<T>({m, C}),  c.grad<T>({m}),
                              c.grad<T>({m, m}),  c.grad<T>({m}),      c.grad<T>({s2, s2}), c.grad<T>({C, s2}),
                              c.grad<T>({C}),     c.grad<T>({C})};
    return std::make_pair(p, g);
  };
  e.push_back({"ops::glore", [glore_unit](Ctx& c) {
                 const View<const T> x = c.in<T>(kFeat, 1);
                 const View<T> grad_x = c.grad<T>(kFeat);
                 const auto [p, g] = glore_unit(c, 16, 10);
                 ops::GloreArgs<T> a = drkd::detail::unit_args(x, p, g, {});  // the loss's own GloreArgs builder
                 a.grad_x = grad_x;
                 a.out = c.out<T>(kFeat);
                 a.bn_batch_mean = c.out<T>({16});
                 a.bn_batch_var = c.out<T>({16});
                 a.grad_out = c.in<T>(kFeat, 30);
                 c.call([&] { ops::glore(a, Mode::forward_backward); });
               }, {"grad_x", "x"}});
  e.push_back({"drkd::glore_relation_loss", [glore_unit](Ctx& c) {
                 drkd::GloreRelationLossArgs<T> a;
                 a.student = c.in<T>(kFeat, 1);
                 a.grad_student = c.grad<T>(kFeat);
                 a.teacher = c.in<T>(kdloss::Dims{2, 8, 40, 32}, 2);
                 std::tie(a.student_glore, a.grad_student_glore) = glore_unit(c, 16, 10);
                 std::tie(a.teacher_glore, a.grad_teacher_glore) = glore_unit(c, 8, 20);
                 a.adapt_weight = c.in<T>({8, 16}, 30, -0.3, 0.3);
                 a.adapt_bias = c.in<T>({8}, 31);
                 a.grad_adapt_weight = c.grad<T>({8, 16});
                 a.grad_adapt_bias = c.grad<T>({8});
                 a.student_bn_stats = {c.out<T>({16}), c.out<T>({16})};
                 a.out = c.out<T>({});
                 c.call([&] { drkd::glore_relation_loss(a, Mode::forward_backward); });
               }, {"grad_student", "student"}});
  e.push_back({"drkd::pixel_relation_loss", [](Ctx& c) {
                 drkd::PixelRelationLossArgs<T> a;
                 a.student = c.in<T>(kFeat, 1);
                 a.teacher = c.in<T>(kFeat, 2);
                 a.out = c.out<T>({});
                 a.grad_student = c.grad<T>(kFeat);
                 c.call([&] { drkd::pixel_relation_loss(a, Mode::forward_backward); });
               }, {"grad_student", "student"}});
  // ---- the DRKD instance relation from the maps and the DRKD total (losses/drkd/instance_relation_maps.hpp,
  // total.hpp); boxes in image pixels of a 160 x 128 image (the maps are its stride-4 level)
  e.push_back({"drkd::instance_relation_maps_loss", [](Ctx& c) {
                 static const std::int64_t offsets[] = {0, 40, 64};
                 drkd::InstanceRelationMapsArgs<T> a;
                 a.student_map = c.in<T>(kFeat, 1);
                 a.teacher_map = c.in<T>(kFeat, 2);
                 a.boxes = c.in<T>(kdloss::Dims{64, 4}, 3, 0.0, 128.0);
                 a.offsets = kdloss::host_view<const std::int64_t>(offsets, {3});
                 a.options.form = drkd::InstanceForm::paper;
                 a.paper.teacher_scores = c.in<T>(kdloss::Dims{64}, 4, 0.0, 1.0);
                 a.out = c.out<T>({});
                 a.grad_student_map = c.grad<T>(kFeat);
                 c.call([&] { drkd::instance_relation_maps_loss(a, Mode::forward_backward); });
               }, {"grad_student_map", "student_map"}});
  e.push_back({"drkd::total_loss (paper preset, two levels)", [](Ctx& c) {
                 static const std::int64_t offsets[] = {0, 40, 64};
                 drkd::TotalLevel<T> levels[2];
                 levels[0].student = c.in<T>(kFeat, 1);
                 levels[0].grad_student = c.grad<T>(kFeat);
                 levels[0].teacher = c.in<T>(kFeat, 2);
                 levels[1].student = c.in<T>(kCoarse, 3);
                 levels[1].teacher = c.in<T>(kCoarse, 4);
                 levels[1].grad_student = c.grad<T>(kCoarse);
                 drkd::use_paper_preset(levels, 2);
                 drkd::TotalLossArgs<T> a;
                 a.levels = levels;
                 a.level_count = 2;
                 a.boxes = c.in<T>(kdloss::Dims{64, 4}, 5, 0.0, 128.0);
                 a.offsets = kdloss::host_view<const std::int64_t>(offsets, {3});
                 a.out = c.out<T>({});
                 c.call([&] { drkd::total_loss(a, Mode::forward_backward); });
               }, {"levels[0].grad_student", "levels[0].student"}});
  return e;
}

}  // namespace kdloss_test::table
