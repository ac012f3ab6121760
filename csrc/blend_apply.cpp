// The first-order path's forward and backward as one operator call each:
//
//   blend_apply_forward : moments -> blend_forward  -> affine   (y, mean, var, bn_mean, bn_var)
//   blend_apply_backward: reduce  -> blend_backward -> affine2  (dx, d_alpha, d_bn_weight, ...)
//   gate_blend_apply_forward: moments -> gate_blend_forward -> affine  (y, alpha, hidden, mean, var, ...)
//
// The three operators are called through the dispatcher from C++, so the
// device's own kernels run (CPU or CUDA) and nothing here is device code. On a
// GPU each operator call from Python costs more host time than a launch from
// C++ (benchmarks/results/GPU_NOTES.md), and the first-order path is bound by
// host time: two calls per forward + backward instead of six. Registered as
// CompositeExplicitAutograd; fast_blend calls them below autograd, as their
// autograd is its own.
#include <torch/library.h>

#include "anrl_ext/checks.h"
#include "anrl_ext/dispatch.h"
#include "anrl_ext/ops.h"

namespace anrl_ext {
using at::Tensor;
using OptTensor = std::optional<at::Tensor>;

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> blend_apply_forward(
    const Tensor& x_in, const OptTensor& alpha, double alpha_value, const OptTensor& bn_weight,
    const OptTensor& bn_bias, const OptTensor& in_weight, const OptTensor& in_bias,
    const OptTensor& running_mean, const OptTensor& running_var, bool use_batch_stats, bool update_running,
    double momentum, double eps) {
  static const auto moments = typed_op<sig::Moments>("anrl_ext::moments");
  static const auto blend_forward = typed_op<sig::BlendForward>("anrl_ext::blend_forward");
  static const auto affine = typed_op<sig::Affine>("anrl_ext::affine");
  check_feature_map(x_in, "x");
  // A strided x is copied into a kernel layout once here, not by each of the two passes.
  const Tensor x = as_kernel_layout(x_in);
  auto [mean, var] = moments.call(x);
  const int64_t count = x.size(0) * x.size(2) * x.size(3);
  auto [scale, shift, bn_mean, bn_var] =
      blend_forward.call(mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, running_mean,
                         running_var, use_batch_stats, update_running, momentum, eps, count);
  Tensor y = affine.call(x, mean, scale, shift);
  return {y, mean, var, bn_mean, bn_var};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> blend_apply_backward(
    const Tensor& dy_in, const Tensor& x_in, const Tensor& mean, const Tensor& var, const OptTensor& alpha,
    double alpha_value, const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& in_weight,
    const OptTensor& in_bias, const Tensor& bn_mean, const Tensor& bn_var, bool use_batch_stats, double eps) {
  static const auto reduce = typed_op<sig::Reduce>("anrl_ext::reduce");
  static const auto blend_backward = typed_op<sig::BlendBackward>("anrl_ext::blend_backward");
  static const auto affine2 = typed_op<sig::Affine2>("anrl_ext::affine2");
  // dy in x's kernel layout once (an expanded gradient, as from y.sum(), is
  // otherwise copied by each of the two passes).
  const auto [x, dy] = input_and_grad(x_in, dy_in);
  auto [s0, s1] = reduce.call(dy, x, mean);
  auto [d_alpha, d_bn_weight, d_bn_bias, d_in_weight, d_in_bias, a, b, c] =
      blend_backward.call(s0, s1, mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, bn_mean,
                          bn_var, use_batch_stats, eps, x.size(2) * x.size(3));
  Tensor dx = affine2.call(dy, x, mean, a, b, c);
  return {dx, d_alpha, d_bn_weight, d_bn_bias, d_in_weight, d_in_bias};
}

// moments -> gate_blend_forward -> affine: AFNM's gated forward (gate_blend_apply's, without its autograd).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gate_blend_apply_forward(
    const Tensor& x_in, const OptTensor& w1, const OptTensor& b1, const Tensor& wb, const OptTensor& bb,
    const OptTensor& wi, const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& in_weight,
    const OptTensor& in_bias, const OptTensor& running_mean, const OptTensor& running_var, bool use_batch_stats,
    bool update_running, double momentum, double eps) {
  static const auto moments = typed_op<sig::Moments>("anrl_ext::moments");
  static const auto gate_forward = typed_op<sig::GateForward>("anrl_ext::gate_blend_forward");
  static const auto affine = typed_op<sig::Affine>("anrl_ext::affine");
  check_feature_map(x_in, "x");
  const Tensor x = as_kernel_layout(x_in);  // a strided x copied once for both passes
  auto [mean, var] = moments.call(x);
  auto [alpha, hidden, scale, shift, bn_mean, bn_var] =
      gate_forward.call(mean, var, w1, b1, wb, bb, wi, bn_weight, bn_bias, in_weight, in_bias, running_mean,
                        running_var, use_batch_stats, update_running, momentum, eps, x.size(0) * x.size(2) * x.size(3));
  Tensor y = affine.call(x, mean, scale, shift);
  return {y, alpha, hidden, mean, var, bn_mean, bn_var};
}

}  // namespace anrl_ext

TORCH_LIBRARY_IMPL(anrl_ext, CompositeExplicitAutograd, m) {
  m.impl("blend_apply_forward", &anrl_ext::blend_apply_forward);
  m.impl("blend_apply_backward", &anrl_ext::blend_apply_backward);
  m.impl("gate_blend_apply_forward", &anrl_ext::gate_blend_apply_forward);
}
