"""The shell launchers in scripts/: argument checks, dry-run plans, and real launches of a stand-in Python.

Dry-run output is parsed, never eyeballed: every rank line is `ENV=... COMMAND ...  # cwd=... log=...`.
The real launches (rank-table mode, standalone, eval) start a stand-in interpreter through PYTHON that
records its argv, working directory, environment and CPU affinity, so the launch machinery itself is
exercised without MindSpore or an accelerator.
"""
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
DISTRIBUTED = ["run_distribute_train_ascend.sh", "run_distribute_train_gpu.sh"]
SINGLE = ["run_standalone_train_ascend.sh", "run_standalone_train_gpu.sh", "run_eval_ascend.sh", "run_eval_gpu.sh"]
NEED_ARGUMENTS = DISTRIBUTED + SINGLE
ALL_SCRIPTS = NEED_ARGUMENTS + ["run_distribute_train_cpu.sh"]
LAUNCHER_VARIABLES = ["RANK_SIZE", "RANK_ID", "RANK_TABLE_FILE", "MS_WORKER_NUM", "MS_ROLE", "DEVICE_ID",
                      "DRY_RUN", "OUTPUT_DIR", "CPU_CORES", "BIND_CORES", "NNODES", "NODE_RANK", "MASTER_ADDR",
                      "MASTER_PORT", "SERVER_ID", "PYTHON"]


@dataclass
class Launch:
    env: dict
    argv: list
    cwd: str
    log: str


def run(script, *args, env=None, cwd=None, timeout=60, script_path=None):
    """Runs a launcher with a clean launcher environment plus `env`."""
    full_env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    full_env.update(env or {})
    return subprocess.run(["bash", str(script_path or SCRIPTS / script), *map(str, args)], env=full_env,
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def parse_plan(stdout):
    """-> (launcher line or None, [Launch per rank]) from dry-run output."""
    launcher, ranks = None, []
    for line in stdout.splitlines():
        if line.startswith(("MSRUN ", "MPIRUN ")):
            launcher = line
        elif re.match(r"^[A-Z_][A-Z0-9_]*=", line):
            command, _, meta = line.partition("  # ")
            tokens = shlex.split(command)
            env = {}
            while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
                key, value = tokens.pop(0).split("=", 1)
                env[key] = value
            fields = dict(item.split("=", 1) for item in shlex.split(meta))
            ranks.append(Launch(env, tokens, fields["cwd"], fields["log"]))
    return launcher, ranks


def launch_log_dir(ranks, out):
    """The one per-launch log folder OUTPUT_DIR/logs/<date>_<time> that all ranks log into."""
    folders = {str(Path(r.log).parent) for r in ranks}
    assert len(folders) == 1, folders
    folder = folders.pop()
    assert re.fullmatch(re.escape(f"{out}/logs/") + r"\d{8}_\d{6}", folder), folder
    return folder


def single_log(out, name):
    """The log `name` of the only launch into `out`."""
    [log] = Path(out, "logs").glob(f"*/{name}")
    return log


def flag_value(argv, flag):
    return argv[argv.index(flag) + 1]


def taskset_cpus(argv):
    """CPU ids of a `taskset -c LIST ...` prefix; empty set when there is none."""
    if argv[0] != "taskset":
        return set()
    cpus = set()
    for part in argv[2].split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def rank_table(path, servers):
    """A version 1.0 HCCL rank table; servers: [(server_id, [(device_id, rank_id), ...]), ...]."""
    table = {"version": "1.0", "server_count": str(len(servers)), "status": "completed", "server_list": [
        {"server_id": server_id, "host_nic_ip": "reserve",
         "device": [{"device_id": str(d), "device_ip": f"192.98.{i}.{d}", "rank_id": str(r)} for d, r in devices]}
        for i, (server_id, devices) in enumerate(servers)]}
    path.write_text(json.dumps(table))
    return path


@pytest.fixture
def work(tmp_path):
    """A dataset root, a config, a checkpoint, 8-device rank tables and an output folder."""
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "val").mkdir()
    (tmp_path / "cfg.yaml").write_text("epochs: 1\n")
    (tmp_path / "model.ckpt").write_bytes(b"\0")
    # Devices listed out of order and not equal to their ranks: the launcher must read the table.
    rank_table(tmp_path / "rank_table_8p.json", [("10.0.0.1", [(7 - r, r) for r in (3, 1, 0, 2, 4, 6, 5, 7)])])
    rank_table(tmp_path / "rank_table_2p.json", [("10.0.0.1", [(0, 0), (1, 1)])])

    class Work:
        root = tmp_path
        data = tmp_path / "data"
        config = tmp_path / "cfg.yaml"
        ckpt = tmp_path / "model.ckpt"
        table8 = tmp_path / "rank_table_8p.json"
        table2 = tmp_path / "rank_table_2p.json"
        out = tmp_path / "out"
    return Work


# ------------------------------------------------------------------------------------------------------
# Syntax, help, usage

@pytest.mark.parametrize("script", ALL_SCRIPTS + ["common.sh"])
def test_script_parses(script):
    result = subprocess.run(["bash", "-n", str(SCRIPTS / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_clean():
    result = subprocess.run(["shellcheck", "-x", *ALL_SCRIPTS, "common.sh"], cwd=SCRIPTS, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_help_describes_every_argument(script):
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    usage_line = next(line for line in result.stdout.splitlines() if line.startswith("Usage:"))
    assert f"bash scripts/{script}" in usage_line
    arguments = re.findall(r"\b([A-Z][A-Z_]+)\b", usage_line.split(script, 1)[1])
    assert arguments
    for argument in arguments:
        assert re.search(rf"^  {argument}\s+\S", result.stdout, re.M), f"{argument} is not described"
    for variable in ("OUTPUT_DIR", "DRY_RUN"):
        assert re.search(rf"^  {variable}\b", result.stdout, re.M), f"{variable} is not described"


@pytest.mark.parametrize("script", NEED_ARGUMENTS)
def test_usage_without_arguments(script, work):
    result = run(script, env={"OUTPUT_DIR": work.out})
    assert result.returncode == 2
    assert re.search(r"error: .* (is|are) required", result.stderr)
    assert "Usage:" in result.stderr
    assert not work.out.exists()


def test_every_environment_variable_read_is_documented():
    # A variable a launcher reads but its --help never mentions is an undocumented flag.
    read = set()
    for script in ALL_SCRIPTS + ["common.sh"]:
        read |= set(re.findall(r"\$\{([A-Z][A-Z_]+):-", (SCRIPTS / script).read_text()))
    documented = set(re.findall(r"^\s+([A-Z][A-Z_]+)\b", "\n".join(run(s, "--help").stdout for s in ALL_SCRIPTS),
                                re.M))
    assert read - documented == set()


# ------------------------------------------------------------------------------------------------------
# Bad arguments: exit 2, one readable error line, the usage, nothing launched or created

def bad_cases():
    return [
        ("run_distribute_train_ascend.sh", lambda w: [w.root / "nope"], {}, "is not a directory"),
        ("run_distribute_train_ascend.sh", lambda w: [w.root], {}, "has no train/ folder"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.root / "nope.yaml"], {}, "CONFIG_PATH"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, 0], {}, "DEVICE_NUM must be an integer in 1..8"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, 9], {}, "DEVICE_NUM must be an integer in 1..8"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, "eight"], {}, "DEVICE_NUM must be an integer"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, 8, w.root / "nope.json"], {},
         "RANK_TABLE_FILE"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, 8, w.config], {}, "not a readable JSON"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, 4, w.table8], {},
         "DEVICE_NUM is 4 but RANK_TABLE_FILE lists 8"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, 8, w.table8, "extra"], {},
         "too many arguments"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, "--epochs", 3], {}, "unknown option '--epochs'"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, "--", "--output_dir", w.root], {},
         "'--output_dir' is set by this launcher"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config], {"MASTER_PORT": "80"}, "MASTER_PORT"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config], {"NNODES": "2"}, "needs MASTER_ADDR"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config],
         {"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "10.0.0.1"}, "NODE_RANK must be an integer in 0..1"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, 8, w.table8], {"CPU_CORES": "many"},
         "CPU_CORES must be a positive integer"),
        ("run_distribute_train_gpu.sh", lambda w: [w.data, w.config, 8, "horovod"], {}, "LAUNCHER must be msrun or mpirun"),
        ("run_distribute_train_gpu.sh", lambda w: [w.data, w.config, 8, "mpirun"], {"NNODES": "2"}, "needs HOSTFILE"),
        ("run_standalone_train_gpu.sh", lambda w: [w.data, w.config, 16], {}, "DEVICE_ID must be an integer in 0..15"),
        ("run_standalone_train_ascend.sh", lambda w: [w.data, w.config], {"DEVICE_ID": "x"}, "DEVICE_ID must be"),
        ("run_eval_ascend.sh", lambda w: [w.data], {}, "DATASET_PATH and CKPT_PATH are required"),
        ("run_eval_gpu.sh", lambda w: [w.data, w.root / "missing.ckpt"], {}, "CKPT_PATH"),
        ("run_eval_gpu.sh", lambda w: [w.data, w.ckpt, "--", "--ckpt_path=x"], {}, "'--ckpt_path' is set"),
        ("run_standalone_train_gpu.sh", lambda w: [w.data, "", "", "--", "--data_dir", w.data], {},
         "'--data_dir' is set"),
        ("run_distribute_train_cpu.sh", lambda w: [0], {}, "WORKERS must be an integer in 1..64"),
        ("run_distribute_train_cpu.sh", lambda w: [2, "--dataset_path", w.root / "nope"], {}, "is not a directory"),
        ("run_distribute_train_cpu.sh", lambda w: [2, "--device_target", "GPU"], {}, "'--device_target' is set"),
        # The model-zoo and mindcv spellings of owned flags are owned too.
        ("run_distribute_train_cpu.sh", lambda w: [2, "--platform", "GPU"], {}, "'--platform' is set"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, "--", "-c", w.config], {}, "'-c' is set"),
        ("run_distribute_train_ascend.sh", lambda w: [w.data, w.config, "--", f"-c{w.config}"], {}, "'-c' is set"),
        ("run_eval_gpu.sh", lambda w: [w.data, w.ckpt, "--", "--checkpoint_path", w.ckpt], {},
         "'--checkpoint_path' is set"),
        # The model zoo's order: RANK_TABLE_FILE DATASET_PATH [CONFIG_PATH].
        ("run_distribute_train_ascend.sh", lambda w: [w.table8], {}, "DATASET_PATH is required after RANK_TABLE_FILE"),
        ("run_distribute_train_ascend.sh", lambda w: [w.table8, w.data, w.config, 8], {},
         "too many arguments for RANK_TABLE_FILE DATASET_PATH [CONFIG_PATH]"),
        ("run_distribute_train_ascend.sh", lambda w: [w.table8, w.root / "nope"], {}, "is not a directory"),
    ]


@pytest.mark.parametrize("script,make_args,env,message", bad_cases())
def test_bad_arguments_are_rejected(script, make_args, env, message, work):
    # DRY_RUN is set so that a missing check shows up as a passing dry run (exit 0), never as a launch.
    result = run(script, *make_args(work), env={"DRY_RUN": "1", "OUTPUT_DIR": work.out, **env})
    assert result.returncode == 2, result.stdout + result.stderr
    first_line = result.stderr.splitlines()[0]
    assert "error:" in first_line and message in first_line
    assert "Usage:" in result.stderr
    assert not work.out.exists()


def test_eval_does_not_need_train_folder(work):
    shutil.rmtree(work.data / "train")
    result = run("run_eval_gpu.sh", work.data, work.ckpt, env={"DRY_RUN": "1", "OUTPUT_DIR": work.out})
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------------------
# Dry-run plans

def check_train_argv(argv, work, target):
    assert argv[0] == "python"  # PYTHON is unset in these runs
    assert argv[1] == str(REPO / "train.py")
    assert flag_value(argv, "--dataset_path") == str(work.data)
    assert flag_value(argv, "--config_path") == str(work.config)
    assert flag_value(argv, "--output_dir") == str(work.out)
    assert flag_value(argv, "--device_target") == target


def test_ascend_msrun_plan_for_8_devices(work):
    result = run("run_distribute_train_ascend.sh", work.data, work.config, 8, "--", "--epochs", 3,
                 env={"DRY_RUN": "1", "OUTPUT_DIR": work.out})
    assert result.returncode == 0, result.stderr
    launcher, ranks = parse_plan(result.stdout)
    msrun = shlex.split(launcher.split(" ", 1)[1].partition("  # ")[0])
    assert msrun[0] == "msrun"
    for option in ("--worker_num=8", "--local_worker_num=8", "--join=True", "--node_rank=0"):
        assert option in msrun
    check_train_argv(["python", *msrun[msrun.index(str(REPO / "train.py")):]], work, "Ascend")
    assert len(ranks) == 8
    assert [r.env["RANK_ID"] for r in ranks] == [str(i) for i in range(8)]
    assert [r.env["DEVICE_ID"] for r in ranks] == [str(i) for i in range(8)]
    assert {r.env["RANK_SIZE"] for r in ranks} == {"8"} == {r.env["MS_WORKER_NUM"] for r in ranks}
    logs = launch_log_dir(ranks, work.out)
    assert [r.log for r in ranks] == [f"{logs}/worker_{i}.log" for i in range(8)]
    assert f"--log_dir={logs}" in msrun
    for rank in ranks:
        check_train_argv(rank.argv, work, "Ascend")
        assert rank.argv[-2:] == ["--epochs", "3"]
        assert "RANK_TABLE_FILE" not in rank.env
    assert not work.out.exists()  # a dry run creates nothing


def test_ascend_rank_table_plan_for_8_devices(work):
    result = run("run_distribute_train_ascend.sh", work.data, work.config, 8, work.table8,
                 env={"DRY_RUN": "1", "OUTPUT_DIR": work.out, "CPU_CORES": "192"})
    assert result.returncode == 0, result.stderr
    launcher, ranks = parse_plan(result.stdout)
    assert launcher is None
    assert len(ranks) == 8
    by_rank = {int(r.env["RANK_ID"]): r for r in ranks}
    assert sorted(by_rank) == list(range(8))
    # The device of each rank comes from the table, where device = 7 - rank.
    assert all(int(r.env["DEVICE_ID"]) == 7 - rank_id for rank_id, r in by_rank.items())
    assert {r.env["RANK_TABLE_FILE"] for r in ranks} == {str(work.table8)}
    assert {r.env["RANK_SIZE"] for r in ranks} == {"8"}
    assert {r.cwd for r in ranks} == {f"{work.out}/rank_{i}" for i in range(8)}
    logs = launch_log_dir(ranks, work.out)
    assert {r.log for r in ranks} == {f"{logs}/rank_{i}.log" for i in range(8)}
    shares = [taskset_cpus(r.argv) for r in ranks]
    assert all(len(share) == 24 for share in shares)
    assert set().union(*shares) == set(range(192))  # disjoint: 8 x 24 distinct cores cover all 192
    for rank in ranks:
        check_train_argv(rank.argv[3:], work, "Ascend")


@pytest.mark.parametrize("zoo_args", [lambda w: [w.table8, w.data, w.config], lambda w: [w.table8, w.data]],
                         ids=["with_config", "default_config"])
def test_model_zoo_order_rank_table_first(work, zoo_args):
    # The same launch as DATASET_PATH CONFIG_PATH "" RANK_TABLE_FILE (the default config when none is given).
    env = {"DRY_RUN": "1", "OUTPUT_DIR": work.out, "CPU_CORES": "192"}
    args = zoo_args(work)
    ours = run("run_distribute_train_ascend.sh", work.data, args[2] if len(args) > 2 else "", "", work.table8, env=env)
    zoo = run("run_distribute_train_ascend.sh", *args, env=env)
    assert zoo.returncode == 0 and ours.returncode == 0, zoo.stderr + ours.stderr
    plan = lambda out: [(r.env, r.argv, r.cwd) for r in parse_plan(out)[1]]  # noqa: E731
    assert plan(zoo.stdout) == plan(ours.stdout) and len(plan(zoo.stdout)) == 8
    assert {r.env["RANK_TABLE_FILE"] for r in parse_plan(zoo.stdout)[1]} == {str(work.table8)}
    if len(args) > 2:
        check_train_argv(parse_plan(zoo.stdout)[1][0].argv[3:], work, "Ascend")
    help_text = run("run_distribute_train_ascend.sh", "--help").stdout
    assert "RANK_TABLE_FILE DATASET_PATH [CONFIG_PATH]" in help_text and "existing .json file" in help_text


def test_rank_table_without_device_num_uses_table(work):
    result = run("run_distribute_train_ascend.sh", work.data, work.config, "", work.table2,
                 env={"DRY_RUN": "1", "OUTPUT_DIR": work.out, "CPU_CORES": "8"})
    assert result.returncode == 0, result.stderr
    _, ranks = parse_plan(result.stdout)
    assert [taskset_cpus(r.argv) for r in ranks] == [set(range(4)), set(range(4, 8))]


@pytest.mark.parametrize("env,reason", [({"CPU_CORES": "4"}, "4 CPU(s) for 8 ranks"), ({"BIND_CORES": "0"}, None)])
def test_rank_table_without_core_binding(work, env, reason):
    result = run("run_distribute_train_ascend.sh", work.data, work.config, 8, work.table8,
                 env={"DRY_RUN": "1", "OUTPUT_DIR": work.out, **env})
    assert result.returncode == 0, result.stderr
    _, ranks = parse_plan(result.stdout)
    assert len(ranks) == 8 and all(r.argv[0] != "taskset" for r in ranks)
    if reason:
        assert reason in result.stderr


def test_multi_server_rank_table_launches_this_servers_ranks(work):
    table = rank_table(work.root / "two_servers.json", [("10.0.0.1", [(d, d) for d in range(4)]),
                                                        ("10.0.0.2", [(d, 4 + d) for d in range(4)])])
    result = run("run_distribute_train_ascend.sh", work.data, work.config, 4, table,
                 env={"DRY_RUN": "1", "OUTPUT_DIR": work.out, "SERVER_ID": "10.0.0.2"})
    assert result.returncode == 0, result.stderr
    _, ranks = parse_plan(result.stdout)
    assert [(r.env["RANK_ID"], r.env["DEVICE_ID"], r.env["RANK_SIZE"]) for r in ranks] == [
        (str(4 + d), str(d), "8") for d in range(4)]
    unknown = run("run_distribute_train_ascend.sh", work.data, work.config, 4, table,
                  env={"DRY_RUN": "1", "OUTPUT_DIR": work.out, "SERVER_ID": "10.9.9.9"})
    assert unknown.returncode == 2 and "set SERVER_ID" in unknown.stderr


def test_msrun_multi_node_plan(work):
    result = run("run_distribute_train_ascend.sh", work.data, work.config, 8,
                 env={"DRY_RUN": "1", "OUTPUT_DIR": work.out, "NNODES": "2", "NODE_RANK": "1",
                      "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "9000"})
    assert result.returncode == 0, result.stderr
    launcher, ranks = parse_plan(result.stdout)
    for option in ("--worker_num=16", "--local_worker_num=8", "--node_rank=1", "--master_addr=10.0.0.1",
                   "--master_port=9000"):
        assert option in launcher.split()
    assert [r.env["RANK_ID"] for r in ranks] == [str(8 + i) for i in range(8)]
    assert [r.env["DEVICE_ID"] for r in ranks] == [str(i) for i in range(8)]
    logs = launch_log_dir(ranks, work.out)
    assert [r.log for r in ranks] == [f"{logs}/worker_{8 + i}.log" for i in range(8)]


@pytest.mark.parametrize("launcher_name", ["msrun", "mpirun"])
def test_gpu_plan_for_8_devices(work, launcher_name):
    result = run("run_distribute_train_gpu.sh", work.data, work.config, 8, launcher_name,
                 env={"DRY_RUN": "1", "OUTPUT_DIR": work.out})
    assert result.returncode == 0, result.stderr
    launcher, ranks = parse_plan(result.stdout)
    assert launcher.startswith(launcher_name.upper() + f" {launcher_name} ")
    assert len(ranks) == 8 and len({r.log for r in ranks}) == 8
    assert all(r.log.startswith(f"{work.out}/logs/") for r in ranks)
    rank_key = "RANK_ID" if launcher_name == "msrun" else "OMPI_COMM_WORLD_RANK"
    assert [r.env[rank_key] for r in ranks] == [str(i) for i in range(8)]
    assert {r.env["RANK_SIZE"] for r in ranks} == {"8"}
    for rank in ranks:
        check_train_argv(rank.argv, work, "GPU")
    if launcher_name == "mpirun":
        assert "-n 8 " in launcher and "-x RANK_SIZE=8" in launcher


@pytest.mark.parametrize("script,target", [("run_standalone_train_ascend.sh", "Ascend"),
                                           ("run_standalone_train_gpu.sh", "GPU")])
def test_standalone_plan(work, script, target):
    result = run(script, work.data, work.config, 5, env={"DRY_RUN": "1", "OUTPUT_DIR": work.out})
    assert result.returncode == 0, result.stderr
    _, ranks = parse_plan(result.stdout)
    assert len(ranks) == 1
    assert ranks[0].env == {"DEVICE_ID": "5"}
    assert ranks[0].log == f"{launch_log_dir(ranks, work.out)}/train.log"
    check_train_argv(ranks[0].argv, work, target)


@pytest.mark.parametrize("script,target", [("run_eval_ascend.sh", "Ascend"), ("run_eval_gpu.sh", "GPU")])
def test_eval_plan(work, script, target):
    with_config = run(script, work.data, work.ckpt, work.config, env={"DRY_RUN": "1", "OUTPUT_DIR": work.out,
                                                                      "DEVICE_ID": "2"})
    assert with_config.returncode == 0, with_config.stderr
    _, [launch] = parse_plan(with_config.stdout)
    assert launch.env == {"DEVICE_ID": "2"}
    assert launch.argv[1] == str(REPO / "eval.py")
    assert flag_value(launch.argv, "--ckpt_path") == str(work.ckpt)
    assert flag_value(launch.argv, "--config_path") == str(work.config)
    assert flag_value(launch.argv, "--device_target") == target
    # Without CONFIG_PATH eval.py finds the config saved beside the checkpoint itself.
    _, [launch] = parse_plan(run(script, work.data, work.ckpt, env={"DRY_RUN": "1"}).stdout)
    assert "--config_path" not in launch.argv


def test_works_from_another_directory_with_relative_paths(work, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    script = Path(os.path.relpath(SCRIPTS / "run_distribute_train_ascend.sh", elsewhere))
    (elsewhere / "resume.ckpt").write_bytes(b"\0")
    relative = lambda p: os.path.relpath(p, elsewhere)  # noqa: E731
    result = run(None, relative(work.data), relative(work.config), 2, relative(work.table2), "--",
                 "--resume", "resume.ckpt", "--lr=0.1", script_path=script, cwd=elsewhere,
                 env={"DRY_RUN": "1", "OUTPUT_DIR": relative(work.out), "BIND_CORES": "0"})
    assert result.returncode == 0, result.stderr
    _, ranks = parse_plan(result.stdout)
    assert len(ranks) == 2
    for rank in ranks:
        check_train_argv(rank.argv, work, "Ascend")
        assert rank.env["RANK_TABLE_FILE"] == str(work.table2)
        assert flag_value(rank.argv, "--resume") == str(elsewhere / "resume.ckpt")
        assert rank.argv[-1] == "--lr=0.1"


def test_default_output_dir_and_config(tmp_path):
    # A copy of the launchers in a repository of their own, with the default config of each device.
    repo = tmp_path / "repo"
    shutil.copytree(SCRIPTS, repo / "scripts", ignore=shutil.ignore_patterns("*.py"))
    (repo / "config").mkdir()
    for name in ("snnmlp_t_imagenet_ascend.yaml", "snnmlp_t_imagenet_gpu.yaml"):
        (repo / "config" / name).write_text("epochs: 1\n")
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "val").mkdir()
    plans = {}
    for script in ("run_standalone_train_ascend.sh", "run_standalone_train_gpu.sh"):
        result = run(None, tmp_path / "data", script_path=repo / "scripts" / script, env={"DRY_RUN": "1"})
        assert result.returncode == 0, result.stderr
        plans[script] = parse_plan(result.stdout)[1][0]
    ascend, gpu = plans["run_standalone_train_ascend.sh"], plans["run_standalone_train_gpu.sh"]
    assert flag_value(ascend.argv, "--config_path") == str(repo / "config" / "snnmlp_t_imagenet_ascend.yaml")
    assert flag_value(gpu.argv, "--config_path") == str(repo / "config" / "snnmlp_t_imagenet_gpu.yaml")
    # A stable folder per config and launcher, so launching again resumes training there.
    assert flag_value(ascend.argv, "--output_dir") == str(repo / "output" / "snnmlp_t_imagenet_ascend_standalone_ascend")
    assert flag_value(gpu.argv, "--output_dir") == str(repo / "output" / "snnmlp_t_imagenet_gpu_standalone_gpu")
    # No device-neutral fallback (config/snnmlp_t_imagenet.yaml never existed), even when such a file is there.
    (repo / "config" / "snnmlp_t_imagenet.yaml").write_text("epochs: 1\n")
    (repo / "config" / "snnmlp_t_imagenet_gpu.yaml").unlink()
    missing = run(None, tmp_path / "data", script_path=repo / "scripts" / "run_standalone_train_gpu.sh",
                  env={"DRY_RUN": "1"})
    assert missing.returncode == 2 and "no default config for GPU" in missing.stderr


# ------------------------------------------------------------------------------------------------------
# Real launches of a stand-in interpreter

FAKE_PYTHON = f"""\
#!{sys.executable}
# Stand-in for the Python that runs train.py/eval.py: records how it was launched, then behaves as told.
import json, os, sys, time
rank = os.environ.get("RANK_ID", "single")
record = dict(argv=sys.argv[1:], cwd=os.getcwd(), env=dict(os.environ), pid=os.getpid(),
              cpus=sorted(os.sched_getaffinity(0)))
with open(os.path.join(os.environ["FAKE_RECORDS"], f"rank_{{rank}}.json"), "w") as f:
    json.dump(record, f)
print(f"stand-in training, rank {{rank}}", flush=True)
if os.environ.get("FAKE_FAIL_RANK") == rank:
    print("stand-in failure", flush=True)
    sys.exit(3)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
"""


@pytest.fixture
def fake_python(tmp_path):
    path = tmp_path / "fake_python"
    path.write_text(FAKE_PYTHON)
    path.chmod(0o755)
    records = tmp_path / "records"
    records.mkdir()

    def load():
        return {p.stem.split("_", 1)[1]: json.loads(p.read_text()) for p in records.glob("rank_*.json")}
    return {"PYTHON": str(path), "FAKE_RECORDS": str(records)}, load


def test_rank_table_launch_runs_every_rank_in_its_folder_bound_to_its_cores(work, fake_python):
    env, load = fake_python
    result = run("run_distribute_train_ascend.sh", work.data, work.config, 2, work.table2,
                 env={**env, "OUTPUT_DIR": work.out, "CPU_CORES": "2"})
    assert result.returncode == 0, result.stderr
    records = load()
    assert sorted(records) == ["0", "1"]
    for rank, record in records.items():
        assert record["cwd"] == str(work.out / f"rank_{rank}")
        assert record["env"]["RANK_ID"] == rank and record["env"]["DEVICE_ID"] == rank
        assert record["env"]["RANK_SIZE"] == "2" and record["env"]["RANK_TABLE_FILE"] == str(work.table2)
        assert record["cpus"] == [int(rank)]
        assert record["argv"][0] == str(REPO / "train.py")
        log = single_log(work.out, f"rank_{rank}.log").read_text()
        assert f"stand-in training, rank {rank}" in log
    assert "stand-in training, rank 0" in result.stdout  # rank 0's log is shown on the console
    assert f"checkpoints: {work.out}" in result.stdout


def test_a_failing_rank_stops_the_others_and_fails_the_launch(work, fake_python):
    env, load = fake_python
    start = time.monotonic()
    result = run("run_distribute_train_ascend.sh", work.data, work.config, 2, work.table2,
                 env={**env, "OUTPUT_DIR": work.out, "BIND_CORES": "0", "FAKE_FAIL_RANK": "1",
                      "FAKE_SLEEP": "120"}, timeout=60)
    assert time.monotonic() - start < 30  # rank 0 was stopped, not waited for
    assert result.returncode == 1
    assert "rank 1 exited with status 3" in result.stderr
    assert "stand-in failure" in single_log(work.out, "rank_1.log").read_text()
    rank0_pid = load()["0"]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(rank0_pid, 0)


def test_standalone_launch_drops_stale_launcher_variables(work, fake_python):
    env, load = fake_python
    stale = {"RANK_SIZE": "8", "RANK_TABLE_FILE": str(work.table8), "MS_WORKER_NUM": "8", "MS_ROLE": "MS_WORKER"}
    result = run("run_standalone_train_gpu.sh", work.data, work.config, 1,
                 env={**env, **stale, "OUTPUT_DIR": work.out})
    assert result.returncode == 0, result.stderr
    record = load()["single"]
    assert record["env"]["DEVICE_ID"] == "1"
    assert not set(stale) & set(record["env"])  # else train.py would call init() for a lone process
    assert record["cwd"] == str(work.out)
    assert "stand-in training" in single_log(work.out, "train.log").read_text()
    assert "stand-in training" in result.stdout


def test_eval_launch_reports_failure(work, fake_python):
    env, load = fake_python
    result = run("run_eval_ascend.sh", work.data, work.ckpt, env={**env, "OUTPUT_DIR": work.out,
                                                                  "FAKE_FAIL_RANK": "single"})
    assert result.returncode == 1
    record = load()["single"]
    assert record["argv"][:5] == [str(REPO / "eval.py"), "--dataset_path", str(work.data), "--ckpt_path",
                                  str(work.ckpt)]
    assert "stand-in failure" in single_log(work.out, "eval.log").read_text()


def test_launching_again_keeps_earlier_logs(work, fake_python):
    env, _ = fake_python
    for _ in range(2):
        result = run("run_standalone_train_ascend.sh", work.data, work.config, "", "--", "--ckpt_path", work.ckpt,
                     env={**env, "OUTPUT_DIR": work.out})
        assert result.returncode == 0, result.stderr
    logs = sorted(work.out.glob("logs/*/train.log"))
    assert len(logs) == 2  # same second or not, each launch has its own folder
    assert all("stand-in training" in log.read_text() for log in logs)


def test_free_port_helper_keeps_a_free_port_and_replaces_a_busy_one():
    tools = [sys.executable, str(SCRIPTS / "launcher_tools.py"), "free-port"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        replaced = int(subprocess.run([*tools, str(port)], capture_output=True, text=True, check=True).stdout)
    assert replaced != port and 1024 <= replaced <= 65535
    assert int(subprocess.run([*tools, str(port)], capture_output=True, text=True, check=True).stdout) == port
