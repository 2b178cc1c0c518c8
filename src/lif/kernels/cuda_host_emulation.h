// Host emulation of the small part of CUDA that lif_cuda.cu uses, so that its kernel bodies compile with g++
// and run on the CPU in tests (tests/test_cuda_host.py), where no GPU is. Included by lif_cuda.cu when
// LIF_HOST_EMULATION is defined (g++ -x c++ -DLIF_HOST_EMULATION).
//
// A launch runs the blocks one after another. Inside a block every CUDA thread is a fiber (ucontext) on the one
// host thread, so shared memory is one `static` array that all threads of the block see, and __syncthreads()
// and the warp shuffles are real barriers: a fiber that reaches one is parked until every thread of its block
// (or warp) has reached it, which is what makes shared-memory tiles behave as on the device. A barrier that
// can never complete (a thread exited, or a warp diverged) aborts with a message instead of hanging. Not
// emulated: a shared array keeps what the previous block left in it (on a device its contents start undefined),
// and threads of a block interleave only at barriers, in the order of their index or (LifEmulationSetOrder)
// the reverse: running both orders exposes a race between barriers as a difference.
// float16/bfloat16 are stored as their bits and converted with round-to-nearest-even, as __float2half_rn and
// __float2bfloat16_rn do.
#ifndef SNN_MLP_LIF_CUDA_HOST_EMULATION_H_
#define SNN_MLP_LIF_CUDA_HOST_EMULATION_H_

#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
// One array per kernel instantiation, seen by every thread of the running block (blocks run one at a time).
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct float2 {
  float x, y;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }

struct __half {
  uint16_t bits;
};
struct __nv_bfloat16 {
  uint16_t bits;
};

inline uint32_t FloatBits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}
inline float BitsFloat(uint32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

inline float __half2float(__half h) {
  const uint32_t sign = (h.bits & 0x8000u) << 16;
  const uint32_t exponent = (h.bits >> 10) & 0x1f;
  const uint32_t mantissa = h.bits & 0x3ffu;
  if (exponent == 0x1f) return BitsFloat(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) return (sign ? -1.0f : 1.0f) * static_cast<float>(mantissa) * 0x1p-24f;
  return BitsFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline __half __float2half_rn(float v) {
  const uint32_t b = FloatBits(v);
  const uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000u);
  const float magnitude = BitsFloat(b & 0x7fffffffu);
  if (magnitude != magnitude) return {static_cast<uint16_t>(sign | 0x7e00u)};
  if (magnitude >= 65520.0f) return {static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to infinity
  if (magnitude < 0x1p-14f) {  // subnormal: an integer multiple of 2^-24, rounded half to even
    const float scaled = magnitude * 0x1p24f;
    uint32_t m = static_cast<uint32_t>(scaled);
    const float rest = scaled - static_cast<float>(m);
    if (rest > 0.5f || (rest == 0.5f && (m & 1u))) ++m;
    return {static_cast<uint16_t>(sign | m)};
  }
  const uint32_t mb = FloatBits(magnitude);
  uint32_t h = ((mb >> 23) - 112) << 10 | ((mb >> 13) & 0x3ffu);
  const uint32_t rest = mb & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is still right
  return {static_cast<uint16_t>(sign | h)};
}

inline float __bfloat162float(__nv_bfloat16 h) { return BitsFloat(static_cast<uint32_t>(h.bits) << 16); }

inline __nv_bfloat16 __float2bfloat16_rn(float v) {
  const uint32_t b = FloatBits(v);
  if ((b & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((b >> 16) | 0x40u)};  // quiet NaN
  return {static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16)};
}

// ----- runtime API: only what lif_cuda.cu calls -----
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoKernelImageForDevice = 209,
};
enum cudaMemcpyKind { cudaMemcpyDeviceToDevice = 3 };
enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor = 75, cudaDevAttrComputeCapabilityMinor = 76 };
using cudaStream_t = struct EmulatedStream *;
#define CUDART_VERSION 12000

namespace emu {
// What the emulated device reports; tests change them through the extern "C" hooks at the end.
inline cudaError_t pending_error = cudaSuccess;
inline cudaError_t injected_launch_error = cudaSuccess;
inline int device_major = 9, device_minor = 0, driver_version = 12040;
// Threads of a block run from the last to the first between barriers: a race shows up as a different result.
inline bool reverse_order = false;
}  // namespace emu

inline cudaError_t cudaGetLastError() {
  const cudaError_t err = emu::pending_error;
  emu::pending_error = cudaSuccess;
  return err;
}
inline const char *cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoKernelImageForDevice: return "cudaErrorNoKernelImageForDevice";
    default: return "cudaErrorInvalidValue";
  }
}
inline const char *cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available for execution on the device";
    default: return "invalid argument";
  }
}
inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t) {
  std::memset(dst, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int *device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int) {
  *value = attr == cudaDevAttrComputeCapabilityMajor ? emu::device_major : emu::device_minor;
  return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int *version) {
  *version = emu::driver_version;
  return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int *version) {
  *version = CUDART_VERSION;
  return cudaSuccess;
}

// ----- the thread grid -----
namespace emu {

constexpr size_t kStackBytes = 256 * 1024;

enum class State { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone };

struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  State state = State::kRunnable;
};

struct Block {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  std::vector<uint64_t> shuffle_slots;  // one per thread: the value each lane offers to a shuffle
  const std::function<void()> *body = nullptr;
  unsigned current = 0;
};

inline Block block;
inline dim3 grid_dim, block_dim, block_idx, thread_idx;

inline void Park(State state) {
  block.fibers[block.current].state = state;
  swapcontext(&block.fibers[block.current].context, &block.scheduler);
}

inline void FiberMain() {
  (*block.body)();
  block.fibers[block.current].state = State::kDone;
  // Returning switches to uc_link, the scheduler.
}

[[noreturn]] inline void Abort(const char *why) {
  std::fprintf(stderr, "CUDA host emulation: %s (block %u)\n", why, block_idx.x);
  std::abort();
}

// Runs every thread of the block to completion, releasing barriers once all their participants wait there.
inline void RunBlock() {
  const unsigned threads = block_dim.x;
  for (;;) {
    bool any_ran = false;
    for (unsigned i = 0; i < threads; ++i) {
      const unsigned t = reverse_order ? threads - 1 - i : i;
      if (block.fibers[t].state != State::kRunnable) continue;
      any_ran = true;
      block.current = t;
      thread_idx.x = t;
      swapcontext(&block.scheduler, &block.fibers[t].context);
    }
    unsigned done = 0, at_block = 0;
    for (const Fiber &f : block.fibers) {
      done += f.state == State::kDone;
      at_block += f.state == State::kAtBlockBarrier;
    }
    if (done == threads) return;
    bool released = false;
    if (at_block == threads) {
      for (Fiber &f : block.fibers) f.state = State::kRunnable;
      released = true;
    }
    for (unsigned w = 0; w < threads / 32; ++w) {
      bool whole_warp = true;
      for (unsigned t = 32 * w; t < 32 * w + 32; ++t) whole_warp &= block.fibers[t].state == State::kAtWarpBarrier;
      if (!whole_warp) continue;
      for (unsigned t = 32 * w; t < 32 * w + 32; ++t) block.fibers[t].state = State::kRunnable;
      released = true;
    }
    if (!released && !any_ran) Abort("a barrier can never complete (a thread exited or a warp diverged)");
  }
}

inline void Launch(dim3 grid, dim3 threads, const std::function<void()> &body) {
  if (injected_launch_error != cudaSuccess) {
    pending_error = injected_launch_error;
    return;
  }
  if (threads.x % 32 != 0 || threads.y != 1 || threads.z != 1) Abort("blocks must be whole warps along x");
  grid_dim = grid;
  block_dim = threads;
  block.body = &body;
  block.fibers.resize(threads.x);
  block.shuffle_slots.assign(threads.x, 0);
  for (unsigned b = 0; b < grid.x; ++b) {
    block_idx.x = b;
    for (Fiber &f : block.fibers) {
      f.stack.resize(kStackBytes);
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = f.stack.data();
      f.context.uc_stack.ss_size = f.stack.size();
      f.context.uc_link = &block.scheduler;
      makecontext(&f.context, FiberMain, 0);
      f.state = State::kRunnable;
    }
    RunBlock();
  }
}

}  // namespace emu

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

inline void __syncthreads() { emu::Park(emu::State::kAtBlockBarrier); }

template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffled values are at most 8 bytes");
  if (mask != 0xffffffffu) emu::Abort("only full-warp shuffles are emulated");
  const unsigned t = emu::block.current;
  std::memcpy(&emu::block.shuffle_slots[t], &value, sizeof(T));
  emu::Park(emu::State::kAtWarpBarrier);  // every lane has offered its value
  T result = value;
  if ((t & 31u) + delta < 32u) std::memcpy(&result, &emu::block.shuffle_slots[t + delta], sizeof(T));
  emu::Park(emu::State::kAtWarpBarrier);  // every lane has read before any slot is offered again
  return result;
}

// kernel<<<grid, threads, 0, stream>>>(args...) on the host.
#define LIF_LAUNCH(kernel, grid, threads, stream, ...) \
  emu::Launch(dim3{static_cast<unsigned>(grid)}, dim3{static_cast<unsigned>(threads)}, [&] { kernel(__VA_ARGS__); })

// Test hooks: the next launches fail with `error` (0 clears it); the device and driver the library sees.
extern "C" void LifEmulationSetLaunchError(int error) { emu::injected_launch_error = static_cast<cudaError_t>(error); }
extern "C" void LifEmulationSetOrder(int reverse) { emu::reverse_order = reverse != 0; }
extern "C" void LifEmulationSetDevice(int major, int minor, int driver_version) {
  emu::device_major = major;
  emu::device_minor = minor;
  emu::driver_version = driver_version;
}

#endif  // SNN_MLP_LIF_CUDA_HOST_EMULATION_H_
