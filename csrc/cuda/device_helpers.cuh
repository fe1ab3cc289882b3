// Device helpers of every kernel: conversions to and from the accumulator, tile coordinates, the
// staging spans and their asynchronous copies, a line of the state, chunk restarts, register
// staging, and which planes a block works on.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline_primitives.h>

#include "launch_config.cuh"

namespace gspn_cuda {
namespace detail {

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// The flat index e of a tile element of `steps` lines, fastest along the contiguous memory axis.
__device__ __forceinline__ void tile_coord(const Geometry& g, int steps, int e, int& sl, int& i) {
  if (g.cross_contiguous) {
    sl = e / g.N;
    i = e - sl * g.N;
  } else {
    i = e / steps;
    sl = e - i * steps;
  }
}

struct Span {
  int first, n;     // lines first .. first + n - 1
  int runs, len;    // runs and elements per run
  int lead, granules;  // elements before the run's first one; granules per run

  __device__ Span(const Geometry& g, int first_, int n_, int granule) : first(first_), n(n_) {
    runs = g.cross_contiguous ? n : g.N;
    len = g.cross_contiguous ? g.N : n;
    lead = n > 0 ? static_cast<int>(run_start(g, 0) % granule) : 0;
    granules = (lead + len + granule - 1) / granule;
  }
  // Offset in the plane of run r's first element.
  __device__ int64_t run_start(const Geometry& g, int r) const {
    if (g.cross_contiguous) return g.offset(first + r, 0);
    return g.offset(g.reversed ? first + n - 1 : first, r);
  }
  // Where line s (absolute), position i sits in the staging plane.
  __device__ int at(const Geometry& g, const StageLayout& sl, int s, int i) const {
    if (g.cross_contiguous) return (s - first) * sl.pitch + lead + i;
    return i * sl.pitch + lead + (g.reversed ? first + n - 1 - s : s - first);
  }
};

// The lines of h that a backward tile reads: the line before each of its lines (none before line 0).
__device__ __forceinline__ Span h_span(const Geometry& g, int t0, int steps, int granule) {
  return Span(g, t0 > 0 ? t0 - 1 : 0, t0 > 0 ? steps : steps - 1, granule);
}

// Issue the copies of a span of one plane into its staging plane: granules of 4, 8 or 16 bytes by
// cp.async (one 16-bit element at a time, synchronously, where pairs would be misaligned).
template <typename T>
__device__ __forceinline__ void copy_span(T* stage, const T* plane, const Geometry& g, const StageLayout& sl,
                                          const Span& sp, int granule, int tid, int nt) {
  const int total = sp.runs * sp.granules;
#pragma unroll 1
  for (int q = tid; q < total; q += nt) {
    const int r = q / sp.granules, k = q - r * sp.granules;
    const T* src = plane + sp.run_start(g, r) - sp.lead + k * granule;
    T* dst = stage + r * sl.pitch + k * granule;
    if (granule * sizeof(T) >= 4) __pipeline_memcpy_async(dst, src, granule * sizeof(T));
    else *dst = *src;
  }
}

// The same, called rather than inlined: the backward issues 4 kt + 3 spans per tile from two places,
// and inlined they spill registers.
template <typename T>
__device__ __noinline__ void copy_span_call(T* stage, const T* plane, const Geometry& g, const StageLayout& sl,
                                            const Span& sp, int granule, int tid, int nt) {
  copy_span(stage, plane, g, sl, sp, granule, tid, nt);
}

// One line of the state in shared memory, for channels k and cross positions i.
template <typename A> struct Line {
  A* p;
  int k_stride, i_stride;
  __device__ A& at(int k, int i) const { return p[k * k_stride + i * i_stride]; }
};

// Bit q of the result: step t0 + q restarts the scan (step 0, or a multiple of chunk; chunk 0 is
// global). Covers steps t0 .. t0 + 32; one 32-bit modulo per tile, none per element.
__device__ __forceinline__ uint64_t restart_mask(int t0, int chunk) {
  uint64_t mask = t0 == 0 ? 1u : 0u;
  if (chunk > 0) {
    const int phase = t0 % chunk;
    for (int q = phase == 0 ? 0 : chunk - phase; q <= 32; q += chunk) mask |= uint64_t(1) << q;
  }
  return mask;
}
__device__ __forceinline__ bool restarts_at(uint64_t mask, int q) { return (mask >> q) & 1u; }

// Unrolled register staging: load(e, r) reads tile element e of M arrays into r, store(e, r) puts them
// in shared memory. Each thread issues the loads of kStage elements (Values float values, half as
// many doubles) before the first store.
template <int M, int Values, typename A, typename Load, typename Store>
__device__ __forceinline__ void staged(int count, int tid, int nt, Load load, Store store) {
  constexpr int kPerElement = M * static_cast<int>(sizeof(A) / sizeof(float));
  constexpr int kStage = Values / kPerElement > 0 ? Values / kPerElement : 1;
  for (int e0 = tid; e0 < count; e0 += kStage * nt) {
    A r[kStage][M];
#pragma unroll
    for (int u = 0; u < kStage; ++u)
      if (e0 + u * nt < count) load(e0 + u * nt, r[u]);
#pragma unroll
    for (int u = 0; u < kStage; ++u)
      if (e0 + u * nt < count) store(e0 + u * nt, r[u]);
  }
}

// The three weight planes of the tile at step t0 into shared memory w (plans without a ring).
template <int Values, typename A, typename T>
__device__ __forceinline__ void stage_weight_tile(A* w, const T* const* weights, const Geometry& g,
                                                  const TileLayout& tl, int t0, int steps, int count, int tid,
                                                  int nt) {
  staged<3, Values, A>(
      count, tid, nt,
      [&](int e, A* r) {
        int sl, i;
        tile_coord(g, steps, e, sl, i);
        const int64_t o = g.offset(t0 + sl, i);
        for (int m = 0; m < 3; ++m) r[m] = to_acc(weights[m][o]);
      },
      [&](int e, const A* r) {
        int sl, i;
        tile_coord(g, steps, e, sl, i);
        for (int m = 0; m < 3; ++m) w[m * tl.plane + tl.at(sl, i)] = r[m];
      });
}

struct BlockPlanes {
  int64_t x0;       // offset of the block's first channel plane in x-shaped tensors
  int64_t w0;       // offset of its weight plane in weight-shaped tensors
  int64_t bg, ct;   // (batch, group) index and channel tile of the block
  int kn;           // channels actually handled (the last tile may be short)
};

__device__ __forceinline__ BlockPlanes block_planes(const Config& cfg) {
  const int64_t hw = static_cast<int64_t>(cfg.geo.L) * cfg.geo.N;
  BlockPlanes bp;
  bp.ct = blockIdx.x % cfg.channel_tiles;
  bp.bg = blockIdx.x / cfg.channel_tiles;
  const int64_t batch = bp.bg / cfg.G, group = bp.bg % cfg.G;
  const int64_t first = bp.ct * cfg.kt;
  const int64_t left = cfg.K - first;
  bp.kn = static_cast<int>(left < cfg.kt ? left : cfg.kt);
  bp.x0 = (batch * cfg.C + group * cfg.K + first) * hw;
  bp.w0 = bp.bg * hw;
  return bp;
}

// Which lines a forward tile covers.
__device__ __forceinline__ int tile_steps(const Config& cfg, int t0) { return min(cfg.tile, cfg.geo.L - t0); }

}  // namespace detail
}  // namespace gspn_cuda
