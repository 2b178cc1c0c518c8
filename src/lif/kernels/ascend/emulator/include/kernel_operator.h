// CPU emulation of the AscendC kernel API subset the LIF kernels use (see ../README.md).
//
// It runs the real op_kernel/*.cpp with g++: one AI core after another, each with its own 192 KiB Unified
// Buffer (UB). It enforces the rules real AscendC enforces (or leaves undefined) that a kernel is likely to
// break: UB capacity, 32-byte alignment of UB tensors and of DataCopy lengths, bounds of every global and local
// access, queue discipline, the 256-byte count rule of CompareScalar. A broken rule prints one line
// "ascend-emulator: <rule>: <detail>" on stderr and exits with status 3. Fresh UB is filled with 0xFF bytes
// (NaN as float), so a kernel that reads UB it never wrote shows it in its results.
//
// Counted (emu::Stats): scalar element accesses (GetValue/SetValue on local and global tensors), vector
// instructions (one per API call; `repeats` counts 256-byte iterations), copies and bytes moved.
#ifndef SNN_MLP_ASCEND_EMULATOR_KERNEL_OPERATOR_H_
#define SNN_MLP_ASCEND_EMULATOR_KERNEL_OPERATOR_H_

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#define __aicore__
#define __global__
#define __gm__
using GM_ADDR = uint8_t *;

// ---------------------------------------------------------------------------------------------------------------
// Emulator state (not AscendC API).
namespace emu {

constexpr uint32_t kUbBytes = 192 * 1024;  // Unified Buffer of one 910B vector core
constexpr uint32_t kBlockBytes = 32;       // UB data block
constexpr uint32_t kRepeatBytes = 256;     // bytes one vector repeat processes
constexpr uint32_t kSysWorkspaceBytes = 16 * 1024 * 1024;  // library workspace ahead of the user's

[[noreturn]] inline void Fail(const char *rule, const char *fmt, ...) {
  std::fprintf(stderr, "ascend-emulator: %s: ", rule);
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  std::exit(3);
}

struct Stats {
  uint64_t scalar = 0;         // GetValue/SetValue element accesses
  uint64_t vector = 0;         // vector API calls
  uint64_t repeats = 0;        // 256-byte iterations of those calls
  uint64_t copies = 0;         // DataCopy/DataCopyPad calls
  uint64_t gm_bytes = 0;       // bytes moved between GM and UB
  uint64_t barriers = 0;       // PipeBarrier calls
  uint32_t ub_peak = 0;        // most UB bytes a core held at once
};

struct State {
  alignas(64) uint8_t ub[kUbBytes];
  uint32_t ub_used = 0;
  bool pipe_alive = false;
  int64_t block_idx = 0;
  int64_t block_num = 1;
  Stats stats;
  // Pipe hazards, per 32-byte UB block: the pipe whose write no hand-off has yet published, and the pipes that
  // read the block since the last hand-off.
  uint8_t written_by[kUbBytes / kBlockBytes];
  uint8_t read_by[kUbBytes / kBlockBytes];
  struct Region {
    const uint8_t *begin;
    uint64_t bytes;
    const char *name;
  };
  std::vector<Region> gm;
};

inline State &S() {
  static State *state = new State();
  return *state;
}

// The driver declares every global-memory buffer, so that global accesses can be bounds checked.
inline void RegisterGm(const void *ptr, uint64_t bytes, const char *name) {
  S().gm.push_back({static_cast<const uint8_t *>(ptr), bytes, name});
}

inline const State::Region &GmRegion(const void *ptr) {
  const uint8_t *p = static_cast<const uint8_t *>(ptr);
  for (const auto &r : S().gm) {
    if (p >= r.begin && (p < r.begin + r.bytes || (r.bytes == 0 && p == r.begin))) return r;
  }
  Fail("gm-bounds", "address %p lies in no global buffer", ptr);
}

// Starts core `idx` of `num`: a fresh UB (0xFF garbage), no pipe.
inline void BeginBlock(int64_t idx, int64_t num) {
  State &s = S();
  if (s.pipe_alive) Fail("pipe", "a TPipe outlived the previous core's kernel call");
  std::memset(s.ub, 0xFF, kUbBytes);
  std::memset(s.written_by, 0, sizeof(s.written_by));
  std::memset(s.read_by, 0, sizeof(s.read_by));
  s.ub_used = 0;
  s.block_idx = idx;
  s.block_num = num;
}

// The units that run a kernel's instructions, each in order, concurrently with each other on hardware.
enum Pipe : uint8_t { kScalar = 1, kVector = 2, kCopyIn = 4, kCopyOut = 8 };

inline const char *PipeName(uint8_t pipe) {
  switch (pipe) {
    case kScalar: return "the scalar unit";
    case kVector: return "the vector unit (V)";
    case kCopyIn: return "copy-in (MTE2)";
    case kCopyOut: return "copy-out (MTE3)";
    default: return "several pipes";
  }
}

// Records that `pipe` reads or writes UB bytes [addr, addr + bytes). Another pipe's unpublished write, or (for a
// write) another pipe's pending read, is a race on hardware: the queues' EnQue/DeQue and AllocTensor, or a
// PipeBarrier<PIPE_ALL>, must come between.
inline void Touch(uint32_t addr, uint64_t bytes, uint8_t pipe, bool write, const char *what) {
  if (bytes == 0) return;
  State &s = S();
  for (uint64_t b = addr / kBlockBytes; b <= (addr + bytes - 1) / kBlockBytes && b < kUbBytes / kBlockBytes; ++b) {
    if (s.written_by[b] != 0 && s.written_by[b] != pipe) {
      Fail("sync", "%s on %s uses UB (byte %llu) that %s wrote, with no queue hand-off or PipeBarrier between", what,
           PipeName(pipe), (unsigned long long)(b * kBlockBytes), PipeName(s.written_by[b]));
    }
    if (write && (s.read_by[b] & ~pipe) != 0) {
      Fail("sync", "%s on %s overwrites UB (byte %llu) that %s reads, with no queue hand-off or PipeBarrier between",
           what, PipeName(pipe), (unsigned long long)(b * kBlockBytes), PipeName(s.read_by[b] & ~pipe));
    }
    if (write) {
      s.written_by[b] = pipe;
    } else {
      s.read_by[b] |= pipe;
    }
  }
}

// A hand-off (DeQue, AllocTensor) makes the earlier uses of [addr, addr + bytes) visible and finished.
inline void Publish(uint32_t addr, uint64_t bytes) {
  State &s = S();
  for (uint64_t b = addr / kBlockBytes; b < (addr + bytes + kBlockBytes - 1) / kBlockBytes && b < kUbBytes / kBlockBytes; ++b) {
    s.written_by[b] = 0;
    s.read_by[b] = 0;
  }
}

inline void CountVector(uint64_t bytes) {
  S().stats.vector += 1;
  S().stats.repeats += (bytes + kRepeatBytes - 1) / kRepeatBytes;
}

}  // namespace emu

// ---------------------------------------------------------------------------------------------------------------
// float16 storage type with round-to-nearest-even conversion (the kernels compute in float32).
struct half {
  uint16_t bits = 0;
  half() = default;
  half(float f) : bits(FromFloat(f)) {}
  operator float() const { return ToFloat(bits); }

  static uint16_t FromFloat(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t absx = x & 0x7FFFFFFFu;
    if (absx >= 0x7F800000u) return static_cast<uint16_t>(sign | (absx > 0x7F800000u ? 0x7E00u : 0x7C00u));
    if (absx >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to beyond max: inf
    if (absx < 0x38800000u) {  // subnormal half (or zero)
      float a;
      std::memcpy(&a, &absx, 4);
      const float scaled = a * 16777216.0f;  // 2^24: units of the smallest subnormal
      return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
    }
    uint32_t mant = absx & 0x7FFFFFu;
    uint32_t exp = (absx >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1;
    return static_cast<uint16_t>(sign | h);
  }
  static float ToFloat(uint16_t h) {
    const uint32_t sign = (h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t mant = h & 0x3FFu;
    float out;
    if (exp == 0) {
      out = std::ldexp(static_cast<float>(mant), -24);
      if (sign) out = -out;
      return out;
    }
    uint32_t x = sign | (exp == 31 ? (0xFFu << 23) | (mant << 13) : ((exp + 112) << 23) | (mant << 13));
    std::memcpy(&out, &x, 4);
    return out;
  }
};

namespace AscendC {

enum class TPosition : uint8_t { GM, VECIN, VECOUT, VECCALC, A1, A2, B1, B2, CO1, CO2 };
using QuePosition = TPosition;
enum pipe_t { PIPE_S, PIPE_V, PIPE_M, PIPE_MTE1, PIPE_MTE2, PIPE_MTE3, PIPE_ALL };
enum class RoundMode { CAST_NONE, CAST_RINT, CAST_FLOOR, CAST_CEIL, CAST_ROUND, CAST_TRUNC, CAST_ODD };
enum class CMPMODE { LT, GT, EQ, LE, GE, NE };
enum class SELMODE { VSEL_CMPMASK_SPR, VSEL_TENSOR_SCALAR_MODE, VSEL_TENSOR_TENSOR_MODE };

enum KernelMetaType { KERNEL_TYPE_AIV_ONLY, KERNEL_TYPE_AIC_ONLY, KERNEL_TYPE_MIX_AIC_1_1, KERNEL_TYPE_MIX_AIC_1_2 };
#define KERNEL_TASK_TYPE_DEFAULT(type) static_assert((type) == AscendC::KERNEL_TYPE_AIV_ONLY, "the emulator runs vector kernels")

inline int64_t GetBlockIdx() { return emu::S().block_idx; }
inline int64_t GetBlockNum() { return emu::S().block_num; }

template <pipe_t pipe>
inline void PipeBarrier() {
  emu::S().stats.barriers += 1;
  if (pipe == PIPE_ALL) emu::Publish(0, emu::kUbBytes);  // every pipe waits for every other
}

// A typed view of UB: byte address and element count. Views made with operator[] share the storage.
template <typename T>
class LocalTensor {
 public:
  LocalTensor() = default;
  LocalTensor(uint32_t addr, uint32_t size, int owner) : addr_(addr), size_(size), owner_(owner) {}

  uint32_t GetSize() const { return size_; }
  LocalTensor operator[](uint32_t offset) const {
    if (offset > size_) emu::Fail("ub-bounds", "view at element %u of a %u-element local tensor", offset, size_);
    return LocalTensor(addr_ + offset * sizeof(T), size_ - offset, owner_);
  }
  template <typename U>
  LocalTensor<U> ReinterpretCast() const {
    return LocalTensor<U>(addr_, static_cast<uint32_t>(uint64_t(size_) * sizeof(T) / sizeof(U)), owner_);
  }
  T GetValue(uint32_t i) const {
    emu::S().stats.scalar += 1;
    Use(i, 1, emu::kScalar, false, "GetValue");
    return Data()[i];
  }
  void SetValue(uint32_t i, T v) const {
    emu::S().stats.scalar += 1;
    Use(i, 1, emu::kScalar, true, "SetValue");
    Data()[i] = v;
  }

  // Emulator internals.
  T *Data() const { return reinterpret_cast<T *>(emu::S().ub + addr_); }
  uint32_t Addr() const { return addr_; }
  int Owner() const { return owner_; }
  void Check(uint64_t first, uint64_t count, const char *what) const {
    if (owner_ == 0) emu::Fail("ub-bounds", "%s on a local tensor that was never allocated", what);
    if (first + count > size_) {
      emu::Fail("ub-bounds", "%s touches elements [%llu, %llu) of a %u-element local tensor", what,
                (unsigned long long)first, (unsigned long long)(first + count), size_);
    }
  }
  // Bounds check, then records the access for the pipe-hazard check.
  void Use(uint64_t first, uint64_t count, uint8_t pipe, bool write, const char *what) const {
    Check(first, count, what);
    emu::Touch(static_cast<uint32_t>(addr_ + first * sizeof(T)), count * sizeof(T), pipe, write, what);
  }
  void CheckAligned(const char *what) const {
    if (addr_ % emu::kBlockBytes != 0) emu::Fail("ub-align", "%s: UB address %u is not 32-byte aligned", what, addr_);
  }

 private:
  uint32_t addr_ = 0;
  uint32_t size_ = 0;
  int owner_ = 0;  // 0: default-constructed (no storage)
};

template <typename T>
class GlobalTensor {
 public:
  void SetGlobalBuffer(__gm__ T *buffer, uint64_t size = 0) {
    const auto &region = emu::GmRegion(buffer);
    const uint64_t left = (region.begin + region.bytes - reinterpret_cast<uint8_t *>(buffer)) / sizeof(T);
    if (size > left) {
      emu::Fail("gm-bounds", "SetGlobalBuffer of %llu elements, only %llu left in '%s'", (unsigned long long)size,
                (unsigned long long)left, region.name);
    }
    data_ = buffer;
    size_ = size == 0 ? left : size;
    name_ = region.name;
  }
  GlobalTensor operator[](uint64_t offset) const {
    if (offset > size_) {
      emu::Fail("gm-bounds", "view at element %llu of '%s' (%llu elements)", (unsigned long long)offset, name_,
                (unsigned long long)size_);
    }
    GlobalTensor g;
    g.data_ = data_ + offset;
    g.size_ = size_ - offset;
    g.name_ = name_;
    return g;
  }
  T GetValue(uint64_t i) const {
    emu::S().stats.scalar += 1;
    Check(i, 1, "GetValue");
    return data_[i];
  }
  void SetValue(uint64_t i, T v) const {
    emu::S().stats.scalar += 1;
    Check(i, 1, "SetValue");
    data_[i] = v;
  }
  uint64_t GetSize() const { return size_; }

  // Emulator internals.
  T *Data() const { return data_; }
  void Check(uint64_t first, uint64_t count, const char *what) const {
    if (data_ == nullptr) emu::Fail("gm-bounds", "%s on a global tensor without buffer", what);
    if (first + count > size_) {
      emu::Fail("gm-bounds", "%s touches elements [%llu, %llu) of '%s' (%llu elements)", what,
                (unsigned long long)first, (unsigned long long)(first + count), name_, (unsigned long long)size_);
    }
  }

 private:
  T *data_ = nullptr;
  uint64_t size_ = 0;
  const char *name_ = "";
};

// ---------------------------------------------------------------------------------------------------------------
// Memory management: TPipe hands out UB; TQue/TQueBind hold `num` buffers that circulate
// AllocTensor -> EnQue -> DeQue -> FreeTensor; TBuf is one buffer for scratch work.
class TQueBase {
 public:
  uint32_t addr = 0, len = 0, num = 0;
  int id = 0;
  std::vector<bool> busy;
  std::vector<uint32_t> fifo;  // addresses of enqueued tensors
  uint32_t depth = 0;

  template <typename T>
  LocalTensor<T> Alloc() {
    if (num == 0) emu::Fail("queue", "AllocTensor on a queue without InitBuffer");
    for (uint32_t i = 0; i < num; ++i) {
      if (!busy[i]) {
        busy[i] = true;
        emu::Publish(addr + i * len, len);  // AllocTensor waits until the buffer's last user is done
        return LocalTensor<T>(addr + i * len, len / sizeof(T), id);
      }
    }
    emu::Fail("queue", "AllocTensor with all %u buffers in use (a FreeTensor is missing)", num);
  }
  void Free(uint32_t at, int owner) {
    if (owner != id) emu::Fail("queue", "FreeTensor of a tensor this queue did not allocate");
    const uint32_t i = (at - addr) / len;
    if (i >= num || !busy[i]) emu::Fail("queue", "FreeTensor of a buffer that is not allocated");
    busy[i] = false;
  }
  void Push(uint32_t at, int owner) {
    if (owner != id) emu::Fail("queue", "EnQue of a tensor this queue did not allocate");
    if (fifo.size() >= depth) emu::Fail("queue", "EnQue beyond the queue depth %u", depth);
    fifo.push_back(at);
  }
  uint32_t Pop() {
    if (fifo.empty()) emu::Fail("queue", "DeQue from an empty queue (missing EnQue)");
    const uint32_t at = fifo.front();
    fifo.erase(fifo.begin());
    emu::Publish(at, len);  // DeQue waits for the pipe that enqueued it
    return at;
  }
  ~TQueBase() {
    for (bool b : busy) {
      if (b) emu::Fail("queue", "a queue buffer was never freed (AllocTensor without FreeTensor)");
    }
  }
};

inline int NextOwnerId() {
  static int next = 1;
  return next++;
}

template <TPosition src, TPosition dst, int32_t kDepth>
class TQueBind : public TQueBase {
 public:
  TQueBind() {
    id = NextOwnerId();
    depth = kDepth;
  }
  template <typename T>
  LocalTensor<T> AllocTensor() {
    return Alloc<T>();
  }
  template <typename T>
  bool EnQue(const LocalTensor<T> &t) {
    Push(t.Addr(), t.Owner());
    return true;
  }
  template <typename T>
  LocalTensor<T> DeQue() {
    const uint32_t at = Pop();
    return LocalTensor<T>(at, len / sizeof(T), id);
  }
  template <typename T>
  void FreeTensor(LocalTensor<T> &t) {
    Free(t.Addr(), t.Owner());
  }
};

template <TPosition pos, int32_t kDepth>
class TQue : public TQueBind<pos, pos, kDepth> {};

template <TPosition pos = TPosition::VECCALC>
class TBuf {
 public:
  uint32_t addr = 0, len = 0;
  int id = NextOwnerId();
  // Not const, as in AscendC: a kernel method that hands out its buffers cannot be const either.
  template <typename T>
  LocalTensor<T> Get() {
    if (len == 0) emu::Fail("tbuf", "Get on a TBuf without InitBuffer");
    return LocalTensor<T>(addr, len / sizeof(T), id);
  }
  template <typename T>
  LocalTensor<T> Get(uint32_t count) {
    if (count * sizeof(T) > len) emu::Fail("tbuf", "Get(%u) beyond a %u-byte TBuf", count, len);
    return LocalTensor<T>(addr, count, id);
  }
};

class TPipe {
 public:
  TPipe() {
    if (emu::S().pipe_alive) emu::Fail("pipe", "a second TPipe in one kernel");
    emu::S().pipe_alive = true;
  }
  ~TPipe() {
    emu::S().pipe_alive = false;
    emu::S().ub_used = 0;
  }
  template <class Q>
  void InitBuffer(Q &que, uint8_t num, uint32_t len) {
    if (que.num != 0) emu::Fail("pipe", "InitBuffer twice on one queue");
    if (num == 0 || num > 2) emu::Fail("pipe", "a queue holds 1 or 2 buffers, got %u", num);
    que.len = Align(len);
    que.num = num;
    que.addr = Take(que.len * num);
    que.busy.assign(num, false);
  }
  template <TPosition pos>
  void InitBuffer(TBuf<pos> &buf, uint32_t len) {
    if (buf.len != 0) emu::Fail("pipe", "InitBuffer twice on one TBuf");
    buf.len = Align(len);
    buf.addr = Take(buf.len);
  }

 private:
  static uint32_t Align(uint32_t len) {
    if (len == 0) emu::Fail("pipe", "InitBuffer of 0 bytes");
    return (len + emu::kBlockBytes - 1) / emu::kBlockBytes * emu::kBlockBytes;
  }
  static uint32_t Take(uint64_t bytes) {
    emu::State &s = emu::S();
    if (s.ub_used + bytes > emu::kUbBytes) {
      emu::Fail("ub-capacity", "InitBuffer of %llu bytes with %u of %u already taken",
                (unsigned long long)bytes, s.ub_used, emu::kUbBytes);
    }
    const uint32_t at = s.ub_used;
    s.ub_used += static_cast<uint32_t>(bytes);
    if (s.ub_used > s.stats.ub_peak) s.stats.ub_peak = s.ub_used;
    return at;
  }
};

// The user's part of the workspace follows the library's (platform_ascendc::GetLibApiWorkSpaceSize()).
inline GM_ADDR GetUserWorkspace(GM_ADDR workspace) { return workspace + emu::kSysWorkspaceBytes; }

// ---------------------------------------------------------------------------------------------------------------
// Data movement.
//
// DataCopy(local, global, count) / DataCopy(global, local, count): count * sizeof(T) must be a multiple of
// 32 bytes. DataCopyPad: blockCount rows of blockLen BYTES; the stride on the GM side is in BYTES, on the UB
// side in 32-byte BLOCKS, each counted from the end of the previous row (rounded up to 32 bytes in UB).
struct DataCopyParams {
  uint16_t blockCount = 1;
  uint16_t blockLen = 0;  // in 32-byte blocks
  uint16_t srcStride = 0;
  uint16_t dstStride = 0;
};

struct DataCopyExtParams {
  uint16_t blockCount = 1;
  uint32_t blockLen = 0;  // bytes
  uint32_t srcStride = 0;
  uint32_t dstStride = 0;
  uint32_t rsv = 0;
};

template <typename T>
struct DataCopyPadExtParams {
  bool isPad = false;
  uint8_t leftPadding = 0;
  uint8_t rightPadding = 0;
  T paddingValue = T();
};

namespace detail {
inline void CountCopy(uint64_t bytes) {
  emu::S().stats.copies += 1;
  emu::S().stats.gm_bytes += bytes;
}
template <typename T>
void CheckAlignedLength(uint64_t count, const char *what) {
  if ((count * sizeof(T)) % emu::kBlockBytes != 0) {
    emu::Fail("copy-align", "%s of %llu bytes: DataCopy moves whole 32-byte blocks (use DataCopyPad)", what,
              (unsigned long long)(count * sizeof(T)));
  }
}
template <typename T>
void CheckPadParams(const DataCopyExtParams &p, const char *what) {
  if (p.blockCount < 1 || p.blockCount > 4095) emu::Fail("copy-params", "%s: blockCount %u outside [1, 4095]", what, p.blockCount);
  if (p.blockLen == 0 || p.blockLen >= (1u << 21) || p.blockLen % sizeof(T) != 0) {
    emu::Fail("copy-params", "%s: blockLen %u bytes (1..2^21-1, a multiple of the element size)", what, p.blockLen);
  }
}
}  // namespace detail

namespace detail {
template <typename T>
void CopyBlocks(const LocalTensor<T> &local, const GlobalTensor<T> &global, uint32_t count, bool to_ub) {
  const char *what = to_ub ? "DataCopy GM->UB" : "DataCopy UB->GM";
  CheckAlignedLength<T>(count, what);
  local.CheckAligned(what);
  local.Use(0, count, to_ub ? emu::kCopyIn : emu::kCopyOut, to_ub, what);
  global.Check(0, count, what);
  if (to_ub) {
    std::memcpy(local.Data(), global.Data(), count * sizeof(T));
  } else {
    std::memcpy(global.Data(), local.Data(), count * sizeof(T));
  }
  CountCopy(count * sizeof(T));
}
}  // namespace detail

template <typename T>
void DataCopy(const LocalTensor<T> &dst, const GlobalTensor<T> &src, uint32_t count) {
  detail::CopyBlocks(dst, src, count, true);
}

template <typename T>
void DataCopy(const GlobalTensor<T> &dst, const LocalTensor<T> &src, uint32_t count) {
  detail::CopyBlocks(src, dst, count, false);
}

template <typename T>
void DataCopyPad(const LocalTensor<T> &dst, const GlobalTensor<T> &src, const DataCopyExtParams &p,
                 const DataCopyPadExtParams<T> &pad) {
  detail::CheckPadParams<T>(p, "DataCopyPad GM->UB");
  dst.CheckAligned("DataCopyPad GM->UB");
  const uint32_t n = p.blockLen / sizeof(T);
  const uint64_t ub_row = (p.blockLen + 31) / 32 * 32 + uint64_t(p.dstStride) * 32;  // bytes
  const uint64_t gm_row = p.blockLen + uint64_t(p.srcStride);                        // bytes
  if (pad.isPad && (pad.leftPadding + n + pad.rightPadding) * sizeof(T) > (p.blockLen + 31) / 32 * 32) {
    emu::Fail("copy-params", "DataCopyPad: padding beyond the row's last 32-byte block");
  }
  for (uint32_t r = 0; r < p.blockCount; ++r) {
    const uint64_t ub_at = r * ub_row / sizeof(T);
    const uint64_t gm_at = r * gm_row / sizeof(T);
    src.Check(gm_at, n, "DataCopyPad GM->UB (source row)");
    dst.Use(ub_at, (p.blockLen + 31) / 32 * 32 / sizeof(T), emu::kCopyIn, true, "DataCopyPad GM->UB (destination row)");
    T *row = dst.Data() + ub_at;
    // The rest of the last block is unspecified on hardware unless padded: garbage here.
    std::memset(reinterpret_cast<uint8_t *>(row) + p.blockLen, 0xFF, (p.blockLen + 31) / 32 * 32 - p.blockLen);
    const uint32_t lead = pad.isPad ? pad.leftPadding : 0;
    std::memcpy(row + lead, src.Data() + gm_at, p.blockLen);
    if (pad.isPad) {
      for (uint32_t i = 0; i < pad.leftPadding; ++i) row[i] = pad.paddingValue;
      for (uint32_t i = 0; i < pad.rightPadding; ++i) row[lead + n + i] = pad.paddingValue;
    }
  }
  detail::CountCopy(uint64_t(p.blockCount) * p.blockLen);
}

template <typename T>
void DataCopyPad(const GlobalTensor<T> &dst, const LocalTensor<T> &src, const DataCopyExtParams &p) {
  detail::CheckPadParams<T>(p, "DataCopyPad UB->GM");
  src.CheckAligned("DataCopyPad UB->GM");
  const uint32_t n = p.blockLen / sizeof(T);
  const uint64_t ub_row = (p.blockLen + 31) / 32 * 32 + uint64_t(p.srcStride) * 32;
  const uint64_t gm_row = p.blockLen + uint64_t(p.dstStride);
  for (uint32_t r = 0; r < p.blockCount; ++r) {
    const uint64_t ub_at = r * ub_row / sizeof(T);
    const uint64_t gm_at = r * gm_row / sizeof(T);
    src.Use(ub_at, n, emu::kCopyOut, false, "DataCopyPad UB->GM (source row)");
    dst.Check(gm_at, n, "DataCopyPad UB->GM (destination row)");
    std::memcpy(dst.Data() + gm_at, src.Data() + ub_at, p.blockLen);
  }
  detail::CountCopy(uint64_t(p.blockCount) * p.blockLen);
}

// ---------------------------------------------------------------------------------------------------------------
// Vector instructions, count-based forms: `count` elements from the start of each operand. Every operand
// starts on a 32-byte boundary (the general address rule of the vector unit); in-place use is allowed
// (dst may equal a source). The emulator computes into a temporary, then writes.
namespace detail {
template <typename T>
void VectorRead(const LocalTensor<T> &t, uint32_t count, const char *what) {
  t.CheckAligned(what);
  t.Use(0, count, emu::kVector, false, what);
}
template <typename T>
void VectorWrite(const LocalTensor<T> &t, uint32_t count, const char *what) {
  t.CheckAligned(what);
  t.Use(0, count, emu::kVector, true, what);
}

template <typename T, typename F>
void Unary(const LocalTensor<T> &dst, const LocalTensor<T> &src, uint32_t count, const char *what, F f) {
  VectorRead(src, count, what);
  VectorWrite(dst, count, what);
  std::vector<T> tmp(count);
  for (uint32_t i = 0; i < count; ++i) tmp[i] = f(src.Data()[i]);
  std::memcpy(dst.Data(), tmp.data(), count * sizeof(T));
  emu::CountVector(uint64_t(count) * sizeof(T));
}

template <typename T, typename F>
void Binary(const LocalTensor<T> &dst, const LocalTensor<T> &a, const LocalTensor<T> &b, uint32_t count,
            const char *what, F f) {
  VectorRead(a, count, what);
  VectorRead(b, count, what);
  VectorWrite(dst, count, what);
  std::vector<T> tmp(count);
  for (uint32_t i = 0; i < count; ++i) tmp[i] = f(a.Data()[i], b.Data()[i]);
  std::memcpy(dst.Data(), tmp.data(), count * sizeof(T));
  emu::CountVector(uint64_t(count) * sizeof(T));
}

template <typename T>
inline bool MaskBit(const LocalTensor<uint8_t> &mask, uint32_t i) {
  return (mask.Data()[i / 8] >> (i % 8)) & 1u;
}
}  // namespace detail

template <typename T>
void Add(const LocalTensor<T> &dst, const LocalTensor<T> &a, const LocalTensor<T> &b, uint32_t count) {
  detail::Binary(dst, a, b, count, "Add", [](T x, T y) { return T(x + y); });
}
template <typename T>
void Sub(const LocalTensor<T> &dst, const LocalTensor<T> &a, const LocalTensor<T> &b, uint32_t count) {
  detail::Binary(dst, a, b, count, "Sub", [](T x, T y) { return T(x - y); });
}
template <typename T>
void Mul(const LocalTensor<T> &dst, const LocalTensor<T> &a, const LocalTensor<T> &b, uint32_t count) {
  detail::Binary(dst, a, b, count, "Mul", [](T x, T y) { return T(x * y); });
}
template <typename T>
void Muls(const LocalTensor<T> &dst, const LocalTensor<T> &src, T scalar, uint32_t count) {
  detail::Unary(dst, src, count, "Muls", [scalar](T x) { return T(x * scalar); });
}
template <typename T>
void Adds(const LocalTensor<T> &dst, const LocalTensor<T> &src, T scalar, uint32_t count) {
  detail::Unary(dst, src, count, "Adds", [scalar](T x) { return T(x + scalar); });
}
template <typename T>
void Duplicate(const LocalTensor<T> &dst, T scalar, uint32_t count) {
  detail::VectorWrite(dst, count, "Duplicate");
  for (uint32_t i = 0; i < count; ++i) dst.Data()[i] = scalar;
  emu::CountVector(uint64_t(count) * sizeof(T));
}

// dst[i] = first + i.
template <typename T>
void CreateVecIndex(const LocalTensor<T> &dst, T first, uint32_t count) {
  detail::VectorWrite(dst, count, "CreateVecIndex");
  for (uint32_t i = 0; i < count; ++i) dst.Data()[i] = T(first + T(i));
  emu::CountVector(uint64_t(count) * sizeof(T));
}

// float16 <-> float32. Widening is exact (CAST_NONE); narrowing rounds to nearest even (CAST_RINT; CAST_NONE
// means the same for float32 -> float16).
inline void Cast(const LocalTensor<float> &dst, const LocalTensor<half> &src, RoundMode mode, uint32_t count) {
  if (mode != RoundMode::CAST_NONE) emu::Fail("cast", "float16 -> float32 takes CAST_NONE");
  detail::VectorRead(src, count, "Cast");
  detail::VectorWrite(dst, count, "Cast");
  std::vector<float> tmp(count);
  for (uint32_t i = 0; i < count; ++i) tmp[i] = float(src.Data()[i]);
  std::memcpy(dst.Data(), tmp.data(), count * sizeof(float));
  emu::CountVector(uint64_t(count) * sizeof(float));
}
inline void Cast(const LocalTensor<half> &dst, const LocalTensor<float> &src, RoundMode mode, uint32_t count) {
  if (mode != RoundMode::CAST_RINT && mode != RoundMode::CAST_NONE) {
    emu::Fail("cast", "the emulator models float32 -> float16 with CAST_RINT/CAST_NONE only");
  }
  detail::VectorRead(src, count, "Cast");
  detail::VectorWrite(dst, count, "Cast");
  std::vector<half> tmp(count);
  for (uint32_t i = 0; i < count; ++i) tmp[i] = half(src.Data()[i]);
  std::memcpy(dst.Data(), tmp.data(), count * sizeof(half));
  emu::CountVector(uint64_t(count) * sizeof(float));
}

// Bit i of dst (little-endian bit order within each byte) = src[i] <cmp> scalar. The count-based form needs
// count * sizeof(T) to be a multiple of 256 bytes.
template <typename T>
void CompareScalar(const LocalTensor<uint8_t> &dst, const LocalTensor<T> &src, T scalar, CMPMODE mode,
                   uint32_t count) {
  if ((uint64_t(count) * sizeof(T)) % emu::kRepeatBytes != 0) {
    emu::Fail("compare-count", "CompareScalar over %u elements: count * sizeof(T) must be a multiple of 256 bytes",
              count);
  }
  detail::VectorRead(src, count, "CompareScalar");
  detail::VectorWrite(dst, count / 8, "CompareScalar");
  std::vector<uint8_t> bits(count / 8, 0);
  for (uint32_t i = 0; i < count; ++i) {
    const T x = src.Data()[i];
    bool r = false;
    switch (mode) {
      case CMPMODE::LT: r = x < scalar; break;
      case CMPMODE::GT: r = x > scalar; break;
      case CMPMODE::EQ: r = x == scalar; break;
      case CMPMODE::LE: r = x <= scalar; break;
      case CMPMODE::GE: r = x >= scalar; break;
      case CMPMODE::NE: r = x != scalar; break;
    }
    if (r) bits[i / 8] |= uint8_t(1u << (i % 8));
  }
  std::memcpy(dst.Data(), bits.data(), bits.size());
  emu::CountVector(uint64_t(count) * sizeof(T));
}

// dst[i] = mask bit i ? src0[i] : src1[i] (tensor-tensor) or : scalar (tensor-scalar).
template <typename T>
void Select(const LocalTensor<T> &dst, const LocalTensor<uint8_t> &mask, const LocalTensor<T> &src0,
            const LocalTensor<T> &src1, SELMODE mode, uint32_t count) {
  if (mode != SELMODE::VSEL_TENSOR_TENSOR_MODE) emu::Fail("select", "tensor-tensor Select needs VSEL_TENSOR_TENSOR_MODE");
  detail::VectorRead(mask, (count + 7) / 8, "Select");
  detail::VectorRead(src0, count, "Select");
  detail::VectorRead(src1, count, "Select");
  detail::VectorWrite(dst, count, "Select");
  std::vector<T> tmp(count);
  for (uint32_t i = 0; i < count; ++i) tmp[i] = detail::MaskBit<T>(mask, i) ? src0.Data()[i] : src1.Data()[i];
  std::memcpy(dst.Data(), tmp.data(), count * sizeof(T));
  emu::CountVector(uint64_t(count) * sizeof(T));
}
template <typename T>
void Select(const LocalTensor<T> &dst, const LocalTensor<uint8_t> &mask, const LocalTensor<T> &src0, T scalar,
            SELMODE mode, uint32_t count) {
  if (mode != SELMODE::VSEL_TENSOR_SCALAR_MODE) emu::Fail("select", "tensor-scalar Select needs VSEL_TENSOR_SCALAR_MODE");
  detail::VectorRead(mask, (count + 7) / 8, "Select");
  detail::VectorRead(src0, count, "Select");
  detail::VectorWrite(dst, count, "Select");
  std::vector<T> tmp(count);
  for (uint32_t i = 0; i < count; ++i) tmp[i] = detail::MaskBit<T>(mask, i) ? src0.Data()[i] : scalar;
  std::memcpy(dst.Data(), tmp.data(), count * sizeof(T));
  emu::CountVector(uint64_t(count) * sizeof(T));
}

// dst[0] = sum of src[0, count). The hardware adds in a tree (within repeats, then across); the emulator adds
// pairwise, so the rounding is of the same order but not bit-identical. `work` must hold `count` elements.
inline void ReduceSum(const LocalTensor<float> &dst, const LocalTensor<float> &src, const LocalTensor<float> &work,
                      uint32_t count) {
  detail::VectorRead(src, count, "ReduceSum");
  detail::VectorWrite(work, count, "ReduceSum");
  detail::VectorWrite(dst, 1, "ReduceSum");
  std::vector<float> v(src.Data(), src.Data() + count);
  if (v.empty()) v.push_back(0.0f);
  while (v.size() > 1) {
    std::vector<float> next((v.size() + 1) / 2);
    for (size_t i = 0; i < v.size() / 2; ++i) next[i] = v[2 * i] + v[2 * i + 1];
    if (v.size() % 2) next.back() = v.back();
    v.swap(next);
  }
  std::memset(work.Data(), 0xFF, count * sizeof(float));  // the work area is clobbered
  dst.Data()[0] = v[0];
  emu::CountVector(uint64_t(count) * sizeof(float));
}

// dst[i] = element of src at byte offset srcBaseAddr + offset[i] (from the start of src). Offsets must be
// multiples of the element size and inside src.
template <typename T>
void Gather(const LocalTensor<T> &dst, const LocalTensor<T> &src, const LocalTensor<uint32_t> &offset,
            uint32_t srcBaseAddr, uint32_t count) {
  detail::VectorRead(offset, count, "Gather");
  src.CheckAligned("Gather");
  std::vector<T> tmp(count);
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t byte = uint64_t(srcBaseAddr) + offset.Data()[i];
    if (byte % sizeof(T) != 0) emu::Fail("gather", "offset %llu is not a multiple of the element size", (unsigned long long)byte);
    src.Use(byte / sizeof(T), 1, emu::kVector, false, "Gather (source element)");
    tmp[i] = src.Data()[byte / sizeof(T)];
  }
  detail::VectorWrite(dst, count, "Gather");
  std::memcpy(dst.Data(), tmp.data(), count * sizeof(T));
  emu::CountVector(uint64_t(count) * sizeof(T));
}

}  // namespace AscendC

// Kernel-side tiling access: CANN generates a plain struct from the op's registered tiling class; the emulator
// uses the host class itself (EMU_TILING_STRUCT, set by the build) and copies the bytes the host tiling saved.
#ifndef EMU_TILING_STRUCT
#error "compile kernels with -DEMU_TILING_STRUCT=<tiling class> and -include <tiling header>"
#endif
#define GET_TILING_DATA(var, tiling)                                  \
  EMU_TILING_STRUCT var;                                              \
  std::memcpy(static_cast<void *>(&var), (tiling), sizeof(EMU_TILING_STRUCT))

#endif  // SNN_MLP_ASCEND_EMULATOR_KERNEL_OPERATOR_H_
