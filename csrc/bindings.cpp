// Python module anrl_ext._C: importing it registers the operators above.
#include <torch/extension.h>

#include "anrl_ext/output_cache.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "anrl_ext native operators (registered under torch.ops.anrl_ext)";
#ifdef ANRL_EXT_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("output_cache_bytes", &anrl_ext::output_cache_bytes,
        "Bytes of released large CPU outputs held for reuse");
  m.def("output_cache_limit", &anrl_ext::output_cache_limit, "Most bytes the CPU output cache holds");
  m.def("set_output_cache_limit", &anrl_ext::set_output_cache_limit, py::arg("bytes"),
        "Set the CPU output cache limit in bytes; 0 disables it and frees what it holds");
}
