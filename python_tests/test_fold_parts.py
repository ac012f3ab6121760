"""fold_parts (csrc/include/anrl_ext/moments.h): the fixed tree in which the CUDA channels_last
reductions join each thread's parts of rows.

The CUDA kernels run only on a GPU, but the fold is a host+device template: here a small C++
program instantiates it with strings for states, so each result spells out its join tree, and the
tree must be the one benchmarks/cuda_rounding_model.py rounds through (`_row_loop`), on walks that
end inside a part, on a part, on a fold of each level, and past them."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import cuda_rounding_model as model  # noqa: E402

ROW_STRIDE, FIRST = 8, 3  # a thread's rows: FIRST, FIRST + 8, ... (thread row 3 of a block)

PROGRAM = r"""
#include <cstdio>
#include <cstdlib>
#include <string>
#include "anrl_ext/moments.h"

static std::string join(std::string a, std::string b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return "(" + a + "," + b + ")";
}

template <int kFan, int kLevels>
static std::string walk(long steps) {
  const int64_t first = FIRST, stride = STRIDE;
  const int64_t end = first + stride * steps - (steps ? 5 : 0);  // ends between two of the thread's rows
  auto part = [&](int64_t r0) {  // a part: kFan rows, each named by its step in the thread's walk
    std::string s;
    for (int64_t r = r0; r < end && r < r0 + stride * kFan; r += stride) s = join(s, std::to_string((r - first) / stride));
    return s;
  };
  return anrl_ext::fold_parts<kFan, kLevels, std::string>(first, end, stride * kFan, part, join);
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const long steps = std::atol(argv[i]);
    std::printf("%s|%s|%s|%s\n", walk<8, 3>(steps).c_str(), walk<8, 2>(steps).c_str(), walk<8, 1>(steps).c_str(),
                walk<2, 4>(steps).c_str());
  }
}
"""
VARIANTS = [(8, 3), (8, 2), (8, 1), (2, 4)]  # (fan, levels) as printed
STEPS = [0, 1, 7, 8, 9, 63, 64, 65, 100, 511, 512, 513, 1000, 4096, 4103]


def _modelled_tree(steps, fan, levels):
    def join(a, b):
        return b if not a else a if not b else f"({a},{b})"

    return model._row_loop(steps, fan, lambda: "", lambda s, k: join(s, str(k)), join, levels)


def cxx_source(tmp_path_factory, name, program):
    """(the C++ compiler, a fresh directory holding program as <name>.cpp) for a test program of the
    header's host+device templates."""
    compiler = shutil.which("c++") or shutil.which("g++")
    assert compiler, "a C++ compiler is needed (the extension's build needs one too)"
    tmp = tmp_path_factory.mktemp(name)
    (tmp / f"{name}.cpp").write_text(program)
    return compiler, tmp


@pytest.fixture(scope="module")
def fold_trees(tmp_path_factory):
    compiler, tmp = cxx_source(tmp_path_factory, "fold", PROGRAM)
    subprocess.run([compiler, "-std=c++17", "-O1", "-Wall", "-Werror", f"-I{ROOT / 'csrc' / 'include'}",
                    f"-DFIRST={FIRST}", f"-DSTRIDE={ROW_STRIDE}", str(tmp / "fold.cpp"), "-o", str(tmp / "fold")],
                   check=True)
    out = subprocess.run([str(tmp / "fold"), *map(str, STEPS)], check=True, capture_output=True, text=True).stdout
    return dict(zip(STEPS, (line.split("|") for line in out.splitlines())))


@pytest.mark.parametrize("steps", STEPS)
def test_fold_tree_is_the_modelled_one(fold_trees, steps):
    for (fan, levels), tree in zip(VARIANTS, fold_trees[steps]):
        assert tree == _modelled_tree(steps, fan, levels), (fan, levels)
    if steps:  # every step once, in order
        assert [int(k) for k in fold_trees[steps][0].replace("(", ",").replace(")", ",").split(",") if k] \
            == list(range(steps))


def test_kernels_fold_depth():
    """With the kernels' constants a 65536-row plane in one split is chains of 8, 8, 8 and 16 joins
    per thread, not one of 8192: the top level holds at most 16 folds."""
    steps = 65536 // model.ROWS_PER_BLOCK
    tree = _modelled_tree(steps, model.ROW_PART, model.ROW_LEVELS)

    def depth(t):
        level, deepest = 0, 0
        for ch in t:
            level += ch == "("
            level -= ch == ")"
            deepest = max(deepest, level)
        return deepest

    # joins nest at most (8 - 1) per part and fold level, plus 16 - 1 at the top
    assert depth(tree) == 3 * (model.ROW_PART - 1) + (steps // model.ROW_PART ** 3 - 1)
