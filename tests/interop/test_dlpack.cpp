// kdloss/interop/dlpack.hpp: DLTensor -> View<T> with dtype, device, byte offset, strides and
// alignment checks. (Tensors exported by PyTorch go through the same adapter in python/tests/test_dlpack.py.)
#include <doctest/doctest.h>

#if defined(__has_include)
#if __has_include(<dlpack/dlpack.h>)
#define KDLOSS_TEST_HAVE_DLPACK 1
#endif
#endif

#if defined(KDLOSS_TEST_HAVE_DLPACK)

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kdloss/interop/dlpack.hpp"
#include "kdloss/losses/feature/pointwise.hpp"

using namespace kdloss;

namespace {

struct Tensor {
  std::vector<std::int64_t> shape, strides;
  DLTensor dl{};
};

/// A DLTensor over `data` with the given shape and (optionally) strides.
template <class T>
Tensor make(T* data, std::vector<std::int64_t> shape, std::vector<std::int64_t> strides = {}, std::uint8_t code = 2,
            std::uint8_t bits = sizeof(T) * 8) {
  Tensor t;
  t.shape = std::move(shape);
  t.strides = std::move(strides);
  t.dl.data = data;
  t.dl.device = DLDevice{kDLCPU, 0};
  t.dl.ndim = static_cast<int>(t.shape.size());
  t.dl.dtype = DLDataType{code, bits, 1};
  t.dl.shape = t.shape.empty() ? nullptr : t.shape.data();
  t.dl.strides = t.strides.empty() ? nullptr : t.strides.data();
  t.dl.byte_offset = 0;
  return t;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("from_dlpack: null strides mean compact row-major; shape, device and data carry over") {
  std::vector<float> buf(2 * 3 * 4);
  Tensor t = make(buf.data(), {2, 3, 4});
  const View<const float> v = interop::from_dlpack<const float>(t.dl, "student");
  CHECK(v.data == buf.data());
  CHECK(v.shape == Dims{2, 3, 4});
  CHECK(v.strides == Dims{12, 4, 1});
  CHECK(v.device == Device::host());
  CHECK(v.is_contiguous());
}

TEST_CASE("from_dlpack: explicit strides (permuted, broadcast, negative) are kept, in elements") {
  std::vector<double> buf(2 * 3 * 4);
  Tensor nhwc = make(buf.data(), {2, 4, 3}, {12, 1, 4});
  const auto v = interop::from_dlpack<double>(nhwc.dl);
  CHECK(v.strides == Dims{12, 1, 4});
  CHECK_FALSE(v.is_contiguous());
  CHECK(v.is_unique());

  Tensor broadcast = make(buf.data(), {2, 3}, {0, 1});
  const auto b = interop::from_dlpack<const double>(broadcast.dl);
  CHECK(b.strides == Dims{0, 1});
  CHECK_FALSE(b.is_unique());

  Tensor reversed = make(buf.data() + 3, {4}, {-1});
  const auto r = interop::from_dlpack<const double>(reversed.dl);
  CHECK(r.data == buf.data() + 3);
  CHECK(r.strides == Dims{-1});
}

TEST_CASE("from_dlpack: byte_offset moves the data pointer; misaligned starts are refused") {
  std::vector<float> buf(16);
  Tensor t = make(buf.data(), {3});
  t.dl.byte_offset = 2 * sizeof(float);
  CHECK(interop::from_dlpack<const float>(t.dl).data == buf.data() + 2);
  t.dl.byte_offset = 2;
  const std::string msg = error_of([&] { interop::from_dlpack<const float>(t.dl, "teacher"); });
  CHECK(msg.find("argument 'teacher'") != std::string::npos);
  CHECK(msg.find("not aligned to 4 bytes") != std::string::npos);
}

TEST_CASE("from_dlpack: rank 0 is one element; empty tensors may have a null pointer") {
  float x = 3;
  Tensor s = make(&x, {});
  const auto v = interop::from_dlpack<float>(s.dl);
  CHECK(v.rank() == 0);
  CHECK(v.numel() == 1);
  Tensor e = make<float>(nullptr, {2, 0, 3});
  CHECK(interop::from_dlpack<const float>(e.dl).numel() == 0);
  Tensor bad = make<float>(nullptr, {2, 3});
  CHECK(
      error_of([&] { interop::from_dlpack<const float>(bad.dl, "student"); }) ==
      "kdloss::interop::from_dlpack: argument 'student' has a null data pointer but holds 6 elements of shape [2, 3]");
}

TEST_CASE("from_dlpack: dtype must match the view's element type") {
  std::vector<double> buf(6);
  Tensor t = make(buf.data(), {2, 3});
  CHECK(error_of([&] { interop::from_dlpack<const float>(t.dl, "student"); }) ==
        "kdloss::interop::from_dlpack: argument 'student' has DLPack dtype float64 but the view reads float32");
  t.dl.dtype = DLDataType{0, 32, 1};
  CHECK(error_of([&] { interop::from_dlpack<const float>(t.dl, "x"); }).find("DLPack dtype int32") !=
        std::string::npos);
  t.dl.dtype = DLDataType{2, 32, 4};
  CHECK(error_of([&] { interop::from_dlpack<const float>(t.dl, "x"); }).find("float32x4") != std::string::npos);
  t.dl.dtype = DLDataType{4, 16, 1};
  CHECK(error_of([&] { interop::from_dlpack<const float>(t.dl, "x"); }).find("bfloat16") != std::string::npos);
}

TEST_CASE("from_dlpack: devices map to host or CUDA; others are refused") {
  std::vector<float> buf(4);
  Tensor t = make(buf.data(), {4});
  t.dl.device = DLDevice{kDLCUDAHost, 0};
  CHECK(interop::from_dlpack<const float>(t.dl).device == Device::host());
  t.dl.device = DLDevice{kDLCUDA, 1};
  CHECK(interop::from_dlpack<const float>(t.dl).device == Device::cuda(1));
  t.dl.device = DLDevice{kDLCUDAManaged, 0};
  CHECK(interop::from_dlpack<const float>(t.dl).device == Device::cuda(0));
  t.dl.device = DLDevice{kDLROCM, 0};
  CHECK(error_of([&] { interop::from_dlpack<const float>(t.dl, "student"); }) ==
        "kdloss::interop::from_dlpack: argument 'student' lives on DLPack device ROCM (device_type 10); kdloss "
        "views live on the host (CPU, CUDAHost) or on CUDA devices (CUDA, CUDAManaged)");
  t.dl.device = DLDevice{kDLCUDA, -1};
  CHECK(error_of([&] { interop::from_dlpack<const float>(t.dl); }).find("CUDA device id -1") != std::string::npos);
}

TEST_CASE("from_dlpack: rank and extents are validated") {
  std::vector<float> buf(1);
  Tensor big = make(buf.data(), {1, 1, 1, 1, 1, 1, 1});
  CHECK(error_of([&] { interop::from_dlpack<const float>(big.dl, "x"); }) ==
        "kdloss::interop::from_dlpack: argument 'x' has 7 dimensions; kdloss views have at most 6");
  Tensor neg = make(buf.data(), {2, -1});
  CHECK(error_of([&] { interop::from_dlpack<const float>(neg.dl, "x"); }) ==
        "kdloss::interop::from_dlpack: argument 'x' has a negative extent in shape [2, -1]");
  Tensor noshape = make(buf.data(), {1});
  noshape.dl.shape = nullptr;
  CHECK(error_of([&] { interop::from_dlpack<const float>(noshape.dl, "x"); }).find("null shape pointer") !=
        std::string::npos);
}

TEST_CASE("from_dlpack: the views feed a loss, and the loss's own validation still applies") {
  // Logical [2, 3, 4] tensors; the teacher is stored channel-last (strides {12, 1, 3}).
  std::vector<float> s(24), t(24), t_cl(24), g(24);
  for (int i = 0; i < 24; ++i) s[i] = 0.1f * float(i), t[i] = -0.05f * float(i * i % 7);
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 4; ++h) t_cl[b * 12 + c + h * 3] = t[b * 12 + c * 4 + h];
  Tensor ds = make(s.data(), {2, 3, 4}), dt = make(t_cl.data(), {2, 3, 4}, {12, 1, 3}), dg = make(g.data(), {2, 3, 4});
  float loss = 0, expect = 0;
  const auto sv = interop::from_dlpack<const float>(ds.dl, "student");
  mse_loss_forward_backward(sv, interop::from_dlpack<const float>(dt.dl, "teacher"), host_scalar(&loss),
                            interop::from_dlpack<float>(dg.dl, "grad"));
  mse_loss(host_view<const float>(s.data(), {2, 3, 4}), host_view<const float>(t.data(), {2, 3, 4}),
           host_scalar(&expect));
  CHECK(loss == doctest::Approx(expect).epsilon(1e-6));
  CHECK(g[5] == doctest::Approx(2.0f * (s[5] - t[5]) / 24.0f).epsilon(1e-6));
  Tensor wrong = make(t.data(), {2, 3, 3});
  CHECK(error_of([&] {
          mse_loss(sv, interop::from_dlpack<const float>(wrong.dl, "teacher"), host_scalar(&loss));
        }).find("must have the same shape") != std::string::npos);
}

#if defined(DLPACK_MAJOR_VERSION) && DLPACK_MAJOR_VERSION >= 1
TEST_CASE("from_dlpack: versioned tensors honour the read-only flag and the major version") {
  std::vector<float> buf(4);
  DLManagedTensorVersioned m{};
  m.version = DLPackVersion{DLPACK_MAJOR_VERSION, 0};
  m.dl_tensor = make(buf.data(), {4}).dl;
  std::int64_t shape[] = {4};
  m.dl_tensor.shape = shape;
  m.flags = DLPACK_FLAG_BITMASK_READ_ONLY;
  CHECK(interop::from_dlpack<const float>(m).numel() == 4);
  CHECK(error_of([&] { interop::from_dlpack<float>(m, "grad"); }).find("read-only") != std::string::npos);
  m.version.major = DLPACK_MAJOR_VERSION + 1;
  CHECK(error_of([&] { interop::from_dlpack<const float>(m); }).find("newer major version") != std::string::npos);
}
#endif

#else

TEST_CASE("from_dlpack: skipped (no <dlpack/dlpack.h>; install libdlpack-dev)") {
  MESSAGE("SKIPPED: kdloss/interop/dlpack.hpp tests need <dlpack/dlpack.h> (Debian: libdlpack-dev)");
}

#endif
