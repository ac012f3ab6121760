// The AFNM gate inside the fused middle: alpha (N, C) from the per-sample
// channel means S (N, C), and its closed-form backward.
//
// One layout covers the three gates of anrl_ext.nn.gates:
//   hidden  z = relu(S W1^T + b1)          (D, C) W1; absent (D = 0): z = S
//   heads   u_b = z Wb^T + bb, u_i = z Wi^T  (C, K) with K = D, or C when D = 0
//   alpha   = sig(u_b) / (sig(u_b) + sig(u_i))   when Wi is given (paper, eq. 2-4)
//           = sig(u_b)                           otherwise (official code)
//
// The gate mixes channels, so it runs in phases separated by a barrier (one
// CUDA block with __syncthreads, one parallel loop per phase on the CPU):
//   forward : hidden (n, j) -> alpha (n, c) -> blend per channel (blend.h)
//   backward: blend + heads per channel -> hidden (n, k) -> input per channel
// Every output is written by one thread with a fixed summation order, so the
// results are bitwise deterministic. Shared by the CPU and CUDA builds.
#pragma once
#include <cmath>
#include <cstdint>

#include "anrl_ext/blend.h"

namespace anrl_ext {

template <typename T>
ANRL_HD T exp_of(T u) {
#if defined(__CUDA_ARCH__)
  return exp(u);
#else
  return std::exp(u);
#endif
}

template <typename T>
ANRL_HD T sigmoid_of(T u) {
  return T(1) / (T(1) + exp_of(-u));
}

// The paper gate's ratio a = B / (B + I) of B = sig(u_b), I = sig(u_i), and
// b = I / (B + I) = 1 - a. With m = min(0, u_b, u_i), P = e^m and E = e^(m - u):
// a = (P + E_i) / (2P + E_b + E_i). Every term lies in [0, 1] and one of P, E_b,
// E_i is 1, so nothing overflows and the denominator is at least 1, where
// B / (B + I) was 0 / 0 once both sigmoids rounded to 0 (u below ~-88 in float32).
template <typename T>
ANRL_HD void sigmoid_ratio(T ub, T ui, T& a, T& b) {
  T m = ub < ui ? ub : ui;
  if (m > T(0)) m = T(0);
  const T p = exp_of(m), eb = exp_of(m - ub), ei = exp_of(m - ui);
  const T den = T(2) * p + eb + ei;
  a = (p + ei) / den;
  b = (p + eb) / den;
}

// init + sum_i a[i * sa] b[i * sb] with four partial sums: four independent
// multiply-add chains keep a CPU core's (and a GPU thread's) pipeline full where
// one chain would wait on each add. A fixed order, so still deterministic.
template <typename T>
ANRL_HD T strided_dot(const T* a, int64_t sa, const T* b, int64_t sb, int64_t len, T init) {
  T p0 = init, p1 = 0, p2 = 0, p3 = 0;
  int64_t i = 0;
  for (; i + 4 <= len; i += 4) {
    p0 += a[i * sa] * b[i * sb];
    p1 += a[(i + 1) * sa] * b[(i + 1) * sb];
    p2 += a[(i + 2) * sa] * b[(i + 2) * sb];
    p3 += a[(i + 3) * sa] * b[(i + 3) * sb];
  }
  for (; i < len; ++i) p0 += a[i * sa] * b[i * sb];
  return (p0 + p1) + (p2 + p3);
}

template <typename T>
struct GateArgs {
  int64_t N, C, D;  // D: hidden width, 0 when there is no hidden layer
  const T* s;       // (N, C) per-sample means
  const T* w1;      // (D, C) or null (D = 0)
  const T* b1;      // (D,) or null
  const T* wb;      // (C, K)
  const T* bb;      // (C,) or null
  const T* wi;      // (C, K) or null: the ratio head of the paper
  T* z;             // (N, D) hidden activations (forward output, backward input)
  T* alpha;         // (N, C)

  ANRL_HD int64_t K() const { return D > 0 ? D : C; }
  // The heads' input row of sample n: z[n] or, without a hidden layer, S[n].
  ANRL_HD const T* head_input(int64_t n) const { return D > 0 ? z + n * D : s + n * C; }
};

// Phase 1 (forward): z[n, j] = relu(b1[j] + sum_c S[n, c] W1[j, c]).
template <typename T>
ANRL_HD void gate_hidden(const GateArgs<T>& g, int64_t n, int64_t j) {
  const T acc = strided_dot(g.s + n * g.C, 1, g.w1 + j * g.C, 1, g.C, g.b1 ? g.b1[j] : T(0));
  g.z[n * g.D + j] = acc > T(0) ? acc : T(0);
}

// Head pre-activations of (n, c): u_b and, with a ratio head, u_i.
template <typename T>
ANRL_HD void gate_heads(const GateArgs<T>& g, int64_t n, int64_t c, T& ub, T& ui) {
  const int64_t K = g.K();
  const T* in = g.head_input(n);
  ub = strided_dot(in, 1, g.wb + c * K, 1, K, g.bb ? g.bb[c] : T(0));
  ui = g.wi ? strided_dot(in, 1, g.wi + c * K, 1, K, T(0)) : T(0);
}

// Phase 2 (forward): alpha[n, c].
template <typename T>
ANRL_HD void gate_alpha(const GateArgs<T>& g, int64_t n, int64_t c) {
  T ub, ui;
  gate_heads(g, n, c, ub, ui);
  T alpha;
  if (g.wi) {
    T b;  // the ratio's complement, unused here
    sigmoid_ratio(ub, ui, alpha, b);
  } else {
    alpha = sigmoid_of(ub);
  }
  g.alpha[n * g.C + c] = alpha;
}

template <typename T>
struct GateGrads {
  const T* d_alpha;  // (N, C): the blend's gradient of alpha
  const T* d_alpha_extra;  // (N, C) or null: a gradient of the alpha output from outside
  T* g_b;  // (N, C) scratch: d/du_b
  T* g_i;  // (N, C) scratch: d/du_i (ratio head only)
  T* dz;   // (N, D) scratch: d/d(pre-relu hidden)
  T* d_w1;
  T* d_b1;
  T* d_wb;
  T* d_bb;
  T* d_wi;
  T* coef_c;  // (N, C): the blend's dx shift; the gradient of S lands here, / hw
  T inv_hw;
};

// Backward phase A, one channel: head pre-activation gradients of every sample,
// then the head weight gradients d Wb[c, :], d bb[c], d Wi[c, :].
template <typename T>
ANRL_HD void gate_head_grad_channel(const GateArgs<T>& g, const GateGrads<T>& d, int64_t c) {
  const int64_t N = g.N, C = g.C, K = g.K();
  for (int64_t n = 0; n < N; ++n) {
    const int64_t i = n * C + c;
    T da = d.d_alpha[i];
    if (d.d_alpha_extra) da += d.d_alpha_extra[i];
    T ub, ui;
    gate_heads(g, n, c, ub, ui);
    if (g.wi) {
      // alpha = B / (B + I): d alpha/du_b = I B (1 - B) / (B + I)^2 = a b (1 - B) with the
      // ratios a = B / (B + I), b = I / (B + I), and d alpha/du_i = -a b (1 - I); 1 - B is
      // sig(-u_b). The ratios stay in [0, 1]; squaring 1 / (B + I) overflowed float32 once both
      // heads saturated low (B + I below ~1e-19), giving NaN weight gradients.
      T a, b;
      sigmoid_ratio(ub, ui, a, b);
      const T q = da * a * b;
      d.g_b[i] = q * sigmoid_of(-ub);
      d.g_i[i] = -q * sigmoid_of(-ui);
    } else {
      const T sb = sigmoid_of(ub);
      d.g_b[i] = da * sb * (T(1) - sb);
    }
  }
  // Row n of the heads' input is head_input(0) + n * K: one strided dot per k.
  const T* in0 = g.head_input(0);
  for (int64_t k = 0; k < K; ++k) {
    d.d_wb[c * K + k] = strided_dot(d.g_b + c, C, in0 + k, K, N, T(0));
    if (g.wi) d.d_wi[c * K + k] = strided_dot(d.g_i + c, C, in0 + k, K, N, T(0));
  }
  if (g.bb) {
    T ab = 0;
    for (int64_t n = 0; n < N; ++n) ab += d.g_b[n * C + c];
    d.d_bb[c] = ab;
  }
}

// Backward phase B, one (n, k): the gradient of the heads' input. With a
// hidden layer it is stored (through the relu) for phase C; without one the
// input is S itself and the gradient goes straight to the dx shift.
template <typename T>
ANRL_HD void gate_input_grad(const GateArgs<T>& g, const GateGrads<T>& d, int64_t n, int64_t k) {
  const int64_t C = g.C, K = g.K();
  T acc = strided_dot(d.g_b + n * C, 1, g.wb + k, K, C, T(0));
  if (g.wi) acc += strided_dot(d.g_i + n * C, 1, g.wi + k, K, C, T(0));
  if (g.D > 0)
    d.dz[n * g.D + k] = g.z[n * g.D + k] > T(0) ? acc : T(0);
  else
    d.coef_c[n * C + k] += acc * d.inv_hw;
}

// Backward phase C, one channel (hidden layer only): d W1[:, c] and the
// gradient of S[:, c] through W1.
template <typename T>
ANRL_HD void gate_hidden_grad_channel(const GateArgs<T>& g, const GateGrads<T>& d, int64_t c) {
  const int64_t N = g.N, C = g.C, D = g.D;
  for (int64_t j = 0; j < D; ++j) d.d_w1[j * C + c] = strided_dot(d.dz + j, D, g.s + c, C, N, T(0));
  for (int64_t n = 0; n < N; ++n)
    d.coef_c[n * C + c] += strided_dot(d.dz + n * D, 1, g.w1 + c, C, D, T(0)) * d.inv_hw;
}

// Backward phase C, one hidden unit: d b1[j].
template <typename T>
ANRL_HD void gate_hidden_bias_grad(const GateArgs<T>& g, const GateGrads<T>& d, int64_t j) {
  T acc = 0;
  for (int64_t n = 0; n < g.N; ++n) acc += d.dz[n * g.D + j];
  d.d_b1[j] = acc;
}

}  // namespace anrl_ext
