// The four heavy primitives of the fused AFNM op (see DESIGN.md section 2).
//
//   moments(x)                    -> (mean, var)   per (n, c), biased var
//   affine(x, m, s, t)            -> s * (x - m) + t
//   reduce(dy, x, m)              -> (sum dy, sum dy * (x - m))   per (n, c)
//   affine2(dy, x, m, a, b, c)    -> a * dy + b * (x - m) + c
//
// Coefficients and statistics are (N, C) in the accumulation dtype.
#pragma once
#include <ATen/ATen.h>
#include <optional>
#include <tuple>

namespace anrl_ext {
std::tuple<at::Tensor, at::Tensor> moments_cpu(const at::Tensor& x);
at::Tensor affine_cpu(const at::Tensor& x, const at::Tensor& center,
                      const at::Tensor& scale, const at::Tensor& shift);
std::tuple<at::Tensor, at::Tensor> reduce_cpu(const at::Tensor& dy, const at::Tensor& x,
                                              const at::Tensor& center);
at::Tensor affine2_cpu(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& center,
                       const at::Tensor& a, const at::Tensor& b, const at::Tensor& c);

// The (N, C) middle (blend.h): BN merge + running stats + blend coefficients,
// and its closed-form first-order backward.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> blend_forward_cpu(
    const at::Tensor& mean, const at::Tensor& var, const std::optional<at::Tensor>& alpha,
    double alpha_value, const std::optional<at::Tensor>& bn_weight,
    const std::optional<at::Tensor>& bn_bias, const std::optional<at::Tensor>& in_weight,
    const std::optional<at::Tensor>& in_bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var, bool use_batch_stats, bool update_running,
    double momentum, double eps, int64_t count);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
blend_backward_cpu(const at::Tensor& s0, const at::Tensor& s1, const at::Tensor& mean,
                   const at::Tensor& var, const std::optional<at::Tensor>& alpha, double alpha_value,
                   const std::optional<at::Tensor>& bn_weight, const std::optional<at::Tensor>& bn_bias,
                   const std::optional<at::Tensor>& in_weight, const std::optional<at::Tensor>& in_bias,
                   const at::Tensor& bn_mean, const at::Tensor& bn_var, bool use_batch_stats, double eps,
                   int64_t hw);

// The gated middle (gate.h): the AFNM gate MLP, then the middle above, in one
// call; and its closed-form first-order backward. Absent gate tensors come
// back as empty gradients.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gate_blend_forward_cpu(
    const at::Tensor& mean, const at::Tensor& var, const std::optional<at::Tensor>& gate_w1,
    const std::optional<at::Tensor>& gate_b1, const at::Tensor& gate_wb, const std::optional<at::Tensor>& gate_bb,
    const std::optional<at::Tensor>& gate_wi, const std::optional<at::Tensor>& bn_weight,
    const std::optional<at::Tensor>& bn_bias, const std::optional<at::Tensor>& in_weight,
    const std::optional<at::Tensor>& in_bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var, bool use_batch_stats, bool update_running, double momentum,
    double eps, int64_t count);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gate_blend_backward_cpu(const at::Tensor& s0, const at::Tensor& s1, const at::Tensor& mean, const at::Tensor& var,
                        const at::Tensor& alpha, const at::Tensor& hidden, const std::optional<at::Tensor>& alpha_grad,
                        const std::optional<at::Tensor>& gate_w1, const std::optional<at::Tensor>& gate_b1,
                        const at::Tensor& gate_wb, const std::optional<at::Tensor>& gate_bb,
                        const std::optional<at::Tensor>& gate_wi, const std::optional<at::Tensor>& bn_weight,
                        const std::optional<at::Tensor>& bn_bias, const std::optional<at::Tensor>& in_weight,
                        const std::optional<at::Tensor>& in_bias, const at::Tensor& bn_mean,
                        const at::Tensor& bn_var, bool use_batch_stats, double eps, int64_t hw);
}  // namespace anrl_ext
