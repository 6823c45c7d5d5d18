// kdloss on a CUDA stream: one workspace sized by the queries, calls enqueued without host
// synchronisation, the loss value left on the device, and the whole step captured in a CUDA graph
// (possible only because no call synchronises or allocates).
#include <kdloss/kdloss.hpp>

#include <cstdio>
#include <vector>

#define CHECK_CUDA(call)                                                              \
  do {                                                                                \
    cudaError_t e = (call);                                                           \
    if (e != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e));          \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("02_cuda_stream: no GPU present, nothing to run\n");
    return 0;
  }
  const kdloss::Dims shape{2, 256, 50, 84};  // P4 of an 800x1333 input
  const std::size_t n = static_cast<std::size_t>(shape.product());
  std::vector<float> host_s(n), host_t(n);
  for (std::size_t i = 0; i < n; ++i) host_s[i] = float(i % 97) / 97.0f, host_t[i] = float(i % 89) / 89.0f;

  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  float *s, *t, *grad, *loss;
  CHECK_CUDA(cudaMallocAsync(&s, n * sizeof(float), stream));
  CHECK_CUDA(cudaMallocAsync(&t, n * sizeof(float), stream));
  CHECK_CUDA(cudaMallocAsync(&grad, n * sizeof(float), stream));
  CHECK_CUDA(cudaMallocAsync(&loss, 2 * sizeof(float), stream));
  CHECK_CUDA(cudaMemcpyAsync(s, host_s.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream));
  CHECK_CUDA(cudaMemcpyAsync(t, host_t.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream));

  auto sv = kdloss::cuda_view<const float>(s, shape);
  auto tv = kdloss::cuda_view<const float>(t, shape);
  // One workspace serves every call of the step: size it by the largest query.
  const std::size_t bytes =
      std::max(kdloss::mse_loss_workspace_bytes(sv), kdloss::kl_div_loss_workspace_bytes(sv, {4.0, 1}));
  void* workspace;
  CHECK_CUDA(cudaMallocAsync(&workspace, bytes, stream));
  const kdloss::Exec exec{kdloss::Workspace{workspace, bytes}, kdloss::Stream(stream)};

  // Capture one distillation step in a graph, then replay it.
  cudaGraph_t graph;
  cudaGraphExec_t step;
  CHECK_CUDA(cudaStreamSynchronize(stream));
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  kdloss::mse_loss_forward_backward(sv, tv, kdloss::cuda_scalar(loss), kdloss::cuda_view(grad, shape),
                                    {kdloss::Reduction::mean}, exec);
  kdloss::kl_div_loss(sv, tv, kdloss::cuda_scalar(loss + 1), {4.0, 1, kdloss::Reduction::batchmean}, exec);
  CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&step, graph, 0));
  for (int i = 0; i < 10; ++i) CHECK_CUDA(cudaGraphLaunch(step, stream));

  float values[2];
  CHECK_CUDA(cudaMemcpyAsync(values, loss, sizeof(values), cudaMemcpyDeviceToHost, stream));
  CHECK_CUDA(cudaStreamSynchronize(stream));  // the only synchronisation: to print
  std::printf("mse = %.7g, kl(T=4) = %.7g (graph replayed 10 times)\n", values[0], values[1]);

  cudaGraphExecDestroy(step);
  cudaGraphDestroy(graph);
  for (void* p : {static_cast<void*>(s), static_cast<void*>(t), static_cast<void*>(grad), static_cast<void*>(loss), workspace})
    cudaFreeAsync(p, stream);
  cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
  return 0;
}
