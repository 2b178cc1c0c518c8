#!/usr/bin/env bash
# Prebuild the CUDA LIF kernel (src/lif/kernels/lif_cuda.cu) with the nvcc on PATH into the kernel cache that
# training looks in: $SNNMLP_HOME/kernels (default ~/.cache/snn_mlp/kernels).
#
# Usage: scripts/build_cuda_kernels.sh [--help]
#
# Native code for sm_70/75/80/86/89/90 where `nvcc --list-gpu-arch` lists them, plus PTX of the newest of those
# for later GPUs. The file is lif_cuda-<hash of the sources>-nvcc<version>.so; copy it into the cache of a GPU
# host without nvcc (it takes the newest toolkit its driver supports), or share the cache through SNNMLP_HOME.
# The driver must support the toolkit's CUDA version. Verify on the GPU host: scripts/check_cuda_kernels.py --all.
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "error: unexpected argument '$1' (see --help)" >&2
  exit 2
fi
if ! command -v nvcc >/dev/null 2>&1; then
  echo "error: nvcc is not on PATH; install the CUDA toolkit or add its bin/ to PATH" >&2
  exit 1
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python3 -c 'import shutil, sys; sys.path.insert(0, sys.argv[1]); from build import nvcc_toolkit
print(nvcc_toolkit(shutil.which("nvcc")).summary)' "$repo/src/kernels"
library="$(python3 "$repo/src/kernels/build.py" lif_cuda)"
echo "CUDA LIF kernel ready: $library"
