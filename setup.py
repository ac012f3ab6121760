"""Build anrl_ext._C: C++ CPU kernels always, CUDA kernels when possible.

Environment:
  ANRL_EXT_CUDA=auto|1|0   auto (default): build the CUDA kernels when nvcc and a
                           CUDA-enabled torch are found; 1: require them; 0: skip.
  ANRL_EXT_CUDA_ARCH       TORCH_CUDA_ARCH_LIST to compile for (default "8.0;9.0").
  ANRL_EXT_PORTABLE=1      do not compile the CPU code with -march=native.
"""
import glob
import os
import shutil

# torch guesses CUDA_HOME from the nvcc on PATH; a wrapper in /usr/local/bin makes
# it guess /usr/local, which has no lib64/libcudart. Point it at the real toolkit
# before torch.utils.cpp_extension reads the variable at import time.
if not os.environ.get("CUDA_HOME") and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", os.environ.get("ANRL_EXT_CUDA_ARCH", "8.0;9.0"))

import torch  # noqa: E402
from setuptools import find_packages, setup  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


def want_cuda() -> bool:
    mode = os.environ.get("ANRL_EXT_CUDA", "auto").lower()
    found = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None and (
        shutil.which("nvcc") is not None
        or os.path.exists(os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"))
    )
    if mode in ("1", "true", "yes", "on"):
        if not found:
            raise RuntimeError(
                "ANRL_EXT_CUDA=1 but no CUDA toolkit / CUDA-enabled torch was found "
                f"(torch.version.cuda={torch.version.cuda}, CUDA_HOME={cpp_extension.CUDA_HOME})"
            )
        return True
    if mode in ("0", "false", "no", "off"):
        return False
    return found


def extensions():
    cpp_sources = sorted(glob.glob("csrc/*.cpp"))
    cxx = ["-O3", "-fopenmp", "-std=c++20"]
    if os.environ.get("ANRL_EXT_PORTABLE", "0") != "1":
        cxx.append("-march=native")
    include = [os.path.join(ROOT, "csrc", "include")]
    if want_cuda():
        return [
            cpp_extension.CUDAExtension(
                "anrl_ext._C",
                cpp_sources + sorted(glob.glob("kernels/*.cu")),
                include_dirs=include,
                define_macros=[("ANRL_EXT_WITH_CUDA", None)],
                extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-std=c++20", "--use_fast_math"]},
                extra_link_args=["-fopenmp"],
            )
        ]
    return [
        cpp_extension.CppExtension(
            "anrl_ext._C",
            cpp_sources,
            include_dirs=include,
            extra_compile_args=cxx,
            extra_link_args=["-fopenmp"],
        )
    ]


setup(
    packages=find_packages(include=["anrl_ext", "anrl_ext.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
