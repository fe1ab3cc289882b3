// The Stability-Context normalisation of the mixer's weights from their logits (docs/design.md
// §1.2), forward and backward; a kernel header, compiled per instruction set (per_isa.h).

template <typename T>
inline T exp_of(T v) {
  return std::exp(v);
}

// expf by range reduction and a degree-6 polynomial (the Cephes coefficients, about 1 ulp), written
// branch-free so that the loops calling it vectorise; inputs clamped to where the result is normal.
template <>
inline float exp_of<float>(float v) {
  v = std::min(std::max(v, -87.0f), 88.0f);
  const float t = v * 1.44269504088896341f;
  const int32_t n = static_cast<int32_t>(t + (t >= 0.0f ? 0.5f : -0.5f));
  const float fn = static_cast<float>(n);
  const float r = v - fn * 0.693359375f + fn * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

template <typename T>
inline T sigmoid(T v) {
  return T(1) / (T(1) + exp_of(-v));
}

// One plane of logits normalised, in the plane's layout. The cross axis is the row index for
// horizontal scans and the column index for vertical ones.
// Sigmoids: la, lb, lc already hold the sigmoids of the logits.
template <bool Horizontal, bool Sigmoids, typename T>
void normalize_plane(const T* __restrict__ la, const T* __restrict__ lb, const T* __restrict__ lc, int64_t H,
                     int64_t W, T* __restrict__ wa, T* __restrict__ wb, T* __restrict__ wc) {
  for (int64_t r = 0; r < H; ++r) {
    const T row_first = T(r > 0), row_last = T(r < H - 1);
    for (int64_t c = 0; c < W; ++c) {
      const int64_t p = r * W + c;
      const T first = Horizontal ? row_first : T(c > 0), last = Horizontal ? row_last : T(c < W - 1);
      const T sa = (Sigmoids ? la[p] : sigmoid(la[p])) * first, sb = Sigmoids ? lb[p] : sigmoid(lb[p]);
      const T sc = (Sigmoids ? lc[p] : sigmoid(lc[p])) * last;
      const T inv = T(1) / (sa + sb + sc);
      wa[p] = sa * inv;
      wb[p] = sb * inv;
      wc[p] = sc * inv;
    }
  }
}

// Gradients of the logits from those of the normalised weights: with w_i = s_i / S,
// d s_i = (dw_i - sum_j dw_j w_j) / S and d logit_i = d s_i * sigmoid'(logit_i) (zero where masked).
// sig_a, sig_b, sig_c: the sigmoids of the logits.
template <bool Horizontal, typename T>
void normalize_backward_plane(const T* __restrict__ sig_a, const T* __restrict__ sig_b, const T* __restrict__ sig_c,
                              const T* __restrict__ dwa, const T* __restrict__ dwb, const T* __restrict__ dwc,
                              int64_t lddw, int64_t H, int64_t W, T* __restrict__ ga, T* __restrict__ gb,
                              T* __restrict__ gc) {
  for (int64_t r = 0; r < H; ++r) {
    const T row_first = T(r > 0), row_last = T(r < H - 1);
    for (int64_t c = 0; c < W; ++c) {
      const int64_t p = r * W + c, q = r * lddw + c;
      const T first = Horizontal ? row_first : T(c > 0), last = Horizontal ? row_last : T(c < W - 1);
      const T sga = sig_a[p], sgb = sig_b[p], sgc = sig_c[p];
      const T sa = sga * first, sb = sgb, sc = sgc * last;
      const T inv = T(1) / (sa + sb + sc);
      const T mean = (dwa[q] * sa + dwb[q] * sb + dwc[q] * sc) * inv;
      ga[p] = (dwa[q] - mean) * inv * sga * (T(1) - sga) * first;
      gb[p] = (dwb[q] - mean) * inv * sgb * (T(1) - sgb);
      gc[p] = (dwc[q] - mean) * inv * sgc * (T(1) - sgc) * last;
    }
  }
}

