// LIF scan for MindSpore ops.Custom(func_type="aot") on GPU: forward and backward.
//
// Semantics as in lif_cpu.cc (and src/lif/reference.py): per window of k positions along the scan axis the
// membrane o starts at 0, u = tau*o + x, fire = u > vth, out = fire ? u : vth, o = fire ? 0 : u; positions
// after the last whole window are copied. Backward with `fire` held constant:
//   gu[j] = fire[j] ? g[j] : tau*gu[j+1]  (dx = gu),  dtau = sum gu[j]*o[j],  dvth = sum g*(1-fire).
//
// Memory traffic is that of a copy: the forward reads x and writes out, the backward reads x and dout and writes
// dx (it recomputes the potentials; no flag or membrane tensors). Two layouts:
// - along W (the Rows kernels): a block stages whole rows of x (and dout) in a shared-memory tile with
//   contiguous 16-byte loads, each thread scans windows inside the tile, and the block stores the tile back the
//   same way. The tile is padded by one word per 32 so that threads reading windows k apart hit distinct banks.
// - along H (the Lanes kernels), and along W when one row does not fit the tile: one thread per (plane, window,
//   column), the 32 threads of a warp on 32 neighbouring columns, so every step is a coalesced row segment.
// The scan of one window is compiled for windows of 2, 3, 4 and 8 (fully unrolled, values in registers) and
// for any other length. The backward runs each window forward into registers, then back: the reverse recurrence
// needs the potentials in reverse order, so windows longer than kChunk are done in chunks from the end, each
// replaying the forward from the window's start. float16/bfloat16 are computed in float32. dtau/dvth: per-block
// sums in a fixed-size workspace, then one block adds them in a fixed order, so the result does not depend on
// scheduling.
//
// Everything is launched on the stream MindSpore passes. A failed launch (no code for this GPU, a driver
// older than the toolkit) is reported on one stderr line naming the GPU, driver and build, and the call fails.
// Attributes "window" and "axis" as on CPU. Compiled for the host with LIF_HOST_EMULATION (tests).
#ifdef LIF_HOST_EMULATION
#include "cuda_host_emulation.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define LIF_LAUNCH(kernel, grid, threads, stream, ...) kernel<<<(grid), (threads), 0, (stream)>>>(__VA_ARGS__)
#endif

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "lif_host.h"

// Sizes; the host-emulation tests shrink them to reach every path (several tiles, grid-stride loops) on small
// tensors.
#ifndef LIF_THREADS
#define LIF_THREADS 256
#endif
#ifndef LIF_TILE_ELEMENTS
#define LIF_TILE_ELEMENTS 2048
#endif
#ifndef LIF_MAX_BLOCKS
#define LIF_MAX_BLOCKS 4096
#endif
// The architectures the library was built for (set by src/kernels/build.py), for the launch error message.
#define LIF_STRINGIFY_(x) #x
#define LIF_STRINGIFY(x) LIF_STRINGIFY_(x)
#ifdef LIF_CUDA_ARCHS
#define LIF_ARCHS_TEXT LIF_STRINGIFY(LIF_CUDA_ARCHS)
#else
#define LIF_ARCHS_TEXT "unknown architectures"
#endif

namespace {

using lif::DType;
using lif::Fail;
using lif::Geometry;

constexpr int kThreads = LIF_THREADS;
constexpr int kWarps = kThreads / 32;
// The grid never exceeds this many blocks (blocks loop over the remaining work); it also sizes the
// backward's workspace of per-block partial sums.
constexpr int kMaxBlocks = LIF_MAX_BLOCKS;
// Elements of x per shared-memory tile, and the padded size of the tile.
constexpr int kTileElements = LIF_TILE_ELEMENTS;
constexpr int kTileSlots = kTileElements + kTileElements / 32;
// Positions of a window of any length held in registers at once by the backward.
constexpr int kChunk = 16;

static_assert(kThreads % 32 == 0, "blocks are whole warps");

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

// Slot of tile element p: one padding word per 32 keeps window-strided reads free of bank conflicts.
__device__ __forceinline__ int Slot(int p) { return p + p / 32; }

// ------------------------------------------------------------------------------------------- one window
// A View reads x (X) and dout (G) of the window's positions 0..k-1 and writes out (SetOut) or dx (SetDx).

// Window length: the compile-time K (2, 3, 4, 8) or, for K == 0, the runtime k.
template <int K>
__device__ __forceinline__ int LengthOf(int k) {
  return K > 0 ? K : k;
}

template <int K, class View>
__device__ __forceinline__ void ForwardWindow(const View &v, int k, float tau, float vth) {
  const int n = LengthOf<K>(k);
  float o = 0.0f;
#pragma unroll
  for (int j = 0; j < n; ++j) {
    const float u = tau * o + v.X(j);
    const bool fire = u > vth;
    v.SetOut(j, fire ? u : vth);
    o = fire ? 0.0f : u;
  }
}

// Adds the window's (dtau, dvth) to `sums` and writes its dx.
template <int K, class View>
__device__ __forceinline__ void BackwardWindow(const View &v, int k, float tau, float vth, float2 &sums) {
  constexpr int kHeld = K > 0 ? K : kChunk;
  const int n = LengthOf<K>(k);
  float carry = 0.0f;  // d loss / d u at the position after the current chunk
  for (int end = n; end > 0; end -= kHeld) {
    const int begin = end > kHeld ? end - kHeld : 0;
    float o = 0.0f;  // membrane entering `begin`: replay the window up to it (only windows longer than kHeld)
    for (int j = 0; j < begin; ++j) {
      const float u = tau * o + v.X(j);
      o = u > vth ? 0.0f : u;
    }
    const float entering = o;
    float u[kHeld];
#pragma unroll
    for (int i = 0; i < kHeld; ++i) {
      if (begin + i < end) {
        u[i] = tau * o + v.X(begin + i);
        o = u[i] > vth ? 0.0f : u[i];
      }
    }
#pragma unroll
    for (int i = kHeld - 1; i >= 0; --i) {
      if (begin + i < end) {
        const float g = v.G(begin + i);
        const bool fire = u[i] > vth;
        carry = fire ? g : tau * carry;
        const float before = i == 0 ? entering : (u[i - 1] > vth ? 0.0f : u[i - 1]);  // o at this position
        sums.x += carry * before;
        sums.y += fire ? 0.0f : g;
        v.SetDx(begin + i, carry);
      }
    }
  }
}

// A window inside the shared tiles, updated in place: out over x, dx over dout.
struct TileView {
  float *x;
  float *g;
  int start;
  __device__ float X(int j) const { return x[Slot(start + j)]; }
  __device__ float G(int j) const { return g[Slot(start + j)]; }
  __device__ void SetOut(int j, float value) const { x[Slot(start + j)] = value; }
  __device__ void SetDx(int j, float value) const { g[Slot(start + j)] = value; }
};

// A window in global memory, `step` elements between positions.
template <typename T>
struct GlobalView {
  const T *x;
  const T *g;
  T *result;  // out (forward) or dx (backward)
  int64_t base;
  int64_t step;
  __device__ float X(int j) const { return ToFloat(x[base + j * step]); }
  __device__ float G(int j) const { return ToFloat(g[base + j * step]); }
  __device__ void SetOut(int j, float value) const { result[base + j * step] = FromFloat<T>(value); }
  __device__ void SetDx(int j, float value) const { result[base + j * step] = FromFloat<T>(value); }
};

// ------------------------------------------------------------------------------------------- reductions

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

// ------------------------------------------------------------------------------------------- along W: tiles

// Whole rows per tile; every row of the tensor is a "line" of `cols` elements.
struct Rows {
  int64_t lines;        // N*C*H
  int cols;             // W
  int k;                // window
  int whole;            // whole windows per row
  int lines_per_tile;   // rows per tile (>= 1)
  int64_t tiles;
};

// Tile t of the rows: where it starts in the tensor, its elements, and its whole windows.
struct TileSpan {
  int64_t base;
  int count;
  int windows;
};

__device__ __forceinline__ TileSpan TileOf(const Rows &r, int64_t t) {
  const int64_t first = t * r.lines_per_tile;
  const int lines = static_cast<int>(r.lines - first < r.lines_per_tile ? r.lines - first : r.lines_per_tile);
  return {first * r.cols, lines * r.cols, lines * r.whole};
}

// Tile position of whole window w (row w / whole, window w % whole of it).
__device__ __forceinline__ int WindowStart(const Rows &r, int w) {
  return (w / r.whole) * r.cols + (w % r.whole) * r.k;
}

// A tile's `count` elements from `first` on, moved as 16-byte vectors (kVector elements) from the first aligned
// element on: `body` vectors, then single elements at the `edges` positions before and after them.
template <typename T>
struct VectorSplit {
  static constexpr int kVector = 16 / sizeof(T);
  int head;      // elements before the first aligned one
  int body_end;  // head + body * kVector
  int body;
  int edges;

  __device__ VectorSplit(const T *first, int count) {
    const int misaligned = static_cast<int>(reinterpret_cast<uintptr_t>(first) / sizeof(T) % kVector);
    head = misaligned == 0 ? 0 : (kVector - misaligned < count ? kVector - misaligned : count);
    body = (count - head) / kVector;
    body_end = head + body * kVector;
    edges = head + count - body_end;
  }
  // Position of the i-th single element.
  __device__ int Edge(int i) const { return i < head ? i : body_end + (i - head); }
};

template <typename T>
__device__ __forceinline__ void LoadTile(const T *__restrict__ src, int64_t base, int count, float *tile) {
  const T *first = src + base;
  const VectorSplit<T> split(first, count);
  const auto *vectors = reinterpret_cast<const uint4 *>(first + split.head);
  for (int v = threadIdx.x; v < split.body; v += kThreads) {
    const uint4 bits = vectors[v];
    T values[split.kVector];
    memcpy(values, &bits, sizeof(bits));
#pragma unroll
    for (int e = 0; e < split.kVector; ++e) tile[Slot(split.head + v * split.kVector + e)] = ToFloat(values[e]);
  }
  for (int i = threadIdx.x; i < split.edges; i += kThreads) {
    const int at = split.Edge(i);
    tile[Slot(at)] = ToFloat(first[at]);
  }
}

template <typename T>
__device__ __forceinline__ void StoreTile(const float *tile, int64_t base, int count, T *__restrict__ dst) {
  T *first = dst + base;
  const VectorSplit<T> split(first, count);
  auto *vectors = reinterpret_cast<uint4 *>(first + split.head);
  for (int v = threadIdx.x; v < split.body; v += kThreads) {
    T values[split.kVector];
#pragma unroll
    for (int e = 0; e < split.kVector; ++e) values[e] = FromFloat<T>(tile[Slot(split.head + v * split.kVector + e)]);
    uint4 bits;
    memcpy(&bits, values, sizeof(bits));
    vectors[v] = bits;
  }
  for (int i = threadIdx.x; i < split.edges; i += kThreads) {
    const int at = split.Edge(i);
    first[at] = FromFloat<T>(tile[Slot(at)]);
  }
}

template <typename T, int K>
__global__ void __launch_bounds__(kThreads)
    ForwardRowsKernel(const T *__restrict__ x, T *__restrict__ out, const float *__restrict__ tau_ptr,
                      const float *__restrict__ vth_ptr, Rows r) {
  __shared__ float tile[kTileSlots];
  const float tau = *tau_ptr;
  const float vth = *vth_ptr;
  for (int64_t t = blockIdx.x; t < r.tiles; t += gridDim.x) {
    const TileSpan span = TileOf(r, t);
    LoadTile(x, span.base, span.count, tile);
    __syncthreads();
    for (int w = threadIdx.x; w < span.windows; w += kThreads) {  // the partial window stays as loaded
      ForwardWindow<K>(TileView{tile, nullptr, WindowStart(r, w)}, r.k, tau, vth);
    }
    __syncthreads();
    StoreTile(tile, span.base, span.count, out);
    __syncthreads();  // the next tile overwrites what this one stores
  }
}

template <typename T, int K>
__global__ void __launch_bounds__(kThreads)
    BackwardRowsKernel(const T *__restrict__ x, const T *__restrict__ dout, T *__restrict__ dx,
                       const float *__restrict__ tau_ptr, const float *__restrict__ vth_ptr, Rows r,
                       float2 *__restrict__ partials) {
  __shared__ float x_tile[kTileSlots];
  __shared__ float g_tile[kTileSlots];
  const float tau = *tau_ptr;
  const float vth = *vth_ptr;
  float2 sums = make_float2(0.0f, 0.0f);  // (dtau, dvth)
  for (int64_t t = blockIdx.x; t < r.tiles; t += gridDim.x) {
    const TileSpan span = TileOf(r, t);
    LoadTile(x, span.base, span.count, x_tile);
    LoadTile(dout, span.base, span.count, g_tile);
    __syncthreads();
    for (int w = threadIdx.x; w < span.windows; w += kThreads) {  // the partial window keeps dx = dout
      BackwardWindow<K>(TileView{x_tile, g_tile, WindowStart(r, w)}, r.k, tau, vth, sums);
    }
    __syncthreads();
    StoreTile(g_tile, span.base, span.count, dx);
    __syncthreads();
  }
  sums = BlockSum(sums);
  if (threadIdx.x == 0) partials[blockIdx.x] = sums;
}

// ------------------------------------------------------------------------------------------- along H: lanes

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
  // index = (plane * rows + row) * windows + window: rows too long for a tile
  const int64_t first_col = (index % windows) * g.k;
  const int64_t line = index / windows;
  const int64_t count = g.cols - first_col < g.k ? g.cols - first_col : g.k;
  return {line * g.cols + first_col, 1, count};
}

template <typename T, int K>
__global__ void __launch_bounds__(kThreads)
    ForwardLanesKernel(const T *__restrict__ x, T *__restrict__ out, const float *__restrict__ tau_ptr,
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
    ForwardWindow<K>(GlobalView<T>{x, nullptr, out, lane.base, lane.step}, static_cast<int>(g.k), tau, vth);
  }
}

template <typename T, int K>
__global__ void __launch_bounds__(kThreads)
    BackwardLanesKernel(const T *__restrict__ x, const T *__restrict__ dout, T *__restrict__ dx,
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
    BackwardWindow<K>(GlobalView<T>{x, dout, dx, lane.base, lane.step}, static_cast<int>(g.k), tau, vth, sums);
  }
  sums = BlockSum(sums);
  if (threadIdx.x == 0) partials[blockIdx.x] = sums;
}

// ------------------------------------------------------------------------------------------- host side

int BlocksFor(int64_t work_items, int64_t per_block) {
  const int64_t blocks = (work_items + per_block - 1) / per_block;
  return static_cast<int>(std::min<int64_t>(kMaxBlocks, std::max<int64_t>(1, blocks)));
}

// Along W with rows that fit a tile: the tiled kernels; otherwise one thread per window.
bool UsesRows(const Geometry &g) { return g.axis == 3 && g.cols <= kTileElements; }

Rows RowsOf(const Geometry &g) {
  const int64_t lines = g.planes * g.rows;
  const int lines_per_tile = static_cast<int>(kTileElements / g.cols);
  return {lines, static_cast<int>(g.cols), static_cast<int>(g.k), static_cast<int>(g.cols / g.k), lines_per_tile,
          (lines + lines_per_tile - 1) / lines_per_tile};
}

// Lanes (threads' worth of work) and windows per line of the lane kernels.
struct Lanes {
  int64_t windows;
  int64_t lanes;
};

Lanes LanesOf(const Geometry &g) {
  const int64_t windows = (g.length() + g.k - 1) / g.k;
  return {windows, g.planes * windows * (g.axis == 2 ? g.cols : g.rows)};
}

// Calls f(std::integral_constant<int, K>) with the compiled window K for k (0: any length).
template <typename F>
int WithWindow(int64_t k, F &&f) {
  switch (k) {
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 8: return f(std::integral_constant<int, 8>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

// After a launch: 0, or 1 with one stderr line saying what failed and on which GPU, driver and build.
int CheckLaunch(const char *what) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return 0;
  int device = 0, major = 0, minor = 0, driver = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  cudaDriverGetVersion(&driver);
  cudaGetLastError();  // the queries above must not leave an error for the next call
  const int built = CUDART_VERSION;
  const char *hint = "";
  if (err == cudaErrorInsufficientDriver || (driver > 0 && driver < built)) {
    hint = "; the driver is older than the toolkit: update the driver or build with an older nvcc";
  } else if (err == cudaErrorNoKernelImageForDevice) {
    hint = "; no code for this GPU: build with an nvcc that lists its architecture (nvcc --list-gpu-arch)";
  }
  std::fprintf(stderr,
               "snn_mlp LIF kernel: launching %s failed: %s (%s) on a GPU of compute capability %d.%d, driver for "
               "CUDA %d.%d, library built with CUDA %d.%d for %s%s (see docs/KERNELS.md)\n",
               what, cudaGetErrorName(err), cudaGetErrorString(err), major, minor, driver / 1000,
               driver % 1000 / 10, built / 1000, built % 1000 / 10, LIF_ARCHS_TEXT, hint);
  return 1;
}

template <typename T>
int RunForward(void **params, const Geometry &g, cudaStream_t stream) {
  const auto *x = static_cast<const T *>(params[0]);
  const auto *tau = static_cast<const float *>(params[1]);
  const auto *vth = static_cast<const float *>(params[2]);
  auto *out = static_cast<T *>(params[3]);
  if (g.elements() == 0) return 0;
  if (g.k == 0) {
    cudaMemcpyAsync(out, x, sizeof(T) * g.elements(), cudaMemcpyDeviceToDevice, stream);
    return CheckLaunch("the copy of x");
  }
  return WithWindow(g.k, [&](auto window) {
    constexpr int K = decltype(window)::value;
    if (UsesRows(g)) {
      const Rows r = RowsOf(g);
      const auto kernel = ForwardRowsKernel<T, K>;
      LIF_LAUNCH(kernel, BlocksFor(r.tiles, 1), kThreads, stream, x, out, tau, vth, r);
    } else {
      const Lanes l = LanesOf(g);
      const auto kernel = ForwardLanesKernel<T, K>;
      LIF_LAUNCH(kernel, BlocksFor(l.lanes, kThreads), kThreads, stream, x, out, tau, vth, g, l.windows, l.lanes);
    }
    return CheckLaunch("the forward kernel");
  });
}

template <typename T>
int RunBackward(void **params, const Geometry &g, cudaStream_t stream) {
  const auto *x = static_cast<const T *>(params[0]);
  const auto *tau = static_cast<const float *>(params[1]);
  const auto *vth = static_cast<const float *>(params[2]);
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
  return WithWindow(g.k, [&](auto window) {
    constexpr int K = decltype(window)::value;
    int blocks = 0;
    if (UsesRows(g)) {
      const Rows r = RowsOf(g);
      blocks = BlocksFor(r.tiles, 1);
      const auto kernel = BackwardRowsKernel<T, K>;
      LIF_LAUNCH(kernel, blocks, kThreads, stream, x, dout, dx, tau, vth, r, partials);
    } else {
      const Lanes l = LanesOf(g);
      blocks = BlocksFor(l.lanes, kThreads);
      const auto kernel = BackwardLanesKernel<T, K>;
      LIF_LAUNCH(kernel, blocks, kThreads, stream, x, dout, dx, tau, vth, g, l.windows, l.lanes, partials);
    }
    if (const int err = CheckLaunch("the backward kernel")) return err;
    LIF_LAUNCH(SumPartialsKernel, 1, kThreads, stream, partials, blocks, dtau, dvth);
    return CheckLaunch("the dtau/dvth sum");
  });
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
