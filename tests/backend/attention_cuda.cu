// GPU side of test_attention_gpu.cpp: runs backend::cuda::attention_forward and attention_backward
// directly on expr::AttentionForward / AttentionBackward descriptions of device copies.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>
#include <vector>

#include "backend/attention_gpu.hpp"
#include "kdloss/backend/cuda/attention.cuh"
#include "support/device_buffer.cuh"

using namespace kdloss;

namespace kdloss_test {
namespace {

/// An operand's storage on the device (absent when its host storage is empty) and its strides.
template <class T>
struct DeviceOperand {
  DeviceBuffer<T> buffer;
  std::int64_t offset, batch, row, col;
  explicit DeviceOperand(const AttnOperand& op)
      : buffer(from_double<T>(op.storage)), offset(op.offset), batch(op.batch), row(op.row), col(op.col) {}
  T* base() const { return buffer.ptr ? buffer.ptr + offset : nullptr; }
  expr::MatOperand<const T> in() const { return {base(), batch, row, col}; }
  expr::MatOperand<T> out() const { return {base(), batch, row, col}; }
  std::vector<double> host() const { return to_double(buffer.to_host()); }
};

backend::cuda::AttentionPath path_of(int path) {
  switch (path) {
    case 0: return backend::cuda::AttentionPath::automatic;
    case 1: return backend::cuda::AttentionPath::simple;
    case 2: return backend::cuda::AttentionPath::blocked;
    case 3: return backend::cuda::AttentionPath::tensor_core;
  }
  throw std::invalid_argument("attention_on_gpu: unknown path");
}

template <class T, class Acc>
AttnGpuResult run(int path, const AttnProblem& p, bool backward) {
  cudaStream_t stream{};
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() { cudaStreamDestroy(s); }
  } guard{stream};
  DeviceOperand<T> q(p.q), k(p.k), v(p.v), o(p.o), grad_o(p.grad_o), grad_q(p.grad_q), grad_k(p.grad_k),
      grad_v(p.grad_v);
  DeviceBuffer<Acc> lse(std::vector<Acc>(static_cast<std::size_t>(p.batch * p.n_q), Acc(-777)));

  expr::AttentionForward<T, Acc> f;
  f.batch = p.batch, f.n_q = p.n_q, f.n_k = p.n_k, f.d = p.d, f.dv = p.dv, f.scale = p.scale;
  f.q = q.in(), f.k = k.in(), f.v = v.in(), f.o = o.out(), f.lse = p.keep_lse ? lse.ptr : nullptr;
  if (backward && !p.keep_lse) throw std::invalid_argument("attention_on_gpu: the backward needs the forward's lse");
  DeviceBuffer<unsigned char> forward_scratch(backend::cuda::attention_forward_scratch_bytes(f));
  backend::cuda::attention_forward(f, forward_scratch.ptr, stream, path_of(path));

  AttnGpuResult r;
  if (backward) {
    expr::AttentionBackward<T, Acc> g;
    g.batch = p.batch, g.n_q = p.n_q, g.n_k = p.n_k, g.d = p.d, g.dv = p.dv, g.scale = p.scale;
    g.q = q.in(), g.k = k.in(), g.v = v.in(), g.o = o.in(), g.grad_o = grad_o.in(), g.lse = lse.ptr;
    g.grad_q = grad_q.out(), g.grad_k = grad_k.out(), g.grad_v = grad_v.out();
    DeviceBuffer<unsigned char> scratch(backend::cuda::attention_backward_scratch_bytes(g));
    backend::cuda::attention_backward(g, scratch.ptr, stream, path_of(path));
    cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    r.grad_q = grad_q.host(), r.grad_k = grad_k.host(), r.grad_v = grad_v.host();
  }
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  r.o = o.host();
  if (p.keep_lse) {
    const auto l = lse.to_host();
    r.lse.assign(l.begin(), l.end());
  }
  return r;
}

}  // namespace

AttnGpuResult attention_on_gpu(int dtype, int path, const AttnProblem& p, bool backward) {
  switch (dtype) {
    case 0: return run<float, float>(path, p, backward);
    case 1: return run<double, double>(path, p, backward);
    case 2: return run<__half, float>(path, p, backward);
    case 3: return run<__nv_bfloat16, float>(path, p, backward);
  }
  throw std::invalid_argument("attention_on_gpu: unknown dtype");
}

std::vector<double> round_to_dtype(int dtype, const std::vector<double>& v) {
  switch (dtype) {
    case 0: return to_double(from_double<float>(v));
    case 1: return v;
    case 2: return to_double(from_double<__half>(v));
    case 3: return to_double(from_double<__nv_bfloat16>(v));
  }
  throw std::invalid_argument("round_to_dtype: unknown dtype");
}

}  // namespace kdloss_test
