// Per-element math shared by the CPU (C++) and CUDA kernels.
//
// Everything here is an inline function marked host+device, so the CPU build
// compiles and tests exactly the merge arithmetic the CUDA kernels run.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define ANRL_HD __host__ __device__ __forceinline__
#else
#define ANRL_HD inline
#endif

namespace anrl_ext {

// Running (mean, M2, count) of a set of values; M2 = sum (x - mean)^2.
// count is kept in the accumulator type so merges need no int conversion.
template <typename acc_t>
struct Moments {
  acc_t mean;
  acc_t m2;
  acc_t count;
};

// Welford update with one value.
template <typename acc_t>
ANRL_HD Moments<acc_t> welford_add(Moments<acc_t> a, acc_t x) {
  a.count += acc_t(1);
  acc_t delta = x - a.mean;
  a.mean += delta / a.count;
  a.m2 += delta * (x - a.mean);
  return a;
}

// Chan et al. parallel merge of two partial results. Never forms E[x^2] -
// E[x]^2, which loses every digit when |mean| >> std in float32.
template <typename acc_t>
ANRL_HD Moments<acc_t> chan_merge(Moments<acc_t> a, Moments<acc_t> b) {
  acc_t n = a.count + b.count;
  if (n == acc_t(0)) return a;
  acc_t delta = b.mean - a.mean;
  acc_t wb = b.count / n;
  Moments<acc_t> r;
  r.mean = a.mean + delta * wb;
  r.m2 = a.m2 + b.m2 + delta * delta * a.count * wb;
  r.count = n;
  return r;
}

// reduce's two sums (sum dy, sum dy * (x - center)) carried together, and their
// merge: the CPU kernels merge them pairwise, the CUDA ones in parts and groups.
template <typename acc_t>
struct SumPair {
  acc_t s0, s1;
};

template <typename acc_t>
ANRL_HD SumPair<acc_t> add_pairs(SumPair<acc_t> a, SumPair<acc_t> b) {
  return {a.s0 + b.s0, a.s1 + b.s1};
}

// y = scale * (x - center) + shift. Centering before scaling keeps float32
// exact when |x| is large compared with its spread.
template <typename acc_t>
ANRL_HD acc_t centered_affine(acc_t x, acc_t center, acc_t scale, acc_t shift) {
  return (x - center) * scale + shift;
}

// out = a * dy + b * (x - center) + c: the backward apply of the fused op.
template <typename acc_t>
ANRL_HD acc_t centered_affine2(acc_t dy, acc_t x, acc_t center, acc_t a,
                               acc_t b, acc_t c) {
  return a * dy + (x - center) * b + c;
}

}  // namespace anrl_ext
