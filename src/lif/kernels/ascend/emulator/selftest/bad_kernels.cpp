// Deliberately wrong kernels, one per rule the emulator enforces (tests/test_ascend_emulator.py runs each and
// expects exit status 3 and "ascend-emulator: <rule>:" on stderr), plus `good`, which uses every checked API
// correctly and must pass. Usage: bad_kernels CASE
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_operator.h"

using namespace AscendC;

namespace {

std::vector<float> g_in(1024, 1.0f), g_out(1024, 0.0f);

struct Kernel {
  TPipe pipe;
  TQue<TPosition::VECIN, 2> in;
  TBuf<TPosition::VECCALC> work;
  GlobalTensor<float> src, dst;
  Kernel() {
    src.SetGlobalBuffer(g_in.data(), g_in.size());
    dst.SetGlobalBuffer(g_out.data(), g_out.size());
  }
};

void Good() {
  Kernel k;
  k.pipe.InitBuffer(k.in, 2, 256 * sizeof(float));
  k.pipe.InitBuffer(k.work, 256 * sizeof(float));
  LocalTensor<float> a = k.in.AllocTensor<float>();
  DataCopy(a, k.src, 64);                                                          // 256 bytes: aligned
  DataCopyPad(a[64], k.src[3], DataCopyExtParams{2, 7 * 4, 4, 0, 0}, DataCopyPadExtParams<float>{});  // unaligned rows
  k.in.EnQue(a);
  a = k.in.DeQue<float>();
  LocalTensor<float> w = k.work.Get<float>();
  Muls(w, a, 2.0f, 64);
  LocalTensor<uint8_t> mask = w[128].ReinterpretCast<uint8_t>();
  CompareScalar(mask, w, 1.5f, CMPMODE::GT, 64);
  Select(w, mask, w, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, 64);
  PipeBarrier<PIPE_ALL>();  // the vector results land before copy-out reads them
  DataCopyPad(k.dst, w, DataCopyExtParams{1, 5 * 4, 0, 0, 0});
  k.in.FreeTensor(a);
}

void UnalignedCopy() {  // DataCopy of 7 floats (28 bytes) instead of DataCopyPad
  Kernel k;
  k.pipe.InitBuffer(k.work, 256);
  DataCopy(k.work.Get<float>(), k.src, 7);
}

void UbOverflow() {  // double-buffered 100 KiB tiles: 200 KiB of a 192 KiB UB
  Kernel k;
  k.pipe.InitBuffer(k.in, 2, 100 * 1024);
}

void GmOutOfBounds() {  // one tile past the end of the input
  Kernel k;
  k.pipe.InitBuffer(k.work, 256 * sizeof(float));
  DataCopy(k.work.Get<float>(), k.src[1024 - 32], 64);
}

void GmScalarOutOfBounds() {
  Kernel k;
  (void)k.src.GetValue(1024);
}

void UbOutOfBounds() {  // a vector op over more elements than the buffer holds
  Kernel k;
  k.pipe.InitBuffer(k.work, 64 * sizeof(float));
  Duplicate(k.work.Get<float>(), 0.0f, 128);
}

void UbUnaligned() {  // a vector operand starting 12 bytes into a block
  Kernel k;
  k.pipe.InitBuffer(k.work, 128 * sizeof(float));
  LocalTensor<float> w = k.work.Get<float>();
  Add(w, w[3], w, 64);
}

void CopyRowsBeyondLimit() {  // DataCopyPad blockCount over 4095
  Kernel k;
  k.pipe.InitBuffer(k.work, 256 * sizeof(float));
  DataCopyPad(k.work.Get<float>(), k.src, DataCopyExtParams{4096, 4, 0, 0, 0}, DataCopyPadExtParams<float>{});
}

void CompareCount() {  // CompareScalar over 7 floats: not a multiple of 256 bytes
  Kernel k;
  k.pipe.InitBuffer(k.work, 256 * sizeof(float));
  LocalTensor<float> w = k.work.Get<float>();
  CompareScalar(w[128].ReinterpretCast<uint8_t>(), w, 0.0f, CMPMODE::GT, 7);
}

void QueueMissingFree() {  // a tensor allocated and never freed
  Kernel k;
  k.pipe.InitBuffer(k.in, 2, 256);
  LocalTensor<float> a = k.in.AllocTensor<float>();
  (void)a;
}

void QueueEmptyDeque() {
  Kernel k;
  k.pipe.InitBuffer(k.in, 2, 256);
  LocalTensor<float> a = k.in.DeQue<float>();
  (void)a;
}

void QueueOverAlloc() {  // three tiles in flight on a double buffer
  Kernel k;
  k.pipe.InitBuffer(k.in, 2, 256);
  LocalTensor<float> a = k.in.AllocTensor<float>();
  LocalTensor<float> b = k.in.AllocTensor<float>();
  LocalTensor<float> c = k.in.AllocTensor<float>();
  (void)a, (void)b, (void)c;
}

void TwoPipes() {
  Kernel k;
  TPipe second;
}

void TbufUnset() {
  Kernel k;
  (void)k.work.Get<float>();
}

void SelectMode() {
  Kernel k;
  k.pipe.InitBuffer(k.work, 256 * sizeof(float));
  LocalTensor<float> w = k.work.Get<float>();
  Select(w, w[128].ReinterpretCast<uint8_t>(), w, 0.0f, SELMODE::VSEL_TENSOR_TENSOR_MODE, 64);
}

void CastMode() {
  Kernel k;
  k.pipe.InitBuffer(k.work, 256 * sizeof(float));
  LocalTensor<float> w = k.work.Get<float>();
  Cast(w, w[128].ReinterpretCast<half>(), RoundMode::CAST_RINT, 64);
}

void GatherOutside() {  // an offset beyond the source tensor
  Kernel k;
  k.pipe.InitBuffer(k.work, 256 * sizeof(float));
  LocalTensor<float> w = k.work.Get<float>();
  LocalTensor<uint32_t> offsets = w[64].ReinterpretCast<uint32_t>();
  Duplicate(offsets, uint32_t(64 * sizeof(float)), 64);
  Gather(w[128], k.work.Get<float>(32), offsets, 0, 64);
}

void GatherMisaligned() {  // a byte offset inside an element
  Kernel k;
  k.pipe.InitBuffer(k.work, 256 * sizeof(float));
  LocalTensor<float> w = k.work.Get<float>();
  LocalTensor<uint32_t> offsets = w[64].ReinterpretCast<uint32_t>();
  Duplicate(offsets, uint32_t(2), 64);
  Gather(w[128], w, offsets, 0, 64);
}

void QueueDepth() {  // two tensors enqueued on a queue of depth 1
  Kernel k;
  TQue<TPosition::VECIN, 1> single;
  k.pipe.InitBuffer(single, 2, 256);
  LocalTensor<float> a = single.AllocTensor<float>();
  LocalTensor<float> b = single.AllocTensor<float>();
  single.EnQue(a);
  single.EnQue(b);
}

void ThreeBuffers() {  // queues hold one or two buffers
  Kernel k;
  k.pipe.InitBuffer(k.in, 3, 256);
}

void MissingSyncRead() {  // the vector unit reads a TBuf that copy-in is still filling
  Kernel k;
  k.pipe.InitBuffer(k.work, 256 * sizeof(float));
  LocalTensor<float> w = k.work.Get<float>();
  DataCopy(w, k.src, 64);
  Muls(w[64], w, 2.0f, 64);
}

void MissingSyncOverwrite() {  // copy-in refills a TBuf the vector unit may still be reading
  Kernel k;
  k.pipe.InitBuffer(k.work, 256 * sizeof(float));
  LocalTensor<float> w = k.work.Get<float>();
  Duplicate(w, 0.0f, 128);
  PipeBarrier<PIPE_ALL>();
  Muls(w[128], w, 2.0f, 64);
  DataCopy(w, k.src, 64);
}

}  // namespace

int main(int argc, char **argv) {
  const std::vector<std::pair<std::string, void (*)()>> cases = {
      {"good", Good},
      {"unaligned_copy", UnalignedCopy},
      {"ub_overflow", UbOverflow},
      {"gm_out_of_bounds", GmOutOfBounds},
      {"gm_scalar_out_of_bounds", GmScalarOutOfBounds},
      {"ub_out_of_bounds", UbOutOfBounds},
      {"ub_unaligned", UbUnaligned},
      {"copy_rows_beyond_limit", CopyRowsBeyondLimit},
      {"compare_count", CompareCount},
      {"queue_missing_free", QueueMissingFree},
      {"queue_empty_deque", QueueEmptyDeque},
      {"queue_over_alloc", QueueOverAlloc},
      {"two_pipes", TwoPipes},
      {"tbuf_unset", TbufUnset},
      {"select_mode", SelectMode},
      {"cast_mode", CastMode},
      {"gather_outside", GatherOutside},
      {"gather_misaligned", GatherMisaligned},
      {"queue_depth", QueueDepth},
      {"three_buffers", ThreeBuffers},
      {"missing_sync_read", MissingSyncRead},
      {"missing_sync_overwrite", MissingSyncOverwrite},
  };
  emu::RegisterGm(g_in.data(), g_in.size() * sizeof(float), "in");
  emu::RegisterGm(g_out.data(), g_out.size() * sizeof(float), "out");
  if (argc == 2 && std::string(argv[1]) == "--list") {
    for (const auto &c : cases) std::printf("%s\n", c.first.c_str());
    return 0;
  }
  for (const auto &c : cases) {
    if (argc == 2 && c.first == argv[1]) {
      emu::BeginBlock(0, 1);
      c.second();
      return 0;
    }
  }
  std::fprintf(stderr, "usage: bad_kernels CASE|--list\n");
  return 2;
}
