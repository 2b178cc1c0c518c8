// Tiling data shared by the AscendC LIF operators LifScanCustom (forward) and LifScanGradCustom (backward).
//
// Work split: the N*C planes are dealt out to the AI cores in contiguous runs of planesPerCore. Inside a plane
// a core moves tiles between global memory and its unified buffer (UB):
//   along H (axis 2): one window of k rows by up to tileCols columns at a time (then the tail rows);
//   along W (axis 3): up to tileRows whole rows at a time.
// Each row of a tile starts on a 32-byte boundary in UB (DataCopyPad pads it), rowStride elements apart.
#ifndef SNN_MLP_LIF_SCAN_TILING_H_
#define SNN_MLP_LIF_SCAN_TILING_H_

#include "register/tilingdata_base.h"

namespace optiling {
BEGIN_TILING_DATA_DEF(LifScanTilingData)
TILING_DATA_FIELD_DEF(uint32_t, planes);         // N*C
TILING_DATA_FIELD_DEF(uint32_t, rows);           // H
TILING_DATA_FIELD_DEF(uint32_t, cols);           // W
TILING_DATA_FIELD_DEF(uint32_t, k);              // effective window; 0: identity
TILING_DATA_FIELD_DEF(uint32_t, axis);           // 2 or 3
TILING_DATA_FIELD_DEF(uint32_t, planesPerCore);
TILING_DATA_FIELD_DEF(uint32_t, tileRows);       // along W: rows per tile
TILING_DATA_FIELD_DEF(uint32_t, tileCols);       // along H: columns per tile
END_TILING_DATA_DEF;

REGISTER_TILING_DATA_CLASS(LifScanCustom, LifScanTilingData)
REGISTER_TILING_DATA_CLASS(LifScanGradCustom, LifScanTilingData)
}  // namespace optiling

#endif  // SNN_MLP_LIF_SCAN_TILING_H_
