// Weight gradients summed over the channels of a group: where the backward kernels write them
// (straight, or as partial sums per channel tile into a workspace) and the kernel that adds the
// channel tiles' partial sums in a fixed order (no atomics: bitwise repeatable).
#pragma once

#include "device_helpers.cuh"

namespace gspn_cuda {
namespace detail {

// Where a block writes its weight gradients: straight into da/db/dc, or (several channel tiles
// per group) as float partial sums into workspace[(ct * 3 + m) * (B * G * hw) + w0 + offset].
template <typename T> struct WeightGrads {
  T* out[3];
  typename Accumulator<T>::type* partial;  // null: write `out`
  int64_t plane_count;                      // B * G * hw
};

// out[m][q] = sum over channel tiles t, in order, of partial[(t * 3 + m) * plane_count + q].
template <typename T>
__global__ void sum_channel_tiles(const typename Accumulator<T>::type* __restrict__ partial, int64_t tiles,
                                  WeightGrads<T> dw) {
  using A = typename Accumulator<T>::type;
  const int64_t total = 3 * dw.plane_count;
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < total;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = q / dw.plane_count, r = q - m * dw.plane_count;
    A s = A(0);
    for (int64_t t = 0; t < tiles; ++t) s += partial[(t * 3 + m) * dw.plane_count + r];
    store(dw.out[m] + r, s);
  }
}

}  // namespace detail
}  // namespace gspn_cuda
