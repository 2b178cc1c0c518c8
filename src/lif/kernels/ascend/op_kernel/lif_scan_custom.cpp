// AscendC kernel of LifScanCustom: out = LIF scan of x (see lif_scan_common.h for the scheme).
#include "lif_scan_common.h"

namespace {

template <typename T>
class LifScanForward {
 public:
  __aicore__ inline void Run(GM_ADDR x, GM_ADDR tau, GM_ADDR vth, GM_ADDR out, const lif::Tiling &t) {
    x_.SetGlobalBuffer(reinterpret_cast<__gm__ T *>(x));
    out_.SetGlobalBuffer(reinterpret_cast<__gm__ T *>(out));
    GlobalTensor<float> scalars;
    scalars.SetGlobalBuffer(reinterpret_cast<__gm__ float *>(tau));
    const float tau_value = scalars.GetValue(0);
    scalars.SetGlobalBuffer(reinterpret_cast<__gm__ float *>(vth));
    const float vth_value = scalars.GetValue(0);
    buffer_.Init(&pipe_);
    lif::ForEachTile(t, [&](const lif::Tile &tile, bool scan) {
      LocalTensor<float> w = buffer_.Load(x_, tile);
      if (scan) Scan(w, tile, t.axis, t.k, tau_value, vth_value);
      buffer_.Store(out_, tile);
    });
  }

 private:
  // In place: each position is read before it is written.
  __aicore__ inline void Scan(LocalTensor<float> &w, const lif::Tile &tile, uint32_t axis, uint32_t k, float tau,
                              float vth) {
    const lif::Lanes lanes = lif::LanesOf(tile, axis, k);
    for (uint32_t lane = 0; lane < lanes.count; ++lane) {
      const uint32_t start = lanes.Start(tile, axis, k, lane);
      float o = 0.0f;
      for (uint32_t j = 0; j < k; ++j) {
        const uint32_t at = start + j * lanes.step;
        const float u = tau * o + w.GetValue(at);
        const bool fire = u > vth;
        w.SetValue(at, fire ? u : vth);
        o = fire ? 0.0f : u;
      }
    }
  }

  TPipe pipe_;
  lif::TileBuffer<T> buffer_;
  GlobalTensor<T> x_;
  GlobalTensor<T> out_;
};

}  // namespace

extern "C" __global__ __aicore__ void lif_scan_custom(GM_ADDR x, GM_ADDR tau, GM_ADDR vth, GM_ADDR out,
                                                      GM_ADDR workspace, GM_ADDR tiling) {
  GET_TILING_DATA(td, tiling);
  const lif::Tiling t{td.planes, td.rows, td.cols, td.k, td.axis, td.planesPerCore, td.tileRows, td.tileCols};
  LifScanForward<DTYPE_X> op;
  op.Run(x, tau, vth, out, t);
}
