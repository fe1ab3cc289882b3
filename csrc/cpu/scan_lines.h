// The line kernels of the scan (docs/design.md §1.1), shared by the single-direction op and the
// mixer; a kernel header, compiled per instruction set (per_isa.h). A line holds N positions; the
// previous state and what flows back from the next line are Padded lines (element n at [n + 1]), so
// the three neighbours of position n are [n], [n + 1] and [n + 2]. The parameters are restrict-
// qualified: that is what lets GCC vectorise the loops.

// The next state from the previous one: cur[n] = v[n] + a[n] prev[n] + b[n] prev[n + 1] + c[n] prev[n + 2]
// with v = lam * x (HasLam) or x; also written to out (Copy).
template <bool HasLam, bool Copy, typename T>
void forward_line(const T* __restrict__ x, const T* __restrict__ lam, const T* __restrict__ a,
                  const T* __restrict__ b, const T* __restrict__ c, const T* __restrict__ prev, T* __restrict__ cur,
                  T* __restrict__ out, int64_t N) {
  for (int64_t n = 0; n < N; ++n) {
    const T v = (HasLam ? lam[n] * x[n] : x[n]) + a[n] * prev[n] + b[n] * prev[n + 1] + c[n] * prev[n + 2];
    cur[n] = v;
    if constexpr (Copy) out[n] = v;
  }
}

// One line of the reverse scan: the state gradient d (what the line's output receives, g, plus what
// flows back from the next line, fa, fb, fc) and from it the weight gradients against the previous
// state, added to dwa, dwb, dwc when Accumulate; with Inputs also dx = lam * d and dlam = x * d.
template <bool Accumulate, bool Inputs, typename T>
void backward_line(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ lam,
                   const T* __restrict__ fa, const T* __restrict__ fb, const T* __restrict__ fc,
                   const T* __restrict__ hprev, T* __restrict__ d, T* __restrict__ dx, T* __restrict__ dlam,
                   T* __restrict__ dwa, T* __restrict__ dwb, T* __restrict__ dwc, int64_t N) {
  for (int64_t n = 0; n < N; ++n) {
    const T dn = g[n] + fa[n + 2] + fb[n + 1] + fc[n];
    d[n] = dn;
    if constexpr (Inputs) {
      dx[n] = lam[n] * dn;
      dlam[n] = x[n] * dn;
    }
    dwa[n] = (Accumulate ? dwa[n] : T(0)) + dn * hprev[n];
    dwb[n] = (Accumulate ? dwb[n] : T(0)) + dn * hprev[n + 1];
    dwc[n] = (Accumulate ? dwc[n] : T(0)) + dn * hprev[n + 2];
  }
}

// What flows back from a line with state gradient d to the line before it, per weight (padded).
template <typename T>
void flow_line(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c, const T* __restrict__ d,
               T* __restrict__ fa, T* __restrict__ fb, T* __restrict__ fc, int64_t N) {
  for (int64_t n = 0; n < N; ++n) {
    fa[n + 1] = a[n] * d[n];
    fb[n + 1] = b[n] * d[n];
    fc[n + 1] = c[n] * d[n];
  }
}
