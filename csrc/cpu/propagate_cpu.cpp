#ifndef GSPN_KERNEL_PASS
// The GSPN line scan on CPU (docs/design.md §1.1, 1.5): forward and hand-written backward.
//
// Every direction is the "lr" scan seen through index arithmetic: line s of the scan (s = 0 where
// the scan starts) begins at `first + s * step` inside an (H, W) plane and its N positions lie
// `cross` apart. The line kernels want each line contiguous so that they vectorise. For "tb" and
// "bt" (cross == 1) they run on the tensors in place. For "lr" and "rl" the lines are columns: a
// block of kBlock consecutive columns is gathered into small scratch lines (reading each row's few
// contiguous elements), scanned, and the results scattered back, so memory is still walked
// contiguously and the working set stays in cache; no transformed copy of a tensor is ever made.
//
// Work is split over (batch, weight group) pairs, and over shares of a group's channels when there
// are fewer pairs than threads. Within a unit the scan advances block by block with the channels
// interleaved, so each block of weights is loaded once for all the channels that share it and the
// weight gradients are summed over those channels without any write contention.
//
// The previous line of the recurrence lives in a buffer padded with a zero at each end, which
// removes the boundary branches.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#ifdef __SSE2__
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

struct Geometry {
  int64_t L, N, first, step, cross;
  bool in_place() const { return cross == 1; }
};

Geometry geometry(std::string_view direction, int64_t H, int64_t W) {
  if (direction == "lr") return {W, H, 0, 1, W};
  if (direction == "rl") return {W, H, W - 1, -1, W};
  if (direction == "tb") return {H, W, 0, W, 1};
  if (direction == "bt") return {H, W, (H - 1) * W, -W, 1};
  TORCH_CHECK(false, "gspn_cpu: unknown direction ", direction);
}

template <typename T>
constexpr int64_t kBlock = 64 / sizeof(T);  // lines per block: one cache line of each row for "lr"

// Line s reads a zero state: the scan starts there or a chunk restarts there.
inline bool restarts(int64_t s, int64_t chunk) { return s == 0 || (chunk > 0 && s % chunk == 0); }

// Work units (part, b, g): a part is a contiguous share of group g's K channels.
struct Units {
  Units(int64_t B, int64_t G, int64_t K)
      : pairs(B * G), K(K), parts(std::min<int64_t>(K, (at::get_num_threads() + pairs - 1) / pairs)) {}
  int64_t count() const { return parts * pairs; }
  int64_t pair(int64_t u) const { return u % pairs; }  // b * G + g, the index of the weight plane
  int64_t first_channel(int64_t u) const { return pair(u) * K + (u / pairs) * K / parts; }  // b * C + ch
  int64_t channels(int64_t u) const { return (u / pairs + 1) * K / parts - (u / pairs) * K / parts; }
  int64_t max_channels() const { return (K + parts - 1) / parts; }
  int64_t pairs, K, parts;
};

}  // namespace

// The kernels below the #else are compiled twice: for the baseline instruction set, and (on x86-64 with
// GCC or Clang) for AVX2 + FMA, chosen at run time.
#define GSPN_KERNEL_PASS 1
namespace {
namespace base {
#include __FILE__
}  // namespace base
}  // namespace
#undef GSPN_KERNEL_PASS

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GSPN_KERNEL_PASS 2
#define GSPN_HAVE_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace {
namespace avx2 {
#include __FILE__
}  // namespace avx2
}  // namespace
#pragma GCC pop_options
#undef GSPN_KERNEL_PASS
#endif

namespace {

// ---- the ops ----

#ifdef GSPN_HAVE_AVX2
// The AVX2 + FMA build of the kernels runs where the CPU has them (the build itself stays portable).
// GSPN_CPU_ISA=baseline forces the baseline build, so that it can be tested on any machine.
bool use_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          std::string_view(std::getenv("GSPN_CPU_ISA") ? std::getenv("GSPN_CPU_ISA") : "") != "baseline";
  return yes;
}
#endif

// The Python side validates the arguments; these only guard the kernels' assumptions.
void check_operand(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.is_contiguous() && t.dim() == 4 && t.scalar_type() == x.scalar_type() && t.device().is_cpu(),
              "gspn_cpu: `", name, "` must be a contiguous 4-d CPU tensor of x's dtype");
}

void check_shapes(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, const at::Tensor& c) {
  const auto G = a.size(1);
  TORCH_CHECK(G > 0 && x.size(1) % G == 0 && a.sizes() == b.sizes() && a.sizes() == c.sizes() &&
                  a.size(0) == x.size(0) && a.size(2) == x.size(2) && a.size(3) == x.size(3),
              "gspn_cpu: weights must be (B, G, H, W) with G dividing x's C");
}

at::Tensor forward(const at::Tensor& x, const at::Tensor& lam, const at::Tensor& a, const at::Tensor& b,
                   const at::Tensor& c, std::string_view direction, int64_t chunk) {
  for (auto [t, name] : {std::pair{x, "x"}, {lam, "lam"}, {a, "a"}, {b, "b"}, {c, "c"}}) check_operand(t, x, name);
  TORCH_CHECK(lam.sizes() == x.sizes(), "gspn_cpu: lam must have x's shape");
  check_shapes(x, a, b, c);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), G = a.size(1);
  at::Tensor h = at::empty_like(x);
  if (x.numel() == 0) return h;  // an empty batch, channel or axis: nothing to scan (and no work units)
  const int64_t plane = H * W;
  const Geometry geo = geometry(direction, H, W);
  const Units units(B, G, C / G);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gspn_cpu_forward", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pl = lam.data_ptr<scalar_t>();
    const scalar_t *pa = a.data_ptr<scalar_t>(), *pb = b.data_ptr<scalar_t>(), *pc = c.data_ptr<scalar_t>();
    scalar_t* ph = h.data_ptr<scalar_t>();
#ifdef GSPN_HAVE_AVX2
    if (use_avx2()) return avx2::forward_all(px, pl, pa, pb, pc, ph, units, plane, geo, chunk);
#endif
    base::forward_all(px, pl, pa, pb, pc, ph, units, plane, geo, chunk);
  });
  return h;
}

// Unit u writes its weight gradients to plane u; units sharing a weight plane (parts > 1) are summed.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& dh, const at::Tensor& x, const at::Tensor& lam, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& c, const at::Tensor& h, std::string_view direction, int64_t chunk) {
  for (auto [t, name] : {std::pair{dh, "dh"}, {x, "x"}, {lam, "lam"}, {a, "a"}, {b, "b"}, {c, "c"}, {h, "h"}})
    check_operand(t, x, name);
  TORCH_CHECK(lam.sizes() == x.sizes() && dh.sizes() == x.sizes() && h.sizes() == x.sizes(),
              "gspn_cpu: dh, lam and h must have x's shape");
  check_shapes(x, a, b, c);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), G = a.size(1);
  if (x.numel() == 0) {  // nothing reaches the weights (C == 0 leaves them non-empty: their gradient is zero)
    return {at::empty_like(x), at::empty_like(x), at::zeros_like(a), at::zeros_like(b), at::zeros_like(c)};
  }
  const int64_t plane = H * W;
  const Geometry geo = geometry(direction, H, W);
  const Units units(B, G, C / G);
  at::Tensor dx = at::empty_like(x), dlam = at::empty_like(x);
  at::Tensor da = at::empty({units.parts * B, G, H, W}, a.options());
  at::Tensor db = at::empty_like(da), dc = at::empty_like(da);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gspn_cpu_backward", [&] {
    const scalar_t *pdh = dh.data_ptr<scalar_t>(), *px = x.data_ptr<scalar_t>(), *pl = lam.data_ptr<scalar_t>();
    const scalar_t *pa = a.data_ptr<scalar_t>(), *pb = b.data_ptr<scalar_t>(), *pc = c.data_ptr<scalar_t>();
    const scalar_t* ph = h.data_ptr<scalar_t>();
    scalar_t *pdx = dx.data_ptr<scalar_t>(), *pdl = dlam.data_ptr<scalar_t>();
    scalar_t *pda = da.data_ptr<scalar_t>(), *pdb = db.data_ptr<scalar_t>(), *pdc = dc.data_ptr<scalar_t>();
#ifdef GSPN_HAVE_AVX2
    if (use_avx2()) return avx2::backward_all(pdh, px, pl, pa, pb, pc, ph, pdx, pdl, pda, pdb, pdc, units, plane, geo,
                                              chunk);
#endif
    base::backward_all(pdh, px, pl, pa, pb, pc, ph, pdx, pdl, pda, pdb, pdc, units, plane, geo, chunk);
  });
  if (units.parts > 1) {
    for (at::Tensor* t : {&da, &db, &dc}) *t = t->view({units.parts, B, G, H, W}).sum(0);
  }
  return {dx, dlam, da, db, dc};
}

}  // namespace

TORCH_LIBRARY(gspn_cpu, m) {
  m.def("forward(Tensor x, Tensor lam, Tensor a, Tensor b, Tensor c, str direction, int chunk) -> Tensor");
  m.def("backward(Tensor dh, Tensor x, Tensor lam, Tensor a, Tensor b, Tensor c, Tensor h, str direction, "
        "int chunk) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gspn_cpu, CPU, m) {
  m.impl("forward", &forward);
  m.impl("backward", &backward);
}

#else  // GSPN_KERNEL_PASS: the kernels

template <typename T>
struct Padded {  // a line of N values with a zero on either side: element n is at data()[n + 1]
  explicit Padded(int64_t n) : v(n + 2, T(0)) {}
  T* data() { return v.data(); }
  void clear() { std::fill(v.begin() + 1, v.end() - 1, T(0)); }
  std::vector<T> v;
};

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

// ---- gathering and scattering blocks of "lr"/"rl" lines ----

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

#if GSPN_KERNEL_PASS == 2
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

inline void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6,
                       __m256& r7) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r0 = _mm256_permute2f128_ps(s0, s4, 0x20);
  r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
  r2 = _mm256_permute2f128_ps(s2, s6, 0x20);
  r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
  r4 = _mm256_permute2f128_ps(s0, s4, 0x31);
  r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
  r6 = _mm256_permute2f128_ps(s2, s6, 0x31);
  r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}

template <bool Prod>
inline void gather8(const float* start, int64_t delta, const Geometry& g, int64_t n1, int64_t t1, float* tile,
                    int64_t ld) {
  const int64_t c = g.cross, st = g.step;
  for (int64_t n = 0; n < n1; n += 8) {
    for (int64_t t = 0; t < t1; t += 8) {
      const float* p = start + n * c + t * st;
      __m256 r0 = load8<Prod>(p, delta, st), r1 = load8<Prod>(p + c, delta, st);
      __m256 r2 = load8<Prod>(p + 2 * c, delta, st), r3 = load8<Prod>(p + 3 * c, delta, st);
      __m256 r4 = load8<Prod>(p + 4 * c, delta, st), r5 = load8<Prod>(p + 5 * c, delta, st);
      __m256 r6 = load8<Prod>(p + 6 * c, delta, st), r7 = load8<Prod>(p + 7 * c, delta, st);
      transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
      float* q = tile + t * ld + n;
      _mm256_storeu_ps(q, r0);
      _mm256_storeu_ps(q + ld, r1);
      _mm256_storeu_ps(q + 2 * ld, r2);
      _mm256_storeu_ps(q + 3 * ld, r3);
      _mm256_storeu_ps(q + 4 * ld, r4);
      _mm256_storeu_ps(q + 5 * ld, r5);
      _mm256_storeu_ps(q + 6 * ld, r6);
      _mm256_storeu_ps(q + 7 * ld, r7);
    }
  }
}

inline void scatter8(const float* tile, int64_t ld, const Geometry& g, int64_t n1, int64_t t1, float* start) {
  const int64_t c = g.cross, st = g.step;
  for (int64_t n = 0; n < n1; n += 8) {
    for (int64_t t = 0; t < t1; t += 8) {
      const float* q = tile + t * ld + n;
      __m256 r0 = _mm256_loadu_ps(q), r1 = _mm256_loadu_ps(q + ld);
      __m256 r2 = _mm256_loadu_ps(q + 2 * ld), r3 = _mm256_loadu_ps(q + 3 * ld);
      __m256 r4 = _mm256_loadu_ps(q + 4 * ld), r5 = _mm256_loadu_ps(q + 5 * ld);
      __m256 r6 = _mm256_loadu_ps(q + 6 * ld), r7 = _mm256_loadu_ps(q + 7 * ld);
      transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
      float* p = start + n * c + t * st;
      store_steps8(p, st, r0);
      store_steps8(p + c, st, r1);
      store_steps8(p + 2 * c, st, r2);
      store_steps8(p + 3 * c, st, r3);
      store_steps8(p + 4 * c, st, r4);
      store_steps8(p + 5 * c, st, r5);
      store_steps8(p + 6 * c, st, r6);
      store_steps8(p + 7 * c, st, r7);
    }
  }
}
#endif

// gather() for floats, of the first `rows` rows and `count` lines (multiples of 4).
template <bool Prod>
inline void gather_fast(const float* start, int64_t delta, const Geometry& g, int64_t rows, int64_t count,
                        float* tile, int64_t ld) {
#if GSPN_KERNEL_PASS == 2
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
#if GSPN_KERNEL_PASS == 2
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

// ---- forward ----

// The line kernels take restrict-qualified parameters: that is what lets GCC vectorise them.
// HasLam false: x already holds lam * x.
template <bool HasLam, typename T>
void forward_line(const T* __restrict__ x, const T* __restrict__ lam, const T* __restrict__ a,
                  const T* __restrict__ b, const T* __restrict__ c, const T* __restrict__ prev,
                  T* __restrict__ cur, T* __restrict__ h, int64_t N) {
  for (int64_t n = 0; n < N; ++n) {
    const T v = (HasLam ? lam[n] * x[n] : x[n]) + a[n] * prev[n] + b[n] * prev[n + 1] + c[n] * prev[n + 2];
    cur[n + 1] = v;
    h[n] = v;
  }
}

template <typename T>
struct ForwardState {  // one channel's previous line, and room for the next
  explicit ForwardState(int64_t n) : prev(n), cur(n) {}
  Padded<T> prev, cur;
};

// Scan `count` lines, the first being scan step s0; line t of each operand starts at p + t * stride.
template <typename T>
void forward_lines(const T* x, const T* lam, const T* a, const T* b, const T* c, T* h, int64_t stride,
                   int64_t s0, int64_t count, int64_t N, int64_t chunk, ForwardState<T>& st) {
  for (int64_t t = 0; t < count; ++t) {
    if (restarts(s0 + t, chunk)) st.prev.clear();
    const int64_t o = t * stride;
    if (lam) forward_line<true>(x + o, lam + o, a + o, b + o, c + o, st.prev.data(), st.cur.data(), h + o, N);
    else forward_line<false>(x + o, lam, a + o, b + o, c + o, st.prev.data(), st.cur.data(), h + o, N);
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

// The state gradient d of one line (dh plus what flows back from the next line) and from it dx, dlam
// and the weight gradients, which are added to what is there when Accumulate.
template <bool Accumulate, typename T>
void backward_line(const T* __restrict__ dh, const T* __restrict__ x, const T* __restrict__ lam,
                   const T* __restrict__ ga, const T* __restrict__ gb, const T* __restrict__ gc,
                   const T* __restrict__ hprev, T* __restrict__ d, T* __restrict__ dx, T* __restrict__ dlam,
                   T* __restrict__ da, T* __restrict__ db, T* __restrict__ dc, int64_t N) {
  for (int64_t n = 0; n < N; ++n) {
    const T dn = dh[n] + ga[n + 2] + gb[n + 1] + gc[n];
    d[n + 1] = dn;
    dx[n] = lam[n] * dn;
    dlam[n] = x[n] * dn;
    da[n] = (Accumulate ? da[n] : T(0)) + dn * hprev[n];
    db[n] = (Accumulate ? db[n] : T(0)) + dn * hprev[n + 1];
    dc[n] = (Accumulate ? dc[n] : T(0)) + dn * hprev[n + 2];
  }
}

// What flows back from a line to the one before it, per weight: ga[n + 1] = a[n] * d[n + 1], ...
template <typename T>
void flow_back(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c, const T* __restrict__ d,
               T* __restrict__ ga, T* __restrict__ gb, T* __restrict__ gc, int64_t N) {
  for (int64_t n = 1; n <= N; ++n) {
    ga[n] = a[n - 1] * d[n];
    gb[n] = b[n - 1] * d[n];
    gc[n] = c[n - 1] * d[n];
  }
}

template <typename T>
struct BackwardState {  // one channel's gradient flowing back, and scratch lines
  explicit BackwardState(int64_t n) : ga(n), gb(n), gc(n), hprev(n), d(n) {}
  void stop_flow() {
    ga.clear();
    gb.clear();
    gc.clear();
  }
  // ga, gb, gc: the next line's weights times its state gradient, i.e. what flows back to this line
  Padded<T> ga, gb, gc, hprev, d;
};

// Scan `count` lines backwards, the first being scan step s0; line t of each operand starts at
// p + t * stride. The line of h before line 0 is read unless s0 restarts.
template <typename T>
void backward_lines(const T* dh, const T* x, const T* lam, const T* a, const T* b, const T* c, const T* h,
                    T* dx, T* dlam, T* da, T* db, T* dc, bool accumulate, int64_t stride, int64_t s0,
                    int64_t count, int64_t N, int64_t chunk, BackwardState<T>& st) {
  for (int64_t t = count - 1; t >= 0; --t) {
    const int64_t o = t * stride;
    const bool restart = restarts(s0 + t, chunk);
    if (restart) st.hprev.clear();
    else std::copy(h + o - stride, h + o - stride + N, st.hprev.data() + 1);
    (accumulate ? backward_line<true, T> : backward_line<false, T>)(
        dh + o, x + o, lam + o, st.ga.data(), st.gb.data(), st.gc.data(), st.hprev.data(), st.d.data(), dx + o,
        dlam + o, da + o, db + o, dc + o, N);
    if (restart) {  // the line before this one ends a chunk: it receives nothing from here
      st.stop_flow();
    } else {
      flow_back(a + o, b + o, c + o, st.d.data(), st.ga.data(), st.gb.data(), st.gc.data(), N);
    }
  }
}

// One unit: like forward_unit, and the weight gradients summed over its channels into da, db, dc.
template <typename T>
void backward_unit(const T* dh, const T* x, const T* lam, const T* a, const T* b, const T* c, const T* h, T* dx,
                   T* dlam, T* da, T* db, T* dc, int64_t channels, int64_t plane, const Geometry& g,
                   int64_t chunk, std::vector<BackwardState<T>>& states, Tiles<T>& tiles) {
  const int64_t stride = g.in_place() ? g.step : tiles.ld;
  for (int64_t k = 0; k < channels; ++k) states[k].stop_flow();  // nothing flows into the last line
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

// ---- whole ops, one per instruction set ----

template <typename T>
void forward_all(const T* px, const T* pl, const T* pa, const T* pb, const T* pc, T* ph, const Units& units,
                 int64_t plane, const Geometry& geo, int64_t chunk) {
  at::parallel_for(0, units.count(), 1, [&](int64_t begin, int64_t end) {
    std::vector<ForwardState<T>> states(units.max_channels(), ForwardState<T>(geo.N));
    Tiles<T> tiles(6, geo);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t xo = units.first_channel(u) * plane, wo = units.pair(u) * plane;
      forward_unit(px + xo, pl + xo, pa + wo, pb + wo, pc + wo, ph + xo, units.channels(u), plane, geo, chunk, states,
                   tiles);
    }
  });
}

template <typename T>
void backward_all(const T* pdh, const T* px, const T* pl, const T* pa, const T* pb, const T* pc, const T* ph, T* pdx,
                  T* pdl, T* pda, T* pdb, T* pdc, const Units& units, int64_t plane, const Geometry& geo,
                  int64_t chunk) {
  at::parallel_for(0, units.count(), 1, [&](int64_t begin, int64_t end) {
    std::vector<BackwardState<T>> states(units.max_channels(), BackwardState<T>(geo.N));
    Tiles<T> tiles(12, geo);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t xo = units.first_channel(u) * plane, wo = units.pair(u) * plane, go = u * plane;
      backward_unit(pdh + xo, px + xo, pl + xo, pa + wo, pb + wo, pc + wo, ph + xo, pdx + xo, pdl + xo, pda + go,
                    pdb + go, pdc + go, units.channels(u), plane, geo, chunk, states, tiles);
    }
  });
}

#endif  // GSPN_KERNEL_PASS
