// Operator schemas (namespace anrl_ext) and their CPU implementations.
// Autograd formulas and fake (meta) kernels are registered from Python in
// anrl_ext/ops/native.py, written with these same primitives.
#include <torch/library.h>
#include "anrl_ext/ops.h"

TORCH_LIBRARY(anrl_ext, m) {
  m.def("moments(Tensor x) -> (Tensor, Tensor)");
  m.def("affine(Tensor x, Tensor center, Tensor scale, Tensor shift) -> Tensor");
  m.def("reduce(Tensor dy, Tensor x, Tensor center) -> (Tensor, Tensor)");
  m.def("affine2(Tensor dy, Tensor x, Tensor center, Tensor a, Tensor b, Tensor c) -> Tensor");
}

TORCH_LIBRARY_IMPL(anrl_ext, CPU, m) {
  m.impl("moments", &anrl_ext::moments_cpu);
  m.impl("affine", &anrl_ext::affine_cpu);
  m.impl("reduce", &anrl_ext::reduce_cpu);
  m.impl("affine2", &anrl_ext::affine2_cpu);
}
