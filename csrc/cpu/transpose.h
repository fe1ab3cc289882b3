// Transposes: an 8 x 8 block of floats in AVX registers, and whole blocks of a plane. A kernel
// header, compiled per instruction set (per_isa.h).

#if GSPN_AVX2
// r[i] <- column i of the block whose rows were r[0..7].
inline void transpose8(__m256 (&r)[8]) {
  __m256 t[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i += 2) {  // pairs of rows interleaved: (a0 b0 a1 b1 | a4 b4 a5 b5), (a2 b2 ...)
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; i += 4) {  // quads: (a0 b0 c0 d0 | a4 b4 c4 d4), (a1 ...), (a2 ...), (a3 ...)
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 4; ++i) {  // the 128-bit halves of the two quads: columns i and i + 4
    t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
    t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = t[i];
}
#endif

// dst[c * ldd + r] = src[r * lds + c] for a rows x cols block, walked in 16 x 16 tiles.
template <typename T>
void transpose_scalar(const T* __restrict__ src, int64_t lds, int64_t rows, int64_t cols, T* __restrict__ dst,
                      int64_t ldd) {
  constexpr int64_t kTile = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
    const int64_t r1 = std::min(rows, r0 + kTile);
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t c1 = std::min(cols, c0 + kTile);
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) dst[c * ldd + r] = src[r * lds + c];
      }
    }
  }
}

template <typename T>
void transpose(const T* src, int64_t lds, int64_t rows, int64_t cols, T* dst, int64_t ldd) {
  transpose_scalar(src, lds, rows, cols, dst, ldd);
}

#if GSPN_AVX2
template <>
void transpose<float>(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  if (rows < 8 || cols < 8) return transpose_scalar(src, lds, rows, cols, dst, ldd);
  // blocks at multiples of 8, and a last one flush with the edge that overlaps the one before
  for (int64_t r = 0; r < rows; r = r + 8 < rows && r + 16 > rows ? rows - 8 : r + 8) {
    for (int64_t c = 0; c < cols; c = c + 8 < cols && c + 16 > cols ? cols - 8 : c + 8) {
      __m256 block[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) block[i] = _mm256_loadu_ps(src + (r + i) * lds + c);
      transpose8(block);
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (c + i) * ldd + r, block[i]);
    }
  }
}
#endif
