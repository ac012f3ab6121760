// The key under which anrl_ext/ops/triton_launch.py keeps each compiled Triton kernel: its `_key` in
// C++, because it runs on every launch of the Triton backend and Python spends ~170 ns an argument on
// it (a kernel of 26 arguments: 4.5 us of a 7 us launch, benchmarks/triton_host_time.py). One entry per
// argument, exactly as the Python `_key` builds it:
//   a tensor (or subclass)  -> (dtype, data pointer mod 16)
//   an int (not a bool)     -> the int itself
//   a float / bool / None   -> float / bool / None (Triton specialises on their type alone)
// Anything else raises KeyError (the launcher then takes kernel[grid](...)).
// Python extension only (CMakeLists.txt leaves it out).
#include <torch/csrc/DynamicTypes.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/extension.h>

#include <cstdint>

#include "anrl_ext/launch_key.h"

namespace anrl_ext {

namespace {

// A new reference to the entry of one argument, or nullptr with KeyError set.
PyObject* key_entry(PyObject* a) {
  if (THPVariable_Check(a)) {
    const at::Tensor& t = THPVariable_Unpack(a);
    PyObject* entry = PyTuple_New(2);
    if (entry == nullptr) return nullptr;
    PyObject* dtype = reinterpret_cast<PyObject*>(torch::getTHPDtype(t.scalar_type()));
    Py_INCREF(dtype);
    PyTuple_SET_ITEM(entry, 0, dtype);
    // const_data_ptr: the data pointer with the storage offset, as Tensor.data_ptr() gives it,
    // without materialising a copy-on-write tensor
    const auto address = reinterpret_cast<std::uintptr_t>(t.const_data_ptr());
    PyTuple_SET_ITEM(entry, 1, PyLong_FromLong(static_cast<long>(address & 15)));
    return entry;
  }
  PyObject* same = nullptr;
  if (PyLong_CheckExact(a) || a == Py_None) {
    same = a;
  } else if (PyFloat_CheckExact(a)) {
    same = reinterpret_cast<PyObject*>(&PyFloat_Type);
  } else if (PyBool_Check(a)) {
    same = reinterpret_cast<PyObject*>(&PyBool_Type);
  } else {
    PyErr_Format(PyExc_KeyError, "no launch key for an argument of type %s", Py_TYPE(a)->tp_name);
    return nullptr;
  }
  Py_INCREF(same);
  return same;
}

}  // namespace

py::tuple launch_key(const py::tuple& args) {
  const Py_ssize_t n = PyTuple_GET_SIZE(args.ptr());
  py::tuple key(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* entry = key_entry(PyTuple_GET_ITEM(args.ptr(), i));
    if (entry == nullptr) throw py::error_already_set();
    PyTuple_SET_ITEM(key.ptr(), i, entry);
  }
  return key;
}

}  // namespace anrl_ext
