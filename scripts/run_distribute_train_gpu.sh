#!/usr/bin/env bash
# Data-parallel training on the GPUs of one or more nodes, started by msrun (default) or OpenMPI mpirun.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat << EOF
Usage: bash scripts/run_distribute_train_gpu.sh DATASET_PATH [CONFIG_PATH] [DEVICE_NUM] [LAUNCHER] [-- TRAIN_ARGS...]

Data-parallel training of SNN-MLP on the GPUs of this node (gradients averaged over all ranks, dataset
sharded by rank, rank 0 alone writes checkpoints).

Arguments (an empty string "" takes the default):
  DATASET_PATH  ImageFolder root holding train/ and val/
  CONFIG_PATH   YAML config (default: config/snnmlp_t_imagenet_gpu.yaml)
  DEVICE_NUM    GPUs used on this node, 1..8 (default: 8); they are devices 0..DEVICE_NUM-1 of
                CUDA_VISIBLE_DEVICES
  LAUNCHER      msrun (default; logs OUTPUT_DIR/logs/<date>_<time>/worker_<rank>.log) or mpirun (OpenMPI
                must be installed; logs OUTPUT_DIR/logs/<date>_<time>/mpirun/<job>/rank.<rank>/stdout)
  TRAIN_ARGS    extra train.py flags after '--' (existing relative paths are made absolute), e.g. -- --epochs 300 --batch_size 128

Multi-node: msrun: run the same command on every node with NNODES, NODE_RANK and MASTER_ADDR set;
mpirun: run it once, on the first node, with NNODES and a HOSTFILE listing the nodes.

EOF
    snn_env_help OUTPUT_DIR DRY_RUN MASTER_ADDR MASTER_PORT CLUSTER_TIME_OUT NNODES NODE_RANK HOSTFILE BIND_CORES PYTHON
}

# launch_mpirun DEVICE_NUM: one OpenMPI job over NNODES nodes of DEVICE_NUM ranks each. RANK_SIZE tells
# train.py that it runs under a launcher; MindSpore reads the rank from OpenMPI's environment.
launch_mpirun() {
    local per_node="$1" nnodes="${NNODES:-1}"
    snn_check_int NNODES "$nnodes" 1 1024
    local world=$((per_node * nnodes))
    local log_dir="$SNN_LOG_DIR"
    local mpirun_cmd=(mpirun -n "$world" --output-filename "$log_dir/mpirun" --merge-stderr-to-stdout
        -x "RANK_SIZE=$world" -x PATH) variable
    # OpenMPI refuses to forward a variable that is not set.
    for variable in LD_LIBRARY_PATH PYTHONPATH CUDA_VISIBLE_DEVICES; do
        [[ -n "${!variable:-}" ]] && mpirun_cmd+=(-x "$variable")
    done
    ((EUID == 0)) && mpirun_cmd+=(--allow-run-as-root)
    if ((nnodes > 1)); then
        [[ -n "${HOSTFILE:-}" ]] || snn_usage_error "a $nnodes-node mpirun job needs HOSTFILE"
        HOSTFILE="$(snn_abspath "$HOSTFILE")"
        snn_check_file HOSTFILE "$HOSTFILE"
        mpirun_cmd+=(--hostfile "$HOSTFILE" --map-by "ppr:$per_node:node")
    fi
    [[ "${BIND_CORES:-0}" == "0" ]] && mpirun_cmd+=(--bind-to none)
    mpirun_cmd+=("${SNN_TRAIN_CMD[@]}")

    if snn_is_dry_run; then
        echo "MPIRUN $(snn_quote "${mpirun_cmd[@]}")  # cwd=$(printf '%q' "$OUTPUT_DIR")"
        local rank
        for ((rank = 0; rank < world; rank++)); do
            snn_rank_line "$OUTPUT_DIR" "$log_dir/mpirun/<job>/rank.$rank/stdout" \
                "OMPI_COMM_WORLD_RANK=$rank" "OMPI_COMM_WORLD_LOCAL_RANK=$((rank % per_node))" \
                "RANK_SIZE=$world" -- "${SNN_TRAIN_CMD[@]}"
        done
        return 0
    fi
    snn_require_command mpirun "install OpenMPI, or use the msrun launcher"
    snn_info "mpirun: $world rank(s) over $nnodes node(s); console copy: $log_dir/mpirun.log"
    (cd "$OUTPUT_DIR" && "${mpirun_cmd[@]}") 2>&1 | tee "$log_dir/mpirun.log"
    local rc=${PIPESTATUS[0]}
    ((rc == 0)) || snn_warn "mpirun failed (status $rc); see the logs in $log_dir"
    return "$rc"
}

snn_positional 1 4 "DATASET_PATH is required" "$@"
set -- "${SNN_POSITIONAL[@]}"

DATASET_PATH="$(snn_abspath "$1")"
snn_check_dataset "$DATASET_PATH" train val
snn_config_path GPU "${2:-}"
DEVICE_NUM="${3:-8}"
snn_check_int DEVICE_NUM "$DEVICE_NUM" 1 8
LAUNCHER="${4:-msrun}"
[[ "$LAUNCHER" == "msrun" || "$LAUNCHER" == "mpirun" ]] || snn_usage_error "LAUNCHER must be msrun or mpirun, got '$LAUNCHER'"
snn_check_python
snn_output_dir "$(snn_config_stem "$CONFIG_PATH")_distribute_gpu"
snn_train_command GPU
snn_announce_outputs "rank 0 writes them"

if [[ "$LAUNCHER" == "mpirun" ]]; then
    launch_mpirun "$DEVICE_NUM"
else
    snn_launch_msrun "$DEVICE_NUM" "${BIND_CORES:-0}" -- "${SNN_TRAIN_CMD[@]:1}"
fi
status=$?
snn_is_dry_run || snn_announce_outputs "rank 0 writes them"
exit "$status"
