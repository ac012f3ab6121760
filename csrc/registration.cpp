// Operator schemas (namespace anrl_ext) and their CPU implementations.
// Autograd formulas and fake (meta) kernels are registered from Python in
// anrl_ext/ops/native.py, written with these same primitives.
#include <torch/library.h>
#include "anrl_ext/ops.h"
#include "anrl_ext/schemas.h"

TORCH_LIBRARY(anrl_ext, m) {
  m.def("moments(Tensor x) -> (Tensor, Tensor)");
  m.def("affine(Tensor x, Tensor center, Tensor scale, Tensor shift) -> Tensor");
  m.def("reduce(Tensor dy, Tensor x, Tensor center) -> (Tensor, Tensor)");
  m.def("affine2(Tensor dy, Tensor x, Tensor center, Tensor a, Tensor b, Tensor c) -> Tensor");
  // The (N, C) middle of the first-order fused path, one launch each way. alpha,
  // the affine weights and the running statistics are read (and the buffers
  // updated) in their own dtype; each weight's gradient is in its weight's dtype.
  m.def(
      "blend_forward(Tensor mean, Tensor var, Tensor? alpha, float alpha_value, Tensor? bn_weight, "
      "Tensor? bn_bias, Tensor? in_weight, Tensor? in_bias, Tensor(a!)? running_mean, "
      "Tensor(b!)? running_var, bool use_batch_stats, bool update_running, float momentum, float eps, "
      "int count) -> (Tensor scale, Tensor shift, Tensor bn_mean, Tensor bn_var)");
  // hw (H * W) is a SymInt so that the C++ autograd can pass a traced input's symbolic plane size
  // (torch.compile, torch.export); the kernels take it as an int64_t.
  m.def(
      "blend_backward(Tensor s0, Tensor s1, Tensor mean, Tensor var, Tensor? alpha, float alpha_value, "
      "Tensor? bn_weight, Tensor? bn_bias, Tensor? in_weight, Tensor? in_bias, Tensor bn_mean, "
      "Tensor bn_var, bool use_batch_stats, float eps, SymInt hw) -> (Tensor d_alpha, Tensor d_bn_weight, "
      "Tensor d_bn_bias, Tensor d_in_weight, Tensor d_in_bias, Tensor a, Tensor b, Tensor c)");
  // The whole first-order forward (moments, blend_forward, affine) and backward
  // (reduce, blend_backward, affine2) as one call each (blend_apply.cpp).
  m.def(anrl_ext::schema::kBlendApplyForward);
  m.def(
      "blend_apply_backward(Tensor dy, Tensor x, Tensor mean, Tensor var, Tensor? alpha, float alpha_value, "
      "Tensor? bn_weight, Tensor? bn_bias, Tensor? in_weight, Tensor? in_bias, Tensor bn_mean, "
      "Tensor bn_var, bool use_batch_stats, float eps) -> (Tensor dx, Tensor d_alpha, Tensor d_bn_weight, "
      "Tensor d_bn_bias, Tensor d_in_weight, Tensor d_in_bias)");
  // The same two calls as one op whose autograd is in C++ (blend_apply_autograd.cpp).
  m.def(anrl_ext::schema::kBlendApply);
  // The same middle with the AFNM gate MLP computed inside (alpha from the means).
  m.def(
      "gate_blend_forward(Tensor mean, Tensor var, Tensor? gate_w1, Tensor? gate_b1, Tensor gate_wb, "
      "Tensor? gate_bb, Tensor? gate_wi, Tensor? bn_weight, Tensor? bn_bias, Tensor? in_weight, "
      "Tensor? in_bias, Tensor(a!)? running_mean, Tensor(b!)? running_var, bool use_batch_stats, "
      "bool update_running, float momentum, float eps, int count) -> (Tensor alpha, Tensor hidden, "
      "Tensor scale, Tensor shift, Tensor bn_mean, Tensor bn_var)");
  m.def(
      "gate_blend_backward(Tensor s0, Tensor s1, Tensor mean, Tensor var, Tensor alpha, Tensor hidden, "
      "Tensor? alpha_grad, Tensor? gate_w1, Tensor? gate_b1, Tensor gate_wb, Tensor? gate_bb, "
      "Tensor? gate_wi, Tensor? bn_weight, Tensor? bn_bias, Tensor? in_weight, Tensor? in_bias, "
      "Tensor bn_mean, Tensor bn_var, bool use_batch_stats, float eps, SymInt hw) -> (Tensor d_w1, "
      "Tensor d_b1, Tensor d_wb, Tensor d_bb, Tensor d_wi, Tensor d_bn_weight, Tensor d_bn_bias, "
      "Tensor d_in_weight, Tensor d_in_bias, Tensor a, Tensor b, Tensor c)");
  // moments, gate_blend_forward and affine as one call (blend_apply.cpp): (y, alpha, hidden, mean, var,
  // bn_mean, bn_var)
  m.def(anrl_ext::schema::kGateBlendApplyForward);
  // The same as one op whose autograd is in C++
  // (reduce, gate_blend_backward, affine2; blend_apply_autograd.cpp).
  m.def(anrl_ext::schema::kGateBlendApply);
}

TORCH_LIBRARY_IMPL(anrl_ext, CPU, m) {
  m.impl("moments", &anrl_ext::moments_cpu);
  m.impl("affine", &anrl_ext::affine_cpu);
  m.impl("reduce", &anrl_ext::reduce_cpu);
  m.impl("affine2", &anrl_ext::affine2_cpu);
  m.impl("blend_forward", &anrl_ext::blend_forward_cpu);
  m.impl("blend_backward", &anrl_ext::blend_backward_cpu);
  m.impl("gate_blend_forward", &anrl_ext::gate_blend_forward_cpu);
  m.impl("gate_blend_backward", &anrl_ext::gate_blend_backward_cpu);
}
