// Emulation of CANN's platform_ascendc::PlatformAscendC: an Ascend 910B with emu::platform::cores vector cores
// (set by the driver: 1, 3, 40, 48, ...), a 192 KiB UB per core and a 16 MiB library workspace.
#ifndef SNN_MLP_ASCEND_EMULATOR_PLATFORM_ASCENDC_H_
#define SNN_MLP_ASCEND_EMULATOR_PLATFORM_ASCENDC_H_

#include <cstdint>

namespace fe {
class PlatFormInfos {};
}  // namespace fe

namespace emu {
namespace platform {
inline uint32_t &cores() {
  static uint32_t value = 48;
  return value;
}
}  // namespace platform
}  // namespace emu

namespace platform_ascendc {
enum class CoreMemType { L0_A, L0_B, L0_C, L1, L2, UB, HBM };

class PlatformAscendC {
 public:
  explicit PlatformAscendC(const fe::PlatFormInfos *) {}
  uint32_t GetCoreNumAiv() const { return emu::platform::cores(); }
  uint32_t GetCoreNum() const { return emu::platform::cores(); }
  void GetCoreMemSize(CoreMemType type, uint64_t &size) const { size = type == CoreMemType::UB ? 192 * 1024 : 0; }
  uint32_t GetLibApiWorkSpaceSize() const { return 16 * 1024 * 1024; }
};
}  // namespace platform_ascendc

#endif  // SNN_MLP_ASCEND_EMULATOR_PLATFORM_ASCENDC_H_
