// CUDA implementations of the gated middle ops: the phases of
// csrc/include/anrl_ext/gate.h. The gate mixes channels (alpha[n, c] reads
// every mean of sample n; the weight gradients sum over samples and channels),
// so each phase must finish before the next starts. Two ways to launch them
// (anrl_ext/gate_launch.h picks by the gate's size):
//   one block : every phase in one block, __syncthreads between them, one launch
//               each way. For small gates, where a launch's host time (~15-30 us
//               on the H200's host) costs more than the phases.
//   per phase : one launch per phase, one thread per index over as many blocks
//               as the phase has indices. One block costs about 1 ns per
//               multiply-add (run 4: 1.5-1.7 ms a call at N, C, D = 64, 512, 32);
//               spread, a phase is bound by its longest per-thread loop.
// Each output is written by one thread with the same loop either way, so both
// launches give the same bits.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "anrl_ext/gate_launch.h"
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

// --- the same phases, one launch each -----------------------------------------

constexpr int kPhaseThreads = 128;

// One thread per index of a phase, over as many blocks as it takes.
template <typename Phase>
__global__ void __launch_bounds__(kPhaseThreads) gate_phase_kernel(Phase phase, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) phase(i);
}

template <typename Phase>
void launch_phase(const Phase& phase, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  const auto blocks = static_cast<unsigned int>((count + kPhaseThreads - 1) / kPhaseThreads);  // N x C / 128
  gate_phase_kernel<<<blocks, kPhaseThreads, 0, stream>>>(phase, count);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Forward: hidden (n, j), then alpha (n, c), then the blend per channel.
template <typename T>
struct HiddenPhase {
  GateArgs<T> g;
  __device__ void operator()(int64_t i) const { gate_hidden(g, i / g.D, i % g.D); }
};

template <typename T>
struct AlphaPhase {
  GateArgs<T> g;
  __device__ void operator()(int64_t i) const { gate_alpha(g, i / g.C, i % g.C); }
};

template <typename T>
struct BlendForwardPhase {
  BlendInputs<T> in;
  BlendForwardOutputs<T> out;
  __device__ void operator()(int64_t c) const { blend_forward_channel(in, out, c); }
};

// Backward: blend and heads per channel, then the heads' input (n, k), then
// (hidden layer only) W1 and the means per channel, and b1 per hidden unit.
template <typename T>
struct HeadGradPhase {
  GateArgs<T> g;
  GateGrads<T> d;
  BlendInputs<T> in;
  BlendBackwardArgs<T> args;
  __device__ void operator()(int64_t c) const {
    blend_backward_channel(in, args, c);
    gate_head_grad_channel(g, d, c);
  }
};

template <typename T>
struct InputGradPhase {
  GateArgs<T> g;
  GateGrads<T> d;
  __device__ void operator()(int64_t i) const { gate_input_grad(g, d, i / g.K(), i % g.K()); }
};

template <typename T>
struct HiddenGradPhase {  // indices [0, C): channels; [C, C + D): hidden units (with b1)
  GateArgs<T> g;
  GateGrads<T> d;
  __device__ void operator()(int64_t i) const {
    if (i < g.C) gate_hidden_grad_channel(g, d, i);
    else gate_hidden_bias_grad(g, d, i - g.C);
  }
};

template <typename T>
bool in_one_block(const GateArgs<T>& g) {
  return gate_in_one_block(g.N, g.C, g.D, g.wi != nullptr);
}

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
      const auto g = s.gate_args<scalar_t>();
      const auto in = s.blend.t.inputs<scalar_t>(0.0, eps, use_batch_stats);
      const auto out = s.blend.outputs<scalar_t>(update_running && use_batch_stats, momentum, count);
      if (in_one_block(g)) {
        gate_blend_forward_kernel<scalar_t><<<1, kGateThreads, 0, stream>>>(g, in, out);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      } else {
        if (g.D > 0) launch_phase(HiddenPhase<scalar_t>{g}, g.N * g.D, stream);
        launch_phase(AlphaPhase<scalar_t>{g}, g.N * g.C, stream);
        launch_phase(BlendForwardPhase<scalar_t>{in, out}, g.C, stream);
      }
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
      const auto g = s.gate_args<scalar_t>();
      const auto d = s.grads<scalar_t>(hw);
      const auto in = s.blend.t.inputs<scalar_t>(0.0, eps, use_batch_stats);
      const auto args = s.blend.args<scalar_t>(hw);
      if (in_one_block(g)) {
        gate_blend_backward_kernel<scalar_t><<<1, kGateThreads, 0, stream>>>(g, d, in, args);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      } else {
        launch_phase(HeadGradPhase<scalar_t>{g, d, in, args}, g.C, stream);
        launch_phase(InputGradPhase<scalar_t>{g, d}, g.N * g.K(), stream);
        if (g.D > 0) launch_phase(HiddenGradPhase<scalar_t>{g, d}, g.C + (g.b1 ? g.D : 0), stream);
      }
    });
  }
  return s.result();
}

}  // namespace anrl_ext

TORCH_LIBRARY_IMPL(anrl_ext, CUDA, m) {
  m.impl("gate_blend_forward", &anrl_ext::gate_blend_forward_cuda);
  m.impl("gate_blend_backward", &anrl_ext::gate_blend_backward_cuda);
}
