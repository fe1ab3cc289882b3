// The single-direction scan's view of a direction (docs/design.md §1.1): every direction is the "lr"
// scan seen through index arithmetic.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <string_view>

namespace gspn_cpu {
namespace {

// Line s of the scan (s = 0 where the scan starts) begins at `first + s * step` inside an (H, W)
// plane, and its N positions lie `cross` apart.
struct Geometry {
  int64_t L, N, first, step, cross;
  bool in_place() const { return cross == 1; }  // lines are rows: the kernels read them where they are
};

inline Geometry geometry(std::string_view direction, int64_t H, int64_t W) {
  if (direction == "lr") return {W, H, 0, 1, W};
  if (direction == "rl") return {W, H, W - 1, -1, W};
  if (direction == "tb") return {H, W, 0, W, 1};
  if (direction == "bt") return {H, W, (H - 1) * W, -W, 1};
  TORCH_CHECK(false, "gspn_cpu: unknown direction ", direction);
}

}  // namespace
}  // namespace gspn_cpu
