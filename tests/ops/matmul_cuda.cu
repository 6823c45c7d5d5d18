// GPU side of test_matmul.cpp and test_linear.cpp.
#include <cublas_v2.h>

#include <stdexcept>

#include "kdloss/ops/linear.hpp"
#include "kdloss/ops/matmul.hpp"
#include "ops/matmul_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

struct Blas {
  cublasHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  Blas() {
    if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
    cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  }
  ~Blas() {
    cublasDestroy(handle);
    cudaStreamDestroy(stream);
  }
  kdloss::Exec exec(void* ws, std::size_t bytes) const {
    return kdloss::Exec{kdloss::Workspace{ws, bytes}, kdloss::Stream(stream), kdloss::BlasHandle(handle)};
  }
};

/// Logical row-major [d0, d1, d2] values placed at the given strides in a buffer of `size` elements.
std::vector<double> place(const std::vector<double>& v, const kdloss::Dims& shape, const kdloss::Dims& strides,
                          std::int64_t size) {
  std::vector<double> s(static_cast<std::size_t>(size), -5.0);
  for (std::int64_t a = 0; a < shape[0]; ++a)
    for (std::int64_t b = 0; b < shape[1]; ++b)
      for (std::int64_t c = 0; c < shape[2]; ++c)
        s[a * strides[0] + b * strides[1] + c * strides[2]] = v[(a * shape[1] + b) * shape[2] + c];
  return s;
}
std::vector<double> gather(const std::vector<double>& s, const kdloss::Dims& shape, const kdloss::Dims& strides) {
  std::vector<double> v(static_cast<std::size_t>(shape.product()));
  for (std::int64_t a = 0; a < shape[0]; ++a)
    for (std::int64_t b = 0; b < shape[1]; ++b)
      for (std::int64_t c = 0; c < shape[2]; ++c)
        v[(a * shape[1] + b) * shape[2] + c] = s[a * strides[0] + b * strides[1] + c * strides[2]];
  return v;
}

template <class T>
std::vector<double> run_matmul(int layout, const std::vector<double>& a, const std::vector<double>& b,
                               const std::vector<double>& c, std::int64_t batch, std::int64_t m, std::int64_t n,
                               std::int64_t k, double alpha, double beta) {
  using kdloss::Dims;
  kdloss::ops::MatmulOptions o;
  o.alpha = alpha;
  o.beta = beta;
  Dims a_shape{batch, m, k}, a_str{m * k, k, 1}, b_shape{batch, k, n}, b_str{k * n, n, 1}, c_shape{batch, m, n},
      c_str{m * n, n, 1};
  std::int64_t a_size = batch * m * k, b_size = batch * k * n, c_size = batch * m * n;
  std::vector<double> av = a, bv = b, cv = c;  // logical values placed below
  if (layout == 1) {  // stored transposed: the view is [batch, k, m] over memory laid out that way
    o.trans_a = o.trans_b = true;
    a_str = Dims{m * k, 1, m};
    b_str = Dims{k * n, 1, k};
  } else if (layout == 2) {
    c_str = Dims{m * n, 1, m};
  } else if (layout == 3) {
    a_str = Dims{2 * m * k, 2 * k, 2};
    b_str = Dims{2 * k * n, 2 * n, 2};
    c_str = Dims{2 * m * n, 2 * n, 2};
    a_size *= 2;
    b_size *= 2;
    c_size *= 2;
  } else if (layout == 4) {
    b_str = Dims{0, n, 1};
    b_size = k * n;
  } else if (layout == 5) {
    o.sum_batches = true;
    c_shape = Dims{1, m, n};
    c_size = m * n;
    cv.resize(m * n);
  }
  // Placing uses the logical [batch, rows, cols] shape and the strides of each logical index.
  const auto a_s = place(av, a_shape, a_str, a_size);
  const auto b_s = layout == 4 ? std::vector<double>(b.begin(), b.begin() + k * n) : place(bv, b_shape, b_str, b_size);
  const auto c_s = place(cv, c_shape, c_str, c_size);
  DeviceBuffer<T> da(from_double<T>(a_s)), db(from_double<T>(b_s)), dc(from_double<T>(c_s));
  // Views: with trans, the view's shape is the stored [batch, cols, rows] one.
  const auto view_of = [](const auto* p, Dims shape, Dims str, bool trans) {
    if (trans) {
      std::swap(shape[1], shape[2]);
      std::swap(str[1], str[2]);
    }
    return kdloss::cuda_view(p, shape, str);
  };
  kdloss::ops::MatmulArgs<T> args{view_of(static_cast<const T*>(da.ptr), a_shape, a_str, o.trans_a),
                                  view_of(static_cast<const T*>(db.ptr), b_shape, b_str, o.trans_b),
                                  layout == 5 ? kdloss::cuda_view(dc.ptr, Dims{m, n}) : kdloss::cuda_view(dc.ptr, c_shape, c_str),
                                  o};
  Blas blas;
  DeviceWorkspace ws(kdloss::ops::matmul_workspace_bytes(args));
  kdloss::ops::matmul(args, blas.exec(ws.buffer.ptr, ws.buffer.count));
  cuda_check(cudaStreamSynchronize(blas.stream), "sync");
  return gather(to_double(dc.to_host()), c_shape, c_str);
}

template <class T>
std::vector<double> run_linear(bool channel_last, const std::vector<double>& x, const std::vector<double>& w,
                               const std::vector<double>& bias, const std::vector<double>& grad_y,
                               const std::vector<double>& old_gw, const std::vector<double>& old_gb, std::int64_t batch,
                               std::int64_t in, std::int64_t out, std::int64_t positions) {
  using kdloss::Dims;
  const auto str = [&](std::int64_t c) {
    return channel_last ? Dims{c * positions, 1, c} : Dims{c * positions, positions, 1};
  };
  // [B, C, P] views as [B, C, P, 1] feature maps.
  const auto map = [&](auto* p, std::int64_t c) {
    const Dims s = str(c);
    return kdloss::cuda_view(p, Dims{batch, c, positions, 1}, Dims{s[0], s[1], s[2], s[2]});
  };
  DeviceBuffer<T> dx(from_double<T>(place(x, {batch, in, positions}, str(in), batch * in * positions)));
  DeviceBuffer<T> dgy(from_double<T>(place(grad_y, {batch, out, positions}, str(out), batch * out * positions)));
  DeviceBuffer<T> dw(from_double<T>(w)), db(from_double<T>(bias)), dgw(from_double<T>(old_gw)), dgb(from_double<T>(old_gb));
  DeviceBuffer<T> dy(batch * out * positions), dgx(batch * in * positions);
  kdloss::ops::LinearArgs<T> l;
  l.x = map(static_cast<const T*>(dx.ptr), in);
  l.weight = kdloss::cuda_view(static_cast<const T*>(dw.ptr), Dims{out, in});
  l.bias = kdloss::cuda_view(static_cast<const T*>(db.ptr), Dims{out});
  l.y = map(dy.ptr, out);
  l.grad_y = map(static_cast<const T*>(dgy.ptr), out);
  l.grad_x = map(dgx.ptr, in);
  l.grad_weight = kdloss::cuda_view(dgw.ptr, Dims{out, in});
  l.grad_bias = kdloss::cuda_view(dgb.ptr, Dims{out});
  l.options.param_grads.beta = 1.0;
  Blas blas;
  DeviceWorkspace ws(kdloss::ops::linear_workspace_bytes(l));
  kdloss::ops::linear(l, kdloss::Mode::forward_backward, blas.exec(ws.buffer.ptr, ws.buffer.count));
  cuda_check(cudaStreamSynchronize(blas.stream), "sync");
  auto r = gather(to_double(dy.to_host()), {batch, out, positions}, str(out));
  const auto gx = gather(to_double(dgx.to_host()), {batch, in, positions}, str(in));
  const auto gw = to_double(dgw.to_host()), gb = to_double(dgb.to_host());
  r.insert(r.end(), gx.begin(), gx.end());
  r.insert(r.end(), gw.begin(), gw.end());
  r.insert(r.end(), gb.begin(), gb.end());
  return r;
}

}  // namespace

std::vector<double> matmul_on_gpu(int dtype, int layout, const std::vector<double>& a, const std::vector<double>& b,
                                  const std::vector<double>& c, std::int64_t batch, std::int64_t m, std::int64_t n,
                                  std::int64_t k, double alpha, double beta) {
  switch (dtype) {
    case 1: return run_matmul<double>(layout, a, b, c, batch, m, n, k, alpha, beta);
    case 2: return run_matmul<__half>(layout, a, b, c, batch, m, n, k, alpha, beta);
    case 3: return run_matmul<__nv_bfloat16>(layout, a, b, c, batch, m, n, k, alpha, beta);
    default: return run_matmul<float>(layout, a, b, c, batch, m, n, k, alpha, beta);
  }
}

std::vector<double> linear_on_gpu(int dtype, bool channel_last, const std::vector<double>& x,
                                  const std::vector<double>& w, const std::vector<double>& bias,
                                  const std::vector<double>& grad_y, const std::vector<double>& old_gw,
                                  const std::vector<double>& old_gb, std::int64_t batch, std::int64_t in,
                                  std::int64_t out, std::int64_t positions) {
  return dtype == 1 ? run_linear<double>(channel_last, x, w, bias, grad_y, old_gw, old_gb, batch, in, out, positions)
                    : run_linear<float>(channel_last, x, w, bias, grad_y, old_gw, old_gb, batch, in, out, positions);
}

}  // namespace kdloss_test
