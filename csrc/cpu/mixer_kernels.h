// The GSPN mixer's propagation on CPU, four directions fused (docs/mixer.md; docs/design.md §1.2-1.5):
//
//   y = sum_k merge[k] * (u_k * h_k + d_k * x)
//
// with h_k the line scan of direction k over lam_k * x under the weights normalised from the logits
// a~, b~, c~. A kernel header, compiled per instruction set (per_isa.h).
//
// The threads take the work units one at a time from a shared counter, so a thread slowed down by
// other processes on the machine holds up no one. A unit walks the four directions in turn with
// everything it touches in per-thread scratch of a few planes. Vertical scans ("tb", "bt") run on
// the planes in place, a line being a row; horizontal ones ("lr", "rl") on transposed scratch
// copies, a line being a column. The backward recomputes the normalised weights, and the hidden
// states too unless the forward saved them, then runs the reverse scan and writes every gradient in
// the layout of its input (or, with proj, contracts the parameter gradients into dz and dproj, see
// proj_slices) without any zero-filled or stacked temporary.

#include "transpose.h"
#include "scan_lines.h"
#include "mixer_normalize.h"
#include "mixer_projection.h"

// ---- the scans on line-major arrays (line l of N values at l * N; hidden lines padded: l * (N + 2)) ----

template <typename T>
void scan_forward(const Direction& dir, int64_t chunk, const T* v, const T* wa, const T* wb, const T* wc, T* h,
                  const T* zero) {
  const int64_t N = dir.N, ld = N + 2;
  for (int64_t s = 0; s < dir.L; ++s) {
    const int64_t l = dir.line(s);
    const T* prev = restarts(s, chunk) ? zero : h + dir.line(s - 1) * ld;
    T* cur = h + l * ld;
    cur[0] = T(0);
    cur[N + 1] = T(0);
    forward_line<false, false, T>(v + l * N, nullptr, wa + l * N, wb + l * N, wc + l * N, prev, cur + 1, nullptr, N);
  }
}

// The reverse scan: the state gradient d, and the weight gradients added to dwa, dwb, dwc.
template <typename T>
void scan_backward(const Direction& dir, int64_t chunk, const T* g, const T* wa, const T* wb, const T* wc,
                   const T* h, const T* zero, T* d, T* dwa, T* dwb, T* dwc, Flow<T>& flow) {
  const int64_t N = dir.N, ld = N + 2;
  flow.stop();
  for (int64_t s = dir.L - 1; s >= 0; --s) {
    const int64_t o = dir.line(s) * N;
    const bool restart = restarts(s, chunk);
    const T* hprev = restart ? zero : h + dir.line(s - 1) * ld;
    backward_line<true, false, T>(g + o, nullptr, nullptr, flow.a.data(), flow.b.data(), flow.c.data(), hprev,
                                  d + o, nullptr, nullptr, dwa + o, dwb + o, dwc + o, N);
    if (restart) {  // the line before ends a chunk
      flow.stop();
    } else {
      flow_line(wa + o, wb + o, wc + o, (const T*)d + o, flow.a.data(), flow.b.data(), flow.c.data(), N);
    }
  }
}

// ---- per-thread scratch and the planes of one unit ----

template <typename T>
struct Work {
  Work(int64_t H, int64_t W, int64_t slots, bool backward)
      : plane(H * W), padded(std::max(H * (W + 2), W * (H + 2))),
        wa(plane), wb(plane), wc(plane), v(plane), h(padded), t0(plane), t1(plane), t2(plane), zero(std::max(H, W)),
        d(backward ? plane : 0), dwa(backward ? plane : 0), dwb(backward ? plane : 0), dwc(backward ? plane : 0),
        flow(backward ? std::max(H, W) : 0), acc(W), slots(slots * plane), dslots(backward ? slots * plane : 0) {
    if (backward) {
      for (auto& v : sig) v.resize(plane);
    }
  }
  int64_t plane, padded;
  std::vector<T> wa, wb, wc;  // line-major normalised weights of the current direction
  std::vector<T> v;           // line-major lam * x, or the gated output gradient
  std::vector<T> h;           // line-major padded hidden state of the current channel
  std::vector<T> t0, t1, t2;  // planes in the input layout
  Padded<T> zero;             // the state before a scan or chunk start
  std::vector<T> d, dwa, dwb, dwc;
  Flow<T> flow;
  std::vector<T> acc;            // one row of partial sums
  std::vector<T> sig[3];         // the sigmoids of the logits a~, b~, c~ (backward)
  std::vector<T> slots, dslots;  // with proj: the unit's planes of one direction, and their gradients
};

// The unit's planes of direction k: logits a~, b~, c~ of group g, then lam, u, d of each channel;
// read in place from params, or computed from the proxy into w.slots (row by row: proj_row . z).
template <typename T>
void unit_planes(const Problem<T>& pr, int64_t b, int k, int64_t g, int64_t ch0, int64_t nch, Work<T>& w,
                 std::vector<const T*>& planes) {
  const Layout& lo = pr.layout;
  planes.assign(3 + 3 * nch, nullptr);
  std::vector<int64_t> rows(3 + 3 * nch);
  rows[0] = lo.a(g), rows[1] = lo.b(g), rows[2] = lo.c(g);
  for (int64_t j = 0; j < nch; ++j) {
    rows[3 + 3 * j] = lo.lam(ch0 + j);
    rows[4 + 3 * j] = lo.u(ch0 + j);
    rows[5 + 3 * j] = lo.skip ? lo.d(ch0 + j) : -1;
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0) {
      planes[i] = nullptr;
    } else if (!pr.proj) {
      planes[i] = pr.params + ((b * kDirections + k) * lo.Q + rows[i]) * pr.plane;
    } else {
      planes[i] = w.slots.data() + i * pr.plane;
    }
  }
  if (!pr.proj) return;
  // proj_row . z at every pixel, a tile of pixels at a time so that z's tile stays in L1 for all rows
  const T* z = pr.params + b * pr.R * pr.plane;
  std::vector<const T*> coefs;
  std::vector<T*> outs;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0) continue;
    coefs.push_back(pr.proj + (k * lo.Q + rows[i]) * pr.R);
    outs.push_back(w.slots.data() + i * pr.plane);
  }
  for (int64_t p0 = 0; p0 < pr.plane; p0 += kPixelTile) {
    project_tile(z, pr.plane, pr.R, coefs.data(), outs.data(), int64_t(coefs.size()), p0,
                 std::min(pr.plane, p0 + kPixelTile));
  }
}

// The normalised weights of direction `dir` from the unit's logits, line-major in w.wa, w.wb, w.wc.
template <bool Sigmoids = false, typename T>
void weights(const Direction& dir, const T* la, const T* lb, const T* lc, int64_t H, int64_t W, Work<T>& w) {
  if (dir.horizontal) {
    normalize_plane<true, Sigmoids>(la, lb, lc, H, W, w.t0.data(), w.t1.data(), w.t2.data());
    transpose(w.t0.data(), W, H, W, w.wa.data(), H);
    transpose(w.t1.data(), W, H, W, w.wb.data(), H);
    transpose(w.t2.data(), W, H, W, w.wc.data(), H);
  } else {
    normalize_plane<false, Sigmoids>(la, lb, lc, H, W, w.wa.data(), w.wb.data(), w.wc.data());
  }
}

// lam * x line-major into w.v, then the scan into w.h.
template <typename T>
void hidden(const Direction& dir, int64_t chunk, const T* __restrict__ lam, const T* __restrict__ x, int64_t H,
            int64_t W, Work<T>& w) {
  const int64_t plane = H * W;
  T* __restrict__ v = dir.horizontal ? w.t0.data() : w.v.data();
  for (int64_t p = 0; p < plane; ++p) v[p] = lam[p] * x[p];
  if (dir.horizontal) transpose(w.t0.data(), W, H, W, w.v.data(), H);
  scan_forward(dir, chunk, w.v.data(), w.wa.data(), w.wb.data(), w.wc.data(), w.h.data(), w.zero.data());
}

// A line-major array (lines of N at stride ld, from `src`) in the input layout: (pointer, row stride).
template <typename T>
std::pair<const T*, int64_t> in_plane_layout(const Direction& dir, const T* src, int64_t ld, int64_t H, int64_t W,
                                             T* tmp) {
  if (!dir.horizontal) return {src, ld};
  transpose(src, ld, W, H, tmp, W);
  return {tmp, W};
}

// ---- forward ----

template <typename T>
void forward_unit(const Problem<T>& pr, int64_t b, int64_t g, int64_t ch0, int64_t nch, Work<T>& w,
                  std::vector<const T*>& planes, T* y, T* states) {
  const int64_t C = pr.C, H = pr.H, W = pr.W, plane = pr.plane;
  std::fill(y + (b * C + ch0) * plane, y + (b * C + ch0 + nch) * plane, T(0));
  for (int k = 0; k < kDirections; ++k) {
    const Direction dir = direction(k, H, W);
    unit_planes(pr, b, k, g, ch0, nch, w, planes);
    weights(dir, planes[0], planes[1], planes[2], H, W, w);
    const T m = pr.merge[k];
    for (int64_t j = 0; j < nch; ++j) {
      const int64_t ch = ch0 + j;
      const T* __restrict__ x = pr.x + (b * C + ch) * plane;
      const T* __restrict__ u = planes[4 + 3 * j];
      const T* __restrict__ d = planes[5 + 3 * j];
      hidden(dir, pr.chunk, planes[3 + 3 * j], x, H, W, w);
      const auto [hp, ldh] = in_plane_layout(dir, w.h.data() + 1, dir.N + 2, H, W, w.t1.data());
      T* __restrict__ yp = y + (b * C + ch) * plane;
      T* __restrict__ sp = states ? states + ((b * kDirections + k) * C + ch) * plane : nullptr;
      for (int64_t r = 0; r < H; ++r) {
        const T* __restrict__ hr = hp + r * ldh;
        const int64_t o = r * W;
        if (d) {
          for (int64_t c = 0; c < W; ++c) yp[o + c] += m * (u[o + c] * hr[c] + d[o + c] * x[o + c]);
        } else {
          for (int64_t c = 0; c < W; ++c) yp[o + c] += m * (u[o + c] * hr[c]);
        }
        if (sp) std::copy(hr, hr + W, sp + o);
      }
    }
  }
}

template <typename T>
void forward_all(const Problem<T>& pr, T* y, T* states) {
  const Units units(pr.B, pr.layout.G, pr.C / pr.layout.G);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    Work<T> w(pr.H, pr.W, pr.proj ? 3 + 3 * units.max_channels() : 0, false);
    std::vector<const T*> planes;
    for (int64_t u = next++; u < units.count(); u = next++) {
      forward_unit(pr, units.batch(u), units.group(u), units.first(u), units.channels(u), w, planes, y, states);
    }
  });
}

// ---- backward ----

// The row (within a direction's Q) of the unit's slot i: logits a, b, c, then lam, u, d per channel;
// -1 for d without the skip.
inline int64_t slot_row(const Layout& lo, int64_t i, int64_t g, int64_t ch0) {
  if (i < 3) return i == 0 ? lo.a(g) : i == 1 ? lo.b(g) : lo.c(g);
  const int64_t j = (i - 3) / 3, which = (i - 3) % 3;
  if (which == 0) return lo.lam(ch0 + j);
  if (which == 1) return lo.u(ch0 + j);
  return lo.skip ? lo.d(ch0 + j) : -1;
}

template <typename T>
void backward_unit(const Problem<T>& pr, const Units& units, int64_t unit, const Outputs<T>& out, int64_t slice,
                   Work<T>& w, std::vector<const T*>& planes) {
  const int64_t C = pr.C, H = pr.H, W = pr.W, plane = pr.plane, G = pr.layout.G, Q = pr.layout.Q;
  const int64_t b = units.batch(unit), g = units.group(unit), ch0 = units.first(unit), nch = units.channels(unit);
  std::fill(out.dx + (b * C + ch0) * plane, out.dx + (b * C + ch0 + nch) * plane, T(0));
  // gradient planes of direction k: into dparams, or per part for the logits of a split group, or
  // (with proj) into w.dslots, contracted at the end of the direction
  auto grad_plane = [&](int k, int64_t slot, int64_t row) -> T* {
    if (pr.proj) return w.dslots.data() + slot * plane;
    if (slot < 3 && units.parts > 1) {
      return out.dlogits + (((units.part(unit) * pr.B + b) * kDirections + k) * 3 * G + slot * G + g) * plane;
    }
    return out.dparams + ((b * kDirections + k) * Q + row) * plane;
  };
  const Layout& lo = pr.layout;
  for (int k = 0; k < kDirections; ++k) {
    const Direction dir = direction(k, H, W);
    unit_planes(pr, b, k, g, ch0, nch, w, planes);
    for (int i = 0; i < 3; ++i) {  // the logits' sigmoids, kept for the weights' gradient below
      const T* __restrict__ logits = planes[i];
      T* __restrict__ sig = w.sig[i].data();
      for (int64_t p = 0; p < plane; ++p) sig[p] = sigmoid(logits[p]);
    }
    weights<true>(dir, w.sig[0].data(), w.sig[1].data(), w.sig[2].data(), H, W, w);
    std::fill(w.dwa.begin(), w.dwa.end(), T(0));
    std::fill(w.dwb.begin(), w.dwb.end(), T(0));
    std::fill(w.dwc.begin(), w.dwc.end(), T(0));
    const T m = pr.merge[k];
    double dmerge = 0.0;
    for (int64_t j = 0; j < nch; ++j) {
      const int64_t ch = ch0 + j;
      const T* __restrict__ x = pr.x + (b * C + ch) * plane;
      const T* __restrict__ gy = pr.gy + (b * C + ch) * plane;
      const T* __restrict__ lam = planes[3 + 3 * j];
      const T* __restrict__ u = planes[4 + 3 * j];
      const T* __restrict__ d = planes[5 + 3 * j];
      if (pr.states) {  // the saved hidden state, into the padded line-major buffer
        const T* sp = pr.states + ((b * kDirections + k) * C + ch) * plane;
        const int64_t ld = dir.N + 2;
        if (dir.horizontal) transpose(sp, W, H, W, w.h.data() + 1, ld);
        else for (int64_t r = 0; r < H; ++r) std::copy(sp + r * W, sp + (r + 1) * W, w.h.data() + r * ld + 1);
        for (int64_t l = 0; l < dir.L; ++l) w.h[l * ld] = w.h[l * ld + dir.N + 1] = T(0);
      } else {
        hidden(dir, pr.chunk, lam, x, H, W, w);
      }
      {  // the gradient reaching h: merge * gy * u
        T* __restrict__ gv = dir.horizontal ? w.t0.data() : w.v.data();
        for (int64_t p = 0; p < plane; ++p) gv[p] = m * gy[p] * u[p];
        if (dir.horizontal) transpose(w.t0.data(), W, H, W, w.v.data(), H);
      }
      scan_backward(dir, pr.chunk, w.v.data(), w.wa.data(), w.wb.data(), w.wc.data(), w.h.data(), w.zero.data(),
                    w.d.data(), w.dwa.data(), w.dwb.data(), w.dwc.data(), w.flow);
      const auto [dp, ldd] = in_plane_layout(dir, (const T*)w.d.data(), dir.N, H, W, w.t1.data());
      const auto [hp, ldh] = in_plane_layout(dir, (const T*)w.h.data() + 1, dir.N + 2, H, W, w.t2.data());
      T* __restrict__ dx = out.dx + (b * C + ch) * plane;
      T* __restrict__ dlam = grad_plane(k, 3 + 3 * j, lo.lam(ch));
      T* __restrict__ du = grad_plane(k, 4 + 3 * j, lo.u(ch));
      T* __restrict__ dd = d ? grad_plane(k, 5 + 3 * j, lo.d(ch)) : nullptr;
      // the merge gradient sums gy * (u h + d x); per column first, so that the loops vectorise
      T* __restrict__ acc = w.acc.data();
      std::fill(acc, acc + W, T(0));
      for (int64_t r = 0; r < H; ++r) {
        const T* __restrict__ dr = dp + r * ldd;
        const T* __restrict__ hr = hp + r * ldh;
        const int64_t o = r * W;
        if (d) {
          for (int64_t c = 0; c < W; ++c) {
            const T gm = m * gy[o + c];
            dx[o + c] += lam[o + c] * dr[c] + gm * d[o + c];
            dlam[o + c] = x[o + c] * dr[c];
            du[o + c] = gm * hr[c];
            dd[o + c] = gm * x[o + c];
            acc[c] += gy[o + c] * (u[o + c] * hr[c] + d[o + c] * x[o + c]);
          }
        } else {
          for (int64_t c = 0; c < W; ++c) {
            const T gm = m * gy[o + c];
            dx[o + c] += lam[o + c] * dr[c];
            dlam[o + c] = x[o + c] * dr[c];
            du[o + c] = gm * hr[c];
            acc[c] += gy[o + c] * u[o + c] * hr[c];
          }
        }
      }
      for (int64_t c = 0; c < W; ++c) dmerge += acc[c];
    }
    out.dmerge[unit * kDirections + k] += dmerge;
    {  // the logits' gradients from the weights' (summed over the unit's channels)
      T* ga = grad_plane(k, 0, lo.a(g));
      T* gb = grad_plane(k, 1, lo.b(g));
      T* gc = grad_plane(k, 2, lo.c(g));
      if (dir.horizontal) {
        // dw back to the input layout: t0, t1, t2 (a plane each)
        transpose(w.dwa.data(), H, W, H, w.t0.data(), W);
        transpose(w.dwb.data(), H, W, H, w.t1.data(), W);
        transpose(w.dwc.data(), H, W, H, w.t2.data(), W);
        normalize_backward_plane<true>(w.sig[0].data(), w.sig[1].data(), w.sig[2].data(), w.t0.data(), w.t1.data(),
                                       w.t2.data(), W, H, W, ga, gb, gc);
      } else {
        normalize_backward_plane<false>(w.sig[0].data(), w.sig[1].data(), w.sig[2].data(), w.dwa.data(),
                                        w.dwb.data(), w.dwc.data(), W, H, W, ga, gb, gc);
      }
    }
    if (pr.proj) {  // contract this direction's parameter gradients: dz += proj^T dparams, dproj += dparams z^T
      const T* z = pr.params + b * pr.R * plane;
      T* dz = out.dz + (slice * pr.B + b) * pr.R * plane;
      double* dproj = out.dproj;
      std::vector<const T*> coefs;
      std::vector<const T*> grads;
      std::vector<double*> drows;
      for (int64_t i = 0; i < 3 + 3 * nch; ++i) {
        const int64_t row = slot_row(lo, i, g, ch0);
        if (row < 0) continue;
        coefs.push_back(pr.proj + (k * Q + row) * pr.R);
        grads.push_back(w.dslots.data() + i * plane);
        drows.push_back(dproj + (k * Q + row) * pr.R);
      }
      const int64_t rows = int64_t(coefs.size());
      for (int64_t p0 = 0; p0 < plane; p0 += kPixelTile) {  // a tile of dz and z stays in L1 for all rows
        const int64_t p1 = std::min(plane, p0 + kPixelTile);
        over_r_blocks<ContractBlock>(pr.R, coefs.data(), grads.data(), rows, plane, p0, p1, dz);
        for (int64_t i = 0; i < rows; ++i) over_r_blocks<GramBlock>(pr.R, grads[i], z, plane, p0, p1, drows[i]);
      }
    }
  }
}

template <typename T>
void backward_all(const Problem<T>& pr, const Units& units, const Outputs<T>& out) {
  std::atomic<int64_t> next{0};
  if (pr.proj) {  // work items: blocks of groups (proj_slices)
    const int64_t slices = proj_slices(units);
    at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
      Work<T> w(pr.H, pr.W, 3 + 3 * units.max_channels(), true);
      std::vector<const T*> planes;
      for (int64_t s = next++; s < slices; s = next++) {
        for (int64_t b = 0; b < pr.B; ++b) {
          for (int64_t g = s * units.G / slices; g < (s + 1) * units.G / slices; ++g) {
            for (int64_t part = 0; part < units.parts; ++part) {
              backward_unit(pr, units, units.index(part, b, g), out, s, w, planes);
            }
          }
        }
      }
    });
    return;
  }
  // every output has one writer: any order gives the same bits
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    Work<T> w(pr.H, pr.W, 0, true);
    std::vector<const T*> planes;
    for (int64_t u = next++; u < units.count(); u = next++) backward_unit(pr, units, u, out, 0, w, planes);
  });
}

