#!/usr/bin/env bash
# Prebuild the CUDA LIF kernel (src/lif/kernels/lif_cuda.cu) with nvcc for sm_80 and sm_90 plus PTX, into the
# kernel cache that training looks in: $SNNMLP_HOME/kernels (default ~/.cache/snn_mlp/kernels).
#
# Usage: scripts/build_cuda_kernels.sh [--help]
#
# Run it on any host with nvcc (MindSpore is not needed). The library's file name carries a hash of the sources
# and flags; copy it into the cache of a GPU host that lacks nvcc, or point SNNMLP_HOME at a shared cache.
# Then verify it on the GPU host with scripts/check_cuda_kernels.py (see docs/KERNELS.md).
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "error: unexpected argument '$1' (see --help)" >&2
  exit 2
fi
if ! command -v nvcc >/dev/null 2>&1; then
  echo "error: nvcc is not on PATH; install the CUDA toolkit (11.8 or newer) or add its bin/ to PATH" >&2
  exit 1
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
echo "nvcc: $(nvcc --version | tail -n 1)"
library="$(python3 "$repo/src/lif/custom.py" cuda)"
echo "CUDA LIF kernel ready: $library"
