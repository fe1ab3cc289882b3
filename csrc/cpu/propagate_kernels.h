// The single-direction scan on CPU, forward and hand-written backward (docs/design.md §1.1, 1.5); a
// kernel header, compiled per instruction set (per_isa.h).
//
// Within a work unit the scan advances block by block with the channels interleaved, so each block
// of weights is loaded once for all the channels that share it and the weight gradients are summed
// over those channels without any write contention.

#include "transpose.h"
#include "scan_lines.h"
#include "propagate_blocks.h"

// ---- forward ----

template <typename T>
struct ForwardState {  // one channel's previous line, and room for the next
  explicit ForwardState(int64_t n) : prev(n), cur(n) {}
  Padded<T> prev, cur;
};

// Scan `count` lines, the first being scan step s0; line t of each operand starts at p + t * stride.
// lam null: x already holds lam * x.
template <typename T>
void forward_lines(const T* x, const T* lam, const T* a, const T* b, const T* c, T* h, int64_t stride,
                   int64_t s0, int64_t count, int64_t N, int64_t chunk, ForwardState<T>& st) {
  for (int64_t t = 0; t < count; ++t) {
    if (restarts(s0 + t, chunk)) st.prev.clear();
    const int64_t o = t * stride;
    T* cur = st.cur.data() + 1;
    if (lam) forward_line<true, true>(x + o, lam + o, a + o, b + o, c + o, st.prev.data(), cur, h + o, N);
    else forward_line<false, true>(x + o, lam, a + o, b + o, c + o, st.prev.data(), cur, h + o, N);
    std::swap(st.prev.v, st.cur.v);
  }
}

// One unit: `channels` channel planes from x, lam, h, all using the weight planes a, b, c.
template <typename T>
void forward_unit(const T* x, const T* lam, const T* a, const T* b, const T* c, T* h, int64_t channels,
                  int64_t plane, const Geometry& g, int64_t chunk, std::vector<ForwardState<T>>& states,
                  Tiles<T>& tiles) {
  const int64_t stride = g.in_place() ? g.step : tiles.ld;
  for (int64_t s0 = 0; s0 < g.L; s0 += kBlock<T>) {
    const int64_t count = std::min(kBlock<T>, g.L - s0);
    const T* la = lines(a, g, s0, count, tiles[0], tiles.ld);
    const T* lb = lines(b, g, s0, count, tiles[1], tiles.ld);
    const T* lc = lines(c, g, s0, count, tiles[2], tiles.ld);
    for (int64_t k = 0; k < channels; ++k) {
      const int64_t o = k * plane;
      const T* lx = x + o + g.first + s0 * g.step;  // in place
      const T* ll = lam + o + g.first + s0 * g.step;
      if (!g.in_place()) {  // lam * x, multiplied before the transpose
        gather<true>(x + o, g, s0, count, tiles[3], tiles.ld, lam + o);
        lx = tiles[3];
        ll = nullptr;
      }
      T* lh = output_lines(h + o, g, s0, tiles[5]);
      forward_lines(lx, ll, la, lb, lc, lh, stride, s0, count, g.N, chunk, states[k]);
      if (!g.in_place()) scatter(lh, tiles.ld, g, s0, count, h + o);
    }
  }
}

// ---- backward ----

template <typename T>
struct BackwardState {  // one channel's gradient flowing back, and scratch lines
  explicit BackwardState(int64_t n) : flow(n), hprev(n), d(n) {}
  Flow<T> flow;
  Padded<T> hprev, d;
};

// Scan `count` lines backwards, the first being scan step s0; line t of each operand starts at
// p + t * stride. The line of h before line 0 is read unless s0 restarts. The weight gradients are
// added to what is there when `accumulate`.
template <typename T>
void backward_lines(const T* dh, const T* x, const T* lam, const T* a, const T* b, const T* c, const T* h,
                    T* dx, T* dlam, T* da, T* db, T* dc, bool accumulate, int64_t stride, int64_t s0,
                    int64_t count, int64_t N, int64_t chunk, BackwardState<T>& st) {
  for (int64_t t = count - 1; t >= 0; --t) {
    const int64_t o = t * stride;
    const bool restart = restarts(s0 + t, chunk);
    if (restart) st.hprev.clear();
    else std::copy(h + o - stride, h + o - stride + N, st.hprev.data() + 1);
    T* d = st.d.data() + 1;
    (accumulate ? backward_line<true, true, T> : backward_line<false, true, T>)(
        dh + o, x + o, lam + o, st.flow.a.data(), st.flow.b.data(), st.flow.c.data(), st.hprev.data(), d, dx + o,
        dlam + o, da + o, db + o, dc + o, N);
    if (restart) {  // the line before this one ends a chunk
      st.flow.stop();
    } else {
      flow_line(a + o, b + o, c + o, (const T*)d, st.flow.a.data(), st.flow.b.data(), st.flow.c.data(), N);
    }
  }
}

// One unit: like forward_unit, and the weight gradients summed over its channels into da, db, dc.
template <typename T>
void backward_unit(const T* dh, const T* x, const T* lam, const T* a, const T* b, const T* c, const T* h, T* dx,
                   T* dlam, T* da, T* db, T* dc, int64_t channels, int64_t plane, const Geometry& g,
                   int64_t chunk, std::vector<BackwardState<T>>& states, Tiles<T>& tiles) {
  const int64_t stride = g.in_place() ? g.step : tiles.ld;
  for (int64_t k = 0; k < channels; ++k) states[k].flow.stop();  // nothing flows into the last line
  for (int64_t s0 = (g.L - 1) / kBlock<T> * kBlock<T>; s0 >= 0; s0 -= kBlock<T>) {
    const int64_t count = std::min(kBlock<T>, g.L - s0);
    const T* la = lines(a, g, s0, count, tiles[0], tiles.ld);
    const T* lb = lines(b, g, s0, count, tiles[1], tiles.ld);
    const T* lc = lines(c, g, s0, count, tiles[2], tiles.ld);
    T* lda = output_lines(da, g, s0, tiles[3]);
    T* ldb = output_lines(db, g, s0, tiles[4]);
    T* ldc = output_lines(dc, g, s0, tiles[5]);
    for (int64_t k = 0; k < channels; ++k) {
      const int64_t o = k * plane;
      const T* ldh = lines(dh + o, g, s0, count, tiles[6], tiles.ld);
      const T* lx = lines(x + o, g, s0, count, tiles[7], tiles.ld);
      const T* ll = lines(lam + o, g, s0, count, tiles[8], tiles.ld);
      T* ldx = output_lines(dx + o, g, s0, tiles[9]);
      T* ldl = output_lines(dlam + o, g, s0, tiles[10]);
      // h's tile (the last, one line longer) starts with the line before the block, if there is one
      const T* lh = lines(h + o, g, s0, count, tiles[11] + tiles.ld, tiles.ld);
      if (!g.in_place() && s0 > 0) gather(h + o, g, s0 - 1, 1, tiles[11], tiles.ld);
      backward_lines(ldh, lx, ll, la, lb, lc, lh, ldx, ldl, lda, ldb, ldc, k > 0, stride, s0, count, g.N, chunk,
                     states[k]);
      if (!g.in_place()) {
        scatter(ldx, tiles.ld, g, s0, count, dx + o);
        scatter(ldl, tiles.ld, g, s0, count, dlam + o);
      }
    }
    if (!g.in_place()) {
      scatter(lda, tiles.ld, g, s0, count, da);
      scatter(ldb, tiles.ld, g, s0, count, db);
      scatter(ldc, tiles.ld, g, s0, count, dc);
    }
  }
}

// ---- whole ops ----

template <typename T>
void forward_all(const T* px, const T* pl, const T* pa, const T* pb, const T* pc, T* ph, const Units& units,
                 int64_t plane, const Geometry& geo, int64_t chunk) {
  const int64_t C = units.G * units.K;
  at::parallel_for(0, units.count(), 1, [&](int64_t begin, int64_t end) {
    std::vector<ForwardState<T>> states(units.max_channels(), ForwardState<T>(geo.N));
    Tiles<T> tiles(6, geo);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t xo = (units.batch(u) * C + units.first(u)) * plane, wo = units.pair(u) * plane;
      forward_unit(px + xo, pl + xo, pa + wo, pb + wo, pc + wo, ph + xo, units.channels(u), plane, geo, chunk, states,
                   tiles);
    }
  });
}

// Unit u writes its weight gradients to plane u (of parts * B * G).
template <typename T>
void backward_all(const T* pdh, const T* px, const T* pl, const T* pa, const T* pb, const T* pc, const T* ph, T* pdx,
                  T* pdl, T* pda, T* pdb, T* pdc, const Units& units, int64_t plane, const Geometry& geo,
                  int64_t chunk) {
  const int64_t C = units.G * units.K;
  at::parallel_for(0, units.count(), 1, [&](int64_t begin, int64_t end) {
    std::vector<BackwardState<T>> states(units.max_channels(), BackwardState<T>(geo.N));
    Tiles<T> tiles(12, geo);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t xo = (units.batch(u) * C + units.first(u)) * plane, wo = units.pair(u) * plane, go = u * plane;
      backward_unit(pdh + xo, px + xo, pl + xo, pa + wo, pb + wo, pc + wo, ph + xo, pdx + xo, pdl + xo, pda + go,
                    pdb + go, pdc + go, units.channels(u), plane, geo, chunk, states, tiles);
    }
  });
}
