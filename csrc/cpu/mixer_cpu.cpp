// The ops gspn_cpu::mixer_forward and gspn_cpu::mixer_backward: the GSPN mixer's propagation, four
// directions fused (docs/mixer.md), its kernels in mixer_kernels.h. The inputs are read where the
// projection wrote them: `params` (B, 4 * Q, H, W), per direction a~ b~ c~ (G planes each), lam, u
// and optionally d (C planes each); or, with `proj` (4 * Q, R), the low-rank proxy z (B, R, H, W)
// from which each work unit computes just the planes it needs (the full map is never stored).

#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <utility>

#include "mixer.h"
#include "scan_common.h"

// What the kernels use: per_isa.h includes them inside namespaces, where no header may come first.
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#define GSPN_KERNELS "mixer_kernels.h"
#include "per_isa.h"

namespace gspn_cpu {
namespace {

void check_tensor(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.is_contiguous() && t.scalar_type() == x.scalar_type() && t.device().is_cpu(),
              "gspn_cpu mixer: `", name, "` must be a contiguous CPU tensor of x's dtype");
}

template <typename T>
Problem<T> problem(const at::Tensor& x, const at::Tensor& params, const at::Tensor& merge,
                   const std::optional<at::Tensor>& proj, int64_t groups, int64_t chunk, bool skip) {
  for (auto [t, name] : {std::pair{x, "x"}, {params, "params"}, {merge, "merge"}}) check_tensor(t, x, name);
  TORCH_CHECK(x.dim() == 4 && params.dim() == 4 && merge.numel() == kDirections, "gspn_cpu mixer: bad ranks");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(groups > 0 && C % groups == 0, "gspn_cpu mixer: groups must divide C");
  const Layout layout{C, groups, 3 * groups + (skip ? 3 : 2) * C, skip};
  int64_t R = 0;
  if (proj) {
    check_tensor(*proj, x, "proj");
    R = proj->size(1);
    TORCH_CHECK(proj->dim() == 2 && proj->size(0) == kDirections * layout.Q &&
                    params.sizes() == at::IntArrayRef({B, R, H, W}),
                "gspn_cpu mixer: with proj (4Q, R), params must be the proxy (B, R, H, W)");
  } else {
    TORCH_CHECK(params.sizes() == at::IntArrayRef({B, kDirections * layout.Q, H, W}),
                "gspn_cpu mixer: params must be (B, 4Q, H, W)");
  }
  return {B, C, H, W, H * W, chunk, R, layout, x.data_ptr<T>(), params.data_ptr<T>(), merge.data_ptr<T>(),
          proj ? proj->data_ptr<T>() : nullptr, nullptr, nullptr};
}

std::tuple<at::Tensor, at::Tensor> mixer_forward(const at::Tensor& x, const at::Tensor& params,
                                                 const at::Tensor& merge, const std::optional<at::Tensor>& proj,
                                                 int64_t groups, int64_t chunk, bool skip, bool save_states) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor y = at::empty_like(x);
  at::Tensor states = save_states ? at::empty({B, kDirections, C, H, W}, x.options()) : at::empty({0}, x.options());
  if (x.numel() == 0) return {y, states};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gspn_cpu_mixer_forward", [&] {
    const auto pr = problem<scalar_t>(x, params, merge, proj, groups, chunk, skip);
    scalar_t* ps = save_states ? states.data_ptr<scalar_t>() : nullptr;
    GSPN_DISPATCH(forward_all, pr, y.data_ptr<scalar_t>(), ps);
  });
  return {y, states};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mixer_backward(
    const at::Tensor& gy, const at::Tensor& x, const at::Tensor& params, const at::Tensor& merge,
    const std::optional<at::Tensor>& proj, const at::Tensor& states, int64_t groups, int64_t chunk, bool skip) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  if (x.numel() == 0) {
    return {at::empty_like(x), at::zeros_like(params), at::zeros_like(merge),
            proj ? at::zeros_like(*proj) : at::empty({0}, x.options())};
  }
  check_tensor(gy, x, "gy");
  TORCH_CHECK(gy.sizes() == x.sizes(), "gspn_cpu mixer: gy must have x's shape");
  const bool saved = states.numel() > 0;
  if (saved) {
    check_tensor(states, x, "states");
    TORCH_CHECK(states.sizes() == at::IntArrayRef({B, kDirections, C, H, W}), "gspn_cpu mixer: bad states");
  }
  at::Tensor dx = at::empty_like(x);
  at::Tensor dparams = at::empty_like(params);
  at::Tensor dproj, dmerge;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gspn_cpu_mixer_backward", [&] {
    auto pr = problem<scalar_t>(x, params, merge, proj, groups, chunk, skip);
    pr.gy = gy.data_ptr<scalar_t>();
    pr.states = saved ? states.data_ptr<scalar_t>() : nullptr;
    const Units units(B, groups, C / groups);
    // What units share is written apart and summed here: the merge gradient per unit; with proj, dz
    // per block of groups; without proj, the logit gradients per part when a group is split.
    at::Tensor dmerge_units = at::zeros({units.count(), kDirections}, x.options().dtype(at::kDouble));
    at::Tensor dz_slices, dproj_sum, dlogits_parts;
    if (proj) {
      dz_slices = at::zeros({proj_slices(units), B, pr.R, H, W}, x.options());
      dproj_sum = at::zeros({proj->size(0), pr.R}, x.options().dtype(at::kDouble));
    } else if (units.parts > 1) {
      dlogits_parts = at::empty({units.parts, B, kDirections, 3 * groups, H, W}, x.options());
    }
    const Outputs<scalar_t> out{dx.data_ptr<scalar_t>(),
                                proj ? nullptr : dparams.data_ptr<scalar_t>(),
                                dmerge_units.data_ptr<double>(),
                                proj ? dz_slices.data_ptr<scalar_t>() : nullptr,
                                proj ? dproj_sum.data_ptr<double>() : nullptr,
                                dlogits_parts.defined() ? dlogits_parts.data_ptr<scalar_t>() : nullptr};
    GSPN_DISPATCH(backward_all, pr, units, out);
    if (proj) {
      dparams = proj_slices(units) > 1 ? dz_slices.sum(0) : dz_slices[0];
      dproj = dproj_sum.to(x.scalar_type());
    } else {
      dproj = at::empty({0}, x.options());
      if (units.parts > 1) {
        dparams.view({B, kDirections, pr.layout.Q, H, W}).narrow(2, 0, 3 * groups).copy_(dlogits_parts.sum(0));
      }
    }
    dmerge = dmerge_units.sum(0).to(x.scalar_type());
  });
  return {dx, dparams, dmerge, dproj};
}

}  // namespace
}  // namespace gspn_cpu

TORCH_LIBRARY_FRAGMENT(gspn_cpu, m) {
  m.def("mixer_forward(Tensor x, Tensor params, Tensor merge, Tensor? proj, int groups, int chunk, bool skip, "
        "bool save_states) -> (Tensor, Tensor)");
  m.def("mixer_backward(Tensor gy, Tensor x, Tensor params, Tensor merge, Tensor? proj, Tensor states, int groups, "
        "int chunk, bool skip) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gspn_cpu, CPU, m) {
  m.impl("mixer_forward", &gspn_cpu::mixer_forward);
  m.impl("mixer_backward", &gspn_cpu::mixer_backward);
}
