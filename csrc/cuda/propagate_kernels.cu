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
//   write out the previous one; one barrier per tile (see the comment above the split kernels).
// A grid of at most one block per SM gets more rows of threads than channels (see plan_one): the
// rows beyond the channels scan nothing and share the tile work (copies, conversions, write-outs).
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
#include "propagate_kernels.cuh"

#include <initializer_list>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline_primitives.h>

namespace gspn_cuda {
namespace detail {

constexpr int kMaxThreads = 512;  // forward: 2 blocks per SM (64 registers); backward: 1 (128)
constexpr int kMaxChannelTile = 32;
constexpr int kMinSpreadTile = 1;  // channel tiles are split down to this to fill the SMs
// Plans without a ring: values each thread loads before it waits (register staging), as many as
// fit next to the ring code without spills.
constexpr int kForwardStage = 2, kBackwardStage = 2, kBackwardStageDouble = 2;
constexpr size_t kSharedBudget = 100 * 1024;  // two blocks per SM on sm_80 and later
constexpr int kWarpCross = 64;       // warp mode: cross axes up to two positions per lane
constexpr int kWarpChannelTile = kMaxThreads / 32;  // warp mode: one warp per channel
constexpr int kTileShare = 8;  // grids of at most one block per SM: tile elements per thread (see plan_one)
// Split mode (forward_split_kernel, backward_split_kernel): cross axes kSplitMinCross .. kSplitCross,
// one channel per block.
constexpr int kSplitMinCross = 33;          // longer than one warp's lanes (shorter ones stay in warp mode)
constexpr int kSplitCross = 128;            // four positions per lane of the scanning warp
constexpr int kSplitTile = 16;              // scan steps per tile
constexpr int kSplitLead = 4;               // zero positions before each working line (lane 0 reads position -1)
constexpr int kSplitPitch = kSplitLead + kSplitCross + 4;  // floats per working line (16-byte aligned, padded)
constexpr int kSplitRows = kMaxThreads / 32;  // warp 0 scans, warps 4, 8, 12 idle, the other warps help
constexpr int kSplitPlane = kSplitTile * kSplitPitch;  // floats of one working slot (a compile-time offset)
constexpr int kSplitForwardStages = 3;  // forward: staging stages (copies three tiles ahead)
constexpr unsigned kFullWarp = 0xffffffffu;

template <typename T> struct Accumulator { using type = float; };
template <> struct Accumulator<double> { using type = double; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

struct Geometry {
  int L, N;                              // scan length, cross length
  int64_t step_stride, cross_stride;     // memory strides in an (H, W) plane
  bool reversed;                         // rl, bt: scan step 0 is the last column / row
  bool cross_contiguous;                 // tb, bt

  __host__ __device__ int64_t offset(int s, int i) const {
    const int j = reversed ? L - 1 - s : s;
    return j * step_stride + i * cross_stride;
  }
};

inline Geometry make_geometry(const Problem& p) {
  const bool along_w = p.direction == Direction::LR || p.direction == Direction::RL;
  Geometry g;
  g.L = static_cast<int>(along_w ? p.W : p.H);
  g.N = static_cast<int>(along_w ? p.H : p.W);
  g.step_stride = along_w ? 1 : p.W;
  g.cross_stride = along_w ? p.W : 1;
  g.reversed = p.direction == Direction::RL || p.direction == Direction::BT;
  g.cross_contiguous = !along_w;
  return g;
}

// Shared-memory layout of one channel's tile of T lines: element (sl, i) at sl*pitch_s + i*pitch_i.
struct TileLayout {
  int pitch_s, pitch_i, plane;

  __host__ __device__ TileLayout(const Geometry& g, int tile) {
    if (g.cross_contiguous) {
      pitch_s = g.N;
      pitch_i = 1;
      plane = tile * g.N;
    } else {
      pitch_s = 1;
      pitch_i = tile % 2 ? tile : tile + 1;
      plane = g.N * pitch_i;
    }
  }
  __device__ int at(int sl, int i) const { return sl * pitch_s + i * pitch_i; }
};

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

// The staging area of one plane: raw copies (the input type) of a span of lines, in memory order.
// A run is a contiguous stretch of memory: one per cross position for lr/rl (the lines of the span),
// one per line for tb/bt (its cross positions). Run r sits at r * pitch; copy granules of `granule`
// elements start at an aligned address, `lead` elements before the run's first element.
struct StageLayout {
  int pitch, plane;
  __host__ __device__ StageLayout(const Geometry& g, int tile, int max_granule) {
    const int longest = g.cross_contiguous ? g.N : tile;
    pitch = (longest + 2 * (max_granule - 1)) / max_granule * max_granule;
    plane = (g.cross_contiguous ? tile : g.N) * pitch;
  }
};

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

// What a block works on: which planes, how many channels, how the scan is tiled.
struct Config {
  Geometry geo;
  int64_t C, G, K;        // channels, weight groups, channels per group
  int chunk;              // 0: global (also when the chunk is at least the scan length)
  int64_t channel_tiles;  // ceil(K / kt)
  int kt, tile;           // channels per block, scan steps per tile
  bool ring;              // next tile copied asynchronously into the staging area during the scan
  bool warp;              // warp mode: one warp per channel, state in registers (N <= kWarpCross)
  bool split;             // split mode: one scanning warp, helper warps for the tile work
  int max_granule;        // staging layout: 2 for 16-bit inputs, else 1
  int granule;            // this launch's copy granule: 1, or 2 where 16-bit pairs are 4-byte aligned
};

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

// Two blocks of 512 threads per SM (64 registers a thread); float64 gets one (128 registers), since
// its doubles do not fit 64 registers without spills.
template <typename T> constexpr int kForwardMinBlocks = sizeof(T) == sizeof(double) ? 1 : 2;

template <typename T>
__global__ void __launch_bounds__(kMaxThreads, kForwardMinBlocks<T>)
forward_kernel(const T* __restrict__ x, const T* __restrict__ lam, const T* __restrict__ a,
               const T* __restrict__ b, const T* __restrict__ c, T* __restrict__ h, Config cfg) {
  using A = typename Accumulator<T>::type;
  extern __shared__ __align__(16) unsigned char gspn_smem[];
  const Geometry& g = cfg.geo;
  const TileLayout tl(g, cfg.tile);
  const StageLayout sg(g, cfg.tile, cfg.max_granule);
  const BlockPlanes bp = block_planes(cfg);
  const int64_t hw = static_cast<int64_t>(g.L) * g.N;
  const int tx = threadIdx.x, bx = blockDim.x, ty = threadIdx.y, by = blockDim.y;
  const int tid = ty * bx + tx, nt = bx * by, N = g.N;

  A* v = reinterpret_cast<A*>(gspn_smem);  // [kt] tiles: lam * x, overwritten in place by h
  A* w = v + cfg.kt * tl.plane;             // [3] tiles: a, b, c
  A* carry = w + 3 * tl.plane;              // [kt][N]: h of the last line of the previous tile
  T* stage = reinterpret_cast<T*>(carry + cfg.kt * N);  // ring: [kt] lam, [kt] x, a, b, c (raw)
  const T* weights[3] = {a + bp.w0, b + bp.w0, c + bp.w0};

  // Ring: copies of the inputs of the tile at t0 into the staging area, one commit group.
  auto fetch = [&](int t0) {
    const Span sp(g, t0, tile_steps(cfg, t0), cfg.granule);
    for (int k = 0; k < bp.kn; ++k) {
      copy_span(stage + k * sg.plane, lam + bp.x0 + k * hw, g, sg, sp, cfg.granule, tid, nt);
      copy_span(stage + (cfg.kt + k) * sg.plane, x + bp.x0 + k * hw, g, sg, sp, cfg.granule, tid, nt);
    }
    for (int m = 0; m < 3; ++m)
      copy_span(stage + (2 * cfg.kt + m) * sg.plane, weights[m], g, sg, sp, cfg.granule, tid, nt);
    __pipeline_commit();
  };
  if (cfg.ring) fetch(0);

  A h0 = A(0), h1 = A(0);  // warp mode: this lane's state at positions 2 * tx, 2 * tx + 1
  for (int t0 = 0; t0 < g.L; t0 += cfg.tile) {
    const int steps = tile_steps(cfg, t0);
    const int count = steps * N;
    const uint64_t restart = restart_mask(t0, cfg.chunk);
    if (cfg.ring) {
      __pipeline_wait_prior(0);
      __syncthreads();  // every thread's copies of this tile have landed
      const Span sp(g, t0, steps, cfg.granule);
      for (int e = tid; e < count; e += nt) {
        int sl, i;
        tile_coord(g, steps, e, sl, i);
        const int from = sp.at(g, sg, t0 + sl, i), to = tl.at(sl, i);
        for (int k = 0; k < bp.kn; ++k)
          v[k * tl.plane + to] = to_acc(stage[k * sg.plane + from]) * to_acc(stage[(cfg.kt + k) * sg.plane + from]);
        for (int m = 0; m < 3; ++m) w[m * tl.plane + to] = to_acc(stage[(2 * cfg.kt + m) * sg.plane + from]);
      }
      __syncthreads();  // the staging area is free again
      if (t0 + cfg.tile < g.L) fetch(t0 + cfg.tile);
    } else {
      for (int k = 0; k < bp.kn; ++k) {
        const T* xk = x + bp.x0 + k * hw;
        const T* lk = lam + bp.x0 + k * hw;
        A* vk = v + k * tl.plane;
        staged<2, kForwardStage, A>(
            count, tid, nt,
            [&](int e, A* r) {
              int sl, i;
              tile_coord(g, steps, e, sl, i);
              const int64_t o = g.offset(t0 + sl, i);
              r[0] = to_acc(lk[o]);
              r[1] = to_acc(xk[o]);
            },
            [&](int e, const A* r) {
              int sl, i;
              tile_coord(g, steps, e, sl, i);
              vk[tl.at(sl, i)] = r[0] * r[1];
            });
      }
      stage_weight_tile<kForwardStage>(w, weights, g, tl, t0, steps, count, tid, nt);
      __syncthreads();
    }

    if (cfg.warp) {
      // One warp per channel; the neighbours of this lane's pair come from the lanes beside it.
      const int k = ty, i0 = 2 * tx, i1 = i0 + 1;
      if (k < bp.kn) {
        A* vk = v + k * tl.plane;
        for (int sl = 0; sl < steps; ++sl) {
          // The lane's own terms are summed while the shuffles fly, so that one multiply-add (the
          // neighbour lane's term) is all a step adds to the chain after them.
          const bool fresh = restarts_at(restart, sl);
          const int here0 = tl.at(sl, i0), here1 = tl.at(sl, i1);
          A s0 = A(0), s1 = A(0);  // positions past the cross axis keep a zero state
          if (i0 < N) {
            s0 = vk[here0];
            if (!fresh) {
              s0 += w[tl.plane + here0] * h0;
              if (i1 < N) s0 += w[2 * tl.plane + here0] * h1;
            }
          }
          if (i1 < N) {
            s1 = vk[here1];
            if (!fresh) {
              s1 += w[tl.plane + here1] * h1;
              s1 += w[here1] * h0;
            }
          }
          const A left = __shfl_up_sync(kFullWarp, h1, 1);    // h at i0 - 1
          const A right = __shfl_down_sync(kFullWarp, h0, 1);  // h at i1 + 1
          if (i0 < N) {
            if (!fresh && i0 > 0) s0 += w[here0] * left;
            vk[here0] = s0;
          }
          if (i1 < N) {
            if (!fresh && i1 + 1 < N) s1 += w[2 * tl.plane + here1] * right;
            vk[here1] = s1;
          }
          h0 = s0;
          h1 = s1;
        }
      }
      __syncthreads();
    } else {
      for (int sl = 0; sl < steps; ++sl) {
        if (!restarts_at(restart, sl)) {
          const Line<A> prev = sl > 0 ? Line<A>{v + tl.at(sl - 1, 0), tl.plane, tl.pitch_i}
                                      : Line<A>{carry, N, 1};
          for (int i = tx; i < N; i += bx) {
            const int here = tl.at(sl, i);
            const A wa = w[here], wb = w[tl.plane + here], wc = w[2 * tl.plane + here];
            for (int k = ty; k < bp.kn; k += by) {
              A s = v[k * tl.plane + here] + wb * prev.at(k, i);
              if (i > 0) s += wa * prev.at(k, i - 1);
              if (i + 1 < N) s += wc * prev.at(k, i + 1);
              v[k * tl.plane + here] = s;
            }
          }
        }
        __syncthreads();
      }
    }

    for (int k = 0; k < bp.kn; ++k) {
      T* hk = h + bp.x0 + k * hw;
      for (int e = tid; e < count; e += nt) {
        int sl, i;
        tile_coord(g, steps, e, sl, i);
        store(hk + g.offset(t0 + sl, i), v[k * tl.plane + tl.at(sl, i)]);
      }
      if (!cfg.warp)
        for (int i = tid; i < N; i += nt) carry[k * N + i] = v[k * tl.plane + tl.at(steps - 1, i)];
    }
    __syncthreads();  // the next tile's loads overwrite what was just read
  }
}

// Where a block writes its weight gradients: straight into da/db/dc, or (several channel tiles
// per group) as float partial sums into workspace[(ct * 3 + m) * (B * G * hw) + w0 + offset].
template <typename T> struct WeightGrads {
  T* out[3];
  typename Accumulator<T>::type* partial;  // null: write `out`
  int64_t plane_count;                      // B * G * hw
};

// One block of 512 threads per SM at least (up to 128 registers a thread): the ring keeps a whole
// tile in flight, so the backward needs no second block per SM to hide its loads.
template <typename T>
__global__ void __launch_bounds__(kMaxThreads, 1)
backward_kernel(const T* __restrict__ dh, const T* __restrict__ x, const T* __restrict__ lam,
                const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
                const T* __restrict__ h, T* __restrict__ dx, T* __restrict__ dlam, WeightGrads<T> dw,
                Config cfg) {
  using A = typename Accumulator<T>::type;
  extern __shared__ __align__(16) unsigned char gspn_smem[];
  const Geometry& g = cfg.geo;
  const TileLayout tl(g, cfg.tile);
  const StageLayout sg(g, cfg.tile, cfg.max_granule);
  const BlockPlanes bp = block_planes(cfg);
  const int64_t hw = static_cast<int64_t>(g.L) * g.N;
  const int tx = threadIdx.x, bx = blockDim.x, ty = threadIdx.y, by = blockDim.y;
  const int tid = ty * bx + tx, nt = bx * by, N = g.N, kt = cfg.kt;

  constexpr int kStage = sizeof(A) == sizeof(double) ? kBackwardStageDouble : kBackwardStage;
  A* d = reinterpret_cast<A*>(gspn_smem);  // [kt] tiles: dh, turned in place into dL/dh total
  A* hp = d + kt * tl.plane;                // [kt] tiles: the state each line read (0 at restarts)
  A* w = hp + kt * tl.plane;                // [3] tiles: a, b, c
  A* d_carry = w + 3 * tl.plane;            // [kt][N]: d of the first line of the tile after
  A* w_carry = d_carry + kt * N;            // [3][N]: the weights of that line
  T* stage = reinterpret_cast<T*>(w_carry + 3 * N);  // ring: [kt] dh, [kt] h, a, b, c, [kt] lam, [kt] x
  const T* weights[3] = {a + bp.w0, b + bp.w0, c + bp.w0};

  // Ring: dh, h and the weights of the tile at t0 (nothing for t0 < 0), one commit group.
  auto fetch_scan_inputs = [&](int t0) {
    if (t0 >= 0) {
      const int steps = tile_steps(cfg, t0);
      const Span sp(g, t0, steps, cfg.granule), sh = h_span(g, t0, steps, cfg.granule);
      for (int k = 0; k < bp.kn; ++k) {
        copy_span_call(stage + k * sg.plane, dh + bp.x0 + k * hw, g, sg, sp, cfg.granule, tid, nt);
        copy_span_call(stage + (kt + k) * sg.plane, h + bp.x0 + k * hw, g, sg, sh, cfg.granule, tid, nt);
      }
      for (int m = 0; m < 3; ++m)
        copy_span_call(stage + (2 * kt + m) * sg.plane, weights[m], g, sg, sp, cfg.granule, tid, nt);
    }
    __pipeline_commit();
  };
  // Ring: lam and x of the tile at t0, for dx and dlam, one commit group.
  auto fetch_gates = [&](int t0) {
    const Span sp(g, t0, tile_steps(cfg, t0), cfg.granule);
    for (int k = 0; k < bp.kn; ++k) {
      copy_span_call(stage + (2 * kt + 3 + k) * sg.plane, lam + bp.x0 + k * hw, g, sg, sp, cfg.granule, tid, nt);
      copy_span_call(stage + (3 * kt + 3 + k) * sg.plane, x + bp.x0 + k * hw, g, sg, sp, cfg.granule, tid, nt);
    }
    __pipeline_commit();
  };
  const int last = (g.L - 1) / cfg.tile * cfg.tile;
  if (cfg.ring) fetch_scan_inputs(last);

  A d0 = A(0), d1 = A(0);  // warp mode: d of the line after, at positions 2 * tx, 2 * tx + 1
  for (int t0 = last; t0 >= 0; t0 -= cfg.tile) {
    const int steps = tile_steps(cfg, t0);
    const int count = steps * N;
    const uint64_t restart = restart_mask(t0, cfg.chunk);  // bits 0 .. steps: this tile and the next step
    const Span sp(g, t0, steps, cfg.granule);
    if (cfg.ring) {
      __pipeline_wait_prior(0);
      __syncthreads();  // every thread's copies of this tile have landed
      const Span sh = h_span(g, t0, steps, cfg.granule);
      for (int e = tid; e < count; e += nt) {
        int sl, i;
        tile_coord(g, steps, e, sl, i);
        const int from = sp.at(g, sg, t0 + sl, i), to = tl.at(sl, i);
        const bool fresh = restarts_at(restart, sl);
        const int from_h = fresh ? 0 : sh.at(g, sg, t0 + sl - 1, i);
        for (int k = 0; k < bp.kn; ++k) {
          d[k * tl.plane + to] = to_acc(stage[k * sg.plane + from]);
          hp[k * tl.plane + to] = fresh ? A(0) : to_acc(stage[(kt + k) * sg.plane + from_h]);
        }
        for (int m = 0; m < 3; ++m) w[m * tl.plane + to] = to_acc(stage[(2 * kt + m) * sg.plane + from]);
      }
      __syncthreads();  // the staging area of the scan inputs is free again
      fetch_gates(t0);
      fetch_scan_inputs(t0 - cfg.tile);
    } else {
      for (int k = 0; k < bp.kn; ++k) {
        const T* dk = dh + bp.x0 + k * hw;
        const T* hk = h + bp.x0 + k * hw;
        staged<2, kStage, A>(
            count, tid, nt,
            [&](int e, A* r) {
              int sl, i;
              tile_coord(g, steps, e, sl, i);
              r[0] = to_acc(dk[g.offset(t0 + sl, i)]);
              r[1] = restarts_at(restart, sl) ? A(0) : to_acc(hk[g.offset(t0 + sl - 1, i)]);
            },
            [&](int e, const A* r) {
              int sl, i;
              tile_coord(g, steps, e, sl, i);
              const int at = k * tl.plane + tl.at(sl, i);
              d[at] = r[0];
              hp[at] = r[1];
            });
      }
      stage_weight_tile<kStage>(w, weights, g, tl, t0, steps, count, tid, nt);
      __syncthreads();
    }

    // d[s] = dh[s] + T[s+1]^T d[s+1]: the line after s spreads its gradient back through its weights.
    if (cfg.warp) {
      const int k = ty, i0 = 2 * tx, i1 = i0 + 1;
      if (k < bp.kn) {
        A* dk = d + k * tl.plane;
        for (int sl = steps - 1; sl >= 0; --sl) {
          // As in the forward: the lane's own terms first, the neighbour lane's term after the shuffles.
          const bool linked = t0 + sl + 1 < g.L && !restarts_at(restart, sl + 1);
          const bool inside = sl + 1 < steps;
          const Line<A> wn = inside ? Line<A>{w + tl.at(sl + 1, 0), tl.plane, tl.pitch_i} : Line<A>{w_carry, N, 1};
          const int here0 = tl.at(sl, i0), here1 = tl.at(sl, i1);
          A n0 = A(0), n1 = A(0);
          if (i0 < N) {
            n0 = dk[here0];
            if (linked) {
              n0 += wn.at(1, i0) * d0;
              if (i1 < N) n0 += wn.at(0, i1) * d1;
            }
          }
          if (i1 < N) {
            n1 = dk[here1];
            if (linked) {
              n1 += wn.at(1, i1) * d1;
              n1 += wn.at(2, i0) * d0;
            }
          }
          const A left = __shfl_up_sync(kFullWarp, d1, 1);    // d of the line after at i0 - 1
          const A right = __shfl_down_sync(kFullWarp, d0, 1);  // ... at i1 + 1
          if (i0 < N) {
            if (linked && i0 > 0) n0 += wn.at(2, i0 - 1) * left;
            dk[here0] = n0;
          }
          if (i1 < N) {
            if (linked && i1 + 1 < N) n1 += wn.at(0, i1 + 1) * right;
            dk[here1] = n1;
          }
          d0 = n0;
          d1 = n1;
        }
      }
    } else {
      for (int sl = steps - 1; sl >= 0; --sl) {
        const int s = t0 + sl;
        if (s + 1 < g.L && !restarts_at(restart, sl + 1)) {
          const bool inside = sl + 1 < steps;
          const Line<A> dn = inside ? Line<A>{d + tl.at(sl + 1, 0), tl.plane, tl.pitch_i} : Line<A>{d_carry, N, 1};
          const Line<A> wn = inside ? Line<A>{w + tl.at(sl + 1, 0), tl.plane, tl.pitch_i} : Line<A>{w_carry, N, 1};
          for (int i = tx; i < N; i += bx) {
            const A wb = wn.at(1, i);
            const A wa = i + 1 < N ? wn.at(0, i + 1) : A(0);
            const A wc = i > 0 ? wn.at(2, i - 1) : A(0);
            for (int k = ty; k < bp.kn; k += by) {
              A r = wb * dn.at(k, i);
              if (i + 1 < N) r += wa * dn.at(k, i + 1);
              if (i > 0) r += wc * dn.at(k, i - 1);
              d[k * tl.plane + tl.at(sl, i)] += r;
            }
          }
        }
        __syncthreads();
      }
    }
    if (cfg.ring) __pipeline_wait_prior(1);  // lam and x of this tile (the next tile's inputs may still fly)
    __syncthreads();

    for (int k = 0; k < bp.kn; ++k) {
      const int64_t base = bp.x0 + k * hw;
      const A* dk = d + k * tl.plane;
      if (cfg.ring) {
        const T* lk = stage + (2 * kt + 3 + k) * sg.plane;
        const T* xk = stage + (3 * kt + 3 + k) * sg.plane;
        for (int e = tid; e < count; e += nt) {
          int sl, i;
          tile_coord(g, steps, e, sl, i);
          const int from = sp.at(g, sg, t0 + sl, i);
          const int64_t o = base + g.offset(t0 + sl, i);
          const A dv = dk[tl.at(sl, i)];
          store(dx + o, to_acc(lk[from]) * dv);
          store(dlam + o, to_acc(xk[from]) * dv);
        }
        continue;
      }
      staged<2, kStage, A>(  // lam and x of kStage elements in flight before the first store
          count, tid, nt,
          [&](int e, A* r) {
            int sl, i;
            tile_coord(g, steps, e, sl, i);
            const int64_t o = base + g.offset(t0 + sl, i);
            r[0] = to_acc(lam[o]);
            r[1] = to_acc(x[o]);
          },
          [&](int e, const A* r) {
            int sl, i;
            tile_coord(g, steps, e, sl, i);
            const int64_t o = base + g.offset(t0 + sl, i);
            const A dv = dk[tl.at(sl, i)];
            store(dx + o, r[0] * dv);
            store(dlam + o, r[1] * dv);
          });
    }
    for (int e = tid; e < count; e += nt) {
      int sl, i;
      tile_coord(g, steps, e, sl, i);
      A sums[3] = {A(0), A(0), A(0)};
      for (int k = 0; k < bp.kn; ++k) {
        const A dk = d[k * tl.plane + tl.at(sl, i)];
        const A* hk = hp + k * tl.plane;
        if (i > 0) sums[0] += dk * hk[tl.at(sl, i - 1)];
        sums[1] += dk * hk[tl.at(sl, i)];
        if (i + 1 < N) sums[2] += dk * hk[tl.at(sl, i + 1)];
      }
      const int64_t o = bp.w0 + g.offset(t0 + sl, i);
      for (int m = 0; m < 3; ++m) {
        if (dw.partial) dw.partial[(bp.ct * 3 + m) * dw.plane_count + o] = sums[m];
        else store(dw.out[m] + o, sums[m]);
      }
    }
    for (int i = tid; i < N; i += nt) {
      if (!cfg.warp)
        for (int k = 0; k < bp.kn; ++k) d_carry[k * N + i] = d[k * tl.plane + tl.at(0, i)];
      for (int m = 0; m < 3; ++m) w_carry[m * N + i] = w[m * tl.plane + tl.at(0, i)];
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------------------------------------
// Split mode: cross axes of kSplitMinCross .. kSplitCross positions, one channel per block, grids of
// at most one block per SM. Warp 0 scans; the other warps do all the tile work on the neighbouring
// tiles while warp 0 scans tile p: they convert tile p + 1 into its working slots and drain tile
// p - 1, then every warp meets at one __syncthreads per tile. Warps 4, 8 and 12 (on warp 0's
// scheduler, warps being assigned to the SM's four schedulers by index) stay idle, so the scan has a
// scheduler to itself; the twelve others are the helpers. Working tiles are float, line by line,
// kSplitPitch floats a line: kSplitLead zero positions, the cross axis, zeros after it, so no step
// tests a position. A helper converts and drains exactly the staging slots it copies itself
// (copy_span_owned), so its own __pipeline_wait_prior is all the order those copies need; what
// other threads wrote comes through the __syncthreads of each tile.
//
// The scan: lane l of warp 0 owns the positions i0 = 4l .. 4l + 3 and keeps them in registers. Both
// passes have the form out(i) = in(i) + l(i) prev(i - 1) + m(i) prev(i) + r(i) prev(i + 1) (forward:
// l, m, r = a, b, c of the line; backward, on d: the line after's c, b, a shifted so that they sit
// at the position they multiply into). Lines go two at a time with one exchange between lanes: the
// first line at i0 - 1 .. i0 + 4 (the lane's four positions and one halo position each side) from
// the line before at i0 - 2 .. i0 + 5 (two values from each neighbour lane by shuffles), then the
// second line at the lane's four positions from those six, with nothing from other lanes. The input
// and output of the scan are different slots: a lane reads its neighbours' inputs at i0 - 1 and
// i0 + 4 while they write their outputs.

struct alignas(16) Quad {
  float v[4];
};
__device__ __forceinline__ Quad load_quad(const float* p) { return *reinterpret_cast<const Quad*>(p); }
__device__ __forceinline__ void store_quad(float* p, const Quad& q) { *reinterpret_cast<Quad*>(p) = q; }

// A line's l, m, r at the lane's four positions (planes `stride` floats apart, from the one of l).
struct Weights {
  Quad l, m, r;
};
__device__ __forceinline__ Weights load_weights(const float* w, int stride) {
  return {load_quad(w), load_quad(w + stride), load_quad(w + 2 * stride)};
}
// The same and l, m, r at the halo positions i0 - 1 (left) and i0 + 4 (right).
struct Window {
  Weights own;
  float left[3], right[3];
};
__device__ __forceinline__ Window load_window(const float* w, int stride) {
  return {load_weights(w, stride), {w[-1], w[stride - 1], w[2 * stride - 1]}, {w[4], w[stride + 4], w[2 * stride + 4]}};
}

// The first line of a pair at the lane's positions (returned) and at its halo positions (left, right),
// from `prev`, the line before at the lane's positions. The lane's own terms are summed while the
// shuffles fly. Lane 0 and lane 31 get their own values from the shuffles: the weights they meet
// there are zero (no position -1, nothing past the cross axis).
__device__ __forceinline__ Quad first_line(const float* in, const Window& w, const Quad& prev, float& left,
                                           float& right) {
  const float l2 = __shfl_up_sync(kFullWarp, prev.v[2], 1), l1 = __shfl_up_sync(kFullWarp, prev.v[3], 1);
  const float r1 = __shfl_down_sync(kFullWarp, prev.v[0], 1), r2 = __shfl_down_sync(kFullWarp, prev.v[1], 1);
  Quad n = load_quad(in);
  left = in[-1];
  right = in[4];
  for (int j = 0; j < 4; ++j) n.v[j] += w.own.m.v[j] * prev.v[j];
  for (int j = 1; j < 4; ++j) n.v[j] += w.own.l.v[j] * prev.v[j - 1];
  for (int j = 0; j < 3; ++j) n.v[j] += w.own.r.v[j] * prev.v[j + 1];
  left += w.left[2] * prev.v[0];
  right += w.right[0] * prev.v[3];
  n.v[0] += w.own.l.v[0] * l1;
  n.v[3] += w.own.r.v[3] * r1;
  left += w.left[1] * l1;
  left += w.left[0] * l2;
  right += w.right[1] * r1;
  right += w.right[2] * r2;
  return n;
}

// The second line of a pair at the lane's positions, from the first line's six.
__device__ __forceinline__ Quad second_line(const float* in, const Weights& w, const Quad& prev, float left,
                                            float right) {
  Quad n = load_quad(in);
  for (int j = 0; j < 4; ++j) n.v[j] += w.m.v[j] * prev.v[j];
  for (int j = 1; j < 4; ++j) n.v[j] += w.l.v[j] * prev.v[j - 1];
  for (int j = 0; j < 3; ++j) n.v[j] += w.r.v[j] * prev.v[j + 1];
  n.v[0] += w.l.v[0] * left;
  n.v[3] += w.r.v[3] * right;
  return n;
}

// Split mode: the scan of one tile of `steps` lines, `pair` for each two (unrolled for a whole tile:
// no test between the pairs), then `single` for an odd line left.
template <typename Pair, typename Single>
__device__ __forceinline__ void scan_tile(int steps, Pair pair, Single single) {
  if (steps == kSplitTile) {
#pragma unroll
    for (int k = 0; k < kSplitTile / 2; ++k) pair();
  } else {
    for (int k = 0; k < steps / 2; ++k) pair();
  }
  if (steps % 2) single();
}

// Split mode: this thread's helper index (0 .. split_helpers() - 1), or -1 in warp 0 and the idle
// warps (every fourth).
__device__ __forceinline__ int split_helper() {
  const int w = static_cast<int>(threadIdx.y);
  return w % 4 == 0 ? -1 : (w - 1 - w / 4) * 32 + static_cast<int>(threadIdx.x);
}
__device__ __forceinline__ int split_helpers() {
  const int others = static_cast<int>(blockDim.y) - 1;
  return 32 * (others - others / 4);
}

// Split mode: line offset of the k-th zero position of a working line (kSplitLead before the cross
// axis, the rest after it).
__device__ __forceinline__ int split_pad(int k, int N) { return k < kSplitLead ? k : N + k; }

// Split mode: granule slot k of run r of a staging plane belongs to thread (r * per_run + k) % nt
// (per_run: the granules a staging run holds), whatever the span, so a slot is copied, converted and
// drained by one thread for every tile: its own __pipeline_wait_prior orders them. (copy_span's
// split depends on the span's length, which changes for a short last tile.)
__device__ __forceinline__ int owned_slots(const Span& sp, const StageLayout& sl, int granule, int& per_run) {
  per_run = sl.pitch / granule;
  return sp.runs * per_run;
}

template <typename T>
__device__ __noinline__ void copy_span_owned(T* stage, const T* plane, const Geometry& g, const StageLayout& sl,
                                             const Span& sp, int granule, int tid, int nt) {
  int per_run;
  const int total = owned_slots(sp, sl, granule, per_run);
#pragma unroll 1
  for (int q = tid; q < total; q += nt) {
    const int r = q / per_run, k = q - r * per_run;
    if (k >= sp.granules) continue;
    const T* src = plane + sp.run_start(g, r) - sp.lead + k * granule;
    T* dst = stage + r * sl.pitch + k * granule;
    if (granule * sizeof(T) >= 4) __pipeline_memcpy_async(dst, src, granule * sizeof(T));
    else *dst = *src;
  }
}

// f(r, e, at) for every element of the granules copy_span_owned gives thread tid of nt: element e of
// run r, at index `at` of the staging plane.
template <typename F>
__device__ __forceinline__ void own_granules(const Span& sp, const StageLayout& sl, int granule, int tid, int nt,
                                             F f) {
  int per_run;
  const int total = owned_slots(sp, sl, granule, per_run);
  for (int q = tid; q < total; q += nt) {
    const int r = q / per_run, k = q - r * per_run;
    if (k >= sp.granules) continue;
    for (int u = 0; u < granule; ++u) {
      const int e = k * granule + u - sp.lead;
      if (e >= 0 && e < sp.len) f(r, e, r * sl.pitch + k * granule + u);
    }
  }
}

// The line (absolute) and cross position of element e of run r of a span (the inverse of Span::at).
__device__ __forceinline__ void run_coord(const Geometry& g, const Span& sp, int r, int e, int& s, int& i) {
  if (g.cross_contiguous) {
    s = sp.first + r;
    i = e;
  } else {
    i = r;
    s = g.reversed ? sp.first + sp.n - 1 - e : sp.first + e;
  }
}

// Split mode (backward). Slots: two of dh (the scan's input), two of d (dL/dh total, its output), three
// of the state each line read (0 at restarts; converted with tile p + 1, read by the drain of tile
// p - 1) and two of the weights; the helpers' asynchronous copies run two tiles ahead (scan inputs)
// and two tiles before the drain (lam, x).
template <typename T>
__global__ void __launch_bounds__(kMaxThreads, 1)
backward_split_kernel(const T* __restrict__ dh, const T* __restrict__ x, const T* __restrict__ lam,
                      const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
                      const T* __restrict__ h, T* __restrict__ dx, T* __restrict__ dlam, WeightGrads<T> dw,
                      Config cfg) {
  extern __shared__ __align__(16) unsigned char gspn_smem[];
  const Geometry& g = cfg.geo;
  const StageLayout sg(g, cfg.tile, cfg.max_granule);
  const BlockPlanes bp = block_planes(cfg);  // one channel: kt == 1
  const int N = g.N, tile = cfg.tile, plane = kSplitPlane;
  const int last = (g.L - 1) / tile * tile, tiles = last / tile + 1;  // tile p starts at line last - p * tile
  float* isl = reinterpret_cast<float*>(gspn_smem);  // [2] dh
  float* dsl = isl + 2 * plane;                      // [2] d
  float* hsl = dsl + 2 * plane;                      // [3] the state each line read (0 at restarts)
  float* wsl = hsl + 3 * plane;  // [2][3] a of the next position, b, c of the previous position
  T* stage_a = reinterpret_cast<T*>(wsl + 6 * plane);  // [2][5] dh, h, a, b, c (raw)
  T* stage_b = stage_a + 10 * sg.plane;                // [2][2] lam, x (raw)
  const T* weights[3] = {a + bp.w0, b + bp.w0, c + bp.w0};
  const bool scanner = threadIdx.y == 0;
  const int hid = split_helper(), nh = split_helpers();

  auto first_line_of = [&](int p) { return last - p * tile; };
  // Helpers: dh, h and the weights of tile p (nothing past the last tile), one commit group.
  auto fetch_scan_inputs = [&](int p) {
    if (p < tiles) {
      const int t0 = first_line_of(p), steps = tile_steps(cfg, t0);
      const Span sp(g, t0, steps, cfg.granule), sh = h_span(g, t0, steps, cfg.granule);
      T* st = stage_a + (p % 2) * 5 * sg.plane;
      copy_span_owned(st, dh + bp.x0, g, sg, sp, cfg.granule, hid, nh);
      copy_span_owned(st + sg.plane, h + bp.x0, g, sg, sh, cfg.granule, hid, nh);
      for (int m = 0; m < 3; ++m) copy_span_owned(st + (2 + m) * sg.plane, weights[m], g, sg, sp, cfg.granule, hid, nh);
    }
    __pipeline_commit();
  };
  // Helpers: lam and x of tile p, for its dx and dlam, one commit group.
  auto fetch_gates = [&](int p) {
    if (p < tiles) {
      const int t0 = first_line_of(p);
      const Span sp(g, t0, tile_steps(cfg, t0), cfg.granule);
      T* st = stage_b + (p % 2) * 2 * sg.plane;
      copy_span_owned(st, lam + bp.x0, g, sg, sp, cfg.granule, hid, nh);
      copy_span_owned(st + sg.plane, x + bp.x0, g, sg, sp, cfg.granule, hid, nh);
    }
    __pipeline_commit();
  };
  // Helpers: this thread's granules of tile p from the staging area into its working slots.
  auto convert = [&](int p) {
    const int t0 = first_line_of(p), steps = tile_steps(cfg, t0);
    const uint64_t restart = restart_mask(t0, cfg.chunk);
    const Span sp(g, t0, steps, cfg.granule), sh = h_span(g, t0, steps, cfg.granule);
    const T* st = stage_a + (p % 2) * 5 * sg.plane;
    float* ip = isl + (p % 2) * plane + kSplitLead;
    float* hp = hsl + (p % 3) * plane + kSplitLead;
    float* wp = wsl + (p % 2) * 3 * plane + kSplitLead;
    own_granules(sp, sg, cfg.granule, hid, nh, [&](int r, int e, int at) {
      int s, i;
      run_coord(g, sp, r, e, s, i);
      const int sl = s - t0, o = sl * kSplitPitch + i;
      const bool fresh = restarts_at(restart, sl);
      ip[o] = to_acc(st[at]);
      if (fresh) hp[o] = 0.f;
      // Line sl's weights as the line before reads them: a of position i + 1, b, c of position i - 1;
      // zero where line sl restarts (it does not read the line before), so the scan tests nothing.
      if (i > 0) wp[o - 1] = fresh ? 0.f : to_acc(st[2 * sg.plane + at]);
      if (i == N - 1) wp[o] = 0.f;
      wp[plane + o] = fresh ? 0.f : to_acc(st[3 * sg.plane + at]);
      if (i + 1 < N) wp[2 * plane + o + 1] = fresh ? 0.f : to_acc(st[4 * sg.plane + at]);
      if (i == 0) wp[2 * plane + o] = 0.f;
    });
    own_granules(sh, sg, cfg.granule, hid, nh, [&](int r, int e, int at) {
      int s, i;
      run_coord(g, sh, r, e, s, i);
      const int sl = s + 1 - t0;  // the line that reads h of line s
      if (!restarts_at(restart, sl)) hp[sl * kSplitPitch + i] = to_acc(st[sg.plane + at]);
    });
    const int pad = kSplitPitch - N;  // before and past the cross axis: no gradient, no weights
    for (int q = hid; q < steps * pad; q += nh) {
      const int o = q / pad * kSplitPitch + split_pad(q % pad, N) - kSplitLead;
      ip[o] = 0.f;
      for (int m = 0; m < 3; ++m) wp[m * plane + o] = 0.f;
    }
  };
  // Helpers: dx, dlam (this thread's granules of lam and x) and the weight gradients of tile p.
  auto drain = [&](int p) {
    const int t0 = first_line_of(p), steps = tile_steps(cfg, t0);
    const Span sp(g, t0, steps, cfg.granule);
    const T* st = stage_b + (p % 2) * 2 * sg.plane;
    const float* dp = dsl + (p % 2) * plane + kSplitLead;
    const float* hp = hsl + (p % 3) * plane + kSplitLead;
    own_granules(sp, sg, cfg.granule, hid, nh, [&](int r, int e, int at) {
      int s, i;
      run_coord(g, sp, r, e, s, i);
      const float dv = dp[(s - t0) * kSplitPitch + i];
      const int64_t o = bp.x0 + g.offset(s, i);
      store(dx + o, to_acc(st[at]) * dv);
      store(dlam + o, to_acc(st[sg.plane + at]) * dv);
    });
    for (int e = hid; e < steps * N; e += nh) {
      int sl, i;
      tile_coord(g, steps, e, sl, i);
      const int o = sl * kSplitPitch + i;
      const float dv = dp[o];
      const float sums[3] = {i > 0 ? dv * hp[o - 1] : 0.f, dv * hp[o], i + 1 < N ? dv * hp[o + 1] : 0.f};
      const int64_t q = bp.w0 + g.offset(t0 + sl, i);
      for (int m = 0; m < 3; ++m) {
        if (dw.partial) dw.partial[(bp.ct * 3 + m) * dw.plane_count + q] = sums[m];
        else store(dw.out[m] + q, sums[m]);
      }
    }
  };

  // Scanner: d of the line after at this lane's positions and that line's weights as a window (zero
  // after the last line of the scan). d[s] = dh[s] + T[s+1]^T d[s+1]: l, m, r are the line after's
  // c (shifted right), b, a (shifted left), planes 2, 1, 0 of the weight slot.
  const int i0 = 4 * static_cast<int>(threadIdx.x);
  Quad dn = {{0.f, 0.f, 0.f, 0.f}};
  Window wn = {{dn, dn, dn}, {0.f, 0.f, 0.f}, {0.f, 0.f, 0.f}};
  auto scan = [&](int p) {
    const int steps = tile_steps(cfg, first_line_of(p)), top = (steps - 1) * kSplitPitch + kSplitLead + i0;
    const float* il = isl + (p % 2) * plane + top;
    float* dl = dsl + (p % 2) * plane + top;
    const float* wl = wsl + (p % 2) * 3 * plane + 2 * plane + top;
    auto two_lines = [&] {  // lines sl and sl - 1, from top down
      float left, right;
      const Quad m = first_line(il, wn, dn, left, right);
      store_quad(dl, m);
      dn = second_line(il - kSplitPitch, load_weights(wl, -kSplitPlane), m, left, right);
      store_quad(dl - kSplitPitch, dn);
      wn = load_window(wl - kSplitPitch, -kSplitPlane);
      il -= 2 * kSplitPitch;
      dl -= 2 * kSplitPitch;
      wl -= 2 * kSplitPitch;
    };
    scan_tile(steps, two_lines, [&] {  // line 0 alone
      float left, right;
      dn = first_line(il, wn, dn, left, right);
      store_quad(dl, dn);
      wn = load_window(wl, -kSplitPlane);
    });
  };

  if (hid >= 0) {  // commit groups follow one pattern: A(p + 1), B(p - 1), A(p + 2), B(p) before tile p
    fetch_scan_inputs(0);
    __pipeline_commit();
    fetch_scan_inputs(1);
    __pipeline_commit();
  }
  for (int p = -1; p <= tiles; ++p) {
    if (scanner) {
      if (p >= 0 && p < tiles) scan(p);
    } else if (hid >= 0) {
      __pipeline_wait_prior(3);  // this thread's copies of the scan inputs of tile p + 1
      if (p + 1 < tiles) convert(p + 1);
      fetch_scan_inputs(p + 3);
      __pipeline_wait_prior(3);  // this thread's copies of lam and x of tile p - 1
      if (p >= 1) drain(p - 1);
      fetch_gates(p + 1);
    }
    __syncthreads();  // tile p scanned, tile p + 1 filled, tile p - 1 drained
  }
  __pipeline_wait_prior(0);  // only empty groups are left
}

// Split mode (forward): the same roles as backward_split_kernel. The helpers convert tile p + 1 (lam * x
// and the three weights, zero where a line restarts, at a of position 0 and c of the last position,
// and around the cross axis) and write out h of tile p - 1. Slots: two of lam * x (the scan's input),
// two of h (its output), two of the weights; the helpers' copies run three tiles ahead.
template <typename T>
__global__ void __launch_bounds__(kMaxThreads, 1)
forward_split_kernel(const T* __restrict__ x, const T* __restrict__ lam, const T* __restrict__ a,
                     const T* __restrict__ b, const T* __restrict__ c, T* __restrict__ h, Config cfg) {
  extern __shared__ __align__(16) unsigned char gspn_smem[];
  const Geometry& g = cfg.geo;
  const StageLayout sg(g, cfg.tile, cfg.max_granule);
  const BlockPlanes bp = block_planes(cfg);  // one channel: kt == 1
  const int N = g.N, tile = cfg.tile, plane = kSplitPlane;
  const int tiles = (g.L + tile - 1) / tile;  // tile p starts at line p * tile
  float* vsl = reinterpret_cast<float*>(gspn_smem);  // [2] lam * x
  float* hsl = vsl + 2 * plane;                      // [2] h
  float* wsl = hsl + 2 * plane;                      // [2][3] a, b, c
  T* stage = reinterpret_cast<T*>(wsl + 6 * plane);  // [kSplitForwardStages][5] lam, x, a, b, c (raw)
  const T* inputs[5] = {lam + bp.x0, x + bp.x0, a + bp.w0, b + bp.w0, c + bp.w0};
  const bool scanner = threadIdx.y == 0;
  const int hid = split_helper(), nh = split_helpers();

  // Helpers: the inputs of tile p (nothing past the last tile), one commit group.
  auto fetch = [&](int p) {
    if (p < tiles) {
      const int t0 = p * tile;
      const Span sp(g, t0, tile_steps(cfg, t0), cfg.granule);
      T* st = stage + (p % kSplitForwardStages) * 5 * sg.plane;
      for (int m = 0; m < 5; ++m) copy_span_owned(st + m * sg.plane, inputs[m], g, sg, sp, cfg.granule, hid, nh);
    }
    __pipeline_commit();
  };
  // Helpers: this thread's staging slots of tile p into its working slots.
  auto convert = [&](int p) {
    const int t0 = p * tile, steps = tile_steps(cfg, t0);
    const uint64_t restart = restart_mask(t0, cfg.chunk);
    const Span sp(g, t0, steps, cfg.granule);
    const T* st = stage + (p % kSplitForwardStages) * 5 * sg.plane;
    float* vp = vsl + (p % 2) * plane + kSplitLead;
    float* wp = wsl + (p % 2) * 3 * plane + kSplitLead;
    own_granules(sp, sg, cfg.granule, hid, nh, [&](int r, int e, int at) {
      int s, i;
      run_coord(g, sp, r, e, s, i);
      const bool fresh = restarts_at(restart, s - t0);
      const int o = (s - t0) * kSplitPitch + i;
      vp[o] = to_acc(st[at]) * to_acc(st[sg.plane + at]);
      wp[o] = fresh || i == 0 ? 0.f : to_acc(st[2 * sg.plane + at]);
      wp[plane + o] = fresh ? 0.f : to_acc(st[3 * sg.plane + at]);
      wp[2 * plane + o] = fresh || i + 1 == N ? 0.f : to_acc(st[4 * sg.plane + at]);
    });
    const int pad = kSplitPitch - N;  // before and past the cross axis: a zero state
    for (int q = hid; q < steps * pad; q += nh) {
      const int o = q / pad * kSplitPitch + split_pad(q % pad, N) - kSplitLead;
      vp[o] = 0.f;
      for (int m = 0; m < 3; ++m) wp[m * plane + o] = 0.f;
    }
  };
  // Helpers: h of tile p.
  auto drain = [&](int p) {
    const int t0 = p * tile, steps = tile_steps(cfg, t0);
    const float* hp = hsl + (p % 2) * plane + kSplitLead;
    for (int e = hid; e < steps * N; e += nh) {
      int sl, i;
      tile_coord(g, steps, e, sl, i);
      store(h + bp.x0 + g.offset(t0 + sl, i), hp[sl * kSplitPitch + i]);
    }
  };

  // Scanner: h of the line before at this lane's positions (zero before the first line).
  const int i0 = 4 * static_cast<int>(threadIdx.x);
  Quad hn = {{0.f, 0.f, 0.f, 0.f}};
  auto scan = [&](int p) {
    const int steps = tile_steps(cfg, p * tile);
    const float* vl = vsl + (p % 2) * plane + kSplitLead + i0;
    float* hl = hsl + (p % 2) * plane + kSplitLead + i0;
    const float* wl = wsl + (p % 2) * 3 * plane + kSplitLead + i0;
    auto two_lines = [&] {
      float left, right;
      const Quad m = first_line(vl, load_window(wl, kSplitPlane), hn, left, right);
      store_quad(hl, m);
      hn = second_line(vl + kSplitPitch, load_weights(wl + kSplitPitch, kSplitPlane), m, left, right);
      store_quad(hl + kSplitPitch, hn);
      vl += 2 * kSplitPitch;
      hl += 2 * kSplitPitch;
      wl += 2 * kSplitPitch;
    };
    scan_tile(steps, two_lines, [&] {
      float left, right;
      hn = first_line(vl, load_window(wl, kSplitPlane), hn, left, right);
      store_quad(hl, hn);
    });
  };

  if (hid >= 0)  // commit groups: A(p + 1) .. A(p + kSplitForwardStages) outstanding before tile p
    for (int p = 0; p < kSplitForwardStages; ++p) fetch(p);
  for (int p = -1; p <= tiles; ++p) {
    if (scanner) {
      if (p >= 0 && p < tiles) scan(p);
    } else if (hid >= 0) {
      __pipeline_wait_prior(kSplitForwardStages - 1);  // this thread's copies of tile p + 1
      if (p + 1 < tiles) convert(p + 1);
      fetch(p + 1 + kSplitForwardStages);
      if (p >= 1) drain(p - 1);
    }
    __syncthreads();  // forward: tile p scanned, tile p + 1 filled, tile p - 1 written out
  }
  __pipeline_wait_prior(0);  // only empty groups are left
}

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

// ---------------------------------------------------------------------------------------------
// Host side: choosing the tiling, launching.

struct Plan {
  Config cfg;
  int threads_x, threads_y;  // the block: cross positions (32 in warp mode) x channels (or more, see plan_one)
  int64_t blocks;
  size_t smem;
};

// Shared bytes of a block: the working tiles and carries (accumulator type), then, for ring plans,
// the staging area (input type): forward lam, x, a, b, c; backward dh, h, a, b, c, lam, x.
inline size_t shared_bytes(const Geometry& g, int kt, int tile, bool backward, bool ring, size_t acc,
                           size_t elem) {
  const size_t plane = static_cast<size_t>(TileLayout(g, tile).plane), n = static_cast<size_t>(g.N);
  const size_t work = backward ? (2 * kt + 3) * plane + (kt + 3) * n : (kt + 3) * plane + kt * n;
  const size_t staged = ring ? static_cast<size_t>(backward ? 4 * kt + 3 : 2 * kt + 3) *
                                   StageLayout(g, tile, elem == 2 ? 2 : 1).plane
                             : 0;
  return work * acc + staged * elem;
}

// Split mode, backward: two slots of dh, two of d, three of h and two of the weights (float), then two
// stages of the scan inputs (dh, h, a, b, c) and two of lam and x (input type); forward: two slots of
// lam * x, two of h and two of the weights (float), then kSplitForwardStages stages of lam, x, a, b, c
// (input type).
inline size_t split_shared_bytes(const Geometry& g, int tile, bool backward, size_t elem) {
  const size_t floats = static_cast<size_t>(backward ? 13 : 10) * kSplitPlane;
  const size_t stages = backward ? 2 * 5 + 2 * 2 : kSplitForwardStages * 5;
  return floats * sizeof(float) + stages * StageLayout(g, tile, elem == 2 ? 2 : 1).plane * elem;
}

// Channel tile, then scan tile. Ring plans first: the largest channel tile (at most 32, 16 in warp
// mode, split down to kMinSpreadTile while the grid has fewer than two blocks per SM) whose shared
// memory fits the budget (the whole opt-in when the grid has at most one block per SM) with at
// least 2 steps per tile; else one channel with the longest tile the
// device allows. Cross axes too long for a ring take a plan without one (one channel). The forward
// takes only cross axes the backward takes too, so a model that runs inference can also train.
inline cudaError_t plan_one(const Problem& p, size_t acc_size, size_t elem_size, bool backward, int optin, int sms,
                            Plan* plan) {
  const size_t limit = static_cast<size_t>(optin);
  Config& cfg = plan->cfg;
  cfg.geo = make_geometry(p);
  cfg.C = p.C;
  cfg.G = p.G;
  cfg.K = p.C / p.G;
  const int L = cfg.geo.L;
  cfg.chunk = p.chunk >= L ? 0 : static_cast<int>(p.chunk);
  cfg.warp = cfg.geo.N <= kWarpCross;
  cfg.split = false;
  cfg.max_granule = elem_size == 2 ? 2 : 1;
  cfg.granule = 1;
  auto fits = [&](int kt, int tile, bool ring, size_t bytes) {
    return shared_bytes(cfg.geo, kt, tile, backward, ring, acc_size, elem_size) <= bytes;
  };
  const int cap = cfg.warp ? kWarpChannelTile : kMaxChannelTile;
  int widest = static_cast<int>(cfg.K < cap ? cfg.K : cap);
  while (widest > kMinSpreadTile && p.B * p.G * ((cfg.K + widest - 1) / widest) < 2 * sms) widest = (widest + 1) / 2;
  // Two blocks per SM need the budget; a grid of at most one block per SM may take the whole opt-in.
  const bool sparse = p.B * p.G * ((cfg.K + widest - 1) / widest) <= sms;
  const size_t budget = sparse || limit < kSharedBudget ? limit : kSharedBudget;
  // Split mode: one channel per block on a grid of at most one block per SM, cross axes of
  // kSplitMinCross .. kSplitCross (float accumulation), where its working tiles fit.
  if (acc_size == sizeof(float) && sparse && widest == 1 && cfg.geo.N >= kSplitMinCross && cfg.geo.N <= kSplitCross) {
    const int tile = kSplitTile < L ? kSplitTile : L;
    const size_t bytes = split_shared_bytes(cfg.geo, tile, backward, elem_size);
    if (bytes <= limit) {
      cfg.kt = 1;
      cfg.tile = tile;
      cfg.ring = true;
      cfg.warp = false;
      cfg.split = true;
      cfg.channel_tiles = cfg.K;
      plan->blocks = p.B * p.G * cfg.K;
      plan->threads_x = 32;
      plan->threads_y = kSplitRows;
      plan->smem = bytes;
      return cudaSuccess;
    }
  }
  bool found = false;
  auto take = [&](int kt, int tile, bool ring) {
    cfg.kt = kt;
    cfg.tile = tile;
    cfg.ring = ring;
    found = true;
  };
  for (int kt = widest; !found; kt = (kt + 1) / 2) {
    for (int steps = 32; steps >= 2 && !found; steps /= 2) {
      const int tile = steps < L ? steps : L;
      if (fits(kt, tile, true, budget)) take(kt, tile, true);
    }
    if (kt == 1) break;
  }
  for (int ring = 1; ring >= 0 && !found; --ring) {
    for (int steps = 32; steps >= 1 && !found; steps /= 2) {
      const int tile = steps < L ? steps : L;
      if (fits(1, tile, ring == 1, limit)) take(1, tile, ring == 1);
    }
  }
  if (!found) return cudaErrorInvalidValue;  // the cross axis is too long for one block's shared memory

  cfg.channel_tiles = (cfg.K + cfg.kt - 1) / cfg.kt;
  plan->blocks = p.B * p.G * cfg.channel_tiles;
  if (plan->blocks > INT32_MAX) return cudaErrorInvalidConfiguration;
  const int n32 = (cfg.geo.N + 31) / 32 * 32;
  plan->threads_x = cfg.warp ? 32 : n32 < kMaxThreads ? n32 : kMaxThreads;
  const int rows = cfg.warp ? kWarpChannelTile : kMaxThreads / plan->threads_x;
  plan->threads_y = cfg.kt < rows ? cfg.kt : rows;
  // A grid of at most one block per SM leaves the SMs' other threads idle: such blocks get rows
  // beyond their channels (up to kTileShare tile elements a thread), which scan nothing but share
  // the copies, conversions, write-outs and weight-gradient sums of every tile.
  if (plan->blocks <= sms) {
    const int per_row = plan->threads_x * kTileShare;
    const int wanted = (cfg.tile * cfg.geo.N + per_row - 1) / per_row;
    const int helped = wanted < rows ? wanted : rows;
    if (helped > plan->threads_y) plan->threads_y = helped;
  }
  plan->smem = shared_bytes(cfg.geo, cfg.kt, cfg.tile, backward, cfg.ring, acc_size, elem_size);
  return cudaSuccess;
}

inline cudaError_t make_plan(const Problem& p, size_t acc_size, size_t elem_size, bool backward, Plan* plan) {
  if (p.B <= 0 || p.C <= 0 || p.G <= 0 || p.H <= 0 || p.W <= 0 || p.C % p.G != 0 || p.chunk < 0)
    return cudaErrorInvalidValue;
  if (p.H > INT32_MAX / 64 || p.W > INT32_MAX / 64) return cudaErrorInvalidValue;
  int device = 0, optin = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return err;
  err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  if (!backward) {
    Plan reverse;
    err = plan_one(p, acc_size, elem_size, true, optin, sms, &reverse);
    if (err != cudaSuccess) return err;
  }
  return plan_one(p, acc_size, elem_size, backward, optin, sms, plan);
}

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
