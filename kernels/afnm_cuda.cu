// CUDA kernels of the four AFNM primitives (DESIGN.md section 2).
//
// Reductions (moments, reduce) split each (n, c) plane (channels_last: each
// sample's rows of a block of channels) over several blocks when too few
// blocks would fill the GPU, write one partial per block, and merge the partials in
// a fixed order in a second launch: no float atomics, bitwise-reproducible.
// With one split (N*C large) the block writes the result itself and there is
// no second launch: the same bits as a merge of one partial.
// moments runs Welford on x - pivot, the pivot being the plane's first value
// (channels_last: the sample's first row), so a mean is rounded at its own
// magnitude once, when the pivot is added back, not at every update.
// Elementwise maps use 16-byte vector loads when the plane (NCHW) or the row
// (channels_last) length allows it. Everything runs on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "anrl_ext/checks.h"
#include "anrl_ext/kernel_variants.h"
#include "anrl_ext/moments.h"

namespace anrl_ext {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

template <typename scalar_t, int VEC>
struct alignas(sizeof(scalar_t) * VEC) Pack {
  scalar_t v[VEC];
};

template <typename acc_t>
__device__ Moments<acc_t> shfl_moments(Moments<acc_t> m, int offset) {
  Moments<acc_t> o;
  o.mean = __shfl_down_sync(0xffffffffu, m.mean, offset);
  o.m2 = __shfl_down_sync(0xffffffffu, m.m2, offset);
  o.count = __shfl_down_sync(0xffffffffu, m.count, offset);
  return o;
}

// Block-wide Chan merge; the result is valid in thread 0.
template <typename acc_t>
__device__ Moments<acc_t> block_merge(Moments<acc_t> m) {
  __shared__ acc_t sm[3][kThreads / kWarp];
  for (int off = kWarp / 2; off > 0; off /= 2) m = chan_merge(m, shfl_moments(m, off));
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) { sm[0][warp] = m.mean; sm[1][warp] = m.m2; sm[2][warp] = m.count; }
  __syncthreads();
  if (warp == 0) {
    m = lane < kThreads / kWarp ? Moments<acc_t>{sm[0][lane], sm[1][lane], sm[2][lane]}
                                : Moments<acc_t>{0, 0, 0};
    for (int off = kWarp / 2; off > 0; off /= 2) m = chan_merge(m, shfl_moments(m, off));
  }
  return m;
}

template <typename acc_t>
__device__ void block_sum2(acc_t& a, acc_t& b) {
  __shared__ acc_t sm[2][kThreads / kWarp];
  for (int off = kWarp / 2; off > 0; off /= 2) {
    a += __shfl_down_sync(0xffffffffu, a, off);
    b += __shfl_down_sync(0xffffffffu, b, off);
  }
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) { sm[0][warp] = a; sm[1][warp] = b; }
  __syncthreads();
  if (warp == 0) {
    a = lane < kThreads / kWarp ? sm[0][lane] : acc_t(0);
    b = lane < kThreads / kWarp ? sm[1][lane] : acc_t(0);
    for (int off = kWarp / 2; off > 0; off /= 2) {
      a += __shfl_down_sync(0xffffffffu, a, off);
      b += __shfl_down_sync(0xffffffffu, b, off);
    }
  }
}

// One block's result for plane p, split s of `splits`, its moments taken
// relative to `pivot`: the final (mean, var) when there is one split, else a
// partial for the merge launch, which finds the pivot in mean[p].
template <typename acc_t>
__device__ void store_moments(Moments<acc_t> m, acc_t pivot, acc_t* part, acc_t* mean, acc_t* var, int64_t p,
                              int64_t s, int64_t splits) {
  if (splits == 1) {
    mean[p] = m.mean + pivot;
    var[p] = m.m2 / m.count;  // = merge_moments_kernel of this one partial
    return;
  }
  acc_t* o = part + 3 * (p * splits + s);
  o[0] = m.mean; o[1] = m.m2; o[2] = m.count;
  if (s == 0) mean[p] = pivot;  // every split of the plane shares it; overwritten by the merge
}

template <typename acc_t>
__device__ void store_sums(acc_t a0, acc_t a1, acc_t* part, acc_t* s0, acc_t* s1, int64_t p, int64_t s,
                           int64_t splits) {
  if (splits == 1) {
    s0[p] = a0;
    s1[p] = a1;
    return;
  }
  acc_t* o = part + 2 * (p * splits + s);
  o[0] = a0; o[1] = a1;
}

// ---- NCHW reductions: grid (planes, splits) -------------------------------

template <typename scalar_t, typename acc_t, int VEC>
__global__ void moments_nchw_kernel(const scalar_t* __restrict__ x, acc_t* __restrict__ part,
                                    acc_t* __restrict__ mean, acc_t* __restrict__ var, int64_t M,
                                    int64_t seg) {
  const int64_t p = blockIdx.x, s = blockIdx.y;
  const int64_t begin = s * seg, end = min(M, begin + seg);
  const scalar_t* xp = x + p * M;
  const acc_t pivot = static_cast<acc_t>(xp[0]);
  Moments<acc_t> m{0, 0, 0};
  constexpr int64_t kStep = int64_t(kThreads) * VEC;
  int64_t i = begin + int64_t(threadIdx.x) * VEC;
  if (VEC > 1) {
    // Two packs per iteration, both loads issued before either is used: one
    // 16-byte load in flight per thread leaves an SM short of the bytes in
    // flight that HBM latency needs (moments has no second input, unlike reduce).
    for (; i + kStep + VEC <= end; i += 2 * kStep) {
      const Pack<scalar_t, VEC> a = *reinterpret_cast<const Pack<scalar_t, VEC>*>(xp + i);
      const Pack<scalar_t, VEC> b = *reinterpret_cast<const Pack<scalar_t, VEC>*>(xp + i + kStep);
#pragma unroll
      for (int k = 0; k < VEC; ++k) m = welford_add(m, static_cast<acc_t>(a.v[k]) - pivot);
#pragma unroll
      for (int k = 0; k < VEC; ++k) m = welford_add(m, static_cast<acc_t>(b.v[k]) - pivot);
    }
  }
  for (; i < end; i += kStep) {  // the rest, one pack (or a ragged tail) at a time
    if (VEC > 1 && i + VEC <= end) {
      Pack<scalar_t, VEC> v = *reinterpret_cast<const Pack<scalar_t, VEC>*>(xp + i);
#pragma unroll
      for (int k = 0; k < VEC; ++k) m = welford_add(m, static_cast<acc_t>(v.v[k]) - pivot);
    } else {
      for (int64_t k = i; k < min(end, i + VEC); ++k) m = welford_add(m, static_cast<acc_t>(xp[k]) - pivot);
    }
  }
  m = block_merge(m);
  if (threadIdx.x == 0) store_moments(m, pivot, part, mean, var, p, s, gridDim.y);
}

template <typename scalar_t, typename acc_t, int VEC>
__global__ void reduce_nchw_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x,
                                   const acc_t* __restrict__ center, acc_t* __restrict__ part,
                                   acc_t* __restrict__ s0, acc_t* __restrict__ s1, int64_t M, int64_t seg) {
  const int64_t p = blockIdx.x, s = blockIdx.y;
  const int64_t begin = s * seg, end = min(M, begin + seg);
  const scalar_t* g = dy + p * M;
  const scalar_t* xp = x + p * M;
  const acc_t c = center[p];
  acc_t a0 = 0, a1 = 0;
  for (int64_t i = begin + int64_t(threadIdx.x) * VEC; i < end; i += int64_t(kThreads) * VEC) {
    if (VEC > 1 && i + VEC <= end) {
      Pack<scalar_t, VEC> gv = *reinterpret_cast<const Pack<scalar_t, VEC>*>(g + i);
      Pack<scalar_t, VEC> xv = *reinterpret_cast<const Pack<scalar_t, VEC>*>(xp + i);
      // The pack's sums first, then into the thread's: float32 chains of VEC and
      // M / (256 * VEC) terms instead of one of M / 256.
      acc_t p0 = 0, p1 = 0;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const acc_t gi = static_cast<acc_t>(gv.v[k]);
        p0 += gi;
        p1 += gi * (static_cast<acc_t>(xv.v[k]) - c);
      }
      a0 += p0;
      a1 += p1;
    } else {
      for (int64_t k = i; k < min(end, i + VEC); ++k) {
        const acc_t gi = static_cast<acc_t>(g[k]);
        a0 += gi;
        a1 += gi * (static_cast<acc_t>(xp[k]) - c);
      }
    }
  }
  block_sum2(a0, a1);
  if (threadIdx.x == 0) store_sums(a0, a1, part, s0, s1, p, s, gridDim.y);
}

// ---- channels_last reductions: grid (N, ceil(C/32), splits), block (32, 8)
// Each thread walks every 8th row of its split (up to M / 8 of them). It sums
// them in parts of kRowPart rows, folds kRowPart parts into one, kRowPart of
// those into one (kRowLevels - 1 levels of folds), and those into its
// running result: float32 chains of kRowPart, kRowPart, kRowPart and
// M / (8 * kRowPart^3) terms (M = 65536 in one split: 8, 8, 8 and 16, not one
// of 8192). A whole part loads without a bounds check per row. moments loads
// each part before the part before it is reduced (strided_moments, moments.h).

constexpr int kRowsPerBlock = 8;
constexpr int kRowPart = 8;
constexpr int kRowLevels = 3;
constexpr int64_t kPartRows = int64_t(kRowsPerBlock) * kRowPart;  // rows one part of a thread spans
// Blocks per SM the NHWC reduce is compiled for (float accumulation; half
// that for double): at most 40 registers a thread (ptxas would take 48, room
// for 5 blocks; 8 blocks, 32 registers, spills). Read from the sm_90 build:
// python_tests/test_kernel_codegen.py.
constexpr int kNhwcBlocksPerSm = 6;
// moments holds two parts' rows a thread (the next part's and the one it reduces): 48 registers,
// 5 blocks an SM (at 40 it kept 16 bytes on the stack). At 32 x 64 x 128 x 128 its grid is 4.4
// blocks an SM anyway.
constexpr int kNhwcMomentsBlocksPerSm = 5;

// part(r0) sums one part, rows r0, r0 + 8, ... below `end`; join adds two results.
template <typename State, typename Part, typename Join>
__device__ __forceinline__ State sum_rows_in_parts(int64_t first, int64_t end, Part part, Join join) {
  return fold_parts<kRowPart, kRowLevels, State>(first, end, kPartRows, part, join);
}

// kEarlyLoads false: the walk until 2026-12-06 (strided_moments_late_loads), for side-by-side timings.
template <typename scalar_t, typename acc_t, bool kEarlyLoads>
__global__ void __launch_bounds__(kWarp * kRowsPerBlock,
                                  (kEarlyLoads ? kNhwcMomentsBlocksPerSm : kNhwcBlocksPerSm) * 4 / sizeof(acc_t))
moments_nhwc_kernel(const scalar_t* __restrict__ x, acc_t* __restrict__ part,
                    acc_t* __restrict__ mean, acc_t* __restrict__ var, int64_t C, int64_t M, int64_t seg) {
  const int64_t n = blockIdx.x, c = blockIdx.y * kWarp + threadIdx.x, s = blockIdx.z;
  const int64_t begin = s * seg, end = min(M, begin + seg);
  Moments<acc_t> m{0, 0, 0};
  acc_t pivot = 0;
  if (c < C) {
    pivot = static_cast<acc_t>(x[n * M * C + c]);  // the sample's first row
    const scalar_t* xc = x + n * M * C + c;
    const int64_t first = begin + threadIdx.y;
    m = kEarlyLoads ? strided_moments<kRowPart, kRowLevels, kRowsPerBlock>(xc, C, first, end, pivot)
                    : strided_moments_late_loads<kRowPart, kRowLevels, kRowsPerBlock>(xc, C, first, end, pivot);
  }
  __shared__ acc_t sm[3][kRowsPerBlock][kWarp];
  sm[0][threadIdx.y][threadIdx.x] = m.mean;
  sm[1][threadIdx.y][threadIdx.x] = m.m2;
  sm[2][threadIdx.y][threadIdx.x] = m.count;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int k = 1; k < kRowsPerBlock; ++k)
      m = chan_merge(m, Moments<acc_t>{sm[0][k][threadIdx.x], sm[1][k][threadIdx.x],
                                       sm[2][k][threadIdx.x]});
    store_moments(m, pivot, part, mean, var, n * C + c, s, gridDim.z);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kWarp * kRowsPerBlock, kNhwcBlocksPerSm * 4 / sizeof(acc_t))
reduce_nhwc_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x,
                   const acc_t* __restrict__ center, acc_t* __restrict__ part, acc_t* __restrict__ s0,
                   acc_t* __restrict__ s1, int64_t C, int64_t M, int64_t seg) {
  const int64_t n = blockIdx.x, c = blockIdx.y * kWarp + threadIdx.x, s = blockIdx.z;
  const int64_t begin = s * seg, end = min(M, begin + seg);
  acc_t a0 = 0, a1 = 0;
  if (c < C) {
    const acc_t m = center[n * C + c];
    const int64_t row_stride = kRowsPerBlock * C;
    auto sums_of_part = [&](int64_t r0) {
      const int64_t i0 = (n * M + r0) * C + c;
      SumPair<acc_t> ps{0, 0};
      if (r0 + (kRowPart - 1) * kRowsPerBlock < end) {  // a whole part: no bounds check per row
        acc_t g[kRowPart], v[kRowPart];
#pragma unroll
        for (int k = 0; k < kRowPart; ++k) {
          g[k] = static_cast<acc_t>(dy[i0 + k * row_stride]);
          v[k] = static_cast<acc_t>(x[i0 + k * row_stride]);
        }
#pragma unroll
        for (int k = 0; k < kRowPart; ++k) {
          ps.s0 += g[k];
          ps.s1 += g[k] * (v[k] - m);
        }
      } else {
        for (int64_t r = r0, i = i0; r < end; r += kRowsPerBlock, i += row_stride) {
          const acc_t gi = static_cast<acc_t>(dy[i]);
          ps.s0 += gi;
          ps.s1 += gi * (static_cast<acc_t>(x[i]) - m);
        }
      }
      return ps;
    };
    const SumPair<acc_t> t = sum_rows_in_parts<SumPair<acc_t>>(
        begin + threadIdx.y, end, sums_of_part,
        [](SumPair<acc_t> a, SumPair<acc_t> b) { return add_pairs(a, b); });
    a0 = t.s0;
    a1 = t.s1;
  }
  __shared__ acc_t sm[2][kRowsPerBlock][kWarp];
  sm[0][threadIdx.y][threadIdx.x] = a0;
  sm[1][threadIdx.y][threadIdx.x] = a1;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int k = 1; k < kRowsPerBlock; ++k) {
      a0 += sm[0][k][threadIdx.x];
      a1 += sm[1][k][threadIdx.x];
    }
    store_sums(a0, a1, part, s0, s1, n * C + c, s, gridDim.z);
  }
}

// ---- merge of per-split partials, fixed order ----------------------------
// In double (a few flops per plane): then the merge adds no rounding of its
// own, only the final one (the Triton merges do the same).

template <typename acc_t>
__global__ void merge_moments_kernel(const acc_t* __restrict__ part, acc_t* __restrict__ mean,
                                     acc_t* __restrict__ var, int64_t planes, int64_t splits) {
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= planes) return;
  const double pivot = mean[p];  // written there by the plane's first split (store_moments)
  Moments<double> m{0, 0, 0};
  for (int64_t s = 0; s < splits; ++s) {
    const acc_t* q = part + 3 * (p * splits + s);
    m = chan_merge(m, Moments<double>{q[0], q[1], q[2]});
  }
  mean[p] = static_cast<acc_t>(m.mean + pivot);
  var[p] = static_cast<acc_t>(m.m2 / m.count);
}

template <typename acc_t>
__global__ void merge_sums_kernel(const acc_t* __restrict__ part, acc_t* __restrict__ s0,
                                  acc_t* __restrict__ s1, int64_t planes, int64_t splits) {
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= planes) return;
  double a = 0, b = 0;
  for (int64_t s = 0; s < splits; ++s) {
    a += part[2 * (p * splits + s)];
    b += part[2 * (p * splits + s) + 1];
  }
  s0[p] = static_cast<acc_t>(a);
  s1[p] = static_cast<acc_t>(b);
}

// ---- elementwise ----------------------------------------------------------

// Coefficient index of element i: NCHW -> i / M; channels_last -> n*C + c.
struct CoefIndex {
  int64_t C, M;
  bool nhwc;
  __device__ int64_t operator()(int64_t i) const {
    return nhwc ? (i / (M * C)) * C + i % C : i / M;
  }
};

// f(k, j) for element k of the pack that starts at element i, j its coefficient
// index. VEC divides the plane (NCHW) or row (NHWC) length, so one pack lies in
// one plane (every element has i's index) or covers consecutive channels of one
// row (index + k): one integer division per pack, not two per element, and in
// NCHW one load of each coefficient per pack.
template <int VEC, typename F>
__device__ __forceinline__ void for_pack(const CoefIndex& idx, int64_t i, F&& f) {
  const int64_t j = idx(i);
  if (idx.nhwc) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) f(k, j + k);
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) f(k, j);
  }
}

template <typename scalar_t, typename acc_t, int VEC>
__global__ void affine_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ m,
                              const acc_t* __restrict__ s, const acc_t* __restrict__ t,
                              scalar_t* __restrict__ y, int64_t numel, CoefIndex idx) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x * VEC;
  for (int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC; i < numel; i += stride) {
    Pack<scalar_t, VEC> xv = *reinterpret_cast<const Pack<scalar_t, VEC>*>(x + i);
    Pack<scalar_t, VEC> yv;
    for_pack<VEC>(idx, i, [&](int k, int64_t j) {
      yv.v[k] = static_cast<scalar_t>(centered_affine(static_cast<acc_t>(xv.v[k]), m[j], s[j], t[j]));
    });
    *reinterpret_cast<Pack<scalar_t, VEC>*>(y + i) = yv;
  }
}

template <typename scalar_t, typename acc_t, int VEC>
__global__ void affine2_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x,
                               const acc_t* __restrict__ m, const acc_t* __restrict__ a,
                               const acc_t* __restrict__ b, const acc_t* __restrict__ c,
                               scalar_t* __restrict__ out, int64_t numel, CoefIndex idx) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x * VEC;
  for (int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC; i < numel; i += stride) {
    Pack<scalar_t, VEC> gv = *reinterpret_cast<const Pack<scalar_t, VEC>*>(dy + i);
    Pack<scalar_t, VEC> xv = *reinterpret_cast<const Pack<scalar_t, VEC>*>(x + i);
    Pack<scalar_t, VEC> ov;
    for_pack<VEC>(idx, i, [&](int k, int64_t j) {
      ov.v[k] = static_cast<scalar_t>(centered_affine2(static_cast<acc_t>(gv.v[k]),
                                                       static_cast<acc_t>(xv.v[k]), m[j], a[j],
                                                       b[j], c[j]));
    });
    *reinterpret_cast<Pack<scalar_t, VEC>*>(out + i) = ov;
  }
}

// ---- launch helpers -------------------------------------------------------

// Only c10 headers: ATen/cuda/CUDAContext.h pulls in cuSPARSE/cuBLAS headers that a
// bare CUDA toolkit may not ship.
int sm_count() {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount,
                                        c10::cuda::current_device()));
  return count;
}

// Splits per plane: enough blocks to fill the GPU (4 per SM), at least ~4K
// elements each. `blocks` is one split's grid: a block per plane in NCHW, a block
// per (sample, kWarp channels) in channels_last, whose split is a run of rows of
// kWarp channels (counting planes there left 64 blocks at 32 x 64 x 128 x 128,
// under one per SM of an H100). channels_last also stops at kMaxNhwcSplits: with
// few blocks, 4 per SM would be hundreds of splits, and the merge adds a plane's
// splits in one chain (modelled at 264 splits: s0 and s1 5e-7 off, 1.5e-7 at 16).
constexpr int64_t kSplitElements = 4096;
constexpr int64_t kMaxNhwcSplits = 16;

int64_t num_splits(int64_t blocks, int64_t M, int64_t min_seg, int64_t cap) {
  const int64_t want = (4 * sm_count() + blocks - 1) / blocks;
  const int64_t most = std::max<int64_t>(1, std::min(M / min_seg, cap));
  return std::max<int64_t>(1, std::min(want, most));
}

int64_t num_splits(int64_t N, int64_t C, int64_t M, bool nhwc) {
  return nhwc ? num_splits(N * ((C + kWarp - 1) / kWarp), M, kSplitElements / kWarp, kMaxNhwcSplits)
              : num_splits(N * C, M, kSplitElements, M);
}

template <typename scalar_t>
int vec_width(int64_t run, std::initializer_list<const void*> ptrs) {
  int vec = 16 / sizeof(scalar_t);
  while (vec > 1) {
    bool ok = run % vec == 0;
    for (const void* p : ptrs) ok = ok && reinterpret_cast<uintptr_t>(p) % (vec * sizeof(scalar_t)) == 0;
    if (ok) break;
    vec /= 2;
  }
  return vec;
}

int64_t elementwise_blocks(int64_t numel, int vec) {
  const int64_t need = (numel / vec + kThreads - 1) / kThreads;
  return std::max<int64_t>(1, std::min<int64_t>(need, int64_t(sm_count()) * 32));
}

#define ANRL_VEC_SWITCH(vec, ...)                 \
  switch (vec) {                                  \
    case 8: { constexpr int V = 8; __VA_ARGS__; break; } \
    case 4: { constexpr int V = 4; __VA_ARGS__; break; } \
    case 2: { constexpr int V = 2; __VA_ARGS__; break; } \
    default: { constexpr int V = 1; __VA_ARGS__; break; } \
  }

}  // namespace

std::tuple<at::Tensor, at::Tensor> moments_cuda(const at::Tensor& x_in) {
  check_feature_map(x_in, "x");
  c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = as_kernel_layout(x_in);
  const int64_t N = x.size(0), C = x.size(1), M = x.size(2) * x.size(3);
  TORCH_CHECK_VALUE(M > 0, "anrl_ext: x has no spatial elements, shape ", x.sizes());
  auto opts = x.options().dtype(acc_dtype(x.scalar_type()));
  at::Tensor mean = at::empty({N, C}, opts), var = at::empty({N, C}, opts);
  if (N * C == 0) return {mean, var};
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t splits = num_splits(N, C, M, layout_of(x) == Layout::NHWC);
  const int64_t seg = (M + splits - 1) / splits;
  // Partials only when a plane is split; one split writes mean / var directly.
  at::Tensor part = splits > 1 ? at::empty({N * C, splits, 3}, opts) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "moments_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    acc_t* pp = splits > 1 ? part.mutable_data_ptr<acc_t>() : nullptr;
    acc_t* mp = mean.mutable_data_ptr<acc_t>();
    acc_t* vp = var.mutable_data_ptr<acc_t>();
    if (layout_of(x) == Layout::NCHW) {
      const int vec = vec_width<scalar_t>(M, {xp});
      const int v = seg % vec == 0 ? vec : 1;
      dim3 grid(N * C, splits);
      ANRL_VEC_SWITCH(v, (moments_nchw_kernel<scalar_t, acc_t, V>
                          <<<grid, kThreads, 0, stream>>>(xp, pp, mp, vp, M, seg)));
    } else {
      dim3 grid(N, (C + kWarp - 1) / kWarp, splits), block(kWarp, kRowsPerBlock);
      if (nhwc_moments_early_loads())
        moments_nhwc_kernel<scalar_t, acc_t, true><<<grid, block, 0, stream>>>(xp, pp, mp, vp, C, M, seg);
      else
        moments_nhwc_kernel<scalar_t, acc_t, false><<<grid, block, 0, stream>>>(xp, pp, mp, vp, C, M, seg);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (splits > 1) {
      merge_moments_kernel<acc_t><<<(N * C + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
          pp, mp, vp, N * C, splits);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {mean, var};
}

std::tuple<at::Tensor, at::Tensor> reduce_cuda(const at::Tensor& dy_in, const at::Tensor& x_in,
                                               const at::Tensor& center_in) {
  c10::cuda::CUDAGuard guard(x_in.device());
  const auto checked = input_and_grad(x_in, dy_in);
  const at::Tensor& x = checked.first;
  const at::Tensor& dy = checked.second;
  const at::Tensor center = coefficient(center_in, x, "center");
  const int64_t N = x.size(0), C = x.size(1), M = x.size(2) * x.size(3);
  auto opts = x.options().dtype(acc_dtype(x.scalar_type()));
  at::Tensor s0 = at::empty({N, C}, opts), s1 = at::empty({N, C}, opts);
  if (N * C == 0) return {s0, s1};
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t splits = num_splits(N, C, M, layout_of(x) == Layout::NHWC);
  const int64_t seg = (M + splits - 1) / splits;
  at::Tensor part = splits > 1 ? at::empty({N * C, splits, 2}, opts) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "reduce_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gp = dy.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const acc_t* cp = center.const_data_ptr<acc_t>();
    acc_t* pp = splits > 1 ? part.mutable_data_ptr<acc_t>() : nullptr;
    acc_t* s0p = s0.mutable_data_ptr<acc_t>();
    acc_t* s1p = s1.mutable_data_ptr<acc_t>();
    if (layout_of(x) == Layout::NCHW) {
      const int vec = vec_width<scalar_t>(M, {gp, xp});
      const int v = seg % vec == 0 ? vec : 1;
      dim3 grid(N * C, splits);
      ANRL_VEC_SWITCH(v, (reduce_nchw_kernel<scalar_t, acc_t, V><<<grid, kThreads, 0, stream>>>(
                              gp, xp, cp, pp, s0p, s1p, M, seg)));
    } else {
      dim3 grid(N, (C + kWarp - 1) / kWarp, splits), block(kWarp, kRowsPerBlock);
      reduce_nhwc_kernel<scalar_t, acc_t><<<grid, block, 0, stream>>>(gp, xp, cp, pp, s0p, s1p, C, M, seg);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (splits > 1) {
      merge_sums_kernel<acc_t><<<(N * C + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
          pp, s0p, s1p, N * C, splits);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {s0, s1};
}

at::Tensor affine_cuda(const at::Tensor& x_in, const at::Tensor& center_in,
                       const at::Tensor& scale_in, const at::Tensor& shift_in) {
  check_feature_map(x_in, "x");
  c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = as_kernel_layout(x_in);
  const at::Tensor m = coefficient(center_in, x, "center");
  const at::Tensor s = coefficient(scale_in, x, "scale");
  const at::Tensor t = coefficient(shift_in, x, "shift");
  const bool nhwc = layout_of(x) == Layout::NHWC;
  at::Tensor y = at::empty_like(x, nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  const int64_t C = x.size(1), M = x.size(2) * x.size(3), numel = x.numel();
  if (numel == 0) return y;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "affine_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const int vec = vec_width<scalar_t>(nhwc ? C : M, {xp, yp});
    ANRL_VEC_SWITCH(vec, (affine_kernel<scalar_t, acc_t, V>
                          <<<elementwise_blocks(numel, V), kThreads, 0, stream>>>(
                              xp, m.const_data_ptr<acc_t>(), s.const_data_ptr<acc_t>(),
                              t.const_data_ptr<acc_t>(), yp, numel, CoefIndex{C, M, nhwc})));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

at::Tensor affine2_cuda(const at::Tensor& dy_in, const at::Tensor& x_in, const at::Tensor& center_in,
                        const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& c_in) {
  c10::cuda::CUDAGuard guard(x_in.device());
  const auto checked = input_and_grad(x_in, dy_in);
  const at::Tensor& x = checked.first;
  const at::Tensor& dy = checked.second;
  const at::Tensor m = coefficient(center_in, x, "center");
  const at::Tensor a = coefficient(a_in, x, "a");
  const at::Tensor b = coefficient(b_in, x, "b");
  const at::Tensor c = coefficient(c_in, x, "c");
  const bool nhwc = layout_of(x) == Layout::NHWC;
  at::Tensor out = at::empty_like(x, nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  const int64_t C = x.size(1), M = x.size(2) * x.size(3), numel = x.numel();
  if (numel == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "affine2_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gp = dy.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    const int vec = vec_width<scalar_t>(nhwc ? C : M, {gp, xp, op});
    ANRL_VEC_SWITCH(vec, (affine2_kernel<scalar_t, acc_t, V>
                          <<<elementwise_blocks(numel, V), kThreads, 0, stream>>>(
                              gp, xp, m.const_data_ptr<acc_t>(), a.const_data_ptr<acc_t>(),
                              b.const_data_ptr<acc_t>(), c.const_data_ptr<acc_t>(), op, numel,
                              CoefIndex{C, M, nhwc})));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace anrl_ext

TORCH_LIBRARY_IMPL(anrl_ext, CUDA, m) {
  m.impl("moments", &anrl_ext::moments_cuda);
  m.impl("affine", &anrl_ext::affine_cuda);
  m.impl("reduce", &anrl_ext::reduce_cuda);
  m.impl("affine2", &anrl_ext::affine2_cuda);
}
