// Uses the installed headers: one loss on host buffers, checked against a hand computation.
#include <kdloss/kdloss.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  std::vector<float> s{1, 2, 3, 4}, t{1, 1, 1, 1}, grad(4);
  float loss = 0;
  kdloss::mse_loss_forward_backward(kdloss::host_view(s.data(), {1, 4}), kdloss::host_view(t.data(), {1, 4}),
                                    kdloss::host_scalar(&loss), kdloss::host_view(grad.data(), {1, 4}));
  const bool ok = std::fabs(loss - 3.5f) < 1e-6f && std::fabs(grad[3] - 1.5f) < 1e-6f;
  std::printf("consumer: mse = %g, grad[3] = %g -> %s\n", loss, grad[3], ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
