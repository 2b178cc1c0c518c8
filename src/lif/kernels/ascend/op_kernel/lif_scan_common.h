// Device side of the AscendC LIF operators (see op_host/lif_scan_custom.cpp and op_host/lif_scan_tiling.h).
//
// Each AI core takes a run of planes and moves tiles of them into UB (DataCopyPad, rows 32-byte aligned),
// widens float16 to float32, scans, narrows and writes back. The scan itself mirrors the CUDA kernel
// (lif_cuda.cu) line by line, one lane at a time on the scalar unit:
//   forward:  o = 0; u = tau*o + x; fire = u > vth; out = fire ? u : vth; o = fire ? 0 : u;
//   backward: one sweep: du/dtau in forward mode (dtau += g*t at firing positions, as the original kernel),
//             dvth += g at silent positions, and each firing position's gradient handed back along the
//             run of silent positions before it (one factor tau per step); silent positions after the last
//             fire of a window get 0.
// Lanes: along H, the columns of a window of k rows; along W, the windows of each row. Positions after the
// last whole window are left as loaded: copied (forward) or passed through as dout (backward).
#ifndef SNN_MLP_LIF_SCAN_COMMON_H_
#define SNN_MLP_LIF_SCAN_COMMON_H_

#include "kernel_operator.h"

using namespace AscendC;

namespace lif {

constexpr uint32_t kBufferBytes = 24 * 1024;  // as op_host/lif_scan_custom.cpp
constexpr uint32_t kAlignElements = 16;       // row stride in UB: 32 bytes of float16

__aicore__ inline uint32_t AlignUp(uint32_t value, uint32_t unit) { return (value + unit - 1) / unit * unit; }
__aicore__ inline uint32_t Min(uint32_t a, uint32_t b) { return a < b ? a : b; }

// `count` rows of `length` elements at `offset` in global memory, `gap` elements between rows there and
// `stride` elements apart in UB.
struct Tile {
  uint64_t offset;
  uint32_t count;
  uint32_t length;
  uint32_t gap;
  uint32_t stride;
};

__aicore__ inline Tile MakeTile(uint64_t offset, uint32_t count, uint32_t length, uint32_t row_length) {
  return {offset, count, length, row_length - length, AlignUp(length, kAlignElements)};
}

// A float32 work buffer in UB that tiles of a global tensor of T (float16 or float32) are loaded into and
// stored from; float16 goes through a staging buffer and is widened/narrowed by the vector unit.
template <typename T>
class TileBuffer {
 public:
  __aicore__ inline void Init(TPipe *pipe) {
    pipe->InitBuffer(work_, kBufferBytes);
    if constexpr (!IsFloat()) pipe->InitBuffer(staging_, kBufferBytes / sizeof(float) * sizeof(T));
  }

  __aicore__ inline LocalTensor<float> Load(GlobalTensor<T> &src, const Tile &t) {
    LocalTensor<float> work = work_.Get<float>();
    LocalTensor<T> raw = Raw(work);
    DataCopyExtParams copy{static_cast<uint16_t>(t.count), static_cast<uint32_t>(t.length * sizeof(T)),
                           static_cast<uint32_t>(t.gap * sizeof(T)), UbGapBlocks(t), 0};
    DataCopyPad(raw, src[t.offset], copy, DataCopyPadExtParams<T>{false, 0, 0, 0});
    PipeBarrier<PIPE_ALL>();
    if constexpr (!IsFloat()) {
      Cast(work, raw, RoundMode::CAST_NONE, t.count * t.stride);
      PipeBarrier<PIPE_ALL>();
    }
    return work;
  }

  __aicore__ inline void Store(GlobalTensor<T> &dst, const Tile &t) {
    LocalTensor<float> work = work_.Get<float>();
    LocalTensor<T> raw = Raw(work);
    PipeBarrier<PIPE_ALL>();  // the scalar unit's writes land before the vector/copy units read
    if constexpr (!IsFloat()) {
      Cast(raw, work, RoundMode::CAST_RINT, t.count * t.stride);
      PipeBarrier<PIPE_ALL>();
    }
    DataCopyExtParams copy{static_cast<uint16_t>(t.count), static_cast<uint32_t>(t.length * sizeof(T)),
                           UbGapBlocks(t), static_cast<uint32_t>(t.gap * sizeof(T)), 0};
    DataCopyPad(dst[t.offset], raw, copy);
    PipeBarrier<PIPE_ALL>();
  }

 private:
  static constexpr bool IsFloat() { return sizeof(T) == sizeof(float); }

  __aicore__ inline LocalTensor<T> Raw(LocalTensor<float> &work) {
    if constexpr (IsFloat()) {
      return work.template ReinterpretCast<T>();
    } else {
      return staging_.Get<T>();
    }
  }

  // UB rows are `stride` elements apart; DataCopyPad already rounds each row up to 32 bytes.
  __aicore__ inline uint32_t UbGapBlocks(const Tile &t) const {
    return (t.stride * sizeof(T) - AlignUp(t.length * sizeof(T), 32)) / 32;
  }

  TBuf<TPosition::VECCALC> work_;
  TBuf<TPosition::VECCALC> staging_;
};

struct Tiling {
  uint32_t planes, rows, cols, k, axis, planesPerCore, tileRows, tileCols;
};

// Calls visit(tile, lanes_are_columns, scan) for every tile of this core's planes; `scan` is false for the
// tiles that only pass through (the rows after the last whole window along H, or everything when k == 0).
template <typename Visit>
__aicore__ inline void ForEachTile(const Tiling &t, Visit visit) {
  const uint32_t first = GetBlockIdx() * t.planesPerCore;
  const uint32_t last = Min(t.planes, first + t.planesPerCore);
  const uint64_t plane_size = static_cast<uint64_t>(t.rows) * t.cols;
  for (uint32_t p = first; p < last; ++p) {
    const uint64_t base = p * plane_size;
    if (t.axis == 2) {
      const uint32_t whole = t.k == 0 ? 0 : t.rows / t.k * t.k;
      for (uint32_t r = 0; r < t.rows;) {
        const bool scan = r < whole;
        const uint32_t count = scan ? t.k : Min(t.tileRows, t.rows - r);
        for (uint32_t c = 0; c < t.cols; c += t.tileCols) {
          visit(MakeTile(base + static_cast<uint64_t>(r) * t.cols + c, count, Min(t.tileCols, t.cols - c), t.cols),
                scan);
        }
        r += count;
      }
    } else {
      for (uint32_t r = 0; r < t.rows; r += t.tileRows) {
        visit(MakeTile(base + static_cast<uint64_t>(r) * t.cols, Min(t.tileRows, t.rows - r), t.cols, t.cols),
              t.k != 0);
      }
    }
  }
}

// Lanes of a tile: along H each column c is a lane whose k positions are c, c + stride, ...; along W each whole
// window i of row r is a lane whose positions are r*stride + i*k, ... (consecutive).
struct Lanes {
  uint32_t count;
  uint32_t step;
  __aicore__ inline uint32_t Start(const Tile &t, uint32_t axis, uint32_t k, uint32_t lane) const {
    if (axis == 2) return lane;
    const uint32_t windows = t.length / k;
    return (lane / windows) * t.stride + (lane % windows) * k;
  }
};

__aicore__ inline Lanes LanesOf(const Tile &t, uint32_t axis, uint32_t k) {
  if (axis == 2) return {t.length, t.stride};
  return {t.count * (t.length / k), 1};
}

}  // namespace lif

#endif  // SNN_MLP_LIF_SCAN_COMMON_H_
