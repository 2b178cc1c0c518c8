// Fused float32 CPU kernels for MindSpore ops.Custom(func_type="aot"): the layers of SNN-MLP that MindSpore's
// CPU back-end runs slowly (GroupNorm with one group, exact GELU, depthwise 3x3 convolution, 1x1 convolution),
// forward and backward, and the sum of squares of a tensor (gradient norms). src/fast_ops/__init__.py wraps them as Cells;
// tests/test_fast_ops.py checks them against numpy.
//
//   GroupNorm1Forward:   x (N,C,H,W), gamma (C,), beta (C,), eps (1,)  -> y like x, mean (N,), rstd (N,)
//   GroupNorm1Backward:  x, gamma, mean, rstd, dy                      -> dx, dgamma (C,), dbeta (C,)
//   GeluForward:         x (any shape)                                 -> y = x * Phi(x)
//   GeluBackward:        x, dy                                         -> dx = dy * (Phi(x) + x * phi(x))
//   DepthwiseConv3x3Forward:  x (N,C,H,W), weight (C,1,3,3), bias (C,) -> y (N,C,H,W)   (stride 1, padding 1)
//   DepthwiseConv3x3Backward: x, weight, dy                            -> dx, dweight (C,1,3,3), dbias (C,)
//   SquaredSum:          x (any shape)                                 -> sum of x^2, a scalar
//   Conv1x1Forward:      x (N,Ci,H,W), weight (Co,Ci,1,1), bias (Co,)  -> y (N,Co,H,W)   (with SNNMLP_ONEDNN)
//   Conv1x1Backward:     x, weight, dy                                 -> dx, dweight (Co,Ci,1,1), dbias (Co,)
//
// Work is split over the N*C planes (or, for GELU and SquaredSum, over equal chunks; for the GEMMs, over blocks) and shared out dynamically
// between the calling thread and a pool of helper threads started once (cpu_parallel.h); SNNMLP_NUM_THREADS caps
// the threads a call uses (default: all hardware threads), as for the LIF kernel. Inner loops run along the
// contiguous W axis and are written so that the compiler vectorises them (-O3 -march=native -fopenmp-simd).
// Reductions are per plane or chunk (float vector lanes, then double) and added in a fixed order, so results do
// not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "cpu_parallel.h"

class AotExtra;  // MindSpore's attribute interface; these kernels take no attributes.

namespace {

using cpu_parallel::BitsFloat;
using cpu_parallel::FloatBits;
using cpu_parallel::ParallelFor;
using cpu_parallel::Select;

// ---------------------------------------------------------------- vectorisable math

// exp(a) to about 1 ulp for a <= 88 (GELU only needs a <= 0), branch-free so that loops over it vectorise:
// a = n*ln2 + r with |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial (truncation below 1e-8), 2^n by
// building the exponent bits. Arguments below the float range give 0.
inline float Exp(float a) {
  constexpr float kLowest = -87.33654f;  // exp(kLowest) is the smallest normal float
  const float clamped = Select(a < kLowest, kLowest, a);
  // Round to the nearest integer with the 1.5*2^23 trick (valid for |x| < 2^22), which vectorises.
  const float n = (clamped * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (clamped - n * 0.693145751953125f) - n * 1.428606765330187e-06f;  // ln2 split hi + lo
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float scale = BitsFloat(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);  // 2^n
  return Select(a < kLowest, 0.0f, p * scale);
}

// The standard normal CDF Phi(x) and density phi(x), sharing one exponential.
//
// Phi(x) = erfc(-x/sqrt 2)/2 and erfc(z) = exp(-z^2) * erfcx(z) for z = |x|/sqrt 2 >= 0 (then Phi(x) = 1 - Phi(-x)
// for x >= 0). erfcx, the scaled complementary error function, is smooth and bounded: with t = 1/(1 + z/2) in
// (0, 1], erfcx(z) = t * S(t) where S is fitted here by a degree-10 polynomial (weighted least squares against
// scipy.special.erfcx on 400k points; relative error below 2e-7 including float32 evaluation). So the tail of Phi
// for negative x, where GELU's output lives, keeps its relative precision. exp(-z^2) = exp(-x^2/2) is also
// sqrt(2 pi) * phi(x); x^2/2 is formed with its rounding error (FMA) because the exponential amplifies it.
struct Normal {
  float cdf;
  float pdf;
};

inline Normal StandardNormal(float x) {
  const float z = std::fabs(x) * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float s = 0.04442213103175163f;
  s = s * t - 0.24078041315078735f;
  s = s * t + 0.5063981413841248f;
  s = s * t - 0.4698113203048706f;
  s = s * t + 0.1427173912525177f;
  s = s * t - 0.06389273703098297f;
  s = s * t + 0.09474918991327286f;
  s = s * t + 0.1751069724559784f;
  s = s * t + 0.24690277874469757f;
  s = s * t + 0.2820930480957031f;
  s = s * t + 0.282094806432724f;
  const float half_x = 0.5f * x;
  const float half_square = half_x * x;  // exact halving: x*x/2 with one rounding
#ifdef __FMA__
  // (inf*inf - inf is NaN: the infinite x, where the exponential is 0 anyway, take no correction.)
  const float error = Select(half_square < INFINITY, std::fma(half_x, x, -half_square), 0.0f);
#else
  const float error = 0.0f;
#endif
  const float gauss = Exp(-half_square - error);  // exp(-x^2/2)
  const float half_erfc = 0.5f * t * s * gauss;
  return {Select(x < 0.0f, half_erfc, 1.0f - half_erfc), 0.398942280401432678f * gauss};
}

// ---------------------------------------------------------------- GELU

bool GeluForwardImpl(const float *x, float *y, int64_t count) {
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (count + kChunk - 1) / kChunk;
  return ParallelFor(chunks, count, [&](int64_t begin, int64_t end) {
    const int64_t stop = std::min(count, end * kChunk);
#pragma omp simd
    for (int64_t i = begin * kChunk; i < stop; ++i) y[i] = x[i] * StandardNormal(x[i]).cdf;
  });
}

bool GeluBackwardImpl(const float *x, const float *dy, float *dx, int64_t count) {
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (count + kChunk - 1) / kChunk;
  return ParallelFor(chunks, count, [&](int64_t begin, int64_t end) {
    const int64_t stop = std::min(count, end * kChunk);
#pragma omp simd
    for (int64_t i = begin * kChunk; i < stop; ++i) {
      const Normal normal = StandardNormal(x[i]);
      dx[i] = dy[i] * (normal.cdf + x[i] * normal.pdf);
    }
  });
}

// ---------------------------------------------------------------- sum of squares

// Float vector lanes per chunk, the chunk sums added in double in chunk order (thread-count independent).
bool SquaredSumImpl(const float *x, int64_t count, float *out) {
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (count + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks);
  const bool ok = ParallelFor(chunks, count, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t stop = std::min(count, (c + 1) * kChunk);
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = c * kChunk; i < stop; ++i) sum += x[i] * x[i];
      partial[c] = sum;
    }
  });
  double total = 0.0;
  for (const double p : partial) total += p;
  *out = static_cast<float>(total);
  return ok;
}

// ---------------------------------------------------------------- GroupNorm with one group

// Sum and sum of squared deviations of one plane, two-pass in float lanes (the plane sits in cache), in double.
struct Moments {
  double mean = 0.0;
  double m2 = 0.0;  // sum of squared deviations from mean
  int64_t count = 0;
};

Moments PlaneMoments(const float *x, int64_t count) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < count; ++i) sum += x[i];
  const float mean = sum / static_cast<float>(count);
  float m2 = 0.0f, shift = 0.0f;  // shift corrects the float rounding of the mean (second-order term)
#pragma omp simd reduction(+ : m2, shift)
  for (int64_t i = 0; i < count; ++i) {
    const float d = x[i] - mean;
    m2 += d * d;
    shift += d;
  }
  Moments m;
  m.count = count;
  m.mean = static_cast<double>(mean) + static_cast<double>(shift) / static_cast<double>(count);
  m.m2 = static_cast<double>(m2) - static_cast<double>(shift) * static_cast<double>(shift) / count;
  return m;
}

// Chan et al.'s pairwise combination of moments.
void Merge(Moments *into, const Moments &other) {
  const int64_t count = into->count + other.count;
  const double delta = other.mean - into->mean;
  into->mean += delta * static_cast<double>(other.count) / static_cast<double>(count);
  into->m2 += other.m2 + delta * delta * static_cast<double>(into->count) * static_cast<double>(other.count) /
                             static_cast<double>(count);
  into->count = count;
}

struct Nchw {
  int64_t n, c, h, w;
  int64_t Planes() const { return n * c; }
  int64_t Plane() const { return h * w; }
  int64_t Size() const { return n * c * h * w; }
};

bool GroupNorm1ForwardImpl(const float *x, const float *gamma, const float *beta, float eps, float *y, float *mean_out,
                       float *rstd_out, const Nchw &s) {
  const int64_t plane = s.Plane();
  std::vector<Moments> moments(s.Planes());
  bool ok = ParallelFor(s.Planes(), s.Size(), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) moments[p] = PlaneMoments(x + p * plane, plane);
  });
  std::vector<float> mean(s.n), rstd(s.n);
  for (int64_t n = 0; n < s.n; ++n) {
    Moments total = moments[n * s.c];
    for (int64_t c = 1; c < s.c; ++c) Merge(&total, moments[n * s.c + c]);
    const double variance = std::max(0.0, total.m2 / static_cast<double>(total.count));  // biased, as torch
    mean[n] = static_cast<float>(total.mean);
    rstd[n] = static_cast<float>(1.0 / std::sqrt(variance + static_cast<double>(eps)));
    mean_out[n] = mean[n];
    rstd_out[n] = rstd[n];
  }
  ok = ParallelFor(s.Planes(), s.Size(), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / s.c, c = p % s.c;
      const float scale = rstd[n] * gamma[c];
      const float shift = beta[c] - mean[n] * scale;
      const float *xp = x + p * plane;
      float *yp = y + p * plane;
#pragma omp simd
      for (int64_t i = 0; i < plane; ++i) yp[i] = xp[i] * scale + shift;
    }
  }) && ok;
  return ok;
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = gamma * dy and the means over the sample;
// dgamma = sum dy * xhat, dbeta = sum dy over N, H, W.
bool GroupNorm1BackwardImpl(const float *x, const float *gamma, const float *mean, const float *rstd, const float *dy,
                        float *dx, float *dgamma, float *dbeta, const Nchw &s) {
  const int64_t plane = s.Plane();
  std::vector<double> sum_dy(s.Planes()), sum_dy_xhat(s.Planes());
  bool ok = ParallelFor(s.Planes(), s.Size(), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float mu = mean[p / s.c];
      const float *xp = x + p * plane;
      const float *gp = dy + p * plane;
      float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
      for (int64_t i = 0; i < plane; ++i) {
        a += gp[i];
        b += gp[i] * (xp[i] - mu);
      }
      sum_dy[p] = a;
      sum_dy_xhat[p] = static_cast<double>(b) * rstd[p / s.c];
    }
  });
  std::vector<float> coef_dy(s.Planes()), coef_x(s.Planes()), coef_1(s.Planes());
  const double per_sample = static_cast<double>(s.c) * static_cast<double>(plane);
  for (int64_t n = 0; n < s.n; ++n) {
    double mean_g = 0.0, mean_g_xhat = 0.0;
    for (int64_t c = 0; c < s.c; ++c) {
      mean_g += gamma[c] * sum_dy[n * s.c + c];
      mean_g_xhat += gamma[c] * sum_dy_xhat[n * s.c + c];
    }
    mean_g /= per_sample;
    mean_g_xhat /= per_sample;
    // dx = A*dy + B*x + C per plane, with xhat = (x - mean) * rstd expanded.
    const double r = rstd[n];
    for (int64_t c = 0; c < s.c; ++c) {
      coef_dy[n * s.c + c] = static_cast<float>(r * gamma[c]);
      coef_x[n * s.c + c] = static_cast<float>(-r * r * mean_g_xhat);
      coef_1[n * s.c + c] = static_cast<float>(r * (r * mean_g_xhat * mean[n] - mean_g));
    }
  }
  for (int64_t c = 0; c < s.c; ++c) {
    double g = 0.0, b = 0.0;
    for (int64_t n = 0; n < s.n; ++n) {
      g += sum_dy_xhat[n * s.c + c];
      b += sum_dy[n * s.c + c];
    }
    dgamma[c] = static_cast<float>(g);
    dbeta[c] = static_cast<float>(b);
  }
  ok = ParallelFor(s.Planes(), s.Size(), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float a = coef_dy[p], b = coef_x[p], c = coef_1[p];
      const float *xp = x + p * plane;
      const float *gp = dy + p * plane;
      float *dxp = dx + p * plane;
#pragma omp simd
      for (int64_t i = 0; i < plane; ++i) dxp[i] = a * gp[i] + b * xp[i] + c;
    }
  }) && ok;
  return ok;
}

// ---------------------------------------------------------------- depthwise 3x3, stride 1, padding 1

// One plane at a time, through zero-padded copies laid out with a row pitch of W + 2: in that layout the 3x3
// neighbourhood of every position is at the same nine offsets, so each tap is one long flat loop over the plane
// (vectorised whatever W is, with no per-row set-up, which dominates on the 7x7 and 14x14 planes of the late
// stages) and the padding supplies the zeros outside the plane.
struct PaddedPlane {
  int64_t height, width, pitch;
  std::vector<float> padded;  // (H + 2) rows of `pitch`, the plane at row 1, column 1; 2 spare zeros at the end
  std::vector<float> flat;    // H rows of `pitch`: a result before its W columns are copied out (or dy, padded)

  PaddedPlane(int64_t h, int64_t w)
      : height(h), width(w), pitch(w + 2), padded((h + 2) * (w + 2) + 2, 0.0f), flat(h * (w + 2), 0.0f) {}

  // Copies `plane` into `padded`; the border stays zero.
  void Load(const float *plane) {
    for (int64_t h = 0; h < height; ++h) {
      std::memcpy(padded.data() + (h + 1) * pitch + 1, plane + h * width, sizeof(float) * width);
    }
  }

  // flat[k] = bias + sum_ij kernel[i][j] * padded[k + i*pitch + j]: row h, column w of `flat` (w < W) is the
  // 3x3 cross-correlation at (h, w). The two columns past W are scratch.
  void Correlate(const float *kernel, float bias) {
    const float *in = padded.data();
    float *out = flat.data();
    const int64_t count = height * pitch;
    const float k0 = kernel[0], k1 = kernel[1], k2 = kernel[2], k3 = kernel[3], k4 = kernel[4], k5 = kernel[5],
                k6 = kernel[6], k7 = kernel[7], k8 = kernel[8];
    const float *r0 = in, *r1 = in + pitch, *r2 = in + 2 * pitch;
#pragma omp simd
    for (int64_t k = 0; k < count; ++k) {
      out[k] = bias + k0 * r0[k] + k1 * r0[k + 1] + k2 * r0[k + 2] + k3 * r1[k] + k4 * r1[k + 1] +
               k5 * r1[k + 2] + k6 * r2[k] + k7 * r2[k + 1] + k8 * r2[k + 2];
    }
  }

  // The W valid columns of `flat` into `plane`.
  void Store(float *plane) const {
    for (int64_t h = 0; h < height; ++h) {
      std::memcpy(plane + h * width, flat.data() + h * pitch, sizeof(float) * width);
    }
  }
};

// The ten sums of the weight and bias gradients of one plane in one pass: sums[3i + j] += sum_k g[k] *
// padded[k + i*pitch + j] and sums[9] += sum_k g[k], with g the plane's dy laid out with the padded pitch (zeros in
// the two extra columns, so the terms that wrap past a row end vanish). Float vector lanes over blocks, the block
// sums added in double.
void TapSums(const float *g, const float *padded, int64_t pitch, int64_t count, double *sums) {
  constexpr int64_t kBlock = 2048;
  const float *r0 = padded, *r1 = padded + pitch, *r2 = padded + 2 * pitch;
  for (int64_t start = 0; start < count; start += kBlock) {
    const int64_t stop = std::min(count, start + kBlock);
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, s8 = 0, s9 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5, s6, s7, s8, s9)
    for (int64_t k = start; k < stop; ++k) {
      const float v = g[k];
      s0 += v * r0[k];
      s1 += v * r0[k + 1];
      s2 += v * r0[k + 2];
      s3 += v * r1[k];
      s4 += v * r1[k + 1];
      s5 += v * r1[k + 2];
      s6 += v * r2[k];
      s7 += v * r2[k + 1];
      s8 += v * r2[k + 2];
      s9 += v;
    }
    const float block[10] = {s0, s1, s2, s3, s4, s5, s6, s7, s8, s9};
    for (int t = 0; t < 10; ++t) sums[t] += block[t];
  }
}

bool DepthwiseForwardImpl(const float *x, const float *weight, const float *bias, float *y, const Nchw &s) {
  const int64_t plane = s.Plane();
  return ParallelFor(s.Planes(), s.Size(), [&](int64_t begin, int64_t end) {
    PaddedPlane scratch(s.h, s.w);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % s.c;
      scratch.Load(x + p * plane);
      scratch.Correlate(weight + 9 * c, bias[c]);
      scratch.Store(y + p * plane);
    }
  });
}

// dx = the correlation of dy with the kernel rotated by 180 degrees; dweight[i][j] = sum_hw dy[h][w] *
// x[h+i-1][w+j-1] and dbias = sum dy (TapSums). The ten sums are per plane in double, then added over N in order.
bool DepthwiseBackwardImpl(const float *x, const float *weight, const float *dy, float *dx, float *dweight,
                           float *dbias, const Nchw &s) {
  const int64_t plane = s.Plane();
  std::vector<double> partial(s.Planes() * 10);
  const bool ok = ParallelFor(s.Planes(), s.Size(), [&](int64_t begin, int64_t end) {
    PaddedPlane grad(s.h, s.w), input(s.h, s.w);
    std::vector<float> dy_pitched(s.h * (s.w + 2), 0.0f);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % s.c;
      float rotated[9];
      for (int i = 0; i < 9; ++i) rotated[i] = weight[9 * c + 8 - i];
      const float *gp = dy + p * plane;
      grad.Load(gp);
      grad.Correlate(rotated, 0.0f);
      grad.Store(dx + p * plane);
      input.Load(x + p * plane);
      for (int64_t h = 0; h < s.h; ++h) {
        std::memcpy(dy_pitched.data() + h * input.pitch, gp + h * s.w, sizeof(float) * s.w);
      }
      TapSums(dy_pitched.data(), input.padded.data(), input.pitch, s.h * input.pitch, partial.data() + 10 * p);
    }
  });
  for (int64_t c = 0; c < s.c; ++c) {
    double totals[10] = {};
    for (int64_t n = 0; n < s.n; ++n) {
      for (int k = 0; k < 10; ++k) totals[k] += partial[10 * (n * s.c + c) + k];
    }
    for (int k = 0; k < 9; ++k) dweight[9 * c + k] = static_cast<float>(totals[k]);
    dbias[c] = static_cast<float>(totals[9]);
  }
  return ok;
}

// ---------------------------------------------------------------- 1x1 convolution through oneDNN's sgemm

#ifdef SNNMLP_ONEDNN
}  // namespace

// oneDNN's C GEMM (row-major), from the libdnnl of MindSpore's own wheel that the build links: sequential when
// called outside a oneDNN threadpool, so the pool of cpu_parallel.h shares out the blocks. Returns 0 on success.
extern "C" int dnnl_sgemm(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                          int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

namespace {

// A 1x1 convolution of NCHW tensors is, per sample, y_n (Co x HW) = W (Co x Ci) . x_n (Ci x HW): a GEMM on the
// tensors as they lie.
struct Conv1x1Shape {
  int64_t n, ci, co, plane;  // plane = H * W
};

// Blocks of a (rows x cols) matrix product handed to the threads: at most kRowBlock x kColBlock for the outputs and
// the input gradient, kWeightRowBlock x kWeightColBlock for the weight gradient (sizes where oneDNN's sgemm ran
// near its best on every SNN-MLP shape here, as one call per block). They depend on the shape alone, never on the
// thread count, so every element is summed by the same GEMM call whatever the threads: results do not depend on
// the thread count.
constexpr int64_t kRowBlock = 256, kColBlock = 1024, kWeightRowBlock = 128, kWeightColBlock = 256;

struct Blocks {
  int64_t rows, cols, row_block, col_block;
  Blocks(int64_t rows_, int64_t cols_, int64_t max_rows, int64_t max_cols)
      : rows(rows_), cols(cols_), row_block(std::min(rows_, max_rows)), col_block(std::min(cols_, max_cols)) {}
  int64_t RowBlocks() const { return (rows + row_block - 1) / row_block; }
  int64_t ColBlocks() const { return (cols + col_block - 1) / col_block; }
  int64_t Count() const { return RowBlocks() * ColBlocks(); }

  struct Block {
    int64_t row, col, rows, cols;  // first row and column, extent
  };
  Block At(int64_t index) const {
    const int64_t row = index / ColBlocks() * row_block, col = index % ColBlocks() * col_block;
    return Block{row, col, std::min(row_block, rows - row), std::min(col_block, cols - col)};
  }
};

bool Sgemm(char transa, char transb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
           int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0) return true;
  return dnnl_sgemm(transa, transb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc) == 0;
}

// task(i) for i in [0, count), claimed one at a time by the calling thread and the pool's helpers (blocks differ in
// cost, so they are not pre-grouped as ParallelFor does); false if a task failed.
template <typename Task>
bool RunTasks(int64_t count, Task task) {
  std::atomic<bool> ok{true};
  auto guarded = [&](int64_t i) {
    if (!task(i)) ok = false;
  };
  const int threads = cpu_parallel::ThreadLimit();
  if (threads == 1 || count <= 1) {
    for (int64_t i = 0; i < count; ++i) guarded(i);
    return ok;
  }
  return cpu_parallel::ThreadPool::Instance().Run(count, threads - 1, guarded) && ok;
}

// y_n = W . x_n + bias, block by block; the bias is added while the block is in cache.
bool Conv1x1ForwardImpl(const float *x, const float *weight, const float *bias, float *y, const Conv1x1Shape &s) {
  const Blocks blocks(s.co, s.plane, kRowBlock, kColBlock);
  return RunTasks(s.n * blocks.Count(), [&](int64_t task) {
    const int64_t sample = task / blocks.Count();
    const Blocks::Block b = blocks.At(task % blocks.Count());
    float *out = y + (sample * s.co + b.row) * s.plane + b.col;
    if (!Sgemm('N', 'N', b.rows, b.cols, s.ci, weight + b.row * s.ci, s.ci, x + sample * s.ci * s.plane + b.col,
               s.plane, 0.0f, out, s.plane)) {
      return false;
    }
    for (int64_t r = 0; r < b.rows; ++r) {
      const float bias_r = bias[b.row + r];
      float *row = out + r * s.plane;
#pragma omp simd
      for (int64_t c = 0; c < b.cols; ++c) row[c] += bias_r;
    }
    return true;
  });
}

// dW = sum_n dy_n . x_n^T, accumulated over n in order inside each block of dW; dbias = the row sums of dy, in
// double, by the blocks of dW's first block column; dx_n = W^T . dy_n (blocks as in the forward). The dW blocks
// come first: each is a long task (all samples), and taken last one would keep a thread busy alone at the end.
bool Conv1x1BackwardImpl(const float *x, const float *weight, const float *dy, float *dx, float *dweight,
                         float *dbias, const Conv1x1Shape &s) {
  const Blocks weight_blocks(s.co, s.ci, kWeightRowBlock, kWeightColBlock);
  const Blocks input_blocks(s.ci, s.plane, kRowBlock, kColBlock);
  return RunTasks(weight_blocks.Count() + s.n * input_blocks.Count(), [&](int64_t task) {
    if (task >= weight_blocks.Count()) {
      const int64_t sample = (task - weight_blocks.Count()) / input_blocks.Count();
      const Blocks::Block b = input_blocks.At((task - weight_blocks.Count()) % input_blocks.Count());
      return Sgemm('T', 'N', b.rows, b.cols, s.co, weight + b.row, s.ci, dy + sample * s.co * s.plane + b.col,
                   s.plane, 0.0f, dx + (sample * s.ci + b.row) * s.plane + b.col, s.plane);
    }
    const Blocks::Block b = weight_blocks.At(task);
    for (int64_t sample = 0; sample < s.n; ++sample) {
      if (!Sgemm('N', 'T', b.rows, b.cols, s.plane, dy + (sample * s.co + b.row) * s.plane, s.plane,
                 x + (sample * s.ci + b.col) * s.plane, s.plane, sample == 0 ? 0.0f : 1.0f,
                 dweight + b.row * s.ci + b.col, s.ci)) {
        return false;
      }
    }
    if (b.col == 0) {
      for (int64_t r = b.row; r < b.row + b.rows; ++r) {
        double total = 0.0;
        for (int64_t sample = 0; sample < s.n; ++sample) {
          const float *row = dy + (sample * s.co + r) * s.plane;
          float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
          for (int64_t c = 0; c < s.plane; ++c) sum += row[c];
          total += sum;
        }
        dbias[r] = static_cast<float>(total);
      }
    }
    return true;
  });
}
#endif  // SNNMLP_ONEDNN

// ---------------------------------------------------------------- argument checking

int Fail(const char *op, const std::string &what) {
  std::fprintf(stderr, "snn_mlp fast op %s: %s\n", op, what.c_str());
  return 1;
}

// Runs an entry point's body; an exception (e.g. bad_alloc) becomes an error code instead of crossing the C ABI.
template <typename Body>
int Guarded(const char *op, Body body) {
  try {
    return body();
  } catch (const std::exception &e) {
    return Fail(op, e.what());
  }
}

// The leading dimension of input `index` for an output shape: unknown (-1) under a dynamic rank.
int64_t LeadingDim(int index, int *ndims, int64_t **shapes) {
  return ndims[index] > 0 && shapes[index][0] >= 0 ? shapes[index][0] : -1;
}

bool IsFloat32(const char *dtype) {
  const std::string s(dtype);
  return s == "float32" || s == "float";
}

// Checks that inputs/outputs [0, count) are float32.
bool AllFloat32(const char **dtypes, int count) {
  for (int i = 0; i < count; ++i) {
    if (!IsFloat32(dtypes[i])) return false;
  }
  return true;
}

int64_t Elements(int ndim, const int64_t *shape) {
  int64_t count = 1;
  for (int i = 0; i < ndim; ++i) count *= shape[i];
  return count;
}

// Reads a 4-D NCHW shape from input `index`; false if it is not 4-D.
bool ReadNchw(int index, int *ndims, int64_t **shapes, Nchw *s) {
  if (ndims[index] != 4) return false;
  *s = Nchw{shapes[index][0], shapes[index][1], shapes[index][2], shapes[index][3]};
  return true;
}

std::vector<int64_t> ShapeOf(int index, int *ndims, int64_t **shapes) {
  return std::vector<int64_t>(shapes[index], shapes[index] + ndims[index]);
}

#ifdef SNNMLP_ONEDNN
// Reads x (N, Ci, H, W) and weight (Co, Ci, 1, 1) into `s`; an error message, or nullptr.
const char *ReadConv1x1(int *ndims, int64_t **shapes, Conv1x1Shape *s) {
  Nchw x{};
  if (!ReadNchw(0, ndims, shapes, &x)) return "x must be 4-D (N, C, H, W)";
  if (ndims[1] != 4 || shapes[1][1] != x.c || shapes[1][2] != 1 || shapes[1][3] != 1) {
    return "weight must be (C_out, C_in, 1, 1) with C_in the channels of x";
  }
  if (x.c == 0) return "x has no channels";
  *s = Conv1x1Shape{x.n, x.c, shapes[1][0], x.h * x.w};
  return nullptr;
}
#endif

}  // namespace

extern "C" {

// ---- shape inference (dynamic dims pass through)

std::vector<std::vector<int64_t>> GroupNorm1ForwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  const int64_t batch = LeadingDim(0, ndims, shapes);
  return {ShapeOf(0, ndims, shapes), {batch}, {batch}};
}

std::vector<std::vector<int64_t>> GroupNorm1BackwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return {ShapeOf(0, ndims, shapes), ShapeOf(1, ndims, shapes), ShapeOf(1, ndims, shapes)};
}

std::vector<int64_t> GeluForwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return ShapeOf(0, ndims, shapes);
}

std::vector<int64_t> GeluBackwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return ShapeOf(0, ndims, shapes);
}

std::vector<int64_t> SquaredSumInferShape(int *, int64_t **, AotExtra *) { return {}; }  // a scalar

std::vector<int64_t> DepthwiseConv3x3ForwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return ShapeOf(0, ndims, shapes);
}

std::vector<std::vector<int64_t>> DepthwiseConv3x3BackwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return {ShapeOf(0, ndims, shapes), ShapeOf(1, ndims, shapes), {LeadingDim(1, ndims, shapes)}};
}

#ifdef SNNMLP_ONEDNN
std::vector<int64_t> Conv1x1ForwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  std::vector<int64_t> shape = ShapeOf(0, ndims, shapes);
  if (shape.size() == 4) shape[1] = LeadingDim(1, ndims, shapes);
  return shape;
}

std::vector<std::vector<int64_t>> Conv1x1BackwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return {ShapeOf(0, ndims, shapes), ShapeOf(1, ndims, shapes), {LeadingDim(1, ndims, shapes)}};
}
#endif

// ---- kernels

int GroupNorm1Forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                      void *) {
  const char *op = "GroupNorm1Forward";
  return Guarded(op, [&]() -> int {
    if (nparam != 7) return Fail(op, "takes x, gamma, beta, eps and three outputs");
    if (!AllFloat32(dtypes, nparam)) return Fail(op, "all inputs must be float32");
    Nchw s{};
    if (!ReadNchw(0, ndims, shapes, &s)) return Fail(op, "x must be 4-D (N, C, H, W)");
    if (Elements(ndims[1], shapes[1]) != s.c || Elements(ndims[2], shapes[2]) != s.c) {
      return Fail(op, "gamma and beta must hold one value per channel");
    }
    if (Elements(ndims[3], shapes[3]) != 1) return Fail(op, "eps must hold one value");
    if (s.Size() == 0) return 0;
    const bool ok = GroupNorm1ForwardImpl(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                                      static_cast<const float *>(params[2]), *static_cast<const float *>(params[3]),
                                      static_cast<float *>(params[4]), static_cast<float *>(params[5]),
                                      static_cast<float *>(params[6]), s);
    return ok ? 0 : 1;
  });
}

int GroupNorm1Backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                       void *) {
  const char *op = "GroupNorm1Backward";
  return Guarded(op, [&]() -> int {
    if (nparam != 8) return Fail(op, "takes x, gamma, mean, rstd, dy and three outputs");
    if (!AllFloat32(dtypes, nparam)) return Fail(op, "all inputs must be float32");
    Nchw s{};
    if (!ReadNchw(0, ndims, shapes, &s)) return Fail(op, "x must be 4-D (N, C, H, W)");
    if (Elements(ndims[1], shapes[1]) != s.c) return Fail(op, "gamma must hold one value per channel");
    if (Elements(ndims[2], shapes[2]) != s.n || Elements(ndims[3], shapes[3]) != s.n) {
      return Fail(op, "mean and rstd must hold one value per sample");
    }
    if (Elements(ndims[4], shapes[4]) != s.Size()) return Fail(op, "dy must have the shape of x");
    auto *dgamma = static_cast<float *>(params[6]);
    auto *dbeta = static_cast<float *>(params[7]);
    if (s.Size() == 0) {
      std::fill(dgamma, dgamma + s.c, 0.0f);
      std::fill(dbeta, dbeta + s.c, 0.0f);
      return 0;
    }
    const bool ok = GroupNorm1BackwardImpl(
        static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
        static_cast<const float *>(params[2]), static_cast<const float *>(params[3]),
        static_cast<const float *>(params[4]), static_cast<float *>(params[5]), dgamma, dbeta, s);
    return ok ? 0 : 1;
  });
}

int GeluForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const char *op = "GeluForward";
  return Guarded(op, [&]() -> int {
    if (nparam != 2) return Fail(op, "takes x and one output");
    if (!AllFloat32(dtypes, nparam)) return Fail(op, "x must be float32");
    const bool ok = GeluForwardImpl(static_cast<const float *>(params[0]), static_cast<float *>(params[1]),
                                Elements(ndims[0], shapes[0]));
    return ok ? 0 : 1;
  });
}

int GeluBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const char *op = "GeluBackward";
  return Guarded(op, [&]() -> int {
    if (nparam != 3) return Fail(op, "takes x, dy and one output");
    if (!AllFloat32(dtypes, nparam)) return Fail(op, "x and dy must be float32");
    const int64_t count = Elements(ndims[0], shapes[0]);
    if (Elements(ndims[1], shapes[1]) != count) return Fail(op, "dy must have the shape of x");
    const bool ok = GeluBackwardImpl(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                                 static_cast<float *>(params[2]), count);
    return ok ? 0 : 1;
  });
}

int DepthwiseConv3x3Forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                            void *) {
  const char *op = "DepthwiseConv3x3Forward";
  return Guarded(op, [&]() -> int {
    if (nparam != 4) return Fail(op, "takes x, weight, bias and one output");
    if (!AllFloat32(dtypes, nparam)) return Fail(op, "all inputs must be float32");
    Nchw s{};
    if (!ReadNchw(0, ndims, shapes, &s)) return Fail(op, "x must be 4-D (N, C, H, W)");
    if (Elements(ndims[1], shapes[1]) != 9 * s.c) return Fail(op, "weight must be (C, 1, 3, 3)");
    if (Elements(ndims[2], shapes[2]) != s.c) return Fail(op, "bias must hold one value per channel");
    if (s.Size() == 0) return 0;
    const bool ok = DepthwiseForwardImpl(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                                     static_cast<const float *>(params[2]), static_cast<float *>(params[3]), s);
    return ok ? 0 : 1;
  });
}

int DepthwiseConv3x3Backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                             void *) {
  const char *op = "DepthwiseConv3x3Backward";
  return Guarded(op, [&]() -> int {
    if (nparam != 6) return Fail(op, "takes x, weight, dy and three outputs");
    if (!AllFloat32(dtypes, nparam)) return Fail(op, "all inputs must be float32");
    Nchw s{};
    if (!ReadNchw(0, ndims, shapes, &s)) return Fail(op, "x must be 4-D (N, C, H, W)");
    if (Elements(ndims[1], shapes[1]) != 9 * s.c) return Fail(op, "weight must be (C, 1, 3, 3)");
    if (Elements(ndims[2], shapes[2]) != s.Size()) return Fail(op, "dy must have the shape of x");
    auto *dweight = static_cast<float *>(params[4]);
    auto *dbias = static_cast<float *>(params[5]);
    if (s.Size() == 0) {
      std::fill(dweight, dweight + 9 * s.c, 0.0f);
      std::fill(dbias, dbias + s.c, 0.0f);
      return 0;
    }
    const bool ok = DepthwiseBackwardImpl(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                                      static_cast<const float *>(params[2]), static_cast<float *>(params[3]), dweight,
                                      dbias, s);
    return ok ? 0 : 1;
  });
}

int SquaredSum(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const char *op = "SquaredSum";
  return Guarded(op, [&]() -> int {
    if (nparam != 2) return Fail(op, "takes x and one output");
    if (!AllFloat32(dtypes, nparam)) return Fail(op, "x must be float32");
    const bool ok = SquaredSumImpl(static_cast<const float *>(params[0]), Elements(ndims[0], shapes[0]),
                                   static_cast<float *>(params[1]));
    return ok ? 0 : 1;
  });
}

#ifdef SNNMLP_ONEDNN
int Conv1x1Forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const char *op = "Conv1x1Forward";
  return Guarded(op, [&]() -> int {
    if (nparam != 4) return Fail(op, "takes x, weight, bias and one output");
    if (!AllFloat32(dtypes, nparam)) return Fail(op, "all inputs must be float32");
    Conv1x1Shape s{};
    if (const char *error = ReadConv1x1(ndims, shapes, &s)) return Fail(op, error);
    if (Elements(ndims[2], shapes[2]) != s.co) return Fail(op, "bias must hold one value per output channel");
    if (s.n * s.co * s.plane == 0) return 0;
    const bool ok = Conv1x1ForwardImpl(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                                       static_cast<const float *>(params[2]), static_cast<float *>(params[3]), s);
    return ok ? 0 : Fail(op, "oneDNN's sgemm failed");
  });
}

int Conv1x1Backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  const char *op = "Conv1x1Backward";
  return Guarded(op, [&]() -> int {
    if (nparam != 6) return Fail(op, "takes x, weight, dy and three outputs");
    if (!AllFloat32(dtypes, nparam)) return Fail(op, "all inputs must be float32");
    Conv1x1Shape s{};
    if (const char *error = ReadConv1x1(ndims, shapes, &s)) return Fail(op, error);
    if (Elements(ndims[2], shapes[2]) != s.n * s.co * s.plane) return Fail(op, "dy must be (N, C_out, H, W)");
    auto *dweight = static_cast<float *>(params[4]);
    auto *dbias = static_cast<float *>(params[5]);
    if (s.n * s.plane == 0 || s.co == 0) {
      std::fill(dweight, dweight + s.co * s.ci, 0.0f);
      std::fill(dbias, dbias + s.co, 0.0f);
      std::fill(static_cast<float *>(params[3]), static_cast<float *>(params[3]) + s.n * s.ci * s.plane, 0.0f);
      return 0;
    }
    const bool ok = Conv1x1BackwardImpl(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                                        static_cast<const float *>(params[2]), static_cast<float *>(params[3]),
                                        dweight, dbias, s);
    return ok ? 0 : Fail(op, "oneDNN's sgemm failed");
  });
}
#endif  // SNNMLP_ONEDNN

}  // extern "C"
