// AscendC kernel of LifScanCustom: out = LIF scan of x along H or W (scheme: lif_scan_common.h).
#include "lif_scan_common.h"

namespace {

template <typename T>
class LifScanForward {
 public:
  __aicore__ inline void Init(GM_ADDR x, GM_ADDR tau, GM_ADDR vth, GM_ADDR out, const lif::Tiling &t) {
    t_ = t;
    x_.SetGlobalBuffer(reinterpret_cast<__gm__ T *>(x));
    out_.SetGlobalBuffer(reinterpret_cast<__gm__ T *>(out));
    tau_ = lif::ReadScalar(tau);
    vth_ = lif::ReadScalar(vth);
    copy_.Init(t);
    pipe_.InitBuffer(queue_, lif::kBuffers, lif::RawElements(t) * sizeof(T));
    if (t.axis == 3) transpose_.Init(&pipe_, t);
    view_.Init(&pipe_, t, &transpose_);
    const uint32_t s = t.laneStride;
    pipe_.InitBuffer(rows_, 3 * s * sizeof(float));
    pipe_.InitBuffer(mask_, lif::AlignUp(s / 8, 32));
    membrane_ = rows_.Get<float>();
    scratch_ = membrane_[s];
    zero_ = membrane_[2 * s];
    Duplicate(zero_, 0.0f, s);
  }

  __aicore__ inline void Process() {
    const uint32_t first = GetBlockIdx() * t_.itemsPerCore;
    const uint32_t last = lif::Min(t_.totalItems, first + t_.itemsPerCore);
    for (uint32_t index = first; index < last; ++index) {
      const lif::Item item = lif::ItemAt(t_, index);
      for (uint32_t pos = item.begin; pos < item.end; pos += t_.posTile) {
        const lif::Tile tile = lif::TileAt(item, pos, t_.posTile);
        CopyIn(tile);
        Compute(tile, item.scan);
        CopyOut(tile);
      }
    }
  }

 private:
  __aicore__ inline void CopyIn(const lif::Tile &tile) {
    LocalTensor<T> raw = queue_.template AllocTensor<T>();
    copy_.Load(raw, x_, tile);
    queue_.EnQue(raw);
  }

  __aicore__ inline void Compute(const lif::Tile &tile, bool scan) {
    LocalTensor<T> raw = queue_.template DeQue<T>();
    if (scan) {
      LocalTensor<float> lanes = view_.In(raw);
      Scan(lanes, tile);
      view_.Out(lanes, raw);
    }
    queue_.EnQue(raw);
  }

  __aicore__ inline void CopyOut(const lif::Tile &tile) {
    LocalTensor<T> raw = queue_.template DeQue<T>();
    copy_.Store(out_, raw, tile);
    queue_.FreeTensor(raw);
  }

  // In place, one position-row at a time; the membrane row carries over to the next tile of a long window.
  __aicore__ inline void Scan(const LocalTensor<float> &lanes, const lif::Tile &tile) {
    const uint32_t s = t_.laneStride;
    LocalTensor<uint8_t> fire = mask_.Get<uint8_t>();
    for (uint32_t j = 0; j < tile.count; ++j) {
      LocalTensor<float> row = lanes[j * s];
      if ((tile.pos0 + j) % t_.k != 0) {  // a window's first position starts from a reset membrane: u = x
        Muls(scratch_, membrane_, tau_, s);
        Add(row, scratch_, row, s);
      }
      CompareScalar(fire, row, vth_, CMPMODE::GT, s);
      Select(membrane_, fire, zero_, row, SELMODE::VSEL_TENSOR_TENSOR_MODE, s);
      Select(row, fire, row, vth_, SELMODE::VSEL_TENSOR_SCALAR_MODE, s);
    }
  }

  lif::Tiling t_;
  float tau_ = 0.0f;
  float vth_ = 0.0f;
  TPipe pipe_;
  TQueBind<TPosition::VECIN, TPosition::VECOUT, lif::kBuffers> queue_;  // x in, out back, in the same buffer
  lif::TileCopy<T> copy_;
  lif::Transpose transpose_;
  lif::LanesView<T> view_;
  TBuf<TPosition::VECCALC> rows_;
  TBuf<TPosition::VECCALC> mask_;
  LocalTensor<float> membrane_, scratch_, zero_;
  GlobalTensor<T> x_;
  GlobalTensor<T> out_;
};

}  // namespace

extern "C" __global__ __aicore__ void lif_scan_custom(GM_ADDR x, GM_ADDR tau, GM_ADDR vth, GM_ADDR out,
                                                      GM_ADDR workspace, GM_ADDR tiling) {
  KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);
  GET_TILING_DATA(td, tiling);
  LifScanForward<DTYPE_X> op;
  op.Init(x, tau, vth, out, LIF_TILING_FROM(td));
  op.Process();
}
