// Emulation of CANN's tiling-data macros (register/tilingdata_base.h): the class holds the fields in declaration
// order, with set_<field>/get_<field>, SaveToBuffer and GetDataSize, as the host tiling code uses them; the
// emulated GET_TILING_DATA reads the same bytes back on the kernel side (fields as plain members).
#ifndef SNN_MLP_ASCEND_EMULATOR_TILINGDATA_BASE_H_
#define SNN_MLP_ASCEND_EMULATOR_TILINGDATA_BASE_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define BEGIN_TILING_DATA_DEF(name) \
  class name {                      \
   public:
#define TILING_DATA_FIELD_DEF(type, field)             \
  type field = 0;                                      \
  void set_##field(type value) { field = value; }      \
  type get_##field() const { return field; }
#define END_TILING_DATA_DEF                                                             \
  void SaveToBuffer(void *buffer, size_t capacity) const {                              \
    if (sizeof(*this) > capacity) {                                                     \
      std::fprintf(stderr, "ascend-emulator: tiling: %zu bytes of tiling data, capacity %zu\n", sizeof(*this), \
                   capacity);                                                           \
      std::exit(3);                                                                     \
    }                                                                                   \
    std::memcpy(buffer, static_cast<const void *>(this), sizeof(*this));                \
  }                                                                                     \
  size_t GetDataSize() const { return sizeof(*this); }                                  \
  }
#define REGISTER_TILING_DATA_CLASS(op, cls) \
  static_assert(sizeof(cls) > 0, "tiling class of " #op);

#endif  // SNN_MLP_ASCEND_EMULATOR_TILINGDATA_BASE_H_
