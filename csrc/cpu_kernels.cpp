// CPU kernels of the four primitives: OpenMP over planes (NCHW) or row
// blocks (channels_last), simd inner loops, float32 accumulation for
// half/bfloat16, float64 for float64. Half data is widened into float
// buffers a span at a time and outputs narrowed back; the other types are read
// and written in place (cpu_convert.h).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "anrl_ext/checks.h"
#include "anrl_ext/cpu_convert.h"
#include "anrl_ext/moments.h"
#include "anrl_ext/ops.h"
#include "anrl_ext/output_cache.h"

namespace anrl_ext {
namespace {

// Elements per chunk of a plane: small enough to stay in L1 for the second
// (centered) pass, large enough that the per-chunk merge is negligible.
constexpr int64_t kChunk = 2048;

// Float32 sums: a chain of n additions is off by up to ~n/2 ulps of its terms.
// Each simd lane therefore sums parts of kPart elements (kPart / width terms),
// and the parts' sums are added up within a chunk (kChunk / kPart of them) or
// merged pairwise: no chain is longer than ~32 (torch's CPU reductions cascade
// likewise).
constexpr int64_t kPart = 256;

// Channels_last reductions work on blocks of rows (one row = C channels),
// summed in parts of kRowPart rows.
int64_t rows_per_block(int64_t C) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(C, 1)); }
constexpr int64_t kRowPart = 32;

// Combines a stream of partial results pairwise, like a binary counter: the
// k-th push merges once per trailing one bit of k, so the result is a balanced
// tree of depth log2(pushes) in a fixed order. A float32 chain of n merges is
// off by up to ~n/2 ulps; a tree by ~log2(n)/2. `Merge` is a stateless functor.
// (For a stream, as a plane's chunks; merge_blocks_pairwise below does the same
// in place over stored partials, vectorised over channels.)
template <typename T, typename Merge>
struct PairwiseMerger {
  T level[64];
  int64_t pushes = 0;
  int depth = 0;

  void push(T v) {
    for (int64_t k = pushes++; k & 1; k >>= 1) v = Merge{}(level[--depth], v);
    level[depth++] = v;
  }
  // The merge of everything pushed; T{} (zeros) when nothing was.
  T result() const {
    if (depth == 0) return T{};
    int d = depth - 1;
    T r = level[d];
    while (d > 0) r = Merge{}(level[--d], r);
    return r;
  }
};

// The merges, as functors for PairwiseMerger.
struct ChanMerge {
  template <typename acc_t>
  Moments<acc_t> operator()(Moments<acc_t> a, Moments<acc_t> b) const { return chan_merge(a, b); }
};
struct AddPairs {
  template <typename acc_t>
  SumPair<acc_t> operator()(SumPair<acc_t> a, SumPair<acc_t> b) const { return add_pairs(a, b); }
};
template <typename acc_t>
using MomentsMerger = PairwiseMerger<Moments<acc_t>, ChanMerge>;
template <typename acc_t>
using SumPairMerger = PairwiseMerger<SumPair<acc_t>, AddPairs>;

// Channels_last partials: merges each sample's per-block results pairwise, in
// place (a tree over blocks; `merge(n, b, s)` folds block b + s into block b,
// vectorised over channels), so block 0 of each sample ends up with the total.
template <typename F>
void merge_blocks_pairwise(int64_t N, int64_t blocks, F merge) {
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      for (int64_t s = 1; s < blocks; s *= 2)
        for (int64_t b = 0; b + s < blocks; b += 2 * s) merge(n, b, s);
  });
}

// Moments of one chunk, relative to `pivot` (the plane's first value): the
// sums and the returned mean are of the size of the spread, not of the mean.
// Chunks merged this way round the mean once, when the pivot is added back;
// chunk means at the magnitude of the plane mean would be rounded at every
// merge (~2 ulps at 128 x 128, float32).
//
// Not inlined: a simd sum's order is the compiler's (vector width, peeling), and
// one compiled body makes the half kernels' sums, run on widened spans, the
// float32 kernels' bit for bit (as the tests check) on whatever CPU builds it.
template <typename T, typename acc_t>
[[gnu::noinline]] Moments<acc_t> chunk_moments(const T* x, int64_t len, acc_t pivot) {
  acc_t sum = 0;
  for (int64_t s = 0; s < len; s += kPart) {
    const int64_t e = std::min(len, s + kPart);
    acc_t part = 0;
#pragma omp simd reduction(+ : part)
    for (int64_t i = s; i < e; ++i) part += to_acc(x[i]) - pivot;
    sum += part;
  }
  const acc_t offset = sum / static_cast<acc_t>(len);
  acc_t m2 = 0;
  for (int64_t s = 0; s < len; s += kPart) {
    const int64_t e = std::min(len, s + kPart);
    acc_t part = 0;
#pragma omp simd reduction(+ : part)
    for (int64_t i = s; i < e; ++i) {
      const acc_t d = (to_acc(x[i]) - pivot) - offset;
      part += d * d;
    }
    m2 += part;
  }
  return Moments<acc_t>{offset, m2, static_cast<acc_t>(len)};
}

template <typename scalar_t, typename acc_t>
void moments_nchw(const scalar_t* x, acc_t* mean, acc_t* var, int64_t planes, int64_t M) {
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(kWidened<scalar_t> ? kChunk : 0);
    for (int64_t p = begin; p < end; ++p) {
      const scalar_t* xp = x + p * M;
      const acc_t pivot = static_cast<acc_t>(xp[0]);
      MomentsMerger<acc_t> merger;
      for (int64_t s = 0; s < M; s += kChunk) {
        const int64_t len = std::min(kChunk, M - s);
        merger.push(chunk_moments(read_span(xp + s, len, buf.data()), len, pivot));
      }
      const Moments<acc_t> acc = merger.result();
      mean[p] = pivot + acc.mean;
      var[p] = acc.m2 / static_cast<acc_t>(M);
    }
  });
}

// channels_last: each (n, row-block) task writes its own per-channel partial
// moments, relative to the sample's first row (see chunk_moments); a pairwise
// merge in fixed order keeps the result deterministic.
template <typename scalar_t, typename acc_t>
void moments_nhwc(const scalar_t* x, acc_t* mean, acc_t* var, int64_t N, int64_t C, int64_t M) {
  const int64_t R = rows_per_block(C);
  const int64_t blocks = (M + R - 1) / R;
  std::vector<acc_t> pmean(N * blocks * C), pm2(N * blocks * C);
  at::parallel_for(0, N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> part(C);
    std::vector<float> pivot_buf(kWidened<scalar_t> ? C : 0), block_buf(kWidened<scalar_t> ? R * C : 0);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / blocks, b = t % blocks;
      const int64_t r0 = b * R, r1 = std::min(M, r0 + R);
      const int64_t rows = r1 - r0;
      const loop_t<scalar_t>* x0 = read_span(x + n * M * C, C, pivot_buf.data());  // the sample's first row: the pivots
      const loop_t<scalar_t>* xb = read_span(x + (n * M + r0) * C, rows * C, block_buf.data());
      acc_t* sum = pmean.data() + t * C;
      acc_t* p2 = pm2.data() + t * C;
      // Parts of kRowPart rows go through `part` (see kPart); a block of one
      // part sums straight into its result.
      const bool one_part = rows <= kRowPart;
      acc_t* ps = one_part ? sum : part.data();
      acc_t* p2s = one_part ? p2 : part.data();
      std::fill(sum, sum + C, acc_t(0));
      for (int64_t rp = 0; rp < rows; rp += kRowPart) {
        std::fill(ps, ps + C, acc_t(0));
        for (int64_t r = rp; r < std::min(rows, rp + kRowPart); ++r) {
          const loop_t<scalar_t>* row = xb + r * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) ps[c] += to_acc(row[c]) - to_acc(x0[c]);
        }
        if (!one_part)
          for (int64_t c = 0; c < C; ++c) sum[c] += ps[c];
      }
      const acc_t inv = acc_t(1) / static_cast<acc_t>(rows);
      for (int64_t c = 0; c < C; ++c) { sum[c] *= inv; p2[c] = 0; }  // sum now holds the offsets
      for (int64_t rp = 0; rp < rows; rp += kRowPart) {
        std::fill(p2s, p2s + C, acc_t(0));
        for (int64_t r = rp; r < std::min(rows, rp + kRowPart); ++r) {
          const loop_t<scalar_t>* row = xb + r * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            const acc_t d = (to_acc(row[c]) - to_acc(x0[c])) - sum[c];
            p2s[c] += d * d;
          }
        }
        if (!one_part)
          for (int64_t c = 0; c < C; ++c) p2[c] += p2s[c];
      }
    }
  });
  // Rows in blocks [b, b + span): the count of a merged range of blocks.
  auto rows_in = [&](int64_t b, int64_t span) { return static_cast<acc_t>(std::min(M, (b + span) * R) - b * R); };
  merge_blocks_pairwise(N, blocks, [&](int64_t n, int64_t b, int64_t s) {
    acc_t* ma = pmean.data() + (n * blocks + b) * C;
    acc_t* qa = pm2.data() + (n * blocks + b) * C;
    const acc_t* mb = ma + s * C;
    const acc_t* qb = qa + s * C;
    const acc_t na = rows_in(b, s), nb = rows_in(b + s, s);
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const Moments<acc_t> r = chan_merge(Moments<acc_t>{ma[c], qa[c], na}, Moments<acc_t>{mb[c], qb[c], nb});
      ma[c] = r.mean;
      qa[c] = r.m2;
    }
  });
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      for (int64_t c = 0; c < C; ++c) {
        mean[n * C + c] = static_cast<acc_t>(x[n * M * C + c]) + pmean[n * blocks * C + c];
        var[n * C + c] = pm2[n * blocks * C + c] / static_cast<acc_t>(M);
      }
  });
}

// The sums of one chunk of a plane, in simd parts of kPart pushed to `merger`
// (see kPart). Not inlined, for the reason chunk_moments is not.
template <typename T, typename acc_t>
[[gnu::noinline]] void chunk_sums(const T* g, const T* x, int64_t len, acc_t center, SumPairMerger<acc_t>& merger) {
  for (int64_t q = 0; q < len; q += kPart) {
    const int64_t e = std::min(len, q + kPart);
    acc_t a0 = 0, a1 = 0;
#pragma omp simd reduction(+ : a0, a1)
    for (int64_t i = q; i < e; ++i) {
      const acc_t gi = to_acc(g[i]);
      a0 += gi;
      a1 += gi * (to_acc(x[i]) - center);
    }
    merger.push(SumPair<acc_t>{a0, a1});
  }
}

template <typename scalar_t, typename acc_t>
void reduce_nchw(const scalar_t* dy, const scalar_t* x, const acc_t* center, acc_t* s0,
                 acc_t* s1, int64_t planes, int64_t M) {
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> gbuf(kWidened<scalar_t> ? kChunk : 0), xbuf(gbuf.size());
    for (int64_t p = begin; p < end; ++p) {
      SumPairMerger<acc_t> merger;
      for (int64_t s = 0; s < M; s += kChunk) {
        const int64_t len = std::min(kChunk, M - s);
        chunk_sums(read_span(dy + p * M + s, len, gbuf.data()), read_span(x + p * M + s, len, xbuf.data()), len,
                   center[p], merger);
      }
      const SumPair<acc_t> t = merger.result();
      s0[p] = t.s0;
      s1[p] = t.s1;
    }
  });
}

template <typename scalar_t, typename acc_t>
void reduce_nhwc(const scalar_t* dy, const scalar_t* x, const acc_t* center, acc_t* s0,
                 acc_t* s1, int64_t N, int64_t C, int64_t M) {
  const int64_t R = rows_per_block(C);
  const int64_t blocks = (M + R - 1) / R;
  std::vector<acc_t> p0(N * blocks * C), p1(N * blocks * C);
  at::parallel_for(0, N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> part0(C), part1(C);
    // A part's rows widened (half): two buffers of a part stay in L1, two of a block did not.
    std::vector<float> gbuf(kWidened<scalar_t> ? std::min(R, kRowPart) * C : 0), xbuf(gbuf.size());
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / blocks, b = t % blocks;
      const int64_t r0 = b * R, r1 = std::min(M, r0 + R);
      const acc_t* m = center + n * C;
      acc_t* a0 = p0.data() + t * C;
      acc_t* a1 = p1.data() + t * C;
      // Parts of kRowPart rows, as in moments_nhwc.
      const bool one_part = r1 - r0 <= kRowPart;
      acc_t* q0 = one_part ? a0 : part0.data();
      acc_t* q1 = one_part ? a1 : part1.data();
      std::fill(a0, a0 + C, acc_t(0));
      std::fill(a1, a1 + C, acc_t(0));
      for (int64_t rp = r0; rp < r1; rp += kRowPart) {
        const int64_t rows = std::min(r1 - rp, kRowPart);
        const auto* gp = read_span(dy + (n * M + rp) * C, rows * C, gbuf.data());
        const auto* xp = read_span(x + (n * M + rp) * C, rows * C, xbuf.data());
        std::fill(q0, q0 + C, acc_t(0));
        std::fill(q1, q1 + C, acc_t(0));
        for (int64_t r = 0; r < rows; ++r) {
          const auto* g = gp + r * C;
          const auto* xr = xp + r * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            const acc_t gi = to_acc(g[c]);
            q0[c] += gi;
            q1[c] += gi * (to_acc(xr[c]) - m[c]);
          }
        }
        if (!one_part)
          for (int64_t c = 0; c < C; ++c) { a0[c] += q0[c]; a1[c] += q1[c]; }
      }
    }
  });
  merge_blocks_pairwise(N, blocks, [&](int64_t n, int64_t b, int64_t s) {
    acc_t* a0 = p0.data() + (n * blocks + b) * C;
    acc_t* a1 = p1.data() + (n * blocks + b) * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      a0[c] += a0[c + s * C];
      a1[c] += a1[c + s * C];
    }
  });
  for (int64_t n = 0; n < N; ++n) {
    std::copy_n(p0.data() + n * blocks * C, C, s0 + n * C);
    std::copy_n(p1.data() + n * blocks * C, C, s1 + n * C);
  }
}

// Elementwise maps. `f(i, k)` computes element i with coefficient index k.
template <typename F>
void for_each_nchw(int64_t planes, int64_t M, F f) {
  at::parallel_for(0, planes, std::max<int64_t>(1, 32768 / std::max<int64_t>(M, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t p = begin; p < end; ++p) f(p * M, M, p, int64_t(0));
                   });
}

template <typename F>
void for_each_nhwc(int64_t N, int64_t C, int64_t M, F f) {
  at::parallel_for(0, N * M, std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t row = begin; row < end; ++row)
                       f(row * C, C, (row / M) * C, int64_t(1));
                   });
}

// Run `body(start, len, k0, kstep)` over the elements of x in its layout,
// where coefficient index of element start+i is k0 + i*kstep.
template <typename F>
void for_each(const at::Tensor& x, F body) {
  const int64_t N = x.size(0), C = x.size(1), M = x.size(2) * x.size(3);
  if (layout_of(x) == Layout::NCHW) for_each_nchw(N * C, M, body);
  else for_each_nhwc(N, C, M, body);
}

}  // namespace

namespace {

// Values a map converts at once for half (the other types: a whole plane or row
// in place).
constexpr int64_t kSpan = 512;

// Runs piece(o, n) over [0, len) in spans of kSpan for half, else once.
template <typename scalar_t, typename F>
void in_spans(int64_t len, F piece) {
  const int64_t span = kWidened<scalar_t> ? kSpan : std::max<int64_t>(len, 1);
  for (int64_t o = 0; o < len; o += span) piece(o, std::min(span, len - o));
}

template <typename scalar_t>
void affine_impl(const at::Tensor& x, const at::Tensor& center, const at::Tensor& scale,
                 const at::Tensor& shift, at::Tensor& y) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  const acc_t* m = center.const_data_ptr<acc_t>();
  const acc_t* s = scale.const_data_ptr<acc_t>();
  const acc_t* t = shift.const_data_ptr<acc_t>();
  for_each(x, [&](int64_t start, int64_t len, int64_t k0, int64_t kstep) {
    using T = loop_t<scalar_t>;
    float xbuf[kSpan], ybuf[kSpan];  // half only
    in_spans<scalar_t>(len, [&](int64_t o, int64_t n) {
      const T* xi = read_span(xp + start + o, n, xbuf);
      T* yi = output_span(yp + start + o, ybuf);
      if (kstep == 0) {
        const acc_t mk = m[k0], sk = s[k0], tk = t[k0];
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) yi[i] = from_acc<T>(centered_affine(to_acc(xi[i]), mk, sk, tk));
      } else {
        const int64_t k = k0 + o;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i)
          yi[i] = from_acc<T>(centered_affine(to_acc(xi[i]), m[k + i], s[k + i], t[k + i]));
      }
      write_span(ybuf, n, yp + start + o);
    });
  });
}

template <typename scalar_t>
void affine2_impl(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& center,
                  const at::Tensor& a, const at::Tensor& b, const at::Tensor& c, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* gp = dy.const_data_ptr<scalar_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  const acc_t *m = center.const_data_ptr<acc_t>(), *pa = a.const_data_ptr<acc_t>(),
              *pb = b.const_data_ptr<acc_t>(), *pc = c.const_data_ptr<acc_t>();
  for_each(x, [&](int64_t start, int64_t len, int64_t k0, int64_t kstep) {
    using T = loop_t<scalar_t>;
    float gbuf[kSpan], xbuf[kSpan], obuf[kSpan];  // half only
    in_spans<scalar_t>(len, [&](int64_t o, int64_t n) {
      const T* gi = read_span(gp + start + o, n, gbuf);
      const T* xi = read_span(xp + start + o, n, xbuf);
      T* oi = output_span(op + start + o, obuf);
      if (kstep == 0) {
        const acc_t mk = m[k0], ak = pa[k0], bk = pb[k0], ck = pc[k0];
#pragma omp simd
        for (int64_t i = 0; i < n; ++i)
          oi[i] = from_acc<T>(centered_affine2(to_acc(gi[i]), to_acc(xi[i]), mk, ak, bk, ck));
      } else {
        const int64_t k = k0 + o;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i)
          oi[i] = from_acc<T>(
              centered_affine2(to_acc(gi[i]), to_acc(xi[i]), m[k + i], pa[k + i], pb[k + i], pc[k + i]));
      }
      write_span(obuf, n, op + start + o);
    });
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> moments_cpu(const at::Tensor& x_in) {
  check_feature_map(x_in, "x");
  const at::Tensor x = as_kernel_layout(x_in);
  const int64_t N = x.size(0), C = x.size(1), M = x.size(2) * x.size(3);
  TORCH_CHECK_VALUE(M > 0, "anrl_ext: x has no spatial elements, shape ", x.sizes());
  auto opts = x.options().dtype(acc_dtype(x.scalar_type()));
  at::Tensor mean = at::empty({N, C}, opts), var = at::empty({N, C}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "moments_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (layout_of(x) == Layout::NCHW)
      moments_nchw<scalar_t, acc_t>(x.const_data_ptr<scalar_t>(), mean.mutable_data_ptr<acc_t>(),
                                    var.mutable_data_ptr<acc_t>(), N * C, M);
    else
      moments_nhwc<scalar_t, acc_t>(x.const_data_ptr<scalar_t>(), mean.mutable_data_ptr<acc_t>(),
                                    var.mutable_data_ptr<acc_t>(), N, C, M);
  });
  return {mean, var};
}

at::Tensor affine_cpu(const at::Tensor& x_in, const at::Tensor& center_in,
                      const at::Tensor& scale_in, const at::Tensor& shift_in) {
  check_feature_map(x_in, "x");
  const at::Tensor x = as_kernel_layout(x_in);
  const at::Tensor center = coefficient(center_in, x, "center");
  const at::Tensor scale = coefficient(scale_in, x, "scale");
  const at::Tensor shift = coefficient(shift_in, x, "shift");
  at::Tensor y = empty_output_like(x, layout_of(x) == Layout::NCHW ? at::MemoryFormat::Contiguous
                                                                   : at::MemoryFormat::ChannelsLast);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "affine_cpu",
                                  [&] { affine_impl<scalar_t>(x, center, scale, shift, y); });
  return y;
}

std::tuple<at::Tensor, at::Tensor> reduce_cpu(const at::Tensor& dy_in, const at::Tensor& x_in,
                                              const at::Tensor& center_in) {
  const auto checked = input_and_grad(x_in, dy_in);
  const at::Tensor& x = checked.first;
  const at::Tensor& dy = checked.second;
  const at::Tensor center = coefficient(center_in, x, "center");
  const int64_t N = x.size(0), C = x.size(1), M = x.size(2) * x.size(3);
  auto opts = x.options().dtype(acc_dtype(x.scalar_type()));
  at::Tensor s0 = at::empty({N, C}, opts), s1 = at::empty({N, C}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "reduce_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (layout_of(x) == Layout::NCHW)
      reduce_nchw<scalar_t, acc_t>(dy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                   center.const_data_ptr<acc_t>(), s0.mutable_data_ptr<acc_t>(),
                                   s1.mutable_data_ptr<acc_t>(), N * C, M);
    else
      reduce_nhwc<scalar_t, acc_t>(dy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                   center.const_data_ptr<acc_t>(), s0.mutable_data_ptr<acc_t>(),
                                   s1.mutable_data_ptr<acc_t>(), N, C, M);
  });
  return {s0, s1};
}

at::Tensor affine2_cpu(const at::Tensor& dy_in, const at::Tensor& x_in, const at::Tensor& center_in,
                       const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& c_in) {
  const auto checked = input_and_grad(x_in, dy_in);
  const at::Tensor& x = checked.first;
  const at::Tensor& dy = checked.second;
  const at::Tensor center = coefficient(center_in, x, "center");
  const at::Tensor a = coefficient(a_in, x, "a");
  const at::Tensor b = coefficient(b_in, x, "b");
  const at::Tensor c = coefficient(c_in, x, "c");
  at::Tensor out = empty_output_like(x, layout_of(x) == Layout::NCHW ? at::MemoryFormat::Contiguous
                                                                     : at::MemoryFormat::ChannelsLast);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "affine2_cpu",
                                  [&] { affine2_impl<scalar_t>(dy, x, center, a, b, c, out); });
  return out;
}

}  // namespace anrl_ext
