#!/usr/bin/env bash
# Configure and build the libtorch operator library (CMakeLists.txt) into $1
# (default build-cmake/) against the torch of the active Python environment.
# A pip-installed CUDA torch looks for the CUDA toolkit and for libnvrtc; point
# it at /usr/local/cuda and at the nvrtc that pip's nvidia packages ship.
set -euo pipefail
out=${1:-build-cmake}
prefix=$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')
args=(-DCMAKE_PREFIX_PATH="$prefix")
cuda_root=${CUDA_HOME:-/usr/local/cuda}
if [ -d "$cuda_root" ]; then
  args+=(-DCUDA_TOOLKIT_ROOT_DIR="$cuda_root" -DCUDAToolkit_ROOT="$cuda_root")
  nvrtc=$(python - <<'PY'
import glob, os, site
hits = [p for d in site.getsitepackages() for p in glob.glob(os.path.join(d, "nvidia", "*", "lib", "libnvrtc.so*"))
        if "builtins" not in p and ".alt." not in p]
print(hits[0] if hits else "")
PY
)
  [ -n "$nvrtc" ] && args+=(-DCUDA_nvrtc_LIBRARY="$nvrtc")
fi
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0} cmake -S . -B "$out" "${args[@]}"
cmake --build "$out" -j"$(nproc)"
