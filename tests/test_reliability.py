"""Nothing lost, nothing trusted blindly: real faults (SIGKILL at every step of an epoch's save, a full
filesystem), an earlier run in the output folder, tampered and hostile files, and bad input that must give
one line instead of a traceback."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms

from src.checkpoint import CheckpointError, read_checkpoint, save_checkpoint_atomic, sha256_file
from src.engine.checkpoints import CheckpointManager

ROOT = Path(__file__).resolve().parents[1]
MODEL = "m"
STEPS = 3


# --- an epoch's save, as the trainer does it ------------------------------------------------------------

def epoch_state(epoch, size=256):
    """Training state after ``epoch`` (deterministic, so a rerun writes the same bytes)."""
    return {"w": np.full((size, size), float(epoch), np.float32), "adam_m.w": np.full((4,), epoch, np.float32)}


# Validation top-1 after each epoch: epoch 2 is the best, epoch 3 is not.
TOP1 = {1: 50.0, 2: 60.0, 3: 55.0}


def commit(manager, epoch, best_so_far, size=256):
    """Commit ``epoch`` as ``_Run.fit`` does; returns the new (best_top1, best_epoch)."""
    best_top1, best_epoch = best_so_far
    if TOP1[epoch] > best_top1:
        best_top1, best_epoch = TOP1[epoch], epoch
    counters = {"epoch_num": epoch, "step_num": epoch * STEPS, "best_top1": best_top1, "best_epoch": best_epoch}
    best = (epoch_state(epoch, size), TOP1[epoch], MODEL) if best_epoch == epoch else None
    manager.commit_epoch(epoch_state(epoch, size), epoch, STEPS, counters, {"val_top1": TOP1[epoch]}, best)
    return best_top1, best_epoch


def resume(manager):
    """What ``_Run.restore`` does: newest complete checkpoint, its counters, then ``reconcile``."""
    path = manager.latest_complete()
    if path is None:
        return 0, manager.reconcile(0)
    entries = read_checkpoint(path)
    epoch = int(entries["epoch_num"].asnumpy())
    return epoch, manager.reconcile(epoch)


def best_on_disk(directory):
    path = os.path.join(directory, "best.ckpt")
    if not os.path.exists(path):
        return -1.0, -1
    entries = read_checkpoint(path)
    return float(entries["top1"].asnumpy()), int(entries["epoch"].asnumpy())


def snapshot(directory):
    """{name: sha256} of the run's files (the superseded folders aside)."""
    return {name: sha256_file(os.path.join(directory, name)) for name in sorted(os.listdir(directory))
            if not name.startswith("superseded-") and not name.endswith(".log")}


def run_to(directory, last_epoch, keep_max=1):
    manager = CheckpointManager(directory, MODEL, keep_max=keep_max)
    done, best = resume(manager)
    for epoch in range(done + 1, last_epoch + 1):
        best = commit(manager, epoch, best)
    return manager, done, best


# A child process imports MindSpore once, then forks one process per fault point that runs the real save
# of epoch 2 and kills itself with SIGKILL just before its N-th filesystem step (a MindSpore write, an
# fsync, a rename or a removal).
KILLER = textwrap.dedent("""
    import json, os, shutil, signal, sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    import mindspore as ms
    import src.checkpoint as ckpt
    from src.engine.checkpoints import CheckpointManager
    import test_reliability as t

    base, out = sys.argv[1], sys.argv[2]
    results = []
    for n in range(1, 100):
        target = os.path.join(out, str(n))
        shutil.copytree(base, target)
        pid = os.fork()
        if pid == 0:
            count = [0]
            def step(function):
                def wrapped(*args, **kwargs):
                    count[0] += 1
                    if count[0] == n:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return function(*args, **kwargs)
                return wrapped
            for name in ("replace", "remove", "fsync"):
                setattr(os, name, step(getattr(os, name)))
            ms.save_checkpoint = step(ms.save_checkpoint)
            t.commit(CheckpointManager(target, t.MODEL, keep_max=1), 2, (t.TOP1[1], 1))
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        results.append(killed)
        if not killed:
            shutil.rmtree(target)  # the save finished before step n: every step has been tried
            break
    print(json.dumps(results))
""")


def test_kill_at_every_step_of_an_epoch_save_recovers_exactly(tmp_path):
    reference = tmp_path / "reference"
    run_to(reference, 2)
    expected = snapshot(reference)
    base = tmp_path / "base"
    run_to(base, 1)
    killed_dirs = tmp_path / "killed"
    killed_dirs.mkdir()
    child = subprocess.run([sys.executable, "-c", KILLER.format(root=str(ROOT), tests=str(ROOT / "tests")),
                            str(base), str(killed_dirs)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    results = json.loads(child.stdout.strip().splitlines()[-1])
    assert results[-1] is False and all(results[:-1]) and len(results) > 10, results
    pending_case = False
    for n in range(1, len(results)):
        directory = str(killed_dirs / str(n))
        epoch2 = os.path.join(directory, f"{MODEL}-2_{STEPS}.ckpt")
        # Killed between the two renames of the epoch checkpoint: a complete save, to be finished, not redone.
        completed_pending = (os.path.exists(epoch2) and os.path.exists(epoch2 + ".sha256.pending")
                             and not os.path.exists(epoch2 + ".sha256"))
        manager = CheckpointManager(directory, MODEL, keep_max=1)
        done, best = resume(manager)
        assert done in (1, 2), n
        if completed_pending:
            pending_case = True
            assert done == 2, f"step {n}: the finished save of epoch 2 was retrained"
        # The best counters the run continues with are those of the best.ckpt on disk.
        assert best == best_on_disk(directory), f"step {n}"
        assert [r["epoch"] for r in manager.read_metrics()] == list(range(1, done + 1)), f"step {n}"
        for epoch in range(done + 1, 3):
            best = commit(manager, epoch, best)
        assert snapshot(directory) == expected, f"kill before step {n}"
    assert pending_case


def test_full_filesystem_keeps_the_last_epoch_and_its_best(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a 4 MB tmpfs here ({result.stderr.strip() or result.returncode})")
    try:
        size = 620  # 1.5 MB per state: epoch 1 (best + epoch file) fits, epoch 2's best.ckpt does not
        directory = str(mount / "run")
        manager = CheckpointManager(directory, MODEL, keep_max=1)
        best = commit(manager, 1, (-1.0, -1), size)
        with pytest.raises(CheckpointError, match="No space left on device"):
            commit(manager, 2, best, size)
        leftovers = [n for n in os.listdir(directory) if n.startswith(".") or n.endswith((".tmp", ".pending"))]
        assert leftovers == []
        subprocess.run(["mount", "-o", "remount,size=16m", str(mount)], check=True)
        done, best = resume(CheckpointManager(directory, MODEL, keep_max=1))
        assert (done, best) == (1, (TOP1[1], 1)) == (1, best_on_disk(directory))
        assert [r["epoch"] for r in manager.read_metrics()] == [1]
        commit(manager, 2, best, size)
        assert best_on_disk(directory) == (TOP1[2], 2)
        assert [r["epoch"] for r in manager.read_metrics()] == [1, 2]
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# --- an earlier run in the output folder ---------------------------------------------------------------

def test_rotation_never_removes_the_checkpoint_just_written(tmp_path):
    manager = CheckpointManager(tmp_path, MODEL, keep_max=3)
    for epoch in (10, 11, 12):
        save_checkpoint_atomic(epoch_state(epoch, 4), manager.epoch_path(epoch, STEPS))
    path = manager.save_epoch(epoch_state(1, 4), 1, STEPS, {"epoch_num": 1, "step_num": STEPS})
    assert os.path.exists(path)


def test_resume_from_an_older_epoch_moves_later_files_aside(tmp_path):
    run_to(tmp_path, 3, keep_max=5)
    manager = CheckpointManager(tmp_path, MODEL, keep_max=5)
    assert manager.reconcile(1) == (-1.0, -1)  # best.ckpt (epoch 2) is of a later epoch: moved aside
    assert [e for e, _ in manager.epoch_checkpoints()] == [1]
    assert [r["epoch"] for r in manager.read_metrics()] == [1]
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("superseded-")]
    assert sorted(os.listdir(aside)) == sorted(["best.ckpt", "best.ckpt.sha256", "metrics.jsonl",
                                                f"{MODEL}-2_{STEPS}.ckpt", f"{MODEL}-2_{STEPS}.ckpt.sha256",
                                                f"{MODEL}-3_{STEPS}.ckpt", f"{MODEL}-3_{STEPS}.ckpt.sha256"])
    assert [json.loads(line)["epoch"] for line in (aside / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    commit(manager, 2, (TOP1[1], 1))
    commit(manager, 3, (TOP1[2], 2))
    assert [r["epoch"] for r in manager.read_metrics()] == [1, 2, 3]


def test_metrics_of_a_torn_line_or_a_repeated_epoch_appear_once(tmp_path):
    manager = CheckpointManager(tmp_path, MODEL)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "a": 1}\n{"epoch": 2, "a": 2}\n{"epoch": 3, "a"')
    manager.write_metrics_record({"epoch": 2, "a": 3})
    assert manager.read_metrics() == [{"epoch": 1, "a": 1}, {"epoch": 2, "a": 3}]


def test_a_fresh_start_moves_an_earlier_run_aside_and_keeps_its_own(image_folder, tmp_path):
    from src.config import load_config
    from src.engine import trainer

    data = image_folder(num_classes=2, per_class={"train": 4, "val": 2}, size=(32, 32))
    out = tmp_path / "out"
    for epoch in (10, 11, 12):  # an earlier run's files
        save_checkpoint_atomic(epoch_state(epoch, 4), out / f"snnmlp-{epoch}_2.ckpt",
                               append_dict={"epoch_num": epoch, "step_num": 2 * epoch})
    save_checkpoint_atomic(epoch_state(12, 4), out / "best.ckpt", append_dict={"epoch": 12, "top1": 99.0})
    (out / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (10, 11, 12)))
    argv = ["--model", "snnmlp", "--embed_dim", "8", "--depths", "1,1,1,1", "--image_size", "32", "--num_classes",
            "2", "--dataset_path", str(data), "--output_dir", str(out), "--batch_size", "4", "--epochs", "1",
            "--warmup_epochs", "0", "--auto_augment", "null", "--color_jitter", "null", "--reprob", "0",
            "--mixup", "0", "--cutmix", "0", "--num_parallel_workers", "1", "--keep_checkpoint_max", "3",
            "--auto_resume", "false", "--mode", "PYNATIVE"]
    summary = trainer.train(load_config(argv))
    manager = CheckpointManager(out, "snnmlp", keep_max=3)
    assert manager.latest_complete() == str(out / "snnmlp-1_2.ckpt")  # what the next default run resumes
    assert [e for e, _ in manager.epoch_checkpoints()] == [1]
    assert [r["epoch"] for r in manager.read_metrics()] == [1]
    assert best_on_disk(out) == (summary["best_top1"], 1)
    (aside,) = [p for p in out.iterdir() if p.name.startswith("superseded-")]
    assert {"snnmlp-10_2.ckpt", "snnmlp-11_2.ckpt", "snnmlp-12_2.ckpt", "best.ckpt", "metrics.jsonl"} <= \
        set(os.listdir(aside))
    assert "nothing deleted" in (out / "train.log").read_text()
