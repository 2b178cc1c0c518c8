// LIF scan for MindSpore ops.Custom(func_type="aot") on CPU: forward and backward.
//
// Semantics (those of the original SNN-MLP CUDA kernels; src/lif/reference.py is the loop-by-loop reference):
// per window of k consecutive positions along the scan axis (2 = H, 3 = W) of an NCHW tensor, the membrane o
// starts at 0 and for each position  u = tau*o + x;  fire = u > vth;  out = fire ? u : vth;  o = fire ? 0 : u.
// Positions after the last whole window are copied. The backward holds `fire` constant:
//   gu[j] = fire[j] ? g[j] : gu[j+1]*tau   (dx = gu),   dtau = sum gu[j]*o[j],   dvth = sum over windows g*(1-fire).
// The backward recomputes u from x, so the forward stores nothing besides its output.
//
// Attributes: "window" (-1 identity, 0 the whole axis, k > 0) and "axis" (2 or 3).
// Inputs/outputs:
//   LifScanForward:  x (N,C,H,W) float32|float16|bfloat16, tau (1,) float32, vth (1,) float32 -> out like x
//   LifScanBackward: x, tau, vth, dout (like x) -> dx (like x), dtau (1,) float32, dvth (1,) float32
// float16 and bfloat16 are computed in float32.
//
// Work is split over the N*C planes across threads (SNNMLP_NUM_THREADS, default: all hardware threads). The
// inner loops run along the contiguous W axis: the H scan advances whole rows of W membranes at a time; the W
// scan walks each row window after window (with the window length a compile-time constant for small windows,
// so the compiler can interleave independent windows). dtau/dvth are summed per plane in double and the plane
// sums added in plane order, so the result does not depend on the thread count.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "aot_extra.h"

namespace {

// ---------------------------------------------------------------- element types (stored -> float32 -> stored)

struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline float ToFloat(float v) { return v; }
inline float ToFloat(BFloat16 v) { return BitsFloat(static_cast<uint32_t>(v.bits) << 16); }

inline float ToFloat(Half h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t exponent = (h.bits >> 10) & 0x1fu;
  const uint32_t mantissa = h.bits & 0x3ffu;
  if (exponent == 0x1fu) {  // inf / NaN
    return BitsFloat(sign | 0x7f800000u | (mantissa << 13));
  }
  if (exponent == 0) {  // zero / subnormal: mantissa * 2^-24, exact in float
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return BitsFloat(sign | FloatBits(magnitude));
  }
  return BitsFloat(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

template <typename T>
inline T FromFloat(float f);

template <>
inline float FromFloat<float>(float f) {
  return f;
}

template <>
inline BFloat16 FromFloat<BFloat16>(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN stays a (quiet) NaN
    return BFloat16{static_cast<uint16_t>((u >> 16) | 0x40u)};
  }
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return BFloat16{static_cast<uint16_t>(rounded >> 16)};
}

template <>
inline Half FromFloat<Half>(float f) {
  uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u >= 0x7f800000u) {  // inf / NaN
    return Half{static_cast<uint16_t>(sign | (u > 0x7f800000u ? 0x7e00u : 0x7c00u))};
  }
  if (u >= 0x477ff000u) {  // rounds past the largest half (65504): inf
    return Half{static_cast<uint16_t>(sign | 0x7c00u)};
  }
  if (u < 0x38800000u) {  // below the smallest normal half: the float addition rounds to the 2^-24 grid
    const float shifted = BitsFloat(u) + 0.5f;
    return Half{static_cast<uint16_t>(sign | (FloatBits(shifted) - 0x3f000000u))};
  }
  const uint32_t odd = (u >> 13) & 1u;
  u += 0xc8000fffu + odd;  // rebias the exponent by -112 and round to nearest even
  return Half{static_cast<uint16_t>(sign | (u >> 13))};
}

// ---------------------------------------------------------------- geometry and threading

struct Geometry {
  int64_t planes;  // N*C
  int64_t rows;    // H
  int64_t cols;    // W
  int64_t k;       // effective window; 0 when the scan is the identity
  int axis;
};

// Effective window: -1 -> identity, 0 -> the whole axis, longer than the axis -> no whole window (identity).
inline int64_t EffectiveWindow(int64_t window, int64_t length) {
  if (window < 0) return 0;
  const int64_t k = window == 0 ? length : window;
  return k > length ? 0 : k;
}

int ThreadCount(int64_t planes, int64_t elements) {
  constexpr int64_t kMinElementsPerThread = 1 << 15;  // below this the thread start costs more than it saves
  int64_t wanted = static_cast<int64_t>(std::thread::hardware_concurrency());
  if (const char *env = std::getenv("SNNMLP_NUM_THREADS")) {
    const long requested = std::strtol(env, nullptr, 10);
    if (requested > 0) wanted = requested;
  }
  wanted = std::min({wanted, planes, std::max<int64_t>(1, elements / kMinElementsPerThread)});
  return static_cast<int>(std::max<int64_t>(1, wanted));
}

// Runs body(first_plane, end_plane) on contiguous chunks of planes; false if any chunk threw.
template <typename Body>
bool ParallelOverPlanes(const Geometry &g, Body body) {
  const int threads = ThreadCount(g.planes, g.planes * g.rows * g.cols);
  std::atomic<bool> failed{false};
  auto run = [&](int64_t begin, int64_t end) {
    try {
      body(begin, end);
    } catch (const std::exception &e) {
      std::fprintf(stderr, "snn_mlp LIF kernel: %s\n", e.what());
      failed = true;
    }
  };
  if (threads == 1) {
    run(0, g.planes);
    return !failed;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  const int64_t chunk = (g.planes + threads - 1) / threads;
  for (int t = 1; t < threads; ++t) {
    const int64_t begin = std::min(g.planes, t * chunk);
    const int64_t end = std::min(g.planes, begin + chunk);
    if (begin < end) pool.emplace_back(run, begin, end);
  }
  run(0, std::min(g.planes, chunk));
  for (auto &worker : pool) worker.join();
  return !failed;
}

// ---------------------------------------------------------------- forward

// H scan of one plane: every step advances a whole row of `cols` membranes, contiguous in memory.
template <typename T>
void ForwardPlaneH(const T *x, T *out, const Geometry &g, float tau, float vth, float *membrane) {
  const int64_t cols = g.cols;
  const int64_t whole = g.rows / g.k * g.k;
  for (int64_t start = 0; start < whole; start += g.k) {
    std::fill(membrane, membrane + cols, 0.0f);
    for (int64_t j = 0; j < g.k; ++j) {
      const T *xr = x + (start + j) * cols;
      T *yr = out + (start + j) * cols;
#pragma omp simd
      for (int64_t w = 0; w < cols; ++w) {
        const float u = tau * membrane[w] + ToFloat(xr[w]);
        const bool fire = u > vth;
        yr[w] = FromFloat<T>(fire ? u : vth);
        membrane[w] = fire ? 0.0f : u;
      }
    }
  }
  std::memcpy(out + whole * cols, x + whole * cols, sizeof(T) * (g.rows - whole) * cols);
}

// One window along W; K > 0 is the window fixed at compile time, K == 0 takes it from k.
template <int K, typename T>
inline void ForwardWindowW(const T *x, T *out, int64_t k, float tau, float vth) {
  const int64_t n = K > 0 ? K : k;
  float o = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    const float u = tau * o + ToFloat(x[j]);
    const bool fire = u > vth;
    out[j] = FromFloat<T>(fire ? u : vth);
    o = fire ? 0.0f : u;
  }
}

template <int K, typename T>
void ForwardPlaneW(const T *x, T *out, const Geometry &g, float tau, float vth) {
  const int64_t windows = g.cols / g.k;
  const int64_t whole = windows * g.k;
  for (int64_t r = 0; r < g.rows; ++r) {
    const T *xr = x + r * g.cols;
    T *yr = out + r * g.cols;
    for (int64_t i = 0; i < windows; ++i) {
      ForwardWindowW<K>(xr + i * g.k, yr + i * g.k, g.k, tau, vth);
    }
    std::memcpy(yr + whole, xr + whole, sizeof(T) * (g.cols - whole));
  }
}

template <typename T>
bool Forward(const T *x, T *out, const Geometry &g, float tau, float vth) {
  const int64_t plane = g.rows * g.cols;
  if (g.k == 0) {
    std::memcpy(out, x, sizeof(T) * g.planes * plane);
    return true;
  }
  return ParallelOverPlanes(g, [&](int64_t begin, int64_t end) {
    std::vector<float> membrane(g.axis == 2 ? g.cols : 0);
    for (int64_t p = begin; p < end; ++p) {
      const T *xp = x + p * plane;
      T *yp = out + p * plane;
      if (g.axis == 2) {
        ForwardPlaneH(xp, yp, g, tau, vth, membrane.data());
        continue;
      }
      // Small windows (the paper uses 4) get a compile-time trip count.
      switch (g.k) {
        case 2: ForwardPlaneW<2>(xp, yp, g, tau, vth); break;
        case 3: ForwardPlaneW<3>(xp, yp, g, tau, vth); break;
        case 4: ForwardPlaneW<4>(xp, yp, g, tau, vth); break;
        case 8: ForwardPlaneW<8>(xp, yp, g, tau, vth); break;
        default: ForwardPlaneW<0>(xp, yp, g, tau, vth); break;
      }
    }
  });
}

// ---------------------------------------------------------------- backward

struct Sums {
  double dtau = 0.0;
  double dvth = 0.0;
};

// H scan of one plane. u_rows (k*cols) holds the recomputed potentials of the window, carry (cols) the
// gradient flowing back through the membrane.
template <typename T>
Sums BackwardPlaneH(const T *x, const T *dout, T *dx, const Geometry &g, float tau, float vth, float *u_rows,
                    float *carry) {
  const int64_t cols = g.cols;
  const int64_t whole = g.rows / g.k * g.k;
  Sums sums;
  for (int64_t start = 0; start < whole; start += g.k) {
    // Recompute u for the k rows of the window; the membrane of row j is derived from row j-1.
    for (int64_t j = 0; j < g.k; ++j) {
      const T *xr = x + (start + j) * cols;
      float *ur = u_rows + j * cols;
      const float *prev = j == 0 ? nullptr : u_rows + (j - 1) * cols;
#pragma omp simd
      for (int64_t w = 0; w < cols; ++w) {
        const float o = (prev == nullptr || prev[w] > vth) ? 0.0f : prev[w];
        ur[w] = tau * o + ToFloat(xr[w]);
      }
    }
    std::fill(carry, carry + cols, 0.0f);
    for (int64_t j = g.k - 1; j >= 0; --j) {
      const T *gr = dout + (start + j) * cols;
      T *dxr = dx + (start + j) * cols;
      const float *ur = u_rows + j * cols;
      const float *prev = j == 0 ? nullptr : u_rows + (j - 1) * cols;
      float row_dtau = 0.0f;
      float row_dvth = 0.0f;
#pragma omp simd reduction(+ : row_dtau, row_dvth)
      for (int64_t w = 0; w < cols; ++w) {
        const bool fire = ur[w] > vth;
        const float grad = ToFloat(gr[w]);
        const float gu = fire ? grad : carry[w] * tau;
        const float o = (prev == nullptr || prev[w] > vth) ? 0.0f : prev[w];
        dxr[w] = FromFloat<T>(gu);
        carry[w] = gu;
        row_dtau += gu * o;
        row_dvth += fire ? 0.0f : grad;
      }
      sums.dtau += row_dtau;
      sums.dvth += row_dvth;
    }
  }
  std::memcpy(dx + whole * cols, dout + whole * cols, sizeof(T) * (g.rows - whole) * cols);
  return sums;
}

// W scan of one plane; u_window (k floats) holds the recomputed potentials of one window.
template <typename T>
Sums BackwardPlaneW(const T *x, const T *dout, T *dx, const Geometry &g, float tau, float vth, float *u_window) {
  const int64_t k = g.k;
  const int64_t windows = g.cols / k;
  const int64_t whole = windows * k;
  Sums sums;
  for (int64_t r = 0; r < g.rows; ++r) {
    const T *xr = x + r * g.cols;
    const T *gr = dout + r * g.cols;
    T *dxr = dx + r * g.cols;
    float row_dtau = 0.0f;
    float row_dvth = 0.0f;
    for (int64_t i = 0; i < windows; ++i) {
      const int64_t base = i * k;
      float o = 0.0f;
      for (int64_t j = 0; j < k; ++j) {
        const float u = tau * o + ToFloat(xr[base + j]);
        u_window[j] = u;
        o = u > vth ? 0.0f : u;
      }
      float carry = 0.0f;
      for (int64_t j = k - 1; j >= 0; --j) {
        const bool fire = u_window[j] > vth;
        const float grad = ToFloat(gr[base + j]);
        const float gu = fire ? grad : carry * tau;
        const float membrane = (j == 0 || u_window[j - 1] > vth) ? 0.0f : u_window[j - 1];
        dxr[base + j] = FromFloat<T>(gu);
        carry = gu;
        row_dtau += gu * membrane;
        row_dvth += fire ? 0.0f : grad;
      }
    }
    std::memcpy(dxr + whole, gr + whole, sizeof(T) * (g.cols - whole));
    sums.dtau += row_dtau;
    sums.dvth += row_dvth;
  }
  return sums;
}

template <typename T>
bool Backward(const T *x, const T *dout, T *dx, float *dtau, float *dvth, const Geometry &g, float tau,
              float vth) {
  const int64_t plane = g.rows * g.cols;
  if (g.k == 0) {
    std::memcpy(dx, dout, sizeof(T) * g.planes * plane);
    *dtau = 0.0f;
    *dvth = 0.0f;
    return true;
  }
  std::vector<Sums> per_plane(g.planes);
  const bool ok = ParallelOverPlanes(g, [&](int64_t begin, int64_t end) {
    const bool along_h = g.axis == 2;
    std::vector<float> u_buffer(along_h ? g.k * g.cols : g.k);
    std::vector<float> carry(along_h ? g.cols : 0);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t offset = p * plane;
      per_plane[p] = along_h ? BackwardPlaneH(x + offset, dout + offset, dx + offset, g, tau, vth,
                                              u_buffer.data(), carry.data())
                             : BackwardPlaneW(x + offset, dout + offset, dx + offset, g, tau, vth, u_buffer.data());
    }
  });
  Sums total;
  for (const Sums &s : per_plane) {
    total.dtau += s.dtau;
    total.dvth += s.dvth;
  }
  *dtau = static_cast<float>(total.dtau);
  *dvth = static_cast<float>(total.dvth);
  return ok;
}

// ---------------------------------------------------------------- argument checking

enum class DType { kFloat32, kFloat16, kBFloat16, kOther };

DType ParseDType(const char *name) {
  const std::string s(name);
  if (s == "float32" || s == "float") return DType::kFloat32;
  if (s == "float16") return DType::kFloat16;
  if (s == "bfloat16") return DType::kBFloat16;
  return DType::kOther;
}

int Fail(const char *what) {
  std::fprintf(stderr, "snn_mlp LIF kernel: %s\n", what);
  return 1;
}

// Validates the (x, tau, vth) inputs and the attributes; fills the geometry.
int ReadArguments(int64_t **shapes, int *ndims, const char **dtypes, void *extra_ptr, Geometry *g, DType *dtype) {
  if (ndims[0] != 4) return Fail("x must be 4-D (N, C, H, W)");
  *dtype = ParseDType(dtypes[0]);
  if (*dtype == DType::kOther) return Fail("x must be float32, float16 or bfloat16");
  if (ParseDType(dtypes[1]) != DType::kFloat32 || ParseDType(dtypes[2]) != DType::kFloat32) {
    return Fail("tau and vth must be float32");
  }
  auto *extra = static_cast<AotExtra *>(extra_ptr);
  if (extra == nullptr || !extra->HasAttr("window") || !extra->HasAttr("axis")) {
    return Fail("the 'window' and 'axis' attributes are missing");
  }
  const int64_t window = extra->IntAttr("window");
  const int64_t axis = extra->IntAttr("axis");
  if (axis != 2 && axis != 3) return Fail("axis must be 2 (H) or 3 (W)");
  g->planes = shapes[0][0] * shapes[0][1];
  g->rows = shapes[0][2];
  g->cols = shapes[0][3];
  g->axis = static_cast<int>(axis);
  g->k = EffectiveWindow(window, axis == 2 ? g->rows : g->cols);
  return 0;
}

template <typename T>
int RunForward(void **params, const Geometry &g) {
  const float tau = *static_cast<const float *>(params[1]);
  const float vth = *static_cast<const float *>(params[2]);
  const bool ok = Forward(static_cast<const T *>(params[0]), static_cast<T *>(params[3]), g, tau, vth);
  return ok ? 0 : 1;
}

template <typename T>
int RunBackward(void **params, const Geometry &g) {
  const float tau = *static_cast<const float *>(params[1]);
  const float vth = *static_cast<const float *>(params[2]);
  const bool ok = Backward(static_cast<const T *>(params[0]), static_cast<const T *>(params[3]),
                           static_cast<T *>(params[4]), static_cast<float *>(params[5]),
                           static_cast<float *>(params[6]), g, tau, vth);
  return ok ? 0 : 1;
}

std::vector<int64_t> ShapeOf(int index, int *ndims, int64_t **shapes) {
  return std::vector<int64_t>(shapes[index], shapes[index] + ndims[index]);
}

}  // namespace

extern "C" {

// Output shape = shape of x; dynamic dims (-1) and dynamic rank (-2) pass through.
std::vector<int64_t> LifScanForwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return ShapeOf(0, ndims, shapes);
}

std::vector<std::vector<int64_t>> LifScanBackwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return {ShapeOf(0, ndims, shapes), ShapeOf(1, ndims, shapes), ShapeOf(2, ndims, shapes)};
}

int LifScanForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                   void *extra) {
  if (nparam != 4) return Fail("LifScanForward takes x, tau, vth and one output");
  Geometry g{};
  DType dtype{};
  if (const int err = ReadArguments(shapes, ndims, dtypes, extra, &g, &dtype)) return err;
  switch (dtype) {
    case DType::kFloat32: return RunForward<float>(params, g);
    case DType::kFloat16: return RunForward<Half>(params, g);
    case DType::kBFloat16: return RunForward<BFloat16>(params, g);
    default: return Fail("unsupported dtype");
  }
}

int LifScanBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                    void *extra) {
  if (nparam != 7) return Fail("LifScanBackward takes x, tau, vth, dout and three outputs");
  Geometry g{};
  DType dtype{};
  if (const int err = ReadArguments(shapes, ndims, dtypes, extra, &g, &dtype)) return err;
  if (ParseDType(dtypes[3]) != dtype) return Fail("dout must have the dtype of x");
  switch (dtype) {
    case DType::kFloat32: return RunBackward<float>(params, g);
    case DType::kFloat16: return RunBackward<Half>(params, g);
    case DType::kBFloat16: return RunBackward<BFloat16>(params, g);
    default: return Fail("unsupported dtype");
  }
}

}  // extern "C"
