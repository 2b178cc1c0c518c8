// AscendC kernel of LifScanGradCustom: dx, dtau, dvth of the LIF scan (see lif_scan_common.h for the scheme).
#include "lif_scan_common.h"

namespace {

template <typename T>
class LifScanBackward {
 public:
  __aicore__ inline void Run(GM_ADDR x, GM_ADDR tau, GM_ADDR vth, GM_ADDR dout, GM_ADDR dx, GM_ADDR dtau,
                             GM_ADDR dvth, const lif::Tiling &t) {
    x_.SetGlobalBuffer(reinterpret_cast<__gm__ T *>(x));
    dout_.SetGlobalBuffer(reinterpret_cast<__gm__ T *>(dout));
    dx_.SetGlobalBuffer(reinterpret_cast<__gm__ T *>(dx));
    GlobalTensor<float> scalars;
    scalars.SetGlobalBuffer(reinterpret_cast<__gm__ float *>(tau));
    const float tau_value = scalars.GetValue(0);
    scalars.SetGlobalBuffer(reinterpret_cast<__gm__ float *>(vth));
    const float vth_value = scalars.GetValue(0);
    x_buffer_.Init(&pipe_);
    grad_buffer_.Init(&pipe_);
    pipe_.InitBuffer(sums_buffer_, 2 * 32);
    float dtau_sum = 0.0f;
    float dvth_sum = 0.0f;
    lif::ForEachTile(t, [&](const lif::Tile &tile, bool scan) {
      LocalTensor<float> grad = grad_buffer_.Load(dout_, tile);  // becomes dx in place
      if (scan) {
        LocalTensor<float> xs = x_buffer_.Load(x_, tile);
        Scan(xs, grad, tile, t.axis, t.k, tau_value, vth_value, dtau_sum, dvth_sum);
      }
      grad_buffer_.Store(dx_, tile);
    });
    AddToOutput(dtau, dtau_sum, 0);
    AddToOutput(dvth, dvth_sum, 8);
  }

 private:
  // grad holds dout on entry and dx on return; positions of a lane are overwritten only after they are read.
  __aicore__ inline void Scan(LocalTensor<float> &xs, LocalTensor<float> &grad, const lif::Tile &tile,
                              uint32_t axis, uint32_t k, float tau, float vth, float &dtau, float &dvth) {
    const lif::Lanes lanes = lif::LanesOf(tile, axis, k);
    for (uint32_t lane = 0; lane < lanes.count; ++lane) {
      const uint32_t start = lanes.Start(tile, axis, k, lane);
      float o = 0.0f;
      float du_dtau = 0.0f;
      bool fired = true;    // the window starts from a reset membrane
      uint32_t silent = 0;  // first position of the current run that did not fire
      for (uint32_t j = 0; j < k; ++j) {
        const uint32_t at = start + j * lanes.step;
        du_dtau = fired ? o : du_dtau * tau + o;
        const float u = tau * o + xs.GetValue(at);
        const bool fire = u > vth;
        const float g = grad.GetValue(at);
        if (fire) {
          dtau += g * du_dtau;
          float carried = g;  // dx[at] = g
          for (uint32_t q = j; q > silent; --q) {  // hand it back along the silent run, one tau per step
            carried *= tau;
            grad.SetValue(start + (q - 1) * lanes.step, carried);
          }
          silent = j + 1;
          o = 0.0f;
        } else {
          dvth += g;
          o = u;
        }
        fired = fire;
      }
      for (uint32_t q = silent; q < k; ++q) grad.SetValue(start + q * lanes.step, 0.0f);  // no later fire
    }
  }

  // Adds this core's sum to a float32 output (zeroed by the framework: InitValue(0) in the op definition).
  __aicore__ inline void AddToOutput(GM_ADDR output, float value, uint32_t slot) {
    LocalTensor<float> sums = sums_buffer_.Get<float>();
    sums.SetValue(slot, value);
    GlobalTensor<float> target;
    target.SetGlobalBuffer(reinterpret_cast<__gm__ float *>(output));
    PipeBarrier<PIPE_ALL>();
    SetAtomicAdd<float>();
    DataCopyPad(target, sums[slot], DataCopyExtParams{1, sizeof(float), 0, 0, 0});
    SetAtomicNone();
    PipeBarrier<PIPE_ALL>();
  }

  TPipe pipe_;
  lif::TileBuffer<T> x_buffer_;
  lif::TileBuffer<T> grad_buffer_;
  TBuf<TPosition::VECCALC> sums_buffer_;
  GlobalTensor<T> x_;
  GlobalTensor<T> dout_;
  GlobalTensor<T> dx_;
};

}  // namespace

extern "C" __global__ __aicore__ void lif_scan_grad_custom(GM_ADDR x, GM_ADDR tau, GM_ADDR vth, GM_ADDR dout,
                                                           GM_ADDR dx, GM_ADDR dtau, GM_ADDR dvth,
                                                           GM_ADDR workspace, GM_ADDR tiling) {
  GET_TILING_DATA(td, tiling);
  const lif::Tiling t{td.planes, td.rows, td.cols, td.k, td.axis, td.planesPerCore, td.tileRows, td.tileCols};
  LifScanBackward<DTYPE_X> op;
  op.Run(x, tau, vth, dout, dx, dtau, dvth, t);
}
