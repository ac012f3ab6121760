// Per-element math shared by the CPU (C++) and CUDA kernels.
//
// Everything here is an inline function marked host+device, so the CPU build
// compiles and tests exactly the merge arithmetic the CUDA kernels run.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define ANRL_HD __host__ __device__ __forceinline__
#define ANRL_UNROLL_FULL _Pragma("unroll")
#else
#define ANRL_HD inline
#define ANRL_UNROLL_FULL
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
// merge: the CPU kernels merge them pairwise, the CUDA ones with fold_parts.
template <typename acc_t>
struct SumPair {
  acc_t s0, s1;
};

template <typename acc_t>
ANRL_HD SumPair<acc_t> add_pairs(SumPair<acc_t> a, SumPair<acc_t> b) {
  return {a.s0 + b.s0, a.s1 + b.s1};
}

// The results of a walk of parts, part(first), part(first + step), ... below
// `end`, folded in a fixed tree: open[0] takes kFan parts, open[l + 1] takes
// kFan full folds of open[l] (each fold from a zero state), the top level
// open[kLevels - 1] every full fold below it; then the open folds, lowest first.
// A chain of n parts in kFan^(kLevels-1)-sized folds instead of one of n: the
// CUDA channels_last reductions' per-thread rounding. One count of parts drives
// every level; nested loops would hold a row index and a bound per level, which
// spills at the NHWC kernels' 40 registers. Joining an empty (zero) state must
// change nothing.
template <int kFan, int kLevels, typename State, typename Part, typename Join>
ANRL_HD State fold_parts(int64_t first, int64_t end, int64_t step, Part part, Join join) {
  static_assert(kFan >= 2 && kLevels >= 1, "fold_parts: kFan >= 2, kLevels >= 1");
  State open[kLevels] = {};
  unsigned parts = 0;
  for (int64_t r = first; r < end; r += step) {
    open[0] = join(open[0], part(r));
    ++parts;
    unsigned span = 1;
    ANRL_UNROLL_FULL
    for (int l = 0; l + 1 < kLevels; ++l) {  // close every level this part completes
      span *= kFan;
      if (parts % span != 0) break;
      open[l + 1] = join(open[l + 1], open[l]);
      open[l] = State{};
    }
  }
  ANRL_UNROLL_FULL
  for (int l = 0; l + 1 < kLevels; ++l) open[l + 1] = join(open[l + 1], open[l]);
  return open[kLevels - 1];
}

// A channels_last thread's walk in the CUDA `moments`: the rows first, first + kStride, ... below
// end of one channel, row r's value at x[r * row_elems], and their moments about pivot. Rows go in
// parts of kFan, folded by fold_parts<kFan, kLevels>. Each part's rows are loaded before the part
// before it is reduced, so a thread has two parts' loads in flight, not one: the kernel is short of
// bytes in flight, not of arithmetic (run 4: bfloat16 as slow as float32, at 60 % of the copy). The
// arithmetic is Welford's, row by row in order, as strided_moments_late_loads does it without the
// early loads (test_row_walk.py checks the two give the same bits).
template <int kFan, int kLevels, int kStride, typename acc_t, typename scalar_t>
ANRL_HD Moments<acc_t> strided_moments(const scalar_t* x, int64_t row_elems, int64_t first, int64_t end,
                                       acc_t pivot) {
  const int64_t step = kStride * row_elems;  // elements from one of the thread's rows to its next
  scalar_t next[kFan] = {};                  // the rows of the part after the one being reduced
  const scalar_t* xr = x + first * row_elems;
  auto load = [&](int64_t r0) {  // the part from row r0, at xr
    if (r0 + (kFan - 1) * kStride < end) {  // a whole part: no bounds check per row
      ANRL_UNROLL_FULL
      for (int k = 0; k < kFan; ++k) next[k] = xr[k * step];
    } else {
      ANRL_UNROLL_FULL
      for (int k = 0; k < kFan; ++k)
        if (r0 + k * kStride < end) next[k] = xr[k * step];
    }
    xr += kFan * step;
  };
  if (first < end) load(first);
  auto part = [&](int64_t r0) {
    acc_t v[kFan];
    ANRL_UNROLL_FULL
    for (int k = 0; k < kFan; ++k) v[k] = static_cast<acc_t>(next[k]);
    if (r0 + kFan * kStride < end) load(r0 + kFan * kStride);
    Moments<acc_t> m{0, 0, 0};
    if (r0 + (kFan - 1) * kStride < end) {
      ANRL_UNROLL_FULL
      for (int k = 0; k < kFan; ++k) m = welford_add(m, v[k] - pivot);
    } else {
      ANRL_UNROLL_FULL
      for (int k = 0; k < kFan; ++k)
        if (r0 + k * kStride < end) m = welford_add(m, v[k] - pivot);
    }
    return m;
  };
  return fold_parts<kFan, kLevels, Moments<acc_t>>(first, end, int64_t(kFan) * kStride, part,
                                                   [](Moments<acc_t> a, Moments<acc_t> b) { return chan_merge(a, b); });
}

// strided_moments with each part's rows loaded as the part is reduced: the CUDA kernel's walk until
// 2026-12-06, kept so that the GPU table times the two side by side (kernel_variants.h).
template <int kFan, int kLevels, int kStride, typename acc_t, typename scalar_t>
ANRL_HD Moments<acc_t> strided_moments_late_loads(const scalar_t* x, int64_t row_elems, int64_t first, int64_t end,
                                                  acc_t pivot) {
  const int64_t step = kStride * row_elems;
  auto part = [&](int64_t r0) {
    const scalar_t* xr = x + r0 * row_elems;
    Moments<acc_t> m{0, 0, 0};
    if (r0 + (kFan - 1) * kStride < end) {  // a whole part: no bounds check per row
      acc_t v[kFan];
      ANRL_UNROLL_FULL
      for (int k = 0; k < kFan; ++k) v[k] = static_cast<acc_t>(xr[k * step]);
      ANRL_UNROLL_FULL
      for (int k = 0; k < kFan; ++k) m = welford_add(m, v[k] - pivot);
    } else {
      for (int64_t r = r0; r < end; r += kStride, xr += step) m = welford_add(m, static_cast<acc_t>(*xr) - pivot);
    }
    return m;
  };
  return fold_parts<kFan, kLevels, Moments<acc_t>>(first, end, int64_t(kFan) * kStride, part,
                                                   [](Moments<acc_t> a, Moments<acc_t> b) { return chan_merge(a, b); });
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
