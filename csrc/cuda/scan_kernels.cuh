// The forward and backward kernels of block mode and warp mode (all plans but split mode): one
// block per (batch, weight group, tile of channels), the tile's channels scanned in parallel; see
// the overview at the top of propagate_kernels.cu.
#pragma once

#include "device_helpers.cuh"
#include "weight_grads.cuh"

namespace gspn_cuda {
namespace detail {

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

}  // namespace detail
}  // namespace gspn_cuda
