// Python module anrl_ext._C: importing it registers the operators above.
#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "anrl_ext native operators (registered under torch.ops.anrl_ext)";
#ifdef ANRL_EXT_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
