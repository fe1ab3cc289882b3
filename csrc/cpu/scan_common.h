// What the CPU scans share (docs/design.md §1.1, 1.5): chunk restarts, the split of the work into
// units, and lines padded with a zero at each end.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace gspn_cpu {
namespace {

// Line s of a scan reads a zero state: the scan starts there or a chunk restarts there.
inline bool restarts(int64_t s, int64_t chunk) { return s == 0 || (chunk > 0 && s % chunk == 0); }

// Work units (part, b, g): part p of weight group g of batch item b owns a contiguous share of the
// group's K channels. Groups are split in parts only when there are fewer (b, g) pairs than threads.
struct Units {
  Units(int64_t B, int64_t G, int64_t K)
      : G(G), K(K), pairs(B * G), parts(std::min<int64_t>(K, (at::get_num_threads() + pairs - 1) / pairs)) {}
  int64_t count() const { return parts * pairs; }
  int64_t pair(int64_t u) const { return u % pairs; }  // b * G + g, the index of the unit's weight plane
  int64_t batch(int64_t u) const { return pair(u) / G; }
  int64_t group(int64_t u) const { return pair(u) % G; }
  int64_t part(int64_t u) const { return u / pairs; }
  int64_t first(int64_t u) const { return group(u) * K + part(u) * K / parts; }  // its first channel of x
  int64_t channels(int64_t u) const { return (part(u) + 1) * K / parts - part(u) * K / parts; }
  int64_t max_channels() const { return (K + parts - 1) / parts; }
  int64_t index(int64_t part, int64_t b, int64_t g) const { return part * pairs + b * G + g; }
  int64_t G, K, pairs, parts;
};

// A line of n values with a zero on either side, so that the line kernels need no boundary branch:
// element i is at data()[i + 1].
template <typename T>
struct Padded {
  explicit Padded(int64_t n) : v(n + 2, T(0)) {}
  T* data() { return v.data(); }
  const T* data() const { return v.data(); }
  void clear() { std::fill(v.begin() + 1, v.end() - 1, T(0)); }
  std::vector<T> v;
};

// What flows back from a line of the reverse scan to the line before it, per weight: the line's
// weights times its state gradient (flow_line writes them, backward_line reads them).
template <typename T>
struct Flow {
  explicit Flow(int64_t n) : a(n), b(n), c(n) {}
  void stop() {  // the line before a restart receives nothing
    a.clear();
    b.clear();
    c.clear();
  }
  Padded<T> a, b, c;
};

}  // namespace
}  // namespace gspn_cpu
