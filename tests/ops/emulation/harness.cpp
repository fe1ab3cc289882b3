// Host entry points around the emulated CUDA kernels (see cuda_emulation.h), for ctypes and, built
// with -DGSPN_EMU_MAIN, as a command-line program for the sanitizer runs.
//
// Every tensor the kernels see is copied into its own allocation of exactly its size, outputs are
// poisoned with NaN before the launch, and the backward's workspace is exactly what the kernels ask
// for, so a read or write outside any tensor is caught (by NaN in the results, or by AddressSanitizer).
#include "propagate_kernels_emulated.inc"  // the kernel source, rewritten by harness.py

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {

using gspn_cuda::Direction;
using gspn_cuda::DType;
using gspn_cuda::Problem;

std::string g_error;

size_t element_size(int dtype) { return dtype == 1 ? 8 : dtype >= 2 ? 2 : 4; }

Problem problem(const int64_t* shape, int direction, int64_t chunk) {
  return Problem{shape[0], shape[1], shape[2], shape[3], shape[4], static_cast<Direction>(direction), chunk};
}

// An exact-size heap copy of a tensor (or a NaN-poisoned one for outputs).
struct Buffer {
  std::unique_ptr<unsigned char[]> data;
  size_t bytes;
  Buffer(size_t n, const void* from) : data(new unsigned char[n]), bytes(n) {
    if (from) std::memcpy(data.get(), from, n);
    else std::memset(data.get(), 0xFF, n);
  }
  void copy_to(void* to) const { std::memcpy(to, data.get(), bytes); }
};

int fail(cudaError_t err, const char* what) {
  g_error = std::string(what) + ": " + cudaGetErrorString(err);
  cudaGetLastError();
  return static_cast<int>(err);
}

}  // namespace

extern "C" {

void emu_set_device(int shared_optin, int sm_count) {
  gspn_emu::device.shared_optin = shared_optin;
  gspn_emu::device.sm_count = sm_count;
}

const char* emu_error() { return g_error.c_str(); }

int emu_forward(int dtype, const int64_t* shape, int direction, int64_t chunk, const void* const* in, void* h) {
  const Problem p = problem(shape, direction, chunk);
  const size_t es = element_size(dtype);
  const size_t xb = es * p.B * p.C * p.H * p.W, wb = es * p.B * p.G * p.H * p.W;
  Buffer x(xb, in[0]), lam(xb, in[1]), a(wb, in[2]), b(wb, in[3]), c(wb, in[4]), out(xb, nullptr);
  const cudaError_t err = gspn_cuda::propagate_forward(static_cast<DType>(dtype), p, x.data.get(), lam.data.get(),
                                                       a.data.get(), b.data.get(), c.data.get(), out.data.get(),
                                                       nullptr);
  if (err != cudaSuccess) return fail(err, "forward");
  out.copy_to(h);
  return 0;
}

int emu_backward(int dtype, const int64_t* shape, int direction, int64_t chunk, const void* const* in,
                 void* const* out) {
  const Problem p = problem(shape, direction, chunk);
  const DType dt = static_cast<DType>(dtype);
  const size_t es = element_size(dtype);
  const size_t xb = es * p.B * p.C * p.H * p.W, wb = es * p.B * p.G * p.H * p.W;
  Buffer dh(xb, in[0]), x(xb, in[1]), lam(xb, in[2]), a(wb, in[3]), b(wb, in[4]), c(wb, in[5]), h(xb, in[6]);
  Buffer dx(xb, nullptr), dlam(xb, nullptr), da(wb, nullptr), db(wb, nullptr), dc(wb, nullptr);
  size_t elements = 0;
  cudaError_t err = gspn_cuda::backward_workspace_elements(dt, p, &elements);
  if (err != cudaSuccess) return fail(err, "backward workspace");
  Buffer workspace(elements * (dt == DType::Float64 ? 8 : 4), nullptr);
  err = gspn_cuda::propagate_backward(dt, p, dh.data.get(), x.data.get(), lam.data.get(), a.data.get(),
                                      b.data.get(), c.data.get(), h.data.get(), dx.data.get(), dlam.data.get(),
                                      da.data.get(), db.data.get(), dc.data.get(),
                                      elements ? workspace.data.get() : nullptr, nullptr);
  if (err != cudaSuccess) return fail(err, "backward");
  const Buffer* results[5] = {&dx, &dlam, &da, &db, &dc};
  for (int k = 0; k < 5; ++k) results[k]->copy_to(out[k]);
  return 0;
}

// The launch plan of the kernels: out = {blocks, threads x, threads y, shared bytes, channels per
// block, scan steps per tile, channel tiles per group, ring, warp mode, split mode}; returns the planner's error code.
int emu_plan(int dtype, const int64_t* shape, int direction, int64_t chunk, int backward, int64_t* out) {
  const Problem p = problem(shape, direction, chunk);
  const size_t acc = dtype == 1 ? 8 : 4;
  gspn_cuda::detail::Plan plan;
  const cudaError_t err = gspn_cuda::detail::make_plan(p, acc, element_size(dtype), backward != 0, &plan);
  if (err != cudaSuccess) return static_cast<int>(err);
  const int64_t fields[10] = {plan.blocks, plan.threads_x, plan.threads_y, static_cast<int64_t>(plan.smem),
                              plan.cfg.kt, plan.cfg.tile, plan.cfg.channel_tiles, plan.cfg.ring, plan.cfg.warp,
                              plan.cfg.split};
  for (int k = 0; k < 10; ++k) out[k] = fields[k];
  return 0;
}

}  // extern "C"

#ifdef GSPN_EMU_MAIN
// gspn_emu IN OUT [IN OUT ...]: IN holds int64 {dtype, B, C, G, H, W, direction, chunk, shared optin,
// SM count} then x, lam, a, b, c, dh; OUT receives h, dx, dlam, da, db, dc.
int main(int argc, char** argv) {
  for (int arg = 1; arg + 1 < argc; arg += 2) {
    FILE* f = std::fopen(argv[arg], "rb");
    if (!f) return 2;
    int64_t head[10];
    if (std::fread(head, sizeof(int64_t), 10, f) != 10) return 2;
    const int dtype = static_cast<int>(head[0]);
    const int64_t* shape = head + 1;
    const size_t es = element_size(dtype);
    const size_t xb = es * shape[0] * shape[1] * shape[3] * shape[4], wb = es * shape[0] * shape[2] * shape[3] * shape[4];
    const size_t sizes[6] = {xb, xb, wb, wb, wb, xb};
    std::vector<std::vector<unsigned char>> in(6), out(6);
    for (int k = 0; k < 6; ++k) {
      in[k].resize(sizes[k]);
      if (std::fread(in[k].data(), 1, sizes[k], f) != sizes[k]) return 2;
    }
    std::fclose(f);
    const size_t out_sizes[6] = {xb, xb, xb, wb, wb, wb};
    for (int k = 0; k < 6; ++k) out[k].resize(out_sizes[k]);
    emu_set_device(static_cast<int>(head[8]), static_cast<int>(head[9]));
    const void* fwd_in[5] = {in[0].data(), in[1].data(), in[2].data(), in[3].data(), in[4].data()};
    if (emu_forward(dtype, shape, static_cast<int>(head[6]), head[7], fwd_in, out[0].data())) {
      std::fprintf(stderr, "%s\n", emu_error());
      return 1;
    }
    const void* bwd_in[7] = {in[5].data(), in[0].data(), in[1].data(), in[2].data(), in[3].data(), in[4].data(),
                             out[0].data()};
    void* bwd_out[5] = {out[1].data(), out[2].data(), out[3].data(), out[4].data(), out[5].data()};
    if (emu_backward(dtype, shape, static_cast<int>(head[6]), head[7], bwd_in, bwd_out)) {
      std::fprintf(stderr, "%s\n", emu_error());
      return 1;
    }
    FILE* o = std::fopen(argv[arg + 1], "wb");
    if (!o) return 2;
    for (int k = 0; k < 6; ++k) std::fwrite(out[k].data(), 1, out[k].size(), o);
    std::fclose(o);
  }
  return 0;
}
#endif
