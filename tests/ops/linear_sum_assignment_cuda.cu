// GPU side of test_linear_sum_assignment.cpp: the batched call on the device, then the same call
// captured in a CUDA graph and replayed (no host synchronisation inside the call), outputs compared.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kdloss/ops/linear_sum_assignment.hpp"
#include "ops/linear_sum_assignment_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

template <class T>
std::vector<std::int64_t> run(bool maximize, const std::vector<double>& cost, std::int64_t B, std::int64_t Q,
                              std::int64_t T_, const std::vector<std::int64_t>& rows,
                              const std::vector<std::int64_t>& cols) {
  const std::int64_t K = Q < T_ ? Q : T_;
  const kdloss::Device dev = kdloss::Device::cuda(0);
  DeviceBuffer<T> dc(from_double<T>(cost));
  DeviceBuffer<std::int64_t> dr(rows), dk(cols);
  DeviceBuffer<std::int64_t> out(static_cast<std::size_t>(2 * B * K + 2 * B)), out2(out.count);
  const auto args = [&](std::int64_t* o) {
    kdloss::ops::LinearSumAssignmentArgs<T> a;
    a.cost = kdloss::View<const T>(dc.ptr, {B, Q, T_}, kdloss::contiguous_strides({B, Q, T_}), dev);
    a.rows = kdloss::View<const std::int64_t>(dr.ptr, {B}, {1}, dev);
    a.cols = kdloss::View<const std::int64_t>(dk.ptr, {B}, {1}, dev);
    a.row_ind = kdloss::View<std::int64_t>(o, {B, K}, {K, 1}, dev);
    a.col_ind = kdloss::View<std::int64_t>(o + B * K, {B, K}, {K, 1}, dev);
    a.count = kdloss::View<std::int64_t>(o + 2 * B * K, {B}, {1}, dev);
    a.status = kdloss::View<std::int64_t>(o + 2 * B * K + B, {B}, {1}, dev);
    a.options.maximize = maximize;
    return a;
  };
  const auto a = args(out.ptr);
  const std::size_t bytes = kdloss::ops::linear_sum_assignment_workspace_bytes(a);
  DeviceBuffer<unsigned char> ws(bytes + 1);
  kdloss::ops::linear_sum_assignment(a, kdloss::Mode::forward, kdloss::Exec{kdloss::Workspace{ws.ptr, bytes}});
  // The direct call ran on the legacy default stream, which a non-blocking stream does not wait for:
  // finish it before the replay below reuses its workspace.
  cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  // the same call captured in a graph on a side stream (a sync inside would fail the capture)
  cudaStream_t s;
  cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  const bool began = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
  if (began)
    kdloss::ops::linear_sum_assignment(args(out2.ptr), kdloss::Mode::forward,
                                       kdloss::Exec{kdloss::Workspace{ws.ptr, bytes}, kdloss::Stream(s)});
  const bool captured = began && cudaStreamEndCapture(s, &graph) == cudaSuccess &&
                        cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
  if (captured) {
    cudaGraphLaunch(exec, s);
    cudaStreamSynchronize(s);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  cudaStreamDestroy(s);
  const auto direct = out.to_host(), replay = out2.to_host();
  if (!captured || direct != replay) return {};
  return direct;
}

}  // namespace

std::vector<std::int64_t> linear_sum_assignment_on_gpu(int dtype, bool maximize, const std::vector<double>& cost,
                                                       std::int64_t B, std::int64_t Q, std::int64_t T,
                                                       const std::vector<std::int64_t>& rows,
                                                       const std::vector<std::int64_t>& cols) {
  switch (dtype) {
    case 0: return run<float>(maximize, cost, B, Q, T, rows, cols);
    case 1: return run<double>(maximize, cost, B, Q, T, rows, cols);
    case 2: return run<__half>(maximize, cost, B, Q, T, rows, cols);
    default: return run<__nv_bfloat16>(maximize, cost, B, Q, T, rows, cols);
  }
}

}  // namespace kdloss_test
