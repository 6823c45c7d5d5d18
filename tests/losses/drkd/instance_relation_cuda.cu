// GPU side of test_instance_relation.cpp and test_instance_relation_paper.cpp: the DRKD instance losses on
// device buffers, with a stream and a cuBLAS handle.
#include <cublas_v2.h>

#include <memory>
#include <stdexcept>

#include "kdloss/losses/drkd/instance_relation_paper.hpp"
#include "kdloss/losses/drkd/total.hpp"
#include "losses/drkd/instance_relation_args.hpp"
#include "losses/drkd/instance_relation_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

using kdloss::Dims;

/// Runs `call(exec)` with a workspace of `bytes`, a fresh stream and cuBLAS handle, and waits for it.
template <class Call>
void on_stream(std::size_t bytes, Call call) {
  DeviceBuffer<unsigned char> ws(bytes + 1);
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  call(kdloss::Exec{kdloss::Workspace{ws.ptr, ws.count}, kdloss::Stream(stream), kdloss::BlasHandle(handle)});
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  cublasDestroy(handle);
}

template <class T>
std::vector<double> run_code(const kdloss_ref::losses::InstanceRelation& r,
                             const kdloss_ref::losses::InstanceRelationInputs& in) {
  using In = kdloss_ref::losses::InstanceRelationInputs;
  const auto s = instance_relation_shapes(r);
  std::vector<std::unique_ptr<DeviceBuffer<T>>> values(In::count), grads(In::count);
  std::vector<kdloss::View<const T>> v(In::count);
  std::vector<kdloss::View<T>> g(In::count);
  for (int k = 0; k < In::count; ++k) {
    if (s[k].rank == 0) continue;  // absent
    values[k] = std::make_unique<DeviceBuffer<T>>(from_double<T>(in.v[k]));
    grads[k] = std::make_unique<DeviceBuffer<T>>(in.v[k].size());
    v[k] = kdloss::cuda_view<const T>(values[k]->ptr, s[k]);
    g[k] = kdloss::cuda_view<T>(grads[k]->ptr, s[k]);
  }
  kdloss::drkd::InstanceRelationLossArgs<T> a = instance_relation_args<T>(r, v, g, kdloss::Mode::forward_backward);
  DeviceBuffer<T> out(1);
  a.out = kdloss::cuda_scalar(out.ptr);
  on_stream(kdloss::drkd::instance_relation_loss_workspace_bytes(a), [&](const kdloss::Exec& exec) {
    kdloss::drkd::instance_relation_loss(a, kdloss::Mode::forward_backward, exec);
  });
  std::vector<double> result = to_double(out.to_host());
  for (int k = 0; k < In::count; ++k) {
    if (!grads[k] || k == In::teacher) continue;  // the teacher's features get no gradient
    const auto gk = to_double(grads[k]->to_host());
    result.insert(result.end(), gk.begin(), gk.end());
  }
  return result;
}

template <class T>
std::vector<double> run_paper(const kdloss_ref::losses::InstancePaper& r, const std::vector<double>& xs,
                              const std::vector<double>& xt, const std::vector<double>& ct,
                              const std::vector<double>& cs) {
  const std::int64_t n = r.offsets.back();
  DeviceBuffer<T> ds(from_double<T>(xs)), dt(from_double<T>(xt)), out(1), gs(xs.size());
  // absent scores stay absent views; a one-element buffer keeps the constructor simple
  DeviceBuffer<T> dct(from_double<T>(ct.empty() ? std::vector<double>{0.0} : ct)),
      dcs(from_double<T>(cs.empty() ? std::vector<double>{0.0} : cs));
  kdloss::drkd::InstanceRelationPaperLossArgs<T> a;
  a.student = kdloss::cuda_view<const T>(ds.ptr, Dims{n, r.Ds});
  a.teacher = kdloss::cuda_view<const T>(dt.ptr, Dims{n, r.Dt});
  // the ragged split is host memory (it sizes the launches)
  a.boxes.offsets = kdloss::host_view<const std::int64_t>(r.offsets.data(),
                                                          Dims{static_cast<std::int64_t>(r.offsets.size())});
  if (!ct.empty()) a.teacher_scores = kdloss::cuda_view<const T>(dct.ptr, Dims{n});
  if (!cs.empty()) a.student_scores = kdloss::cuda_view<const T>(dcs.ptr, Dims{n});
  a.options.weight = r.weight;
  a.options.threshold_from =
      r.teacher_mean ? kdloss::drkd::ConfidenceThreshold::teacher_mean : kdloss::drkd::ConfidenceThreshold::fixed;
  a.options.threshold = r.threshold;
  a.options.mask_columns = r.columns;
  a.options.alpha = r.alpha;
  a.options.reduction = r.mean ? kdloss::Reduction::mean : kdloss::Reduction::sum;
  a.out = kdloss::cuda_scalar(out.ptr);
  a.grad_student = kdloss::cuda_view<T>(gs.ptr, Dims{n, r.Ds});
  on_stream(kdloss::drkd::instance_relation_paper_loss_workspace_bytes(a), [&](const kdloss::Exec& exec) {
    kdloss::drkd::instance_relation_paper_loss(a, kdloss::Mode::forward_backward, exec);
  });
  std::vector<double> result = to_double(out.to_host());
  const auto g = to_double(gs.to_host());
  result.insert(result.end(), g.begin(), g.end());
  return result;
}

template <class T>
std::vector<double> run_maps(const kdloss_ref::losses::InstanceRelation& r,
                             const kdloss_ref::losses::InstanceRelationInputs& in, const MapsLevel& lv,
                             const std::vector<double>& boxes, double scale, std::int64_t sampling, bool image0) {
  using In = kdloss_ref::losses::InstanceRelationInputs;
  const auto s = instance_relation_shapes(r);
  std::vector<std::unique_ptr<DeviceBuffer<T>>> values(In::count), grads(In::count);
  std::vector<kdloss::View<const T>> v(In::count);
  std::vector<kdloss::View<T>> g(In::count);
  for (int k = In::s_theta_w; k < In::count; ++k) {
    if (s[k].rank == 0) continue;  // absent
    values[k] = std::make_unique<DeviceBuffer<T>>(from_double<T>(in.v[k]));
    grads[k] = std::make_unique<DeviceBuffer<T>>(in.v[k].size());
    v[k] = kdloss::cuda_view<const T>(values[k]->ptr, s[k]);
    g[k] = kdloss::cuda_view<T>(grads[k]->ptr, s[k]);
  }
  kdloss::drkd::InstanceRelationMapsArgs<T> a;
  a.code = instance_relation_args<T>(r, v, g, kdloss::Mode::forward_backward);
  a.code.student = a.code.teacher = {};
  a.code.boxes = {};
  a.code.grad_student = {};
  const Dims sd{lv.B, lv.Cs, lv.H, lv.W}, td{lv.B, lv.Ct, lv.H, lv.W};
  DeviceBuffer<T> S(from_double<T>(lv.student)), Tm(from_double<T>(lv.teacher)), bx(from_double<T>(boxes)), out(1),
      gS(lv.student.size());
  a.student_map = kdloss::cuda_view<const T>(S.ptr, sd);
  a.teacher_map = kdloss::cuda_view<const T>(Tm.ptr, td);
  a.boxes = kdloss::cuda_view<const T>(bx.ptr, Dims{r.n(), 4});
  a.offsets = kdloss::host_view<const std::int64_t>(r.offsets.data(), Dims{static_cast<std::int64_t>(r.offsets.size())});
  a.options.output_size = r.P;
  a.options.spatial_scale = scale;
  a.options.sampling_ratio = sampling;
  a.options.image0_pooling = image0;
  a.out = kdloss::cuda_scalar(out.ptr);
  a.grad_student_map = kdloss::cuda_view<T>(gS.ptr, sd);
  on_stream(kdloss::drkd::instance_relation_maps_loss_workspace_bytes(a), [&](const kdloss::Exec& exec) {
    kdloss::drkd::instance_relation_maps_loss(a, kdloss::Mode::forward_backward, exec);
  });
  std::vector<double> result = to_double(out.to_host());
  const auto gm = to_double(gS.to_host());
  result.insert(result.end(), gm.begin(), gm.end());
  for (int k = In::s_theta_w; k < In::count; ++k) {
    if (!grads[k]) continue;
    const auto gk = to_double(grads[k]->to_host());
    result.insert(result.end(), gk.begin(), gk.end());
  }
  return result;
}

template <class T>
std::vector<double> run_total_paper(const std::vector<MapsLevel>& levels, const std::vector<double>& boxes,
                                    const std::vector<std::int64_t>& offsets, const std::vector<double>& scores) {
  std::vector<std::unique_ptr<DeviceBuffer<T>>> keep;
  const auto device = [&](const std::vector<double>& x) {
    keep.push_back(std::make_unique<DeviceBuffer<T>>(from_double<T>(x)));
    return keep.back()->ptr;
  };
  std::vector<kdloss::drkd::TotalLevel<T>> lv(levels.size());
  std::vector<T*> grads;
  for (std::size_t l = 0; l < levels.size(); ++l) {
    const MapsLevel& m = levels[l];
    lv[l].student = kdloss::cuda_view<const T>(device(m.student), Dims{m.B, m.Cs, m.H, m.W});
    lv[l].teacher = kdloss::cuda_view<const T>(device(m.teacher), Dims{m.B, m.Ct, m.H, m.W});
    grads.push_back(device(std::vector<double>(m.student.size())));
    lv[l].grad_student = kdloss::cuda_view<T>(grads.back(), Dims{m.B, m.Cs, m.H, m.W});
    lv[l].instance_args.paper.teacher_scores = kdloss::cuda_view<const T>(device(scores), Dims{offsets.back()});
  }
  kdloss::drkd::use_paper_preset(lv.data(), lv.size());
  DeviceBuffer<T> out(1);
  kdloss::drkd::TotalLossArgs<T> a;
  a.levels = lv.data();
  a.level_count = lv.size();
  a.boxes = kdloss::cuda_view<const T>(device(boxes), Dims{offsets.back(), 4});
  a.offsets = kdloss::host_view<const std::int64_t>(offsets.data(), Dims{static_cast<std::int64_t>(offsets.size())});
  a.out = kdloss::cuda_scalar(out.ptr);
  on_stream(kdloss::drkd::total_loss_workspace_bytes(a), [&](const kdloss::Exec& exec) {
    kdloss::drkd::total_loss(a, kdloss::Mode::forward_backward, exec);
  });
  std::vector<double> result = to_double(out.to_host());
  for (std::size_t l = 0; l < levels.size(); ++l) {
    std::vector<T> host(levels[l].student.size());
    cuda_check(cudaMemcpy(host.data(), grads[l], host.size() * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
    const auto g = to_double(host);
    result.insert(result.end(), g.begin(), g.end());
  }
  return result;
}

}  // namespace

std::vector<double> instance_relation_on_gpu(int dtype, const kdloss_ref::losses::InstanceRelation& r,
                                             const kdloss_ref::losses::InstanceRelationInputs& in) {
  if (dtype == 1) return run_code<double>(r, in);
  return run_code<float>(r, in);
}

std::vector<double> instance_relation_paper_on_gpu(int dtype, const kdloss_ref::losses::InstancePaper& r,
                                                   const std::vector<double>& student,
                                                   const std::vector<double>& teacher,
                                                   const std::vector<double>& teacher_scores,
                                                   const std::vector<double>& student_scores) {
  if (dtype == 1) return run_paper<double>(r, student, teacher, teacher_scores, student_scores);
  return run_paper<float>(r, student, teacher, teacher_scores, student_scores);
}

std::vector<double> instance_relation_maps_on_gpu(int dtype, const kdloss_ref::losses::InstanceRelation& r,
                                                  const kdloss_ref::losses::InstanceRelationInputs& in,
                                                  const MapsLevel& level, const std::vector<double>& boxes,
                                                  double scale, std::int64_t sampling, bool image0) {
  if (dtype == 1) return run_maps<double>(r, in, level, boxes, scale, sampling, image0);
  return run_maps<float>(r, in, level, boxes, scale, sampling, image0);
}

std::vector<double> total_paper_on_gpu(int dtype, const std::vector<MapsLevel>& levels, const std::vector<double>& boxes,
                                       const std::vector<std::int64_t>& offsets, const std::vector<double>& teacher_scores) {
  if (dtype == 1) return run_total_paper<double>(levels, boxes, offsets, teacher_scores);
  return run_total_paper<float>(levels, boxes, offsets, teacher_scores);
}

}  // namespace kdloss_test
