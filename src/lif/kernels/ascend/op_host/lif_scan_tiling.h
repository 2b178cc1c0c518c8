// Tiling data shared by the AscendC LIF operators LifScanCustom (forward) and LifScanGradCustom (backward).
//
// Vocabulary: the scan runs along `length` positions (H for axis 2, W for axis 3) of independent lanes (the W
// columns of each of the N*C planes for axis 2; the N*C*H rows for axis 3). A tile is laneTile lanes by
// posTile positions; in UB it is scanned in "lanes layout": one row of laneStride floats per position, so a
// step of the scan is a handful of vector instructions over a whole row. Axis 2 is in that layout in global
// memory already; axis 3 is transposed in UB with Gather (rows of posStride elements <-> rows of lanes).
//
// Work items: (lane group, lane chunk, segment). A scanned segment holds whole windows that fit one tile
// (windowChunks == 1) or one window of windowChunks tiles; tail segments (positions after the last whole
// window, or everything when k == 0) are copied. Core b takes items [b*itemsPerCore, (b+1)*itemsPerCore).
#ifndef SNN_MLP_LIF_SCAN_TILING_H_
#define SNN_MLP_LIF_SCAN_TILING_H_

#include "register/tilingdata_base.h"

namespace optiling {
BEGIN_TILING_DATA_DEF(LifScanTilingData)
TILING_DATA_FIELD_DEF(uint32_t, axis);          // 2 (H) or 3 (W)
TILING_DATA_FIELD_DEF(uint32_t, k);             // effective window; 0: identity
TILING_DATA_FIELD_DEF(uint32_t, length);        // positions along the axis
TILING_DATA_FIELD_DEF(uint32_t, whole);         // positions in whole windows
TILING_DATA_FIELD_DEF(uint32_t, rowLength);     // W: elements of one row in global memory
TILING_DATA_FIELD_DEF(uint32_t, lanes);         // lanes per lane group
TILING_DATA_FIELD_DEF(uint32_t, laneGroups);    // axis 2: N*C planes; axis 3: 1
TILING_DATA_FIELD_DEF(uint32_t, laneTile);      // lanes per tile
TILING_DATA_FIELD_DEF(uint32_t, posTile);       // positions per tile
TILING_DATA_FIELD_DEF(uint32_t, laneStride);    // floats per lanes-layout row: laneTile rounded up to 64
TILING_DATA_FIELD_DEF(uint32_t, posStride);     // axis 3: elements per UB row before the transpose
TILING_DATA_FIELD_DEF(uint32_t, segment);       // positions per scanned segment
TILING_DATA_FIELD_DEF(uint32_t, windowChunks);  // tiles per window (1: windows fit a tile)
TILING_DATA_FIELD_DEF(uint32_t, laneChunks);
TILING_DATA_FIELD_DEF(uint32_t, scanSegments);
TILING_DATA_FIELD_DEF(uint32_t, tailSegments);
TILING_DATA_FIELD_DEF(uint32_t, itemsPerCore);
TILING_DATA_FIELD_DEF(uint32_t, totalItems);
END_TILING_DATA_DEF;

REGISTER_TILING_DATA_CLASS(LifScanCustom, LifScanTilingData)
REGISTER_TILING_DATA_CLASS(LifScanGradCustom, LifScanTilingData)
}  // namespace optiling

#endif  // SNN_MLP_LIF_SCAN_TILING_H_
