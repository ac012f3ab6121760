// CPU implementations of the gated middle ops: the phases of gate.h, each a
// parallel loop, then the blend of blend.h per channel. The CUDA kernel runs
// the same phases in one block (kernels/gate_cuda.cu).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "anrl_ext/gate_tensors.h"
#include "anrl_ext/ops.h"

namespace anrl_ext {
namespace {

// Each index costs about `work` multiply-adds: parallelise only real work.
template <typename F>
void parallel_over(int64_t count, int64_t work, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(work, 1));
  at::parallel_for(0, count, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) f(i);
  });
}

}  // namespace

GateForwardResult gate_blend_forward_cpu(const at::Tensor& mean, const at::Tensor& var, const OptTensor& gate_w1,
                                         const OptTensor& gate_b1, const at::Tensor& gate_wb,
                                         const OptTensor& gate_bb, const OptTensor& gate_wi,
                                         const OptTensor& bn_weight, const OptTensor& bn_bias,
                                         const OptTensor& in_weight, const OptTensor& in_bias,
                                         const OptTensor& running_mean, const OptTensor& running_var,
                                         bool use_batch_stats, bool update_running, double momentum, double eps,
                                         int64_t count) {
  GateForwardSetup s(mean, var, gate_w1, gate_b1, gate_wb, gate_bb, gate_wi, bn_weight, bn_bias, in_weight,
                     in_bias, running_mean, running_var, use_batch_stats);
  AT_DISPATCH_FLOATING_TYPES(s.mean.scalar_type(), "gate_blend_forward_cpu", [&] {
    const auto g = s.gate_args<scalar_t>();
    const int64_t N = g.N, C = g.C, D = g.D, K = g.K();
    if (D > 0) parallel_over(N * D, C, [&](int64_t i) { gate_hidden(g, i / D, i % D); });
    parallel_over(N * C, K * (g.wi ? 2 : 1), [&](int64_t i) { gate_alpha(g, i / C, i % C); });
    const auto in = s.blend.t.inputs<scalar_t>(0.0, eps, use_batch_stats);
    const auto out = s.blend.outputs<scalar_t>(update_running && use_batch_stats, momentum, count);
    parallel_over(C, 4 * N, [&](int64_t c) { blend_forward_channel(in, out, c); });
  });
  return s.result();
}

GateBackwardResult gate_blend_backward_cpu(const at::Tensor& s0, const at::Tensor& s1, const at::Tensor& mean,
                                           const at::Tensor& var, const at::Tensor& alpha, const at::Tensor& hidden,
                                           const OptTensor& alpha_grad, const OptTensor& gate_w1,
                                           const OptTensor& gate_b1, const at::Tensor& gate_wb,
                                           const OptTensor& gate_bb, const OptTensor& gate_wi,
                                           const OptTensor& bn_weight, const OptTensor& bn_bias,
                                           const OptTensor& in_weight, const OptTensor& in_bias,
                                           const at::Tensor& bn_mean, const at::Tensor& bn_var,
                                           bool use_batch_stats, double eps, int64_t hw) {
  GateBackwardSetup s(s0, s1, mean, var, alpha, hidden, alpha_grad, gate_w1, gate_b1, gate_wb, gate_bb, gate_wi,
                      bn_weight, bn_bias, in_weight, in_bias, bn_mean, bn_var, hw);
  AT_DISPATCH_FLOATING_TYPES(s.mean.scalar_type(), "gate_blend_backward_cpu", [&] {
    const auto g = s.gate_args<scalar_t>();
    const auto d = s.grads<scalar_t>(hw);
    const auto in = s.blend.t.inputs<scalar_t>(0.0, eps, use_batch_stats);
    const auto args = s.blend.args<scalar_t>(hw);
    const int64_t N = g.N, C = g.C, D = g.D, K = g.K();
    parallel_over(C, N * K, [&](int64_t c) {
      blend_backward_channel(in, args, c);
      gate_head_grad_channel(g, d, c);
    });
    parallel_over(N * K, C, [&](int64_t i) { gate_input_grad(g, d, i / K, i % K); });
    if (D > 0) {
      parallel_over(C, 2 * N * D, [&](int64_t c) { gate_hidden_grad_channel(g, d, c); });
      if (g.b1) parallel_over(D, N, [&](int64_t j) { gate_hidden_bias_grad(g, d, j); });
    }
  });
  return s.result();
}

}  // namespace anrl_ext
