// Regressions found by fuzz/validation_fuzzer.cpp (docs/fuzzing.md), replayed with plain views.
// Each case also has its fuzzer input in fuzz/corpus/regress-*.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "kdloss/interop/dlpack.hpp"
#include "kdloss/kdloss.hpp"

namespace {

using kdloss::Dims;
using kdloss::Mode;

/// Buffers of one call: inputs hold small values, outputs the 0x7d sentinel.
struct Bufs {
  std::vector<std::vector<float>> mem;
  kdloss::View<const float> in(const Dims& shape) {
    mem.emplace_back(static_cast<std::size_t>(shape.product()), 0.25f);
    return kdloss::host_view<const float>(mem.back().data(), shape);
  }
  kdloss::View<float> out(const Dims& shape) {
    mem.emplace_back(static_cast<std::size_t>(shape.product()));
    std::memset(mem.back().data(), 0x7d, mem.back().size() * sizeof(float));
    return kdloss::host_view<float>(mem.back().data(), shape);
  }
};

/// `call(mode)` must throw kdloss::Error naming the bad Mode value, and leave every buffer as it was.
template <class Call>
void rejects_bad_mode(Bufs& b, Call call) {
  for (int bad : {-1, 3, 5}) {
    CAPTURE(bad);
    const auto before = b.mem;
    try {
      call(static_cast<Mode>(bad));
      FAIL("a Mode value outside the enum was accepted");
    } catch (const kdloss::Error& e) {
      CHECK(std::string(e.what()).find("Mode value " + std::to_string(bad)) != std::string::npos);
    }
    CHECK(b.mem == before);
  }
}

}  // namespace

TEST_CASE("fuzz regression: kdloss::mode_index accepts the three modes and rejects any other value") {
  CHECK(kdloss::mode_index(Mode::forward) == 0);
  CHECK(kdloss::mode_index(Mode::backward) == 1);
  CHECK(kdloss::mode_index(Mode::forward_backward) == 2);
  CHECK_THROWS_AS(kdloss::mode_index(static_cast<Mode>(5)), kdloss::Error);
  CHECK_THROWS_AS(kdloss::mode_index(static_cast<Mode>(-1)), kdloss::Error);
}

// fuzz/corpus/regress-mode-out-of-range: static_cast<Mode>(5) indexed past a three-entry name table
// (UBSan: index 5 out of bounds for type 'const char *const[3]') in every entry point below.
TEST_CASE("fuzz regression: an out-of-range Mode is a kdloss::Error, not an index past the name table") {
  using namespace kdloss;
  const Dims feat{2, 3, 4, 5}, map{2, 4, 5}, map1{2, 1, 4, 5}, chan{2, 3};
  Bufs b;
  SUBCASE("ops::softmax, ops::log_softmax") {
    ops::SoftmaxArgs<float> a;
    a.x = b.in(feat);
    a.axis = 1;
    a.out = b.out(feat);
    a.grad_out = b.in(feat);
    a.grad_x = b.out(feat);
    rejects_bad_mode(b, [&](Mode m) { ops::softmax_check(a, m); });
    rejects_bad_mode(b, [&](Mode m) { ops::softmax(a, m); });
    ops::LogSoftmaxArgs<float> l{a.x, 1, a.out, {}, a.grad_out, a.grad_x, {}};
    rejects_bad_mode(b, [&](Mode m) { ops::log_softmax_check(l, m); });
    rejects_bad_mode(b, [&](Mode m) { ops::log_softmax(l, m); });
  }
  SUBCASE("ops::mean_over_channels, ops::mean_over_positions, fbkd::spatial_attention, fbkd::channel_attention") {
    ops::MeanArgs<float> c{b.in(feat), b.out(map1), b.in(map1), b.out(feat), {}};
    rejects_bad_mode(b, [&](Mode m) { ops::mean_over_channels(c, m); });
    ops::MeanArgs<float> p{b.in(feat), b.out(chan), b.in(chan), b.out(feat), {}};
    rejects_bad_mode(b, [&](Mode m) { ops::mean_over_positions(p, m); });
    fbkd::SpatialAttentionArgs<float> s{b.in(feat), b.out(map), b.in(map), b.out(feat)};
    rejects_bad_mode(b, [&](Mode m) { fbkd::spatial_attention(s, m); });
    fbkd::ChannelAttentionArgs<float> ch{b.in(feat), b.out(chan), b.in(chan), b.out(feat)};
    rejects_bad_mode(b, [&](Mode m) { fbkd::channel_attention(ch, m); });
  }
  SUBCASE("fbkd losses") {
    fbkd::AttentionTransferLossArgs<float> at{b.in(feat), b.in(feat), b.out({}), b.in({}), b.out(feat)};
    rejects_bad_mode(b, [&](Mode m) { fbkd::attention_transfer_loss(at, m); });
    fbkd::PooledAttentionTransferLossArgs<float> pat{b.in(chan), b.in(map1), b.in(feat), b.out({}),
                                                     b.in({}),   b.out(chan), b.out(map1)};
    rejects_bad_mode(b, [&](Mode m) { fbkd::pooled_attention_transfer_loss(pat, m); });
    fbkd::MaskedFeatureLossArgs<float> mf{b.in(feat), b.in(feat), b.in(map), b.in(chan), b.out({}), b.in({}), b.out(feat)};
    rejects_bad_mode(b, [&](Mode m) { fbkd::masked_feature_loss(mf, m); });
    fbkd::TotalLossArgs<float> t;
    fbkd::Level<float> l0{b.in(feat), b.in(feat), b.in(feat)};
    l0.grad_student = b.out(feat);
    l0.grad_student_adapted = b.out(feat);
    t.levels = {l0};
    t.out = b.out({});
    t.grad_out = b.in({});
    rejects_bad_mode(b, [&](Mode m) { fbkd::total_loss_check(t, m); });
    rejects_bad_mode(b, [&](Mode m) { fbkd::total_loss(t, m); });
  }
}

// fuzz/corpus/regress-dlpack-device-type-16: a DLTensor whose device_type is an int32 outside this
// DLPack header's enum (a newer producer's kDLHexagon = 16) was loaded through DLDeviceType (UBSan:
// "load of value 16, which is not a valid value for type 'DLDeviceType'"). It is read as the int32 now.
TEST_CASE("fuzz regression: from_dlpack reads a device type outside the DLDeviceType enum as an integer") {
  float data[4] = {1, 2, 3, 4};
  std::int64_t shape[1] = {4};
  DLTensor t{};
  t.data = data;
  t.ndim = 1;
  t.shape = shape;
  t.dtype = {2, 32, 1};
  for (std::int32_t type : {16, 40, -1}) {
    CAPTURE(type);
    std::memcpy(&t.device.device_type, &type, sizeof type);
    try {
      (void)kdloss::interop::from_dlpack<const float>(t, "student");
      FAIL("an unknown DLPack device type was accepted");
    } catch (const kdloss::Error& e) {
      CHECK(std::string(e.what()).find("device_type " + std::to_string(type)) != std::string::npos);
      CHECK(std::string(e.what()).find("'student'") != std::string::npos);
    }
  }
  const std::int32_t cpu = 1;
  std::memcpy(&t.device.device_type, &cpu, sizeof cpu);
  CHECK(kdloss::interop::from_dlpack<const float>(t, "student").data == data);
}

// A DLTensor whose element count or address span overflows int64 (shape [2^62, 4], or strides of
// 2^62) was turned into a view; its numel (Dims::product) or any extent computation overflowed
// (signed overflow: undefined). from_dlpack rejects it now, naming the argument, shape and strides.
TEST_CASE("fuzz regression: from_dlpack rejects shapes and strides that overflow a 64-bit index") {
  float data[4] = {1, 2, 3, 4};
  DLTensor t{};
  t.data = data;
  t.ndim = 2;
  t.dtype = {2, 32, 1};
  t.device = {kDLCPU, 0};
  std::int64_t big_shape[2] = {std::int64_t{1} << 62, 4};
  t.shape = big_shape;
  CHECK_THROWS_WITH_AS((void)kdloss::interop::from_dlpack<const float>(t, "teacher"),
                       doctest::Contains("64-bit index"), kdloss::Error);
  std::int64_t shape[2] = {3, 4}, strides[2] = {std::int64_t{1} << 62, 1};
  t.shape = shape;
  t.strides = strides;
  CHECK_THROWS_WITH_AS((void)kdloss::interop::from_dlpack<const float>(t, "teacher"),
                       doctest::Contains("'teacher' with shape [3, 4] and strides [4611686018427387904, 1]"),
                       kdloss::Error);
  std::int64_t empty_shape[2] = {0, std::int64_t{1} << 62};  // empty: any extent is fine
  t.shape = empty_shape;
  t.strides = nullptr;
  CHECK(kdloss::interop::from_dlpack<const float>(t, "teacher").numel() == 0);
  strides[0] = -4;  // negative strides within range are fine
  t.shape = shape;
  t.strides = strides;
  CHECK(kdloss::interop::from_dlpack<const float>(t, "teacher").stride(0) == -4);
}

// fuzz/corpus/regress-matmul-sum-batches-empty-batch: with sum_batches, an `a` of batch extent 0 and a
// broadcast `b` of batch 1 ran max(0, 1) = 1 batch and read a's missing batch (ASan heap-buffer-overflow
// in Eigen's gemm_pack_rhs). Broadcasting 1 against 0 gives no batches: c = beta * c.
TEST_CASE("fuzz regression: matmul sum_batches over an empty batch reads nothing and leaves beta * c") {
  using namespace kdloss;
  std::vector<double> b(1 * 3 * 4, 1.0), c(2 * 4, 2.0);
  double a_dummy = 0;  // a has no elements: its data is never read
  ops::MatmulArgs<double> args;
  args.a = host_view<const double>(&a_dummy, Dims{0, 2, 3});
  args.b = host_view<const double>(b.data(), Dims{1, 3, 4});
  args.c = host_view<double>(c.data(), Dims{2, 4});
  args.options.sum_batches = true;
  args.options.beta = 0.5;
  ops::matmul(args);
  for (double v : c) CHECK(v == 1.0);
  args.options.beta = 0.0;
  ops::matmul(args);
  for (double v : c) CHECK(v == 0.0);
}

TEST_CASE("fuzz regression: disjoint() on an output view reaching far below address 0 is defined (no pointer overflow)") {
  // fuzz/corpus/regress-disjoint-pointer-overflow: a check-only call whose gradient output has a stride of
  // about -2^40 elements. The overlap test computes byte ranges in wrapping integer arithmetic; under the
  // asan preset (UBSan) the old pointer arithmetic stopped here.
  // One buffer, g at its top, so that s and t lie below g whatever addresses the allocator hands out
  // (three separate vectors made the verdict depend on the heap's order).
  std::vector<float> buffer(12, 0.f);
  float* s = buffer.data();
  float* t = buffer.data() + 4;
  float* g = buffer.data() + 8;
  const kdloss::View<const float> sv = kdloss::host_view<const float>(s, {4});
  const kdloss::View<const float> tv = kdloss::host_view<const float>(t, {4});
  const kdloss::View<float> gv = kdloss::host_view(g, Dims{4}, Dims{-(std::int64_t(1) << 40)});
  const kdloss::detail::Checker ck{"kdloss::mse_loss_backward"};
  // Its byte span reaches 12 TiB below g, over s and t too: the verdict is the (conservative) overlap that
  // span implies, reached without undefined pointer arithmetic.
  CHECK_THROWS_WITH_AS(ck.disjoint(gv, "grad_student", sv, "student"),
                       doctest::Contains("'grad_student' overlaps the memory of argument 'student'"), kdloss::Error);
  CHECK_THROWS_AS(ck.disjoint(gv, "grad_student", kdloss::View<const float>(gv), "alias"), kdloss::Error);
  // Far below every buffer of the call: a view reaching down from address 2^50 spans only [2^50 - 12 TiB, 2^50].
  const kdloss::View<float> high(reinterpret_cast<float*>(std::uintptr_t(1) << 50), Dims{4},
                                 Dims{-(std::int64_t(1) << 40)}, kdloss::Device::host());
  CHECK_NOTHROW(ck.disjoint(high, "grad_student", tv, "teacher"));
}

// fuzz/corpus/regress-distance-per-item-huge-rows: a check-only ops::distance call with per_item over a
// described (unbacked) shape of 2^40 rows and no elements walked every row to size the workspace (libFuzzer's
// 10 s timeout, CI's 60 s fuzz run). The size query is O(1) unless segments (real offsets) are given.
TEST_CASE("fuzz regression: distance_workspace_bytes over 2^40 empty items answers without walking them") {
  using namespace kdloss;
  const std::int64_t rows = std::int64_t(1) << 40;
  float dummy = 0;
  ops::DistanceArgs<float> args;
  args.a = host_view<const float>(&dummy, Dims{rows, 0});
  args.b = host_view<const float>(&dummy, Dims{rows, 0});
  args.options.per_item = true;
  // one double per item (the kept norms), nothing else on the host
  CHECK(ops::distance_workspace_bytes(args) >= static_cast<std::size_t>(rows) * sizeof(double));
  args.options.sum_items = true;
  CHECK(ops::distance_workspace_bytes(args) >= static_cast<std::size_t>(rows) * sizeof(double));
}

// A check-only call describing 2^35 prediction rows: the duplicate test of an assignment kept a bitmap over
// every row (out of memory under the fuzzer's 2 GB limit). It sorts the pairs' rows instead.
TEST_CASE("fuzz regression: check_matched_pairs over 2^35 prediction rows uses memory of the pair count") {
  using namespace kdloss;
  const std::int64_t rows = std::int64_t(1) << 35;
  const std::int64_t pred[] = {rows - 1, 7, rows - 1}, target[] = {0, 1, 2};
  const detail::Checker ck{"kdloss::detr::matched_box_loss"};
  CHECK_NOTHROW(ops::boxes_detail::check_matched_pairs(ck, host_view<const std::int64_t>(pred, {2}),
                                                       host_view<const std::int64_t>(target, {2}), rows, 3,
                                                       Device::host()));
  CHECK_THROWS_WITH_AS(ops::boxes_detail::check_matched_pairs(ck, host_view<const std::int64_t>(pred, {3}),
                                                              host_view<const std::int64_t>(target, {3}), rows, 3,
                                                              Device::host()),
                       doctest::Contains("argument 'pred_rows' lists row 34359738367 twice"), kdloss::Error);
}

// The query-prior loss split its [K, ...] views per decoder layer by offsetting the data pointer, a null one
// too (UBSan: "applying non-zero offset to null pointer"), before the check could name the argument.
TEST_CASE("fuzz regression: a null [K, ...] view split per decoder layer stays null") {
  using namespace kdloss;
  const View<const float> v(nullptr, Dims{3, 4, 5}, Dims{20, 5, 1}, Device::host());
  const View<const float> k2 = detr::query_prior_detail::layer(v, 2);
  CHECK(k2.data == nullptr);
  CHECK(k2.shape == Dims{4, 5});
  const View<const std::int64_t> idx(nullptr, Dims{6}, Dims{1}, Device::host());
  CHECK(detr::query_prior_detail::pairs(idx, 2, 5).data == nullptr);
  CHECK(detr::query_prior_detail::pairs(idx, 2, 5).shape == Dims{3});
}

// fuzz/corpus/regress-roi-align-empty-bin-dense-row: a column bin whose samples all fall outside the map has
// no cells, yet was marked "consecutive cells", and the host pass formed a row pointer from the cell index one
// past the bin (UBSan: pointer index expression overflowed). Such a bin pools to 0 and sends no gradient.
TEST_CASE("fuzz regression: roi_align column bins wholly outside the map pool to 0 with no gradient") {
  using namespace kdloss;
  std::vector<float> x(1 * 2 * 6 * 6), gx(x.size(), 7.0f), y(1 * 2 * 2 * 3, 9.0f), gy(y.size(), 1.0f);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.5f + static_cast<float>(i % 11);
  // x from 2 to 14 over a 6-wide map: the last column bin starts at 10, wholly outside
  const float boxes[] = {0, 2, 1, 14, 4};
  ops::RoiAlignArgs<float> args;
  args.x = host_view<const float>(x.data(), {1, 2, 6, 6});
  args.boxes = host_view<const float>(boxes, {1, 5});
  args.y = host_view(y.data(), {1, 2, 2, 3});
  args.grad_y = host_view<const float>(gy.data(), {1, 2, 2, 3});
  args.grad_x = host_view(gx.data(), {1, 2, 6, 6});
  args.options.output_height = 2;
  args.options.output_width = 3;
  args.options.sampling_ratio = 2;
  ops::roi_align(args, Mode::forward_backward);
  for (int c = 0; c < 2; ++c)
    for (int p = 0; p < 2; ++p) {
      CHECK(y[(c * 2 + p) * 3 + 2] == 0.0f);  // the bin outside
      CHECK(y[(c * 2 + p) * 3 + 0] != 0.0f);  // a bin inside
    }
  for (float g : gx) CHECK(std::isfinite(g));
}

// fuzz/corpus/regress-softmax-relation-mode-out-of-range: ops::softmax_relation indexed its three-entry name
// table with static_cast<int>(mode) (UBSan: index 5 out of bounds), in the check and in the call.
TEST_CASE("fuzz regression: ops::softmax_relation rejects an out-of-range Mode") {
  using namespace kdloss;
  const Dims q{2, 6, 4}, v{2, 6, 3};
  Bufs b;
  ops::SoftmaxRelationArgs<float> a;
  a.theta = b.in(q);
  a.phi = b.in(q);
  a.g = b.in(v);
  a.y = b.out(v);
  a.grad_y = b.in(v);
  a.grad_g = b.out(v);
  rejects_bad_mode(b, [&](Mode m) { ops::softmax_relation_check(a, m); });
  rejects_bad_mode(b, [&](Mode m) { ops::softmax_relation(a, m); });
}

// fuzz/corpus/regress-softmax-relation-packed-bytes-overflow: a check-only softmax_relation workspace query over
// views of batch 0 (no element, so their counts stay 0) with 2^39 keys of 134217792 features: the per-batch size
// of the operands packed once per call (session 8) overflowed int64 (UBSan "signed integer overflow: 134217792 *
// 549755813888" in backend/cpu/gemm.hpp). It is an error naming the three inputs now.
TEST_CASE("fuzz regression: softmax_relation operands whose packed bytes int64 cannot count are an error") {
  using namespace kdloss;
  const std::int64_t m = 134217792, keys = std::int64_t(1) << 39;
  double dummy = 0;
  ops::SoftmaxRelationArgs<double> a;
  a.theta = View<const double>(&dummy, Dims{0, 2, m}, Dims{0, 0, 0}, Device::host());
  a.phi = View<const double>(&dummy, Dims{0, keys, m}, Dims{0, 0, 0}, Device::host());
  a.g = View<const double>(&dummy, Dims{0, keys, 3}, Dims{0, 0, 0}, Device::host());
  a.grad_y = View<const double>(&dummy, Dims{0, 2, 3}, Dims{0, 0, 0}, Device::host());
  a.grad_g = View<double>(&dummy, Dims{0, keys, 3}, Dims{0, 0, 0}, Device::host());
  CHECK_THROWS_WITH_AS(ops::softmax_relation_workspace_bytes(a),
                       doctest::Contains("packed copies cannot be counted in 64 bits"), kdloss::Error);
  // an ordinary shape still answers
  a.theta = View<const double>(&dummy, Dims{1, 5, 4}, Dims{0, 0, 0}, Device::host());
  a.phi = View<const double>(&dummy, Dims{1, 2, 4}, Dims{0, 0, 0}, Device::host());
  a.g = View<const double>(&dummy, Dims{1, 2, 3}, Dims{0, 0, 0}, Device::host());
  a.grad_y = View<const double>(&dummy, Dims{1, 5, 3}, Dims{0, 0, 0}, Device::host());
  a.grad_g = View<double>(&dummy, Dims{1, 2, 3}, Dims{0, 0, 0}, Device::host());
  CHECK(ops::softmax_relation_workspace_bytes(a) > 0);
}

// fuzz/corpus/regress-cosine-relation-pairs-overflow: a check-only ops::cosine_relation call describing
// 2^35 rows in one image: the packed relation's length sum n_b^2 overflowed int64 (UBSan "signed integer
// overflow: 34359738368 * 34359738368"). It is an error naming 'segments' now.
TEST_CASE("fuzz regression: cosine_relation's packed length sum n_b^2 that int64 cannot count is an error") {
  using namespace kdloss;
  const std::int64_t rows = std::int64_t(1) << 35;
  const std::int64_t offsets[] = {0, rows};
  float dummy = 0;
  ops::CosineRelationArgs<float> a;
  a.x = View<const float>(&dummy, Dims{rows, 4}, Dims{0, 0}, Device::host());  // described, not backed
  a.segments.offsets = host_view<const std::int64_t>(offsets, {2});
  a.out = host_view<float>(&dummy, Dims{1});
  CHECK_THROWS_WITH_AS(ops::cosine_relation_check(a, Mode::forward),
                       doctest::Contains("argument 'segments' puts 34359738368 rows in image 0"), kdloss::Error);
  CHECK_THROWS_WITH_AS(ops::cosine_relation_workspace_bytes(a), doctest::Contains("argument 'segments'"),
                       kdloss::Error);
  // the largest image whose n^2 stays below INT64_MAX / 16 still counts (then the shape test of 'out'
  // rejects the call); one row more does not
  const std::int64_t fits[] = {0, 759250124}, over[] = {0, 759250125};
  a.x = View<const float>(&dummy, Dims{759250124, 4}, Dims{0, 0}, Device::host());
  a.segments.offsets = host_view<const std::int64_t>(fits, {2});
  CHECK_THROWS_WITH_AS(ops::cosine_relation_check(a, Mode::forward),
                       doctest::Contains("argument 'out' has shape [1] but expected [576460750794015376]"),
                       kdloss::Error);
  a.x = View<const float>(&dummy, Dims{759250125, 4}, Dims{0, 0}, Device::host());
  a.segments.offsets = host_view<const std::int64_t>(over, {2});
  CHECK_THROWS_WITH_AS(ops::cosine_relation_check(a, Mode::forward), doctest::Contains("argument 'segments'"),
                       kdloss::Error);
}

// fuzz/corpus/regress-cosine-relation-strided-huge-image: with the scratch sized for a strided 'out', a
// check-only workspace query over one image of 2^33 described rows multiplied m * m in the product's size
// (UBSan "signed integer overflow: 8589934592 * 8589934592" in backend/cpu/gemm.hpp). The query checks the
// segments' count first.
TEST_CASE("fuzz regression: cosine_relation_workspace_bytes over a 2^33-row image with a strided out is an error") {
  using namespace kdloss;
  const std::int64_t rows = std::int64_t(1) << 33;
  const std::int64_t offsets[] = {0, rows};
  float dummy = 0;
  ops::CosineRelationArgs<float> a;
  a.x = View<const float>(&dummy, Dims{rows, 4}, Dims{0, 0}, Device::host());
  a.segments.offsets = host_view<const std::int64_t>(offsets, {2});
  a.out = View<float>(&dummy, Dims{1}, Dims{2}, Device::host());
  a.grad_out = View<const float>(&dummy, Dims{1}, Dims{-3}, Device::host());
  CHECK_THROWS_WITH_AS(ops::cosine_relation_workspace_bytes(a),
                       doctest::Contains("argument 'segments' puts 8589934592 rows in image 0"), kdloss::Error);
}

// fuzz/corpus/regress-cosine-relation-strided-out-workspace: cosine_relation_workspace_bytes sized the
// products' scratch for a contiguous 'out', but the call views each image's [m, m] block with out's own
// stride; with a strided 'out' and a workspace of exactly the queried size, ops::matmul threw "argument
// 'workspace' has 64 bytes but this call needs 100 bytes" after the norms had been written (a rejected call
// wrote to its workspace). The query sizes the products with the strides of 'out' and 'grad_out'.
TEST_CASE("fuzz regression: cosine_relation runs in its queried workspace with strided out and grad_out") {
  using namespace kdloss;
  const std::int64_t n = 5, D = 3, P = n * n;
  std::vector<float> x(n * D), rel(2 * P, -7.f), grad(2 * P, 0.5f), gx(n * D);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * static_cast<float>(i % 7) - 0.2f;
  const std::int64_t offsets[] = {0, n};
  ops::CosineRelationArgs<float> a;
  a.x = host_view<const float>(x.data(), {n, D});
  a.segments.offsets = host_view<const std::int64_t>(offsets, {2});
  a.out = host_view<float>(rel.data(), Dims{P}, Dims{2});
  a.grad_out = host_view<const float>(grad.data(), Dims{P}, Dims{2});
  a.grad_x = host_view<float>(gx.data(), {n, D});
  const std::size_t bytes = ops::cosine_relation_workspace_bytes(a);
  std::vector<unsigned char> ws(bytes + 256);
  void* aligned = ws.data() + (256 - reinterpret_cast<std::uintptr_t>(ws.data()) % 256) % 256;
  Exec exec;
  exec.workspace = {aligned, bytes};
  CHECK_NOTHROW(ops::cosine_relation(a, Mode::forward_backward, exec));
  // the relation of each row with itself is 1, on the strided diagonal; the gaps are untouched
  for (std::int64_t i = 0; i < n; ++i) CHECK(rel[static_cast<std::size_t>(2 * (i * n + i))] == doctest::Approx(1.0));
  for (std::int64_t k = 0; k < P; ++k) CHECK(rel[static_cast<std::size_t>(2 * k + 1)] == -7.f);
}

// fuzz/corpus/regress-matching-cost-null-out-no-columns: images without targets and out [B, Q, 0] with a null
// data pointer (legal: no element); the host pass offset that null pointer per prediction row (UBSan "applying
// non-zero offset 8 to null pointer"). A call with no column writes nothing and offsets nothing.
TEST_CASE("fuzz regression: matching_cost with out [B, Q, 0] and a null out pointer offsets nothing") {
  using namespace kdloss;
  const float boxes[2 * 3 * 4] = {0.5f, 0.5f, 0.2f, 0.2f, 0.3f, 0.3f, 0.1f, 0.1f, 0.6f, 0.4f, 0.2f, 0.3f,
                                  0.5f, 0.5f, 0.2f, 0.2f, 0.3f, 0.3f, 0.1f, 0.1f, 0.6f, 0.4f, 0.2f, 0.3f};
  const float hw[4] = {200, 300, 100, 100};
  const float no_target = 0;
  const std::int64_t offsets[3] = {0, 0, 0};
  detr::MatchingCostArgs<float> args;
  args.options = detr::MatchingCostOptions{};
  args.options.class_cost = detr::MatchingCostOptions::ClassCost::none;
  args.pred_boxes = host_view<const float>(boxes, {2, 3, 4});
  args.target_boxes = host_view<const float>(&no_target, {0, 4});
  args.targets = Segments<std::int64_t>{host_view<const std::int64_t>(offsets, {3})};
  args.sizes = host_view<const float>(hw, {2, 2});
  args.out = View<float>(nullptr, Dims{2, 3, 0}, Dims{0, 0, 1}, Device::host());
  CHECK_NOTHROW(detr::matching_cost(args));
}

// fuzz/corpus/regress-query-prior-short-grad-layers: detr::query_prior_loss checked each decoder layer's slice of
// grad_logits / grad_boxes but not their leading K, so a gradient view of fewer layers than the logits passed the
// check and layer K - 1 wrote past it (ASan heap-buffer-overflow). The whole shapes are checked now.
TEST_CASE("fuzz regression: query_prior_loss rejects gradients with fewer layers than the logits") {
  using namespace kdloss;
  const std::int64_t K = 2, B = 1, Q = 3, C = 4;
  std::vector<float> logits(K * B * Q * C, 0.1f), boxes(K * B * Q * 4, 0.3f), gl(logits.size(), 7.0f),
      gb(boxes.size(), 7.0f);
  const std::vector<float> gt = {0.5f, 0.5f, 0.2f, 0.3f}, hw = {480, 640};
  const std::vector<std::int64_t> labels = {2}, pred = {1, 0}, target = {0, 0}, layers = {0, 1, 2};
  float cls = 0, l1 = 0, giou = 0;
  detr::QueryPriorLossArgs<float> args;
  args.logits = host_view<const float>(logits.data(), {K, B, Q, C});
  args.boxes = host_view<const float>(boxes.data(), {K, B, Q, 4});
  args.gt_labels = host_view<const std::int64_t>(labels.data(), {1});
  args.gt_boxes = host_view<const float>(gt.data(), {1, 4});
  args.sizes = host_view<const float>(hw.data(), {B, 2});
  args.pred_rows = host_view<const std::int64_t>(pred.data(), {2});
  args.target_rows = host_view<const std::int64_t>(target.data(), {2});
  args.layers = Segments<std::int64_t>{host_view<const std::int64_t>(layers.data(), {3})};
  args.out_cls = host_scalar(&cls);
  args.out_l1 = host_scalar(&l1);
  args.out_giou = host_scalar(&giou);
  args.grad_logits = host_view(gl.data(), {K - 1, B, Q, C});  // one layer short
  args.grad_boxes = host_view(gb.data(), {K, B, Q, 4});
  const std::vector<float> before = gl;
  CHECK_THROWS_WITH_AS(detr::query_prior_loss(args, Mode::forward_backward), doctest::Contains("'grad_logits'"),
                       kdloss::Error);
  CHECK(gl == before);
  args.grad_logits = host_view(gl.data(), {K, B, Q, C});
  args.grad_boxes = host_view(gb.data(), {K - 1, B, Q, 4});
  CHECK_THROWS_WITH_AS(detr::query_prior_loss(args, Mode::forward_backward), doctest::Contains("'grad_boxes'"),
                       kdloss::Error);
  CHECK(gl == before);
}

// fuzz/corpus/regress-logits-distillation-mode-out-of-range: detr::logits_distillation_loss named its errors
// through a table that maps any Mode value to a name, so Mode 5 passed its check, the matching ran, and the first
// layer's element loss rejected the Mode after an output was written. The check rejects it first now.
TEST_CASE("fuzz regression: logits_distillation_loss rejects an out-of-range Mode before any layer runs") {
  using namespace kdloss;
  detr::LogitsDistillationArgs<float> args;  // the Mode test comes before any argument is read
  for (int bad : {-1, 3, 5}) {
    CAPTURE(bad);
    const std::string want = "Mode value " + std::to_string(bad);
    CHECK_THROWS_WITH_AS(detr::logits_distillation_loss_check(args, static_cast<Mode>(bad)),
                         doctest::Contains(want.c_str()), kdloss::Error);
  }
}

TEST_CASE("fuzz regression: logits_distillation_loss leaves the caller's workspace untouched when a NaN cost rejects it") {
  using namespace kdloss;
  // one layer, one image, 2 queries x 2 teacher predictions, 2 classes: a NaN teacher logit makes a cost NaN,
  // which the host assignment rejects while the call runs (session 8's one-pass pipeline first matched in the
  // caller's workspace)
  const std::int64_t K = 1, B = 1, Q = 2, C = 2;
  std::vector<float> sl = {0.5f, -1, 2, 0}, tl = {std::nanf(""), 1, -1, 0};
  std::vector<float> sb = {0.5f, 0.5f, 0.2f, 0.2f, 0.4f, 0.4f, 0.1f, 0.3f}, tb = sb, hw = {100, 200};
  std::vector<float> gl(sl.size(), 7.0f), gb(sb.size(), 7.0f);
  float cls = -1;
  detr::LogitsDistillationArgs<float> a;
  a.student_logits = host_view<const float>(sl.data(), {K, B, Q, C});
  a.student_boxes = host_view<const float>(sb.data(), {K, B, Q, 4});
  a.teacher_logits = host_view<const float>(tl.data(), {K, B, Q, C});
  a.teacher_boxes = host_view<const float>(tb.data(), {K, B, Q, 4});
  a.sizes = host_view<const float>(hw.data(), {B, 2});
  a.out_cls = host_scalar(&cls);
  a.grad_student_logits = host_view(gl.data(), {K, B, Q, C});
  a.grad_student_boxes = host_view(gb.data(), {K, B, Q, 4});
  CHECK(detr::logits_distillation_loss_workspace_bytes(a) == 0);  // the host call keeps its buffers to itself
  alignas(256) static unsigned char ws[1 << 16];
  std::fill(std::begin(ws), std::end(ws), static_cast<unsigned char>(0x5a));
  CHECK_THROWS_WITH_AS(detr::logits_distillation_loss(a, Mode::forward_backward, Exec{Workspace{ws, sizeof ws}}),
                       doctest::Contains("invalid numeric entries"), kdloss::Error);
  CHECK(std::all_of(std::begin(ws), std::end(ws), [](unsigned char c) { return c == 0x5a; }));
  CHECK(cls == -1);
  CHECK(std::all_of(gl.begin(), gl.end(), [](float v) { return v == 7.0f; }));
  CHECK(std::all_of(gb.begin(), gb.end(), [](float v) { return v == 7.0f; }));
}
