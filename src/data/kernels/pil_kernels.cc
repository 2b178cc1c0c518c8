// Two of Pillow's resamplings on RGB images, every output byte equal to Pillow's, faster: the affine transform
// behind RandAugment's geometric ops (snnmlp_affine_rgb) and the box resize of the random-resized crop and
// the eval crop (snnmlp_resize_rgbx). tests/test_pil_kernels.py checks both byte for byte against Pillow. Bit-identical needs
// the same double operations in the same order: built with -ffp-contract=off (no fused multiply-add) and
// without -ffast-math.
//
// Affine, Pillow's Image.transform(size, AFFINE, matrix, BILINEAR or BICUBIC, fillcolor), restated:
// - output pixel (x, y) samples the source at (sx, sy) = M * (x + 0.5, y + 0.5), pixel centres at +0.5,
//   each coordinate evaluated as (m0 * xc + m1 * yc) + m2 in double precision;
// - a sample point outside [0, width) x [0, height) keeps the fill colour;
// - otherwise, with f = s - 0.5 and i = floor(f), the taps i-1..i+2 (bicubic) or i..i+1 (bilinear) are
//   clamped to the edge and weighted by t = f - i: bilinear s_i + (s_i+1 - s_i) * t, bicubic the a = -1 cubic
//   convolution evaluated as s_i + t * (c1 + t * (c2 + t * c3)); rows first, then the column;
// - the result is truncated to uint8 (bicubic: <= 0 -> 0, >= 255 -> 255 first).
// Pillow evaluates the whole 4x4 (2x2) neighbourhood of every pixel and channel; at t == 0 an
// interpolation returns its centre tap exactly, so a shear or translation along one axis is one 1-D
// interpolation per channel here (along_x, along_y), and only a rotation needs the 2-D one (general).
//
// Resize, Pillow's Image.resize(size, BICUBIC or BILINEAR, box), restated:
// - per axis, the box edges as floats; scale = (in1 - in0) / out (float difference), support = 2 (bicubic,
//   a = -0.5) or 1 (bilinear) times max(scale, 1); output i covers source pixels from
//   (int)(centre - support + 0.5) to (int)(centre + support + 0.5) (clipped to the image), centre =
//   in0 + (i + 0.5) * scale, weighted by filter((x - centre + 0.5) / max(scale, 1)), normalised by their sum
//   and rounded to 22-bit fixed point;
// - two passes, each an integer sum from 2^21 shifted right by 22 and clipped to [0, 255]: horizontal (over
//   the rows the vertical pass needs) then vertical, or, from Pillow 13 on, vertical first when the height
//   shrinks by more than twice what the width does (the caller says which: the rounding between the passes
//   makes the order part of the bytes).
// Within a pass the integer sums may run in any order: both passes filter whole rows at a time (vectorised),
// the horizontal one on transposed pixels, where Pillow loops over taps per output pixel.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <vector>

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
// Allocates nothing, so nothing can throw.
extern "C" void snnmlp_affine_rgb(const uint8_t* src, uint8_t* dst, int width, int height, const double* m,
                                  int bicubic, const uint8_t* fill) {
  const Image im{src, dst, width, height, static_cast<std::ptrdiff_t>(width) * kChannels, m, fill};
  if (bicubic) {
    transform<true>(im);
  } else {
    transform<false>(im);
  }
}

namespace {

double bicubic_weight(double x) {  // a = -0.5
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((-0.5 + 2.0) * x - (-0.5 + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0.0;
}

double bilinear_weight(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

constexpr int kPrecision = 32 - 8 - 2;  // fixed-point bits of the weights

// The taps of one axis: output i reads `count[i]` source pixels from `first[i]` with weights k[i * ksize...].
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> k;

  Taps(int in_size, float in0, float in1, int out_size, bool bicubic)
      : first(out_size), count(out_size) {
    const double scale = static_cast<double>(in1 - in0) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = (bicubic ? 2.0 : 1.0) * filterscale;
    ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    k.assign(static_cast<size_t>(out_size) * ksize, 0);
    std::vector<double> w(ksize);
    for (int i = 0; i < out_size; ++i) {
      const double centre = in0 + (i + 0.5) * scale;
      const double ss = 1.0 / filterscale;
      const int lo = std::max(static_cast<int>(centre - support + 0.5), 0);
      const int n = std::min(static_cast<int>(centre + support + 0.5), in_size) - lo;
      double sum = 0.0;
      for (int x = 0; x < n; ++x) {
        const double arg = (x + lo - centre + 0.5) * ss;
        w[x] = bicubic ? bicubic_weight(arg) : bilinear_weight(arg);
        sum += w[x];
      }
      int32_t* ki = &k[static_cast<size_t>(i) * ksize];
      for (int x = 0; x < n; ++x) {
        const double v = sum != 0.0 ? w[x] / sum : w[x];
        ki[x] = static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecision) : 0.5 + v * (1 << kPrecision));
      }
      first[i] = lo;
      count[i] = n;
    }
  }

  int begin() const { return first.front(); }
  int end() const { return first.back() + count.back(); }
};

inline uint8_t clip8(int32_t v) {
  v >>= kPrecision;
  return v < 0 ? 0 : (v > 255 ? 255 : static_cast<uint8_t>(v));
}

struct Resize {
  Taps across, down;
  Resize(int in_w, int in_h, const double* box, int out_w, int out_h, bool bicubic)
      : across(in_w, static_cast<float>(box[0]), static_cast<float>(box[2]), out_w, bicubic),
        down(in_h, static_cast<float>(box[1]), static_cast<float>(box[3]), out_h, bicubic) {}
  // Every output reads at least one pixel (else Pillow's own edge cases apply: the caller uses Pillow).
  bool regular() const {
    for (int n : across.count) if (n <= 0) return false;
    for (int n : down.count) if (n <= 0) return false;
    return true;
  }
};

}  // namespace

// The source region [x0, x1) x [y0, y1) the resize reads, into region[4]; 0, or 1 where the caller should let
// Pillow do it (an output with no source pixel, or no memory for the filter tables).
extern "C" int snnmlp_resize_region(int in_w, int in_h, const double* box, int out_w, int out_h, int bicubic,
                                    int* region) try {
  const Resize r(in_w, in_h, box, out_w, out_h, bicubic);
  if (!r.regular()) return 1;
  int x0 = in_w, x1 = 0;
  for (int i = 0; i < out_w; ++i) {
    x0 = std::min(x0, r.across.first[i]);
    x1 = std::max(x1, r.across.first[i] + r.across.count[i]);
  }
  region[0] = x0;
  region[1] = r.down.begin();
  region[2] = x1;
  region[3] = r.down.end();
  return 0;
} catch (...) {  // bad_alloc: no exception may cross the C entry point; the caller lets Pillow do it
  return 1;
}

namespace {

// Every pass filters along the row index of a row-major array, over whole rows (vectorised); the horizontal
// pass runs on transposed data. RGBX pixels move as one uint32 (the X byte rides along, never read back).
constexpr int kPixelBytes = 4;

const uint8_t* as_bytes(const uint32_t* pixels) { return reinterpret_cast<const uint8_t*>(pixels); }
uint8_t* as_bytes(uint32_t* pixels) { return reinterpret_cast<uint8_t*>(pixels); }

void filter_rows(const Taps& t, const uint8_t* in, std::ptrdiff_t in_stride, int base, std::ptrdiff_t width,
                 uint8_t* out) {
  std::vector<int32_t> sum(width);
  for (size_t j = 0; j < t.first.size(); ++j, out += width) {
    const int32_t* k = &t.k[j * t.ksize];
    std::fill(sum.begin(), sum.end(), 1 << (kPrecision - 1));
    for (int y = 0; y < t.count[j]; ++y) {
      const uint8_t* row = in + (t.first[j] - base + y) * in_stride;
      const int32_t ky = k[y];
      for (std::ptrdiff_t i = 0; i < width; ++i) sum[i] += row[i] * ky;
    }
    for (std::ptrdiff_t i = 0; i < width; ++i) out[i] = clip8(sum[i]);
  }
}

// in: rows x cols pixels, `in_stride` pixels apart; out: cols x rows.
void transpose(const uint32_t* in, std::ptrdiff_t in_stride, int rows, int cols, uint32_t* out) {
  constexpr int kBlock = 16;
  for (int r0 = 0; r0 < rows; r0 += kBlock) {
    for (int c0 = 0; c0 < cols; c0 += kBlock) {
      const int r1 = std::min(r0 + kBlock, rows), c1 = std::min(c0 + kBlock, cols);
      for (int r = r0; r < r1; ++r) {
        for (int c = c0; c < c1; ++c) out[static_cast<std::ptrdiff_t>(c) * rows + r] = in[r * in_stride + c];
      }
    }
  }
}

}  // namespace

// src: the region of the in_w x in_h image (RGBX pixels, `stride` pixels per row, origin (x0, y0), width
// x1 - x0) that snnmlp_resize_region named; dst: out_h x out_w RGBX pixels. vertical_first: the pass order of
// the Pillow being matched (the rounding after each pass makes it part of the result). 0, or 1 as above.
extern "C" int snnmlp_resize_rgbx(const uint32_t* src, std::ptrdiff_t stride, int x0, int y0, int x1, int in_w,
                                  int in_h, const double* box, int out_w, int out_h, int bicubic, int vertical_first,
                                  uint32_t* dst) try {
  const Resize r(in_w, in_h, box, out_w, out_h, bicubic);
  if (!r.regular()) return 1;
  const int cols = x1 - x0;
  if (vertical_first) {
    std::vector<uint32_t> down(static_cast<size_t>(out_h) * cols), down_t(static_cast<size_t>(cols) * out_h),
        out_t(static_cast<size_t>(out_w) * out_h);
    filter_rows(r.down, as_bytes(src), stride * kPixelBytes, y0, cols * kPixelBytes, as_bytes(down.data()));
    transpose(down.data(), cols, out_h, cols, down_t.data());
    filter_rows(r.across, as_bytes(down_t.data()), out_h * kPixelBytes, x0, out_h * kPixelBytes,
                as_bytes(out_t.data()));
    transpose(out_t.data(), out_h, out_w, out_h, dst);
  } else {
    const int rows = r.down.end() - r.down.begin();
    std::vector<uint32_t> src_t(static_cast<size_t>(cols) * rows), across_t(static_cast<size_t>(out_w) * rows),
        across(static_cast<size_t>(rows) * out_w);
    transpose(src + (r.down.begin() - y0) * stride, stride, rows, cols, src_t.data());
    filter_rows(r.across, as_bytes(src_t.data()), rows * kPixelBytes, x0, rows * kPixelBytes,
                as_bytes(across_t.data()));
    transpose(across_t.data(), rows, out_w, rows, across.data());
    filter_rows(r.down, as_bytes(across.data()), out_w * kPixelBytes, r.down.begin(), out_w * kPixelBytes,
                as_bytes(dst));
  }
  return 0;
} catch (...) {  // as above
  return 1;
}
