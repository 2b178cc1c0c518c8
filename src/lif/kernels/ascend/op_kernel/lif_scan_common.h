// Device side shared by the AscendC LIF operators (op_host/lif_scan_tiling.h explains tiles and work items).
//
// A tile moves GM -> UB with DataCopyPad through a double-buffered queue (the copy of the next tile overlaps
// the scan of this one), is brought into "lanes layout" (float32, one row of laneStride lanes per position:
// float16 is widened with Cast, axis 3 is transposed with Gather), scanned one position-row at a time with
// vector instructions over the whole row, brought back and copied out. No per-element scalar code: the scalar
// unit only walks tiles and rows.
//
// Forward, per row (o: the membrane row, reset to 0 at each window start):
//   u = tau*o + x;  fire = u > vth (CompareScalar -> bit mask);  o = fire ? 0 : u;  out = fire ? u : vth.
// Positions after the last whole window are copied unchanged.
#ifndef SNN_MLP_LIF_SCAN_COMMON_H_
#define SNN_MLP_LIF_SCAN_COMMON_H_

#include "kernel_operator.h"

using namespace AscendC;

namespace lif {

constexpr int32_t kBuffers = 2;     // double buffering
constexpr uint32_t kPartSlots = 64;  // dtau_parts / dvth_parts length (op_host: kPartSlots)

__aicore__ inline uint32_t Min(uint32_t a, uint32_t b) { return a < b ? a : b; }
__aicore__ inline uint32_t AlignUp(uint32_t value, uint32_t unit) { return (value + unit - 1) / unit * unit; }

struct Tiling {
  uint32_t axis, k, length, whole, rowLength, lanes, laneGroups, laneTile, posTile, laneStride, posStride, segment,
      windowChunks, laneChunks, scanSegments, tailSegments, itemsPerCore, totalItems;
};

#define LIF_TILING_FROM(td)                                                                                      \
  lif::Tiling {                                                                                                  \
    td.axis, td.k, td.length, td.whole, td.rowLength, td.lanes, td.laneGroups, td.laneTile, td.posTile,          \
        td.laneStride, td.posStride, td.segment, td.windowChunks, td.laneChunks, td.scanSegments,                \
        td.tailSegments, td.itemsPerCore, td.totalItems                                                          \
  }

// A work item: lanes [lane0, lane0 + laneCount) of lane group `group`, positions [begin, end).
struct Item {
  uint32_t group, lane0, laneCount, begin, end;
  bool scan;
};

// A tile: the item's lanes at positions [pos0, pos0 + count).
struct Tile {
  uint32_t group, lane0, laneCount, pos0, count;
};

__aicore__ inline Item ItemAt(const Tiling &t, uint32_t index) {
  const uint32_t segments = t.scanSegments + t.tailSegments;
  const uint32_t s = index % segments;
  const uint32_t chunk = (index / segments) % t.laneChunks;
  Item item;
  item.group = index / segments / t.laneChunks;
  item.lane0 = chunk * t.laneTile;
  item.laneCount = Min(t.laneTile, t.lanes - item.lane0);
  item.scan = s < t.scanSegments;
  if (item.scan) {
    item.begin = s * t.segment;
    item.end = Min(t.whole, item.begin + t.segment);
  } else {
    item.begin = t.whole + (s - t.scanSegments) * t.posTile;
    item.end = Min(t.length, item.begin + t.posTile);
  }
  return item;
}

__aicore__ inline Tile TileAt(const Item &item, uint32_t pos0, uint32_t pos_tile) {
  return Tile{item.group, item.lane0, item.laneCount, pos0, Min(pos_tile, item.end - pos0)};
}

// Elements of one queue buffer: the tile as it sits in UB before the transpose (axis 3: one row per lane,
// laneStride rows so that the transpose's padding lanes stay inside the buffer).
__aicore__ inline uint32_t RawElements(const Tiling &t) {
  return t.axis == 2 ? t.posTile * t.laneStride : t.laneStride * t.posStride;
}

// Moves tiles between global memory and UB. Axis 2: `count` rows of laneCount elements, laneStride apart in UB;
// axis 3: laneCount rows of `count` elements, posStride apart in UB.
template <typename T>
class TileCopy {
 public:
  __aicore__ inline void Init(const Tiling &t) { t_ = t; }

  __aicore__ inline void Load(const LocalTensor<T> &dst, const GlobalTensor<T> &src, const Tile &tile) const {
    DataCopyPad(dst, src[Offset(tile)], Params(tile, true), DataCopyPadExtParams<T>{false, 0, 0, 0});
  }
  __aicore__ inline void Store(const GlobalTensor<T> &dst, const LocalTensor<T> &src, const Tile &tile) const {
    DataCopyPad(dst[Offset(tile)], src, Params(tile, false));
  }

 private:
  __aicore__ inline uint64_t Offset(const Tile &tile) const {
    if (t_.axis == 2) {
      return (static_cast<uint64_t>(tile.group) * t_.length + tile.pos0) * t_.lanes + tile.lane0;
    }
    return static_cast<uint64_t>(tile.lane0) * t_.rowLength + tile.pos0;
  }
  __aicore__ inline DataCopyExtParams Params(const Tile &tile, bool to_ub) const {
    const uint32_t rows = t_.axis == 2 ? tile.count : tile.laneCount;
    const uint32_t row = t_.axis == 2 ? tile.laneCount : tile.count;
    const uint32_t ub_row = t_.axis == 2 ? t_.laneStride : t_.posStride;
    const uint32_t gm_gap = (t_.rowLength - row) * sizeof(T);                              // bytes
    const uint32_t ub_gap = (ub_row * sizeof(T) - AlignUp(row * sizeof(T), 32)) / 32;  // 32-byte blocks
    return DataCopyExtParams{static_cast<uint16_t>(rows), static_cast<uint32_t>(row * sizeof(T)),
                             to_ub ? gm_gap : ub_gap, to_ub ? ub_gap : gm_gap, 0};
  }
  Tiling t_;
};

// Gather offsets (bytes) of the axis-3 transpose, built once per core with vector instructions:
// toLanes[j][i] = (i*posStride + j)*4 reads UB row i (a lane), element j (a position);
// toRaw[i][j] = (j*laneStride + i)*4 reads it back.
class Transpose {
 public:
  __aicore__ inline void Init(TPipe *pipe, const Tiling &t) {
    s_ = t.laneStride;
    sp_ = t.posStride;
    pipe->InitBuffer(to_lanes_, s_ * sp_ * sizeof(uint32_t));
    pipe->InitBuffer(to_raw_, s_ * sp_ * sizeof(uint32_t));
    LocalTensor<int32_t> lanes = to_lanes_.Get<int32_t>();
    CreateVecIndex(lanes, int32_t(0), s_);
    Muls(lanes, lanes, static_cast<int32_t>(sp_ * sizeof(float)), s_);
    for (uint32_t j = 1; j < sp_; ++j) Adds(lanes[j * s_], lanes, static_cast<int32_t>(j * sizeof(float)), s_);
    LocalTensor<int32_t> raw = to_raw_.Get<int32_t>();
    CreateVecIndex(raw, int32_t(0), sp_);
    Muls(raw, raw, static_cast<int32_t>(s_ * sizeof(float)), sp_);
    for (uint32_t i = 1; i < s_; ++i) Adds(raw[i * sp_], raw, static_cast<int32_t>(i * sizeof(float)), sp_);
  }
  __aicore__ inline void ToLanes(const LocalTensor<float> &dst, const LocalTensor<float> &raw) {
    Gather(dst, raw, to_lanes_.Get<uint32_t>(), 0, s_ * sp_);
  }
  __aicore__ inline void ToRaw(const LocalTensor<float> &dst, const LocalTensor<float> &lanes) {
    Gather(dst, lanes, to_raw_.Get<uint32_t>(), 0, s_ * sp_);
  }

 private:
  uint32_t s_ = 0, sp_ = 0;
  TBuf<TPosition::VECCALC> to_lanes_;
  TBuf<TPosition::VECCALC> to_raw_;
};

// Brings a queue buffer of T into float32 lanes layout and back. Axis 2 in float32 is already there (in place).
template <typename T>
class LanesView {
 public:
  __aicore__ inline void Init(TPipe *pipe, const Tiling &t, Transpose *transpose) {
    transpose_ = t.axis == 3 ? transpose : nullptr;
    raw_ = RawElements(t);
    if (!IsFloat()) pipe->InitBuffer(wide_, raw_ * sizeof(float));
    if (transpose_ != nullptr) pipe->InitBuffer(lanes_, raw_ * sizeof(float));
  }
  __aicore__ inline LocalTensor<float> In(const LocalTensor<T> &raw) {
    LocalTensor<float> wide = Wide(raw);
    if constexpr (!IsFloat()) Cast(wide, raw, RoundMode::CAST_NONE, raw_);
    if (transpose_ == nullptr) return wide;
    LocalTensor<float> lanes = lanes_.Get<float>();
    transpose_->ToLanes(lanes, wide);
    return lanes;
  }
  __aicore__ inline void Out(const LocalTensor<float> &lanes, const LocalTensor<T> &raw) {
    LocalTensor<float> wide = Wide(raw);
    if (transpose_ != nullptr) transpose_->ToRaw(wide, lanes);
    if constexpr (!IsFloat()) Cast(raw, wide, RoundMode::CAST_RINT, raw_);
  }

 private:
  __aicore__ static constexpr bool IsFloat() { return sizeof(T) == sizeof(float); }
  // float32: the buffer itself; float16: its widened copy.
  __aicore__ inline LocalTensor<float> Wide(const LocalTensor<T> &raw) {
    if constexpr (IsFloat()) {
      return raw.template ReinterpretCast<float>();
    } else {
      return wide_.Get<float>();
    }
  }

  Transpose *transpose_ = nullptr;
  uint32_t raw_ = 0;
  TBuf<TPosition::VECCALC> wide_;
  TBuf<TPosition::VECCALC> lanes_;
};

// Reads the float32 scalar of a 1-element global input (tau, vth): one scalar access per core.
__aicore__ inline float ReadScalar(GM_ADDR address) {
  GlobalTensor<float> scalar;
  scalar.SetGlobalBuffer(reinterpret_cast<__gm__ float *>(address), 1);
  return scalar.GetValue(0);
}

}  // namespace lif

#endif  // SNN_MLP_LIF_SCAN_COMMON_H_
