// RandAugment's geometric ops (Shear, Translate, Rotate): an affine resampling of an RGB image whose every
// output byte equals Pillow's Image.transform(size, AFFINE, matrix, BILINEAR or BICUBIC, fillcolor).
//
// Pillow's contract, restated (tests/test_rand_augment.py checks it byte for byte against Pillow):
// - output pixel (x, y) samples the source at (sx, sy) = M * (x + 0.5, y + 0.5), pixel centres at +0.5,
//   each coordinate evaluated as (m0 * xc + m1 * yc) + m2 in double precision;
// - a sample point outside [0, width) x [0, height) keeps the fill colour;
// - otherwise, with f = s - 0.5 and i = floor(f), the taps i-1..i+2 (bicubic) or i..i+1 (bilinear) are
//   clamped to the edge and weighted by t = f - i: bilinear s_i + (s_i+1 - s_i) * t, bicubic the a = -1 cubic
//   convolution evaluated as s_i + t * (c1 + t * (c2 + t * c3)); rows first, then the column;
// - the result is truncated to uint8 (bicubic: <= 0 -> 0, >= 255 -> 255 first).
// Bit-identical needs the same double operations in the same order: built with -ffp-contract=off (no fused
// multiply-add) and without -ffast-math.
//
// Pillow evaluates the whole 4x4 (2x2) neighbourhood of every pixel and channel; at t == 0 an
// interpolation returns its centre tap exactly, so a shear or translation along one axis is one 1-D
// interpolation per channel here (along_x, along_y), and only a rotation needs the 2-D one (general).
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace {

constexpr int kChannels = 3;  // RGB, packed

inline int clamp_index(int i, int n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

// floor() for the coordinates that reach it (|f| < 2^31), without a libm call.
inline int floor_int(double f) {
  const int i = static_cast<int>(f);
  return f < i ? i - 1 : i;
}

// The interpolation through the taps at i-1, i, i+1, i+2 at offset t from i (bilinear uses i and i+1).
// Pillow's expressions, term for term; with byte taps the coefficients are exact integers, so they are
// formed in integer arithmetic (the same values, fewer conversions).
template <bool kBicubic, typename T>
inline double interpolate(T s0, T s1, T s2, T s3, double t) {
  if (!kBicubic) {
    return s1 + static_cast<double>(s2 - s1) * t;
  }
  const double c1 = -s0 + s2;
  const double c2 = 2 * (s0 - s1) + s2 - s3;
  const double c3 = -s0 + s1 - s2 + s3;
  return s1 + t * (c1 + t * (c2 + t * c3));
}

template <bool kBicubic>
inline uint8_t to_u8(double v) {
  if (!kBicubic) {
    return static_cast<uint8_t>(v);  // a convex combination of bytes: within [0, 255]
  }
  // Pillow: <= 0 -> 0, >= 255 -> 255, else truncated; the same for every non-NaN v, without branches.
  v = v > 0.0 ? v : 0.0;
  v = v < 255.0 ? v : 255.0;
  return static_cast<uint8_t>(v);
}

struct Image {
  const uint8_t* src;
  uint8_t* dst;
  int width, height;
  std::ptrdiff_t stride;
  const double* m;
  const uint8_t* fill;
};

// Splits a source coordinate into the tap index i and the offset t (Pillow's arithmetic).
inline int split(double s, double* t) {
  const double f = s - 0.5;
  const int i = floor_int(f);
  *t = f - i;
  return i;
}

// One 1-D interpolation per channel at (i, t) along a line of n pixels `step` bytes apart.
template <bool kBicubic>
inline void along_line(const uint8_t* line, int i, double t, int n, std::ptrdiff_t step, uint8_t* out) {
  if (t == 0.0) {
    std::memcpy(out, line + i * step, kChannels);
    return;
  }
  const uint8_t* p0 = line + clamp_index(i - 1, n) * step;
  const uint8_t* p1 = line + clamp_index(i, n) * step;
  const uint8_t* p2 = line + clamp_index(i + 1, n) * step;
  const uint8_t* p3 = line + clamp_index(i + 2, n) * step;
  for (int c = 0; c < kChannels; ++c) {
    out[c] = to_u8<kBicubic>(interpolate<kBicubic, int>(p0[c], p1[c], p2[c], p3[c], t));
  }
}

// m3 == 0, m4 == 1, m5 == 0: sy = y + 0.5 exactly, so every sample lies on its own row (ShearX, TranslateX).
template <bool kBicubic>
void along_x(const Image& im) {
  const double* m = im.m;
  for (int y = 0; y < im.height; ++y) {
    const uint8_t* row = im.src + y * im.stride;
    uint8_t* out = im.dst + y * im.stride;
    const double shear = m[1] * (y + 0.5);
    for (int x = 0; x < im.width; ++x, out += kChannels) {
      const double sx = m[0] * (x + 0.5) + shear + m[2];
      if (sx < 0.0 || sx >= im.width) {
        std::memcpy(out, im.fill, kChannels);
        continue;
      }
      double t;
      const int i = split(sx, &t);
      along_line<kBicubic>(row, i, t, im.width, kChannels, out);
    }
  }
}

// m0 == 1, m1 == 0, m2 == 0: sx = x + 0.5 exactly, every sample lies on its own column (ShearY, TranslateY).
template <bool kBicubic>
void along_y(const Image& im) {
  const double* m = im.m;
  for (int y = 0; y < im.height; ++y) {
    uint8_t* out = im.dst + y * im.stride;
    const double rise = m[4] * (y + 0.5);
    for (int x = 0; x < im.width; ++x, out += kChannels) {
      const double sy = m[3] * (x + 0.5) + rise + m[5];
      if (sy < 0.0 || sy >= im.height) {
        std::memcpy(out, im.fill, kChannels);
        continue;
      }
      double t;
      const int i = split(sy, &t);
      along_line<kBicubic>(im.src + x * kChannels, i, t, im.height, im.stride, out);
    }
  }
}

// Any matrix (Rotate): rows at i-1..i+2 interpolated along x, then those along y.
template <bool kBicubic>
void general(const Image& im) {
  const double* m = im.m;
  for (int y = 0; y < im.height; ++y) {
    uint8_t* out = im.dst + y * im.stride;
    const double yc = y + 0.5;
    for (int x = 0; x < im.width; ++x, out += kChannels) {
      const double xc = x + 0.5;
      const double sx = m[0] * xc + m[1] * yc + m[2];
      const double sy = m[3] * xc + m[4] * yc + m[5];
      if (sx < 0.0 || sx >= im.width || sy < 0.0 || sy >= im.height) {
        std::memcpy(out, im.fill, kChannels);
        continue;
      }
      double tx, ty;
      const int ix = split(sx, &tx), iy = split(sy, &ty);
      std::ptrdiff_t cols[4];
      const uint8_t* rows[4];
      for (int k = 0; k < 4; ++k) {
        cols[k] = static_cast<std::ptrdiff_t>(clamp_index(ix - 1 + k, im.width)) * kChannels;
        rows[k] = im.src + clamp_index(iy - 1 + k, im.height) * im.stride;
      }
      for (int c = 0; c < kChannels; ++c) {
        double across[4];
        for (int k = 0; k < 4; ++k) {
          const uint8_t* r = rows[k] + c;
          across[k] = interpolate<kBicubic, int>(r[cols[0]], r[cols[1]], r[cols[2]], r[cols[3]], tx);
        }
        out[c] = to_u8<kBicubic>(interpolate<kBicubic, double>(across[0], across[1], across[2], across[3], ty));
      }
    }
  }
}

template <bool kBicubic>
void transform(const Image& im) {
  const double* m = im.m;
  if (m[3] == 0.0 && m[4] == 1.0 && m[5] == 0.0) {
    along_x<kBicubic>(im);
  } else if (m[0] == 1.0 && m[1] == 0.0 && m[2] == 0.0) {
    along_y<kBicubic>(im);
  } else {
    general<kBicubic>(im);
  }
}

}  // namespace

// src, dst: height x width x 3 uint8 (RGB), C order, not overlapping; m: the 6 affine coefficients (output
// to source, Pillow's order); bicubic: 1 bicubic, 0 bilinear; fill: 3 bytes.
extern "C" void snnmlp_affine_rgb(const uint8_t* src, uint8_t* dst, int width, int height, const double* m,
                                  int bicubic, const uint8_t* fill) {
  const Image im{src, dst, width, height, static_cast<std::ptrdiff_t>(width) * kChannels, m, fill};
  if (bicubic) {
    transform<true>(im);
  } else {
    transform<false>(im);
  }
}
