// Half and bfloat16 in the CPU kernels' simd loops.
//
// c10's scalar conversions do not all vectorise: Half <-> float is one F16C
// instruction per value (_cvtsh_ss / _cvtss_sh), and float -> BFloat16 rounds
// with a branch on NaN. In a `#pragma omp simd` loop they left the half kernels
// and bfloat16's maps 2-6x slower than float32's while moving half the bytes.
// With the same bits as c10's conversions:
//  * half: a kernel widens a span of inputs into a float buffer with F16C's
//    8-wide conversion, runs its float loop on it and narrows the outputs back
//    (the instructions c10 uses one value at a time, rounding to nearest even;
//    c10's own conversion where the build has no F16C);
//  * bfloat16: converted inside the loop, which vectorises: the upper 16 bits
//    (to_acc), and round to nearest even with every NaN as 0x7FC0, as
//    c10::BFloat16(float), but as a select (from_acc). A widened span would
//    cost bfloat16 an extra pass through L1 for nothing.
// CPU only: the CUDA kernels convert with the hardware's instructions.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <bit>
#include <cstdint>
#include <type_traits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace anrl_ext {

// Half goes through float buffers; every other type is read and written in place.
template <typename scalar_t>
inline constexpr bool kWidened = std::is_same_v<scalar_t, c10::Half>;

// The type a kernel's loops see for scalar_t's data.
template <typename scalar_t>
using loop_t = std::conditional_t<kWidened<scalar_t>, float, scalar_t>;

inline float to_acc(float v) { return v; }
inline double to_acc(double v) { return v; }
inline float to_acc(c10::BFloat16 v) { return std::bit_cast<float>(static_cast<uint32_t>(v.x) << 16); }

template <typename T, typename acc_t>
T from_acc(acc_t v) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    const uint32_t u = std::bit_cast<uint32_t>(v);
    const auto rounded = static_cast<uint16_t>((u + UINT32_C(0x7FFF) + ((u >> 16) & 1)) >> 16);
    return c10::BFloat16(v != v ? UINT16_C(0x7FC0) : rounded, c10::BFloat16::from_bits());
  } else {
    static_assert(std::is_same_v<T, acc_t>, "from_acc: float or double to itself, float to bfloat16");
    return v;
  }
}

inline void widen(const c10::Half* src, int64_t n, float* dst) {
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

inline void narrow(const float* src, int64_t n, c10::Half* dst) {
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; ++i) dst[i] = static_cast<c10::Half>(src[i]);
}

// n values at p as the loops see them: p itself, or for half widened into buf
// (at least n floats).
template <typename scalar_t>
const loop_t<scalar_t>* read_span(const scalar_t* p, int64_t n, float* buf) {
  if constexpr (kWidened<scalar_t>) {
    widen(p, n, buf);
    return buf;
  } else {
    return p;
  }
}

// Where a loop writes n outputs bound for p: p itself, or for half buf, which
// write_span then narrows into p.
template <typename scalar_t>
loop_t<scalar_t>* output_span(scalar_t* p, float* buf) {
  if constexpr (kWidened<scalar_t>) return buf;
  else return p;
}

template <typename scalar_t>
void write_span(const float* buf, int64_t n, scalar_t* p) {
  if constexpr (kWidened<scalar_t>) narrow(buf, n, p);
}

}  // namespace anrl_ext
