// Host side: choosing the tiling of a launch (block, grid, shared memory, channel and scan tiles,
// mode) for a problem on the current device. gspn/ops/launch_plan.py mirrors it in Python.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "launch_config.cuh"
#include "propagate_kernels.cuh"

namespace gspn_cuda {
namespace detail {

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

}  // namespace detail
}  // namespace gspn_cuda
