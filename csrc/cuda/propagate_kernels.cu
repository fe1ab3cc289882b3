// CUDA kernels of the GSPN line scan, forward and backward, all four directions by index arithmetic.
//
// Frame: every direction is a scan over L steps (s = 0 .. L-1, in scan order) of lines of N cross
// positions (i = 0 .. N-1); `Geometry::offset(s, i)` maps that frame onto the (H, W) plane, and both
// kernels use nothing else to address memory. lr: s -> column s, i -> row i; rl: column W-1-s;
// tb: s -> row s, i -> column i; bt: row H-1-s.
//
// Work split: one block per (batch, weight group, tile of kt channels of that group). The whole
// cross axis of a line belongs to the block (neighbours i-1, i+1 couple it at every step), and each
// weight loaded is used for all kt channels (kt <= 32, fewer when the grid would otherwise leave SMs
// idle or shared memory is short). The block is 2D: threadIdx.y walks the channels of the tile, so
// channels sharing one weight plane are scanned in parallel (at most 512 threads). Two step modes:
// - block mode (N > 64): threadIdx.x walks cross positions x, x + blockDim.x, ...; the state of a
//   line lives in shared memory and every step ends with __syncthreads;
// - warp mode (N <= 64): one warp per channel (blockDim = 32 x kt), lane l owns positions 2l and
//   2l+1; the state lives in registers, neighbours come by warp shuffles, no barrier per step.
// - split mode (33 <= N <= 128, float accumulation, one channel per block, at most one block per
//   SM: forward_split_kernel, backward_split_kernel): warp 0 scans with four positions a lane in
//   registers, two lines per exchange between lanes, while 12 other warps convert the next tile and
//   write out the previous one; one barrier per tile (see the comment above the split kernels,
//   split_kernels.cuh).
// A grid of at most one block per SM gets more rows of threads than channels (see plan_one in
// planner.cuh): the rows beyond the channels scan nothing and share the tile work (copies,
// conversions, write-outs).
// The cross axis is limited by one block's shared memory, the same for forward and backward (the
// forward refuses what the backward could not take): about 6400 (float32/16) or 3200 (float64)
// positions on an H100.
//
// Tiles: the block walks the scan in tiles of T <= 32 steps, held in shared memory as float32
// (float64 for double inputs). Ring plans (all but the longest cross axes) copy the raw inputs of
// the next tile into a staging area with asynchronous copies (`__pipeline_memcpy_async`: cp.async
// on sm_80 and later) while the current tile is scanned: the staging area and the working tile form
// a two-stage ring, so a whole tile of loads is in flight during every scan. The backward also
// fetches lam and x of the current tile during its scan, for dx and dlam. Plans without a ring (the
// longest cross axes) load a tile with unrolled register staging (each thread issues kStage
// elements' loads of every array before it waits for any) and the backward loads lam and x before
// it stores dx and dlam. Loads and stores are coalesced for every direction: copies and the flat
// index of a tile element run fastest along whichever axis is contiguous in memory (the cross axis
// for tb/bt, the scan axis for lr/rl). For lr/rl the working rows are padded to an odd pitch, so
// both the loads (scan axis fastest) and the scan (cross axis fastest) are free of bank conflicts.
//
// Weight gradients sum over the channels of a group. When the block owns the whole group (kt == K)
// it writes them directly; otherwise each channel tile writes its partial sums to a float32
// workspace and a second kernel adds the tiles in a fixed order. No atomics: repeated runs are
// bitwise identical.
//
// Files: launch_config.cuh (the limits, the geometry, the layouts and a block's Config, which the
// planner and the kernels share), device_helpers.cuh (what every kernel uses), scan_kernels.cuh
// (block and warp mode), split_kernels.cuh (split mode), weight_grads.cuh (the weight gradients and
// their reduction over channel tiles), planner.cuh (the host planner); this file launches them.
#include "propagate_kernels.cuh"

#include <initializer_list>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "planner.cuh"
#include "scan_kernels.cuh"
#include "split_kernels.cuh"
#include "weight_grads.cuh"

namespace gspn_cuda {
namespace detail {

// 16-bit inputs are copied in 4-byte pairs when every pair is aligned: even rows (so runs and planes
// start at even elements) and 4-byte aligned tensors; else one element at a time.
inline int copy_granule(const Problem& p, size_t elem_size, std::initializer_list<const void*> tensors) {
  if (elem_size != 2 || p.W % 2 != 0) return 1;
  for (const void* t : tensors)
    if (reinterpret_cast<uintptr_t>(t) % 4 != 0) return 1;
  return 2;
}

template <typename Kernel> cudaError_t allow_shared(Kernel kernel, size_t bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

template <typename T>
cudaError_t forward(const Problem& p, const void* x, const void* lam, const void* a, const void* b,
                    const void* c, void* h, cudaStream_t stream) {
  Plan plan;
  cudaError_t err = make_plan(p, sizeof(typename Accumulator<T>::type), sizeof(T), false, &plan);
  if (err != cudaSuccess) return err;
  plan.cfg.granule = copy_granule(p, sizeof(T), {x, lam, a, b, c});
  if constexpr (sizeof(typename Accumulator<T>::type) == sizeof(float)) {
    if (plan.cfg.split) {
      err = allow_shared(forward_split_kernel<T>, plan.smem);
      if (err != cudaSuccess) return err;
      forward_split_kernel<T><<<static_cast<unsigned>(plan.blocks), dim3(plan.threads_x, plan.threads_y), plan.smem,
                                stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(lam), static_cast<const T*>(a), static_cast<const T*>(b),
          static_cast<const T*>(c), static_cast<T*>(h), plan.cfg);
      return cudaGetLastError();
    }
  }
  err = allow_shared(forward_kernel<T>, plan.smem);
  if (err != cudaSuccess) return err;
  forward_kernel<T><<<static_cast<unsigned>(plan.blocks), dim3(plan.threads_x, plan.threads_y), plan.smem, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(lam), static_cast<const T*>(a), static_cast<const T*>(b),
      static_cast<const T*>(c), static_cast<T*>(h), plan.cfg);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward(const Problem& p, const void* dh, const void* x, const void* lam, const void* a,
                     const void* b, const void* c, const void* h, void* dx, void* dlam, void* da, void* db,
                     void* dc, void* workspace, cudaStream_t stream) {
  using A = typename Accumulator<T>::type;
  Plan plan;
  cudaError_t err = make_plan(p, sizeof(A), sizeof(T), true, &plan);
  if (err != cudaSuccess) return err;
  plan.cfg.granule = copy_granule(p, sizeof(T), {dh, x, lam, a, b, c, h});
  const int64_t tiles = plan.cfg.channel_tiles;
  if (tiles > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  WeightGrads<T> dw;
  dw.out[0] = static_cast<T*>(da);
  dw.out[1] = static_cast<T*>(db);
  dw.out[2] = static_cast<T*>(dc);
  dw.partial = tiles > 1 ? static_cast<A*>(workspace) : nullptr;
  dw.plane_count = p.B * p.G * p.H * p.W;

  bool launched = false;
  if constexpr (sizeof(A) == sizeof(float)) {
    if (plan.cfg.split) {
      err = allow_shared(backward_split_kernel<T>, plan.smem);
      if (err != cudaSuccess) return err;
      backward_split_kernel<T><<<static_cast<unsigned>(plan.blocks), dim3(plan.threads_x, plan.threads_y), plan.smem,
                                 stream>>>(
          static_cast<const T*>(dh), static_cast<const T*>(x), static_cast<const T*>(lam), static_cast<const T*>(a),
          static_cast<const T*>(b), static_cast<const T*>(c), static_cast<const T*>(h), static_cast<T*>(dx),
          static_cast<T*>(dlam), dw, plan.cfg);
      launched = true;
    }
  }
  if (!launched) {
    err = allow_shared(backward_kernel<T>, plan.smem);
    if (err != cudaSuccess) return err;
    backward_kernel<T><<<static_cast<unsigned>(plan.blocks), dim3(plan.threads_x, plan.threads_y), plan.smem, stream>>>(
        static_cast<const T*>(dh), static_cast<const T*>(x), static_cast<const T*>(lam), static_cast<const T*>(a),
        static_cast<const T*>(b), static_cast<const T*>(c), static_cast<const T*>(h), static_cast<T*>(dx),
        static_cast<T*>(dlam), dw, plan.cfg);
  }
  err = cudaGetLastError();
  if (err != cudaSuccess || tiles == 1) return err;

  const int threads = 256;
  const int64_t wanted = (3 * dw.plane_count + threads - 1) / threads;
  const unsigned blocks = static_cast<unsigned>(wanted < 65535 ? wanted : 65535);
  sum_channel_tiles<T><<<blocks, threads, 0, stream>>>(dw.partial, tiles, dw);
  return cudaGetLastError();
}

}  // namespace detail

cudaError_t backward_workspace_elements(DType dtype, const Problem& p, size_t* elements) {
  const size_t acc_size = dtype == DType::Float64 ? sizeof(double) : sizeof(float);
  const size_t elem_size = dtype == DType::Float64 ? 8 : dtype == DType::Float32 ? 4 : 2;
  detail::Plan plan;
  const cudaError_t err = detail::make_plan(p, acc_size, elem_size, true, &plan);
  if (err != cudaSuccess) return err;
  const int64_t tiles = plan.cfg.channel_tiles;
  *elements = tiles > 1 ? static_cast<size_t>(tiles * 3 * p.B * p.G * p.H * p.W) : 0;
  return cudaSuccess;
}

cudaError_t propagate_forward(DType dtype, const Problem& p, const void* x, const void* lam, const void* a,
                              const void* b, const void* c, void* h, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32: return detail::forward<float>(p, x, lam, a, b, c, h, stream);
    case DType::Float64: return detail::forward<double>(p, x, lam, a, b, c, h, stream);
    case DType::Float16: return detail::forward<__half>(p, x, lam, a, b, c, h, stream);
    case DType::BFloat16: return detail::forward<__nv_bfloat16>(p, x, lam, a, b, c, h, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t propagate_backward(DType dtype, const Problem& p, const void* dh, const void* x, const void* lam,
                               const void* a, const void* b, const void* c, const void* h, void* dx,
                               void* dlam, void* da, void* db, void* dc, void* workspace, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return detail::backward<float>(p, dh, x, lam, a, b, c, h, dx, dlam, da, db, dc, workspace, stream);
    case DType::Float64:
      return detail::backward<double>(p, dh, x, lam, a, b, c, h, dx, dlam, da, db, dc, workspace, stream);
    case DType::Float16:
      return detail::backward<__half>(p, dh, x, lam, a, b, c, h, dx, dlam, da, db, dc, workspace, stream);
    case DType::BFloat16:
      return detail::backward<__nv_bfloat16>(p, dh, x, lam, a, b, c, h, dx, dlam, da, db, dc, workspace, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace gspn_cuda
