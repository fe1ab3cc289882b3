// The forward and backward kernels of split mode: one scanning warp, helper warps for the tile
// work (see below and the overview at the top of propagate_kernels.cu).
#pragma once

#include "device_helpers.cuh"
#include "weight_grads.cuh"

namespace gspn_cuda {
namespace detail {

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

}  // namespace detail
}  // namespace gspn_cuda
