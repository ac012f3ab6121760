// The one-block limit of the CUDA gated middle (anrl_ext/gate_launch.h). Compiled
// in every build, so that the setting exists with or without the CUDA kernels.
#include "anrl_ext/gate_launch.h"

#include <c10/util/Exception.h>

#include <atomic>

namespace anrl_ext {
namespace {

// Why 2^15: on the H200 of run 4 the one block cost about 1 ns per multiply-add
// forward + backward (benchmarks/results/GPU_NOTES.md), so 2^15 is ~33 us, about
// what the spread launch's two extra launches each way cost in host time
// there. A prediction from run 4's rows, not a measured crossover.
std::atomic<int64_t> one_block_max_work{kGateOneBlockMaxWork};

}  // namespace

int64_t gate_one_block_max_work() { return one_block_max_work.load(std::memory_order_relaxed); }

void set_gate_one_block_max_work(int64_t work) {
  TORCH_CHECK_VALUE(work >= 0, "anrl_ext: the one-block limit of the gated middle must be >= 0 multiply-adds, got ",
                    work);
  one_block_max_work.store(work, std::memory_order_relaxed);
}

}  // namespace anrl_ext
