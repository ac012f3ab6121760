// Calling the package's own operators from C++ through the dispatcher, so the
// kernels of the tensors' device run (CPU or CUDA) from device-neutral code.
#pragma once
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>

namespace anrl_ext {

template <typename Signature>
c10::TypedOperatorHandle<Signature> typed_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

namespace sig {
using at::Tensor;
using OptTensor = std::optional<at::Tensor>;

using Moments = std::tuple<Tensor, Tensor>(const Tensor&);
using Affine = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&);
using Reduce = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&);
using Affine2 = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&);
using BlendForward = std::tuple<Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const OptTensor&, double, const OptTensor&, const OptTensor&, const OptTensor&,
    const OptTensor&, const OptTensor&, const OptTensor&, bool, bool, double, double, int64_t);
using BlendBackward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&, double, const OptTensor&,
    const OptTensor&, const OptTensor&, const OptTensor&, const Tensor&, const Tensor&, bool, double, c10::SymInt);
using ApplyForward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const OptTensor&, double, const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&,
    const OptTensor&, const OptTensor&, bool, bool, double, double);
using ApplyBackward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&, double, const OptTensor&,
    const OptTensor&, const OptTensor&, const OptTensor&, const Tensor&, const Tensor&, bool, double);
using GateForward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const OptTensor&, const OptTensor&, const Tensor&, const OptTensor&,
    const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&,
    const OptTensor&, bool, bool, double, double, int64_t);
using GateBackward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
    const OptTensor&, const OptTensor&, const Tensor&, const OptTensor&, const OptTensor&, const OptTensor&,
    const OptTensor&, const OptTensor&, const OptTensor&, const Tensor&, const Tensor&, bool, double, c10::SymInt);
using GateApplyForward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const OptTensor&, const OptTensor&, const Tensor&, const OptTensor&, const OptTensor&,
    const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, bool,
    bool, double, double);
// The whole-pass ops with their autograd (blend_apply_autograd.cpp), for redispatch below it.
using BlendApply = Tensor(const Tensor&, const OptTensor&, double, const OptTensor&, const OptTensor&,
                          const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, bool, bool, double,
                          double);
using GateBlendApply = std::tuple<Tensor, Tensor>(
    const Tensor&, const OptTensor&, const OptTensor&, const Tensor&, const OptTensor&, const OptTensor&,
    const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, bool,
    bool, double, double);
}  // namespace sig

}  // namespace anrl_ext
