// Argument checks and layout handling shared by every native backend.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <utility>

namespace anrl_ext {

enum class Layout { NCHW, NHWC };

// The memory layout a kernel iterates in. Inputs that are neither NCHW nor
// channels_last contiguous are copied to NCHW first by `as_kernel_layout`.
inline Layout layout_of(const at::Tensor& x) {
  return x.is_contiguous() ? Layout::NCHW : Layout::NHWC;
}

inline at::Tensor as_kernel_layout(const at::Tensor& x) {
  if (x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast)) return x;
  return x.contiguous();
}

// Bring `t` into the same layout as `like` (already in a kernel layout).
inline at::Tensor same_layout(const at::Tensor& t, const at::Tensor& like) {
  return layout_of(like) == Layout::NCHW ? t.contiguous()
                                         : t.contiguous(at::MemoryFormat::ChannelsLast);
}

inline void check_feature_map(const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(x.dim() == 4, "anrl_ext: ", name,
                    " must be 4-D (N, C, H, W), got shape ", x.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), "anrl_ext: ", name,
                   " must be a floating-point tensor, got ", x.scalar_type());
}

inline void check_same(const at::Tensor& a, const at::Tensor& b, const char* na,
                       const char* nb) {
  // sym_sizes: on a traced tensor with symbolic shapes, sizes() would fix every dimension.
  TORCH_CHECK_VALUE(a.sym_sizes() == b.sym_sizes(), "anrl_ext: ", na, " and ", nb,
                    " must have the same shape, got ", a.sym_sizes(), " and ", b.sym_sizes());
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), "anrl_ext: ", na, " and ", nb,
                   " must have the same dtype, got ", a.scalar_type(), " and ",
                   b.scalar_type());
  TORCH_CHECK_VALUE(a.device() == b.device(), "anrl_ext: ", na, " and ", nb,
                    " must be on the same device, got ", a.device(), " and ", b.device());
}

// Checked (x, dy) pair in one kernel layout, for the backward primitives.
inline std::pair<at::Tensor, at::Tensor> input_and_grad(const at::Tensor& x_in,
                                                        const at::Tensor& dy_in) {
  check_feature_map(x_in, "x");
  check_same(dy_in, x_in, "grad", "x");
  // A gradient batched by vmap (autograd.grad's is_grads_batched, jacobian(vectorize=True))
  // answers no channels_last layout question: NCHW for both, and the ops' vmap fallback
  // then runs the kernels one gradient at a time.
  if (dy_in.key_set().has_any(c10::DispatchKeySet({c10::DispatchKey::Batched, c10::DispatchKey::FuncTorchBatched})))
    return {x_in.contiguous(), dy_in.contiguous()};
  at::Tensor x = as_kernel_layout(x_in);
  return {x, same_layout(dy_in, x)};
}

// Accumulation dtype: float64 for float64 inputs, float32 otherwise.
inline at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// Per-(n, c) coefficient tensor, checked and brought to (N, C) contiguous acc dtype.
inline at::Tensor coefficient(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == x.size(0) && t.size(1) == x.size(1),
                    "anrl_ext: ", name, " must have shape (N, C) = (", x.size(0), ", ",
                    x.size(1), "), got ", t.sizes());
  TORCH_CHECK_VALUE(t.device() == x.device(), "anrl_ext: ", name, " is on ", t.device(),
                    " but the input is on ", x.device());
  return t.to(acc_dtype(x.scalar_type())).contiguous();
}

}  // namespace anrl_ext
