// What the host planner (planner.cuh) chooses and every kernel reads: the limits of a launch
// (these constants are mirrored by gspn/ops/launch_plan.py, and tests/ops/test_launch_plan.py reads
// them from this file), the accumulator type, the scan frame (Geometry), the shared-memory layouts of
// the working tiles and the staging area, and a block's Config.
#pragma once

#include <cstddef>
#include <cstdint>

#include "propagate_kernels.cuh"

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

}  // namespace detail
}  // namespace gspn_cuda
