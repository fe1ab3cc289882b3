// The mixer's low-rank projection (docs/mixer.md): the parameter planes as proj . z per pixel, and
// the contraction of their gradients into dz and dproj; a kernel header, compiled per instruction
// set (per_isa.h). Register-blocked: several rows or ranks per pass over a vector of pixels, each
// with its own accumulator, so that consecutive FMAs do not wait on one another.

constexpr int64_t kPixelTile = 512;  // pixels per tile of the projection and its gradient

// Vectors through GCC's vector extensions: a zmm register (16 floats, 8 doubles) in the AVX-512
// build, a ymm one in the AVX2 build, an xmm one in the baseline build (its ABI has no wider ones).
#if GSPN_AVX512
constexpr int64_t kVectorBytes = 64;
#elif GSPN_AVX2
constexpr int64_t kVectorBytes = 32;
#else
constexpr int64_t kVectorBytes = 16;
#endif

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(kVectorBytes)));
  typedef T unaligned __attribute__((vector_size(kVectorBytes), aligned(alignof(T)), may_alias));
  static constexpr int64_t kLanes = kVectorBytes / sizeof(T);
  static inline type load(const T* p) { return *reinterpret_cast<const unaligned*>(p); }
  static inline void store(T* p, type v) { *reinterpret_cast<unaligned*>(p) = v; }
  // the first n lanes only (Full: all of them), the others zero; masked moves where there are some
  template <bool Full>
  static inline type load(const T* p, int64_t n) {
    if constexpr (Full) return load(p);
#if GSPN_AVX512
    if constexpr (std::is_same_v<T, float>) return (type)_mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p);
    if constexpr (std::is_same_v<T, double>) return (type)_mm512_maskz_loadu_pd(__mmask8((1u << n) - 1), p);
#elif GSPN_AVX2
    if constexpr (std::is_same_v<T, float>) return (type)_mm256_maskload_ps(p, mask(n));
    if constexpr (std::is_same_v<T, double>) return (type)_mm256_maskload_pd(p, mask(n));
#endif
    T lanes[kLanes] = {};
    std::copy(p, p + n, lanes);
    return load(lanes);
  }
  template <bool Full>
  static inline void store(T* p, type v, int64_t n) {
    if constexpr (Full) return store(p, v);
#if GSPN_AVX512
    if constexpr (std::is_same_v<T, float>) return _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), (__m512)v);
    if constexpr (std::is_same_v<T, double>) return _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1), (__m512d)v);
#elif GSPN_AVX2
    if constexpr (std::is_same_v<T, float>) return _mm256_maskstore_ps(p, mask(n), (__m256)v);
    if constexpr (std::is_same_v<T, double>) return _mm256_maskstore_pd(p, mask(n), (__m256d)v);
#endif
    T lanes[kLanes];
    store(lanes, v);
    std::copy(lanes, lanes + n, p);
  }
#if GSPN_AVX2 && !GSPN_AVX512
  static inline __m256i mask(int64_t n) {  // all ones in the first n lanes of T
    if constexpr (sizeof(T) == 4) {
      return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
#endif
};

// Runs step<Full>(p, n) over [p0, p1) in vectors of L pixels, the last one partial.
template <int64_t L, typename Step>
inline void over_vectors(int64_t p, int64_t p1, const Step& step) {
  for (; p + L <= p1; p += L) step.template operator()<true>(p, L);
  if (p < p1) step.template operator()<false>(p, p1 - p);
}

// out_i[p] = sum_r coef_i[r] * z[r * stride + p] for p in [p0, p1), NR rows i at once over two
// vectors of pixels: each z vector is loaded once for the NR rows.
template <int NR, typename T>
void project_rows(const T* z, int64_t stride, int64_t R, const T* const* coefs, T* const* outs, int64_t p0,
                  int64_t p1) {
  using V = Vec<T>;
  using v_t = typename V::type;
  constexpr int64_t L = V::kLanes;
  int64_t p = p0;
  for (; p + 2 * L <= p1; p += 2 * L) {
    v_t acc0[NR], acc1[NR];
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) acc0[i] = acc1[i] = v_t{};
    for (int64_t r = 0; r < R; ++r) {
      const v_t z0 = V::load(z + r * stride + p), z1 = V::load(z + r * stride + p + L);
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i) {
        const T c = coefs[i][r];
        acc0[i] += c * z0;
        acc1[i] += c * z1;
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) {
      V::store(outs[i] + p, acc0[i]);
      V::store(outs[i] + p + L, acc1[i]);
    }
  }
  over_vectors<L>(p, p1, [&]<bool Full>(int64_t q, int64_t n) {
    v_t acc[NR];
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) acc[i] = v_t{};
    for (int64_t r = 0; r < R; ++r) {
      const v_t zr = V::template load<Full>(z + r * stride + q, n);
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i) acc[i] += coefs[i][r] * zr;
    }
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) V::template store<Full>(outs[i] + q, acc[i], n);
  });
}

template <typename T>
void project_tile(const T* z, int64_t stride, int64_t R, const T* const* coefs, T* const* outs, int64_t rows,
                  int64_t p0, int64_t p1) {
  int64_t i = 0;
  for (; i + 4 <= rows; i += 4) project_rows<4>(z, stride, R, coefs + i, outs + i, p0, p1);
  if (rows - i == 3) project_rows<3>(z, stride, R, coefs + i, outs + i, p0, p1);
  if (rows - i == 2) project_rows<2>(z, stride, R, coefs + i, outs + i, p0, p1);
  if (rows - i == 1) project_rows<1>(z, stride, R, coefs + i, outs + i, p0, p1);
}

// dz[r * stride + p] += sum_i coef_i[r] * grad_i[p] for p in [p0, p1) and NR consecutive r from r0:
// NR accumulators per vector of pixels, each gradient vector loaded once for all of them.
template <int NR, typename T>
void contract_rows(const T* const* coefs, const T* const* grads, int64_t rows, int64_t r0, int64_t stride,
                   int64_t p0, int64_t p1, T* dz) {
  using V = Vec<T>;
  using v_t = typename V::type;
  over_vectors<V::kLanes>(p0, p1, [&]<bool Full>(int64_t p, int64_t n) {
    v_t acc[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[j] = V::template load<Full>(dz + (r0 + j) * stride + p, n);
    for (int64_t i = 0; i < rows; ++i) {
      const v_t g = V::template load<Full>(grads[i] + p, n);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[j] += coefs[i][r0 + j] * g;
    }
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) V::template store<Full>(dz + (r0 + j) * stride + p, acc[j], n);
  });
}

// drow[r] += sum_p grad[p] * z[r * stride + p] over [p0, p1) for NR consecutive r from r0, summed
// in vectors over the tile and in double across tiles.
template <int NR, typename T>
void gram_rows(const T* grad, const T* z, int64_t r0, int64_t stride, int64_t p0, int64_t p1, double* drow) {
  using V = Vec<T>;
  using v_t = typename V::type;
  v_t acc[NR];
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) acc[j] = v_t{};
  over_vectors<V::kLanes>(p0, p1, [&]<bool Full>(int64_t p, int64_t n) {
    const v_t g = V::template load<Full>(grad + p, n);  // zero past n, so the lanes there add nothing
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[j] += g * V::template load<Full>(z + (r0 + j) * stride + p, n);
  });
  for (int j = 0; j < NR; ++j) {  // the lanes summed pairwise: a tree log2(L) additions deep
    T lanes[V::kLanes];
    V::store(lanes, acc[j]);
    for (int64_t width = V::kLanes / 2; width > 0; width /= 2) {
      for (int64_t l = 0; l < width; ++l) lanes[l] += lanes[l + width];
    }
    drow[r0 + j] += lanes[0];
  }
}

// Calls Kernel<NR>::run(r0, args...) over r in [0, R) in blocks of 8, then 4, 2, 1.
template <template <int> class Kernel, typename... Args>
void over_r_blocks(int64_t R, Args&&... args) {
  int64_t r = 0;
  for (; r + 8 <= R; r += 8) Kernel<8>::run(r, args...);
  if (R - r >= 4) Kernel<4>::run(r, args...), r += 4;
  if (R - r >= 2) Kernel<2>::run(r, args...), r += 2;
  if (R - r >= 1) Kernel<1>::run(r, args...);
}

template <int NR>
struct ContractBlock {
  template <typename T>
  static void run(int64_t r0, const T* const* coefs, const T* const* grads, int64_t rows, int64_t stride, int64_t p0,
                  int64_t p1, T* dz) {
    contract_rows<NR>(coefs, grads, rows, r0, stride, p0, p1, dz);
  }
};

template <int NR>
struct GramBlock {
  template <typename T>
  static void run(int64_t r0, const T* grad, const T* z, int64_t stride, int64_t p0, int64_t p1, double* drow) {
    gram_rows<NR>(grad, z, r0, stride, p0, p1, drow);
  }
};
