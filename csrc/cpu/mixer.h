// What the mixer op's binding and its kernels share: the directions, the layout of the parameter
// planes and the problem description (docs/mixer.md).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "scan_common.h"

namespace gspn_cpu {
namespace {

constexpr int kDirections = 4;  // lr, rl, tb, bt

// Direction k scans L lines of N positions; line s of the scan is line `line(s)` of the line-major
// layout (the plane for vertical scans, its transpose for horizontal ones).
struct Direction {
  bool horizontal, reversed;
  int64_t L, N;
  int64_t line(int64_t s) const { return reversed ? L - 1 - s : s; }
};

inline Direction direction(int k, int64_t H, int64_t W) {
  const bool horizontal = k < 2;
  return {horizontal, k == 1 || k == 3, horizontal ? W : H, horizontal ? H : W};
}

// Rows of one direction's block of Q parameter planes.
struct Layout {
  int64_t C, G, Q;
  bool skip;
  int64_t a(int64_t g) const { return g; }
  int64_t b(int64_t g) const { return G + g; }
  int64_t c(int64_t g) const { return 2 * G + g; }
  int64_t lam(int64_t ch) const { return 3 * G + ch; }
  int64_t u(int64_t ch) const { return 3 * G + C + ch; }
  int64_t d(int64_t ch) const { return 3 * G + 2 * C + ch; }
};

// With proj, the backward's work items: blocks of groups, each with all its units, summing into its
// own slice of dz and (its groups' rows alone) straight into dproj; several items per thread, so
// that a thread slowed down by other processes holds up no one, the sums in a fixed order.
inline int64_t proj_slices(const Units& units) { return std::min<int64_t>(units.G, 8 * at::get_num_threads()); }

// Everything a unit needs to know, shared by all units.
template <typename T>
struct Problem {
  int64_t B, C, H, W, plane, chunk, R;
  Layout layout;
  const T *x, *params, *merge, *proj;  // proj null: params is the full map, else the proxy z
  const T* gy;                         // backward only
  const T* states;                     // saved hidden states (B, 4, C, H, W) or null
};

// Where the backward writes. dparams: the parameter gradients when there is no proj; dz (one slice
// per block of groups) and dproj when there is; dlogits: (parts, B, 4, 3G, H, W) when groups are
// split in parts.
template <typename T>
struct Outputs {
  T* dx;
  T* dparams;
  double* dmerge;  // (units, 4)
  T* dz;           // (slices, B, R, H, W)
  double* dproj;   // (4Q, R)
  T* dlogits;
};

}  // namespace
}  // namespace gspn_cpu
