// anrl_ext::blend_apply: the first-order fused blend with its autograd in C++.
//
//   y = blend_apply(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias,
//                   running_mean, running_var, use_batch_stats, update_running, momentum, eps)
//
// The forward is one call of blend_apply_forward, the backward one call of
// blend_apply_backward (blend_apply.cpp), as fast_blend's Python Function does
// them, but the Function itself is a torch::autograd::Function: no Python runs
// on the way forward past the op call, and none in the backward. On a GPU the
// op is bound by host time (benchmarks/results/GPU_NOTES.md, run 4), and the
// backward runs on autograd's device thread, where a Python backward must
// first take the GIL.
//
// Only for alpha that does not read the means (an alpha tensor or a float),
// which is what the functional op and the fixed-blend layers (BN, IN, IBN) give.
// A backward that must itself be differentiable (create_graph=True) calls back
// into Python, anrl_ext.ops.native.blend_apply_double_backward, which recomputes
// through the primitives' registered autograd formulas exactly as the Python
// Function does: any order of differentiation runs on the same kernels. The
// libtorch build (CMakeLists.txt, no Python) has the first-order backward only.
#include <torch/autograd.h>
#include <torch/library.h>
#ifdef TORCH_EXTENSION_NAME  // the Python extension anrl_ext._C
#include <torch/extension.h>
#endif

#include <array>

#include "anrl_ext/dispatch.h"

namespace anrl_ext {
namespace {

using at::Tensor;
using OptTensor = std::optional<at::Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The four affine weights in their slot order: bn_weight, bn_bias, in_weight, in_bias.
using Affines = std::array<OptTensor, 4>;

// Passed to the Function as a non-tensor argument: the running statistics are
// updated in place, not differentiated, so they are no inputs of the graph.
struct RunningStats {
  OptTensor mean, var;
};

OptTensor present(const Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; }

// A gradient in its input's dtype.
Tensor in_dtype_of(const Tensor& g, const Tensor& like) {
  return g.scalar_type() == like.scalar_type() ? g : g.to(like.scalar_type());
}

// d alpha from the kernel is (N, C); a (C,) or 0-dim alpha was broadcast to it.
Tensor sum_to_alpha(const Tensor& g, const Tensor& alpha) {
  Tensor out = g;
  if (alpha.dim() == 1) out = g.sum(0);
  else if (alpha.dim() == 0) out = g.sum();
  return in_dtype_of(out, alpha);
}

class BlendApply : public torch::autograd::Function<BlendApply> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const OptTensor& alpha, double alpha_value,
                               const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& in_weight,
                               const OptTensor& in_bias, const RunningStats& running, bool use_batch_stats,
                               bool update_running, double momentum, double eps) {
    static const auto apply_forward = typed_op<sig::ApplyForward>("anrl_ext::blend_apply_forward");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [y, mean, var, bn_mean, bn_var] =
        apply_forward.call(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, running.mean, running.var,
                           use_batch_stats, update_running, momentum, eps);
    ctx->save_for_backward({x, mean, var, bn_mean, bn_var, alpha.value_or(Tensor()), bn_weight.value_or(Tensor()),
                            bn_bias.value_or(Tensor()), in_weight.value_or(Tensor()), in_bias.value_or(Tensor())});
    ctx->saved_data["alpha_value"] = alpha_value;
    ctx->saved_data["use_batch_stats"] = use_batch_stats;
    ctx->saved_data["eps"] = eps;
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &mean = saved[1], &var = saved[2], &bn_mean = saved[3], &bn_var = saved[4];
    const Tensor& alpha = saved[5];
    const Affines w = {present(saved[6]), present(saved[7]), present(saved[8]), present(saved[9])};
    const double alpha_value = ctx->saved_data["alpha_value"].toDouble();
    const bool use_batch_stats = ctx->saved_data["use_batch_stats"].toBool();
    const double eps = ctx->saved_data["eps"].toDouble();
    // needs_input_grad counts the graph's inputs: x, then each tensor argument that was given.
    std::array<bool, 6> needs{};  // x, alpha, bn_weight, bn_bias, in_weight, in_bias
    size_t edge = 0;
    for (size_t i = 0; i < needs.size(); ++i) {
      if (i == 0 || saved[4 + i].defined()) needs[i] = ctx->needs_input_grad(edge++);
    }
    const Tensor& gy = grads[0];  // materialised: zeros when y's gradient is unused
    std::array<Tensor, 6> g;  // gradients of x, alpha and the affine weights
    if (at::GradMode::is_enabled()) {
      g = double_backward(x, alpha, alpha_value, w, bn_mean, bn_var, use_batch_stats, eps, needs, gy);
    } else {
      g = first_order(x, mean, var, alpha, alpha_value, w, bn_mean, bn_var, use_batch_stats, eps, needs[0], gy);
      if (needs[1]) g[1] = sum_to_alpha(g[1], alpha);
      for (size_t i = 0; i < 4; ++i) {
        g[2 + i] = needs[2 + i] ? in_dtype_of(g[2 + i], *w[i]) : Tensor();
      }
      if (!needs[1]) g[1] = Tensor();
    }
    // One entry per forward argument; the non-tensor ones get none.
    return {g[0], g[1], Tensor(), g[2], g[3], g[4], g[5], Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }

 private:
  static std::array<Tensor, 6> first_order(const Tensor& x, const Tensor& mean, const Tensor& var,
                                           const Tensor& alpha, double alpha_value, const Affines& w,
                                           const Tensor& bn_mean, const Tensor& bn_var, bool use_batch_stats,
                                           double eps, bool needs_x, const Tensor& gy) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    if (needs_x) {
      static const auto apply_backward = typed_op<sig::ApplyBackward>("anrl_ext::blend_apply_backward");
      auto [dx, d_alpha, dwb, dbb, dwi, dbi] = apply_backward.call(
          gy, x, mean, var, present(alpha), alpha_value, w[0], w[1], w[2], w[3], bn_mean, bn_var, use_batch_stats,
          eps);
      return {dx, d_alpha, dwb, dbb, dwi, dbi};
    }
    // No dx wanted: the reduction and the middle, not the map that writes dx.
    static const auto reduce = typed_op<sig::Reduce>("anrl_ext::reduce");
    static const auto blend_backward = typed_op<sig::BlendBackward>("anrl_ext::blend_backward");
    auto [s0, s1] = reduce.call(gy, x, mean);
    auto out = blend_backward.call(s0, s1, mean, var, present(alpha), alpha_value, w[0], w[1], w[2], w[3], bn_mean,
                                   bn_var, use_batch_stats, eps, x.size(2) * x.size(3));
    return {Tensor(), std::get<0>(out), std::get<1>(out), std::get<2>(out), std::get<3>(out), std::get<4>(out)};
  }

  static std::array<Tensor, 6> double_backward(const Tensor& x, const Tensor& alpha, double alpha_value,
                                               const Affines& w, const Tensor& bn_mean, const Tensor& bn_var,
                                               bool use_batch_stats, double eps, const std::array<bool, 6>& needs,
                                               const Tensor& gy) {
#ifndef TORCH_EXTENSION_NAME
    TORCH_CHECK(false, "anrl_ext::blend_apply: a differentiable backward (create_graph=True) needs the Python "
                "package anrl_ext; this libtorch build has the first-order backward only");
#else
    namespace py = pybind11;
    py::gil_scoped_acquire gil;
    py::object fn = py::module_::import("anrl_ext.ops.native").attr("blend_apply_double_backward");
    py::object got = fn(x, present(alpha), alpha_value, w[0], w[1], w[2], w[3], bn_mean, bn_var, use_batch_stats,
                        eps, std::vector<bool>(needs.begin(), needs.end()), gy);
    const auto grads = got.cast<std::vector<OptTensor>>();
    TORCH_CHECK(grads.size() == 6, "anrl_ext: blend_apply_double_backward gave ", grads.size(),
                " gradients, expected 6");
    std::array<Tensor, 6> g;
    for (size_t i = 0; i < 6; ++i) g[i] = grads[i].value_or(Tensor());
    return g;
#endif
  }
};

Tensor blend_apply_autograd(const Tensor& x, const OptTensor& alpha, double alpha_value, const OptTensor& bn_weight,
                            const OptTensor& bn_bias, const OptTensor& in_weight, const OptTensor& in_bias,
                            const OptTensor& running_mean, const OptTensor& running_var, bool use_batch_stats,
                            bool update_running, double momentum, double eps) {
  return BlendApply::apply(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias,
                           RunningStats{running_mean, running_var}, use_batch_stats, update_running, momentum,
                           eps)[0];
}

// Without autograd (inference mode, or below the Autograd key): the forward alone.
Tensor blend_apply_plain(const Tensor& x, const OptTensor& alpha, double alpha_value, const OptTensor& bn_weight,
                         const OptTensor& bn_bias, const OptTensor& in_weight, const OptTensor& in_bias,
                         const OptTensor& running_mean, const OptTensor& running_var, bool use_batch_stats,
                         bool update_running, double momentum, double eps) {
  static const auto apply_forward = typed_op<sig::ApplyForward>("anrl_ext::blend_apply_forward");
  return std::get<0>(apply_forward.call(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, running_mean,
                                        running_var, use_batch_stats, update_running, momentum, eps));
}

}  // namespace
}  // namespace anrl_ext

TORCH_LIBRARY_IMPL(anrl_ext, CompositeExplicitAutograd, m) {
  m.impl("blend_apply", &anrl_ext::blend_apply_plain);
}

TORCH_LIBRARY_IMPL(anrl_ext, Autograd, m) {
  m.impl("blend_apply", &anrl_ext::blend_apply_autograd);
}
