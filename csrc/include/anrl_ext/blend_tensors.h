// Tensor-level setup of the middle ops (blend_forward / blend_backward) shared by
// the CPU and CUDA implementations: checks, dtype handling, output allocation,
// and the raw-pointer argument structs of blend.h.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <optional>
#include <tuple>

#include "anrl_ext/blend.h"

namespace anrl_ext {

using OptTensor = std::optional<at::Tensor>;

// The (N, C) statistics the middle works on: float32 (float64 for float64 input).
inline void check_stats(const at::Tensor& t, const at::Tensor& mean, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 2 && t.sizes() == mean.sizes(), "anrl_ext: ", name,
                    " must have shape ", mean.sizes(), ", got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == mean.scalar_type(), "anrl_ext: ", name, " must be ",
                   mean.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == mean.device(), "anrl_ext: ", name, " is on ", t.device(),
                    " but mean is on ", mean.device());
}

// The ParamType of a parameter tensor; a clear error for any other dtype.
inline ParamType param_type(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return ParamType::kFloat;
    case at::kDouble: return ParamType::kDouble;
    case at::kHalf: return ParamType::kHalf;
    case at::kBFloat16: return ParamType::kBFloat16;
    default:
      TORCH_CHECK_TYPE(false, "anrl_ext: ", name, " must be float32, float64, float16 or bfloat16, got ",
                       t.scalar_type());
  }
  return ParamType::kFloat;  // not reached
}

// A parameter as the kernels read it: its own dtype (no conversion launch);
// absent when undefined.
template <typename T>
ParamRef<T> param_ref(const at::Tensor& t) {
  if (!t.defined()) return ParamRef<T>{};
  return ParamRef<T>{const_cast<void*>(t.const_data_ptr()), param_type(t, "parameter")};
}

// A (C,) parameter vector in its own dtype, contiguous; undefined when absent.
inline at::Tensor channel_vector(const OptTensor& t, const at::Tensor& mean, const char* name) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  TORCH_CHECK_VALUE(t->dim() == 1 && t->numel() == mean.size(1), "anrl_ext: ", name,
                    " must have C = ", mean.size(1), " entries, got shape ", t->sizes());
  TORCH_CHECK_VALUE(t->device() == mean.device(), "anrl_ext: ", name, " is on ", t->device(),
                    " but mean is on ", mean.device());
  param_type(*t, name);
  return t->contiguous();
}

// A (C,) statistic of the forward (bn_mean, bn_var) in the statistics dtype.
inline at::Tensor stats_vector(const at::Tensor& t, const at::Tensor& mean, const char* name) {
  return channel_vector(t, mean, name).to(mean.scalar_type());
}

// The per-sample means every middle op starts from: (N, C), float32 or float64,
// contiguous.
inline at::Tensor stats_tensor(const at::Tensor& mean) {
  TORCH_CHECK_VALUE(mean.dim() == 2, "anrl_ext: mean must be (N, C), got ", mean.sizes());
  TORCH_CHECK_TYPE(mean.scalar_type() == at::kFloat || mean.scalar_type() == at::kDouble,
                   "anrl_ext: statistics must be float32 or float64, got ", mean.scalar_type());
  return mean.contiguous();
}

// Everything blend_forward / blend_backward read, converted once.
struct BlendTensors {
  at::Tensor mean, var, alpha, bn_weight, bn_bias, in_weight, in_bias;
  int64_t alpha_sn = 0, alpha_sc = 0;

  BlendTensors(const at::Tensor& mean_in, const at::Tensor& var_in, const OptTensor& alpha_in,
               const OptTensor& bn_w, const OptTensor& bn_b, const OptTensor& in_w,
               const OptTensor& in_b) {
    mean = stats_tensor(mean_in);
    check_stats(var_in, mean, "var");
    var = var_in.contiguous();
    if (alpha_in.has_value() && alpha_in->defined()) {
      const at::Tensor& a = *alpha_in;
      TORCH_CHECK_VALUE(a.device() == mean.device(), "anrl_ext: alpha is on ", a.device(),
                        " but mean is on ", mean.device());
      const int64_t n = mean.size(0), c = mean.size(1);
      const bool ok = (a.dim() == 2 && a.size(0) == n && a.size(1) == c) ||
                      (a.dim() == 1 && a.size(0) == c) || a.dim() == 0;
      TORCH_CHECK_VALUE(ok, "anrl_ext: alpha must be (N, C), (C,) or a scalar, got ", a.sizes());
      param_type(a, "alpha");
      alpha = a;  // read in its own dtype
      // Strided reads: (C,) and scalar alphas are broadcast with stride 0.
      if (alpha.dim() == 2) {
        alpha_sn = alpha.stride(0);
        alpha_sc = alpha.stride(1);
      } else if (alpha.dim() == 1) {
        alpha_sc = alpha.stride(0);
      }
    }
    bn_weight = channel_vector(bn_w, mean, "bn_weight");
    bn_bias = channel_vector(bn_b, mean, "bn_bias");
    in_weight = channel_vector(in_w, mean, "in_weight");
    in_bias = channel_vector(in_b, mean, "in_bias");
  }

  template <typename T>
  BlendInputs<T> inputs(double alpha_value, double eps, bool use_batch_stats) const {
    return BlendInputs<T>{mean.size(0), mean.size(1), mean.const_data_ptr<T>(), var.const_data_ptr<T>(),
                          param_ref<T>(alpha), alpha_sn, alpha_sc, T(alpha_value),
                          param_ref<T>(bn_weight), param_ref<T>(bn_bias), param_ref<T>(in_weight),
                          param_ref<T>(in_bias), T(eps), use_batch_stats};
  }
};

// A running-statistics buffer as the kernel updates it, in its own dtype: the
// buffer itself when it is contiguous, else a contiguous copy that
// `write_back` copies into the buffer afterwards.
struct RunningBuffer {
  OptTensor target;
  at::Tensor work;

  RunningBuffer(const OptTensor& buf, const at::Tensor& mean, const char* name) {
    if (!buf.has_value() || !buf->defined()) return;
    TORCH_CHECK_VALUE(buf->dim() == 1 && buf->numel() == mean.size(1), "anrl_ext: ", name,
                      " must have C = ", mean.size(1), " entries, got shape ", buf->sizes());
    TORCH_CHECK_VALUE(buf->device() == mean.device(), "anrl_ext: ", name, " is on ", buf->device(),
                      " but mean is on ", mean.device());
    param_type(*buf, name);
    target = buf;
    work = buf->contiguous();
  }
  template <typename T>
  ParamRef<T> ref() const { return param_ref<T>(work); }
  void write_back() const {
    if (work.defined() && !work.is_same(*target)) target->copy_(work);
  }
};

struct BlendForwardSetup {
  BlendTensors t;
  RunningBuffer running_mean, running_var;
  at::Tensor scale, shift, bn_mean, bn_var;

  BlendForwardSetup(const at::Tensor& mean, const at::Tensor& var, const OptTensor& alpha,
                    const OptTensor& bn_w, const OptTensor& bn_b, const OptTensor& in_w,
                    const OptTensor& in_b, const OptTensor& rm, const OptTensor& rv,
                    bool use_batch_stats)
      : t(mean, var, alpha, bn_w, bn_b, in_w, in_b),
        running_mean(rm, t.mean, "running_mean"),
        running_var(rv, t.mean, "running_var") {
    TORCH_CHECK_VALUE(use_batch_stats || (running_mean.work.defined() && running_var.work.defined()),
                      "anrl_ext: blend_forward without batch statistics needs running_mean and running_var");
    TORCH_CHECK_VALUE(!use_batch_stats || t.mean.size(0) > 0, "anrl_ext: batch statistics need N > 0");
    scale = at::empty_like(t.mean);
    shift = at::empty_like(t.mean);
    bn_mean = at::empty({t.mean.size(1)}, t.mean.options());
    bn_var = at::empty({t.mean.size(1)}, t.mean.options());
  }

  template <typename T>
  BlendForwardOutputs<T> outputs(bool update, double momentum, int64_t count) const {
    return BlendForwardOutputs<T>{scale.mutable_data_ptr<T>(), shift.mutable_data_ptr<T>(),
                                  bn_mean.mutable_data_ptr<T>(), bn_var.mutable_data_ptr<T>(),
                                  running_mean.ref<T>(), running_var.ref<T>(), update, T(momentum),
                                  count > 1 ? T(double(count) / double(count - 1)) : T(1)};
  }
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> result() const {
    running_mean.write_back();
    running_var.write_back();
    return {scale, shift, bn_mean, bn_var};
  }
};

using BlendBackwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                       at::Tensor, at::Tensor, at::Tensor>;

struct BlendBackwardSetup {
  BlendTensors t;
  at::Tensor s0, s1, bn_mean, bn_var;
  at::Tensor d_alpha, d_bn_weight, d_bn_bias, d_in_weight, d_in_bias, coef_a, coef_b, coef_c;

  BlendBackwardSetup(const at::Tensor& s0_in, const at::Tensor& s1_in, const at::Tensor& mean,
                     const at::Tensor& var, const OptTensor& alpha, const OptTensor& bn_w,
                     const OptTensor& bn_b, const OptTensor& in_w, const OptTensor& in_b,
                     const at::Tensor& bn_mean_in, const at::Tensor& bn_var_in, int64_t hw)
      : t(mean, var, alpha, bn_w, bn_b, in_w, in_b) {
    check_stats(s0_in, t.mean, "s0");
    check_stats(s1_in, t.mean, "s1");
    TORCH_CHECK_VALUE(hw > 0, "anrl_ext: hw must be positive, got ", hw);
    s0 = s0_in.contiguous();
    s1 = s1_in.contiguous();
    bn_mean = stats_vector(bn_mean_in, t.mean, "bn_mean");
    bn_var = stats_vector(bn_var_in, t.mean, "bn_var");
    d_alpha = at::empty_like(t.mean);
    coef_a = at::empty_like(t.mean);
    coef_b = at::empty_like(t.mean);
    coef_c = at::empty_like(t.mean);
    // Each weight's gradient in the weight's dtype (the statistics dtype when absent).
    auto grad_for = [&](const at::Tensor& w) {
      return at::empty({t.mean.size(1)}, w.defined() ? w.options() : t.mean.options());
    };
    d_bn_weight = grad_for(t.bn_weight);
    d_bn_bias = grad_for(t.bn_bias);
    d_in_weight = grad_for(t.in_weight);
    d_in_bias = grad_for(t.in_bias);
  }

  template <typename T>
  BlendBackwardArgs<T> args(int64_t hw) const {
    auto p = [](const at::Tensor& x) { return x.mutable_data_ptr<T>(); };
    return BlendBackwardArgs<T>{s0.const_data_ptr<T>(), s1.const_data_ptr<T>(), bn_mean.const_data_ptr<T>(),
                                bn_var.const_data_ptr<T>(), hw, p(d_alpha), param_ref<T>(d_bn_weight),
                                param_ref<T>(d_bn_bias), param_ref<T>(d_in_weight), param_ref<T>(d_in_bias),
                                p(coef_a), p(coef_b), p(coef_c)};
  }
  BlendBackwardResult result() const {
    return {d_alpha, d_bn_weight, d_bn_bias, d_in_weight, d_in_bias, coef_a, coef_b, coef_c};
  }
};

}  // namespace anrl_ext
