// Large CPU outputs (y, dX) from a small cache of page-backed blocks.
#pragma once
#include <ATen/ATen.h>

#include <cstddef>

namespace anrl_ext {

// An uninitialised tensor shaped like x in `format`. Outputs of at least 4 MiB
// reuse blocks that earlier outputs of this library released (see
// output_cache.cpp); smaller ones come from at::empty_like.
at::Tensor empty_output_like(const at::Tensor& x, at::MemoryFormat format);

// Bytes the cache holds now (released blocks waiting for reuse), and its limit.
size_t output_cache_bytes();
size_t output_cache_limit();
void set_output_cache_limit(size_t bytes);  // 0 disables it and frees what it holds

}  // namespace anrl_ext
