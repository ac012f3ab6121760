// CUDA implementations of the gated middle ops: the phases of
// csrc/include/anrl_ext/gate.h in one launch each way. The gate mixes
// channels (alpha[n, c] reads every mean of sample n; the weight gradients sum
// over samples and channels), so one block runs all phases with __syncthreads
// between them instead of a grid-wide barrier. The (N, C) middle is small: at
// N = 32, C = 512 and D = 32 a phase is about a million multiply-adds, against
// ~15 us of host time per launch it saves.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "anrl_ext/gate_tensors.h"

namespace anrl_ext {
namespace {

constexpr int kGateThreads = 512;

// The loop every phase uses: this block's threads over [0, count).
#define ANRL_BLOCK_LOOP(i, count) for (int64_t i = threadIdx.x; i < (count); i += blockDim.x)

template <typename T>
__global__ void __launch_bounds__(kGateThreads)
    gate_blend_forward_kernel(GateArgs<T> g, BlendInputs<T> in, BlendForwardOutputs<T> out) {
  const int64_t N = g.N, C = g.C, D = g.D;
  if (D > 0) {
    ANRL_BLOCK_LOOP(i, N * D) gate_hidden(g, i / D, i % D);
    __syncthreads();
  }
  ANRL_BLOCK_LOOP(i, N * C) gate_alpha(g, i / C, i % C);
  __syncthreads();
  ANRL_BLOCK_LOOP(c, C) blend_forward_channel(in, out, c);
}

template <typename T>
__global__ void __launch_bounds__(kGateThreads)
    gate_blend_backward_kernel(GateArgs<T> g, GateGrads<T> d, BlendInputs<T> in, BlendBackwardArgs<T> args) {
  const int64_t N = g.N, C = g.C, D = g.D, K = g.K();
  ANRL_BLOCK_LOOP(c, C) {
    blend_backward_channel(in, args, c);
    gate_head_grad_channel(g, d, c);
  }
  __syncthreads();
  ANRL_BLOCK_LOOP(i, N * K) gate_input_grad(g, d, i / K, i % K);
  if (D > 0) {
    __syncthreads();
    ANRL_BLOCK_LOOP(c, C) gate_hidden_grad_channel(g, d, c);
    if (g.b1) ANRL_BLOCK_LOOP(j, D) gate_hidden_bias_grad(g, d, j);
  }
}

#undef ANRL_BLOCK_LOOP

}  // namespace

GateForwardResult gate_blend_forward_cuda(const at::Tensor& mean, const at::Tensor& var, const OptTensor& gate_w1,
                                          const OptTensor& gate_b1, const at::Tensor& gate_wb,
                                          const OptTensor& gate_bb, const OptTensor& gate_wi,
                                          const OptTensor& bn_weight, const OptTensor& bn_bias,
                                          const OptTensor& in_weight, const OptTensor& in_bias,
                                          const OptTensor& running_mean, const OptTensor& running_var,
                                          bool use_batch_stats, bool update_running, double momentum, double eps,
                                          int64_t count) {
  c10::cuda::CUDAGuard guard(mean.device());
  GateForwardSetup s(mean, var, gate_w1, gate_b1, gate_wb, gate_bb, gate_wi, bn_weight, bn_bias, in_weight,
                     in_bias, running_mean, running_var, use_batch_stats);
  if (s.mean.numel() > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(s.mean.scalar_type(), "gate_blend_forward_cuda", [&] {
      gate_blend_forward_kernel<scalar_t><<<1, kGateThreads, 0, stream>>>(
          s.gate_args<scalar_t>(), s.blend.t.inputs<scalar_t>(0.0, eps, use_batch_stats),
          s.blend.outputs<scalar_t>(update_running && use_batch_stats, momentum, count));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return s.result();
}

GateBackwardResult gate_blend_backward_cuda(const at::Tensor& s0, const at::Tensor& s1, const at::Tensor& mean,
                                            const at::Tensor& var, const at::Tensor& alpha,
                                            const at::Tensor& hidden, const OptTensor& alpha_grad,
                                            const OptTensor& gate_w1, const OptTensor& gate_b1,
                                            const at::Tensor& gate_wb, const OptTensor& gate_bb,
                                            const OptTensor& gate_wi, const OptTensor& bn_weight,
                                            const OptTensor& bn_bias, const OptTensor& in_weight,
                                            const OptTensor& in_bias, const at::Tensor& bn_mean,
                                            const at::Tensor& bn_var, bool use_batch_stats, double eps,
                                            int64_t hw) {
  c10::cuda::CUDAGuard guard(mean.device());
  GateBackwardSetup s(s0, s1, mean, var, alpha, hidden, alpha_grad, gate_w1, gate_b1, gate_wb, gate_bb, gate_wi,
                      bn_weight, bn_bias, in_weight, in_bias, bn_mean, bn_var, hw);
  if (s.mean.numel() > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(s.mean.scalar_type(), "gate_blend_backward_cuda", [&] {
      gate_blend_backward_kernel<scalar_t><<<1, kGateThreads, 0, stream>>>(
          s.gate_args<scalar_t>(), s.grads<scalar_t>(hw), s.blend.t.inputs<scalar_t>(0.0, eps, use_batch_stats),
          s.blend.args<scalar_t>(hw));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return s.result();
}

}  // namespace anrl_ext

TORCH_LIBRARY_IMPL(anrl_ext, CUDA, m) {
  m.impl("gate_blend_forward", &anrl_ext::gate_blend_forward_cuda);
  m.impl("gate_blend_backward", &anrl_ext::gate_blend_backward_cuda);
}
