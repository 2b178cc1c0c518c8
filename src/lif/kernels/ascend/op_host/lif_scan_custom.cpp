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

// Layout rules the kernels (op_kernel/lif_scan_common.h) follow; the tiling sizes UB with the same formulas.
constexpr uint32_t kLaneAlign = 64;         // lanes-layout rows: CompareScalar counts must cover 256 bytes
constexpr uint32_t kPosAlign = 16;          // axis-3 UB rows: 32 bytes of float16
constexpr uint32_t kMaxCopyRows = 4095;     // DataCopyPad blockCount limit
constexpr uint32_t kMaxLaneTile = 4032;     // lanes per tile (a multiple of 64 within kMaxCopyRows)
constexpr uint32_t kStateRows = 13;         // backward: membrane, du/dtau, sums, carries, scratch
constexpr uint32_t kPartSlots = 64;         // dtau_parts / dvth_parts: one float per core
constexpr uint64_t kUbHeadroom = 8 * 1024;  // UB left unused, for what the library may keep

static uint64_t AlignUp(uint64_t value, uint64_t unit) { return (value + unit - 1) / unit * unit; }
static uint64_t CeilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

static int64_t EffectiveWindow(int64_t window, int64_t length) {
  if (window < 0) return 0;
  const int64_t k = window == 0 ? length : window;
  return k > length ? 0 : k;
}

// UB bytes of the backward kernel (the larger of the two) for a tile of `raw` elements per buffer and
// lanes-layout rows of `stride` floats: two double-buffered queues (dout/dx, x), float32 copies for float16,
// the transposed copies and gather offsets for axis 3, the state rows, a compare mask and the sum slots.
static uint64_t BackwardUbBytes(uint64_t raw, uint64_t stride, uint32_t elem_bytes, bool transpose) {
  uint64_t bytes = 4 * raw * elem_bytes;
  if (elem_bytes != sizeof(float)) bytes += 2 * raw * sizeof(float);
  if (transpose) bytes += 4 * raw * sizeof(float);
  return bytes + kStateRows * stride * sizeof(float) + AlignUp(stride / 8, 32) + 2 * 32 + kPartSlots * sizeof(float);
}

// Tiles for axis 2: lanes are columns, read row by row from global memory. Narrows the tile until a whole
// window fits (or the narrowest tile is reached; then windows span several tiles).
static void TileRows(uint64_t lanes, uint64_t length, uint64_t need, uint32_t elem_bytes, uint64_t budget,
                     uint32_t &lane_tile, uint32_t &pos_tile, uint32_t &stride) {
  uint64_t s = AlignUp(std::min<uint64_t>(lanes, kMaxLaneTile), kLaneAlign);
  uint64_t rows = 0;
  for (;;) {
    rows = 0;
    while (rows < std::min<uint64_t>(length, kMaxCopyRows) &&
           BackwardUbBytes((rows + 1) * s, s, elem_bytes, false) <= budget) {
      ++rows;
    }
    if (rows >= std::min(need, length) || s == kLaneAlign) break;
    s = std::max<uint64_t>(kLaneAlign, AlignUp(s / 2, kLaneAlign));
  }
  lane_tile = static_cast<uint32_t>(std::min<uint64_t>(lanes, s));
  pos_tile = static_cast<uint32_t>(std::max<uint64_t>(rows, 1));
  stride = static_cast<uint32_t>(s);
}

// Tiles for axis 3: positions are contiguous in global memory; a tile of laneTile rows by posTile positions is
// transposed in UB. Takes up to `need` positions (within the budget at the narrowest tile), then as many lanes
// as fit.
static void TileColumns(uint64_t lanes, uint64_t length, uint64_t need, uint32_t elem_bytes, uint64_t budget,
                        uint32_t &lane_tile, uint32_t &pos_tile, uint32_t &stride, uint32_t &pos_stride) {
  uint64_t sp = AlignUp(std::min(need, length), kPosAlign);
  while (sp > kPosAlign && BackwardUbBytes(kLaneAlign * sp, kLaneAlign, elem_bytes, true) > budget) sp -= kPosAlign;
  uint64_t s = kLaneAlign;
  const uint64_t max_s = AlignUp(std::min<uint64_t>(lanes, kMaxLaneTile), kLaneAlign);
  while (s + kLaneAlign <= max_s && BackwardUbBytes((s + kLaneAlign) * sp, s + kLaneAlign, elem_bytes, true) <= budget) {
    s += kLaneAlign;
  }
  lane_tile = static_cast<uint32_t>(std::min<uint64_t>(lanes, s));
  pos_tile = static_cast<uint32_t>(std::min<uint64_t>(length, sp));
  stride = static_cast<uint32_t>(s);
  pos_stride = static_cast<uint32_t>(sp);
}

// One tiling for both operators (they share the op definition's tiling hook): tiles are sized for the
// backward, which needs twice the UB per element of the forward. Every valid input gets a tile walk.
static ge::graphStatus LifScanTiling(gert::TilingContext *context) {
  const gert::StorageShape *storage = context->GetInputShape(0);
  const gert::RuntimeAttrs *attrs = context->GetAttrs();
  if (storage == nullptr || attrs == nullptr) return ge::GRAPH_FAILED;
  const gert::Shape &shape = storage->GetStorageShape();
  const int64_t *window_attr = attrs->GetAttrPointer<int64_t>(0);
  const int64_t *axis_attr = attrs->GetAttrPointer<int64_t>(1);
  if (shape.GetDimNum() != 4 || window_attr == nullptr || axis_attr == nullptr) return ge::GRAPH_FAILED;
  const int64_t window = *window_attr;
  const int64_t axis = *axis_attr;
  if ((axis != 2 && axis != 3) || window < -1) return ge::GRAPH_FAILED;
  const uint32_t elem_bytes = context->GetInputDesc(0)->GetDataType() == ge::DT_FLOAT16 ? 2 : 4;

  const uint64_t planes = static_cast<uint64_t>(shape.GetDim(0) * shape.GetDim(1));
  const uint64_t height = static_cast<uint64_t>(shape.GetDim(2));
  const uint64_t width = static_cast<uint64_t>(shape.GetDim(3));
  const uint64_t length = axis == 2 ? height : width;
  const uint64_t lanes = axis == 2 ? width : planes * height;
  const uint64_t groups = axis == 2 ? planes : 1;
  const uint64_t k = static_cast<uint64_t>(EffectiveWindow(window, static_cast<int64_t>(length)));
  const uint64_t whole = k == 0 ? 0 : length / k * k;

  auto platform = platform_ascendc::PlatformAscendC(context->GetPlatformInfo());
  uint64_t ub_bytes = 0;
  platform.GetCoreMemSize(platform_ascendc::CoreMemType::UB, ub_bytes);
  const uint64_t budget = ub_bytes - kUbHeadroom;

  LifScanTilingData tiling;
  uint32_t lane_tile = 1, pos_tile = 1, stride = kLaneAlign, pos_stride = kPosAlign;
  const bool empty = planes * height * width == 0;
  if (!empty) {
    // Axis 2 narrows tiles only as far as a window needs; axis 3 takes whole rows when they fit (one contiguous
    // copy per tile instead of short rows).
    const uint64_t need = (k == 0 || axis == 3) ? length : k;
    if (axis == 2) {
      TileRows(lanes, length, need, elem_bytes, budget, lane_tile, pos_tile, stride);
    } else {
      TileColumns(lanes, length, need, elem_bytes, budget, lane_tile, pos_tile, stride, pos_stride);
    }
  }
  const uint64_t window_chunks = k > pos_tile ? CeilDiv(k, pos_tile) : 1;
  const uint64_t segment = k == 0 ? 0 : (window_chunks == 1 ? pos_tile / k * k : k);
  const uint64_t scan_segments = whole == 0 ? 0 : CeilDiv(whole, segment);
  const uint64_t tail_segments = CeilDiv(length - whole, pos_tile);
  const uint64_t lane_chunks = empty ? 0 : CeilDiv(lanes, lane_tile);
  const uint64_t total = empty ? 0 : groups * lane_chunks * (scan_segments + tail_segments);
  // Beyond 32-bit counts (a tensor of terabytes): not a shape this network makes.
  if (total > UINT32_MAX || lanes > UINT32_MAX || length > UINT32_MAX) return ge::GRAPH_FAILED;

  const uint64_t cores = std::max<uint64_t>(1, std::min<uint64_t>(platform.GetCoreNumAiv(), kPartSlots));
  const uint64_t per_core = total == 0 ? 0 : CeilDiv(total, std::min(cores, total));
  const uint64_t block_dim = total == 0 ? 1 : CeilDiv(total, per_core);

  tiling.set_axis(static_cast<uint32_t>(axis));
  tiling.set_k(static_cast<uint32_t>(k));
  tiling.set_length(static_cast<uint32_t>(length));
  tiling.set_whole(static_cast<uint32_t>(whole));
  tiling.set_rowLength(static_cast<uint32_t>(width));
  tiling.set_lanes(static_cast<uint32_t>(lanes));
  tiling.set_laneGroups(static_cast<uint32_t>(groups));
  tiling.set_laneTile(lane_tile);
  tiling.set_posTile(pos_tile);
  tiling.set_laneStride(stride);
  tiling.set_posStride(pos_stride);
  tiling.set_segment(static_cast<uint32_t>(segment));
  tiling.set_windowChunks(static_cast<uint32_t>(window_chunks));
  tiling.set_laneChunks(static_cast<uint32_t>(lane_chunks));
  tiling.set_scanSegments(static_cast<uint32_t>(scan_segments));
  tiling.set_tailSegments(static_cast<uint32_t>(tail_segments));
  tiling.set_itemsPerCore(static_cast<uint32_t>(per_core));
  tiling.set_totalItems(static_cast<uint32_t>(total));
  context->SetBlockDim(static_cast<uint32_t>(block_dim));
  tiling.SaveToBuffer(context->GetRawTilingData()->GetData(), context->GetRawTilingData()->GetCapacity());
  context->GetRawTilingData()->SetDataSize(tiling.GetDataSize());

  // The backward keeps each tile's entry state (membrane and du/dtau rows) of a window that spans several
  // tiles in its own part of the workspace.
  size_t *workspace = context->GetWorkspaceSizes(1);
  const uint64_t state_bytes = window_chunks > 1 ? block_dim * window_chunks * 2 * stride * sizeof(float) : 0;
  workspace[0] = platform.GetLibApiWorkSpaceSize() + state_bytes;
  return ge::GRAPH_SUCCESS;
}

}  // namespace optiling

namespace ge {

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
    parts->SetDim(0, optiling::kPartSlots);  // one slot per AI core, summed by the caller
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
