// How the CUDA gated middle (kernels/gate_cuda.cu) launches: the whole gate in one
// block, phases separated by __syncthreads (one launch each way, the thread count
// of one block), or one launch per phase over as many blocks as the phase has
// indices (a few launches each way, the whole GPU). The choice is by the gate's
// size; the limit can be set at run time (anrl_ext._C.set_gate_one_block_max_work),
// so that a benchmark can time both launches of one gate side by side.
#pragma once
#include <cstdint>

namespace anrl_ext {

// Multiply-adds of one gate forward: the hidden layer (N x D x C) and the heads
// (N x C x K, twice with the paper's ratio head), as fast_blend.gate_work counts them.
inline int64_t gate_work(int64_t n, int64_t c, int64_t d, bool ratio_head) {
  const int64_t k = d > 0 ? d : c;
  return n * (c * k * (ratio_head ? 2 : 1) + d * c);
}

// Gates of at most this much work run in one block (default kGateOneBlockMaxWork).
constexpr int64_t kGateOneBlockMaxWork = int64_t(1) << 15;
int64_t gate_one_block_max_work();
void set_gate_one_block_max_work(int64_t work);  // >= 0; 0: every gate spread over blocks

inline bool gate_in_one_block(int64_t n, int64_t c, int64_t d, bool ratio_head) {
  return gate_work(n, c, d, ratio_head) <= gate_one_block_max_work();
}

}  // namespace anrl_ext
