// A CPU stand-in for the parts of the CUDA runtime the kernels in csrc/cuda use, so that their
// source compiles as host C++ (g++, no nvcc) and runs on the CPU, strictly:
//
// - every thread of a block is a real std::thread; `__syncthreads()` is a real barrier that also
//   checks that all threads of the block reach the same barrier (same source line), and that none
//   leaves the kernel while others wait at a barrier;
// - dynamic shared memory is a fresh allocation of exactly the launch size per block, poisoned with
//   NaN bytes (0xFF) and followed by a guard zone that is checked after the block;
// - launches check the block size and the dynamic shared memory against the limits (the kernel's
//   cudaFuncAttributeMaxDynamicSharedMemorySize, the device's opt-in maximum), like a GPU;
// - half and bfloat16 are 16-bit storage types without implicit conversions, converted with
//   round-to-nearest-even.
//
// The harness (harness.py) rewrites the two CUDA-only spellings of the kernel source before
// compiling it: `kernel<<<grid, block, smem, stream>>>(args)` becomes
// `gspn_emu::launch(kernel, grid, block, smem, stream)(args)`, and `extern __shared__ T name[];`
// becomes a pointer to this block's dynamic shared memory.
//
// What this cannot prove: the GPU memory model beyond barriers (warp-synchronous code, fences,
// visibility without a barrier), real fp16/bf16 intrinsics and fused multiply-adds, register
// limits and spills, timing. Blocks of one launch run one after another.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __syncthreads() ::gspn_emu::sync_threads(__LINE__)

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;  // written before a launch's threads start, read-only while they run

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

// ---- runtime API: errors, device attributes, kernel attributes
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
using cudaStream_t = struct CUstream_st*;
enum cudaDeviceAttr {
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

namespace gspn_emu {

// The emulated device (an H100 by default); the harness may shrink it to reach fallback plans.
struct Device {
  int shared_optin = 232448;       // bytes of dynamic shared memory one block may opt in to
  int shared_per_sm = 233472;
  int sm_count = 132;
};
inline Device device;
inline cudaError_t last_error = cudaSuccess;
inline std::string last_message;
inline std::map<const void*, int> shared_attribute;  // kernel -> opted-in dynamic shared bytes
#ifdef __SANITIZE_ADDRESS__
constexpr size_t kGuardBytes = 0;  // AddressSanitizer itself guards the exact-size allocation
#else
constexpr size_t kGuardBytes = 64 * 1024;  // more than one line of the longest cross axis
#endif
constexpr int kDefaultShared = 48 * 1024;

inline void set_error(cudaError_t err, const std::string& message) {
  if (last_error == cudaSuccess) {
    last_error = err;
    last_message = message;
  }
}

struct BarrierMismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One block's barrier. Sites: a source line for __syncthreads, -1 for leaving the kernel.
class BlockBarrier {
 public:
  explicit BlockBarrier(int threads) : threads_(threads) {}

  void arrive(int site) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (failed_) throw BarrierMismatch(message_);
    if (waiting_ == 0) {
      site_ = site;
    } else if (site != site_) {
      failed_ = true;
      message_ = "threads of block " + std::to_string(blockIdx.x) + " reached different barriers (" +
                 describe(site_) + " and " + describe(site) + ")";
      cv_.notify_all();
      throw BarrierMismatch(message_);
    }
    if (++waiting_ == threads_) {
      waiting_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    const long generation = generation_;
    cv_.wait(lock, [&] { return generation_ != generation || failed_; });
    if (failed_ && generation_ == generation) throw BarrierMismatch(message_);
  }

  bool failed() {
    std::lock_guard<std::mutex> lock(mutex_);
    return failed_;
  }
  std::string message() {
    std::lock_guard<std::mutex> lock(mutex_);
    return message_;
  }

 private:
  static std::string describe(int site) {
    return site < 0 ? std::string("the end of the kernel") : "__syncthreads at line " + std::to_string(site);
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  int threads_, waiting_ = 0, site_ = 0;
  long generation_ = 0;
  bool failed_ = false;
  std::string message_;
};

inline thread_local BlockBarrier* current_barrier = nullptr;
inline thread_local unsigned char* current_shared = nullptr;

inline void sync_threads(int line) { current_barrier->arrive(line); }
inline unsigned char* dynamic_shared() { return current_shared; }

// Runs grid.x * grid.y * grid.z blocks one after another on block.x * block.y * block.z threads.
template <typename... Params> class Launch {
 public:
  Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared)
      : kernel_(kernel), grid_(grid), block_(block), shared_(shared) {}

  template <typename... Args> void operator()(Args&&... args) {
    const std::tuple<Params...> params(static_cast<Params>(args)...);
    const unsigned long long threads = 1ull * block_.x * block_.y * block_.z;
    const unsigned long long blocks = 1ull * grid_.x * grid_.y * grid_.z;
    auto found = shared_attribute.find(reinterpret_cast<const void*>(kernel_));
    const size_t allowed = found == shared_attribute.end() ? kDefaultShared : found->second;
    if (threads == 0 || threads > 1024 || block_.z > 64 || grid_.y > 65535 || grid_.z > 65535 || blocks == 0) {
      set_error(cudaErrorInvalidConfiguration, "launch: bad grid or block size");
      return;
    }
    if (shared_ > allowed) {
      set_error(cudaErrorInvalidValue, "launch: " + std::to_string(shared_) + " bytes of dynamic shared memory, " +
                                           std::to_string(allowed) + " allowed");
      return;
    }
    blockDim = block_;
    gridDim = grid_;
    BlockBarrier barrier(static_cast<int>(threads));
    std::vector<unsigned char> shared(shared_ + kGuardBytes);
    std::string failure;
    std::mutex failure_mutex;
    auto body = [&](unsigned t) {
      current_barrier = &barrier;
      current_shared = shared.data();
      threadIdx = dim3(t % block_.x, t / block_.x % block_.y, t / (block_.x * block_.y));
      try {
        for (unsigned long long q = 0; q < blocks; ++q) {
          blockIdx = dim3(q % grid_.x, q / grid_.x % grid_.y, q / (1ull * grid_.x * grid_.y));
          if (t == 0 && !shared.empty()) std::memset(shared.data(), 0xFF, shared.size());  // NaN in every float type
          barrier.arrive(-2);
          std::tuple<Params...> mine = params;  // each thread its own copy of the parameters
          std::apply(kernel_, mine);
          barrier.arrive(-1);
          if (t == 0) {
            for (size_t k = shared_; k < shared.size(); ++k) {
              if (shared[k] != 0xFF) {
                std::lock_guard<std::mutex> lock(failure_mutex);
                failure = "block " + std::to_string(q) + " wrote past its dynamic shared memory";
                break;
              }
            }
          }
        }
      } catch (const BarrierMismatch& err) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (failure.empty()) failure = err.what();
      }
    };
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(body, t);
    for (auto& th : pool) th.join();
    if (!failure.empty()) set_error(cudaErrorLaunchFailure, failure);
  }

 private:
  void (*kernel_)(Params...);
  dim3 grid_, block_;
  size_t shared_;
};

template <typename... Params>
Launch<Params...> launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared = 0,
                         cudaStream_t = nullptr) {
  return Launch<Params...>(kernel, grid, block, shared);
}

}  // namespace gspn_emu

inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = gspn_emu::device.shared_optin; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = gspn_emu::device.shared_per_sm; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = gspn_emu::device.sm_count; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
template <typename Kernel> cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute, int value) {
  if (value < 0 || value > gspn_emu::device.shared_optin) return cudaErrorInvalidValue;
  gspn_emu::shared_attribute[reinterpret_cast<const void*>(kernel)] = value;
  return cudaSuccess;
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t err = gspn_emu::last_error;
  gspn_emu::last_error = cudaSuccess;
  return err;
}
inline const char* cudaGetErrorString(cudaError_t err) {
  return err == cudaSuccess ? "no error" : gspn_emu::last_message.c_str();
}

// ---- 16-bit floating-point storage types (cuda_fp16.h, cuda_bf16.h)
struct __half {
  uint16_t bits;
};
struct __nv_bfloat16 {
  uint16_t bits;
};

inline float __half2float(__half v) {
  _Float16 f;
  std::memcpy(&f, &v.bits, 2);
  return static_cast<float>(f);
}
inline __half __float2half_rn(float v) {
  const _Float16 f = static_cast<_Float16>(v);  // IEEE conversion: round to nearest even
  __half out;
  std::memcpy(&out.bits, &f, 2);
  return out;
}
inline float __bfloat162float(__nv_bfloat16 v) {
  const uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<uint16_t>(u >> 16)};
}
