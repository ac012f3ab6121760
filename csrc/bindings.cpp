// Python module anrl_ext._C: importing it registers the operators above.
#include <torch/extension.h>

#include "anrl_ext/argument_checks.h"
#include "anrl_ext/gate_launch.h"
#include "anrl_ext/kernel_variants.h"
#include "anrl_ext/launch_key.h"
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
  m.def("gate_one_block_max_work", &anrl_ext::gate_one_block_max_work,
        "Largest gate (multiply-adds of its forward) the CUDA gated middle runs in one block; larger ones "
        "run one launch per phase over many blocks");
  m.def("set_gate_one_block_max_work", &anrl_ext::set_gate_one_block_max_work, py::arg("work"),
        "Set that limit (>= 0; 0 spreads every gate over blocks)");
  m.def("gate_in_one_block", &anrl_ext::gate_in_one_block, py::arg("n"), py::arg("c"), py::arg("d"),
        py::arg("ratio_head"), "Whether the CUDA gated middle runs a gate of these sizes in one block");
  m.def("nhwc_moments_early_loads", &anrl_ext::nhwc_moments_early_loads,
        "Whether the CUDA channels_last moments loads each part of a thread's rows before the part before it "
        "is reduced (the default) rather than as it is reduced (the kernel until 2026-12-06)");
  m.def("set_nhwc_moments_early_loads", &anrl_ext::set_nhwc_moments_early_loads, py::arg("early"),
        "Choose between the two (benchmarks time them side by side)");
  m.def("launch_key", &anrl_ext::launch_key, py::arg("args"),
        "The Triton launch cache's key of a tuple of kernel arguments (anrl_ext.ops.triton_launch._key)");
  m.def("blend_arguments_ok", &anrl_ext::blend_arguments_ok, py::arg("x"), py::arg("alpha"), py::arg("bn_weight"),
        py::arg("bn_bias"), py::arg("in_weight"), py::arg("in_bias"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
        "True when adaptive_norm's argument checks would all pass and x has elements; False where they "
        "might not (adaptive_norm then runs them in Python)");
}
