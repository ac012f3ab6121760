// Switches between a CUDA kernel and the version it replaced, kept so that the lent-GPU
// benchmark (benchmarks/run_gpu.py) can time the two side by side in one run. Compiled in every
// build, so that the setting exists with or without the CUDA kernels; the default is the new one.
#pragma once

namespace anrl_ext {

// The channels_last `moments`: each part of a thread's rows loaded before the part before it is
// reduced (strided_moments, true), or as it is reduced (strided_moments_late_loads, until 2026-12-06).
bool nhwc_moments_early_loads();
void set_nhwc_moments_early_loads(bool early);

}  // namespace anrl_ext
