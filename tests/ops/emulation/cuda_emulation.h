// A CPU stand-in for the parts of the CUDA runtime the kernels in csrc/cuda use, so that their
// source compiles as host C++ (g++, no nvcc) and runs on the CPU, strictly:
//
// - every thread of a block runs on a stack of its own: in the plain build as a fiber (ucontext) on
//   the launching thread, switched only where it waits at a barrier or shuffle, the released threads
//   running in thread order, reverse order or a shuffled order by turns, launch after launch of a
//   kernel; under ThreadSanitizer and AddressSanitizer (or with -DGSPN_EMU_FIBERS=0) as a real
//   std::thread. `__syncthreads()` is a real barrier that also
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
// limits and spills, timing. Blocks of one launch run one after another. Fibers interleave only at
// barriers and shuffles: a race inside one stretch between barriers (two unsynchronised writes of a
// word) shows only under ThreadSanitizer, whose build runs real threads.
#pragma once

#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

// The threads of a block run as fibers on the launching thread (cheap: no OS thread per GPU thread,
// no system scheduler at every barrier), except under ThreadSanitizer, which must see real threads
// to find races, and AddressSanitizer, which does not follow switched stacks; -DGSPN_EMU_FIBERS=0
// forces real threads.
#ifndef GSPN_EMU_FIBERS
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define GSPN_EMU_SANITIZED 1
#endif
#endif
#if defined(__linux__) && !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(GSPN_EMU_SANITIZED)
#define GSPN_EMU_FIBERS 1
#else
#define GSPN_EMU_FIBERS 0
#endif
#endif

#if GSPN_EMU_FIBERS
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>
#include <random>
#elif defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

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
inline std::map<const void*, unsigned> launches;  // kernel -> launches so far (the fibers' order)
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
inline thread_local PendingCopies pending_copies;

// The running GPU thread's index in its block, and the name of a barrier site in messages.
inline int thread_index() {
  return static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}
inline std::string describe(int site) {
  return site == -1 ? std::string("the end of the kernel")
         : site == -2 ? std::string("the start of the kernel")
                      : "__syncthreads at line " + std::to_string(site);
}

#if GSPN_EMU_FIBERS
// ---- the threads of a block as fibers: cooperative contexts on the launching thread
//
// A fiber runs until it waits at a barrier or a shuffle, then the next runnable one runs; switching
// costs no system scheduler and no lock. The thread's own state (threadIdx, blockIdx, its pending
// asynchronous copies) is swapped in and out with its context. Released fibers run in an order fixed
// per launch of a kernel: its 1st, 4th, 7th... launch in thread order, its 2nd, 5th... in reverse,
// its 3rd, 6th... in a shuffled order, so that reads of another thread's writes without a barrier
// between them see the writes missing in one of a few runs.
class Fibers {
 public:
  static constexpr size_t kStackBytes = size_t(1) << 20;  // reserved, touched pages only; guard page below

  ~Fibers() {
    for (auto& f : fibers_)
      if (f.stack) stack_pool().push_back(f.stack);
  }

  // Runs body(t) for t in [0, n) until every one returns; `stalled` is called (it must fail the block,
  // which wakes every waiter to throw) if all that have not returned wait.
  void run(unsigned n, int order, const std::function<void(unsigned)>& body, const std::function<void()>& stalled) {
    body_ = &body;
    fibers_ = std::vector<Fiber>(n);
    order_.resize(n);
    for (unsigned t = 0; t < n; ++t) order_[t] = order == 1 ? n - 1 - t : t;
    for (int l = 0; l < 32; ++l) lanes_[l] = order == 1 ? 31 - l : l;
    if (order == 2) {
      std::mt19937 random(12345u + n);
      std::shuffle(order_.begin(), order_.end(), random);
      std::shuffle(lanes_, lanes_ + 32, random);
    }
    for (unsigned t = 0; t < n; ++t) {
      Fiber& f = fibers_[t];
      f.stack = take_stack();
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = f.stack + kPage;
      f.context.uc_stack.ss_size = kStackBytes - kPage;
      f.context.uc_link = &scheduler_;
      makecontext(&f.context, &Fibers::entry, 0);
    }
    for (unsigned t : order_) queue_.push_back(t);
    unsigned finished = 0;
    bool stall_reported = false;
    while (finished < n) {
      if (queue_.empty()) {
        if (stall_reported) {
          std::fprintf(stderr, "gspn_emu: threads of a block wait for ever after a failure\n");
          std::abort();
        }
        stall_reported = true;
        stalled();  // wakes every waiter: each throws
        continue;
      }
      const unsigned t = queue_.front();
      queue_.pop_front();
      Fiber& f = fibers_[t];
      current_ = t;
      running() = this;
      switch_in(f);
      swapcontext(&scheduler_, &f.context);
      switch_out(f);
      if (f.done) ++finished;
    }
  }

  // The running fiber waits until woken (callers re-check what they wait for).
  void block() {
    Fiber& f = fibers_[current_];
    f.blocked = true;
    swapcontext(&f.context, &scheduler_);
  }
  void wake(unsigned t) {
    Fiber& f = fibers_[t];
    if (f.blocked) {
      f.blocked = false;
      queue_.push_back(t);
    }
  }
  void wake_all() {
    for (unsigned t : order_) wake(t);
  }
  void wake_warp(unsigned w) {
    for (int l : lanes_)
      if (w * 32 + l < fibers_.size()) wake(w * 32 + l);
  }

 private:
  static constexpr size_t kPage = 4096;
  struct Fiber {
    ucontext_t context;
    char* stack = nullptr;
    bool blocked = false, done = false;
    dim3 thread_idx, block_idx;
    PendingCopies copies;
  };

  static Fibers*& running() {
    static thread_local Fibers* fibers = nullptr;
    return fibers;
  }
  static std::vector<char*>& stack_pool() {  // stacks outlive launches: no mapping per launch
    static std::vector<char*> pool;
    return pool;
  }
  static char* take_stack() {
    auto& pool = stack_pool();
    if (!pool.empty()) {
      char* stack = pool.back();
      pool.pop_back();
      return stack;
    }
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    mprotect(p, kPage, PROT_NONE);  // a stack overflow faults instead of writing over another stack
    return static_cast<char*>(p);
  }
  static void entry() {
    Fibers* self = running();
    const unsigned t = self->current_;
    (*self->body_)(t);
    self->fibers_[t].done = true;
  }  // returns to uc_link: the scheduler
  void switch_in(Fiber& f) {
    threadIdx = f.thread_idx;
    blockIdx = f.block_idx;
    std::swap(pending_copies, f.copies);
  }
  void switch_out(Fiber& f) {
    f.thread_idx = threadIdx;
    f.block_idx = blockIdx;
    std::swap(pending_copies, f.copies);
  }

  const std::function<void(unsigned)>* body_ = nullptr;
  std::vector<Fiber> fibers_;
  std::vector<unsigned> order_;
  int lanes_[32];
  std::deque<unsigned> queue_;
  unsigned current_ = 0;
  ucontext_t scheduler_;
};

// One block's synchronisation: its __syncthreads barrier and the shuffles of each of its warps, for
// fibers (one OS thread: no locks). Sites: a source line for __syncthreads and shuffles, -1 for leaving
// the kernel, -2 for starting it.
class BlockSync {
 public:
  BlockSync(int threads, Fibers& fibers)
      : fibers_(fibers), threads_(threads), where_(threads, kRunning), warps_((threads + 31) / 32) {}

  void arrive(int site) {
    if (failed_) throw BarrierMismatch(message_);
    const int t = thread_index();
    if (waiting_ == 0) {
      site_ = site;
    } else if (site != site_) {
      fail_and_throw("threads of block " + std::to_string(blockIdx.x) + " reached different barriers (" +
                     describe(site_) + " and " + describe(site) + ")");
    }
    where_[t] = kAtBarrier;
    check_warp(t / 32);
    if (++waiting_ == threads_) {
      waiting_ = 0;
      ++generation_;
      for (auto& w : where_) w = kRunning;
      fibers_.wake_all();
      return;
    }
    const long generation = generation_;
    while (generation_ == generation && !failed_) fibers_.block();
    if (generation_ == generation) throw BarrierMismatch(message_);
  }

  // The value lane `source` of this thread's warp passed to the same shuffle.
  template <typename V> V exchange(int site, unsigned mask, V value, int source) {
    static_assert(sizeof(V) <= sizeof(uint64_t), "shuffles move at most 8 bytes");
    if (failed_) throw BarrierMismatch(message_);
    const int t = thread_index(), w = t / 32, lane = t % 32;
    if (mask != 0xffffffffu)
      fail_and_throw("a shuffle at line " + std::to_string(site) + " names lanes " + std::to_string(mask) +
                     ", not the whole warp");
    if ((w + 1) * 32 > threads_)
      fail_and_throw("a shuffle at line " + std::to_string(site) + " in a warp of fewer than 32 threads");
    Warp& warp = warps_[w];
    if (warp.waiting == 0) {
      warp.site = site;
    } else if (site != warp.site) {
      fail_and_throw("lanes of warp " + std::to_string(w) + " reached different shuffles (lines " +
                     std::to_string(warp.site) + " and " + std::to_string(site) + ")");
    }
    const long generation = warp.generation;
    std::memcpy(&warp.slots[generation & 1][lane], &value, sizeof(V));
    where_[t] = kAtShuffle;
    check_warp(w);
    if (++warp.waiting == 32) {
      warp.waiting = 0;
      ++warp.generation;
      for (int l = 0; l < 32; ++l) where_[w * 32 + l] = kRunning;
      fibers_.wake_warp(w);
    } else {
      while (warp.generation == generation && !failed_) fibers_.block();
      if (warp.generation == generation) throw BarrierMismatch(message_);
    }
    V out;  // the slots of this parity are rewritten only two exchanges later
    std::memcpy(&out, &warp.slots[generation & 1][source], sizeof(V));
    return out;
  }

  void fail(const std::string& message) {
    if (!failed_) {
      failed_ = true;
      message_ = message;
      fibers_.wake_all();
    }
  }

 private:
  enum Where : char { kRunning, kAtBarrier, kAtShuffle };
  struct Warp {
    int waiting = 0, site = 0;
    long generation = 0;
    uint64_t slots[2][32] = {};
  };

  [[noreturn]] void fail_and_throw(const std::string& message) {
    fail(message);
    throw BarrierMismatch(message_);
  }
  // Lanes of one warp waiting at a shuffle and at __syncthreads at once would wait for ever.
  void check_warp(int w) {
    bool barrier = false, shuffle = false;
    for (int t = w * 32; t < threads_ && t < (w + 1) * 32; ++t) {
      barrier |= where_[t] == kAtBarrier;
      shuffle |= where_[t] == kAtShuffle;
    }
    if (barrier && shuffle)
      fail_and_throw("lanes of warp " + std::to_string(w) + " wait at a shuffle (line " +
                     std::to_string(warps_[w].site) + ") and at " + describe(site_) + " at once");
  }

  Fibers& fibers_;
  int threads_, waiting_ = 0, site_ = 0;
  long generation_ = 0;
  std::vector<Where> where_;
  std::vector<Warp> warps_;
  bool failed_ = false;
  std::string message_;
};

#else  // threads
// A word that threads sleep on until it changes (a futex on Linux). Waking one is one system call
// that wakes exactly the threads sleeping on that word, and they take no lock on waking: a barrier
// wakes its waiters once, a warp's shuffle wakes only that warp's lanes.
class WakeWord {
 public:
  uint32_t load() const { return word_.load(std::memory_order_acquire); }
  // Returns once the word may have changed from `seen` (early returns are allowed: callers re-check).
  void wait(uint32_t seen) {
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
#else
    (void)seen;
    std::this_thread::yield();
#endif
  }
  void bump_and_wake() {
    word_.fetch_add(1, std::memory_order_acq_rel);
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#endif
  }

 private:
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free,
                "a futex is a plain 32-bit word");
  std::atomic<uint32_t> word_{0};
};

// One block's synchronisation: its __syncthreads barrier and the shuffles of each of its warps.
// Sites: a source line for __syncthreads and shuffles, -1 for leaving the kernel, -2 for starting it.
//
// The barrier's bookkeeping (count, site) is under the block's mutex, each warp's shuffle (count,
// site, values) under that warp's own mutex; waiting is on a generation counter per barrier and per
// warp, so a waiter is released by the generation changing (acquire/release: every write before the
// barrier or shuffle is visible after it, also to ThreadSanitizer) and a failure wakes everyone.
// A thread waiting at the barrier marks itself with the barrier's generation under its warp's mutex,
// and a lane arriving at a shuffle checks those marks under the same mutex (and a thread arriving at
// the barrier checks for lanes waiting at a shuffle), so lanes of one warp waiting at a shuffle and
// at __syncthreads at once are always seen by one of them.
class BlockSync {
 public:
  explicit BlockSync(int threads)
      : threads_(threads), warp_count_((threads + 31) / 32), warps_(new Warp[(threads + 31) / 32]),
        marks_(new std::atomic<uint32_t>[threads]) {
    for (int t = 0; t < threads; ++t) marks_[t].store(kNoMark, std::memory_order_relaxed);
  }

  void arrive(int site) {
    const int t = thread_index(), w = t / 32;
    uint32_t generation;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      throw_if_failed();
      generation = generation_.load(std::memory_order_relaxed);
      if (waiting_ == 0) {
        site_.store(site, std::memory_order_relaxed);
      } else if (site != site_.load(std::memory_order_relaxed)) {
        fail_and_throw("threads of block " + std::to_string(blockIdx.x) + " reached different barriers (" +
                       describe(site_.load(std::memory_order_relaxed)) + " and " + describe(site) + ")");
      }
      if (++waiting_ == threads_) {  // the last one: every thread waits here, none at a shuffle
        waiting_ = 0;
        generation_.store(generation + 1, std::memory_order_release);
        wake_.bump_and_wake();
        return;
      }
    }
    {
      Warp& warp = warps_[w];
      std::lock_guard<std::mutex> lock(warp.mutex);
      marks_[t].store(generation, std::memory_order_relaxed);
      // Unless the barrier has already let everyone go (its last thread may come between the count
      // above and this), a lane of this warp waiting at a shuffle never comes to the barrier.
      if (warp.waiting > 0 && generation_.load(std::memory_order_acquire) == generation)
        fail_and_throw(mixed(w, warp.site, site));
    }
    wait_for(wake_, generation_, generation);
  }

  // The value lane `source` of this thread's warp passed to the same shuffle.
  template <typename V> V exchange(int site, unsigned mask, V value, int source) {
    static_assert(sizeof(V) <= sizeof(uint64_t), "shuffles move at most 8 bytes");
    const int t = thread_index(), w = t / 32, lane = t % 32;
    Warp& warp = warps_[w];
    uint32_t generation;
    {
      std::lock_guard<std::mutex> lock(warp.mutex);
      throw_if_failed();
      if (mask != 0xffffffffu)
        fail_and_throw("a shuffle at line " + std::to_string(site) + " names lanes " + std::to_string(mask) +
                       ", not the whole warp");
      if ((w + 1) * 32 > threads_)
        fail_and_throw("a shuffle at line " + std::to_string(site) + " in a warp of fewer than 32 threads");
      if (warp.waiting == 0) {
        warp.site = site;
      } else if (site != warp.site) {
        fail_and_throw("lanes of warp " + std::to_string(w) + " reached different shuffles (lines " +
                       std::to_string(warp.site) + " and " + std::to_string(site) + ")");
      }
      // A lane of this warp waiting at the barrier would never come to this shuffle.
      const uint32_t barrier = generation_.load(std::memory_order_acquire);
      for (int l = w * 32; l < (w + 1) * 32; ++l)
        if (marks_[l].load(std::memory_order_relaxed) == barrier)
          fail_and_throw(mixed(w, site, site_.load(std::memory_order_relaxed)));
      generation = warp.generation.load(std::memory_order_relaxed);
      std::memcpy(&warp.slots[generation & 1][lane], &value, sizeof(V));
      if (++warp.waiting == 32) {
        warp.waiting = 0;
        warp.generation.store(generation + 1, std::memory_order_release);
        warp.wake.bump_and_wake();
        V out;
        std::memcpy(&out, &warp.slots[generation & 1][source], sizeof(V));
        return out;
      }
    }
    wait_for(warp.wake, warp.generation, generation);
    V out;  // the slots of this parity are rewritten only two exchanges later, after this lane's next one
    std::memcpy(&out, &warp.slots[generation & 1][source], sizeof(V));
    return out;
  }

  void fail(const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(failure_mutex_);
      if (failed_.load(std::memory_order_relaxed)) return;
      message_ = message;
      failed_.store(true, std::memory_order_release);
    }
    wake_.bump_and_wake();
    for (int w = 0; w < warp_count_; ++w) warps_[w].wake.bump_and_wake();
  }

 private:
  static constexpr uint32_t kNoMark = 0xffffffffu;  // a thread that has not waited at a barrier yet
  struct Warp {
    std::mutex mutex;
    int waiting = 0, site = 0;  // under mutex
    std::atomic<uint32_t> generation{0};
    WakeWord wake;
    uint64_t slots[2][32] = {};
  };

  static std::string mixed(int w, int shuffle_site, int barrier_site) {
    return "lanes of warp " + std::to_string(w) + " wait at a shuffle (line " + std::to_string(shuffle_site) +
           ") and at " + describe(barrier_site) + " at once";
  }
  std::string message() {
    std::lock_guard<std::mutex> lock(failure_mutex_);
    return message_;
  }
  void throw_if_failed() {
    if (failed_.load(std::memory_order_acquire)) throw BarrierMismatch(message());
  }
  // The first failure's message is the one every thread reports.
  [[noreturn]] void fail_and_throw(const std::string& message) {
    fail(message);
    throw BarrierMismatch(this->message());
  }
  // Until `generation` leaves `seen` (released; that wins over a failure) or the block fails.
  void wait_for(WakeWord& word, const std::atomic<uint32_t>& generation, uint32_t seen) {
    for (;;) {
      const uint32_t w = word.load();
      if (generation.load(std::memory_order_acquire) != seen) return;
      if (failed_.load(std::memory_order_acquire)) throw BarrierMismatch(message());
      word.wait(w);
    }
  }

  std::mutex mutex_;           // the barrier's count and site
  int threads_, warp_count_;
  int waiting_ = 0;            // under mutex_
  std::atomic<int> site_{0};   // the barrier's site: written under mutex_, read for messages
  std::atomic<uint32_t> generation_{0};
  WakeWord wake_;
  std::unique_ptr<Warp[]> warps_;
  std::unique_ptr<std::atomic<uint32_t>[]> marks_;  // per thread: the barrier generation it waits at
  std::mutex failure_mutex_;
  std::atomic<bool> failed_{false};
  std::string message_;        // under failure_mutex_
};

#endif  // GSPN_EMU_FIBERS

inline thread_local BlockSync* current_block = nullptr;
inline thread_local unsigned char* current_shared = nullptr;
inline thread_local size_t current_shared_bytes = 0;

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
#if GSPN_EMU_FIBERS
    Fibers fibers;  // outlives the barrier, which wakes its fibers
    BlockSync barrier(static_cast<int>(threads), fibers);
#else
    BlockSync barrier(static_cast<int>(threads));
#endif
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
#if GSPN_EMU_FIBERS
    const unsigned order = launches[reinterpret_cast<const void*>(kernel_)]++ % 3;
    fibers.run(static_cast<unsigned>(threads), static_cast<int>(order), body,
               [&] { barrier.fail("threads of the block wait for ever at barriers and shuffles"); });
#else
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(body, t);
    for (auto& th : pool) th.join();
#endif
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
