#!/usr/bin/env bash
# Build and install the AscendC LIF operators (src/lif/kernels/ascend) with MindSpore's custom_compiler.
# Runs on an Ascend host with CANN and MindSpore installed; afterwards LIFScan(backend="auto"/"custom") uses
# them once ASCEND_CUSTOM_OPP_PATH holds the printed directory, or without it when installed into
# $ASCEND_OPP_PATH (the package registers itself in vendors/config.ini). See docs/KERNELS.md.
#
# Usage: scripts/build_ascend_kernels.sh [options]
#   --install-path DIR   where the operator package is installed
#                        (default: $SNNMLP_HOME/ascend_opp, else ~/.cache/snn_mlp/ascend_opp)
#   --soc-version SOCS   target SoCs, ';'-separated, e.g. ascend910b (default: the compiler's list)
#   --cann PATH          CANN toolkit (default: $ASCEND_HOME_PATH, else /usr/local/Ascend/ascend-toolkit/latest)
#   --vendor NAME        vendor name of the package (default: snn_mlp)
#   --log-dir DIR        where the compiler's build/install logs are kept when the build fails
#                        (default: $SNNMLP_HOME/ascend_build_logs, else ~/.cache/snn_mlp/ascend_build_logs)
#   -h, --help           show this help
# The last line of a successful build is "Installed in DIR" (scripts/check_ascend_kernels.py reads it).
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

install_path="${SNNMLP_HOME:-$HOME/.cache/snn_mlp}/ascend_opp"
log_dir="${SNNMLP_HOME:-$HOME/.cache/snn_mlp}/ascend_build_logs"
soc_version=""
cann="${ASCEND_HOME_PATH:-/usr/local/Ascend/ascend-toolkit/latest}"
vendor="snn_mlp"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --install-path) install_path="${2:?--install-path needs a directory}"; shift 2 ;;
    --soc-version) soc_version="${2:?--soc-version needs a value}"; shift 2 ;;
    --cann) cann="${2:?--cann needs a path}"; shift 2 ;;
    --vendor) vendor="${2:?--vendor needs a name}"; shift 2 ;;
    --log-dir) log_dir="${2:?--log-dir needs a directory}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ ! -d "$cann" ]]; then
  echo "error: no CANN toolkit at '$cann'; install CANN or pass --cann PATH" >&2
  exit 1
fi
if ! command -v cmake >/dev/null 2>&1; then
  echo "error: cmake (3.16 or newer) is not on PATH" >&2
  exit 1
fi
compiler="$(python3 -c 'import os, mindspore; print(os.path.join(os.path.dirname(mindspore.__file__), "lib", "plugin", "ascend", "custom_compiler"))')" || {
  echo "error: MindSpore is not importable by python3" >&2
  exit 1
}
if [[ ! -f "$compiler/setup.py" ]]; then
  echo "error: this MindSpore has no custom_compiler ($compiler)" >&2
  exit 1
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$install_path"
install_path="$(cd "$install_path" && pwd)"
# custom_compiler writes its project and its logs (build.log, install.log) next to itself: work on a private
# copy, and keep the logs when the build fails (the copy is removed either way).
work="$(mktemp -d)"
keep_logs() {
  local status=$?
  if [[ $status -ne 0 ]] && compgen -G "$work/custom_compiler/*.log" >/dev/null; then
    local kept
    kept="$log_dir/$(date -u +%Y%m%dT%H%M%SZ)"
    mkdir -p "$kept" && cp "$work"/custom_compiler/*.log "$kept"/ &&
      echo "error: the compiler's logs are kept in $kept" >&2
  fi
  rm -rf "$work"
  exit $status
}
trap keep_logs EXIT
cp -r "$compiler" "$work/custom_compiler"

args=(--op_host_path="$repo/src/lif/kernels/ascend/op_host"
      --op_kernel_path="$repo/src/lif/kernels/ascend/op_kernel"
      --vendor_name="$vendor" --ascend_cann_package_path="$cann" --install_path="$install_path" --install)
[[ -n "$soc_version" ]] && args+=(--soc_version="$soc_version")

echo "building the AscendC LIF operators (LifScanCustom, LifScanGradCustom) with $cann ..."
(cd "$work/custom_compiler" && python3 setup.py "${args[@]}")

opp="$install_path/vendors/$vendor"
if [[ ! -f "$opp/op_api/include/aclnn_lif_scan_custom.h" ]]; then
  echo "error: the build finished but $opp holds no aclnn_lif_scan_custom.h; see the log above" >&2
  exit 1
fi
echo "To use the operators (unless installed into \$ASCEND_OPP_PATH, whose vendors/config.ini now lists them):"
echo "  export ASCEND_CUSTOM_OPP_PATH=$opp:\${ASCEND_CUSTOM_OPP_PATH:-}"
echo "Installed in $opp"
