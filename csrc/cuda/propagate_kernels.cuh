// CUDA kernels of the GSPN line scan (docs/design.md §1.1, 1.5): host launchers on raw pointers.
//
// Only CUDA headers here, so `nvcc -c propagate_kernels.cu` checks the kernels without torch.
// All tensors are contiguous: x, lam, h, dh, dx, dlam of shape (B, C, H, W); a, b, c, da, db, dc of
// shape (B, G, H, W), channel group g covering channels [g*C/G, (g+1)*C/G).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace gspn_cuda {

enum class DType : int { Float32, Float64, Float16, BFloat16 };

// As in gspn/ops/reference.py: "lr" scans W left to right, "rl" right to left, "tb" scans H top to
// bottom, "bt" bottom to top. `a` always links to the lower-index neighbour on the cross axis.
enum class Direction : int { LR, RL, TB, BT };

struct Problem {
  int64_t B, C, G, H, W;
  Direction direction;
  int64_t chunk;  // 0: one global scan; k >= 1: restart every k steps counted from the scan's start
};

// Number of accumulator elements (float, or double for Float64) of the workspace that
// propagate_backward needs for the current device; 0 when it needs none (workspace may be null).
cudaError_t backward_workspace_elements(DType dtype, const Problem& p, size_t* elements);

// h = the hidden state of the scan. One launch.
cudaError_t propagate_forward(DType dtype, const Problem& p, const void* x, const void* lam, const void* a,
                              const void* b, const void* c, void* h, cudaStream_t stream);

// Gradients from dh = dL/dh and the forward's h. One launch, plus a reduction launch when the
// weight gradients of a group are summed over several channel tiles (see weight_grads.cuh).
cudaError_t propagate_backward(DType dtype, const Problem& p, const void* dh, const void* x, const void* lam,
                               const void* a, const void* b, const void* c, const void* h, void* dx,
                               void* dlam, void* da, void* db, void* dc, void* workspace, cudaStream_t stream);

}  // namespace gspn_cuda
