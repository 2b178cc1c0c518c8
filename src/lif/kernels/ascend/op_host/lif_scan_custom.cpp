// Host side of the AscendC LIF operators: definitions, shape/dtype inference and tiling.
//
//   LifScanCustom(x, tau, vth; window, axis) -> out
//   LifScanGradCustom(dout, x, tau, vth; window, axis) -> dx, dtau_parts, dvth_parts
//
// x/dout/out/dx: float16 or float32 (N, C, H, W); tau, vth: float32 (1,); dtau_parts, dvth_parts: float32
// (kPartSlots,), summed by the caller. The semantics, the window rules (-1 identity, 0 whole axis, longer than
// the axis identity) and the attribute names are those of the CPU/GPU kernels (src/lif/kernels/lif_cpu.cc,
// lif_host.h). MindSpore calls them through the aclnn API that CANN generates from these definitions, with the
// inputs, then the attributes (int64_t), then the outputs:
//   aclnnLifScanCustomGetWorkspaceSize(x, tau, vth, window, axis, out, workspaceSize, executor)
// src/lif/kernels/ascend/aclnn_header.py derives that header here; tests/test_ascend_contract.py checks it.
#include <algorithm>
#include <cstdint>

#include "lif_scan_tiling.h"
#include "register/op_def_registry.h"
#include "tiling/platform/platform_ascendc.h"

namespace optiling {

// Bytes of one UB work buffer (op_kernel/lif_scan_common.h uses the same value). The backward holds four
// (x and dout as float, and their float16 staging), 4 x 24 KiB stays well inside the smallest UB.
constexpr uint32_t kBufferBytes = 24 * 1024;
constexpr uint32_t kBufferFloats = kBufferBytes / sizeof(float);
constexpr uint32_t kAlignElements = 16;  // 32 bytes of float16: a row stride valid for both dtypes

static uint32_t AlignUp(uint32_t value, uint32_t unit) { return (value + unit - 1) / unit * unit; }

static int64_t EffectiveWindow(int64_t window, int64_t length) {
  if (window < 0) return 0;
  const int64_t k = window == 0 ? length : window;
  return k > length ? 0 : k;
}

static ge::graphStatus LifScanTiling(gert::TilingContext *context) {
  const gert::Shape &shape = context->GetInputShape(0)->GetStorageShape();
  if (shape.GetDimNum() != 4) return ge::GRAPH_FAILED;
  const auto *attrs = context->GetAttrs();
  const int64_t window = *attrs->GetAttrPointer<int64_t>(0);
  const int64_t axis = *attrs->GetAttrPointer<int64_t>(1);
  if (axis != 2 && axis != 3) return ge::GRAPH_FAILED;

  const uint32_t planes = static_cast<uint32_t>(shape.GetDim(0) * shape.GetDim(1));
  const uint32_t rows = static_cast<uint32_t>(shape.GetDim(2));
  const uint32_t cols = static_cast<uint32_t>(shape.GetDim(3));
  const uint32_t k = static_cast<uint32_t>(EffectiveWindow(window, axis == 2 ? rows : cols));

  LifScanTilingData tiling;
  tiling.set_planes(planes);
  tiling.set_rows(rows);
  tiling.set_cols(cols);
  tiling.set_k(k);
  tiling.set_axis(static_cast<uint32_t>(axis));
  if (axis == 2) {
    // A tile is one window of k rows (or the tail rows, fewer) by tileCols columns.
    const uint32_t rows_per_tile = std::max<uint32_t>(k, 1);
    const uint32_t fit = kBufferFloats / rows_per_tile / kAlignElements * kAlignElements;
    if (fit == 0) return ge::GRAPH_FAILED;  // a window of more than kBufferFloats/16 rows
    tiling.set_tileCols(std::min(cols, fit));
    tiling.set_tileRows(rows_per_tile);
  } else {
    const uint32_t padded = AlignUp(cols, kAlignElements);
    if (padded > kBufferFloats) return ge::GRAPH_FAILED;  // rows longer than one buffer
    tiling.set_tileRows(std::max<uint32_t>(1, std::min(rows, kBufferFloats / padded)));
    tiling.set_tileCols(cols);
  }

  auto platform = platform_ascendc::PlatformAscendC(context->GetPlatformInfo());
  const uint32_t cores = std::max<uint32_t>(1, std::min<uint32_t>(platform.GetCoreNumAiv(), std::max(planes, 1u)));
  const uint32_t per_core = (std::max(planes, 1u) + cores - 1) / cores;
  tiling.set_planesPerCore(per_core);
  context->SetBlockDim((std::max(planes, 1u) + per_core - 1) / per_core);

  tiling.SaveToBuffer(context->GetRawTilingData()->GetData(), context->GetRawTilingData()->GetCapacity());
  context->GetRawTilingData()->SetDataSize(tiling.GetDataSize());
  size_t *workspace = context->GetWorkspaceSizes(1);
  workspace[0] = platform.GetLibApiWorkSpaceSize();
  return ge::GRAPH_SUCCESS;
}

}  // namespace optiling

namespace ge {

// dtau_parts / dvth_parts: one float32 slot per AI core (the tiling uses at most this many cores); the caller
// adds the slots up (src/lif/custom.py ASCEND_PART_SLOTS).
constexpr int64_t kPartSlots = 64;

static graphStatus ForwardShape(gert::InferShapeContext *context) {
  *context->GetOutputShape(0) = *context->GetInputShape(0);
  return GRAPH_SUCCESS;
}

static graphStatus ForwardType(gert::InferDataTypeContext *context) {
  context->SetOutputDataType(0, context->GetInputDataType(0));
  return GRAPH_SUCCESS;
}

static graphStatus GradShape(gert::InferShapeContext *context) {
  *context->GetOutputShape(0) = *context->GetInputShape(1);  // dx like x
  for (size_t output = 1; output <= 2; ++output) {
    gert::Shape *parts = context->GetOutputShape(output);
    parts->SetDimNum(1);
    parts->SetDim(0, kPartSlots);
  }
  return GRAPH_SUCCESS;
}

static graphStatus GradType(gert::InferDataTypeContext *context) {
  context->SetOutputDataType(0, context->GetInputDataType(1));
  context->SetOutputDataType(1, DT_FLOAT);
  context->SetOutputDataType(2, DT_FLOAT);
  return GRAPH_SUCCESS;
}

}  // namespace ge

namespace ops {

// One dtype combination per column: x in float16 or float32, the scalars always float32.
#define LIF_X_TYPES {ge::DT_FLOAT16, ge::DT_FLOAT}
#define LIF_SCALAR_TYPES {ge::DT_FLOAT, ge::DT_FLOAT}
#define LIF_FORMATS {ge::FORMAT_ND, ge::FORMAT_ND}

class LifScanCustom : public OpDef {
 public:
  explicit LifScanCustom(const char *name) : OpDef(name) {
    this->Input("x").ParamType(REQUIRED).DataType(LIF_X_TYPES).Format(LIF_FORMATS);
    this->Input("tau").ParamType(REQUIRED).DataType(LIF_SCALAR_TYPES).Format(LIF_FORMATS);
    this->Input("vth").ParamType(REQUIRED).DataType(LIF_SCALAR_TYPES).Format(LIF_FORMATS);
    this->Output("out").ParamType(REQUIRED).DataType(LIF_X_TYPES).Format(LIF_FORMATS);
    this->Attr("window").AttrType(REQUIRED).Int();
    this->Attr("axis").AttrType(REQUIRED).Int();
    this->SetInferShape(ge::ForwardShape).SetInferDataType(ge::ForwardType);
    this->AICore().SetTiling(optiling::LifScanTiling);
    this->AICore().AddConfig("ascend910b");
    this->AICore().AddConfig("ascend910_93");
  }
};

class LifScanGradCustom : public OpDef {
 public:
  explicit LifScanGradCustom(const char *name) : OpDef(name) {
    this->Input("dout").ParamType(REQUIRED).DataType(LIF_X_TYPES).Format(LIF_FORMATS);
    this->Input("x").ParamType(REQUIRED).DataType(LIF_X_TYPES).Format(LIF_FORMATS);
    this->Input("tau").ParamType(REQUIRED).DataType(LIF_SCALAR_TYPES).Format(LIF_FORMATS);
    this->Input("vth").ParamType(REQUIRED).DataType(LIF_SCALAR_TYPES).Format(LIF_FORMATS);
    this->Output("dx").ParamType(REQUIRED).DataType(LIF_X_TYPES).Format(LIF_FORMATS);
    // Per-core partial sums of dtau/dvth (kPartSlots floats, every slot written): no atomics, no InitValue.
    this->Output("dtau_parts").ParamType(REQUIRED).DataType(LIF_SCALAR_TYPES).Format(LIF_FORMATS);
    this->Output("dvth_parts").ParamType(REQUIRED).DataType(LIF_SCALAR_TYPES).Format(LIF_FORMATS);
    this->Attr("window").AttrType(REQUIRED).Int();
    this->Attr("axis").AttrType(REQUIRED).Int();
    this->SetInferShape(ge::GradShape).SetInferDataType(ge::GradType);
    this->AICore().SetTiling(optiling::LifScanTiling);
    this->AICore().AddConfig("ascend910b");
    this->AICore().AddConfig("ascend910_93");
  }
};

OP_ADD(LifScanCustom);
OP_ADD(LifScanGradCustom);

}  // namespace ops
