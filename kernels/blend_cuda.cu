// CUDA implementations of the middle ops: one thread per channel over the
// shared per-channel math of csrc/include/anrl_ext/blend.h (the CPU build runs
// the same functions). Reads of (N, C) tensors are coalesced across a warp
// because neighbouring threads own neighbouring channels.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "anrl_ext/blend_tensors.h"

namespace anrl_ext {
namespace {

constexpr int kBlendThreads = 128;

template <typename T>
__global__ void blend_forward_kernel(BlendInputs<T> in, BlendForwardOutputs<T> out) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c < in.C) blend_forward_channel(in, out, c);
}

template <typename T>
__global__ void blend_backward_kernel(BlendInputs<T> in, BlendBackwardArgs<T> args) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c < in.C) blend_backward_channel(in, args, c);
}

unsigned blocks_for(int64_t c) { return unsigned((c + kBlendThreads - 1) / kBlendThreads); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> blend_forward_cuda(
    const at::Tensor& mean, const at::Tensor& var, const OptTensor& alpha, double alpha_value,
    const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& in_weight,
    const OptTensor& in_bias, const OptTensor& running_mean, const OptTensor& running_var,
    bool use_batch_stats, bool update_running, double momentum, double eps, int64_t count) {
  c10::cuda::CUDAGuard guard(mean.device());
  BlendForwardSetup s(mean, var, alpha, bn_weight, bn_bias, in_weight, in_bias, running_mean,
                      running_var, use_batch_stats);
  if (s.t.mean.size(1) > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(s.t.mean.scalar_type(), "blend_forward_cuda", [&] {
      blend_forward_kernel<scalar_t><<<blocks_for(s.t.mean.size(1)), kBlendThreads, 0, stream>>>(
          s.t.inputs<scalar_t>(alpha_value, eps, use_batch_stats),
          s.outputs<scalar_t>(update_running && use_batch_stats, momentum, count));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return s.result();
}

BlendBackwardResult blend_backward_cuda(const at::Tensor& s0, const at::Tensor& s1, const at::Tensor& mean,
                                        const at::Tensor& var, const OptTensor& alpha, double alpha_value,
                                        const OptTensor& bn_weight, const OptTensor& bn_bias,
                                        const OptTensor& in_weight, const OptTensor& in_bias,
                                        const at::Tensor& bn_mean, const at::Tensor& bn_var,
                                        bool use_batch_stats, double eps, int64_t hw) {
  c10::cuda::CUDAGuard guard(mean.device());
  BlendBackwardSetup s(s0, s1, mean, var, alpha, bn_weight, bn_bias, in_weight, in_bias, bn_mean,
                       bn_var, hw);
  if (s.t.mean.size(1) > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(s.t.mean.scalar_type(), "blend_backward_cuda", [&] {
      blend_backward_kernel<scalar_t><<<blocks_for(s.t.mean.size(1)), kBlendThreads, 0, stream>>>(
          s.t.inputs<scalar_t>(alpha_value, eps, use_batch_stats), s.args<scalar_t>(hw));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return s.result();
}

}  // namespace anrl_ext

TORCH_LIBRARY_IMPL(anrl_ext, CUDA, m) {
  m.impl("blend_forward", &anrl_ext::blend_forward_cuda);
  m.impl("blend_backward", &anrl_ext::blend_backward_cuda);
}
