// The ops gspn_cpu::forward and gspn_cpu::backward: the single-direction scan (docs/design.md §1.1,
// 1.5), its kernels in propagate_kernels.h.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <string_view>
#include <utility>

#include "propagate.h"
#include "scan_common.h"

// What the kernels use: per_isa.h includes them inside namespaces, where no header may come first.
#include <type_traits>
#include <vector>

#define GSPN_KERNELS "propagate_kernels.h"
#define GSPN_KERNELS_NO_AVX512  // not measured against the AVX2 build yet
#include "per_isa.h"

namespace gspn_cpu {
namespace {

// The Python side validates the arguments; these only guard the kernels' assumptions.
void check_operand(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.is_contiguous() && t.dim() == 4 && t.scalar_type() == x.scalar_type() && t.device().is_cpu(),
              "gspn_cpu: `", name, "` must be a contiguous 4-d CPU tensor of x's dtype");
}

void check_shapes(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, const at::Tensor& c) {
  const auto G = a.size(1);
  TORCH_CHECK(G > 0 && x.size(1) % G == 0 && a.sizes() == b.sizes() && a.sizes() == c.sizes() &&
                  a.size(0) == x.size(0) && a.size(2) == x.size(2) && a.size(3) == x.size(3),
              "gspn_cpu: weights must be (B, G, H, W) with G dividing x's C");
}

at::Tensor forward(const at::Tensor& x, const at::Tensor& lam, const at::Tensor& a, const at::Tensor& b,
                   const at::Tensor& c, std::string_view direction, int64_t chunk) {
  for (auto [t, name] : {std::pair{x, "x"}, {lam, "lam"}, {a, "a"}, {b, "b"}, {c, "c"}}) check_operand(t, x, name);
  TORCH_CHECK(lam.sizes() == x.sizes(), "gspn_cpu: lam must have x's shape");
  check_shapes(x, a, b, c);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), G = a.size(1);
  at::Tensor h = at::empty_like(x);
  if (x.numel() == 0) return h;  // an empty batch, channel or axis: nothing to scan (and no work units)
  const int64_t plane = H * W;
  const Geometry geo = geometry(direction, H, W);
  const Units units(B, G, C / G);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gspn_cpu_forward", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pl = lam.data_ptr<scalar_t>();
    const scalar_t *pa = a.data_ptr<scalar_t>(), *pb = b.data_ptr<scalar_t>(), *pc = c.data_ptr<scalar_t>();
    GSPN_DISPATCH(forward_all, px, pl, pa, pb, pc, h.data_ptr<scalar_t>(), units, plane, geo, chunk);
  });
  return h;
}

// Units sharing a weight plane (parts > 1) write their weight gradients apart; they are summed here.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& dh, const at::Tensor& x, const at::Tensor& lam, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& c, const at::Tensor& h, std::string_view direction, int64_t chunk) {
  for (auto [t, name] : {std::pair{dh, "dh"}, {x, "x"}, {lam, "lam"}, {a, "a"}, {b, "b"}, {c, "c"}, {h, "h"}})
    check_operand(t, x, name);
  TORCH_CHECK(lam.sizes() == x.sizes() && dh.sizes() == x.sizes() && h.sizes() == x.sizes(),
              "gspn_cpu: dh, lam and h must have x's shape");
  check_shapes(x, a, b, c);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), G = a.size(1);
  if (x.numel() == 0) {  // nothing reaches the weights (C == 0 leaves them non-empty: their gradient is zero)
    return {at::empty_like(x), at::empty_like(x), at::zeros_like(a), at::zeros_like(b), at::zeros_like(c)};
  }
  const int64_t plane = H * W;
  const Geometry geo = geometry(direction, H, W);
  const Units units(B, G, C / G);
  at::Tensor dx = at::empty_like(x), dlam = at::empty_like(x);
  at::Tensor da = at::empty({units.parts * B, G, H, W}, a.options());
  at::Tensor db = at::empty_like(da), dc = at::empty_like(da);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gspn_cpu_backward", [&] {
    const scalar_t *pdh = dh.data_ptr<scalar_t>(), *px = x.data_ptr<scalar_t>(), *pl = lam.data_ptr<scalar_t>();
    const scalar_t *pa = a.data_ptr<scalar_t>(), *pb = b.data_ptr<scalar_t>(), *pc = c.data_ptr<scalar_t>();
    const scalar_t* ph = h.data_ptr<scalar_t>();
    scalar_t *pdx = dx.data_ptr<scalar_t>(), *pdl = dlam.data_ptr<scalar_t>();
    scalar_t *pda = da.data_ptr<scalar_t>(), *pdb = db.data_ptr<scalar_t>(), *pdc = dc.data_ptr<scalar_t>();
    GSPN_DISPATCH(backward_all, pdh, px, pl, pa, pb, pc, ph, pdx, pdl, pda, pdb, pdc, units, plane, geo, chunk);
  });
  if (units.parts > 1) {
    for (at::Tensor* t : {&da, &db, &dc}) *t = t->view({units.parts, B, G, H, W}).sum(0);
  }
  return {dx, dlam, da, db, dc};
}

}  // namespace
}  // namespace gspn_cpu

TORCH_LIBRARY(gspn_cpu, m) {
  m.def("forward(Tensor x, Tensor lam, Tensor a, Tensor b, Tensor c, str direction, int chunk) -> Tensor");
  m.def("backward(Tensor dh, Tensor x, Tensor lam, Tensor a, Tensor b, Tensor c, Tensor h, str direction, "
        "int chunk) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gspn_cpu, CPU, m) {
  m.impl("forward", &gspn_cpu::forward);
  m.impl("backward", &gspn_cpu::backward);
}
