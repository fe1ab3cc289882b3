// Compiles the kernel header named by GSPN_KERNELS once per instruction set, into the namespaces
// base, avx2 and avx512 inside gspn_cpu's unnamed namespace, for GSPN_DISPATCH (isa.h) to choose from.
// Inside the kernel header GSPN_AVX2 (AVX2 + FMA; also true in the AVX-512 build) and GSPN_AVX512
// say which build is being compiled. With GSPN_KERNELS_NO_AVX512 defined there is no AVX-512 build
// and avx512 names the AVX2 one; where there are no x86 builds, avx2 and avx512 name the baseline.
//
// Include it at file scope, once per kernel header, after every header the kernels use: the kernel
// header itself includes only other kernel headers (no include guards: each is compiled per build).
//
//   #define GSPN_KERNELS "propagate_kernels.h"
//   #include "per_isa.h"

#include "isa.h"

#define GSPN_AVX2 0
#define GSPN_AVX512 0
namespace gspn_cpu {
namespace {
namespace base {
#include GSPN_KERNELS
}  // namespace base
}  // namespace
}  // namespace gspn_cpu
#undef GSPN_AVX2
#undef GSPN_AVX512

#if GSPN_X86_BUILDS
#define GSPN_AVX2 1
#define GSPN_AVX512 0
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace gspn_cpu {
namespace {
namespace avx2 {
#include GSPN_KERNELS
}  // namespace avx2
}  // namespace
}  // namespace gspn_cpu
#pragma GCC pop_options
#undef GSPN_AVX512

#ifdef GSPN_KERNELS_NO_AVX512
namespace gspn_cpu {
namespace {
namespace avx512 = avx2;
}  // namespace
}  // namespace gspn_cpu
#else
// The compiler's own loops stay 256 bits wide (wider ones lower the clock on some CPUs for little
// gain); kernels that want zmm registers use them explicitly.
#define GSPN_AVX512 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,prefer-vector-width=256")
namespace gspn_cpu {
namespace {
namespace avx512 {
#include GSPN_KERNELS
}  // namespace avx512
}  // namespace
}  // namespace gspn_cpu
#pragma GCC pop_options
#undef GSPN_AVX512
#endif
#undef GSPN_AVX2

#else
namespace gspn_cpu {
namespace {
namespace avx2 = base;
namespace avx512 = base;
}  // namespace
}  // namespace gspn_cpu
#endif

#undef GSPN_KERNELS
#undef GSPN_KERNELS_NO_AVX512
