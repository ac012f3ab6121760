"""strided_moments (csrc/include/anrl_ext/moments.h): a channels_last thread's walk in the CUDA
`moments` kernel, which loads each part of rows before the part before it is reduced.

The kernel runs only on a GPU, but the walk is a host+device template: here a small C++ program
runs it on the CPU against the walk as the kernel had it before (each part loaded when reduced:
written out here, and as the header keeps it, `strided_moments_late_loads`),
in float and double, over walks that end inside a part, on a part, on a fold of each level and past
them, from several first rows and row lengths. The early loads must change nothing: the same bits.
The program is built with AddressSanitizer where the compiler has it, each walk's array ending at
its last row, so a load past the walk's end fails the run; without it, rows of NaN follow the end,
so a value read there and used would show. The float64 walk is checked against numpy."""
import subprocess

import numpy as np
import pytest

from test_fold_parts import ROOT, cxx_source

PROGRAM = r"""
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "anrl_ext/moments.h"

using anrl_ext::Moments;
constexpr int kFan = 8, kLevels = 3, kStride = 8;  // the kernel's kRowPart, kRowLevels, kRowsPerBlock

// The walk of moments_nhwc_kernel before the early loads: each part's rows loaded as it is reduced.
template <typename acc_t, typename scalar_t>
Moments<acc_t> one_part_at_a_time(const scalar_t* x, int64_t row_elems, int64_t first, int64_t end, acc_t pivot) {
  auto part = [&](int64_t r0) {
    Moments<acc_t> m{0, 0, 0};
    for (int64_t r = r0; r < end && r < r0 + kFan * kStride; r += kStride)
      m = anrl_ext::welford_add(m, static_cast<acc_t>(x[r * row_elems]) - pivot);
    return m;
  };
  return anrl_ext::fold_parts<kFan, kLevels, Moments<acc_t>>(
      first, end, int64_t(kFan) * kStride, part,
      [](Moments<acc_t> a, Moments<acc_t> b) { return anrl_ext::chan_merge(a, b); });
}

template <typename T>
void walk(long first, long end, long row_elems, long channel) {
  // rows [0, end) of row_elems values each, and nothing after under AddressSanitizer (a load past
  // the end leaves the array), else PAD rows of NaN
  std::vector<T> x((end + PAD) * row_elems, T(NAN));
  unsigned state = 12345u + unsigned(first * 7919 + end * 31 + row_elems);
  for (long i = 0; i < end * row_elems; ++i) {
    T& v = x[i];
    state = state * 1664525u + 1013904223u;
    v = T(1000) + T(state >> 8) / T(1 << 24);  // |mean| >> std: the pivot matters
  }
  const T pivot = end > 0 ? x[channel] : T(0);
  const T* xc = x.data() + channel;
  const Moments<T> a = anrl_ext::strided_moments<kFan, kLevels, kStride>(xc, row_elems, first, end, pivot);
  const Moments<T> b = one_part_at_a_time(xc, row_elems, first, end, pivot);
  const Moments<T> c = anrl_ext::strided_moments_late_loads<kFan, kLevels, kStride>(xc, row_elems, first, end, pivot);
  std::printf("%a %a %a %a %a %a %a %a %a\n", double(a.mean), double(a.m2), double(a.count), double(b.mean),
              double(b.m2), double(b.count), double(c.mean), double(c.m2), double(c.count));
}

int main(int argc, char** argv) {
  for (int i = 1; i + 3 < argc; i += 4) {
    const long first = std::atol(argv[i]), end = std::atol(argv[i + 1]), row_elems = std::atol(argv[i + 2]),
               channel = std::atol(argv[i + 3]);
    walk<float>(first, end, row_elems, channel);
    walk<double>(first, end, row_elems, channel);
  }
}
"""
STRIDE = 8
STEPS = [0, 1, 7, 8, 9, 63, 64, 65, 100, 511, 512, 513, 1000]  # a thread's rows in its walk
STARTS = [(0, 0), (3, 5), (7, 1), (21, 8)]  # (first row, rows cut from the last step)
ROWS = [(1, 0), (5, 3)]  # (values a row, the thread's channel)
CASES = [(first, first + STRIDE * steps - cut, row_elems, channel)
         for steps in STEPS for first, cut in STARTS for row_elems, channel in ROWS
         if first + STRIDE * steps - cut >= first]


def _build(compiler, tmp, sanitize):
    flags = ["-fsanitize=address", "-fno-omit-frame-pointer", "-DPAD=0"] if sanitize else ["-DPAD=64"]
    return subprocess.run([compiler, "-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Werror", *flags,
                           f"-I{ROOT / 'csrc' / 'include'}", str(tmp / "walk.cpp"), "-o", str(tmp / "walk")],
                          capture_output=True, text=True).returncode == 0


@pytest.fixture(scope="module")
def walks(tmp_path_factory):
    compiler, tmp = cxx_source(tmp_path_factory, "walk", PROGRAM)
    if not _build(compiler, tmp, sanitize=True):
        assert _build(compiler, tmp, sanitize=False), "the row walk program does not compile"
    args = [str(v) for case in CASES for v in case]
    run = subprocess.run([str(tmp / "walk"), *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]  # AddressSanitizer's report of a load past a walk's end
    lines = run.stdout.splitlines()
    assert len(lines) == 2 * len(CASES)
    return {case: (lines[2 * i], lines[2 * i + 1]) for i, case in enumerate(CASES)}


def _values(line):
    return [float.fromhex(v) for v in line.split()]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "first{}-end{}-row{}-c{}".format(*c))
def test_early_loads_change_no_bit(walks, case):
    """strided_moments, the plain walk above, and strided_moments_late_loads (the kernel's walk until
    2026-12-06, kept for the GPU table's side-by-side rows): the same bits."""
    for line in walks[case]:
        v = _values(line)
        assert v[:3] == v[3:6] == v[6:]  # float.fromhex is exact: equal bits


def test_walks_visit_every_row_of_the_thread_once(walks):
    for (first, end, row_elems, channel), (_, double_line) in walks.items():
        mean, m2, count = _values(double_line)[:3]
        rows = np.arange(first, end, STRIDE)
        assert count == len(rows)
        if not len(rows):
            continue
        # the program's values, regenerated (its LCG) for the rows the thread visits
        state = (12345 + first * 7919 + end * 31 + row_elems) & 0xFFFFFFFF
        x = np.empty(end * row_elems)
        for i in range(len(x)):
            state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
            x[i] = 1000 + (state >> 8) / 2**24
        v = x[rows * row_elems + channel]
        pivot = x[channel]
        assert mean == pytest.approx(v.mean() - pivot, abs=1e-12)
        assert m2 == pytest.approx(((v - v.mean()) ** 2).sum(), rel=1e-9, abs=1e-12)
