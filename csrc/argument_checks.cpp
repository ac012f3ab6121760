// The common case of `adaptive_norm`'s argument checks (anrl_ext/ops/adaptive_norm.py), in one call.
//
// On a GPU the op's Python before its first launch is host time the GPU waits through, and the checks
// were most of it: about 15 us of a 40 us forward on a 2-core x86 (benchmarks/host_time.py, `wrapper`).
// blend_arguments_ok answers True only when every Python check would pass and the input has elements;
// anything else (a bad argument, an unusual one: a tensor subclass, a wrapped or symbolic tensor, an int
// alpha past a double, a bool where a number goes) answers False, and adaptive_norm runs the Python
// checks, which raise the error the user sees or let the call through. So it may answer False where the
// Python checks pass, never True where they raise (python_tests/test_argument_checks.py).
// Python extension only (CMakeLists.txt leaves it out).
#include <torch/csrc/autograd/python_variable.h>
#include <torch/extension.h>

#include <cmath>
#include <typeinfo>

#include "anrl_ext/argument_checks.h"

namespace anrl_ext {

namespace {

// A torch.Tensor or nn.Parameter (no subclass: its __torch_function__ could answer dim() or device in
// its own way) over a plain strided TensorImpl (not a vmap or grad wrapper, nested or sparse), with
// concrete sizes and no Python dispatch (FakeTensor, __torch_dispatch__ subclasses).
const at::Tensor* plain_tensor(py::handle obj) {
  if (!THPVariable_CheckExact(obj.ptr())) return nullptr;
  const at::Tensor& t = THPVariable_Unpack(obj.ptr());
  if (!t.defined()) return nullptr;
  c10::TensorImpl* impl = t.unsafeGetTensorImpl();
  if (typeid(*impl) != typeid(c10::TensorImpl) || impl->has_symbolic_sizes_strides() ||
      impl->key_set().has(c10::DispatchKey::Python)) {
    return nullptr;
  }
  return &t;
}

// An int or float (not a bool, not a subclass) as a double; false where it is none or its value does not
// fit one (Python's math.isfinite raises OverflowError on such an int).
bool plain_number(py::handle obj, double* value) {
  if (PyFloat_CheckExact(obj.ptr())) {
    *value = PyFloat_AS_DOUBLE(obj.ptr());
    return true;
  }
  if (PyLong_CheckExact(obj.ptr())) {
    *value = PyLong_AsDouble(obj.ptr());
    if (*value == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
    return true;
  }
  return false;
}

// check_tensors_on: None, or a plain tensor on x's device with C entries where it is a vector.
bool vector_ok(py::handle obj, const at::Tensor& x) {
  if (obj.is_none()) return true;
  const at::Tensor* t = plain_tensor(obj);
  return t != nullptr && t->device() == x.device() && (t->dim() != 1 || t->numel() == x.size(1));
}

}  // namespace

bool blend_arguments_ok(py::handle x_obj, py::handle alpha, py::handle bn_weight, py::handle bn_bias,
                        py::handle in_weight, py::handle in_bias, py::handle running_mean, py::handle running_var,
                        py::handle training, py::handle momentum, py::handle eps) {
  // check_input, and an input with elements (adaptive_norm's empty_blend path stays in Python)
  const at::Tensor* xp = plain_tensor(x_obj);
  if (xp == nullptr) return false;
  const at::Tensor& x = *xp;
  if (x.dim() != 4 || !x.is_floating_point() || x.numel() == 0) return false;
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);

  // check_alpha; uses_in as adaptive_norm computes it
  bool uses_in = true;
  if (const at::Tensor* a = plain_tensor(alpha)) {
    const bool shape_ok = (a->dim() == 2 && a->size(0) == n && a->size(1) == c) ||
                          (a->dim() == 1 && a->numel() == c) || a->dim() == 0;
    if (!shape_ok || a->device() != x.device()) return false;
  } else {
    double value;
    if (!plain_number(alpha, &value) || !std::isfinite(value)) return false;
    uses_in = value != 1.0;
  }

  // check_hyperparameters
  if (running_mean.is_none() != running_var.is_none()) return false;
  double eps_value, momentum_value;
  if (!plain_number(eps, &eps_value) || !std::isfinite(eps_value) || !(eps_value >= 0)) return false;
  if (!plain_number(momentum, &momentum_value) || !(momentum_value >= 0 && momentum_value <= 1)) return false;

  // check_tensors_on
  for (py::handle t : {bn_weight, bn_bias, in_weight, in_bias, running_mean, running_var}) {
    if (!vector_ok(t, x)) return false;
  }

  // check_statistics_defined(x, training or running_mean is None, uses_in)
  if (training.ptr() != Py_True && training.ptr() != Py_False) return false;
  const bool use_batch = training.ptr() == Py_True || running_mean.is_none();
  if (uses_in && hw <= 1) return false;  // n > 0 here
  if (use_batch && n * hw == 1) return false;
  return true;
}

}  // namespace anrl_ext
