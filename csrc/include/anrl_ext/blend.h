// The (N, C) middle of the fused op, one channel at a time: BN merge,
// running-statistics update and the blend coefficients (forward), and the
// closed-form gradients of all of them (first-order backward).
//
// Shared by the CPU and CUDA builds (host+device inline functions), so the
// CPU tests run the very arithmetic of the CUDA middle kernel. One channel is
// independent of every other, hence one CUDA thread / one CPU loop iteration
// per channel, each looping over the N samples.
//
// With per-sample moments (mu_nc, var_nc), BN statistics (mu_c, var_c), and
// r_c = rsqrt(var_c + eps), r_nc = rsqrt(var_nc + eps):
//   scale_nc = a g_b r_c + (1 - a) g_i r_nc
//   shift_nc = a (b_b + g_b r_c (mu_nc - mu_c)) + (1 - a) b_i
// so y = scale (x - mu_nc) + shift. The backward takes s0 = sum dy and
// s1 = sum dy (x - mu_nc) per (n, c) and returns the parameter gradients and
// (A, B, C) with dx = A dy + B (x - mu_nc) + C.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>

#include "anrl_ext/moments.h"

// The loops over N are latency-bound on a GPU (one thread per channel): unroll
// so that several iterations' loads are in flight at once.
#if defined(__CUDA_ARCH__)
#define ANRL_UNROLL _Pragma("unroll 4")
#else
#define ANRL_UNROLL
#endif

namespace anrl_ext {

template <typename T>
ANRL_HD T rsqrt_of(T v) {
#if defined(__CUDA_ARCH__)
  return T(1) / sqrt(v);  // not rsqrt(): both builds then round the same way
#else
  return T(1) / std::sqrt(v);
#endif
}

// The element types of the caller's parameters (alpha, the affine weights, the
// running statistics and the weights' gradients).
enum class ParamType : int8_t { kFloat, kDouble, kHalf, kBFloat16 };

// A parameter vector in its own dtype, read and written as T (the statistics
// type): a bfloat16 model's weights and buffers need no conversion launch
// before the kernel and none after it. The switch is uniform across a warp.
template <typename T>
struct ParamRef {
  void* p = nullptr;  // null: absent
  ParamType type = ParamType::kFloat;

  ANRL_HD explicit operator bool() const { return p != nullptr; }
  ANRL_HD T operator[](int64_t i) const {
    switch (type) {
      case ParamType::kFloat: return T(static_cast<const float*>(p)[i]);
      case ParamType::kDouble: return T(static_cast<const double*>(p)[i]);
      case ParamType::kHalf: return T(static_cast<float>(static_cast<const c10::Half*>(p)[i]));
      default: return T(static_cast<float>(static_cast<const c10::BFloat16*>(p)[i]));
    }
  }
  ANRL_HD void set(int64_t i, T v) const {
    switch (type) {
      case ParamType::kFloat: static_cast<float*>(p)[i] = static_cast<float>(v); break;
      case ParamType::kDouble: static_cast<double*>(p)[i] = static_cast<double>(v); break;
      case ParamType::kHalf: static_cast<c10::Half*>(p)[i] = c10::Half(static_cast<float>(v)); break;
      default: static_cast<c10::BFloat16*>(p)[i] = c10::BFloat16(static_cast<float>(v)); break;
    }
  }
};

// Inputs common to forward and backward. The (C,) vectors may be absent (a
// missing affine weight is 1, a missing bias 0); alpha may be absent, in which
// case alpha_value is used. alpha is read as alpha[n * alpha_sn + c * alpha_sc],
// so (N, C), (C,) and scalar alphas need no copy.
template <typename T>
struct BlendInputs {
  int64_t N, C;
  const T* mean;  // (N, C) contiguous
  const T* var;   // (N, C) contiguous, biased
  ParamRef<T> alpha;
  int64_t alpha_sn, alpha_sc;
  T alpha_value;
  ParamRef<T> bn_weight;
  ParamRef<T> bn_bias;
  ParamRef<T> in_weight;
  ParamRef<T> in_bias;
  T eps;
  bool use_batch_stats;  // BN from the batch (training) or from bn_mean/bn_var (eval)

  ANRL_HD T alpha_at(int64_t n, int64_t c) const {
    return alpha ? alpha[n * alpha_sn + c * alpha_sc] : alpha_value;
  }
  ANRL_HD T gb(int64_t c) const { return bn_weight ? bn_weight[c] : T(1); }
  ANRL_HD T bb(int64_t c) const { return bn_bias ? bn_bias[c] : T(0); }
  ANRL_HD T gi(int64_t c) const { return in_weight ? in_weight[c] : T(1); }
  ANRL_HD T bi(int64_t c) const { return in_bias ? in_bias[c] : T(0); }
};

template <typename T>
struct BlendForwardOutputs {
  T* scale;  // (N, C)
  T* shift;  // (N, C)
  T* bn_mean;  // (C,): the BN statistics used, for the backward
  T* bn_var;   // (C,), biased
  ParamRef<T> running_mean;  // (C,) or absent; read in eval, updated when `update`
  ParamRef<T> running_var;
  bool update;
  T momentum;
  T unbias;  // count / (count - 1): running_var holds the unbiased variance
};

template <typename T>
ANRL_HD void blend_forward_channel(const BlendInputs<T>& in, const BlendForwardOutputs<T>& out, int64_t c) {
  const int64_t N = in.N, C = in.C;
  T mu, var;
  if (in.use_batch_stats) {
    // Chan merge of N equal-count groups: mean of means, then the mean of
    // (var_n + (mu_n - mu)^2). The means are summed relative to the first one,
    // so the terms are their spread, not their size: a plain float32 sum of 36
    // means near 3 lands up to 5 ulps off, this within one. The batch mean
    // matters beyond its size: the BN weight gradient moves by sum(dy) * d(mu).
    const T pivot = in.mean[c];
    T s = 0;
    ANRL_UNROLL
    for (int64_t n = 0; n < N; ++n) s += in.mean[n * C + c] - pivot;
    mu = pivot + s / T(N);
    T q = 0;
    ANRL_UNROLL
    for (int64_t n = 0; n < N; ++n) {
      const T d = in.mean[n * C + c] - mu;
      q += in.var[n * C + c] + d * d;
    }
    var = q / T(N);
    if (out.update) {
      if (out.running_mean)
        out.running_mean.set(c, (T(1) - out.momentum) * out.running_mean[c] + out.momentum * mu);
      if (out.running_var)
        out.running_var.set(c, (T(1) - out.momentum) * out.running_var[c] + out.momentum * var * out.unbias);
    }
  } else {
    mu = out.running_mean[c];
    var = out.running_var[c];
  }
  out.bn_mean[c] = mu;
  out.bn_var[c] = var;
  const T rc = rsqrt_of(var + in.eps);
  const T gb = in.gb(c), bb = in.bb(c), gi = in.gi(c), bi = in.bi(c);
  ANRL_UNROLL
  for (int64_t n = 0; n < N; ++n) {
    const int64_t i = n * C + c;
    const T a = in.alpha_at(n, c);
    const T rnc = rsqrt_of(in.var[i] + in.eps);
    out.scale[i] = a * gb * rc + (T(1) - a) * gi * rnc;
    out.shift[i] = a * (bb + gb * rc * (in.mean[i] - mu)) + (T(1) - a) * bi;
  }
}

template <typename T>
struct BlendBackwardArgs {
  const T* s0;  // (N, C): sum dy
  const T* s1;  // (N, C): sum dy (x - mu_nc)
  const T* bn_mean;  // (C,) from the forward
  const T* bn_var;
  int64_t hw;  // H * W
  T* d_alpha;  // (N, C)
  ParamRef<T> d_bn_weight;  // (C,) each, in the dtype of its weight
  ParamRef<T> d_bn_bias;
  ParamRef<T> d_in_weight;
  ParamRef<T> d_in_bias;
  T* coef_a;  // (N, C): dx = A dy + B (x - mu_nc) + C
  T* coef_b;
  T* coef_c;
};

template <typename T>
ANRL_HD void blend_backward_channel(const BlendInputs<T>& in, const BlendBackwardArgs<T>& g, int64_t c) {
  const int64_t N = in.N, C = in.C;
  const T mu = g.bn_mean[c];
  const T rc = rsqrt_of(g.bn_var[c] + in.eps);
  const T gb = in.gb(c), bb = in.bb(c), gi = in.gi(c), bi = in.bi(c);
  T dgb = 0, dbb = 0, dgi = 0, dbi = 0, drc = 0, dmu = 0;
  ANRL_UNROLL
  for (int64_t n = 0; n < N; ++n) {
    const int64_t i = n * C + c;
    const T a = in.alpha_at(n, c);
    const T s0 = g.s0[i], s1 = g.s1[i];
    const T rnc = rsqrt_of(in.var[i] + in.eps);
    const T xc = in.mean[i] - mu;
    const T t = s1 + s0 * xc;  // d/d(g_b r_c) of this sample's contribution
    g.d_alpha[i] = s1 * (gb * rc - gi * rnc) + s0 * (bb + gb * rc * xc - bi);
    dgb += a * rc * t;
    dbb += a * s0;
    dgi += (T(1) - a) * rnc * s1;
    dbi += (T(1) - a) * s0;
    drc += a * gb * t;
    dmu -= a * gb * rc * s0;
    const T scale = a * gb * rc + (T(1) - a) * gi * rnc;
    g.coef_a[i] = scale;
    // d var_nc through r_nc, and d mu_nc through the shift (batch terms below).
    g.coef_b[i] = (T(1) - a) * gi * s1 * T(-0.5) * rnc * rnc * rnc;
    g.coef_c[i] = a * gb * rc * s0 - scale * s0;
  }
  g.d_bn_weight.set(c, dgb);
  g.d_bn_bias.set(c, dbb);
  g.d_in_weight.set(c, dgi);
  g.d_in_bias.set(c, dbi);
  // mu_c = mean_n mu_nc and var_c = mean_n (var_nc + (mu_nc - mu_c)^2) pass
  // their gradients back to every sample (the mu_c term of var_c sums to 0).
  const T dvc = in.use_batch_stats ? drc * T(-0.5) * rc * rc * rc : T(0);
  const T dmu_n = in.use_batch_stats ? dmu / T(N) : T(0);
  const T inv_m = T(1) / T(g.hw);
  ANRL_UNROLL
  for (int64_t n = 0; n < N; ++n) {
    const int64_t i = n * C + c;
    const T xc = in.mean[i] - mu;
    const T dvar = g.coef_b[i] + dvc / T(N);
    const T dmean = g.coef_c[i] + dmu_n + dvc * T(2) * xc / T(N);
    // dx = scale dy + dvar * 2 (x - mu_nc) / M + (dmean - scale s0) / M
    g.coef_b[i] = dvar * T(2) * inv_m;
    g.coef_c[i] = dmean * inv_m;
  }
}

}  // namespace anrl_ext
