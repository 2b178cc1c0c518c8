"""The MindSpore Hub entry (hub_conf.py / mindspore_hub_conf.py) and src/hub.py."""
import hashlib
import importlib.util
import json
import os
import re
import shutil
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


def hub_markdown_header():
    """The front matter of snn_mlp.md as the client's CellInfo reads it (YAML between the two '---')."""
    import yaml
    return yaml.safe_load((ROOT / "snn_mlp.md").read_text().split("\n---\n")[1])


def publish_model_folder(hub_dir):
    """The model folder the client clones: ``<hub>/mindspore/2.10/<basename of repo-link>`` holding the
    runtime files of this repository."""
    folder = hub_dir / "mindspore" / "2.10" / os.path.basename(hub_markdown_header()["repo-link"].strip("<>"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src", folder / "src", ignore=ignore)
    for name in ("hub_conf.py", "mindspore_hub_conf.py"):
        shutil.copy(ROOT / name, folder / name)
    return folder


# What mindspore_hub 2.0.0 (mindspore_hub/load.py) does with a model folder: put it first on sys.path, exec
# its mindspore_hub_conf.py under that file name, call create_network(model-name.lower(), *args, **kwargs)
# with pretrained/force_reload/source already removed, then load the asset itself, non-strictly.
CLIENT = """
import importlib.util, json, os, sys
import mindspore as ms
sys.argv = ["hub", "--not-a-flag", "x"]  # nothing may parse the client's command line

def client_load(path, name, asset, *args, **kwargs):
    sys.path.insert(0, path)
    config_path = os.path.join(os.path.abspath(path), "mindspore_hub_conf.py")
    spec = importlib.util.spec_from_file_location("mindspore_hub_conf.py", config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = getattr(module, "create_network")(name.lower(), *args, **kwargs)
    assert isinstance(net, ms.nn.Cell)
    not_loaded = ms.load_param_into_net(net, ms.load_checkpoint(asset))
    return net, [list(n) for n in not_loaded]

report = {}
"""


def run_client(script, cwd):
    result = subprocess.run([sys.executable, "-c", CLIENT + script], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    """A published model folder and a 7-class asset of the small network saved beside it."""
    from src.snn_mlp import create_model
    hub_dir = tmp_path_factory.mktemp("hub")
    folder = publish_model_folder(hub_dir)
    asset = hub_dir / "mindspore" / "2.10" / "snn_mlp_asset.ckpt"
    save_checkpoint_atomic(create_model("snnmlp_t", num_classes=7, image_size=64, **SMALL), asset)
    return folder, asset


def test_markdown_is_what_the_client_reads():
    header = hub_markdown_header()
    assert header["model-name"] == "snn_mlp" and header["fine-tunable"] is True
    assert header["module-type"].split("-")[0] in ("cv",) and isinstance(header["accuracy"], float)
    repo_link = header["repo-link"].strip("<>")
    assert re.match(r"^https://(gitee|github)\.com/[^/]+/[^/]+/tree/[^/]+/.+[^/]$", repo_link), repo_link
    text = (ROOT / "snn_mlp.md").read_text()
    # The uid the user types, the verified one-call path, and the client's real behaviour are all stated.
    for phrase in ('mindspore_hub.load("mindspore/2.10/snn_mlp"', 'src.hub.load("snn_mlp", pretrained=True)',
                   "only when it downloads", "non-strict"):
        assert phrase in text, phrase


def test_positional_arguments_follow_the_snnmlp_signature():
    conf = load_conf("hub_conf.py")
    with pytest.raises(ValueError, match="unknown SNN-MLP model 'resnet50'; valid names: snn_mlp, snnmlp_t, "
                                         "snnmlp_s, snnmlp_b"):
        conf.create_network("resnet50")
    net = conf.create_network("snnmlp_t", 5, 64, 4, 3, 8, (1, 1, 1, 1), lif_backend="primitive")
    assert net.num_classes == 5 and tuple(net.head.weight.shape) == (5, 64)
    with pytest.raises(TypeError, match="'num_classes' both positionally and as a keyword"):
        conf.create_network("snn_mlp", 10, num_classes=10)
    with pytest.raises(TypeError, match="at most 16 positional arguments"):
        conf.create_network("snn_mlp", *range(17))
    with pytest.raises(TypeError, match="the first positional argument is num_classes; give pretrained=True"):
        conf.create_network("snn_mlp", True)


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
    from reference.snn_mlp_torch import TorchSNNMLP, randomize_
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


def test_mindspore_hub_client_contract(hub_folder, tmp_path):
    # One process, as a user's. Every model-zoo network ships a package named 'src': one is imported before
    # this network (loaded in the client's positional and keyword forms), one after it, and then this
    # network comes again from a second published folder.
    folder, asset = hub_folder
    name = hub_markdown_header()["model-name"]
    second = publish_model_folder(tmp_path / "second_hub")
    for other in ("before", "after"):
        (tmp_path / other / "src").mkdir(parents=True)
        (tmp_path / other / "src" / "__init__.py").write_text(f"WHO = {other!r}\n")
        (tmp_path / other / "src" / "resnet.py").write_text("DEPTH = 50\n")
    small = ", ".join(f"{k}={v!r}" for k, v in SMALL.items())
    report = run_client(f"""
import numpy as np
ms.set_context(mode=ms.GRAPH_MODE)
sys.path.insert(0, {str(tmp_path / 'before')!r})
import src, src.resnet
positional, report["positional_missing"] = client_load({str(folder)!r}, {name!r}, {str(asset)!r}, 7, 64, {small})
keyword, report["keyword_missing"] = client_load({str(folder)!r}, {name!r}, {str(asset)!r}, num_classes=7,
                                                 image_size=64, {small})
expected = ms.load_checkpoint({str(asset)!r})
report["equal"] = all((p.asnumpy() == expected[p.name].asnumpy()).all()
                      for net in (positional, keyword) for p in net.get_parameters())
report["classes"] = [positional.num_classes, keyword.num_classes]
report["before"] = [sys.modules["src"].WHO, sys.modules["src.resnet"].DEPTH]
sys.path.insert(0, {str(tmp_path / 'after')!r})
for module in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
    del sys.modules[module]  # the next zoo network imports its own src, as a fresh process would find it
import src as after, src.resnet
report["after"] = after.WHO
second, report["second_missing"] = client_load({str(second)!r}, {name!r}, {str(asset)!r}, num_classes=7,
                                               image_size=64, {small})
report["private"] = sorted({{type(net).__module__.split(".")[0] for net in (keyword, second)}} - {{"src"}})
report["files"] = [os.path.dirname(sys.modules[type(net).__module__].__file__) for net in (keyword, second)]
x = ms.Tensor(np.random.RandomState(0).randn(1, 3, 64, 64).astype(np.float32))
keyword.set_train(False); second.set_train(False)
report["same_logits"] = bool(np.array_equal(keyword(x).asnumpy(), second(x).asnumpy()))
report["src"] = [sys.modules["src"].WHO, sys.modules["src.resnet"].DEPTH]
print(json.dumps(report))
""", cwd=tmp_path)
    assert report["classes"] == [7, 7] and report["equal"] is True and report["before"] == ["before", 50]
    assert report["positional_missing"] == report["keyword_missing"] == report["second_missing"] == [[], []]
    assert report["after"] == "after" and report["src"] == ["after", 50]
    assert len(report["private"]) == 2  # one private package per folder, neither named 'src'
    assert report["files"] == [str(folder / "src"), str(second / "src")]
    assert report["same_logits"] is True


def test_checkout_keeps_the_r19_import_path():
    # From a checkout 'src' is this package: the hub entry reuses it instead of loading a private copy.
    import src.hub
    import src.snn_mlp
    net = load_conf("hub_conf.py").create_network("snn_mlp", 3, **SMALL)
    assert type(net) is src.snn_mlp.SNNMLP and net.num_classes == 3


def test_markdown_names_are_the_model_rooms():
    from src.models import list_models

    text = (ROOT / "snn_mlp.md").read_text()
    names = re.search(r"^Names: (.+?) \(`src\.models\.list_models", text, re.M | re.S).group(1)
    assert re.findall(r"`([a-z_]+)`", names) == list_models(custom=False)
