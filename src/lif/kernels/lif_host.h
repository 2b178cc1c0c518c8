// Host-side argument handling shared by the CPU (lif_cpu.cc) and CUDA (lif_cuda.cu) LIF kernels: the
// dtype names MindSpore passes, the geometry of the scan, the attributes, and the C++ shape inference.
//
// Each library defines LifScanForward / LifScanBackward and LifScanWorkspaceBytes; this header defines their
// InferShape companions, which MindSpore looks up as <function name>InferShape when ops.Custom gets no Python
// out_shape, and "Standalone" entry points taking the attributes as plain arguments, for callers outside
// MindSpore (scripts/check_cuda_kernels.py calls them through ctypes).
#ifndef SNN_MLP_LIF_HOST_H_
#define SNN_MLP_LIF_HOST_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "aot_extra.h"

namespace lif {

struct Geometry {
  int64_t planes;  // N*C
  int64_t rows;    // H
  int64_t cols;    // W
  int64_t k;       // effective window; 0 when the scan is the identity
  int axis;        // 2 (along H) or 3 (along W)

  int64_t length() const { return axis == 2 ? rows : cols; }
  int64_t elements() const { return planes * rows * cols; }
};

// Effective window: -1 -> identity, 0 -> the whole axis, longer than the axis -> no whole window (identity).
inline int64_t EffectiveWindow(int64_t window, int64_t length) {
  if (window < 0) return 0;
  const int64_t k = window == 0 ? length : window;
  return k > length ? 0 : k;
}

enum class DType { kFloat32, kFloat16, kBFloat16, kOther };

inline DType ParseDType(const char *name) {
  const std::string s(name);
  if (s == "float32" || s == "float") return DType::kFloat32;
  if (s == "float16") return DType::kFloat16;
  if (s == "bfloat16") return DType::kBFloat16;
  return DType::kOther;
}

// MindSpore turns a non-zero return into an error naming the library; the reason goes to stderr.
inline int Fail(const char *what) {
  std::fprintf(stderr, "snn_mlp LIF kernel: %s\n", what);
  return 1;
}

// Validates x (params 0), tau (1), vth (2) and the attributes; fills the geometry and the dtype of x.
inline int ReadArguments(int64_t **shapes, int *ndims, const char **dtypes, void *extra_ptr, Geometry *g,
                         DType *dtype) {
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
  g->k = EffectiveWindow(window, g->length());
  return 0;
}

// Forward: x, tau, vth -> out. Backward: x, tau, vth, dout -> dx, dtau, dvth (plus workspace on GPU).
constexpr int kForwardParams = 4;
constexpr int kBackwardParams = 7;

inline std::vector<int64_t> ShapeOf(int index, const int *ndims, int64_t **shapes) {
  return std::vector<int64_t>(shapes[index], shapes[index] + ndims[index]);
}

// The attribute interface with fixed "window" and "axis", for the standalone entry points.
class FixedAttrs final : public AotExtra {
 public:
  FixedAttrs(int64_t window, int64_t axis) : window_(window), axis_(axis) {}
  bool HasAttr(std::string name) override { return name == "window" || name == "axis"; }

 private:
  int64_t GetAttrInt(std::string name) override { return name == "window" ? window_ : axis_; }
  bool GetAttrBool(std::string) override { return false; }
  float GetAttrFloat(std::string) override { return 0.0f; }
  std::string GetAttrStr(std::string) override { return {}; }
  std::vector<int64_t> GetAttrIntVec(std::string) override { return {}; }
  std::vector<float> GetAttrFloatVec(std::string) override { return {}; }
  std::vector<std::vector<int64_t>> GetAttrInt2DVec(std::string) override { return {}; }
  std::vector<std::vector<float>> GetAttrFloat2DVec(std::string) override { return {}; }

  int64_t window_;
  int64_t axis_;
};

}  // namespace lif

extern "C" {
int LifScanForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                   void *extra);
int LifScanBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                    void *extra);
// Bytes of the backward's workspace (appended to its params after the outputs); 0 when it needs none.
int64_t LifScanWorkspaceBytes();
}

// Output shapes follow the inputs; dynamic dims (-1) and dynamic rank (-2) pass through.
extern "C" std::vector<int64_t> LifScanForwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return lif::ShapeOf(0, ndims, shapes);
}

extern "C" std::vector<std::vector<int64_t>> LifScanBackwardInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return {lif::ShapeOf(0, ndims, shapes), lif::ShapeOf(1, ndims, shapes), lif::ShapeOf(2, ndims, shapes)};
}

extern "C" int LifScanForwardStandalone(int nparam, void **params, int *ndims, int64_t **shapes,
                                        const char **dtypes, void *stream, int64_t window, int64_t axis) {
  lif::FixedAttrs attrs(window, axis);
  return LifScanForward(nparam, params, ndims, shapes, dtypes, stream, &attrs);
}

extern "C" int LifScanBackwardStandalone(int nparam, void **params, int *ndims, int64_t **shapes,
                                         const char **dtypes, void *stream, int64_t window, int64_t axis) {
  lif::FixedAttrs attrs(window, axis);
  return LifScanBackward(nparam, params, ndims, shapes, dtypes, stream, &attrs);
}

#endif  // SNN_MLP_LIF_HOST_H_
