// AscendC kernel of LifScanGradCustom: dx, and this core's partial sums of dtau and dvth (scheme:
// lif_scan_common.h). Gradients hold `fire` constant, as the original CUDA kernels.
//
// Per tile, rows in lanes layout (x becomes out in place, dout becomes dx in place):
//   forward sweep, state rows o (membrane) and tp (tau * du/dtau, zeroed where the position fired), reset at a
//   window start:  t = tp + o;  u = tau*o + x;  fire = u > vth;
//                  dtau += fire ? g*t : 0;  dvth += fire ? 0 : g;  tp = fire ? 0 : tau*t;  o = fire ? 0 : u;
//                  x := out (fire <=> out > vth, so the reverse sweep recomputes fire from it);
//   reverse sweep: dx = fire ? g : tau * dx[next] (0 after a window's last position).
// dtau/dvth: per-lane Kahan sums in float32 rows, reduced once per core (ReduceSum) into dtau_parts[core] /
// dvth_parts[core]; core 0 zeroes the unused slots. The caller adds the 64 slots: no atomics, no reliance on
// an output's initial value.
// A window longer than a tile: a first pass stores each tile's entry state rows in this core's workspace, a
// second walks the tiles backwards (x is read twice there).
#include "lif_scan_common.h"

namespace {

template <typename T>
class LifScanBackward {
 public:
  __aicore__ inline void Init(GM_ADDR dout, GM_ADDR x, GM_ADDR tau, GM_ADDR vth, GM_ADDR dx, GM_ADDR dtau_parts,
                              GM_ADDR dvth_parts, GM_ADDR workspace, const lif::Tiling &t) {
    t_ = t;
    dout_.SetGlobalBuffer(reinterpret_cast<__gm__ T *>(dout));
    x_.SetGlobalBuffer(reinterpret_cast<__gm__ T *>(x));
    dx_.SetGlobalBuffer(reinterpret_cast<__gm__ T *>(dx));
    dtau_parts_.SetGlobalBuffer(reinterpret_cast<__gm__ float *>(dtau_parts), lif::kPartSlots);
    dvth_parts_.SetGlobalBuffer(reinterpret_cast<__gm__ float *>(dvth_parts), lif::kPartSlots);
    tau_ = lif::ReadScalar(tau);
    vth_ = lif::ReadScalar(vth);
    const uint32_t s = t.laneStride;
    if (t.windowChunks > 1) {
      const uint64_t per_core = static_cast<uint64_t>(t.windowChunks) * 2 * s;
      states_.SetGlobalBuffer(reinterpret_cast<__gm__ float *>(GetUserWorkspace(workspace)) + GetBlockIdx() * per_core,
                              per_core);
    }
    copy_.Init(t);
    const uint32_t raw = lif::RawElements(t);
    pipe_.InitBuffer(grad_queue_, lif::kBuffers, raw * sizeof(T));
    pipe_.InitBuffer(x_queue_, lif::kBuffers, raw * sizeof(T));
    if (t.axis == 3) transpose_.Init(&pipe_, t);
    grad_view_.Init(&pipe_, t, &transpose_);
    x_view_.Init(&pipe_, t, &transpose_);
    pipe_.InitBuffer(rows_, kRows * s * sizeof(float));
    pipe_.InitBuffer(mask_, lif::AlignUp(s / 8, 32));
    pipe_.InitBuffer(sums_, 2 * 32);  // dtau's sum at element 0, dvth's at 8: each on a 32-byte boundary
    pipe_.InitBuffer(zeros_, lif::kPartSlots * sizeof(float));
    LocalTensor<float> rows = rows_.Get<float>();
    o_ = rows;
    tp_ = rows[s];
    t_row_ = rows[2 * s];
    scratch_ = rows[3 * s];
    y_ = rows[4 * s];
    next_sum_ = rows[5 * s];
    zero_ = rows[6 * s];
    carry_ = rows[7 * s];
    dtau_sum_ = rows[8 * s];
    dtau_comp_ = rows[9 * s];
    dvth_sum_ = rows[10 * s];
    dvth_comp_ = rows[11 * s];
    reduce_work_ = rows[12 * s];
    Duplicate(rows, 0.0f, kRows * s);
  }

  __aicore__ inline void Process() {
    const uint32_t first = GetBlockIdx() * t_.itemsPerCore;
    const uint32_t last = lif::Min(t_.totalItems, first + t_.itemsPerCore);
    for (uint32_t index = first; index < last; ++index) {
      const lif::Item item = lif::ItemAt(t_, index);
      if (!item.scan) {
        for (uint32_t pos = item.begin; pos < item.end; pos += t_.posTile) PassThrough(lif::TileAt(item, pos, t_.posTile));
      } else if (t_.windowChunks == 1) {
        ScanTile(lif::TileAt(item, item.begin, t_.posTile));
      } else {
        LongWindow(item);
      }
    }
    WriteParts();
  }

 private:
  static constexpr uint32_t kRows = 13;  // as op_host kStateRows

  __aicore__ inline void PassThrough(const lif::Tile &tile) {
    LocalTensor<T> g = grad_queue_.template AllocTensor<T>();
    copy_.Load(g, dout_, tile);
    grad_queue_.EnQue(g);
    g = grad_queue_.template DeQue<T>();
    grad_queue_.EnQue(g);
    g = grad_queue_.template DeQue<T>();
    copy_.Store(dx_, g, tile);
    grad_queue_.FreeTensor(g);
  }

  // One tile; the state rows hold its entry state (reset anyway at window starts) and carry_ holds
  // tau * dx of the position after the tile when that is inside the same window.
  __aicore__ inline void ScanTile(const lif::Tile &tile) {
    LocalTensor<T> x_raw = x_queue_.template AllocTensor<T>();
    copy_.Load(x_raw, x_, tile);
    x_queue_.EnQue(x_raw);
    LocalTensor<T> g_raw = grad_queue_.template AllocTensor<T>();
    copy_.Load(g_raw, dout_, tile);
    grad_queue_.EnQue(g_raw);
    x_raw = x_queue_.template DeQue<T>();
    g_raw = grad_queue_.template DeQue<T>();
    LocalTensor<float> xs = x_view_.In(x_raw);
    LocalTensor<float> gs = grad_view_.In(g_raw);
    ForwardSweep(xs, gs, tile, true);
    ReverseSweep(xs, gs, tile);
    grad_view_.Out(gs, g_raw);
    x_queue_.FreeTensor(x_raw);
    grad_queue_.EnQue(g_raw);
    g_raw = grad_queue_.template DeQue<T>();
    copy_.Store(dx_, g_raw, tile);
    grad_queue_.FreeTensor(g_raw);
  }

  __aicore__ inline void LongWindow(const lif::Item &item) {
    const uint32_t s = t_.laneStride;
    const uint32_t chunks = (item.end - item.begin + t_.posTile - 1) / t_.posTile;
    for (uint32_t c = 0; c < chunks; ++c) {  // pass 1: entry states
      const lif::Tile tile = lif::TileAt(item, item.begin + c * t_.posTile, t_.posTile);
      if (c == 0) ResetState();
      PipeBarrier<PIPE_ALL>();
      DataCopy(states_[2 * c * s], o_, s);
      DataCopy(states_[(2 * c + 1) * s], tp_, s);
      PipeBarrier<PIPE_ALL>();
      if (c + 1 == chunks) break;
      LocalTensor<T> x_raw = x_queue_.template AllocTensor<T>();
      copy_.Load(x_raw, x_, tile);
      x_queue_.EnQue(x_raw);
      x_raw = x_queue_.template DeQue<T>();
      const LocalTensor<float> xs = x_view_.In(x_raw);
      ForwardSweep(xs, xs, tile, false);
      x_queue_.FreeTensor(x_raw);
    }
    for (uint32_t c = chunks; c-- > 0;) {  // pass 2: tiles in reverse, each from its entry state
      PipeBarrier<PIPE_ALL>();
      DataCopy(o_, states_[2 * c * s], s);
      DataCopy(tp_, states_[(2 * c + 1) * s], s);
      PipeBarrier<PIPE_ALL>();
      ScanTile(lif::TileAt(item, item.begin + c * t_.posTile, t_.posTile));
    }
  }

  __aicore__ inline void ResetState() {
    Duplicate(o_, 0.0f, t_.laneStride);
    Duplicate(tp_, 0.0f, t_.laneStride);
  }

  // sum += value over the tile's lanes, Kahan-compensated (comp keeps the rounding error, negated).
  __aicore__ inline void KahanAdd(const LocalTensor<float> &sum, const LocalTensor<float> &comp,
                                  const LocalTensor<float> &value, uint32_t lanes) {
    Sub(y_, value, comp, lanes);
    Add(next_sum_, sum, y_, lanes);
    Sub(comp, next_sum_, sum, lanes);
    Sub(comp, comp, y_, lanes);
    Add(sum, sum, y_, lanes);
  }

  __aicore__ inline void ForwardSweep(const LocalTensor<float> &xs, const LocalTensor<float> &gs,
                                      const lif::Tile &tile, bool accumulate) {
    const uint32_t s = t_.laneStride;
    LocalTensor<uint8_t> fire = mask_.Get<uint8_t>();
    for (uint32_t j = 0; j < tile.count; ++j) {
      LocalTensor<float> x = xs[j * s];
      if ((tile.pos0 + j) % t_.k == 0) ResetState();
      Add(t_row_, tp_, o_, s);
      Muls(scratch_, o_, tau_, s);
      Add(x, scratch_, x, s);  // u
      CompareScalar(fire, x, vth_, CMPMODE::GT, s);
      if (accumulate) {
        LocalTensor<float> g = gs[j * s];
        Mul(scratch_, g, t_row_, s);
        Select(scratch_, fire, scratch_, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, s);
        KahanAdd(dtau_sum_, dtau_comp_, scratch_, tile.laneCount);
        Select(scratch_, fire, zero_, g, SELMODE::VSEL_TENSOR_TENSOR_MODE, s);
        KahanAdd(dvth_sum_, dvth_comp_, scratch_, tile.laneCount);
      }
      Muls(scratch_, t_row_, tau_, s);
      Select(tp_, fire, zero_, scratch_, SELMODE::VSEL_TENSOR_TENSOR_MODE, s);
      Select(o_, fire, zero_, x, SELMODE::VSEL_TENSOR_TENSOR_MODE, s);
      Select(x, fire, x, vth_, SELMODE::VSEL_TENSOR_SCALAR_MODE, s);  // out
    }
  }

  __aicore__ inline void ReverseSweep(const LocalTensor<float> &xs, const LocalTensor<float> &gs,
                                      const lif::Tile &tile) {
    const uint32_t s = t_.laneStride;
    LocalTensor<uint8_t> fire = mask_.Get<uint8_t>();
    for (uint32_t j = tile.count; j-- > 0;) {
      LocalTensor<float> g = gs[j * s];
      CompareScalar(fire, xs[j * s], vth_, CMPMODE::GT, s);
      if ((tile.pos0 + j + 1) % t_.k == 0) {  // a window's last position
        Select(g, fire, g, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, s);
      } else if (j + 1 == tile.count) {  // the window goes on in the next tile
        Select(g, fire, g, carry_, SELMODE::VSEL_TENSOR_TENSOR_MODE, s);
      } else {
        Muls(scratch_, gs[(j + 1) * s], tau_, s);
        Select(g, fire, g, scratch_, SELMODE::VSEL_TENSOR_TENSOR_MODE, s);
      }
    }
    Muls(carry_, gs, tau_, s);  // for the tile before this one in the same window
  }

  __aicore__ inline void WriteParts() {
    const uint32_t s = t_.laneStride;
    LocalTensor<float> sums = sums_.Get<float>();
    Sub(dtau_sum_, dtau_sum_, dtau_comp_, s);
    ReduceSum(sums, dtau_sum_, reduce_work_, s);
    Sub(dvth_sum_, dvth_sum_, dvth_comp_, s);
    ReduceSum(sums[8], dvth_sum_, reduce_work_, s);
    LocalTensor<float> zeros = zeros_.Get<float>();
    Duplicate(zeros, 0.0f, lif::kPartSlots);
    PipeBarrier<PIPE_ALL>();  // vector results land before the copy unit reads them
    const uint32_t core = GetBlockIdx();
    const DataCopyExtParams one{1, sizeof(float), 0, 0, 0};
    DataCopyPad(dtau_parts_[core], sums, one);
    DataCopyPad(dvth_parts_[core], sums[8], one);
    const uint32_t cores = GetBlockNum();
    if (core == 0 && cores < lif::kPartSlots) {
      const DataCopyExtParams rest{1, static_cast<uint32_t>((lif::kPartSlots - cores) * sizeof(float)), 0, 0, 0};
      DataCopyPad(dtau_parts_[cores], zeros, rest);
      DataCopyPad(dvth_parts_[cores], zeros, rest);
    }
  }

  lif::Tiling t_;
  float tau_ = 0.0f;
  float vth_ = 0.0f;
  TPipe pipe_;
  TQueBind<TPosition::VECIN, TPosition::VECOUT, lif::kBuffers> grad_queue_;  // dout in, dx back
  TQue<TPosition::VECIN, lif::kBuffers> x_queue_;
  lif::TileCopy<T> copy_;
  lif::Transpose transpose_;
  lif::LanesView<T> grad_view_;
  lif::LanesView<T> x_view_;
  TBuf<TPosition::VECCALC> rows_;
  TBuf<TPosition::VECCALC> mask_;
  TBuf<TPosition::VECCALC> sums_;
  TBuf<TPosition::VECCALC> zeros_;
  LocalTensor<float> o_, tp_, t_row_, scratch_, y_, next_sum_, zero_, carry_, dtau_sum_, dtau_comp_, dvth_sum_,
      dvth_comp_, reduce_work_;
  GlobalTensor<T> dout_, x_, dx_;
  GlobalTensor<float> dtau_parts_, dvth_parts_, states_;
};

}  // namespace

extern "C" __global__ __aicore__ void lif_scan_grad_custom(GM_ADDR dout, GM_ADDR x, GM_ADDR tau, GM_ADDR vth,
                                                           GM_ADDR dx, GM_ADDR dtau_parts, GM_ADDR dvth_parts,
                                                           GM_ADDR workspace, GM_ADDR tiling) {
  KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);
  GET_TILING_DATA(td, tiling);
  LifScanBackward<DTYPE_X> op;
  op.Init(dout, x, tau, vth, dx, dtau_parts, dvth_parts, workspace, LIF_TILING_FROM(td));
  op.Process();
}
