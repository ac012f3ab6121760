// Tensor-level setup of the gated middle ops (gate_blend_forward /
// gate_blend_backward), shared by the CPU and CUDA implementations: shape,
// dtype and device checks of the gate weights, outputs, scratch, and the
// raw-pointer structs of gate.h. The blend part reuses blend_tensors.h.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <tuple>

#include "anrl_ext/blend_tensors.h"
#include "anrl_ext/gate.h"

namespace anrl_ext {

// A gate weight in the statistics dtype, contiguous, with the expected shape;
// undefined when absent.
inline at::Tensor gate_weight(const OptTensor& t, const at::Tensor& mean, at::IntArrayRef shape,
                              const char* name) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  TORCH_CHECK_VALUE(t->sizes() == shape, "anrl_ext: ", name, " must have shape ", shape, ", got ",
                    t->sizes());
  TORCH_CHECK_VALUE(t->device() == mean.device(), "anrl_ext: ", name, " is on ", t->device(),
                    " but mean is on ", mean.device());
  return t->to(mean.scalar_type()).contiguous();
}

struct GateTensors {
  at::Tensor w1, b1, wb, bb, wi;
  int64_t D = 0;

  GateTensors(const at::Tensor& mean, const OptTensor& w1_in, const OptTensor& b1_in, const at::Tensor& wb_in,
              const OptTensor& bb_in, const OptTensor& wi_in) {
    const int64_t C = mean.size(1);
    if (w1_in.has_value() && w1_in->defined()) {
      TORCH_CHECK_VALUE(w1_in->dim() == 2 && w1_in->size(1) == C && w1_in->size(0) > 0,
                        "anrl_ext: gate_w1 must be (D, C) with C = ", C, ", got ", w1_in->sizes());
      D = w1_in->size(0);
      w1 = gate_weight(w1_in, mean, {D, C}, "gate_w1");
    }
    TORCH_CHECK_VALUE(D > 0 || !(b1_in.has_value() && b1_in->defined()),
                      "anrl_ext: gate_b1 given without gate_w1");
    b1 = gate_weight(b1_in, mean, {D}, "gate_b1");
    const int64_t K = D > 0 ? D : C;
    wb = gate_weight(wb_in, mean, {C, K}, "gate_wb");
    bb = gate_weight(bb_in, mean, {C}, "gate_bb");
    wi = gate_weight(wi_in, mean, {C, K}, "gate_wi");
  }

  template <typename T>
  GateArgs<T> args(const at::Tensor& s, const at::Tensor& z, const at::Tensor& alpha) const {
    auto ptr = [](const at::Tensor& t) -> const T* { return t.defined() ? t.const_data_ptr<T>() : nullptr; };
    return GateArgs<T>{s.size(0), s.size(1), D, s.const_data_ptr<T>(), ptr(w1), ptr(b1), ptr(wb), ptr(bb),
                       ptr(wi), z.numel() ? const_cast<T*>(z.const_data_ptr<T>()) : nullptr,
                       const_cast<T*>(alpha.const_data_ptr<T>())};
  }
};

using GateForwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// mean, var -> (alpha, hidden) and the blend setup that reads that alpha.
struct GateForwardSetup {
  at::Tensor mean, alpha, hidden;
  GateTensors gate;
  BlendForwardSetup blend;

  GateForwardSetup(const at::Tensor& mean_in, const at::Tensor& var, const OptTensor& w1, const OptTensor& b1,
                   const at::Tensor& wb, const OptTensor& bb, const OptTensor& wi, const OptTensor& bn_w,
                   const OptTensor& bn_b, const OptTensor& in_w, const OptTensor& in_b, const OptTensor& rm,
                   const OptTensor& rv, bool use_batch_stats)
      : mean(stats_tensor(mean_in)),
        alpha(at::empty_like(mean)),
        hidden(),
        gate(mean, w1, b1, wb, bb, wi),
        blend(mean, var, alpha, bn_w, bn_b, in_w, in_b, rm, rv, use_batch_stats) {
    hidden = at::empty({mean.size(0), gate.D}, mean.options());
  }

  template <typename T>
  GateArgs<T> gate_args() const { return gate.args<T>(mean, hidden, alpha); }

  GateForwardResult result() const {
    auto [scale, shift, bn_mean, bn_var] = blend.result();
    return {alpha, hidden, scale, shift, bn_mean, bn_var};
  }
};

using GateBackwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                      at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

struct GateBackwardSetup {
  at::Tensor mean, alpha, hidden, alpha_grad;
  GateTensors gate;
  BlendBackwardSetup blend;
  at::Tensor g_b, g_i, dz, d_w1, d_b1, d_wb, d_bb, d_wi;

  GateBackwardSetup(const at::Tensor& s0, const at::Tensor& s1, const at::Tensor& mean_in, const at::Tensor& var,
                    const at::Tensor& alpha_in, const at::Tensor& hidden_in, const OptTensor& alpha_grad_in,
                    const OptTensor& w1, const OptTensor& b1, const at::Tensor& wb, const OptTensor& bb,
                    const OptTensor& wi, const OptTensor& bn_w, const OptTensor& bn_b, const OptTensor& in_w,
                    const OptTensor& in_b, const at::Tensor& bn_mean, const at::Tensor& bn_var, int64_t hw)
      : mean(stats_tensor(mean_in)),
        gate(mean, w1, b1, wb, bb, wi),
        blend(s0, s1, mean, var, checked_alpha(alpha_in, mean), bn_w, bn_b, in_w, in_b, bn_mean, bn_var, hw) {
    alpha = blend.t.alpha;
    TORCH_CHECK_VALUE(hidden_in.dim() == 2 && hidden_in.size(0) == mean.size(0) && hidden_in.size(1) == gate.D,
                      "anrl_ext: hidden must be (N, D) = (", mean.size(0), ", ", gate.D, "), got ",
                      hidden_in.sizes());
    hidden = hidden_in.to(mean.scalar_type()).contiguous();
    if (alpha_grad_in.has_value() && alpha_grad_in->defined()) {
      alpha_grad = alpha_grad_in->to(mean.scalar_type()).contiguous();
      check_stats(alpha_grad, mean, "alpha_grad");
    }
    const int64_t N = mean.size(0), C = mean.size(1), D = gate.D, K = D > 0 ? D : C;
    g_b = at::empty_like(mean);
    g_i = gate.wi.defined() ? at::empty_like(mean) : at::empty({0}, mean.options());
    dz = at::empty({N, D}, mean.options());
    auto grad_like = [&](const at::Tensor& w) {
      return w.defined() ? at::empty_like(w) : at::empty({0}, mean.options());
    };
    d_w1 = grad_like(gate.w1);
    d_b1 = grad_like(gate.b1);
    d_wb = at::empty({C, K}, mean.options());
    d_bb = grad_like(gate.bb);
    d_wi = grad_like(gate.wi);
  }

  static at::Tensor checked_alpha(const at::Tensor& a, const at::Tensor& mean) {
    check_stats(a, mean, "alpha");
    return a.contiguous();
  }

  template <typename T>
  GateArgs<T> gate_args() const { return gate.args<T>(mean, hidden, alpha); }

  template <typename T>
  GateGrads<T> grads(int64_t hw) const {
    auto p = [](const at::Tensor& x) { return x.numel() ? x.mutable_data_ptr<T>() : nullptr; };
    return GateGrads<T>{blend.d_alpha.const_data_ptr<T>(),
                        alpha_grad.defined() ? alpha_grad.const_data_ptr<T>() : nullptr,
                        p(g_b), p(g_i), p(dz), p(d_w1), p(d_b1), p(d_wb), p(d_bb), p(d_wi),
                        blend.coef_c.mutable_data_ptr<T>(), T(1) / T(hw)};
  }

  GateBackwardResult result() const {
    return {d_w1, d_b1, d_wb, d_bb, d_wi, blend.d_bn_weight, blend.d_bn_bias, blend.d_in_weight, blend.d_in_bias,
            blend.coef_a, blend.coef_b, blend.coef_c};
  }
};

}  // namespace anrl_ext
