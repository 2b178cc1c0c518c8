"""Checkpoints: sidecars, verification, strict loads, crash-safe saves, the asset download cache."""
import hashlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

import src.checkpoint as ckpt
from src.checkpoint import (Asset, CheckpointError, fetch_asset, load_checkpoint_strict, read_sidecar,
                            save_checkpoint_atomic, sha256_file, verify_file)
from src.models import to_official_name, to_structural_name

ROOT = Path(__file__).resolve().parents[1]


class LoopbackServer:
    """HTTP on 127.0.0.1 serving ``files`` (url path -> bytes, or a function that answers the request
    handler itself: short, slow or malformed responses); it shuts itself down after ``lifetime`` seconds
    even if the test never stops it."""

    def __init__(self, files, lifetime=60):
        self.files = dict(files)
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append(name)
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                if callable(body):
                    body(self)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.timer = threading.Timer(lifetime, self.httpd.shutdown)

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("SNNMLP_OFFLINE", raising=False)


def tiny_net(hidden=4):
    return nn.SequentialCell([nn.Dense(3, hidden), nn.Dense(hidden, 2)])


def values(net):
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def flip_byte(path, offset):
    os.chmod(path, 0o600)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


# --- sidecars and verification ------------------------------------------------------------------------

def test_sidecar_is_sha256sum_format(tmp_path):
    path = tmp_path / "model.ckpt"
    sha = save_checkpoint_atomic(tiny_net(), path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest() == sha256_file(path)
    assert (tmp_path / "model.ckpt.sha256").read_text() == f"{sha}  model.ckpt\n"
    assert read_sidecar(path) == sha
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--status", "model.ckpt.sha256"], cwd=tmp_path, check=True)


def test_verify_refuses_mismatch_naming_both_hashes(tmp_path):
    path = tmp_path / "model.ckpt"
    good = save_checkpoint_atomic(tiny_net(), path)
    assert verify_file(path) == good
    assert verify_file(path, good.upper()) == good
    wrong = "0" * 64
    with pytest.raises(CheckpointError, match=f"expected {wrong}.*got {good}"):
        verify_file(path, wrong)
    flip_byte(path, 40)
    actual = sha256_file(path)
    with pytest.raises(CheckpointError, match=f"expected {good} \\(its sidecar .*got {actual}"):
        verify_file(path)


@pytest.mark.parametrize("expected,message", [("abc", "not a SHA-256"), (None, "checkpoint not found")])
def test_verify_bad_arguments(tmp_path, expected, message):
    path = tmp_path / "model.ckpt"
    if expected is not None:
        save_checkpoint_atomic(tiny_net(), path)
    with pytest.raises(CheckpointError, match=message):
        verify_file(path, expected)


def test_path_without_suffix_gets_ckpt_like_mindspore(tmp_path):
    save_checkpoint_atomic(tiny_net(), tmp_path / "model")
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt", "model.ckpt.sha256"]


# --- strict load ---------------------------------------------------------------------------------------

def test_strict_load_returns_metadata_and_skips_optimizer_state(tmp_path):
    source = tiny_net()
    entries = {**{p.name: p.asnumpy() for p in source.get_parameters()},
               "moments.0.weight": np.ones((4, 3), np.float32), "adam_v.1.bias": np.ones(2, np.float32),
               "learning_rate": np.float32(0.1), "learning_rate_group_1": np.float32(0.2),
               "global_step": np.array([7], np.int32)}
    path = tmp_path / "model.ckpt"
    save_checkpoint_atomic(entries, path, append_dict={"epoch": 3, "step": 120, "note": "best"})
    target = tiny_net()
    assert load_checkpoint_strict(target, path) == {"epoch": 3, "step": 120, "note": "best"}
    for name, value in values(source).items():
        np.testing.assert_array_equal(values(target)[name], value)


def save_entries(tmp_path, entries):
    path = tmp_path / "model.ckpt"
    save_checkpoint_atomic(entries, path)
    return path


@pytest.mark.parametrize("change,message", [
    (lambda e: e.pop("1.bias"), r"1 network parameters missing \(1\.bias\)"),
    (lambda e: e.update({"2.weight": np.ones((2, 2), np.float32)}), r"1 unexpected entries \(2\.weight\)"),
    (lambda e: e.update({"0.weight": np.ones((5, 3), np.float32)}),
     r"1 shape mismatches \(0\.weight \(5, 3\) vs network \(4, 3\)\)"),
])
def test_strict_load_refuses_and_assigns_nothing(tmp_path, change, message):
    entries = {p.name: p.asnumpy() + 1 for p in tiny_net().get_parameters()}
    change(entries)
    path = save_entries(tmp_path, entries)
    target = tiny_net()
    before = values(target)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint_strict(target, path)
    for name, value in values(target).items():
        np.testing.assert_array_equal(value, before[name])


def test_float_entries_are_cast_and_other_types_refused(tmp_path):
    path = save_entries(tmp_path, {"0.weight": np.full((4, 3), 0.5, np.float16), "0.bias": np.ones(4),
                                   "1.weight": np.ones((2, 4), np.float32), "1.bias": np.ones(2, np.float32)})
    target = tiny_net()
    load_checkpoint_strict(target, path)
    assert target[0].weight.dtype == ms.float32 and values(target)["0.weight"][0, 0] == 0.5
    path = save_entries(tmp_path, {**{p.name: p.asnumpy() for p in tiny_net().get_parameters()},
                                   "1.bias": np.ones(2, np.int32)})
    with pytest.raises(CheckpointError, match=r"1 type mismatches \(1\.bias Int32 vs network Float32\)"):
        load_checkpoint_strict(tiny_net(), path)


def test_refusal_lists_only_the_first_names(tmp_path):
    path = save_entries(tmp_path, {f"extra{i}.w": np.ones(1, np.float32) for i in range(9)})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_strict(tiny_net(), path)
    message = str(info.value)
    assert "9 unexpected entries (extra0.w, extra1.w, extra2.w, extra3.w, extra4.w, … (4 more))" in message
    assert "4 network parameters missing" in message and "\n" not in message


def test_exclude_keeps_a_new_head(tmp_path):
    source = tiny_net()
    path = tmp_path / "model.ckpt"
    save_checkpoint_atomic(source, path)
    target = nn.SequentialCell([nn.Dense(3, 4), nn.Dense(4, 5)])  # another number of classes
    head_before = values(target)["1.weight"]
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint_strict(target, path)
    load_checkpoint_strict(target, path, exclude=("1.",))
    np.testing.assert_array_equal(values(target)["0.weight"], values(source)["0.weight"])
    np.testing.assert_array_equal(values(target)["1.weight"], head_before)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_files_give_one_line(tmp_path, damage):
    path = tmp_path / "model.ckpt"
    save_checkpoint_atomic(tiny_net(), path)
    data = path.read_bytes()
    os.chmod(path, 0o600)
    path.write_bytes({"garbage": b"not a checkpoint" * 8, "truncated": data[:len(data) // 2], "empty": b""}[damage])
    os.remove(tmp_path / "model.ckpt.sha256")  # no sidecar: the parser itself must refuse cleanly
    with pytest.raises(CheckpointError, match="cannot read the checkpoint") as info:
        load_checkpoint_strict(tiny_net(), path)
    assert "\n" not in str(info.value)


def test_truncated_file_with_sidecar_is_caught_before_parsing(tmp_path):
    path = tmp_path / "model.ckpt"
    save_checkpoint_atomic(tiny_net(), path)
    data = path.read_bytes()
    os.chmod(path, 0o600)
    path.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        load_checkpoint_strict(tiny_net(), path)


def small_snnmlp(**kwargs):
    from src.snn_mlp import create_model
    return create_model("snnmlp", num_classes=5, embed_dim=8, depths=(2, 2, 2, 2), lif_backend="primitive",
                        **kwargs)


def test_structural_layer_names_load_into_official_network(tmp_path):
    source, target = small_snnmlp(), small_snnmlp()
    structural = {to_structural_name(p.name): p.asnumpy() + 0.5 for p in source.get_parameters()}
    assert any(name.startswith("layers.3.blocks.1.") for name in structural)
    path = save_entries(tmp_path, structural)
    load_checkpoint_strict(target, path)
    for p in target.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), structural[to_structural_name(p.name)])


def test_name_mapping_is_a_bijection_on_the_network():
    official = [p.name for p in small_snnmlp().get_parameters()]
    structural = [to_structural_name(n) for n in official]
    assert "layers.0.blocks.1.norm1.gamma" in structural and "layers.1.blocks.0.norm1.gamma" in structural
    assert "layers.2.downsample.norm.gamma" in structural and "head.weight" in structural
    assert [to_official_name(n) for n in structural] == official
    assert len(set(structural)) == len(official)


# --- crash-safe saves ----------------------------------------------------------------------------------

def constant_entries(value, size=1024):
    return {"w": np.full((size, 256), value, np.float32)}


def saved_value(path):
    verify_file(path)
    return float(ms.load_checkpoint(str(path))["w"].asnumpy()[0, 0])


def assert_no_leftovers(directory):
    leftovers = [n for n in os.listdir(directory) if ".partial." in n or n.endswith((".pending", ".tmp"))]
    assert leftovers == []


def test_failure_midway_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.ckpt"
    save_checkpoint_atomic(constant_entries(1.0), path)
    real_save = ms.save_checkpoint

    def save_then_fail(obj, name, **kwargs):
        real_save(obj, name, **kwargs)
        os.chmod(name, 0o600)
        with open(name, "r+b") as f:
            f.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ms, "save_checkpoint", save_then_fail)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint_atomic(constant_entries(2.0), path)
    assert saved_value(path) == 1.0
    assert_no_leftovers(tmp_path)


CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    import src.checkpoint as ckpt
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "loop":
        for value in range(2, 10**6):
            ckpt.save_checkpoint_atomic({{"w": np.full((2048, 1024), float(value), np.float32)}}, path)
            print("saved", value, flush=True)
    real_replace = os.replace
    def replace_then_die(src, dst):
        if mode == "before_rename" and str(dst) == path:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
        if mode == "between_renames" and str(dst) == path:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace_then_die
    ckpt.save_checkpoint_atomic({{"w": np.full((1024, 256), 2.0, np.float32)}}, path)
""").format(root=str(ROOT))


def run_child(path, mode):
    return subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("mode,survivor", [("before_rename", 1.0), ("between_renames", 2.0)])
def test_kill_during_save_leaves_a_verifiable_checkpoint(tmp_path, mode, survivor):
    path = tmp_path / "model.ckpt"
    save_checkpoint_atomic(constant_entries(1.0), path)
    assert run_child(path, mode).returncode == -signal.SIGKILL
    # Killed after the rename, the new checkpoint's sidecar was still pending: verify completes the pair.
    assert saved_value(path) == survivor
    assert read_sidecar(path) == sha256_file(path)
    save_checkpoint_atomic(constant_entries(3.0), path)  # the next save clears what the dead one left
    assert saved_value(path) == 3.0
    assert_no_leftovers(tmp_path)


def test_save_after_an_interrupted_one_completes_it_first(tmp_path, monkeypatch):
    path = tmp_path / "model.ckpt"
    save_checkpoint_atomic(constant_entries(1.0), path)
    assert run_child(path, "between_renames").returncode == -signal.SIGKILL

    def failing_save(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ms, "save_checkpoint", failing_save)
    with pytest.raises(CheckpointError, match="Input/output error"):
        save_checkpoint_atomic(constant_entries(3.0), path)
    assert saved_value(path) == 2.0


def test_kill_at_a_random_moment_of_repeated_saves(tmp_path):
    path = tmp_path / "model.ckpt"
    save_checkpoint_atomic(constant_entries(1.0), path)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "loop"], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().startswith("saved 2")
        time.sleep(random.uniform(0.0, 0.3))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    assert saved_value(path) >= 2.0


# --- assets: download and cache ------------------------------------------------------------------------

PAYLOAD = b"snn-mlp test weights " * 5000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_asset_registry_has_the_official_hub_checkpoint():
    asset = ckpt.get_asset("snnmlp_t")
    assert asset.sha256 == "760515ca0fd2a80d02d43fa4e4dceab368622f673d807dafc4b9545e87810f1d"
    assert asset.url.endswith("/" + asset.name) and asset.top1 == 81.8 and asset.framework == "mindspore"
    assert {ckpt.get_asset(v).variant for v in ("snnmlp_t", "snnmlp_s", "snnmlp_b")} == \
        {"snnmlp_t", "snnmlp_s", "snnmlp_b"}
    with pytest.raises(CheckpointError, match="unknown asset 'snnmlp_x'; known: .*snnmlp_t"):
        ckpt.get_asset("snnmlp_x")


def test_download_is_verified_cached_and_reused(tmp_path, capfd):
    with LoopbackServer({"w.ckpt": PAYLOAD}) as server:
        asset = Asset("w.ckpt", server.url("w.ckpt"), PAYLOAD_SHA, "snnmlp_t", 0.0, "mindspore")
        path = fetch_asset(asset, root=tmp_path)
        assert Path(path).read_bytes() == PAYLOAD
        assert fetch_asset(asset, root=tmp_path) == path
        assert server.requests == ["w.ckpt"]
    assert "downloading w.ckpt" in capfd.readouterr().err
    # The published hash is the record: nothing is kept beside the file, which is hashed on every use.
    assert sorted(os.listdir(tmp_path)) == ["w.ckpt"]
    assert verify_file(path, PAYLOAD_SHA) == PAYLOAD_SHA


def test_download_failing_verification_is_deleted(tmp_path):
    tampered = PAYLOAD[:-1] + b"!"
    with LoopbackServer({"w.ckpt": tampered}) as server:
        asset = Asset("w.ckpt", server.url("w.ckpt"), PAYLOAD_SHA, "snnmlp_t", 0.0, "mindspore")
        with pytest.raises(CheckpointError, match=f"expected SHA-256 {PAYLOAD_SHA}, got "
                                                  f"{hashlib.sha256(tampered).hexdigest()}; the file was deleted"):
            fetch_asset(asset, root=tmp_path, progress=False)
    assert os.listdir(tmp_path) == []


def tamper_keeping_size(path):
    os.chmod(path, 0o600)
    data = Path(path).read_bytes()
    Path(path).write_bytes(b"X" + data[1:])
    # A tamperer who keeps the size; the mtime moves, which is what the memo watches.
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_tampered_cache_is_downloaded_again(tmp_path, caplog):
    with LoopbackServer({"w.ckpt": PAYLOAD}) as server:
        asset = Asset("w.ckpt", server.url("w.ckpt"), PAYLOAD_SHA, "snnmlp_t", 0.0, "mindspore")
        path = fetch_asset(asset, root=tmp_path, progress=False)
        tamper_keeping_size(path)
        with caplog.at_level(logging.WARNING, logger="src.checkpoint"):
            assert fetch_asset(asset, root=tmp_path, progress=False) == path
        assert server.requests == ["w.ckpt", "w.ckpt"]
    assert Path(path).read_bytes() == PAYLOAD
    assert "does not match its hash" in caplog.text and "downloading it again" in caplog.text


def test_tampered_cache_is_refused_offline(tmp_path, monkeypatch):
    with LoopbackServer({"w.ckpt": PAYLOAD}) as server:
        asset = Asset("w.ckpt", server.url("w.ckpt"), PAYLOAD_SHA, "snnmlp_t", 0.0, "mindspore")
        path = fetch_asset(asset, root=tmp_path, progress=False)
        tamper_keeping_size(path)
        monkeypatch.setenv("SNNMLP_OFFLINE", "1")
        with pytest.raises(CheckpointError, match=f"expected {PAYLOAD_SHA}, got .*offline"):
            fetch_asset(asset, root=tmp_path)
        assert server.requests == ["w.ckpt"]
    os.remove(path)
    with pytest.raises(CheckpointError, match="not in the cache .* downloads are off"):
        fetch_asset(asset, root=tmp_path, offline=True)


def test_unrecorded_hash_is_printed_then_enforced(tmp_path, capfd):
    with LoopbackServer({"r.pt": PAYLOAD}) as server:
        asset = Asset("r.pt", server.url("r.pt"), None, "snnmlp_t", 0.0, "pytorch")
        path = fetch_asset(asset, root=tmp_path, progress=False)
        assert f"r.pt: SHA-256 {PAYLOAD_SHA}" in capfd.readouterr().err
        ckpt.remember_asset(asset, root=tmp_path)  # what hub.load does once the file loaded as its variant
        tamper_keeping_size(path)
        fetch_asset(asset, root=tmp_path, progress=False)  # caught against the remembered hash
        assert server.requests == ["r.pt", "r.pt"]
    assert Path(path).read_bytes() == PAYLOAD


def test_unreachable_asset_is_one_clear_error(tmp_path):
    with LoopbackServer({}) as server:
        asset = Asset("w.ckpt", server.url("w.ckpt"), PAYLOAD_SHA, "snnmlp_t", 0.0, "mindspore")
        with pytest.raises(CheckpointError, match=f"cannot download {asset.url}: .*Not Found"):
            fetch_asset(asset, root=tmp_path, progress=False)
    assert os.listdir(tmp_path) == []


def test_cache_dir_follows_snnmlp_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path / "cache"))
    assert ckpt.cache_dir() == str(tmp_path / "cache")
    monkeypatch.delenv("SNNMLP_HOME")
    assert ckpt.cache_dir() == os.path.expanduser("~/.cache/snn_mlp")


def test_checkpoint_warnings_reach_the_snn_mlp_logger(tmp_path, monkeypatch):
    # setup_logging configures only the 'snn_mlp' logger (handlers, propagate off); a module logging under
    # its __name__ never reached train.log.
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    parent = logging.getLogger("snn_mlp")
    monkeypatch.setattr(parent, "propagate", False)
    parent.addHandler(handler)
    try:
        asset = Asset("unpublished.pt", "http://127.0.0.1:9/unpublished.pt", None, "snnmlp_t", 0.0, "pytorch")
        (tmp_path / asset.name).write_bytes(b"weights")
        fetch_asset(asset, root=str(tmp_path), offline=True)
    finally:
        parent.removeHandler(handler)
    assert any("has no published or remembered hash" in r.getMessage() for r in records)


def test_a_file_named_after_a_release_is_held_to_its_published_hash(tmp_path, monkeypatch):
    # The one policy for eval.py, train.py --ckpt_path and export.py (all go through check_file): without
    # --ckpt_sha256 or a sidecar, a release's file name brings its published hash with it.
    import src.checkpoint as ckpt

    release = tmp_path / "release.ckpt"
    release.write_bytes(b"the published weights")
    published = sha256_file(release)
    monkeypatch.setitem(ckpt.ASSETS, "release.ckpt", Asset("release.ckpt", "", published, "snnmlp_t", 0.0,
                                                           "mindspore"))
    assert ckpt.check_file(release) == (published, "the published hash of release.ckpt")
    release.write_bytes(b"other weights under the release's name")
    with pytest.raises(CheckpointError, match=f"SHA-256 mismatch for {release}: expected {published} "
                                              f"\\(the published hash of release.ckpt\\)"):
        ckpt.check_file(release)
    given = sha256_file(release)
    assert ckpt.check_file(release, given) == (given, "the expected hash")  # --ckpt_sha256 wins
    write_sidecar = ckpt.write_sidecar(release)
    assert ckpt.check_file(release)[1] == f"its sidecar {release}.sha256" and write_sidecar == given


def test_starting_from_weights_hashes_the_file_once(tmp_path, monkeypatch):
    """Every load hashes the whole file, once: verify_file's hash is reused by the reads after it (the head
    probe and the strict load), which hashed the file again each (three passes over a 113-345 MB file)."""
    import src.checkpoint.integrity as integrity
    from src.engine.builders import load_initial_weights

    path = tmp_path / "weights.ckpt"
    ckpt.save_checkpoint_atomic(small_snnmlp(), str(path))
    hashed = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda p, *a, **k: hashed.append(p) or real(p, *a, **k))
    load_initial_weights(small_snnmlp(), str(path))
    assert hashed == [str(path)]
    path.write_bytes(path.read_bytes()[:-1] + b"\0")  # the one hash still guards the load
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        load_initial_weights(small_snnmlp(), str(path))
