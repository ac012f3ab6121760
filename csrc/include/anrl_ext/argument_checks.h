// anrl_ext._C.blend_arguments_ok: the functional op's argument checks in one C++ call (csrc/argument_checks.cpp).
#pragma once
#include <torch/extension.h>

namespace anrl_ext {

bool blend_arguments_ok(py::handle x, py::handle alpha, py::handle bn_weight, py::handle bn_bias,
                        py::handle in_weight, py::handle in_bias, py::handle running_mean, py::handle running_var,
                        py::handle training, py::handle momentum, py::handle eps);

}  // namespace anrl_ext
