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
#include <tuple>

namespace anrl_ext {
std::tuple<at::Tensor, at::Tensor> moments_cpu(const at::Tensor& x);
at::Tensor affine_cpu(const at::Tensor& x, const at::Tensor& center,
                      const at::Tensor& scale, const at::Tensor& shift);
std::tuple<at::Tensor, at::Tensor> reduce_cpu(const at::Tensor& dy, const at::Tensor& x,
                                              const at::Tensor& center);
at::Tensor affine2_cpu(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& center,
                       const at::Tensor& a, const at::Tensor& b, const at::Tensor& c);
}  // namespace anrl_ext
