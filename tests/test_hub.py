"""The MindSpore Hub entry (hub_conf.py / mindspore_hub_conf.py) and src/hub.py."""
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import src.checkpoint as ckpt
from src.checkpoint import Asset, CheckpointError, save_checkpoint_atomic
from test_checkpoint import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
SMALL = dict(embed_dim=8, depths=(1, 1, 1, 1), lif_backend="primitive")


def load_conf(filename):
    spec = importlib.util.spec_from_file_location(f"conf_under_test_{filename[:-3]}", ROOT / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("SNNMLP_OFFLINE", raising=False)
    return tmp_path


def params(net):
    return {p.name: p.asnumpy() for p in net.get_parameters()}


def test_mindspore_hub_style_exec_builds_official_snnmlp_t(tmp_path):
    # What mindspore_hub does with a downloaded repository: exec its mindspore_hub_conf.py by path, from
    # another working directory, and call create_network. The bogus argv proves nothing parses it.
    code = f"""
import importlib.util, json, sys
sys.argv = ["hub", "--not-a-flag", "x"]
spec = importlib.util.spec_from_file_location("mindspore_hub_conf", {str(ROOT / 'mindspore_hub_conf.py')!r})
conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conf)
model_code_imported_early = "src.snn_mlp" in sys.modules
net = conf.create_network("snn_mlp")
print(json.dumps(dict(early=model_code_imported_early, num_classes=net.num_classes,
                      params=[[p.name, list(p.shape)] for p in net.get_parameters()])))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["early"] is False and report["num_classes"] == 1000
    rows = (REFERENCE / "snnmlp_t_params.txt").read_text().strip().splitlines()
    expected = [[name, [int(d) for d in re.findall(r"\d+", shape)]] for name, shape in (r.split("\t") for r in rows)]
    assert report["params"] == expected


def test_unknown_name_and_positional_arguments_are_refused():
    conf = load_conf("hub_conf.py")
    with pytest.raises(ValueError, match="unknown SNN-MLP model 'resnet50'; valid names: snn_mlp, snnmlp_t, "
                                         "snnmlp_s, snnmlp_b"):
        conf.create_network("resnet50")
    with pytest.raises(TypeError, match="keywords"):
        conf.create_network("snn_mlp", 10)


def test_keyword_arguments_reach_the_network():
    net = load_conf("mindspore_hub_conf.py").create_network("snnmlp_t", num_classes=7, **SMALL)
    assert net.num_classes == 7 and tuple(net.head.weight.shape) == (7, 64)


def test_ckpt_path_is_verified_and_loaded_strictly(tmp_path):
    from src.snn_mlp import create_model
    conf = load_conf("hub_conf.py")
    source = create_model("snnmlp_t", num_classes=7, **SMALL)
    path = tmp_path / "mine.ckpt"
    save_checkpoint_atomic(source, path)
    loaded = conf.create_network("snnmlp_t", num_classes=7, ckpt_path=str(path), **SMALL)
    for name, value in params(source).items():
        np.testing.assert_array_equal(params(loaded)[name], value)
    with pytest.raises(CheckpointError, match="shape mismatches .*head.weight"):
        conf.create_network("snnmlp_t", num_classes=5, ckpt_path=str(path), **SMALL)
    os.chmod(path, 0o600)
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        conf.create_network("snnmlp_t", num_classes=7, ckpt_path=str(path), **SMALL)


def register(monkeypatch, asset):
    monkeypatch.setitem(ckpt.ASSETS, asset.name, asset)
    monkeypatch.setitem(ckpt.DEFAULT_ASSETS, asset.variant, asset.name)


def test_pretrained_downloads_verifies_and_loads(hub_env, monkeypatch):
    from src.snn_mlp import create_model
    source = create_model("snnmlp_t", num_classes=7, **SMALL)
    save_checkpoint_atomic(source, hub_env / "release.ckpt")
    data = (hub_env / "release.ckpt").read_bytes()
    conf = load_conf("hub_conf.py")
    with LoopbackServer({"release.ckpt": data}) as server:
        register(monkeypatch, Asset("release.ckpt", server.url("release.ckpt"), hashlib.sha256(data).hexdigest(),
                                    "snnmlp_t", 80.0, "mindspore", num_classes=7))
        net = conf.create_network("snn_mlp", pretrained=True, num_classes=7, **SMALL)
        # Fine-tuning to 3 classes: everything but the head comes from the release.
        finetune = conf.create_network("snnmlp_t", pretrained=True, num_classes=3, **SMALL)
        assert server.requests == ["release.ckpt"]
    for name, value in params(source).items():
        np.testing.assert_array_equal(params(net)[name], value)
        if not name.startswith("head."):
            np.testing.assert_array_equal(params(finetune)[name], value)
    assert tuple(finetune.head.weight.shape) == (3, 64)
    # The cached copy serves offline use, and is still checked against the registered hash.
    conf.create_network("snn_mlp", pretrained=True, num_classes=7, offline=True, **SMALL)


def test_pretrained_pytorch_release_is_converted_once(hub_env, monkeypatch):
    torch = pytest.importorskip("torch")
    from torch_reference import TorchSNNMLP, randomize_
    from src.convert import to_mindspore_names
    reference = randomize_(TorchSNNMLP(num_classes=7, embed_dim=8, depths=(1, 1, 1, 1)))
    torch.save(reference.state_dict(), hub_env / "release.pt")
    data = (hub_env / "release.pt").read_bytes()
    expected = to_mindspore_names({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    conf = load_conf("hub_conf.py")
    with LoopbackServer({"release.pt": data}) as server:
        register(monkeypatch, Asset("release.pt", server.url("release.pt"), None, "snnmlp_t", 80.0, "pytorch",
                                    num_classes=7))
        for _ in range(2):
            net = conf.create_network("snnmlp_t", pretrained=True, num_classes=7, **SMALL)
            for name, value in params(net).items():
                np.testing.assert_array_equal(value, expected[name])
        assert server.requests == ["release.pt"]
    assert sorted(os.listdir(hub_env / "cache")) == ["release.ckpt", "release.ckpt.sha256", "release.pt",
                                                     "release.pt.verified.json"]


def test_hub_markdown_matches_the_asset_registry():
    text = (ROOT / "snn_mlp.md").read_text()
    front = text.split("\n---\n")[1]
    keys = set(re.findall(r"^\s*([a-z0-9-]+):", front, flags=re.M))
    assert keys >= {"model-name", "backbone-name", "module-type", "fine-tunable", "input-shape", "model-version",
                    "train-dataset", "accuracy", "author", "update-time", "repo-link", "user-id", "used-for",
                    "train-backend", "infer-backend", "mindspore-version", "asset", "file-format", "asset-link",
                    "asset-sha256", "license", "summary"}
    asset = ckpt.get_asset("snnmlp_t")
    assert re.search(rf"asset-link: <{re.escape(asset.url)}>", front)
    assert re.search(rf"asset-sha256: {asset.sha256}$", front, flags=re.M)
    assert re.search(rf"accuracy: {asset.top1}$", front, flags=re.M)
