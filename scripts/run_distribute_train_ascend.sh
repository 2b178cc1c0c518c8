#!/usr/bin/env bash
# Data-parallel training on the Ascend NPUs of one or more nodes: msrun by default, the classic HCCL
# rank-table method (one process per device, bound to its share of the CPU cores) with a rank table.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat << EOF
Usage: bash scripts/run_distribute_train_ascend.sh DATASET_PATH [CONFIG_PATH] [DEVICE_NUM] [RANK_TABLE_FILE] [-- TRAIN_ARGS...]
       bash scripts/run_distribute_train_ascend.sh RANK_TABLE_FILE DATASET_PATH [CONFIG_PATH] [-- TRAIN_ARGS...]

Data-parallel training of SNN-MLP on the Ascend NPUs of this node (gradients averaged over all ranks,
dataset sharded by rank, rank 0 alone writes checkpoints).

Arguments (an empty string "" takes the default):
  DATASET_PATH     ImageFolder root holding train/ and val/
  CONFIG_PATH      YAML config (default: config/snnmlp_t_imagenet_ascend.yaml)
  DEVICE_NUM       NPUs used on this node, 1..8 (default: 8; with a rank table: its devices for this node)
  RANK_TABLE_FILE  HCCL rank table (JSON, version 1.0). When given, one process per device of this node is
                   started with RANK_TABLE_FILE, RANK_SIZE, RANK_ID and DEVICE_ID set, each in its own
                   working folder OUTPUT_DIR/rank_<id> and its log OUTPUT_DIR/logs/<date>_<time>/rank_<id>.log.
                   Without it, msrun starts the workers (logs OUTPUT_DIR/logs/<date>_<time>/worker_<id>.log).
                   The model zoo's order, rank table first, is accepted too: a first argument that is an
                   existing .json file is taken as RANK_TABLE_FILE (DEVICE_NUM then comes from the table).
  TRAIN_ARGS       extra train.py flags after '--' (existing relative paths are made absolute), e.g. -- --epochs 300 --batch_size 128

Multi-node: msrun: run the same command on every node with NNODES, NODE_RANK and MASTER_ADDR set;
rank table: run it on every node with the same multi-server rank table (this node is found by IP).

EOF
    snn_env_help OUTPUT_DIR DRY_RUN MASTER_ADDR MASTER_PORT CLUSTER_TIME_OUT NNODES NODE_RANK BIND_CORES CPU_CORES SERVER_ID PYTHON
}

snn_split_args "$@"
set -- "${SNN_POSITIONAL[@]}"
if (($# >= 1)) && [[ "$1" == *.json && -f "$1" ]]; then  # the model zoo's RANK_TABLE_FILE DATASET_PATH [CONFIG_PATH]
    snn_check_count 2 3 "DATASET_PATH is required after RANK_TABLE_FILE" "RANK_TABLE_FILE DATASET_PATH [CONFIG_PATH]" "$@"
    set -- "$2" "${3:-}" "" "$1"
fi
snn_check_count 1 4 "DATASET_PATH is required" "" "$@"

DATASET_PATH="$(snn_abspath "$1")"
snn_check_dataset "$DATASET_PATH" train val
snn_config_path Ascend "${2:-}"
DEVICE_NUM="${3:-}"
[[ -z "$DEVICE_NUM" ]] || snn_check_int DEVICE_NUM "$DEVICE_NUM" 1 8
RANK_TABLE="${4:-}"
snn_check_python
snn_output_dir "$(snn_config_stem "$CONFIG_PATH")_distribute_ascend"
snn_train_command Ascend

if [[ -z "$RANK_TABLE" ]]; then
    snn_announce_outputs "rank 0 writes them"
    snn_launch_msrun "${DEVICE_NUM:-8}" "${BIND_CORES:-1}" -- "${SNN_TRAIN_CMD[@]:1}"
    status=$?
    snn_is_dry_run || snn_announce_outputs "rank 0 writes them"
    exit "$status"
fi

RANK_TABLE="$(snn_abspath "$RANK_TABLE")"
snn_check_file RANK_TABLE_FILE "$RANK_TABLE"
snn_read_rank_table "$RANK_TABLE"
local_devices=${#SNN_RT_DEVICE_IDS[@]}
if [[ -n "$DEVICE_NUM" ]] && ((DEVICE_NUM != local_devices)); then
    snn_usage_error "DEVICE_NUM is $DEVICE_NUM but RANK_TABLE_FILE lists $local_devices device(s) for this node"
fi
((local_devices <= 8)) || snn_usage_error "RANK_TABLE_FILE lists $local_devices devices for this node; at most 8 are supported"
snn_cpu_ranges "$local_devices"
snn_announce_outputs "rank 0 writes them"
snn_info "rank table $RANK_TABLE: $local_devices of $SNN_RT_TOTAL ranks on this node"
for ((i = 0; i < local_devices; i++)); do
    rank=${SNN_RT_RANK_IDS[i]}
    command=("${SNN_TRAIN_CMD[@]}")
    [[ -n "${SNN_CPU_RANGES[i]:-}" ]] && command=(taskset -c "${SNN_CPU_RANGES[i]}" "${command[@]}")
    snn_start_rank "rank $rank" "$OUTPUT_DIR/rank_$rank" "$SNN_LOG_DIR/rank_$rank.log" \
        "RANK_ID=$rank" "DEVICE_ID=${SNN_RT_DEVICE_IDS[i]}" "RANK_SIZE=$SNN_RT_TOTAL" \
        "RANK_TABLE_FILE=$RANK_TABLE" -- "${command[@]}"
done
snn_is_dry_run && exit 0
snn_wait_ranks
status=$?
snn_announce_outputs "rank 0 writes them"
exit "$status"
