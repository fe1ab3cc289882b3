// The single-direction scan's blocks of lines (a kernel header, compiled per instruction set).
// For "tb" and "bt" the lines are rows and the kernels read them in place. For "lr" and "rl" they
// are columns: a block of kBlock consecutive columns is gathered into small scratch lines (reading
// each row's few contiguous elements), scanned, and scattered back, so memory is still walked
// contiguously, the working set stays in cache and no transformed copy of a tensor is ever made.

template <typename T>
constexpr int64_t kBlock = 64 / sizeof(T);  // lines per block: one cache line of each row for "lr"

// Scratch for the gathered blocks: `count` tiles of kBlock lines of N values, the last with one
// line more. Lines lie `ld` apart, a little more than N so that power-of-two N do not put every
// line of a tile into the same cache set. Empty when lines are scanned in place.
template <typename T>
struct Tiles {
  Tiles(int64_t count, const Geometry& g)
      : ld(g.N + kBlock<T>), v(g.in_place() ? 0 : (count * kBlock<T> + 1) * ld) {}
  T* operator[](int64_t k) { return v.empty() ? nullptr : v.data() + k * kBlock<T> * ld; }
  int64_t ld;
  std::vector<T> v;
};

#ifdef __SSE2__
// Four consecutive scan steps of a row as one vector, in scan order (step is +1 or -1).
inline __m128 load_steps(const float* p, int64_t step) {
  if (step > 0) return _mm_loadu_ps(p);
  const __m128 v = _mm_loadu_ps(p - 3);
  return _mm_shuffle_ps(v, v, _MM_SHUFFLE(0, 1, 2, 3));
}

inline void store_steps(float* p, int64_t step, __m128 v) {
  if (step > 0) _mm_storeu_ps(p, v);
  else _mm_storeu_ps(p - 3, _mm_shuffle_ps(v, v, _MM_SHUFFLE(0, 1, 2, 3)));
}

// Four steps of a row of the operand (Prod: of the product of two operands, q = p + delta).
template <bool Prod>
inline __m128 load4(const float* p, int64_t delta, int64_t step) {
  if constexpr (Prod) return _mm_mul_ps(load_steps(p, step), load_steps(p + delta, step));
  return load_steps(p, step);
}

// 4x4 pieces of rows [n0, n1) and lines [t0, t1), transposed in registers.
template <bool Prod>
inline void gather4(const float* start, int64_t delta, const Geometry& g, int64_t n0, int64_t n1, int64_t t0,
                    int64_t t1, float* tile, int64_t ld) {
  for (int64_t n = n0; n < n1; n += 4) {
    for (int64_t t = t0; t < t1; t += 4) {
      const float* p = start + n * g.cross + t * g.step;
      __m128 r0 = load4<Prod>(p, delta, g.step), r1 = load4<Prod>(p + g.cross, delta, g.step);
      __m128 r2 = load4<Prod>(p + 2 * g.cross, delta, g.step), r3 = load4<Prod>(p + 3 * g.cross, delta, g.step);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(tile + t * ld + n, r0);
      _mm_storeu_ps(tile + (t + 1) * ld + n, r1);
      _mm_storeu_ps(tile + (t + 2) * ld + n, r2);
      _mm_storeu_ps(tile + (t + 3) * ld + n, r3);
    }
  }
}

inline void scatter4(const float* tile, int64_t ld, const Geometry& g, int64_t n0, int64_t n1, int64_t t0,
                     int64_t t1, float* start) {
  for (int64_t n = n0; n < n1; n += 4) {
    for (int64_t t = t0; t < t1; t += 4) {
      __m128 r0 = _mm_loadu_ps(tile + t * ld + n), r1 = _mm_loadu_ps(tile + (t + 1) * ld + n);
      __m128 r2 = _mm_loadu_ps(tile + (t + 2) * ld + n), r3 = _mm_loadu_ps(tile + (t + 3) * ld + n);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      float* p = start + n * g.cross + t * g.step;
      store_steps(p, g.step, r0);
      store_steps(p + g.cross, g.step, r1);
      store_steps(p + 2 * g.cross, g.step, r2);
      store_steps(p + 3 * g.cross, g.step, r3);
    }
  }
}

#if GSPN_AVX2
// The same with 8x8 pieces in AVX registers.
inline __m256 load_steps8(const float* p, int64_t step) {
  if (step > 0) return _mm256_loadu_ps(p);
  return _mm256_permutevar8x32_ps(_mm256_loadu_ps(p - 7), _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0));
}

inline void store_steps8(float* p, int64_t step, __m256 v) {
  if (step > 0) _mm256_storeu_ps(p, v);
  else _mm256_storeu_ps(p - 7, _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0)));
}

template <bool Prod>
inline __m256 load8(const float* p, int64_t delta, int64_t step) {
  if constexpr (Prod) return _mm256_mul_ps(load_steps8(p, step), load_steps8(p + delta, step));
  return load_steps8(p, step);
}

template <bool Prod>
inline void gather8(const float* start, int64_t delta, const Geometry& g, int64_t n1, int64_t t1, float* tile,
                    int64_t ld) {
  const int64_t c = g.cross, st = g.step;
  for (int64_t n = 0; n < n1; n += 8) {
    for (int64_t t = 0; t < t1; t += 8) {
      const float* p = start + n * c + t * st;
      __m256 r[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) r[i] = load8<Prod>(p + i * c, delta, st);
      transpose8(r);
      float* q = tile + t * ld + n;
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(q + i * ld, r[i]);
    }
  }
}

inline void scatter8(const float* tile, int64_t ld, const Geometry& g, int64_t n1, int64_t t1, float* start) {
  const int64_t c = g.cross, st = g.step;
  for (int64_t n = 0; n < n1; n += 8) {
    for (int64_t t = 0; t < t1; t += 8) {
      const float* q = tile + t * ld + n;
      __m256 r[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(q + i * ld);
      transpose8(r);
      float* p = start + n * c + t * st;
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) store_steps8(p + i * c, st, r[i]);
    }
  }
}
#endif

// gather() for floats, of the first `rows` rows and `count` lines (multiples of 4).
template <bool Prod>
inline void gather_fast(const float* start, int64_t delta, const Geometry& g, int64_t rows, int64_t count,
                        float* tile, int64_t ld) {
#if GSPN_AVX2
  const int64_t rows8 = rows / 8 * 8, count8 = count / 8 * 8;
  gather8<Prod>(start, delta, g, rows8, count8, tile, ld);
  gather4<Prod>(start, delta, g, rows8, rows, 0, count, tile, ld);
  gather4<Prod>(start, delta, g, 0, rows8, count8, count, tile, ld);
#else
  gather4<Prod>(start, delta, g, 0, rows, 0, count, tile, ld);
#endif
}

inline void scatter_fast(const float* tile, int64_t ld, const Geometry& g, int64_t rows, int64_t count,
                         float* start) {
#if GSPN_AVX2
  const int64_t rows8 = rows / 8 * 8, count8 = count / 8 * 8;
  scatter8(tile, ld, g, rows8, count8, start);
  scatter4(tile, ld, g, rows8, rows, 0, count, start);
  scatter4(tile, ld, g, 0, rows8, count8, count, start);
#else
  scatter4(tile, ld, g, 0, rows, 0, count, start);
#endif
}
#endif

// The rows and lines of a block that gather_fast and scatter_fast handle: none without SSE2.
template <typename T>
std::pair<int64_t, int64_t> fast_part(int64_t N, int64_t count) {
#ifdef __SSE2__
  if constexpr (std::is_same_v<T, float>) return {N / 4 * 4, count / 4 * 4};
#endif
  return {0, 0};
}

// tile line t <- plane line s0 + t, for `count` lines (Prod: of the product of `plane` and `other`)
template <bool Prod = false, typename T>
void gather(const T* __restrict__ plane, const Geometry& g, int64_t s0, int64_t count, T* __restrict__ tile,
            int64_t ld, const T* __restrict__ other = nullptr) {
  const T* start = plane + g.first + s0 * g.step;
  const int64_t delta = Prod ? other - plane : 0;
  const auto [fast_rows, fast_lines] = fast_part<T>(g.N, count);
#ifdef __SSE2__
  if constexpr (std::is_same_v<T, float>) gather_fast<Prod>(start, delta, g, fast_rows, fast_lines, tile, ld);
#endif
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t t = n < fast_rows ? fast_lines : 0; t < count; ++t) {
      const int64_t o = n * g.cross + t * g.step;
      tile[t * ld + n] = Prod ? start[o] * start[o + delta] : start[o];
    }
  }
}

// plane line s0 + t <- tile line t, for `count` lines
template <typename T>
void scatter(const T* __restrict__ tile, int64_t ld, const Geometry& g, int64_t s0, int64_t count,
             T* __restrict__ plane) {
  T* start = plane + g.first + s0 * g.step;
  const auto [fast_rows, fast_lines] = fast_part<T>(g.N, count);
#ifdef __SSE2__
  if constexpr (std::is_same_v<T, float>) scatter_fast(tile, ld, g, fast_rows, fast_lines, start);
#endif
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t t = n < fast_rows ? fast_lines : 0; t < count; ++t) {
      start[n * g.cross + t * g.step] = tile[t * ld + n];
    }
  }
}

// Lines s0 .. s0 + count - 1 of a plane, line t at the result + t * stride (stride: g.step in place,
// else the tiles' ld): the plane itself when lines are contiguous, else gathered into `tile`.
template <typename T>
const T* lines(const T* plane, const Geometry& g, int64_t s0, int64_t count, T* tile, int64_t ld) {
  if (g.in_place()) return plane + g.first + s0 * g.step;
  gather(plane, g, s0, count, tile, ld);
  return tile;
}

// Where lines s0 .. are written: in place, or into `tile` for a scatter() afterwards.
template <typename T>
T* output_lines(T* plane, const Geometry& g, int64_t s0, T* tile) {
  return g.in_place() ? plane + g.first + s0 * g.step : tile;
}
