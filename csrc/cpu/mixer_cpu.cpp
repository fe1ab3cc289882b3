#ifndef GSPN_MIXER_PASS
// The GSPN mixer's propagation on CPU, four directions fused (docs/mixer.md; docs/design.md §1.2-1.5):
//
//   y = sum_k merge[k] * (u_k * h_k + d_k * x)
//
// with h_k the line scan of direction k over lam_k * x under the weights normalised from the logits
// a~, b~, c~ (sigmoid, border terms left out, divided by the sum). The inputs are read where the
// projection wrote them: `params` (B, 4 * Q, H, W), per direction a~ b~ c~ (G planes each), lam, u
// and optionally d (C planes each); or, with `proj` (4 * Q, R), the low-rank proxy z (B, R, H, W)
// from which each work unit computes just the planes it needs (the full map is never stored).
//
// Work units are (batch, weight group, share of the group's channels), as in propagate_cpu.cpp; the
// threads take them one at a time from a shared counter, so a thread slowed down by other processes
// on the machine holds up no one.
// A unit walks the four directions in turn with everything it touches in per-thread scratch of a
// few planes. Vertical scans ("tb", "bt") run on the planes in place, a line being a row; horizontal
// ones ("lr", "rl") on transposed scratch copies, a line being a column. The hidden state lines are
// padded with a zero at each end, so no line kernel has a boundary branch. The backward recomputes
// the normalised weights, and the hidden states too unless the forward saved them, then runs the
// reverse scan and writes every gradient in the layout of its input (or, with proj, contracts the
// parameter gradients into dz and dproj, see Units::slices) without any zero-filled or stacked
// temporary.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

namespace {
namespace mixer {

constexpr int kDirections = 4;  // lr, rl, tb, bt

// Direction k scans L lines of N positions; line s of the scan is line `line(s)` of the line-major
// layout (the plane for vertical scans, its transpose for horizontal ones).
struct Direction {
  bool horizontal, reversed;
  int64_t L, N;
  int64_t line(int64_t s) const { return reversed ? L - 1 - s : s; }
};

inline Direction direction(int k, int64_t H, int64_t W) {
  const bool horizontal = k < 2;
  return {horizontal, k == 1 || k == 3, horizontal ? W : H, horizontal ? H : W};
}

inline bool restarts(int64_t s, int64_t chunk) { return s == 0 || (chunk > 0 && s % chunk == 0); }

// Rows of one direction's block of Q parameter planes.
struct Layout {
  int64_t C, G, Q;
  bool skip;
  int64_t a(int64_t g) const { return g; }
  int64_t b(int64_t g) const { return G + g; }
  int64_t c(int64_t g) const { return 2 * G + g; }
  int64_t lam(int64_t ch) const { return 3 * G + ch; }
  int64_t u(int64_t ch) const { return 3 * G + C + ch; }
  int64_t d(int64_t ch) const { return 3 * G + 2 * C + ch; }
};

// Work units (part, b, g); part p of group g owns channels [first, first + count) of the group.
struct Units {
  Units(int64_t B, int64_t G, int64_t K)
      : G(G), K(K), pairs(B * G), parts(std::min<int64_t>(K, (at::get_num_threads() + pairs - 1) / pairs)) {}
  int64_t count() const { return parts * pairs; }
  int64_t batch(int64_t u) const { return (u % pairs) / G; }
  int64_t group(int64_t u) const { return (u % pairs) % G; }
  int64_t part(int64_t u) const { return u / pairs; }
  int64_t first(int64_t u) const { return group(u) * K + part(u) * K / parts; }  // a channel of x
  int64_t channels(int64_t u) const { return (part(u) + 1) * K / parts - part(u) * K / parts; }
  int64_t max_channels() const { return (K + parts - 1) / parts; }
  int64_t index(int64_t part, int64_t b, int64_t g) const { return part * pairs + b * G + g; }
  // With proj, the backward's work items: blocks of groups, each with all its units, summing into
  // its own slice of dz and (its groups' rows alone) straight into dproj; several items per thread,
  // so that a thread slowed down by other processes holds up no one, the sums in a fixed order.
  int64_t slices() const { return std::min<int64_t>(G, 8 * at::get_num_threads()); }
  int64_t G, K, pairs, parts;
};

// Everything a unit needs to know, shared by all units.
template <typename T>
struct Problem {
  int64_t B, C, H, W, plane, chunk, R;
  Layout layout;
  const T *x, *params, *merge, *proj;  // proj null: params is the full map, else the proxy z
  const T* gy;                         // backward only
  const T* states;                     // saved hidden states (B, 4, C, H, W) or null
};

// Where the backward writes. dparams: the parameter gradients when there is no proj; dz (one slice
// per block of groups) and dproj when there is; dlogits: (parts, B, 4, 3G, H, W) when groups are
// split in parts.
template <typename T>
struct Outputs {
  T* dx;
  T* dparams;
  double* dmerge;  // (units, 4)
  T* dz;           // (slices, B, R, H, W)
  double* dproj;   // (4Q, R)
  T* dlogits;
};

}  // namespace mixer
}  // namespace

#define GSPN_MIXER_PASS 1
namespace {
namespace mixer {
namespace base {
#include __FILE__
}  // namespace base
}  // namespace mixer
}  // namespace
#undef GSPN_MIXER_PASS

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GSPN_MIXER_PASS 2
#define GSPN_MIXER_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace {
namespace mixer {
namespace avx2 {
#include __FILE__
}  // namespace avx2
}  // namespace mixer
}  // namespace
#pragma GCC pop_options
#undef GSPN_MIXER_PASS

#define GSPN_MIXER_PASS 3
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,prefer-vector-width=256")
namespace {
namespace mixer {
namespace avx512 {
#include __FILE__
}  // namespace avx512
}  // namespace mixer
}  // namespace
#pragma GCC pop_options
#undef GSPN_MIXER_PASS
#endif

namespace {

// The instruction set the kernels run with: the widest the CPU has, or the one GSPN_CPU_ISA names
// ("baseline", "avx2"; as in propagate_cpu.cpp), so that each build can be tested on any machine.
enum class Isa { baseline, avx2, avx512 };

Isa mixer_isa() {
  static const Isa isa = [] {
#ifdef GSPN_MIXER_AVX2
    const std::string_view wanted = std::getenv("GSPN_CPU_ISA") ? std::getenv("GSPN_CPU_ISA") : "";
    if (wanted == "baseline" || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return Isa::baseline;
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
    return avx512 && wanted != "avx2" ? Isa::avx512 : Isa::avx2;
#else
    return Isa::baseline;
#endif
  }();
  return isa;
}

// Calls the kernel `name` of the instruction set chosen by mixer_isa().
#ifdef GSPN_MIXER_AVX2
#define GSPN_MIXER_DISPATCH(name, ...)                                                      \
  (mixer_isa() == Isa::avx512 ? mixer::avx512::name(__VA_ARGS__)                            \
   : mixer_isa() == Isa::avx2 ? mixer::avx2::name(__VA_ARGS__) : mixer::base::name(__VA_ARGS__))
#else
#define GSPN_MIXER_DISPATCH(name, ...) mixer::base::name(__VA_ARGS__)
#endif

void check_tensor(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.is_contiguous() && t.scalar_type() == x.scalar_type() && t.device().is_cpu(),
              "gspn_cpu mixer: `", name, "` must be a contiguous CPU tensor of x's dtype");
}

template <typename T>
mixer::Problem<T> problem(const at::Tensor& x, const at::Tensor& params, const at::Tensor& merge,
                          const std::optional<at::Tensor>& proj, int64_t groups, int64_t chunk, bool skip) {
  for (auto [t, name] : {std::pair{x, "x"}, {params, "params"}, {merge, "merge"}}) check_tensor(t, x, name);
  TORCH_CHECK(x.dim() == 4 && params.dim() == 4 && merge.numel() == mixer::kDirections, "gspn_cpu mixer: bad ranks");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(groups > 0 && C % groups == 0, "gspn_cpu mixer: groups must divide C");
  const mixer::Layout layout{C, groups, 3 * groups + (skip ? 3 : 2) * C, skip};
  int64_t R = 0;
  if (proj) {
    check_tensor(*proj, x, "proj");
    R = proj->size(1);
    TORCH_CHECK(proj->dim() == 2 && proj->size(0) == mixer::kDirections * layout.Q &&
                    params.sizes() == at::IntArrayRef({B, R, H, W}),
                "gspn_cpu mixer: with proj (4Q, R), params must be the proxy (B, R, H, W)");
  } else {
    TORCH_CHECK(params.sizes() == at::IntArrayRef({B, mixer::kDirections * layout.Q, H, W}),
                "gspn_cpu mixer: params must be (B, 4Q, H, W)");
  }
  return {B, C, H, W, H * W, chunk, R, layout, x.data_ptr<T>(), params.data_ptr<T>(), merge.data_ptr<T>(),
          proj ? proj->data_ptr<T>() : nullptr, nullptr, nullptr};
}

std::tuple<at::Tensor, at::Tensor> mixer_forward(const at::Tensor& x, const at::Tensor& params,
                                                 const at::Tensor& merge, const std::optional<at::Tensor>& proj,
                                                 int64_t groups, int64_t chunk, bool skip, bool save_states) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor y = at::empty_like(x);
  at::Tensor states = save_states ? at::empty({B, mixer::kDirections, C, H, W}, x.options()) : at::empty({0}, x.options());
  if (x.numel() == 0) return {y, states};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gspn_cpu_mixer_forward", [&] {
    const auto pr = problem<scalar_t>(x, params, merge, proj, groups, chunk, skip);
    scalar_t* ps = save_states ? states.data_ptr<scalar_t>() : nullptr;
    GSPN_MIXER_DISPATCH(forward_all, pr, y.data_ptr<scalar_t>(), ps);
  });
  return {y, states};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mixer_backward(
    const at::Tensor& gy, const at::Tensor& x, const at::Tensor& params, const at::Tensor& merge,
    const std::optional<at::Tensor>& proj, const at::Tensor& states, int64_t groups, int64_t chunk, bool skip) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  if (x.numel() == 0) {
    return {at::empty_like(x), at::zeros_like(params), at::zeros_like(merge),
            proj ? at::zeros_like(*proj) : at::empty({0}, x.options())};
  }
  check_tensor(gy, x, "gy");
  TORCH_CHECK(gy.sizes() == x.sizes(), "gspn_cpu mixer: gy must have x's shape");
  const bool saved = states.numel() > 0;
  if (saved) {
    check_tensor(states, x, "states");
    TORCH_CHECK(states.sizes() == at::IntArrayRef({B, mixer::kDirections, C, H, W}), "gspn_cpu mixer: bad states");
  }
  at::Tensor dx = at::empty_like(x);
  at::Tensor dparams = at::empty_like(params);
  at::Tensor dproj, dmerge;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gspn_cpu_mixer_backward", [&] {
    auto pr = problem<scalar_t>(x, params, merge, proj, groups, chunk, skip);
    pr.gy = gy.data_ptr<scalar_t>();
    pr.states = saved ? states.data_ptr<scalar_t>() : nullptr;
    const mixer::Units units(B, groups, C / groups);
    // What units share is written apart and summed here: the merge gradient per unit; with proj, dz
    // per block of groups; without proj, the logit gradients per part when a group is split.
    at::Tensor dmerge_units = at::zeros({units.count(), mixer::kDirections}, x.options().dtype(at::kDouble));
    at::Tensor dz_slices, dproj_sum, dlogits_parts;
    if (proj) {
      dz_slices = at::zeros({units.slices(), B, pr.R, H, W}, x.options());
      dproj_sum = at::zeros({proj->size(0), pr.R}, x.options().dtype(at::kDouble));
    } else if (units.parts > 1) {
      dlogits_parts = at::empty({units.parts, B, mixer::kDirections, 3 * groups, H, W}, x.options());
    }
    const mixer::Outputs<scalar_t> out{dx.data_ptr<scalar_t>(),
                                       proj ? nullptr : dparams.data_ptr<scalar_t>(),
                                       dmerge_units.data_ptr<double>(),
                                       proj ? dz_slices.data_ptr<scalar_t>() : nullptr,
                                       proj ? dproj_sum.data_ptr<double>() : nullptr,
                                       dlogits_parts.defined() ? dlogits_parts.data_ptr<scalar_t>() : nullptr};
    GSPN_MIXER_DISPATCH(backward_all, pr, units, out);
    if (proj) {
      dparams = units.slices() > 1 ? dz_slices.sum(0) : dz_slices[0];
      dproj = dproj_sum.to(x.scalar_type());
    } else {
      dproj = at::empty({0}, x.options());
      if (units.parts > 1) {
        dparams.view({B, mixer::kDirections, pr.layout.Q, H, W}).narrow(2, 0, 3 * groups).copy_(dlogits_parts.sum(0));
      }
    }
    dmerge = dmerge_units.sum(0).to(x.scalar_type());
  });
  return {dx, dparams, dmerge, dproj};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gspn_cpu, m) {
  m.def("mixer_forward(Tensor x, Tensor params, Tensor merge, Tensor? proj, int groups, int chunk, bool skip, "
        "bool save_states) -> (Tensor, Tensor)");
  m.def("mixer_backward(Tensor gy, Tensor x, Tensor params, Tensor merge, Tensor? proj, Tensor states, int groups, "
        "int chunk, bool skip) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gspn_cpu, CPU, m) {
  m.impl("mixer_forward", &mixer_forward);
  m.impl("mixer_backward", &mixer_backward);
}

#else  // GSPN_MIXER_PASS: the kernels, compiled once per instruction set

// ---- elementwise pieces ----

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

#if GSPN_MIXER_PASS >= 2
// An 8 x 8 block of floats transposed in registers (the horizontal scans transpose every plane
// they touch, so this is one of the kernel's hottest loops).
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; i += 2) {  // pairs of rows interleaved: (a0 b0 a1 b1 | a4 b4 a5 b5), (a2 b2 ...)
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {  // quads: (a0 b0 c0 d0 | a4 b4 c4 d4), (a1 ...), (a2 ...), (a3 ...)
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {  // the 128-bit halves of the two quads: columns i and i + 4
    _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

template <>
void transpose<float>(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  if (rows < 8 || cols < 8) return transpose_scalar(src, lds, rows, cols, dst, ldd);
  // blocks at multiples of 8, and a last one flush with the edge that overlaps the one before
  for (int64_t r = 0; r < rows; r = r + 8 < rows && r + 16 > rows ? rows - 8 : r + 8) {
    for (int64_t c = 0; c < cols; c = c + 8 < cols && c + 16 > cols ? cols - 8 : c + 8) {
      transpose8x8(src + r * lds + c, lds, dst + c * ldd + r, ldd);
    }
  }
}
#endif

constexpr int64_t kPixelTile = 512;  // pixels per tile of the projection and its gradient

// Vectors through GCC's vector extensions: a zmm register (16 floats, 8 doubles) in the AVX-512
// pass, a ymm one in the AVX2 pass, an xmm one in the baseline pass (its ABI has no wider vectors). The projection kernels below keep
// several independent accumulators in them, so that consecutive FMAs do not wait on each other.
#if GSPN_MIXER_PASS == 3
constexpr int64_t kVectorBytes = 64;
#elif GSPN_MIXER_PASS == 2
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
#if GSPN_MIXER_PASS == 3
    if constexpr (std::is_same_v<T, float>) return (type)_mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p);
    if constexpr (std::is_same_v<T, double>) return (type)_mm512_maskz_loadu_pd(__mmask8((1u << n) - 1), p);
#elif GSPN_MIXER_PASS == 2
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
#if GSPN_MIXER_PASS == 3
    if constexpr (std::is_same_v<T, float>) return _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), (__m512)v);
    if constexpr (std::is_same_v<T, double>) return _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1), (__m512d)v);
#elif GSPN_MIXER_PASS == 2
    if constexpr (std::is_same_v<T, float>) return _mm256_maskstore_ps(p, mask(n), (__m256)v);
    if constexpr (std::is_same_v<T, double>) return _mm256_maskstore_pd(p, mask(n), (__m256d)v);
#endif
    T lanes[kLanes];
    store(lanes, v);
    std::copy(lanes, lanes + n, p);
  }
#if GSPN_MIXER_PASS == 2
  static inline __m256i mask(int64_t n) {  // all ones in the first n lanes of T
    if constexpr (sizeof(T) == 4) return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
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

// The Stability-Context normalisation of one plane of logits (docs/design.md §1.2), in the plane's layout.
// The cross axis is the row index for horizontal scans and the column index for vertical ones.
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

// ---- the scans on line-major arrays (line l of N values at l * N; hidden lines padded: l * (N + 2)) ----

template <typename T>
inline void forward_line(const T* __restrict__ v, const T* __restrict__ a, const T* __restrict__ b,
                         const T* __restrict__ c, const T* __restrict__ prev, T* __restrict__ cur, int64_t N) {
  for (int64_t n = 0; n < N; ++n) cur[n] = v[n] + a[n] * prev[n] + b[n] * prev[n + 1] + c[n] * prev[n + 2];
}

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
    forward_line(v + l * N, wa + l * N, wb + l * N, wc + l * N, prev, cur + 1, N);
  }
}

// One line of the reverse scan: the state gradient d (what the line's output receives plus what
// flows back from the next line: fa, fb, fc, padded) and the weight gradients against hprev.
template <typename T>
inline void backward_line(const T* __restrict__ g, const T* __restrict__ fa, const T* __restrict__ fb,
                          const T* __restrict__ fc, const T* __restrict__ hprev, T* __restrict__ d,
                          T* __restrict__ dwa, T* __restrict__ dwb, T* __restrict__ dwc, int64_t N) {
  for (int64_t n = 0; n < N; ++n) {
    const T dn = g[n] + fa[n + 2] + fb[n + 1] + fc[n];
    d[n] = dn;
    dwa[n] += dn * hprev[n];
    dwb[n] += dn * hprev[n + 1];
    dwc[n] += dn * hprev[n + 2];
  }
}

template <typename T>
inline void flow_line(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
                      const T* __restrict__ d, T* __restrict__ fa, T* __restrict__ fb, T* __restrict__ fc, int64_t N) {
  for (int64_t n = 0; n < N; ++n) {
    fa[n + 1] = a[n] * d[n];
    fb[n + 1] = b[n] * d[n];
    fc[n + 1] = c[n] * d[n];
  }
}

template <typename T>
void scan_backward(const Direction& dir, int64_t chunk, const T* g, const T* wa, const T* wb, const T* wc,
                   const T* h, const T* zero, T* d, T* dwa, T* dwb, T* dwc, T* fa, T* fb, T* fc) {
  const int64_t N = dir.N, ld = N + 2;
  std::fill(fa, fa + ld, T(0));
  std::fill(fb, fb + ld, T(0));
  std::fill(fc, fc + ld, T(0));
  for (int64_t s = dir.L - 1; s >= 0; --s) {
    const int64_t o = dir.line(s) * N;
    const bool restart = restarts(s, chunk);
    const T* hprev = restart ? zero : h + dir.line(s - 1) * ld;
    backward_line(g + o, fa, fb, fc, hprev, d + o, dwa + o, dwb + o, dwc + o, N);
    if (restart) {  // the line before receives nothing from this one
      std::fill(fa, fa + ld, T(0));
      std::fill(fb, fb + ld, T(0));
      std::fill(fc, fc + ld, T(0));
    } else {
      flow_line(wa + o, wb + o, wc + o, d + o, fa, fb, fc, N);
    }
  }
}

// ---- per-thread scratch and the planes of one unit ----

template <typename T>
struct Work {
  Work(int64_t H, int64_t W, int64_t slots, bool backward)
      : plane(H * W), padded(std::max(H * (W + 2), W * (H + 2))), line(std::max(H, W) + 2),
        wa(plane), wb(plane), wc(plane), v(plane), h(padded), t0(plane), t1(plane), t2(plane), zero(line, T(0)),
        d(backward ? plane : 0), dwa(backward ? plane : 0), dwb(backward ? plane : 0), dwc(backward ? plane : 0),
        fa(backward ? line : 0), fb(backward ? line : 0), fc(backward ? line : 0),
        acc(W), slots(slots * plane), dslots(backward ? slots * plane : 0) {
    if (backward) {
      for (auto& v : sig) v.resize(plane);
    }
  }
  int64_t plane, padded, line;
  std::vector<T> wa, wb, wc;  // line-major normalised weights of the current direction
  std::vector<T> v;           // line-major lam * x, or the gated output gradient
  std::vector<T> h;           // line-major padded hidden state of the current channel
  std::vector<T> t0, t1, t2;  // planes in the input layout
  std::vector<T> zero;        // the state before a scan or chunk start
  std::vector<T> d, dwa, dwb, dwc, fa, fb, fc;
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
  for (int64_t j = 0; j < nch; ++j) std::fill(y + (b * C + ch0 + j) * plane, y + (b * C + ch0 + j + 1) * plane, T(0));
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
  for (int64_t j = 0; j < nch; ++j) std::fill(out.dx + (b * C + ch0 + j) * plane, out.dx + (b * C + ch0 + j + 1) * plane, T(0));
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
                    w.d.data(), w.dwa.data(), w.dwb.data(), w.dwc.data(), w.fa.data(), w.fb.data(), w.fc.data());
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
        normalize_backward_plane<true>(w.sig[0].data(), w.sig[1].data(), w.sig[2].data(), w.t0.data(), w.t1.data(), w.t2.data(), W, H,
                                       W, ga, gb, gc);
      } else {
        normalize_backward_plane<false>(w.sig[0].data(), w.sig[1].data(), w.sig[2].data(), w.dwa.data(), w.dwb.data(), w.dwc.data(), W,
                                        H, W, ga, gb, gc);
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
  if (pr.proj) {  // work items: blocks of groups (Units::slices)
    const int64_t slices = units.slices();
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

#endif  // GSPN_MIXER_PASS
