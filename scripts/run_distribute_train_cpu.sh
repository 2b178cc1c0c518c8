#!/usr/bin/env bash
# Data-parallel training on CPU: several worker processes on this machine, started by msrun, AllReduce
# over loopback. The same train.py data parallelism as on Ascend/GPU, runnable anywhere (and in CI).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat << EOF
Usage: bash scripts/run_distribute_train_cpu.sh [WORKERS] [TRAIN_ARGS...]

Data-parallel training of SNN-MLP on CPU with WORKERS processes (gradients averaged over all workers,
dataset sharded by rank, rank 0 alone writes checkpoints). Logs: OUTPUT_DIR/logs/<date>_<time>/worker_<rank>.log.

Arguments:
  WORKERS     number of worker processes, 1..64 (default: 2)
  TRAIN_ARGS  train.py flags (existing relative paths are made absolute), e.g.
              --dataset_path DIR --config_path FILE --epochs 1.
              Without --dataset_path, train.py trains on the embedded default data (sklearn digits).

Examples:
  bash scripts/run_distribute_train_cpu.sh
  bash scripts/run_distribute_train_cpu.sh 4 --epochs 2 --batch_size 16

EOF
    snn_env_help OUTPUT_DIR DRY_RUN MASTER_PORT CLUSTER_TIME_OUT
}

WORKERS=2
case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
    [0-9]*)
        WORKERS="$1"
        shift
        ;;
esac
snn_check_int WORKERS "$WORKERS" 1 64
[[ "${1:-}" == "--" ]] && shift

# Here the caller names the data and the config; only the result folder and device are the launcher's.
SNN_OWNED_FLAGS=(--output_dir --ckpt_save_dir --device_target --platform)
snn_set_extra_args "$@"
config_stem=snnmlp_digits # train.py's default config
for ((i = 0; i < ${#SNN_EXTRA[@]}; i++)); do
    flag="${SNN_EXTRA[i]}" value="${SNN_EXTRA[i + 1]:-}"
    [[ "$flag" == --*=* ]] && value="${flag#*=}" flag="${flag%%=*}"
    case "$flag" in
        --dataset_path | --data_dir) snn_check_dataset "$value" train val ;;
        --config_path)
            snn_check_file CONFIG_PATH "$value"
            config_stem="$(snn_config_stem "$value")"
            ;;
    esac
done
(($(nproc) >= WORKERS)) || snn_warn "$WORKERS workers on $(nproc) CPU(s): they will share cores"
snn_check_python
snn_output_dir "${config_stem}_distribute_cpu"
snn_announce_outputs "rank 0 writes them"
snn_launch_msrun "$WORKERS" 0 -- "$SNN_REPO_ROOT/train.py" --output_dir "$OUTPUT_DIR" --device_target CPU "${SNN_EXTRA[@]}"
status=$?
snn_is_dry_run || snn_announce_outputs "rank 0 writes them"
exit "$status"
