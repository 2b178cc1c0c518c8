"""Nothing lost, nothing trusted blindly: real faults (SIGKILL at every step of an epoch's save, a full
filesystem), an earlier run in the output folder, tampered and hostile files, and bad input that must give
one line instead of a traceback."""
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms

from src.checkpoint import CheckpointError, read_checkpoint, save_checkpoint_atomic, sha256_file
from src.engine.train_state import CheckpointManager

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
    from src.engine.train_state import CheckpointManager
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


def test_kill_at_every_step_of_an_epoch_save_recovers_exactly(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    run_to(reference, 1)
    renamed, replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(os.path.basename(dst)), replace(src, dst)))
    run_to(reference, 2)
    monkeypatch.undo()
    # The order that makes every kill recoverable: metrics line, best.ckpt, then the epoch checkpoint.
    assert renamed == ["metrics.jsonl", "best.ckpt", "best.ckpt.sha256", f"{MODEL}-2_{STEPS}.ckpt",
                       f"{MODEL}-2_{STEPS}.ckpt.sha256"]
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
    if shutil.which("mount") is None:
        pytest.skip("no mount command here to make a small full filesystem")
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


def test_a_finished_save_with_its_sidecar_still_pending_is_resumed_from(tmp_path):
    manager = CheckpointManager(tmp_path, MODEL)
    path = manager.epoch_path(1, STEPS)
    save_checkpoint_atomic(epoch_state(1, 4), path, append_dict={"epoch_num": 1, "step_num": STEPS})
    os.replace(path + ".sha256", path + ".sha256.pending")  # as a kill between the two renames leaves it
    assert manager.latest_complete() == path
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path), os.path.basename(path) + ".sha256"]


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
    (out / "config.yaml").write_text("# the earlier run's\n")
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
    assert {"snnmlp-10_2.ckpt", "snnmlp-11_2.ckpt", "snnmlp-12_2.ckpt", "best.ckpt", "metrics.jsonl",
            "config.yaml"} <= set(os.listdir(aside))
    assert (aside / "config.yaml").read_text() == "# the earlier run's\n"
    assert "nothing deleted" in (out / "train.log").read_text()


# --- trust: hashed on every load, remembered only after a strict load, sidecars of symlink targets, CRC --

@pytest.fixture
def loopback(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("SNNMLP_OFFLINE", raising=False)
    from tests.test_checkpoint import LoopbackServer
    return LoopbackServer


def tamper_keeping_size_and_mtime(path):
    st = os.stat(path)
    os.chmod(path, 0o600)
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_a_file_changed_in_place_with_size_and_mtime_kept_is_caught(tmp_path, loopback):
    from src.checkpoint import Asset, fetch_asset, verify_file

    payload = os.urandom(300_000)
    sha = hashlib.sha256(payload).hexdigest()
    with loopback({"w.ckpt": payload}) as server:
        asset = Asset("w.ckpt", server.url("w.ckpt"), sha, "snnmlp_t", 0.0, "mindspore")
        path = fetch_asset(asset, root=tmp_path, progress=False)
        fetch_asset(asset, root=tmp_path, progress=False)
        tamper_keeping_size_and_mtime(path)
        with pytest.raises(CheckpointError, match=f"expected {sha}"):
            verify_file(path, sha)
        assert fetch_asset(asset, root=tmp_path, progress=False) == path  # downloaded again
        assert server.requests == ["w.ckpt", "w.ckpt"]
    assert Path(path).read_bytes() == payload


SMALL = dict(embed_dim=8, depths=(1, 1, 1, 1), lif_backend="primitive")


def test_an_unpublished_asset_is_remembered_only_once_it_loads(tmp_path, loopback, monkeypatch):
    import src.checkpoint as ckpt
    from src.hub import load
    from src.snn_mlp import create_model

    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path / "cache"))
    save_checkpoint_atomic(create_model("snnmlp_t", num_classes=7, **SMALL), tmp_path / "good.ckpt")
    good = (tmp_path / "good.ckpt").read_bytes()
    html = b"<html><body>Rate limit exceeded, try again later.</body></html>"

    def cut_off_without_length(handler):  # a body that ends early, with no Content-Length to notice it by
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(good[:len(good) // 2])
        handler.close_connection = True

    with loopback({"r.ckpt": html}) as server:
        asset = ckpt.Asset("r.ckpt", server.url("r.ckpt"), None, "snnmlp_t", 0.0, "mindspore", num_classes=7)
        monkeypatch.setitem(ckpt.ASSETS, asset.name, asset)
        monkeypatch.setitem(ckpt.DEFAULT_ASSETS, "snnmlp_t", asset.name)
        cached = tmp_path / "cache" / "r.ckpt"
        for body in (html, cut_off_without_length):
            server.files["r.ckpt"] = body
            if cached.exists():
                cached.unlink()
            for _ in range(2):  # the bad file is not remembered: the same advice every time
                with pytest.raises(CheckpointError, match=rf"delete it \(rm {cached}\) and it is downloaded again"):
                    load("snnmlp_t", pretrained=True, num_classes=7, **SMALL)
                assert not (tmp_path / "cache" / "r.ckpt.verified.json").exists()
        server.files["r.ckpt"] = good
        cached.unlink()
        load("snnmlp_t", pretrained=True, num_classes=7, **SMALL)
        record = json.loads((tmp_path / "cache" / "r.ckpt.verified.json").read_text())
        assert record == {"sha256": hashlib.sha256(good).hexdigest(), "loaded_as": "snnmlp_t"}
        tamper_keeping_size_and_mtime(cached)
        with pytest.raises(CheckpointError, match="does not match its hash.*offline"):
            load("snnmlp_t", pretrained=True, num_classes=7, offline=True, **SMALL)


def small_checkpoint(path):
    from src.snn_mlp import create_model

    net = create_model("snnmlp_t", num_classes=3, **SMALL)
    save_checkpoint_atomic(net, path)
    return net


def corrupt_a_weight(path):
    """Flip a byte inside the largest tensor's data (the file still parses)."""
    os.chmod(path, 0o600)
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(path).write_bytes(bytes(data))


def test_a_symlink_is_checked_against_its_targets_sidecar(tmp_path):
    from src.checkpoint import load_checkpoint_strict
    from src.snn_mlp import create_model

    target = tmp_path / "run" / "best.ckpt"
    small_checkpoint(target)
    link = tmp_path / "link.ckpt"
    link.symlink_to(target)
    corrupt_a_weight(target)
    with pytest.raises(CheckpointError, match=r"SHA-256 mismatch .*\(its target sidecar"):
        load_checkpoint_strict(create_model("snnmlp_t", num_classes=3, **SMALL), link)


def test_a_corrupted_copy_without_sidecar_is_caught_by_the_crc(tmp_path):
    from src.checkpoint import load_checkpoint_strict
    from src.snn_mlp import create_model

    small_checkpoint(tmp_path / "run.ckpt")
    copy = tmp_path / "copy.ckpt"
    shutil.copyfile(tmp_path / "run.ckpt", copy)
    corrupt_a_weight(copy)
    with pytest.raises(CheckpointError, match="corrupt.*crc"):
        load_checkpoint_strict(create_model("snnmlp_t", num_classes=3, **SMALL), copy)


def test_an_intact_copy_without_sidecar_loads_with_a_one_line_notice(tmp_path, caplog, monkeypatch):
    import src.checkpoint as ckpt
    from src.checkpoint import load_checkpoint_strict
    from src.snn_mlp import create_model

    monkeypatch.setattr(logging.getLogger("snn_mlp"), "propagate", True)  # a training run turns it off
    source = small_checkpoint(tmp_path / "run.ckpt")
    copy = tmp_path / "copy.ckpt"
    shutil.copyfile(tmp_path / "run.ckpt", copy)
    net = create_model("snnmlp_t", num_classes=3, **SMALL)
    with caplog.at_level("WARNING", logger="snn_mlp"):
        load_checkpoint_strict(net, copy)
    sha = sha256_file(copy)
    notices = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unverified")]
    assert notices == [f"unverified: {copy}: no sidecar, no --ckpt_sha256, not a known release (sha256 {sha})"]
    assert all(np.array_equal(a.asnumpy(), b.asnumpy()) for a, b in zip(source.get_parameters(),
                                                                         net.get_parameters()))
    # A file whose hash is a published one is verified by it, whatever its name.
    monkeypatch.setitem(ckpt.ASSETS, "release.ckpt", ckpt.Asset("release.ckpt", "", sha, "snnmlp_t", 0.0,
                                                                "mindspore"))
    caplog.clear()
    with caplog.at_level("WARNING", logger="snn_mlp"):
        load_checkpoint_strict(net, copy)
    assert not [r for r in caplog.records if r.getMessage().startswith("unverified")]


# --- one line instead of a traceback -------------------------------------------------------------------

def truncated_chunked(handler):
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.wfile.write(b"400\r\n" + b"x" * 100)  # a chunk of 1024 bytes announced, 100 sent, then closed
    handler.close_connection = True


def short_with_length(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b"x" * 100)
    handler.close_connection = True


def trickle(pause, piece, length=100_000):
    """A response that sends ``piece`` bytes every ``pause`` seconds (at most 3 s: the tests are bounded)."""
    def respond(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        try:
            for _ in range(int(3 / pause)):
                handler.wfile.write(b"x" * piece)
                handler.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass  # the client gave up, as it should
    return respond


def silent(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", "10")
    handler.end_headers()
    time.sleep(2)


@pytest.mark.parametrize("body, limits, message", [
    (truncated_chunked, {}, r"ended early: the connection closed after 100 bytes"),
    (short_with_length, {}, r"ended early: .*100 .*bytes"),
    (trickle(0.05, 1), {"timeout": 0.3, "min_rate": 1000}, r"too slow: \d+ bytes/s on average .* minimum of 1000"),
    (trickle(0.02, 2000), {"timeout": 5, "deadline": 0.3}, r"passed its deadline of 0.3 s"),
    (silent, {"timeout": 0.3}, r"timed out"),
])
def test_bad_downloads_are_one_line_and_bounded(tmp_path, loopback, body, limits, message):
    from src.checkpoint import download_file

    with loopback({"f": body}) as server:
        start = time.monotonic()
        with pytest.raises(CheckpointError, match=message):
            download_file(server.url("f"), tmp_path / "f", progress=False, **limits)
        assert time.monotonic() - start < 2.0
    assert os.listdir(tmp_path) == []


def test_the_download_timeout_is_set_from_hub_load(tmp_path, loopback, monkeypatch):
    import src.checkpoint as ckpt
    from src.hub import load

    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path))
    with loopback({"r.ckpt": silent}) as server:
        asset = ckpt.Asset("r.ckpt", server.url("r.ckpt"), "0" * 64, "snnmlp_t", 0.0, "mindspore")
        monkeypatch.setitem(ckpt.ASSETS, asset.name, asset)
        monkeypatch.setitem(ckpt.DEFAULT_ASSETS, "snnmlp_t", asset.name)
        # The server stays silent for 2 s: only a timeout shorter than that reports "timed out".
        with pytest.raises(CheckpointError, match="timed out"):
            load("snnmlp_t", pretrained=True, timeout=0.3, **SMALL)


@pytest.mark.parametrize("argv, message", [
    (["--depths", "[1,2"], r"depths: cannot read '\[1,2' as a list \(.*\); write it like 1,2,3 or \[1,2,3\]"),
    (["--lr", "0"], "lr must be positive, got 0.0"),
    (["--lr", "1e-4", "--min_lr", "1e-3"], r"min_lr \(0.001\) exceeds lr \(0.0001\)"),
    (["--image_size", "40"], r"image_size 40 is not a multiple of 32 \(patch_size 4 halved over 4 stages\)"),
    (["--image_size", "96", "--patch_size", "8", "--depths", "1,1,1,1"], "image_size 96 is not a multiple of 64"),
])
def test_bad_settings_are_refused_at_parse_time(argv, message):
    from src.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message) as info:
        load_config(argv)
    assert "\n" not in str(info.value)


def test_output_dir_that_is_a_file_is_one_line(tmp_path, image_folder):
    from src.config import ConfigError, load_config
    from src.engine import trainer

    data = image_folder(num_classes=2, per_class={"train": 2, "val": 1}, size=(32, 32))
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ConfigError, match="output_dir .*taken: cannot use it as a folder \\(it is a file\\)"):
        trainer.train(load_config(["--dataset_path", str(data), "--num_classes", "2",
                                   "--output_dir", str(tmp_path / "taken")]))


def test_a_folder_or_an_empty_file_is_named_as_such(tmp_path):
    from src.checkpoint import load_checkpoint_strict
    from src.snn_mlp import create_model

    net = create_model("snnmlp_t", num_classes=3, **SMALL)
    with pytest.raises(CheckpointError, match=f"^{tmp_path} is a directory, not a checkpoint file$"):
        load_checkpoint_strict(net, tmp_path)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.ckpt: it is empty \(0 bytes") as info:
        load_checkpoint_strict(net, tmp_path / "empty.ckpt")
    assert "filter_prefix" not in str(info.value)
