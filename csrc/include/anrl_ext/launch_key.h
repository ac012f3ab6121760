// anrl_ext._C.launch_key: the Triton launch cache's key of a call's arguments (csrc/launch_key.cpp).
#pragma once
#include <torch/extension.h>

namespace anrl_ext {

py::tuple launch_key(const py::tuple& args);

}  // namespace anrl_ext
