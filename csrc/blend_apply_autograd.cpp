// The first-order fused blends as ops whose autograd is in C++:
//
//   y = blend_apply(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias,
//                   running_mean, running_var, use_batch_stats, update_running, momentum, eps)
//   y, alpha = gate_blend_apply(x, gate_w1, gate_b1, gate_wb, gate_bb, gate_wi, bn_weight, ...)
//
// blend_apply's forward is one call of blend_apply_forward and its backward one
// call of blend_apply_backward (blend_apply.cpp); gate_blend_apply (AFNM's gate
// inside the middle kernels) calls moments, gate_blend_forward and affine, and
// back reduce, gate_blend_backward and affine2. These are the calls fast_blend's
// Python Function makes, but the Functions here are torch::autograd::Functions:
// no Python runs on the way forward past the op call, and none in the backward.
// On a GPU the op is bound by host time (benchmarks/results/GPU_NOTES.md, run 4),
// and the backward runs on autograd's device thread, where a Python backward
// must first take the GIL.
//
// A backward that must itself be differentiable (create_graph=True) calls back
// into Python (anrl_ext.ops.native.*_double_backward), which recomputes through
// the primitives' registered autograd formulas exactly as the Python Function
// does: any order of differentiation runs on the same kernels. The libtorch
// build (CMakeLists.txt, no Python) has the first-order backward only.
//
// The Triton backend gets the same two Functions (anrl_ext_triton::blend_apply,
// ::gate_blend_apply; Python extension only): their forward and backward each
// call one operator of the Triton backend's whole pass, whose kernel is Python
// (anrl_ext/ops/triton_apply_ops.py: its direct launches). Only those calls run
// Python: autograd's bookkeeping, the saving and the gradients' assembly that
// fast_blend's Python Function does around them are C++ here.
#include <torch/autograd.h>
#include <torch/library.h>
#ifdef TORCH_EXTENSION_NAME  // the Python extension anrl_ext._C
#include <torch/extension.h>
#endif

#include <array>

#include "anrl_ext/checks.h"
#include "anrl_ext/dispatch.h"
#include "anrl_ext/schemas.h"

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

// H * W as a SymInt: under a tracer with symbolic shapes (torch.compile, torch.export) an int would
// fix the plane size of the traced backward; in eager calls it is the same integer.
c10::SymInt plane_size(const Tensor& x) { return x.sym_size(2) * x.sym_size(3); }

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

// Which of the graph's inputs need a gradient: inputs[i] is the saved copy of the
// i-th tensor argument (undefined where it was not given). needs_input_grad counts
// only the arguments that were given, in order.
template <size_t N>
std::array<bool, N> needed_gradients(AutogradContext* ctx, const std::array<const Tensor*, N>& inputs) {
  std::array<bool, N> needs{};
  size_t edge = 0;
  for (size_t i = 0; i < N; ++i) {
    if (inputs[i]->defined()) needs[i] = ctx->needs_input_grad(edge++);
  }
  return needs;
}

// The differentiable backward of create_graph=True: anrl_ext.ops.native.<name>(*args),
// which returns one gradient (or None) per differentiable input.
template <size_t N, typename... Args>
std::array<Tensor, N> python_gradients(const char* name, const Args&... args) {
#ifndef TORCH_EXTENSION_NAME
  TORCH_CHECK(false, "anrl_ext: a differentiable backward (create_graph=True) needs the Python package anrl_ext; "
              "this libtorch build has the first-order backward only");
  return {};
#else
  namespace py = pybind11;
  py::gil_scoped_acquire gil;
  py::object got = py::module_::import("anrl_ext.ops.native").attr(name)(args...);
  const auto grads = got.cast<std::vector<OptTensor>>();
  TORCH_CHECK(grads.size() == N, "anrl_ext: ", name, " gave ", grads.size(), " gradients, expected ", N);
  std::array<Tensor, N> g;
  for (size_t i = 0; i < N; ++i) g[i] = grads[i].value_or(Tensor());
  return g;
#endif
}

// The gate's five kernel slots (w1, b1, wb, bb, wi; wb always given).
using GateSlots = std::array<OptTensor, 5>;

// The gated forward's outputs: (y, alpha, and what the backward needs).
struct GateForwardPass {
  Tensor y, alpha, hidden, mean, var, bn_mean, bn_var;
};

// The operators a Function calls, as static members of Ops: NativeOps (the CPU or CUDA
// kernels of anrl_ext::*, chosen by the tensors' device) or TritonOps (the Triton
// backend's whole passes, anrl_ext_triton::*). Each *_first_order returns the
// gradients of every differentiable input (dx first; undefined where !needs_x).
struct NativeOps {
  static constexpr const char* blend_apply = "anrl_ext::blend_apply";
  static constexpr const char* gate_blend_apply = "anrl_ext::gate_blend_apply";
  static constexpr const char* gate_blend_apply_forward = "anrl_ext::gate_blend_apply_forward";
  static constexpr const char* blend_double_backward = "blend_apply_double_backward";
  static constexpr const char* gate_double_backward = "gate_blend_apply_double_backward";

  static const c10::TypedOperatorHandle<sig::ApplyForward>& blend_apply_forward() {
    static const auto op = typed_op<sig::ApplyForward>("anrl_ext::blend_apply_forward");
    return op;
  }

  static std::array<Tensor, 6> blend_first_order(const Tensor& x, const Tensor& mean, const Tensor& var,
                                                 const Tensor& alpha, double alpha_value, const Affines& w,
                                                 const Tensor& bn_mean, const Tensor& bn_var, bool use_batch_stats,
                                                 double eps, bool needs_x, const Tensor& gy) {
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
                                   bn_var, use_batch_stats, eps, plane_size(x));
    return {Tensor(), std::get<0>(out), std::get<1>(out), std::get<2>(out), std::get<3>(out), std::get<4>(out)};
  }

  // {dx, d w1, d b1, d wb, d bb, d wi, d bn_weight, d bn_bias, d in_weight, d in_bias}
  static std::array<Tensor, 10> gate_first_order(const Tensor& x, const Tensor& gy, const Tensor& mean,
                                                 const Tensor& var, const Tensor& alpha, const Tensor& hidden,
                                                 const OptTensor& galpha, const GateSlots& gate, const Affines& w,
                                                 const Tensor& bn_mean, const Tensor& bn_var, bool use_batch_stats,
                                                 double eps, bool needs_x) {
    static const auto reduce = typed_op<sig::Reduce>("anrl_ext::reduce");
    static const auto gate_backward = typed_op<sig::GateBackward>("anrl_ext::gate_blend_backward");
    static const auto affine2 = typed_op<sig::Affine2>("anrl_ext::affine2");
    const auto [xk, dy] = input_and_grad(x, gy);  // one layout for both passes
    auto [s0, s1] = reduce.call(dy, xk, mean);
    auto out = gate_backward.call(s0, s1, mean, var, alpha, hidden, galpha, gate[0], gate[1], *gate[2], gate[3],
                                  gate[4], w[0], w[1], w[2], w[3], bn_mean, bn_var, use_batch_stats, eps,
                                  plane_size(x));
    const Tensor dx = needs_x ? affine2.call(dy, xk, mean, std::get<9>(out), std::get<10>(out), std::get<11>(out))
                              : Tensor();
    return {dx,
            std::get<0>(out),
            std::get<1>(out),
            std::get<2>(out),
            std::get<3>(out),
            std::get<4>(out),
            std::get<5>(out),
            std::get<6>(out),
            std::get<7>(out),
            std::get<8>(out)};
  }
};

#ifdef TORCH_EXTENSION_NAME
// The Triton backend's whole passes: operators whose kernels are Python functions
// (anrl_ext/ops/triton_apply_ops.py), defined with their schemas at the end of this file.
// Their backward ops take needs_dx and leave dx empty without it.
namespace triton_sig {
using sig::OptTensor;
using ApplyBackward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&, double, const OptTensor&,
    const OptTensor&, const OptTensor&, const OptTensor&, const Tensor&, const Tensor&, bool, double, bool);
using GateBackward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
    const OptTensor&, const OptTensor&, const Tensor&, const OptTensor&, const OptTensor&, const OptTensor&,
    const OptTensor&, const OptTensor&, const OptTensor&, const Tensor&, const Tensor&, bool, double, bool);
}  // namespace triton_sig

struct TritonOps {
  static constexpr const char* blend_apply = "anrl_ext_triton::blend_apply";
  static constexpr const char* gate_blend_apply = "anrl_ext_triton::gate_blend_apply";
  static constexpr const char* gate_blend_apply_forward = "anrl_ext_triton::gate_blend_apply_forward";
  static constexpr const char* blend_double_backward = "triton_blend_apply_double_backward";
  static constexpr const char* gate_double_backward = "triton_gate_blend_apply_double_backward";

  static const c10::TypedOperatorHandle<sig::ApplyForward>& blend_apply_forward() {
    static const auto op = typed_op<sig::ApplyForward>("anrl_ext_triton::blend_apply_forward");
    return op;
  }

  static std::array<Tensor, 6> blend_first_order(const Tensor& x, const Tensor& mean, const Tensor& var,
                                                 const Tensor& alpha, double alpha_value, const Affines& w,
                                                 const Tensor& bn_mean, const Tensor& bn_var, bool use_batch_stats,
                                                 double eps, bool needs_x, const Tensor& gy) {
    static const auto op = typed_op<triton_sig::ApplyBackward>("anrl_ext_triton::blend_apply_backward");
    auto [dx, d_alpha, dwb, dbb, dwi, dbi] = op.call(gy, x, mean, var, present(alpha), alpha_value, w[0], w[1], w[2],
                                                     w[3], bn_mean, bn_var, use_batch_stats, eps, needs_x);
    return {needs_x ? dx : Tensor(), d_alpha, dwb, dbb, dwi, dbi};
  }

  static std::array<Tensor, 10> gate_first_order(const Tensor& x, const Tensor& gy, const Tensor& mean,
                                                 const Tensor& var, const Tensor& alpha, const Tensor& hidden,
                                                 const OptTensor& galpha, const GateSlots& gate, const Affines& w,
                                                 const Tensor& bn_mean, const Tensor& bn_var, bool use_batch_stats,
                                                 double eps, bool needs_x) {
    static const auto op = typed_op<triton_sig::GateBackward>("anrl_ext_triton::gate_blend_apply_backward");
    auto out = op.call(gy, x, mean, var, alpha, hidden, galpha, gate[0], gate[1], *gate[2], gate[3], gate[4], w[0],
                       w[1], w[2], w[3], bn_mean, bn_var, use_batch_stats, eps, needs_x);
    return {needs_x ? std::get<0>(out) : Tensor(),
            std::get<1>(out),
            std::get<2>(out),
            std::get<3>(out),
            std::get<4>(out),
            std::get<5>(out),
            std::get<6>(out),
            std::get<7>(out),
            std::get<8>(out),
            std::get<9>(out)};
  }
};
#endif  // TORCH_EXTENSION_NAME

// The gated forward (moments -> gate_blend_forward -> affine) as one op with a fake kernel (blend_apply.cpp;
// Triton: triton_apply_ops.py): a tracer running the Function on fake tensors (torch.export, AOTInductor)
// sees the op, not the sizes its parts take as integers, which would fix the batch.
template <typename Ops>
GateForwardPass gate_forward(const Tensor& x, const GateSlots& gate, const Affines& w, const RunningStats& running,
                             bool use_batch_stats, bool update_running, double momentum, double eps) {
  static const auto op = typed_op<sig::GateApplyForward>(Ops::gate_blend_apply_forward);
  TORCH_CHECK_VALUE(gate[2].has_value(), "anrl_ext: gate_blend_apply needs gate_wb");
  auto [y, alpha, hidden, mean, var, bn_mean, bn_var] =
      op.call(x, gate[0], gate[1], *gate[2], gate[3], gate[4], w[0], w[1], w[2], w[3], running.mean, running.var,
              use_batch_stats, update_running, momentum, eps);
  return {y, alpha, hidden, mean, var, bn_mean, bn_var};
}

template <typename Ops>
class BlendApply : public torch::autograd::Function<BlendApply<Ops>> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const OptTensor& alpha, double alpha_value,
                               const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& in_weight,
                               const OptTensor& in_bias, const RunningStats& running, bool use_batch_stats,
                               bool update_running, double momentum, double eps) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [y, mean, var, bn_mean, bn_var] =
        Ops::blend_apply_forward().call(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, running.mean,
                                        running.var, use_batch_stats, update_running, momentum, eps);
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
    // x, alpha, bn_weight, bn_bias, in_weight, in_bias
    const auto needs = needed_gradients<6>(ctx, {&x, &saved[5], &saved[6], &saved[7], &saved[8], &saved[9]});
    const Tensor& gy = grads[0];  // materialised: zeros when y's gradient is unused
    std::array<Tensor, 6> g;  // gradients of x, alpha and the affine weights
    if (at::GradMode::is_enabled()) {
      g = python_gradients<6>(Ops::blend_double_backward, x, present(alpha), alpha_value, w[0], w[1], w[2], w[3],
                              bn_mean, bn_var, use_batch_stats, eps, std::vector<bool>(needs.begin(), needs.end()),
                              gy);
    } else {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      g = Ops::blend_first_order(x, mean, var, alpha, alpha_value, w, bn_mean, bn_var, use_batch_stats, eps, needs[0],
                                 gy);
      if (needs[1]) g[1] = sum_to_alpha(g[1], alpha);
      for (size_t i = 0; i < 4; ++i) {
        g[2 + i] = needs[2 + i] ? in_dtype_of(g[2 + i], *w[i]) : Tensor();
      }
      if (!needs[1]) g[1] = Tensor();
    }
    // One entry per forward argument; the non-tensor ones get none.
    return {g[0], g[1], Tensor(), g[2], g[3], g[4], g[5], Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// AFNM's gated blend: alpha = gate(per-sample means) inside the middle kernels.
template <typename Ops>
class GateBlendApply : public torch::autograd::Function<GateBlendApply<Ops>> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const OptTensor& w1, const OptTensor& b1,
                               const Tensor& wb, const OptTensor& bb, const OptTensor& wi, const OptTensor& bn_weight,
                               const OptTensor& bn_bias, const OptTensor& in_weight, const OptTensor& in_bias,
                               const RunningStats& running, bool use_batch_stats, bool update_running,
                               double momentum, double eps) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto f = gate_forward<Ops>(x, {w1, b1, wb, bb, wi}, {bn_weight, bn_bias, in_weight, in_bias}, running,
                                     use_batch_stats, update_running, momentum, eps);
    ctx->set_materialize_grads(false);  // an unused alpha passes no gradient, not a zero tensor
    ctx->save_for_backward({x, f.mean, f.var, f.bn_mean, f.bn_var, f.alpha, f.hidden, w1.value_or(Tensor()),
                            b1.value_or(Tensor()), wb, bb.value_or(Tensor()), wi.value_or(Tensor()),
                            bn_weight.value_or(Tensor()), bn_bias.value_or(Tensor()), in_weight.value_or(Tensor()),
                            in_bias.value_or(Tensor())});
    ctx->saved_data["use_batch_stats"] = use_batch_stats;
    ctx->saved_data["eps"] = eps;
    return {f.y, f.alpha};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &mean = saved[1], &var = saved[2], &bn_mean = saved[3], &bn_var = saved[4];
    const Tensor &alpha = saved[5], &hidden = saved[6];
    const GateSlots gate = {present(saved[7]), present(saved[8]), saved[9], present(saved[10]), present(saved[11])};
    const Affines w = {present(saved[12]), present(saved[13]), present(saved[14]), present(saved[15])};
    const bool use_batch_stats = ctx->saved_data["use_batch_stats"].toBool();
    const double eps = ctx->saved_data["eps"].toDouble();
    // x, the five gate slots, the four affine weights
    const auto needs = needed_gradients<10>(ctx, {&x, &saved[7], &saved[8], &saved[9], &saved[10], &saved[11],
                                                  &saved[12], &saved[13], &saved[14], &saved[15]});
    const Tensor gy = grads[0].defined() ? grads[0] : at::zeros_like(x);
    const OptTensor galpha = present(grads[1]);
    std::array<Tensor, 10> g;
    if (at::GradMode::is_enabled()) {
      g = python_gradients<10>(Ops::gate_double_backward, x, gate[0], gate[1], gate[2], gate[3], gate[4],
                               w[0], w[1], w[2], w[3], bn_mean, bn_var, use_batch_stats, eps,
                               std::vector<bool>(needs.begin(), needs.end()), gy, galpha);
    } else {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      const auto d = Ops::gate_first_order(x, gy, mean, var, alpha, hidden, galpha, gate, w, bn_mean, bn_var,
                                           use_batch_stats, eps, needs[0]);
      g[0] = d[0];
      // The gate's gradients come in its weights' dtype (the kernels take them in the statistics dtype).
      for (size_t i = 0; i < 5; ++i) g[1 + i] = needs[1 + i] ? d[1 + i] : Tensor();
      for (size_t i = 0; i < 4; ++i) g[6 + i] = needs[6 + i] ? in_dtype_of(d[6 + i], *w[i]) : Tensor();
    }
    // One entry per forward argument; the non-tensor ones get none.
    return {g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], Tensor(), Tensor(), Tensor(), Tensor(),
            Tensor()};
  }
};

bool wants_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }
bool wants_grad(const OptTensor& t) { return t.has_value() && wants_grad(*t); }

// Whether a call records an autograd graph: grad mode on and a differentiable input that requires grad.
template <typename... Ts>
bool records_graph(const Ts&... inputs) {
  return at::GradMode::is_enabled() && (wants_grad(inputs) || ...);
}

// Where nothing is to be differentiated (inference, torch.no_grad, frozen weights), the autograd kernels
// below call their op again below the Autograd key, as generated autograd kernels do: no Function is built
// (1-1.5 us less host time a call on the 2-core CPU, 2026-12-07), and a tracer that runs the op on fake
// tensors records it as one node.
template <typename Ops>
std::tuple<Tensor, Tensor> gate_blend_apply_autograd(
    const Tensor& x, const OptTensor& w1, const OptTensor& b1, const Tensor& wb, const OptTensor& bb,
    const OptTensor& wi, const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& in_weight,
    const OptTensor& in_bias, const OptTensor& running_mean, const OptTensor& running_var, bool use_batch_stats,
    bool update_running, double momentum, double eps) {
  if (!records_graph(x, w1, b1, wb, bb, wi, bn_weight, bn_bias, in_weight, in_bias)) {
    static const auto op = typed_op<sig::GateBlendApply>(Ops::gate_blend_apply);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(x, w1, b1, wb, bb, wi, bn_weight, bn_bias, in_weight, in_bias, running_mean, running_var,
                   use_batch_stats, update_running, momentum, eps);
  }
  auto out = GateBlendApply<Ops>::apply(x, w1, b1, wb, bb, wi, bn_weight, bn_bias, in_weight, in_bias,
                                        RunningStats{running_mean, running_var}, use_batch_stats, update_running,
                                        momentum, eps);
  return {out[0], out[1]};
}

template <typename Ops>
std::tuple<Tensor, Tensor> gate_blend_apply_plain(
    const Tensor& x, const OptTensor& w1, const OptTensor& b1, const Tensor& wb, const OptTensor& bb,
    const OptTensor& wi, const OptTensor& bn_weight, const OptTensor& bn_bias, const OptTensor& in_weight,
    const OptTensor& in_bias, const OptTensor& running_mean, const OptTensor& running_var, bool use_batch_stats,
    bool update_running, double momentum, double eps) {
  const auto f = gate_forward<Ops>(x, {w1, b1, wb, bb, wi}, {bn_weight, bn_bias, in_weight, in_bias},
                                   RunningStats{running_mean, running_var}, use_batch_stats, update_running, momentum,
                                   eps);
  return {f.y, f.alpha};
}

template <typename Ops>
Tensor blend_apply_autograd(const Tensor& x, const OptTensor& alpha, double alpha_value, const OptTensor& bn_weight,
                            const OptTensor& bn_bias, const OptTensor& in_weight, const OptTensor& in_bias,
                            const OptTensor& running_mean, const OptTensor& running_var, bool use_batch_stats,
                            bool update_running, double momentum, double eps) {
  if (!records_graph(x, alpha, bn_weight, bn_bias, in_weight, in_bias)) {
    static const auto op = typed_op<sig::BlendApply>(Ops::blend_apply);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, running_mean, running_var,
                   use_batch_stats, update_running, momentum, eps);
  }
  return BlendApply<Ops>::apply(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias,
                                RunningStats{running_mean, running_var}, use_batch_stats, update_running, momentum,
                                eps)[0];
}

// Without autograd (inference mode, or below the Autograd key): the forward alone.
template <typename Ops>
Tensor blend_apply_plain(const Tensor& x, const OptTensor& alpha, double alpha_value, const OptTensor& bn_weight,
                         const OptTensor& bn_bias, const OptTensor& in_weight, const OptTensor& in_bias,
                         const OptTensor& running_mean, const OptTensor& running_var, bool use_batch_stats,
                         bool update_running, double momentum, double eps) {
  return std::get<0>(Ops::blend_apply_forward().call(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias,
                                                     running_mean, running_var, use_batch_stats, update_running,
                                                     momentum, eps));
}

}  // namespace
}  // namespace anrl_ext

TORCH_LIBRARY_IMPL(anrl_ext, CompositeExplicitAutograd, m) {
  m.impl("blend_apply", &anrl_ext::blend_apply_plain<anrl_ext::NativeOps>);
  m.impl("gate_blend_apply", &anrl_ext::gate_blend_apply_plain<anrl_ext::NativeOps>);
}

TORCH_LIBRARY_IMPL(anrl_ext, Autograd, m) {
  m.impl("blend_apply", &anrl_ext::blend_apply_autograd<anrl_ext::NativeOps>);
  m.impl("gate_blend_apply", &anrl_ext::gate_blend_apply_autograd<anrl_ext::NativeOps>);
}

#ifdef TORCH_EXTENSION_NAME
// The Triton backend's versions. The *_forward / *_backward ops get their kernels (CPU and
// CUDA: Triton runs CPU tensors under TRITON_INTERPRET=1) and fake kernels from Python, in
// anrl_ext/ops/triton_apply_ops.py; blend_apply and gate_blend_apply are the Functions above.
TORCH_LIBRARY_FRAGMENT(anrl_ext_triton, m) {
  m.def(anrl_ext::schema::kBlendApplyForward);
  m.def(
      "blend_apply_backward(Tensor dy, Tensor x, Tensor mean, Tensor var, Tensor? alpha, float alpha_value, "
      "Tensor? bn_weight, Tensor? bn_bias, Tensor? in_weight, Tensor? in_bias, Tensor bn_mean, "
      "Tensor bn_var, bool use_batch_stats, float eps, bool needs_dx) -> (Tensor dx, Tensor d_alpha, "
      "Tensor d_bn_weight, Tensor d_bn_bias, Tensor d_in_weight, Tensor d_in_bias)");
  m.def(anrl_ext::schema::kBlendApply);
  m.def(anrl_ext::schema::kGateBlendApplyForward);
  m.def(
      "gate_blend_apply_backward(Tensor dy, Tensor x, Tensor mean, Tensor var, Tensor alpha, Tensor hidden, "
      "Tensor? alpha_grad, Tensor? gate_w1, Tensor? gate_b1, Tensor gate_wb, Tensor? gate_bb, Tensor? gate_wi, "
      "Tensor? bn_weight, Tensor? bn_bias, Tensor? in_weight, Tensor? in_bias, Tensor bn_mean, Tensor bn_var, "
      "bool use_batch_stats, float eps, bool needs_dx) -> (Tensor dx, Tensor d_w1, Tensor d_b1, Tensor d_wb, "
      "Tensor d_bb, Tensor d_wi, Tensor d_bn_weight, Tensor d_bn_bias, Tensor d_in_weight, Tensor d_in_bias)");
  m.def(anrl_ext::schema::kGateBlendApply);
}

TORCH_LIBRARY_IMPL(anrl_ext_triton, CompositeExplicitAutograd, m) {
  m.impl("blend_apply", &anrl_ext::blend_apply_plain<anrl_ext::TritonOps>);
  m.impl("gate_blend_apply", &anrl_ext::gate_blend_apply_plain<anrl_ext::TritonOps>);
}

TORCH_LIBRARY_IMPL(anrl_ext_triton, Autograd, m) {
  m.impl("blend_apply", &anrl_ext::blend_apply_autograd<anrl_ext::TritonOps>);
  m.impl("gate_blend_apply", &anrl_ext::gate_blend_apply_autograd<anrl_ext::TritonOps>);
}
#endif  // TORCH_EXTENSION_NAME
