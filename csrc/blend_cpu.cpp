// CPU implementations of the middle ops: one loop iteration per channel over
// the shared per-channel math of blend.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "anrl_ext/blend_tensors.h"
#include "anrl_ext/ops.h"

namespace anrl_ext {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> blend_forward_cpu(
    const at::Tensor& mean, const at::Tensor& var, const OptTensor& alpha, double alpha_value,
    const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& in_weight,
    const OptTensor& in_bias, const OptTensor& running_mean, const OptTensor& running_var,
    bool use_batch_stats, bool update_running, double momentum, double eps, int64_t count) {
  BlendForwardSetup s(mean, var, alpha, bn_weight, bn_bias, in_weight, in_bias, running_mean,
                      running_var, use_batch_stats);
  AT_DISPATCH_FLOATING_TYPES(s.t.mean.scalar_type(), "blend_forward_cpu", [&] {
    const auto in = s.t.inputs<scalar_t>(alpha_value, eps, use_batch_stats);
    const auto out = s.outputs<scalar_t>(update_running && use_batch_stats, momentum, count);
    // (N, C) is small: parallelise over channels only when there is real work.
    at::parallel_for(0, in.C, std::max<int64_t>(1, 16384 / std::max<int64_t>(in.N, 1)),
                     [&](int64_t c0, int64_t c1) {
                       for (int64_t c = c0; c < c1; ++c) blend_forward_channel(in, out, c);
                     });
  });
  return s.result();
}

BlendBackwardResult blend_backward_cpu(const at::Tensor& s0, const at::Tensor& s1, const at::Tensor& mean,
                                       const at::Tensor& var, const OptTensor& alpha, double alpha_value,
                                       const OptTensor& bn_weight, const OptTensor& bn_bias,
                                       const OptTensor& in_weight, const OptTensor& in_bias,
                                       const at::Tensor& bn_mean, const at::Tensor& bn_var,
                                       bool use_batch_stats, double eps, int64_t hw) {
  BlendBackwardSetup s(s0, s1, mean, var, alpha, bn_weight, bn_bias, in_weight, in_bias, bn_mean,
                       bn_var, hw);
  AT_DISPATCH_FLOATING_TYPES(s.t.mean.scalar_type(), "blend_backward_cpu", [&] {
    const auto in = s.t.inputs<scalar_t>(alpha_value, eps, use_batch_stats);
    const auto args = s.args<scalar_t>(hw);
    at::parallel_for(0, in.C, std::max<int64_t>(1, 16384 / std::max<int64_t>(in.N, 1)),
                     [&](int64_t c0, int64_t c1) {
                       for (int64_t c = c0; c < c1; ++c) blend_backward_channel(in, args, c);
                     });
  });
  return s.result();
}

}  // namespace anrl_ext
