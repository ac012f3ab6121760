// The switches of anrl_ext/kernel_variants.h.
#include "anrl_ext/kernel_variants.h"

#include <atomic>

namespace anrl_ext {
namespace {

std::atomic<bool> early_loads{true};

}  // namespace

bool nhwc_moments_early_loads() { return early_loads.load(std::memory_order_relaxed); }

void set_nhwc_moments_early_loads(bool early) { early_loads.store(early, std::memory_order_relaxed); }

}  // namespace anrl_ext
