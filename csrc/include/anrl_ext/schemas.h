// Operator schemas that two namespaces share: anrl_ext (cpu / cuda kernels, registration.cpp) and
// anrl_ext_triton (the Triton backend's passes under the same C++ autograd, blend_apply_autograd.cpp).
#pragma once

namespace anrl_ext {
namespace schema {

inline constexpr const char* kBlendApplyForward =
    "blend_apply_forward(Tensor x, Tensor? alpha, float alpha_value, Tensor? bn_weight, Tensor? bn_bias, "
    "Tensor? in_weight, Tensor? in_bias, Tensor(a!)? running_mean, Tensor(b!)? running_var, "
    "bool use_batch_stats, bool update_running, float momentum, float eps) -> (Tensor y, Tensor mean, "
    "Tensor var, Tensor bn_mean, Tensor bn_var)";
inline constexpr const char* kBlendApply =
    "blend_apply(Tensor x, Tensor? alpha, float alpha_value, Tensor? bn_weight, Tensor? bn_bias, "
    "Tensor? in_weight, Tensor? in_bias, Tensor(a!)? running_mean, Tensor(b!)? running_var, "
    "bool use_batch_stats, bool update_running, float momentum, float eps) -> Tensor";
inline constexpr const char* kGateBlendApply =
    "gate_blend_apply(Tensor x, Tensor? gate_w1, Tensor? gate_b1, Tensor gate_wb, Tensor? gate_bb, "
    "Tensor? gate_wi, Tensor? bn_weight, Tensor? bn_bias, Tensor? in_weight, Tensor? in_bias, "
    "Tensor(a!)? running_mean, Tensor(b!)? running_var, bool use_batch_stats, bool update_running, "
    "float momentum, float eps) -> (Tensor y, Tensor alpha)";
inline constexpr const char* kGateBlendApplyForward =
    "gate_blend_apply_forward(Tensor x, Tensor? gate_w1, Tensor? gate_b1, Tensor gate_wb, Tensor? gate_bb, "
    "Tensor? gate_wi, Tensor? bn_weight, Tensor? bn_bias, Tensor? in_weight, Tensor? in_bias, "
    "Tensor(a!)? running_mean, Tensor(b!)? running_var, bool use_batch_stats, bool update_running, "
    "float momentum, float eps) -> (Tensor y, Tensor alpha, Tensor hidden, Tensor mean, Tensor var, "
    "Tensor bn_mean, Tensor bn_var)";

}  // namespace schema
}  // namespace anrl_ext
