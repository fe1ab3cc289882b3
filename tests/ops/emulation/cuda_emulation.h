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
// - warp shuffles (`__shfl_sync`, `__shfl_up_sync`, `__shfl_down_sync`) are a real exchange between
//   the 32 lanes of a warp: every lane must name the full warp in the mask, the warp must be whole,
//   and all its lanes must reach the same shuffle (same source line); a lane waiting at a shuffle
//   while another lane of its warp waits at `__syncthreads` is reported, not left to hang;
// - asynchronous copies (`__pipeline_memcpy_async`, `__pipeline_commit`, `__pipeline_wait_prior`
//   of cuda_pipeline_primitives.h) are recorded and only performed when a wait retires their group,
//   so shared memory read before its wait still holds the NaN poison; sizes, alignment and the
//   destination's bounds are checked, and a kernel may not end with copies outstanding;
// - half and bfloat16 are 16-bit storage types without implicit conversions, converted with
//   round-to-nearest-even.
//
// The harness (harness.py) rewrites the two CUDA-only spellings of the kernel source before
// compiling it: `kernel<<<grid, block, smem, stream>>>(args)` becomes
// `gspn_emu::launch(kernel, grid, block, smem, stream)(args)`, and `extern __shared__ T name[];`
// becomes a pointer to this block's dynamic shared memory.
//
// What this cannot prove: the GPU memory model beyond barriers and shuffles (fences, visibility
// without a barrier, copies completing out of order inside a group), real fp16/bf16 intrinsics and fused multiply-adds, register
// limits and spills, timing. Blocks of one launch run one after another.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
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
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __syncthreads() ::gspn_emu::sync_threads(__LINE__)
#define __shfl_sync(mask, value, lane) ::gspn_emu::shuffle(__LINE__, mask, value, ::gspn_emu::Shuffle::Index, lane)
#define __shfl_up_sync(mask, value, delta) ::gspn_emu::shuffle(__LINE__, mask, value, ::gspn_emu::Shuffle::Up, delta)
#define __shfl_down_sync(mask, value, delta) \
  ::gspn_emu::shuffle(__LINE__, mask, value, ::gspn_emu::Shuffle::Down, delta)
constexpr int warpSize = 32;

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

// One block's synchronisation: its __syncthreads barrier and the shuffles of each of its warps.
// Sites: a source line for __syncthreads and shuffles, -1 for leaving the kernel, -2 for starting it.
class BlockSync {
 public:
  explicit BlockSync(int threads)
      : threads_(threads), where_(threads, kRunning), warps_((threads + 31) / 32) {}

  void arrive(int site) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (failed_) throw BarrierMismatch(message_);
    const int t = thread_index();
    if (waiting_ == 0) {
      site_ = site;
    } else if (site != site_) {
      fail_locked("threads of block " + std::to_string(blockIdx.x) + " reached different barriers (" +
                  describe(site_) + " and " + describe(site) + ")");
    }
    where_[t] = kAtBarrier;
    check_warp_locked(t / 32);
    if (++waiting_ == threads_) {
      waiting_ = 0;
      ++generation_;
      for (auto& w : where_) w = kRunning;
      cv_.notify_all();
      return;
    }
    const long generation = generation_;
    cv_.wait(lock, [&] { return generation_ != generation || failed_; });
    if (failed_ && generation_ == generation) throw BarrierMismatch(message_);
  }

  // The value lane `source` of this thread's warp passed to the same shuffle.
  template <typename V> V exchange(int site, unsigned mask, V value, int source) {
    static_assert(sizeof(V) <= sizeof(uint64_t), "shuffles move at most 8 bytes");
    std::unique_lock<std::mutex> lock(mutex_);
    if (failed_) throw BarrierMismatch(message_);
    const int t = thread_index(), w = t / 32, lane = t % 32;
    if (mask != 0xffffffffu)
      fail_locked("a shuffle at line " + std::to_string(site) + " names lanes " + std::to_string(mask) +
                  ", not the whole warp");
    if ((w + 1) * 32 > threads_)
      fail_locked("a shuffle at line " + std::to_string(site) + " in a warp of fewer than 32 threads");
    Warp& warp = warps_[w];
    if (warp.waiting == 0) {
      warp.site = site;
    } else if (site != warp.site) {
      fail_locked("lanes of warp " + std::to_string(w) + " reached different shuffles (lines " +
                  std::to_string(warp.site) + " and " + std::to_string(site) + ")");
    }
    const int parity = static_cast<int>(warp.generation & 1);
    std::memcpy(&warp.slots[parity][lane], &value, sizeof(V));
    where_[t] = kAtShuffle;
    check_warp_locked(w);
    if (++warp.waiting == 32) {
      warp.waiting = 0;
      ++warp.generation;
      for (int l = 0; l < 32; ++l) where_[w * 32 + l] = kRunning;
      cv_.notify_all();
    } else {
      const long generation = warp.generation;
      cv_.wait(lock, [&] { return warp.generation != generation || failed_; });
      if (failed_ && warp.generation == generation) throw BarrierMismatch(message_);
    }
    V out;  // read under the lock: the slots of this parity are rewritten only two exchanges later
    std::memcpy(&out, &warp.slots[parity][source], sizeof(V));
    return out;
  }

  void fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!failed_) {
      failed_ = true;
      message_ = message;
      cv_.notify_all();
    }
  }

 private:
  enum Where : char { kRunning, kAtBarrier, kAtShuffle };
  struct Warp {
    int waiting = 0, site = 0;
    long generation = 0;
    uint64_t slots[2][32] = {};
  };

  static int thread_index() {
    return static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
  }
  static std::string describe(int site) {
    return site == -1 ? std::string("the end of the kernel")
           : site == -2 ? std::string("the start of the kernel")
                        : "__syncthreads at line " + std::to_string(site);
  }
  [[noreturn]] void fail_locked(const std::string& message) {
    if (!failed_) {
      failed_ = true;
      message_ = message;
      cv_.notify_all();
    }
    throw BarrierMismatch(message_);
  }
  // Lanes of one warp waiting at a shuffle and at __syncthreads at once would wait for ever.
  void check_warp_locked(int w) {
    bool barrier = false, shuffle = false;
    for (int t = w * 32; t < threads_ && t < (w + 1) * 32; ++t) {
      barrier |= where_[t] == kAtBarrier;
      shuffle |= where_[t] == kAtShuffle;
    }
    if (barrier && shuffle)
      fail_locked("lanes of warp " + std::to_string(w) + " wait at a shuffle (line " + std::to_string(warps_[w].site) +
                  ") and at " + describe(site_) + " at once");
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  int threads_, waiting_ = 0, site_ = 0;
  long generation_ = 0;
  std::vector<Where> where_;
  std::vector<Warp> warps_;
  bool failed_ = false;
  std::string message_;
};

// Asynchronous copies of one thread: performed only when a wait retires their group.
struct PendingCopies {
  struct Copy {
    void* dst;
    const void* src;
    size_t bytes, zfill;
  };
  std::vector<Copy> open;               // issued, not yet committed
  std::deque<std::vector<Copy>> groups;  // committed, oldest first
  bool empty() const {  // no copy outstanding (empty groups carry none)
    for (const auto& group : groups)
      if (!group.empty()) return false;
    return open.empty();
  }
};

inline thread_local BlockSync* current_block = nullptr;
inline thread_local unsigned char* current_shared = nullptr;
inline thread_local size_t current_shared_bytes = 0;
inline thread_local PendingCopies pending_copies;

inline void sync_threads(int line) { current_block->arrive(line); }
inline unsigned char* dynamic_shared() { return current_shared; }

enum class Shuffle { Index, Up, Down };

// __shfl_sync / __shfl_up_sync / __shfl_down_sync with width 32: lanes whose source lies outside the
// warp keep their own value (up, down).
template <typename V> V shuffle(int site, unsigned mask, V value, Shuffle kind, int arg) {
  const int lane = static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32;
  int source = kind == Shuffle::Index ? arg % 32 : kind == Shuffle::Up ? lane - arg : lane + arg;
  if (source < 0 || source >= 32) source = lane;
  return current_block->exchange(site, mask, value, source);
}

[[noreturn]] inline void copy_failure(const std::string& message) {
  current_block->fail(message);
  throw BarrierMismatch(message);
}

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
    BlockSync barrier(static_cast<int>(threads));
    std::vector<unsigned char> shared(shared_ + kGuardBytes);
    std::string failure;
    std::mutex failure_mutex;
    auto body = [&](unsigned t) {
      current_block = &barrier;
      current_shared = shared.data();
      current_shared_bytes = shared_;
      pending_copies = PendingCopies();
      threadIdx = dim3(t % block_.x, t / block_.x % block_.y, t / (block_.x * block_.y));
      try {
        for (unsigned long long q = 0; q < blocks; ++q) {
          blockIdx = dim3(q % grid_.x, q / grid_.x % grid_.y, q / (1ull * grid_.x * grid_.y));
          if (t == 0 && !shared.empty()) std::memset(shared.data(), 0xFF, shared.size());  // NaN in every float type
          barrier.arrive(-2);
          std::tuple<Params...> mine = params;  // each thread its own copy of the parameters
          std::apply(kernel_, mine);
          if (!pending_copies.empty())
            copy_failure("block " + std::to_string(q) + " ended with asynchronous copies not waited for");
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

// ---- asynchronous copies (cuda_pipeline_primitives.h): recorded, performed when a wait retires them
inline void __pipeline_memcpy_async(void* dst, const void* src, size_t size_and_align, size_t zfill = 0) {
  using gspn_emu::copy_failure;
  if (size_and_align != 4 && size_and_align != 8 && size_and_align != 16)
    copy_failure("__pipeline_memcpy_async of " + std::to_string(size_and_align) + " bytes (4, 8 or 16 allowed)");
  if (zfill > size_and_align) copy_failure("__pipeline_memcpy_async: zfill larger than the copy");
  if (reinterpret_cast<uintptr_t>(dst) % size_and_align || reinterpret_cast<uintptr_t>(src) % size_and_align)
    copy_failure("__pipeline_memcpy_async: an address not aligned to the copy size");
  const unsigned char* begin = gspn_emu::current_shared;
  const unsigned char* to = static_cast<const unsigned char*>(dst);
  if (to < begin || to + size_and_align > begin + gspn_emu::current_shared_bytes)
    copy_failure("__pipeline_memcpy_async: destination outside the block's dynamic shared memory");
  gspn_emu::pending_copies.open.push_back({dst, src, size_and_align, zfill});
}
inline void __pipeline_commit() {
  auto& pending = gspn_emu::pending_copies;
  pending.groups.push_back(std::move(pending.open));
  pending.open.clear();
}
inline void __pipeline_wait_prior(size_t prior) {
  auto& groups = gspn_emu::pending_copies.groups;
  while (groups.size() > prior) {
    for (const auto& c : groups.front()) {
      std::memcpy(c.dst, c.src, c.bytes - c.zfill);
      std::memset(static_cast<unsigned char*>(c.dst) + (c.bytes - c.zfill), 0, c.zfill);
    }
    groups.pop_front();
  }
}
