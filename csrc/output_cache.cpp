// Why a cache: glibc serves blocks of 32 MiB and more with a fresh mmap on every
// call and unmaps them on free, so each large output arrives as untouched pages
// and the kernel must fault and zero every page before the first write. For the
// fused op that costs as much as the kernels (measured: fwd+bwd at
// 32x64x64x64 float32 went from 23 ms to 15 ms with reuse). Smaller blocks fare
// little better: glibc hands a heap top of freed blocks back to the system past
// its trim threshold, so the 16 MiB outputs of a bfloat16 op at that shape
// (or of float32 at 32x128x32x32) were faulted in again on many calls, by the
// process's history: 2731 and 8160 page faults a forward + backward in one run
// each (benchmarks/run_cpu.py, 2026-12-07); cached from 4 MiB up, none. Like
// PyTorch's CUDA caching allocator, blocks released by our outputs are kept, up
// to a limit (ANRL_EXT_CPU_CACHE_MB, default 1024; 0 disables), and handed to
// the next output of the same rounded size. Blocks are 2 MiB aligned and advised
// as transparent huge pages, so even first-time faults are 512 times fewer.
#include "anrl_ext/output_cache.h"

#include <c10/core/MemoryFormat.h>
#include <c10/util/Exception.h>
#include <c10/util/strides.h>

#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace anrl_ext {
namespace {

constexpr size_t kHuge = size_t(1) << 21;
constexpr size_t kMinCached = size_t(4) << 20;  // at most 2 MiB of rounding a block

size_t limit_from_env() {
  const char* env = std::getenv("ANRL_EXT_CPU_CACHE_MB");
  if (env == nullptr || *env == '\0') return size_t(1024) << 20;
  try {
    return size_t(std::stoull(env)) << 20;
  } catch (const std::exception&) {
    TORCH_WARN("anrl_ext: ignoring ANRL_EXT_CPU_CACHE_MB=", env, " (not a number of MiB)");
    return size_t(1024) << 20;
  }
}

// Never destroyed: outputs may be freed during interpreter shutdown.
struct Cache {
  std::mutex mutex;
  std::multimap<size_t, void*> free_blocks;  // rounded size -> block
  size_t held = 0;
  size_t limit = limit_from_env();
};

Cache& cache() {
  static Cache* c = new Cache();
  return *c;
}

void* allocate_block(size_t bytes) {
  void* p = nullptr;
  TORCH_CHECK(posix_memalign(&p, kHuge, bytes) == 0 && p != nullptr, "anrl_ext: out of memory allocating ",
              bytes, " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(p, bytes, MADV_HUGEPAGE);  // only a hint; a no-op without THP
#endif
  return p;
}

void release_block(void* p, size_t bytes) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.held + bytes <= c.limit) {
      c.free_blocks.emplace(bytes, p);
      c.held += bytes;
      return;
    }
  }
  std::free(p);
}

void* take_block(size_t bytes) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    // Last released first: its pages are the likeliest to be cached and mapped.
    const auto range = c.free_blocks.equal_range(bytes);
    if (range.first != range.second) {
      const auto it = std::prev(range.second);
      void* p = it->second;
      c.free_blocks.erase(it);
      c.held -= bytes;
      return p;
    }
  }
  return allocate_block(bytes);
}

}  // namespace

at::Tensor empty_output_like(const at::Tensor& x, at::MemoryFormat format) {
  const size_t bytes = size_t(x.numel()) * x.element_size();
  if (!x.device().is_cpu() || bytes < kMinCached || output_cache_limit() == 0)
    return at::empty_like(x, format);
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = take_block(rounded);
  auto release = [rounded](void* q) { release_block(q, rounded); };
  if (format == at::MemoryFormat::ChannelsLast && x.dim() == 4)
    return at::from_blob(p, x.sizes(), c10::get_channels_last_strides_2d(x.sizes()), release, x.options());
  return at::from_blob(p, x.sizes(), c10::contiguous_strides(x.sizes()), release, x.options());
}

size_t output_cache_bytes() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  return cache().held;
}

size_t output_cache_limit() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  return cache().limit;
}

void set_output_cache_limit(size_t bytes) {
  Cache& c = cache();
  std::multimap<size_t, void*> drop;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.limit = bytes;
    while (c.held > c.limit && !c.free_blocks.empty()) {
      auto it = std::prev(c.free_blocks.end());  // largest first
      c.held -= it->first;
      drop.insert(*it);
      c.free_blocks.erase(it);
    }
  }
  for (auto& kv : drop) std::free(kv.second);
}

}  // namespace anrl_ext
