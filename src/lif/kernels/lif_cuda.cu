// LIF scan for MindSpore ops.Custom(func_type="aot") on GPU: forward and backward.
//
// Semantics as in lif_cpu.cc (and src/lif/reference.py): per window of k positions along the scan axis the
// membrane o starts at 0, u = tau*o + x, fire = u > vth, out = fire ? u : vth, o = fire ? 0 : u; positions
// after the last whole window are copied. Backward with `fire` held constant.
//
// One thread per (n, c, window, column): along H a thread walks one column of a window of rows, and the 32
// threads of a warp take 32 neighbouring columns, so every step is a coalesced row segment; along W a thread
// walks one window of a row, neighbouring threads neighbouring windows. The forward moves only the bytes of x
// in and the bytes of out back: no flag or membrane tensors. The backward recomputes u from x in the same
// single forward sweep: dtau in forward mode (t = du/dtau, as the original kernel), and dx by handing each
// firing position's gradient back along the run of silent positions before it (gu = tau^m * g).
// float16/bfloat16 are computed in float32. dtau/dvth: per-block sums in a fixed-size workspace, then one
// block adds them in a fixed order, so the result does not depend on scheduling.
//
// Everything is launched on the stream MindSpore passes. Attributes "window" and "axis" as on CPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "lif_host.h"

namespace {

using lif::DType;
using lif::Fail;
using lif::Geometry;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// The grid never exceeds this many blocks (threads loop over the remaining windows); it also sizes the
// backward's workspace of per-block partial sums.
constexpr int kMaxBlocks = 4096;

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// The positions one thread owns: `count` elements starting at `base`, `step` apart. count < k only for the
// partial window at the end of a line, which is copied.
struct Lane {
  int64_t base;
  int64_t step;
  int64_t count;
};

// `windows` = windows per line, the partial one included (ceil(length / k)).
__device__ __forceinline__ Lane LaneOf(int64_t index, const Geometry &g, int64_t windows) {
  if (g.axis == 2) {  // index = (plane * windows + window) * cols + column
    const int64_t column = index % g.cols;
    const int64_t rest = index / g.cols;
    const int64_t first_row = (rest % windows) * g.k;
    const int64_t plane = rest / windows;
    const int64_t count = g.rows - first_row < g.k ? g.rows - first_row : g.k;
    return {(plane * g.rows + first_row) * g.cols + column, g.cols, count};
  }
  // index = (plane * rows + row) * windows + window
  const int64_t first_col = (index % windows) * g.k;
  const int64_t line = index / windows;
  const int64_t count = g.cols - first_col < g.k ? g.cols - first_col : g.k;
  return {line * g.cols + first_col, 1, count};
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    LifForwardKernel(const T *__restrict__ x, T *__restrict__ out, const float *__restrict__ tau_ptr,
                     const float *__restrict__ vth_ptr, Geometry g, int64_t windows, int64_t lanes) {
  const float tau = *tau_ptr;
  const float vth = *vth_ptr;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < lanes;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Lane lane = LaneOf(index, g, windows);
    if (lane.count < g.k) {
      for (int64_t j = 0; j < lane.count; ++j) out[lane.base + j * lane.step] = x[lane.base + j * lane.step];
      continue;
    }
    float o = 0.0f;
    for (int64_t j = 0; j < g.k; ++j) {
      const int64_t at = lane.base + j * lane.step;
      const float u = tau * o + ToFloat(x[at]);
      const bool fire = u > vth;
      out[at] = FromFloat<T>(fire ? u : vth);
      o = fire ? 0.0f : u;
    }
  }
}

// Sum over the block, valid in thread 0; every thread of the block must call it.
__device__ float2 BlockSum(float2 v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    v.x += __shfl_down_sync(0xffffffffu, v.x, offset);
    v.y += __shfl_down_sync(0xffffffffu, v.y, offset);
  }
  __shared__ float2 warp_sums[kWarps];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? warp_sums[lane] : make_float2(0.0f, 0.0f);
    for (int offset = 16; offset > 0; offset >>= 1) {
      v.x += __shfl_down_sync(0xffffffffu, v.x, offset);
      v.y += __shfl_down_sync(0xffffffffu, v.y, offset);
    }
  }
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    LifBackwardKernel(const T *__restrict__ x, const T *__restrict__ dout, T *__restrict__ dx,
                      const float *__restrict__ tau_ptr, const float *__restrict__ vth_ptr, Geometry g,
                      int64_t windows, int64_t lanes, float2 *__restrict__ partials) {
  const float tau = *tau_ptr;
  const float vth = *vth_ptr;
  float2 sums = make_float2(0.0f, 0.0f);  // (dtau, dvth)
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < lanes;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Lane lane = LaneOf(index, g, windows);
    if (lane.count < g.k) {
      for (int64_t j = 0; j < lane.count; ++j) dx[lane.base + j * lane.step] = dout[lane.base + j * lane.step];
      continue;
    }
    float o = 0.0f;
    float du_dtau = 0.0f;
    bool fired = true;     // "the previous position fired": the window starts from a reset membrane
    int64_t silent = 0;    // first position of the current run of positions that did not fire
    for (int64_t j = 0; j < g.k; ++j) {
      const int64_t at = lane.base + j * lane.step;
      du_dtau = fired ? o : du_dtau * tau + o;
      const float u = tau * o + ToFloat(x[at]);
      const bool fire = u > vth;
      const float grad = ToFloat(dout[at]);
      if (fire) {
        sums.x += grad * du_dtau;
        dx[at] = FromFloat<T>(grad);
        // The silent run before j reaches this output through the membrane, one factor tau per step.
        float carried = grad;
        for (int64_t q = j - 1; q >= silent; --q) {
          carried *= tau;
          dx[lane.base + q * lane.step] = FromFloat<T>(carried);
        }
        silent = j + 1;
        o = 0.0f;
      } else {
        sums.y += grad;
        o = u;
      }
      fired = fire;
    }
    for (int64_t q = silent; q < g.k; ++q) dx[lane.base + q * lane.step] = FromFloat<T>(0.0f);  // no later fire
  }
  sums = BlockSum(sums);
  if (threadIdx.x == 0) partials[blockIdx.x] = sums;
}

__global__ void __launch_bounds__(kThreads)
    SumPartialsKernel(const float2 *__restrict__ partials, int count, float *__restrict__ dtau,
                      float *__restrict__ dvth) {
  float2 sums = make_float2(0.0f, 0.0f);
  for (int i = threadIdx.x; i < count; i += kThreads) {
    sums.x += partials[i].x;
    sums.y += partials[i].y;
  }
  sums = BlockSum(sums);
  if (threadIdx.x == 0) {
    *dtau = sums.x;
    *dvth = sums.y;
  }
}

// Lanes (threads' worth of work) and windows per line of a non-identity scan.
struct Launch {
  int64_t windows;
  int64_t lanes;
  int blocks;
};

Launch LaunchOf(const Geometry &g) {
  const int64_t windows = (g.length() + g.k - 1) / g.k;
  const int64_t lanes = g.planes * windows * (g.axis == 2 ? g.cols : g.rows);
  const int64_t blocks = std::min<int64_t>(kMaxBlocks, std::max<int64_t>(1, (lanes + kThreads - 1) / kThreads));
  return {windows, lanes, static_cast<int>(blocks)};
}

int CheckLaunch(const char *what) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return 0;
  std::fprintf(stderr, "snn_mlp LIF kernel: %s failed: %s\n", what, cudaGetErrorString(err));
  return 1;
}

template <typename T>
int RunForward(void **params, const Geometry &g, cudaStream_t stream) {
  const auto *x = static_cast<const T *>(params[0]);
  auto *out = static_cast<T *>(params[3]);
  if (g.elements() == 0) return 0;
  if (g.k == 0) {
    cudaMemcpyAsync(out, x, sizeof(T) * g.elements(), cudaMemcpyDeviceToDevice, stream);
    return CheckLaunch("copying x");
  }
  const Launch launch = LaunchOf(g);
  LifForwardKernel<T><<<launch.blocks, kThreads, 0, stream>>>(x, out, static_cast<const float *>(params[1]),
                                                               static_cast<const float *>(params[2]), g,
                                                               launch.windows, launch.lanes);
  return CheckLaunch("the forward kernel");
}

template <typename T>
int RunBackward(void **params, const Geometry &g, cudaStream_t stream) {
  const auto *x = static_cast<const T *>(params[0]);
  const auto *dout = static_cast<const T *>(params[3]);
  auto *dx = static_cast<T *>(params[4]);
  auto *dtau = static_cast<float *>(params[5]);
  auto *dvth = static_cast<float *>(params[6]);
  auto *partials = static_cast<float2 *>(params[7]);
  if (g.k == 0 || g.elements() == 0) {
    cudaMemsetAsync(dtau, 0, sizeof(float), stream);
    cudaMemsetAsync(dvth, 0, sizeof(float), stream);
    if (g.elements() > 0) cudaMemcpyAsync(dx, dout, sizeof(T) * g.elements(), cudaMemcpyDeviceToDevice, stream);
    return CheckLaunch("the identity backward");
  }
  const Launch launch = LaunchOf(g);
  LifBackwardKernel<T><<<launch.blocks, kThreads, 0, stream>>>(
      x, dout, dx, static_cast<const float *>(params[1]), static_cast<const float *>(params[2]), g, launch.windows,
      launch.lanes, partials);
  SumPartialsKernel<<<1, kThreads, 0, stream>>>(partials, launch.blocks, dtau, dvth);
  return CheckLaunch("the backward kernels");
}

}  // namespace

extern "C" {

int LifScanForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                   void *extra) {
  if (nparam != lif::kForwardParams) return Fail("LifScanForward takes x, tau, vth and one output");
  Geometry g{};
  DType dtype{};
  if (const int err = lif::ReadArguments(shapes, ndims, dtypes, extra, &g, &dtype)) return err;
  auto *s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32: return RunForward<float>(params, g, s);
    case DType::kFloat16: return RunForward<__half>(params, g, s);
    case DType::kBFloat16: return RunForward<__nv_bfloat16>(params, g, s);
    default: return Fail("unsupported dtype");
  }
}

int64_t LifScanWorkspaceBytes() { return kMaxBlocks * sizeof(float2); }

// Called by MindSpore before the backward runs: one workspace of per-block partial sums.
int LifScanBackwardInit(int *, int64_t **, const char **, AotExtra *extra) {
  extra->SetWorkSpace({static_cast<size_t>(LifScanWorkspaceBytes())});
  return 0;
}

int LifScanBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                    void *extra) {
  if (nparam != lif::kBackwardParams + 1) {
    return Fail("LifScanBackward takes x, tau, vth, dout, three outputs and its workspace");
  }
  Geometry g{};
  DType dtype{};
  if (const int err = lif::ReadArguments(shapes, ndims, dtypes, extra, &g, &dtype)) return err;
  if (lif::ParseDType(dtypes[3]) != dtype) return Fail("dout must have the dtype of x");
  auto *s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32: return RunBackward<float>(params, g, s);
    case DType::kFloat16: return RunBackward<__half>(params, g, s);
    case DType::kBFloat16: return RunBackward<__nv_bfloat16>(params, g, s);
    default: return Fail("unsupported dtype");
  }
}

}  // extern "C"
