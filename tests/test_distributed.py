"""Real data-parallel training: scripts/run_distribute_train_cpu.sh, 2 msrun workers, the embedded digits.

Every worker gets a probe through PYTHONPATH (a sitecustomize module written here) that records, with a
Python audit hook, each file under the data and output folders the worker read, wrote or renamed into
place, and, at exit, the values of the parameters it handed to mindspore.nn.DistributedGradReducer (the
weights whose gradients are averaged across ranks). From those records the test checks that both ranks
trained, that their shards were disjoint and covered the data, that their weights are identical after
training (and changed by it), and that rank 0 alone wrote the checkpoints.
"""
import json
import os
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "scripts" / "run_distribute_train_cpu.sh"

PROBE = '''\
"""Test probe of tests/test_distributed.py, imported at start-up by every msrun worker."""
import atexit
import inspect
import os
import sys


def _install(trace_dir, watched):
    rank = os.environ.get("RANK_ID", "unknown")
    # Opened before the hook exists and written with os.write, which raises no audit event.
    fd = os.open(os.path.join(trace_dir, f"files_rank{rank}_{os.getpid()}.tsv"),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def note(kind, path):
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(watched):
            os.write(fd, f"{os.getpid()}\\t{kind}\\t{path}\\n".encode())

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes)):
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if mode else bool(flags & write_flags)
            note("write" if writing else "read", path)
        elif event == "os.rename":
            note("rename", args[1])

    sys.addaudithook(hook)

    import numpy as np
    from mindspore import get_auto_parallel_context, nn

    reducers = []
    calls = []
    original_init = nn.DistributedGradReducer.__init__
    original_construct = nn.DistributedGradReducer.construct

    def dump():
        parameters, mean = reducers[-1]
        if mean is None:
            mean = get_auto_parallel_context("gradients_mean")
        np.savez(os.path.join(trace_dir, f"final_rank{rank}.npz"), **{p.name: p.asnumpy() for p in parameters})
        with open(os.path.join(trace_dir, f"reducer_rank{rank}.json"), "w") as f:
            f.write(f'{{"mean": {str(bool(mean)).lower()}, "reducers": {len(reducers)}, "calls": {len(calls)}}}')

    def construct(self, grads):  # PYNATIVE: one Python call per gradient AllReduce
        calls.append(1)
        return original_construct(self, grads)

    def init(self, parameters, *args, **kwargs):
        bound = inspect.signature(original_init).bind(self, parameters, *args, **kwargs)
        parameters = list(parameters)
        reducers.append((parameters, bound.arguments.get("mean")))
        np.savez(os.path.join(trace_dir, f"initial_rank{rank}.npz"), **{p.name: p.asnumpy() for p in parameters})
        if len(reducers) == 1:
            atexit.register(dump)  # registered after MindSpore's own handlers, so it runs before them
        original_init(self, parameters, *args, **kwargs)

    nn.DistributedGradReducer.__init__ = init
    nn.DistributedGradReducer.construct = construct


if os.environ.get("MS_ROLE") == "MS_WORKER" and os.environ.get("SNNMLP_PROBE_DIR"):
    _install(os.environ["SNNMLP_PROBE_DIR"], tuple(os.environ["SNNMLP_PROBE_WATCH"].split(os.pathsep)))
'''


def _launch(root, *extra_args):
    """Run the CPU launcher with 2 workers on a small SNN-MLP for 1 epoch in ``root``."""
    home, out, probe_dir, probe_path = root / "home", root / "out", root / "probe", root / "probe_path"
    probe_dir.mkdir()
    probe_path.mkdir()
    (probe_path / "sitecustomize.py").write_text(PROBE)
    data = home / "data" / "digits"  # where train.py exports the embedded digits under SNNMLP_HOME
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK_", "MS_", "OUTPUT_DIR", "DRY_RUN"))}
    env.update(SNNMLP_HOME=str(home), OUTPUT_DIR=str(out), SNNMLP_PROBE_DIR=str(probe_dir),
               SNNMLP_PROBE_WATCH=os.pathsep.join([str(data), str(out)]),
               PYTHONPATH=os.pathsep.join(filter(None, [str(probe_path), env.get("PYTHONPATH")])))
    # PYNATIVE skips graph compilation, which would dominate two steps (and runs the reducer as Python calls,
    # which the probe counts).
    args = ["--epochs", "1", "--warmup_epochs", "0", "--mode", "PYNATIVE", "--embed_dim", "16", "--depths",
            "1,1,1,1", "--keep_checkpoint_max", "1", *extra_args]
    result = subprocess.run(["bash", str(LAUNCHER), "2", *args], env=env, cwd=root, capture_output=True, text=True,
                            timeout=600)
    return dict(result=result, out=out, data=data, probe=probe_dir)


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    """1 epoch of 2 steps per rank. 1,437 training images: 718 per rank = 2 batches of 359, so every image of a
    shard is consumed."""
    return _launch(tmp_path_factory.mktemp("distributed"), "--batch_size", "359")


def probe_files(run):
    """{rank: {kind: [paths]}} from every process of every rank."""
    records = defaultdict(lambda: defaultdict(list))
    for trace in run["probe"].glob("files_rank*_*.tsv"):
        rank = trace.name[len("files_rank"):].split("_")[0]
        for line in trace.read_text().splitlines():
            _pid, kind, path = line.split("\t")
            records[rank][kind].append(path)
    return records


def rank_logs(run):
    [log_dir] = (run["out"] / "logs").iterdir()
    return {rank: (log_dir / f"worker_{rank}.log").read_text() for rank in ("0", "1")}


def test_launch_succeeds_and_both_ranks_train(distributed_run):
    result = distributed_run["result"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"checkpoints: {distributed_run['out']}" in result.stdout
    for rank, log in rank_logs(distributed_run).items():
        summary = json.loads([line for line in log.splitlines() if line.startswith("{")][-1])
        assert summary["epochs"] == 1 and summary["global_step"] == 2, (rank, summary)
    assert sorted(probe_files(distributed_run)) == ["0", "1"]


@pytest.mark.parametrize("split,dropped", [("train", 1437 % 2), ("val", 0)])
def test_shards_are_disjoint_and_cover_the_data(distributed_run, split, dropped):
    split_dir = distributed_run["data"] / split
    images = {str(p) for p in split_dir.rglob("*.png")}
    assert len(images) == {"train": 1437, "val": 360}[split]
    files = probe_files(distributed_run)
    shards = [{p for p in files[rank]["read"] if p.startswith(f"{split_dir}/")} for rank in ("0", "1")]
    assert shards[0] and shards[1]
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] <= images
    # Training cuts the epoch to a multiple of the rank count so both ranks take as many steps.
    assert len(shards[0] | shards[1]) == len(images) - dropped
    assert len(shards[0]) == len(shards[1]) == (len(images) - dropped) // 2


def test_weights_identical_on_both_ranks_after_training(distributed_run):
    probe = distributed_run["probe"]
    for rank in ("0", "1"):
        assert json.loads((probe / f"reducer_rank{rank}.json").read_text()) == {"mean": True, "reducers": 1,
                                                                                "calls": 2}
    initial = [dict(np.load(probe / f"initial_rank{rank}.npz")) for rank in ("0", "1")]
    final = [dict(np.load(probe / f"final_rank{rank}.npz")) for rank in ("0", "1")]
    assert final[0].keys() == final[1].keys() == initial[0].keys() and len(final[0]) > 10
    for name in final[0]:
        np.testing.assert_array_equal(initial[0][name], initial[1][name], err_msg=name)  # same seed
        np.testing.assert_array_equal(final[0][name], final[1][name], err_msg=name)
    # Different data on each rank, and yet identical weights: only averaged gradients give that. It also
    # needs training to have changed them.
    changed = [name for name in final[0] if not np.array_equal(final[0][name], initial[0][name])]
    assert len(changed) >= 0.9 * len(final[0]), sorted(set(final[0]) - set(changed))


def test_rank0_alone_wrote_the_checkpoints(distributed_run):
    out = distributed_run["out"]
    files = probe_files(distributed_run)
    rank1_output = [p for kind in ("write", "rename") for p in files["1"][kind] if p.startswith(f"{out}/")]
    assert rank1_output == []  # rank 1 wrote nothing in OUTPUT_DIR (it may have exported the digits)
    placed = {p for p in files["0"]["rename"] if p.startswith(f"{out}/")}
    checkpoints = {str(p) for p in out.glob("*.ckpt")}
    assert checkpoints == {str(out / "snnmlp_custom-1_2.ckpt"), str(out / "best.ckpt")}
    assert checkpoints <= placed
    # What rank 0 saved is what both ranks ended with.
    import mindspore as ms

    saved = ms.load_checkpoint(str(out / "snnmlp_custom-1_2.ckpt"))
    final = np.load(distributed_run["probe"] / "final_rank1.npz")
    for name in final.files:
        np.testing.assert_array_equal(saved[name].asnumpy(), final[name], err_msg=name)


def test_accumulation_reduces_once_per_optimizer_step(tmp_path):
    """2 micro-batches per optimizer step: 4 batches of 179 per rank make 2 optimizer steps, each averaged across
    the ranks once (2 reducer calls, not 4), and both ranks end with the same weights."""
    run = _launch(tmp_path, "--batch_size", "179", "--accumulation_steps", "2")
    result = run["result"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for rank, log in rank_logs(run).items():
        summary = json.loads([line for line in log.splitlines() if line.startswith("{")][-1])
        assert summary["epochs"] == 1 and summary["global_step"] == 2, (rank, summary)
    assert "2 optimizer steps/epoch of 716 images (2 device(s) x 179 per device x 2 micro-batch(es))" in \
        rank_logs(run)["0"]
    probe = run["probe"]
    for rank in ("0", "1"):
        assert json.loads((probe / f"reducer_rank{rank}.json").read_text()) == {"mean": True, "reducers": 1,
                                                                                "calls": 2}
    initial, final = (dict(np.load(probe / f"{kind}_rank0.npz")) for kind in ("initial", "final"))
    other = dict(np.load(probe / "final_rank1.npz"))
    for name in final:
        np.testing.assert_array_equal(final[name], other[name], err_msg=name)
    changed = [name for name in final if not np.array_equal(final[name], initial[name])]
    assert len(changed) >= 0.9 * len(final)
    assert sorted(p.name for p in run["out"].glob("*.ckpt")) == ["best.ckpt", "snnmlp_custom-1_2.ckpt"]
