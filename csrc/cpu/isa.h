// The instruction set the CPU kernels run with, chosen once at run time. per_isa.h compiles a kernel
// header for each; GSPN_DISPATCH calls the chosen build. Nothing is compiled with -march=native, so
// the library runs on any CPU of its architecture.
#pragma once

#include <cstdlib>
#include <string_view>

#ifdef __SSE2__
#include <immintrin.h>
#endif

// AVX2 and AVX-512 builds need GCC's target pragmas on x86-64; elsewhere there is only the baseline.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GSPN_X86_BUILDS 1
#else
#define GSPN_X86_BUILDS 0
#endif

// Like everything of the CPU kernels, headers included, in gspn_cpu's unnamed namespace: each op
// is one translation unit, and internal linkage keeps the library from exporting these helpers and
// calling them through the PLT.
namespace gspn_cpu {
namespace {

enum class Isa { baseline, avx2, avx512 };

// The widest the CPU has, or the narrower one GSPN_CPU_ISA names ("baseline", "avx2"), so that each
// build can be tested on one machine.
inline Isa cpu_isa() {
  static const Isa isa = [] {
#if GSPN_X86_BUILDS
    const char* env = std::getenv("GSPN_CPU_ISA");
    const std::string_view wanted = env ? env : "";
    if (wanted == "baseline" || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
      return Isa::baseline;
    }
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
    return avx512 && wanted != "avx2" ? Isa::avx512 : Isa::avx2;
#else
    return Isa::baseline;
#endif
  }();
  return isa;
}

}  // namespace
}  // namespace gspn_cpu

// Calls the build of kernel `fn` for cpu_isa(); used inside namespace gspn_cpu, after per_isa.h.
#define GSPN_DISPATCH(fn, ...)                                           \
  (cpu_isa() == Isa::avx512 ? avx512::fn(__VA_ARGS__)                    \
   : cpu_isa() == Isa::avx2 ? avx2::fn(__VA_ARGS__) : base::fn(__VA_ARGS__))
