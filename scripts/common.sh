# shellcheck shell=bash disable=SC2034  # the variables set here are read by the launchers
# Shared shell functions of the launchers in scripts/. Sourced, never executed.
#
# A launcher defines `usage` (printed on a bad call), then calls the snn_* functions below. Every path
# is made absolute before anything changes directory, and train.py / eval.py always run in place from
# the repository root found here, so the launchers work from any working directory.

SNN_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
SNN_REPO_ROOT="$(dirname "$SNN_SCRIPTS_DIR")"
SNN_PYTHON="${PYTHON:-python}"
# The launchers' own small helpers (launcher_tools.py, CPU affinity) need any Python 3, not PYTHON.
SNN_TOOL_PYTHON="$(command -v python3 || command -v python || echo "$SNN_PYTHON")"
SNN_DEFAULT_MASTER_PORT=8118

# ----------------------------------------------------------------------------------------------------
# Messages and argument checks

snn_info() { echo "[$(basename "$0")] $*"; }
snn_warn() { echo "[$(basename "$0")] warning: $*" >&2; }

# A user error: one readable line, then the usage, exit 2.
snn_usage_error() {
    echo "[$(basename "$0")] error: $*" >&2
    echo >&2
    usage >&2
    exit 2
}

# A failure that is not a usage mistake (missing tool, launch failed): no usage text, exit 1.
snn_fail() {
    echo "[$(basename "$0")] error: $*" >&2
    exit 1
}

snn_is_dry_run() { [[ "${DRY_RUN:-0}" != "0" && -n "${DRY_RUN:-}" ]]; }

# Help for the environment variables a launcher honours: snn_env_help NAME...
snn_env_help() {
    echo "Environment variables:"
    local name
    for name in "$@"; do
        case "$name" in
            OUTPUT_DIR) echo "  OUTPUT_DIR    where checkpoints and logs go (default: <repo>/output/<config>_<launcher>); launching"
                echo "                again with the same OUTPUT_DIR continues training from its newest checkpoint;"
                echo "                each launch logs into its own OUTPUT_DIR/logs/<date>_<time>/" ;;
            DRY_RUN) echo "  DRY_RUN=1     print every rank's command and environment, launch nothing, exit 0" ;;
            PYTHON) echo "  PYTHON        Python interpreter (default: python; msrun always starts 'python' from PATH)" ;;
            MASTER_ADDR) echo "  MASTER_ADDR   address of node 0, the msrun scheduler (default: 127.0.0.1)" ;;
            MASTER_PORT) echo "  MASTER_PORT   scheduler port (default: $SNN_DEFAULT_MASTER_PORT; a free one on one node if that is busy)" ;;
            CLUSTER_TIME_OUT) echo "  CLUSTER_TIME_OUT  seconds msrun waits for all workers to join (default: 600)" ;;
            NNODES) echo "  NNODES        number of nodes of a multi-node msrun job (default: 1)" ;;
            NODE_RANK) echo "  NODE_RANK     index of this node, 0..NNODES-1 (default: 0)" ;;
            BIND_CORES) echo "  BIND_CORES    1: bind each rank to its share of the CPU cores, 0: do not (default: 1 on Ascend, 0 on GPU)" ;;
            CPU_CORES) echo "  CPU_CORES     number of cores (0..N-1) to share among ranks (default: this process's CPUs)" ;;
            SERVER_ID) echo "  SERVER_ID     this node's server_id in a multi-node rank table (default: matched by IP)" ;;
            HOSTFILE) echo "  HOSTFILE      OpenMPI hostfile for a multi-node mpirun job" ;;
            DEVICE_ID) echo "  DEVICE_ID     device to run on when not given as an argument (default: 0)" ;;
        esac
    done
}

# snn_abspath PATH: absolute, normalised path; PATH need not exist.
snn_abspath() {
    realpath -m -- "$1"
}

# snn_check_dataset PATH SUBFOLDER...: an ImageFolder root holding the given split folders.
snn_check_dataset() {
    local path="$1" sub
    shift
    [[ -d "$path" ]] || snn_usage_error "DATASET_PATH '$path' is not a directory"
    for sub in "$@"; do
        [[ -d "$path/$sub" ]] ||
            snn_usage_error "DATASET_PATH '$path' has no $sub/ folder (expected an ImageFolder root with train/ and val/)"
    done
}

# snn_check_file LABEL PATH
snn_check_file() {
    [[ -f "$2" ]] || snn_usage_error "$1 '$2' is not a file"
    [[ -r "$2" ]] || snn_usage_error "$1 '$2' is not readable"
}

# snn_check_int LABEL VALUE MIN MAX
snn_check_int() {
    [[ "$2" =~ ^[0-9]+$ ]] || snn_usage_error "$1 must be an integer in $3..$4, got '$2'"
    ((10#$2 >= $3 && 10#$2 <= $4)) || snn_usage_error "$1 must be an integer in $3..$4, got '$2'"
}

# snn_config_path TARGET [CONFIG_PATH]: sets CONFIG_PATH to the given file (checked, absolute) or to the
# T model's ImageNet config for TARGET.
snn_config_path() {
    if [[ -n "${2:-}" ]]; then
        CONFIG_PATH="$(snn_abspath "$2")"
        snn_check_file CONFIG_PATH "$CONFIG_PATH"
        return
    fi
    CONFIG_PATH="$SNN_REPO_ROOT/config/snnmlp_t_imagenet_${1,,}.yaml"
    [[ -f "$CONFIG_PATH" ]] || snn_usage_error "no default config for $1 ($CONFIG_PATH is missing); pass CONFIG_PATH"
}

# snn_split_args ARG...: positional arguments before `--` go to SNN_POSITIONAL, the rest (extra
# train.py/eval.py flags) to SNN_EXTRA. `-h`/`--help` before `--` prints the usage and exits 0.
snn_split_args() {
    SNN_POSITIONAL=()
    local extra=()
    while (($#)); do
        case "$1" in
            -h | --help)
                usage
                exit 0
                ;;
            --)
                shift
                extra=("$@")
                break
                ;;
            -*) snn_usage_error "unknown option '$1' (flags for the Python script go after '--')" ;;
            *) SNN_POSITIONAL+=("$1") ;;
        esac
        shift
    done
    snn_set_extra_args "${extra[@]}"
}

# snn_positional MIN MAX MISSING ARG...: snn_split_args, then MIN..MAX positional arguments are required
# (MISSING: the message when there are fewer); they are left in SNN_POSITIONAL.
snn_positional() {
    local min="$1" max="$2" missing="$3"
    shift 3
    snn_split_args "$@"
    snn_check_count "$min" "$max" "$missing" "" "${SNN_POSITIONAL[@]}"
}

# snn_check_count MIN MAX MISSING FORM ARG...: MIN..MAX arguments, else a usage error (MISSING when there
# are fewer; "too many arguments[ for FORM]" when there are more).
snn_check_count() {
    local min="$1" max="$2" missing="$3" form="$4"
    shift 4
    (($# >= min)) || snn_usage_error "$missing"
    (($# <= max)) || snn_usage_error "too many arguments${form:+ for $form}: $*"
}

# Flags whose value the launcher sets itself; a second value would silently split logs from checkpoints.
SNN_OWNED_FLAGS=(--output_dir --ckpt_save_dir --dataset_path --data_dir --config_path -c --device_target --platform)

# snn_set_extra_args ARG...: checks the flags forwarded to the Python script into SNN_EXTRA. The ranks
# run in another working directory, so a relative path that exists here is made absolute.
snn_set_extra_args() {
    SNN_EXTRA=()
    local arg flag value
    for arg in "$@"; do
        for flag in "${SNN_OWNED_FLAGS[@]}"; do
            # A short flag also takes its value attached (-cFILE).
            if [[ "$arg" == "$flag" || "$arg" == "$flag="* || ("$flag" != --* && "$arg" == "$flag"?*) ]]; then
                snn_usage_error "'$flag' is set by this launcher; use its argument or environment variable instead"
            fi
        done
        if [[ "$arg" == --*=* ]]; then
            value="${arg#*=}"
            [[ -n "$value" && "$value" != /* && -e "$value" ]] && arg="${arg%%=*}=$(snn_abspath "$value")"
        elif [[ "$arg" != -* && "$arg" != /* && -e "$arg" ]]; then
            arg="$(snn_abspath "$arg")"
        fi
        SNN_EXTRA+=("$arg")
    done
}

# snn_output_dir NAME: sets OUTPUT_DIR (absolute; default <repo>/output/NAME) and SNN_LOG_DIR, this
# launch's own log folder OUTPUT_DIR/logs/<date>_<time>. The folder is stable, not per launch, because
# launching again into it continues training from its newest checkpoint (train.py's auto-resume); the
# per-launch log folders keep every earlier launch's logs.
snn_output_dir() {
    if [[ -n "${OUTPUT_DIR:-}" ]]; then
        OUTPUT_DIR="$(snn_abspath "$OUTPUT_DIR")"
    else
        OUTPUT_DIR="$SNN_REPO_ROOT/output/$1"
    fi
    if [[ -e "$OUTPUT_DIR" && ! -d "$OUTPUT_DIR" ]]; then
        snn_usage_error "OUTPUT_DIR '$OUTPUT_DIR' exists and is not a directory"
    fi
    local stamp suffix=0
    stamp="$(date +%Y%m%d_%H%M%S)"
    SNN_LOG_DIR="$OUTPUT_DIR/logs/$stamp"
    snn_is_dry_run && return
    mkdir -p "$OUTPUT_DIR/logs" || snn_fail "cannot create $OUTPUT_DIR/logs"
    # mkdir is the atomic claim: two launches in the same second get different folders.
    until mkdir "$SNN_LOG_DIR" 2> /dev/null; do
        suffix=$((suffix + 1))
        SNN_LOG_DIR="$OUTPUT_DIR/logs/${stamp}_$suffix"
    done
}

# snn_config_stem PATH: the config file's name without .yaml, for the default OUTPUT_DIR.
snn_config_stem() {
    local name
    name="$(basename "$1")"
    echo "${name%.y*ml}"
}

snn_require_command() {
    command -v "$1" > /dev/null 2>&1 || snn_fail "'$1' not found on PATH ($2)"
}

snn_check_python() {
    snn_is_dry_run || snn_require_command "$SNN_PYTHON" "set PYTHON to your interpreter"
}

# ----------------------------------------------------------------------------------------------------
# Printing and running commands

# snn_quote ARG...: one shell-quoted line that reproduces the arguments.
snn_quote() {
    local out="" arg
    for arg in "$@"; do
        out+="${out:+ }$(printf '%q' "$arg")"
    done
    echo "$out"
}

# snn_split_env ENVS_NAME COMMAND_NAME ARG...: ARG is `ENV... -- COMMAND...`; the NAME=VALUE settings before
# `--` go to the array named ENVS_NAME, the words after it to the array named COMMAND_NAME.
snn_split_env() {
    local -n snn_envs_out="$1" snn_command_out="$2"
    shift 2
    snn_envs_out=()
    while (($#)) && [[ "$1" != "--" ]]; do
        snn_envs_out+=("$1")
        shift
    done
    (($#)) && shift
    snn_command_out=("$@")
}

# snn_rank_line CWD LOG ENV... -- COMMAND...: the dry-run line of one process:
#   ENV=... COMMAND ...  # cwd=CWD log=LOG
snn_rank_line() {
    local cwd="$1" log="$2" envs command
    shift 2
    snn_split_env envs command "$@"
    echo "$(snn_quote "${envs[@]}" "${command[@]}")  # cwd=$(printf '%q' "$cwd") log=$(printf '%q' "$log")"
}

SNN_PIDS=()
SNN_PID_LABELS=()
SNN_PID_LOGS=()

# snn_start_rank LABEL CWD LOG ENV... -- COMMAND...: start one process ("rank 3") in the background, its
# output into LOG, or print its line in dry-run mode.
snn_start_rank() {
    local label="$1" cwd="$2" log="$3"
    shift 3
    if snn_is_dry_run; then
        snn_rank_line "$cwd" "$log" "$@"
        return
    fi
    local envs command
    snn_split_env envs command "$@"
    mkdir -p "$cwd" "$(dirname "$log")"
    (cd "$cwd" && exec env "${envs[@]}" "${command[@]}") > "$log" 2>&1 &
    SNN_PIDS+=("$!")
    SNN_PID_LABELS+=("$label")
    SNN_PID_LOGS+=("$log")
    snn_info "$label started: pid $!, log $log"
}

snn_stop_ranks() {
    local pid
    for pid in "${SNN_PIDS[@]}"; do
        kill -TERM "$pid" 2> /dev/null
    done
}

# Wait for every started rank. The first failure stops the others (they would otherwise hang in a
# collective waiting for the dead rank); Ctrl-C stops them all. Rank 0's log is shown as it grows.
snn_wait_ranks() {
    trap 'snn_warn "interrupted, stopping all ranks"; snn_stop_ranks; exit 130' INT TERM
    local tail_pid=""
    if ((${#SNN_PIDS[@]})); then
        tail -n +1 -F --pid="${SNN_PIDS[0]}" "${SNN_PID_LOGS[0]}" 2> /dev/null &
        tail_pid=$!
    fi
    local -A done_rc=()
    local failed=0 i pid rc
    while ((${#done_rc[@]} < ${#SNN_PIDS[@]})); do
        for i in "${!SNN_PIDS[@]}"; do
            pid="${SNN_PIDS[$i]}"
            [[ -n "${done_rc[$i]:-}" ]] && continue
            kill -0 "$pid" 2> /dev/null && continue
            wait "$pid"
            rc=$?
            done_rc[$i]=$rc
            if ((rc != 0 && !failed)); then
                failed=1
                snn_warn "${SNN_PID_LABELS[$i]} exited with status $rc (log ${SNN_PID_LOGS[$i]})"
                ((${#SNN_PIDS[@]} > 1)) && snn_warn "stopping the other ranks"
                snn_stop_ranks
            fi
        done
        ((${#done_rc[@]} < ${#SNN_PIDS[@]})) && sleep 2
    done
    [[ -n "$tail_pid" ]] && wait "$tail_pid" 2> /dev/null
    trap - INT TERM
    for i in "${!SNN_PIDS[@]}"; do
        snn_info "${SNN_PID_LABELS[$i]}: exit status ${done_rc[$i]}, log ${SNN_PID_LOGS[$i]}"
    done
    return "$failed"
}

# ----------------------------------------------------------------------------------------------------
# CPU binding

# The CPUs this process may use (CPU_CORES=N overrides with 0..N-1), one per line.
snn_cpu_list() {
    if [[ -n "${CPU_CORES:-}" ]]; then
        seq 0 $((CPU_CORES - 1))
    else
        "$SNN_TOOL_PYTHON" -c 'import os; print(*sorted(os.sched_getaffinity(0)), sep="\n")' 2> /dev/null ||
            seq 0 $(($(nproc) - 1))
    fi
}

# snn_cpu_ranges NUM_RANKS: sets SNN_CPU_RANGES[i] to rank i's equal, disjoint share of the CPUs as a
# taskset list ("a-b" when contiguous). Leaves it empty (no binding) when BIND_CORES=0, when taskset is
# missing, or when there are fewer CPUs than ranks.
snn_cpu_ranges() {
    local ranks="$1"
    SNN_CPU_RANGES=()
    [[ "${BIND_CORES:-1}" == "0" ]] && return
    if ! command -v taskset > /dev/null 2>&1; then
        snn_warn "taskset not found; ranks are not bound to CPU cores"
        return
    fi
    if [[ -n "${CPU_CORES:-}" && ! "$CPU_CORES" =~ ^[1-9][0-9]*$ ]]; then
        snn_usage_error "CPU_CORES must be a positive integer, got '$CPU_CORES'"
    fi
    local cpus
    mapfile -t cpus < <(snn_cpu_list)
    local share=$((${#cpus[@]} / ranks))
    if ((share < 1)); then
        snn_warn "${#cpus[@]} CPU(s) for $ranks ranks; ranks are not bound to CPU cores"
        return
    fi
    local rank first last
    for ((rank = 0; rank < ranks; rank++)); do
        first=$((rank * share))
        last=$((first + share - 1))
        if ((cpus[last] - cpus[first] == share - 1)); then
            SNN_CPU_RANGES+=("${cpus[first]}-${cpus[last]}")
        else
            SNN_CPU_RANGES+=("$(IFS=,; echo "${cpus[*]:first:share}")")
        fi
    done
}

# ----------------------------------------------------------------------------------------------------
# msrun

# snn_master_port NNODES: prints the scheduler port. On one node a busy default port is replaced by a
# free one; on several nodes every node must agree, so MASTER_PORT (or the default) is used as is.
snn_master_port() {
    if [[ -n "${MASTER_PORT:-}" ]]; then
        echo "$MASTER_PORT"
    elif (($1 > 1)) || snn_is_dry_run; then
        echo "$SNN_DEFAULT_MASTER_PORT"
    else
        "$SNN_TOOL_PYTHON" "$SNN_SCRIPTS_DIR/launcher_tools.py" free-port "$SNN_DEFAULT_MASTER_PORT" 2> /dev/null ||
            echo "$SNN_DEFAULT_MASTER_PORT"
    fi
}

# snn_launch_msrun LOCAL_WORKERS BIND_CORES ENV... -- SCRIPT ARG...: run SCRIPT on LOCAL_WORKERS
# processes of this node with msrun (multi-node via NNODES/NODE_RANK/MASTER_ADDR/MASTER_PORT), logs in
# $SNN_LOG_DIR, working directory $OUTPUT_DIR. ENV is exported to every worker. Dry-run prints the
# msrun command and, per rank, the environment msrun gives it.
snn_launch_msrun() {
    local local_workers="$1" bind_cores="$2" envs script
    shift 2
    snn_split_env envs script "$@"
    local nnodes="${NNODES:-1}" node_rank="${NODE_RANK:-0}" master_addr="${MASTER_ADDR:-127.0.0.1}"
    snn_check_int NNODES "$nnodes" 1 1024
    snn_check_int NODE_RANK "$node_rank" 0 $((nnodes - 1))
    if ((nnodes > 1)) && [[ "$master_addr" == "127.0.0.1" || "$master_addr" == "localhost" ]]; then
        snn_usage_error "a $nnodes-node job needs MASTER_ADDR set to node 0's address, reachable from every node"
    fi
    [[ -z "${MASTER_PORT:-}" ]] || snn_check_int MASTER_PORT "$MASTER_PORT" 1024 65535
    local master_port
    master_port="$(snn_master_port "$nnodes")"
    local worker_num=$((local_workers * nnodes))
    local log_dir="$SNN_LOG_DIR"
    local msrun_cmd=(msrun "--worker_num=$worker_num" "--local_worker_num=$local_workers"
        "--master_addr=$master_addr" "--master_port=$master_port" "--node_rank=$node_rank"
        "--log_dir=$log_dir" "--join=True" "--cluster_time_out=${CLUSTER_TIME_OUT:-600}"
        "--tail_worker_log=$((node_rank * local_workers))")
    [[ "$bind_cores" == "1" ]] && msrun_cmd+=("--bind_core=True")
    msrun_cmd+=("${script[@]}")

    if snn_is_dry_run; then
        echo "MSRUN $(snn_quote "${envs[@]}" "${msrun_cmd[@]}")  # cwd=$(printf '%q' "$OUTPUT_DIR")"
        local i rank
        for ((i = 0; i < local_workers; i++)); do
            rank=$((node_rank * local_workers + i))
            snn_rank_line "$OUTPUT_DIR" "$log_dir/worker_$rank.log" \
                "RANK_ID=$rank" "DEVICE_ID=$i" "RANK_SIZE=$worker_num" "MS_WORKER_NUM=$worker_num" \
                "MS_NODE_ID=$rank" "MS_ROLE=MS_WORKER" "MS_SCHED_HOST=$master_addr" \
                "MS_SCHED_PORT=$master_port" "${envs[@]}" -- python "${script[@]}"
        done
        return 0
    fi
    snn_require_command msrun "it comes with MindSpore >= 2.3"
    snn_info "msrun: $worker_num worker(s) in all, $local_workers on this node (node $node_rank of $nnodes)"
    snn_info "logs: $log_dir/worker_<rank>.log and scheduler.log; console copy: $log_dir/msrun.log"
    (cd "$OUTPUT_DIR" && env "${envs[@]}" "${msrun_cmd[@]}") 2>&1 | tee "$log_dir/msrun.log"
    local rc=${PIPESTATUS[0]}
    ((rc == 0)) || snn_warn "msrun failed (status $rc); see the logs in $log_dir"
    return "$rc"
}

# ----------------------------------------------------------------------------------------------------
# Rank table (the classic Ascend HCCL method)

# snn_read_rank_table PATH: checks a version 1.0 HCCL rank table and sets SNN_RT_TOTAL (devices on all
# servers) and SNN_RT_DEVICE_IDS / SNN_RT_RANK_IDS (this server's devices, in table order). With several
# servers, this one is SERVER_ID or the server whose server_id is one of this host's addresses.
snn_read_rank_table() {
    local parsed
    # shellcheck disable=SC2046  # one argument per host address
    parsed="$("$SNN_TOOL_PYTHON" "$SNN_SCRIPTS_DIR/launcher_tools.py" rank-table "$1" "${SERVER_ID:-}" $(hostname -I 2> /dev/null))" ||
        snn_usage_error "${parsed:-could not read RANK_TABLE_FILE \"$1\" with $SNN_TOOL_PYTHON}"
    SNN_RT_DEVICE_IDS=()
    SNN_RT_RANK_IDS=()
    local device rank
    {
        read -r SNN_RT_TOTAL
        while read -r device rank; do
            SNN_RT_DEVICE_IDS+=("$device")
            SNN_RT_RANK_IDS+=("$rank")
        done
    } <<< "$parsed"
}

# ----------------------------------------------------------------------------------------------------
# One process (standalone training, evaluation)

# snn_run_single LABEL LOG ENV... -- COMMAND...: run one process in $OUTPUT_DIR with its output on the
# console and in LOG; returns its exit status. Launcher variables left in the caller's shell by an
# earlier distributed job would make train.py call init(), so they are dropped.
snn_run_single() {
    local label="$1" log="$2"
    shift 2
    unset RANK_SIZE RANK_ID RANK_TABLE_FILE MS_WORKER_NUM MS_ROLE MS_SCHED_HOST MS_SCHED_PORT MS_NODE_ID
    snn_start_rank "$label" "$OUTPUT_DIR" "$log" "$@"
    snn_is_dry_run && return 0
    snn_wait_ranks
}

# snn_train_command TARGET: sets SNN_TRAIN_CMD, the train.py command line for DATASET_PATH, CONFIG_PATH,
# OUTPUT_DIR and the extra flags after `--`.
snn_train_command() {
    SNN_TRAIN_CMD=("$SNN_PYTHON" "$SNN_REPO_ROOT/train.py" --config_path "$CONFIG_PATH"
        --dataset_path "$DATASET_PATH" --output_dir "$OUTPUT_DIR" --device_target "$1" "${SNN_EXTRA[@]}")
}

# snn_announce_outputs [NOTE]: where a training run's results go, before and after it.
# shellcheck disable=SC2120  # the NOTE is optional
snn_announce_outputs() {
    snn_info "checkpoints: $OUTPUT_DIR${1:+ ($1)}"
    snn_info "logs of this launch: $SNN_LOG_DIR"
}

# ----------------------------------------------------------------------------------------------------
# The single-device launchers: run_standalone_train_<device>.sh and run_eval_<device>.sh differ only in
# the device, so their whole body lives here.

snn_device_id_arg() {
    DEVICE_ID_TO_USE="${1:-${DEVICE_ID:-0}}"
    snn_check_int DEVICE_ID "$DEVICE_ID_TO_USE" 0 15
}

# snn_standalone_train_main TARGET ARG...
snn_standalone_train_main() {
    local target="$1" script_name
    shift
    script_name="run_standalone_train_${target,,}.sh"
    # shellcheck disable=SC2317  # called through snn_usage_error and snn_split_args
    usage() {
        cat << EOF
Usage: bash scripts/$script_name DATASET_PATH [CONFIG_PATH] [DEVICE_ID] [-- TRAIN_ARGS...]

Trains SNN-MLP on one $target device; output on the console and in OUTPUT_DIR/logs/<date>_<time>/train.log.

Arguments (an empty string "" takes the default):
  DATASET_PATH  ImageFolder root holding train/ and val/
  CONFIG_PATH   YAML config (default: config/snnmlp_t_imagenet_${target,,}.yaml)
  DEVICE_ID     device to train on, 0..15 (default: \$DEVICE_ID, else 0)
  TRAIN_ARGS    extra train.py flags after '--' (existing relative paths are made absolute), e.g. -- --epochs 300 --batch_size 128

EOF
        snn_env_help OUTPUT_DIR DRY_RUN PYTHON
    }
    snn_positional 1 3 "DATASET_PATH is required" "$@"
    set -- "${SNN_POSITIONAL[@]}"
    DATASET_PATH="$(snn_abspath "$1")"
    snn_check_dataset "$DATASET_PATH" train val
    snn_config_path "$target" "${2:-}"
    snn_device_id_arg "${3:-}"
    snn_check_python
    snn_output_dir "$(snn_config_stem "$CONFIG_PATH")_standalone_${target,,}"
    snn_train_command "$target"
    snn_announce_outputs ""
    snn_run_single train.py "$SNN_LOG_DIR/train.log" "DEVICE_ID=$DEVICE_ID_TO_USE" -- "${SNN_TRAIN_CMD[@]}"
    local status=$?
    snn_is_dry_run || snn_announce_outputs ""
    return "$status"
}

# snn_eval_main TARGET ARG...
snn_eval_main() {
    local target="$1" script_name
    shift
    script_name="run_eval_${target,,}.sh"
    SNN_OWNED_FLAGS+=(--ckpt_path --checkpoint_path)
    # shellcheck disable=SC2317  # called through snn_usage_error and snn_split_args
    usage() {
        cat << EOF
Usage: bash scripts/$script_name DATASET_PATH CKPT_PATH [CONFIG_PATH] [DEVICE_ID] [-- EVAL_ARGS...]

Evaluates an SNN-MLP checkpoint on the val/ split on one $target device; output on the console and in
OUTPUT_DIR/logs/<date>_<time>/eval.log.

Arguments (an empty string "" takes the default):
  DATASET_PATH  ImageFolder root holding val/
  CKPT_PATH     checkpoint (.ckpt) to evaluate
  CONFIG_PATH   YAML config (default: eval.py uses the config.yaml saved beside the checkpoint)
  DEVICE_ID     device to run on, 0..15 (default: \$DEVICE_ID, else 0)
  EVAL_ARGS     extra eval.py flags after '--' (existing relative paths are made absolute), e.g. -- --batch_size 64

EOF
        snn_env_help OUTPUT_DIR DRY_RUN PYTHON
    }
    snn_positional 2 4 "DATASET_PATH and CKPT_PATH are required" "$@"
    set -- "${SNN_POSITIONAL[@]}"
    DATASET_PATH="$(snn_abspath "$1")"
    snn_check_dataset "$DATASET_PATH" val
    local ckpt
    ckpt="$(snn_abspath "$2")"
    snn_check_file CKPT_PATH "$ckpt"
    local config_args=()
    if [[ -n "${3:-}" ]]; then
        snn_config_path "$target" "$3"
        config_args=(--config_path "$CONFIG_PATH")
    fi
    snn_device_id_arg "${4:-}"
    snn_check_python
    snn_output_dir "eval_${target,,}"
    snn_info "log: $SNN_LOG_DIR/eval.log"
    snn_run_single eval.py "$SNN_LOG_DIR/eval.log" "DEVICE_ID=$DEVICE_ID_TO_USE" -- \
        "$SNN_PYTHON" "$SNN_REPO_ROOT/eval.py" --dataset_path "$DATASET_PATH" --ckpt_path "$ckpt" \
        "${config_args[@]}" --device_target "$target" "${SNN_EXTRA[@]}"
}
