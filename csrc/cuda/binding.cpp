// Torch binding of the CUDA kernels (propagate_kernels.cu): checks, device guard, current stream,
// outputs. Registered with TORCH_LIBRARY as torch.ops.gspn_cuda.forward / backward.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>  // the same stream as at::cuda::getCurrentCUDAStream, lighter headers
#include <torch/library.h>

#include <array>
#include <initializer_list>
#include <string_view>
#include <tuple>
#include <utility>

#include "propagate_kernels.cuh"

namespace {

using gspn_cuda::Direction;
using gspn_cuda::DType;
using gspn_cuda::Problem;

DType kernel_dtype(const at::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default: TORCH_CHECK(false, "gspn_cuda: unsupported dtype ", x.scalar_type(),
                         " (expected float32, float64, float16 or bfloat16)");
  }
}

Direction parse_direction(std::string_view direction) {
  if (direction == "lr") return Direction::LR;
  if (direction == "rl") return Direction::RL;
  if (direction == "tb") return Direction::TB;
  if (direction == "bt") return Direction::BT;
  TORCH_CHECK(false, "gspn_cuda: direction must be one of lr, rl, tb, bt, got '", direction, "'");
}

void check_tensor(const at::Tensor& t, const char* name, const at::Tensor& x, at::IntArrayRef shape) {
  TORCH_CHECK(t.is_cuda(), "gspn_cuda: `", name, "` must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK(t.device() == x.device(), "gspn_cuda: `", name, "` is on ", t.device(), " but `x` is on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "gspn_cuda: `", name, "` is ", t.scalar_type(), " but `x` is ",
              x.scalar_type());
  TORCH_CHECK(t.sizes() == shape, "gspn_cuda: `", name, "` must have shape ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "gspn_cuda: `", name, "` must be contiguous");
}

// Checks every tensor against x (activations) or a (weights) and returns the problem they describe.
Problem make_problem(std::initializer_list<std::pair<const char*, const at::Tensor*>> activations,
                     std::initializer_list<std::pair<const char*, const at::Tensor*>> weights,
                     std::string_view direction, int64_t chunk) {
  const at::Tensor& x = *activations.begin()->second;
  const at::Tensor& a = *weights.begin()->second;
  TORCH_CHECK(x.dim() == 4 && a.dim() == 4, "gspn_cuda: inputs must have 4 dims (B, C, H, W)");
  const int64_t B = x.size(0), C = x.size(1), G = a.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(G >= 1 && C % G == 0, "gspn_cuda: the weight groups G = ", G, " must divide C = ", C);
  TORCH_CHECK(chunk >= 0, "gspn_cuda: chunk must be 0 (global) or >= 1, got ", chunk);
  for (const auto& [name, t] : activations) check_tensor(*t, name, x, x.sizes());
  const std::array<int64_t, 4> weight_shape{B, G, H, W};
  for (const auto& [name, t] : weights) check_tensor(*t, name, x, weight_shape);
  return Problem{B, C, G, H, W, parse_direction(direction), chunk};
}

void check_launch(cudaError_t err, const char* what, const Problem& p, std::string_view direction) {
  TORCH_CHECK(err == cudaSuccess, "gspn_cuda.", what, " failed for (B, C, G, H, W) = (", p.B, ", ", p.C, ", ", p.G,
              ", ", p.H, ", ", p.W, "), direction '", direction, "', chunk ", p.chunk, ": ", cudaGetErrorString(err),
              err == cudaErrorInvalidValue ? " (is the cross axis too long for one block's shared memory?)" : "");
}

bool empty(const Problem& p) { return p.B == 0 || p.C == 0 || p.H == 0 || p.W == 0; }

at::Tensor forward(const at::Tensor& x, const at::Tensor& lam, const at::Tensor& a, const at::Tensor& b,
                   const at::Tensor& c, std::string_view direction, int64_t chunk) {
  const Problem p = make_problem({{"x", &x}, {"lam", &lam}}, {{"a", &a}, {"b", &b}, {"c", &c}}, direction, chunk);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor h = at::empty_like(x, at::MemoryFormat::Contiguous);
  if (empty(p)) return h;
  check_launch(gspn_cuda::propagate_forward(kernel_dtype(x), p, x.data_ptr(), lam.data_ptr(), a.data_ptr(),
                                            b.data_ptr(), c.data_ptr(), h.data_ptr(),
                                            c10::cuda::getCurrentCUDAStream()),
               "forward", p, direction);
  return h;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& dh, const at::Tensor& x, const at::Tensor& lam, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& c, const at::Tensor& h, std::string_view direction, int64_t chunk) {
  const Problem p = make_problem({{"x", &x}, {"dh", &dh}, {"lam", &lam}, {"h", &h}},
                                 {{"a", &a}, {"b", &b}, {"c", &c}}, direction, chunk);
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = [](const at::Tensor& t) { return at::empty_like(t, at::MemoryFormat::Contiguous); };
  at::Tensor dx = out(x), dlam = out(lam), da = out(a), db = out(b), dc = out(c);
  if (empty(p)) return {dx, dlam, da.zero_(), db.zero_(), dc.zero_()};
  const DType dtype = kernel_dtype(x);
  size_t elements = 0;
  check_launch(gspn_cuda::backward_workspace_elements(dtype, p, &elements), "backward", p, direction);
  const at::Tensor workspace =
      at::empty({static_cast<int64_t>(elements)}, x.options().dtype(dtype == DType::Float64 ? at::kDouble : at::kFloat));
  check_launch(gspn_cuda::propagate_backward(dtype, p, dh.data_ptr(), x.data_ptr(), lam.data_ptr(), a.data_ptr(),
                                             b.data_ptr(), c.data_ptr(), h.data_ptr(), dx.data_ptr(), dlam.data_ptr(),
                                             da.data_ptr(), db.data_ptr(), dc.data_ptr(),
                                             elements ? workspace.data_ptr() : nullptr,
                                             c10::cuda::getCurrentCUDAStream()),
               "backward", p, direction);
  return {dx, dlam, da, db, dc};
}

// Shapes only, so torch.compile and opcheck can trace the ops without running them.
at::Tensor forward_meta(const at::Tensor& x, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                        const at::Tensor&, std::string_view, int64_t) {
  return at::empty_like(x, at::MemoryFormat::Contiguous);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_meta(
    const at::Tensor&, const at::Tensor& x, const at::Tensor& lam, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& c, const at::Tensor&, std::string_view, int64_t) {
  auto out = [](const at::Tensor& t) { return at::empty_like(t, at::MemoryFormat::Contiguous); };
  return {out(x), out(lam), out(a), out(b), out(c)};
}

}  // namespace

TORCH_LIBRARY(gspn_cuda, m) {
  m.def("forward(Tensor x, Tensor lam, Tensor a, Tensor b, Tensor c, str direction, int chunk) -> Tensor");
  m.def("backward(Tensor dh, Tensor x, Tensor lam, Tensor a, Tensor b, Tensor c, Tensor h, str direction, "
        "int chunk) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gspn_cuda, CUDA, m) {
  m.impl("forward", &forward);
  m.impl("backward", &backward);
}

TORCH_LIBRARY_IMPL(gspn_cuda, Meta, m) {
  m.impl("forward", &forward_meta);
  m.impl("backward", &backward_meta);
}
