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
// Work is split over the N*C planes, shared out between the calling thread and the persistent helper threads of
// cpu_parallel.h (SNNMLP_NUM_THREADS caps them, default: all hardware threads). The inner loops run along the
// contiguous W axis: the H scan advances whole rows of W membranes at a time; the W scan walks the windows of
// each row, and for windows of 2, 3, 4 and 8 (a compile-time length) the loop over windows vectorises, each vector
// lane one window. Selects are branch-free (fire is a coin flip). dtau/dvth are summed in float per column or
// block of windows, in double per plane, and the planes added in order, so the result does not depend on the
// thread count.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "cpu_parallel.h"
#include "lif_host.h"

namespace {

using cpu_parallel::BitsFloat;
using cpu_parallel::FloatBits;
using cpu_parallel::Select;
using cpu_parallel::SelectBits;
using lif::DType;
using lif::Fail;
using lif::Geometry;

// ---------------------------------------------------------------- element types (stored -> float32 -> stored)

struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

inline float ToFloat(float v) { return v; }
inline float ToFloat(BFloat16 v) { return BitsFloat(static_cast<uint32_t>(v.bits) << 16); }

// IEEE half <-> float with integer operations only (no denormal floats are formed, so FTZ/DAZ modes set by
// the host framework cannot change the result), written as selects so that loops over them vectorise.
inline float ToFloat(Half h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t magnitude = h.bits & 0x7fffu;
  // Normal numbers rebias the exponent by 127 - 15; inf/NaN (exponent 31) map to exponent 255.
  const uint32_t widened = (magnitude << 13) + (magnitude >= 0x7c00u ? 0x70000000u : 0x38000000u);
  // Zero and subnormals are mantissa * 2^-24: exact in float, and a normal float unless zero.
  const uint32_t subnormal = FloatBits(static_cast<float>(magnitude) * 5.9604644775390625e-8f);
  return BitsFloat(sign | SelectBits(magnitude < 0x400u, subnormal, widened));
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
  const uint32_t quiet_nan = (u >> 16) | 0x40u;
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // round to nearest even
  return BFloat16{static_cast<uint16_t>(SelectBits((u & 0x7fffffffu) > 0x7f800000u, quiet_nan, rounded))};
}

template <>
inline Half FromFloat<Half>(float f) {
  const uint32_t u = FloatBits(f) & 0x7fffffffu;
  const uint32_t sign = (FloatBits(f) >> 16) & 0x8000u;
  const uint32_t inf_or_nan = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  // Below the smallest normal half: adding 0.5 puts the value on float's 2^-24 grid, rounding to nearest even.
  const uint32_t subnormal = FloatBits(BitsFloat(u) + 0.5f) - 0x3f000000u;
  // Normal: rebias the exponent by -112 and round the 13 dropped bits to nearest even.
  const uint32_t normal = (u + 0xc8000fffu + ((u >> 13) & 1u)) >> 13;
  uint32_t bits = SelectBits(u < 0x38800000u, subnormal, normal);
  bits = SelectBits(u >= 0x477ff000u, 0x7c00u, bits);  // rounds past 65504: inf
  bits = SelectBits(u >= 0x7f800000u, inf_or_nan, bits);
  return Half{static_cast<uint16_t>(sign | bits)};
}

// ---------------------------------------------------------------- geometry and threading

// Runs body(first_plane, end_plane) over chunks of planes on the shared pool of cpu_parallel.h (no thread is started
// per call); false if a chunk threw.
template <typename Body>
bool ParallelOverPlanes(const Geometry &g, Body body) {
  return cpu_parallel::ParallelFor(g.planes, g.elements(), body);
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
        yr[w] = FromFloat<T>(Select(fire, u, vth));
        membrane[w] = Select(fire, 0.0f, u);
      }
    }
  }
  std::memcpy(out + whole * cols, x + whole * cols, sizeof(T) * (g.rows - whole) * cols);
}

// One window of n positions along W.
template <typename T>
inline void ForwardWindow(const T *x, T *out, int64_t n, float tau, float vth) {
  float o = 0.0f;
#pragma GCC unroll 8
  for (int64_t j = 0; j < n; ++j) {
    const float u = tau * o + ToFloat(x[j]);
    const bool fire = u > vth;
    out[j] = FromFloat<T>(Select(fire, u, vth));
    o = Select(fire, 0.0f, u);
  }
}

// `windows` consecutive windows along W starting at x. With the window K fixed at compile time the loop
// vectorises, each lane one window (its K positions become interleaved loads); K == 0 takes the window from k.
template <int K, typename T>
void ForwardWindows(const T *x, T *out, int64_t windows, int64_t k, float tau, float vth) {
  if constexpr (K > 0) {
#pragma omp simd
    for (int64_t i = 0; i < windows; ++i) ForwardWindow(x + i * K, out + i * K, K, tau, vth);
  } else {
    for (int64_t i = 0; i < windows; ++i) ForwardWindow(x + i * k, out + i * k, k, tau, vth);
  }
}

// W scan of one plane. When the windows tile the rows exactly, the plane is one run of windows (long loops
// vectorise best); otherwise each row is its windows plus a copied tail.
template <int K, typename T>
void ForwardPlaneW(const T *x, T *out, const Geometry &g, float tau, float vth) {
  const int64_t windows = g.cols / g.k;
  const int64_t whole = windows * g.k;
  if (whole == g.cols) {
    ForwardWindows<K>(x, out, g.rows * windows, g.k, tau, vth);
    return;
  }
  for (int64_t r = 0; r < g.rows; ++r) {
    const T *xr = x + r * g.cols;
    T *yr = out + r * g.cols;
    ForwardWindows<K>(xr, yr, windows, g.k, tau, vth);
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
      switch (g.k) {  // the window sizes that vectorise (the paper uses 4)
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

// Windows per block of the W scan: their float dtau/dvth slots are summed in double after each block.
constexpr int64_t kLaneBlock = 512;

struct WindowSums {
  float dtau;
  float dvth;
};

// One window of n positions lying `stride` elements apart; `u` has room for n potentials.
template <typename T>
inline WindowSums BackwardWindow(const T *x, const T *dout, T *dx, int64_t n, int64_t stride, float tau, float vth,
                                 float *u) {
  float o = 0.0f;
#pragma GCC unroll 8
  for (int64_t j = 0; j < n; ++j) {
    u[j] = tau * o + ToFloat(x[j * stride]);
    o = Select(u[j] > vth, 0.0f, u[j]);
  }
  WindowSums sums{0.0f, 0.0f};
  float carry = 0.0f;
#pragma GCC unroll 8
  for (int64_t j = n - 1; j >= 0; --j) {
    const bool fire = u[j] > vth;
    const float grad = ToFloat(dout[j * stride]);
    const float gu = Select(fire, grad, carry * tau);
    const float membrane = j == 0 ? 0.0f : Select(u[j - 1] > vth, 0.0f, u[j - 1]);
    dx[j * stride] = FromFloat<T>(gu);
    carry = gu;
    sums.dtau += gu * membrane;
    sums.dvth += Select(fire, 0.0f, grad);
  }
  return sums;
}

// `lanes` windows of the compile-time length K side by side, each lane adding to its own dtau/dvth slot. Along W
// the windows are consecutive (lane i starts at i*K, positions 1 apart: interleaved loads); along H they are the
// columns of one window of rows (lane i starts at i, positions `cols` apart: plain vector loads). Both
// vectorise over the lanes once the K positions are unrolled. Kept out of line: GCC honours `restrict` on the
// parameters of a real function, and without it would guard the vector loop with (failing) overlap checks.
template <int K, bool kAlongH, typename T>
__attribute__((noinline)) void BackwardLanes(const T *__restrict x, const T *__restrict dout, T *__restrict dx, int64_t lanes, int64_t cols,
                   float tau, float vth, float *__restrict dtau, float *__restrict dvth) {
  const int64_t lane_step = kAlongH ? 1 : K;
  const int64_t stride = kAlongH ? cols : 1;
  for (int64_t i = 0; i < lanes; ++i) {
    float u[K];
    const int64_t at = i * lane_step;
    const WindowSums window = BackwardWindow(x + at, dout + at, dx + at, K, stride, tau, vth, u);
    dtau[i] += window.dtau;
    dvth[i] += window.dvth;
  }
}

// Per-thread scratch: per-lane dtau/dvth slots (summed in double once per plane or block), the potentials of
// one window for runtime window lengths, and for the generic H scan the membranes entering each row of a
// window plus the gradient carried back through them.
struct Scratch {
  std::vector<float> dtau, dvth, u, membranes, carry;
};

Sums DrainLanes(Scratch *s, int64_t lanes) {
  Sums sums;
  for (int64_t i = 0; i < lanes; ++i) {
    sums.dtau += s->dtau[i];
    sums.dvth += s->dvth[i];
  }
  std::fill(s->dtau.begin(), s->dtau.begin() + lanes, 0.0f);
  std::fill(s->dvth.begin(), s->dvth.begin() + lanes, 0.0f);
  return sums;
}

// Generic H scan (runtime window) row by row: recompute the membrane entering each row, then run the
// reverse recurrence on whole rows.
template <typename T>
void NextMembraneRow(const T *__restrict x, const float *__restrict o, float *__restrict next, int64_t cols,
                     float tau, float vth) {
  for (int64_t w = 0; w < cols; ++w) {
    const float u = tau * o[w] + ToFloat(x[w]);
    next[w] = Select(u > vth, 0.0f, u);
  }
}

template <typename T>
void BackwardRow(const T *__restrict x, const T *__restrict dout, const float *__restrict o, T *__restrict dx,
                 float *__restrict carry, float *__restrict dtau, float *__restrict dvth, int64_t cols, float tau,
                 float vth) {
  for (int64_t w = 0; w < cols; ++w) {
    const bool fire = tau * o[w] + ToFloat(x[w]) > vth;
    const float grad = ToFloat(dout[w]);
    const float gu = Select(fire, grad, carry[w] * tau);
    dx[w] = FromFloat<T>(gu);
    carry[w] = gu;
    dtau[w] += gu * o[w];
    dvth[w] += Select(fire, 0.0f, grad);
  }
}

template <typename T>
void BackwardWindowRowsH(const T *x, const T *dout, T *dx, const Geometry &g, float tau, float vth, Scratch *s) {
  const int64_t cols = g.cols;
  float *membranes = s->membranes.data();
  std::fill(membranes, membranes + cols, 0.0f);
  for (int64_t j = 0; j + 1 < g.k; ++j) {
    NextMembraneRow(x + j * cols, membranes + j * cols, membranes + (j + 1) * cols, cols, tau, vth);
  }
  std::fill(s->carry.begin(), s->carry.end(), 0.0f);
  for (int64_t j = g.k - 1; j >= 0; --j) {
    const int64_t row = j * cols;
    BackwardRow(x + row, dout + row, membranes + row, dx + row, s->carry.data(), s->dtau.data(), s->dvth.data(),
                cols, tau, vth);
  }
}

template <int K, typename T>
Sums BackwardPlaneH(const T *x, const T *dout, T *dx, const Geometry &g, float tau, float vth, Scratch *s) {
  const int64_t cols = g.cols;
  const int64_t whole = g.rows / g.k * g.k;
  for (int64_t start = 0; start < whole; start += g.k) {
    const int64_t at = start * cols;
    if constexpr (K > 0) {
      BackwardLanes<K, true>(x + at, dout + at, dx + at, cols, cols, tau, vth, s->dtau.data(), s->dvth.data());
    } else {
      BackwardWindowRowsH(x + at, dout + at, dx + at, g, tau, vth, s);
    }
  }
  std::memcpy(dx + whole * cols, dout + whole * cols, sizeof(T) * (g.rows - whole) * cols);
  return DrainLanes(s, cols);
}

// `windows` consecutive windows along W, in blocks of at most kLaneBlock lanes.
template <int K, typename T>
void BackwardWindowsW(const T *x, const T *dout, T *dx, int64_t windows, int64_t k, float tau, float vth,
                      Scratch *s, Sums *sums) {
  for (int64_t first = 0; first < windows; first += kLaneBlock) {
    const int64_t lanes = std::min(kLaneBlock, windows - first);
    const int64_t at = first * k;
    if constexpr (K > 0) {
      BackwardLanes<K, false>(x + at, dout + at, dx + at, lanes, 0, tau, vth, s->dtau.data(), s->dvth.data());
    } else {
      for (int64_t i = 0; i < lanes; ++i) {
        const int64_t w = at + i * k;
        const WindowSums window = BackwardWindow(x + w, dout + w, dx + w, k, 1, tau, vth, s->u.data());
        s->dtau[i] += window.dtau;
        s->dvth[i] += window.dvth;
      }
    }
    const Sums block = DrainLanes(s, lanes);
    sums->dtau += block.dtau;
    sums->dvth += block.dvth;
  }
}

template <int K, typename T>
Sums BackwardPlaneW(const T *x, const T *dout, T *dx, const Geometry &g, float tau, float vth, Scratch *s) {
  const int64_t windows = g.cols / g.k;
  const int64_t whole = windows * g.k;
  Sums sums;
  if (whole == g.cols) {  // the windows tile the plane: one long run
    BackwardWindowsW<K>(x, dout, dx, g.rows * windows, g.k, tau, vth, s, &sums);
    return sums;
  }
  for (int64_t r = 0; r < g.rows; ++r) {
    const int64_t offset = r * g.cols;
    BackwardWindowsW<K>(x + offset, dout + offset, dx + offset, windows, g.k, tau, vth, s, &sums);
    std::memcpy(dx + offset + whole, dout + offset + whole, sizeof(T) * (g.cols - whole));
  }
  return sums;
}

template <int K, typename T>
Sums BackwardPlaneK(const T *x, const T *dout, T *dx, const Geometry &g, float tau, float vth, Scratch *s) {
  return g.axis == 2 ? BackwardPlaneH<K>(x, dout, dx, g, tau, vth, s) : BackwardPlaneW<K>(x, dout, dx, g, tau, vth, s);
}

template <typename T>
Sums BackwardPlane(const T *x, const T *dout, T *dx, const Geometry &g, float tau, float vth, Scratch *s) {
  switch (g.k) {  // the window sizes that vectorise (as in the forward)
    case 2: return BackwardPlaneK<2>(x, dout, dx, g, tau, vth, s);
    case 3: return BackwardPlaneK<3>(x, dout, dx, g, tau, vth, s);
    case 4: return BackwardPlaneK<4>(x, dout, dx, g, tau, vth, s);
    case 8: return BackwardPlaneK<8>(x, dout, dx, g, tau, vth, s);
    default: return BackwardPlaneK<0>(x, dout, dx, g, tau, vth, s);
  }
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
    Scratch scratch;
    const int64_t lanes = along_h ? g.cols : kLaneBlock;
    scratch.dtau.assign(lanes, 0.0f);
    scratch.dvth.assign(lanes, 0.0f);
    scratch.u.resize(g.k);
    if (along_h) {
      scratch.membranes.resize(g.k * g.cols);
      scratch.carry.resize(g.cols);
    }
    for (int64_t p = begin; p < end; ++p) {
      const int64_t offset = p * plane;
      per_plane[p] = BackwardPlane(x + offset, dout + offset, dx + offset, g, tau, vth, &scratch);
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

// ---------------------------------------------------------------- entry points

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

}  // namespace

extern "C" {

int64_t LifScanWorkspaceBytes() { return 0; }

int LifScanForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                   void *extra) {
  if (nparam != lif::kForwardParams) return Fail("LifScanForward takes x, tau, vth and one output");
  Geometry g{};
  DType dtype{};
  if (const int err = lif::ReadArguments(shapes, ndims, dtypes, extra, &g, &dtype)) return err;
  switch (dtype) {
    case DType::kFloat32: return RunForward<float>(params, g);
    case DType::kFloat16: return RunForward<Half>(params, g);
    case DType::kBFloat16: return RunForward<BFloat16>(params, g);
    default: return Fail("unsupported dtype");
  }
}

int LifScanBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                    void *extra) {
  if (nparam != lif::kBackwardParams) return Fail("LifScanBackward takes x, tau, vth, dout and three outputs");
  Geometry g{};
  DType dtype{};
  if (const int err = lif::ReadArguments(shapes, ndims, dtypes, extra, &g, &dtype)) return err;
  if (lif::ParseDType(dtypes[3]) != dtype) return Fail("dout must have the dtype of x");
  switch (dtype) {
    case DType::kFloat32: return RunBackward<float>(params, g);
    case DType::kFloat16: return RunBackward<Half>(params, g);
    case DType::kBFloat16: return RunBackward<BFloat16>(params, g);
    default: return Fail("unsupported dtype");
  }
}

}  // extern "C"
