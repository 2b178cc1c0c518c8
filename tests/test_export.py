"""export.py: MINDIR and ONNX files that reload and reproduce the network's logits."""
import os

import numpy as np
import pytest
import yaml

import mindspore as ms
from mindspore import nn

import export as export_cli  # by its module name: MindSpore's graph parser re-imports the Cells it compiles
from src.checkpoint import read_sidecar, save_checkpoint_atomic, sha256_file
from src.config import load_config, save_config
from src.snn_mlp import create_model

ARCH = dict(embed_dim=16, depths=[1, 1, 2, 1], lif=4)
NUM_CLASSES = 10


def export(*argv):
    return export_cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small trained-looking run: checkpoint, sidecar and the config.yaml training writes beside them."""
    directory = tmp_path_factory.mktemp("run")
    net = create_model("snnmlp", num_classes=NUM_CLASSES, lif_backend="primitive", **ARCH)
    rng = np.random.RandomState(0)
    for param in net.get_parameters():  # every weight distinct from its initial value
        param.set_data(ms.Tensor(param.asnumpy() + rng.normal(0, 0.05, param.shape).astype(np.float32)))
    net.set_train(False)
    save_checkpoint_atomic(net, directory / "best.ckpt")
    # config.yaml exactly as training writes it (every key, LIF back-end "auto" included).
    overrides = dict(model="snnmlp", num_classes=NUM_CLASSES, image_size=32, lif_backend="auto", **ARCH)
    argv = [item for key, value in overrides.items()
            for item in (f"--{key}", ",".join(map(str, value)) if isinstance(value, list) else str(value))]
    save_config(load_config(argv), directory / "config.yaml")
    x = rng.randn(2, 3, 32, 32).astype(np.float32)
    return directory, x, net(ms.Tensor(x)).asnumpy()


def test_mindir_reloads_and_reproduces_logits(trained):
    directory, x, expected = trained
    assert export("--ckpt_path", directory / "best.ckpt", "--file_format", "MINDIR",
                  "--file_name", directory / "model", "--batch_size", 2) == 0
    output = directory / "model.mindir"
    assert read_sidecar(output) == sha256_file(output)
    # Self-contained: no custom operator pointing at a kernel library on this machine.
    assert b".so:" not in output.read_bytes()
    graph = nn.GraphCell(ms.load(str(output)))
    np.testing.assert_allclose(graph(ms.Tensor(x)).asnumpy(), expected, atol=1e-3, rtol=1e-3)


def test_onnx_runs_in_onnxruntime_and_reproduces_logits(trained):
    ort = pytest.importorskip("onnxruntime")
    directory, x, expected = trained
    assert export("--ckpt_path", directory / "best.ckpt", "--file_format", "ONNX",
                  "--file_name", directory / "model.onnx", "--batch_size", 2) == 0
    session = ort.InferenceSession(str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(logits, expected, atol=1e-3, rtol=1e-3)
    assert not [n for n in os.listdir(directory) if ".partial" in n]


def test_air_needs_ascend(trained, capsys):
    directory, _, _ = trained
    assert export("--ckpt_path", directory / "best.ckpt", "--file_format", "AIR",
                  "--file_name", directory / "model") == 1
    assert "AIR export needs the Ascend device target (this is CPU)" in capsys.readouterr().err
    assert not (directory / "model.air").exists()


def test_flags_override_config_and_the_checkpoint_must_fit(trained, capsys):
    directory, _, _ = trained
    # num_classes from the flag, not config.yaml: the head no longer fits, so nothing is exported.
    assert export("--ckpt_path", directory / "best.ckpt", "--num_classes", 5, "--file_format", "MINDIR",
                  "--file_name", directory / "wrong") == 1
    err = capsys.readouterr().err
    assert "head.weight (10, 128) vs network (5, 128)" in err and err.count("\n") == 1
    assert not (directory / "wrong.mindir").exists()


def test_without_config_the_flags_decide(tmp_path, capsys):
    net = create_model("snnmlp", num_classes=3, lif_backend="primitive", **ARCH)
    save_checkpoint_atomic(net, tmp_path / "alone.ckpt")
    # No config.yaml: the defaults say snnmlp_t with 1000 classes, which this checkpoint is not.
    assert export("--ckpt_path", tmp_path / "alone.ckpt", "--file_name", tmp_path / "m") == 1
    assert "does not fit the network" in capsys.readouterr().err
    config = tmp_path / "arch.yaml"
    # A hand-written config: only some keys, nulls meaning "not set".
    config.write_text(yaml.safe_dump(dict(model="snnmlp", patch_size=None, **ARCH)))
    assert export("--ckpt_path", tmp_path / "alone.ckpt", "--config_path", config, "--num_classes", 3,
                  "--image_size", 64, "--file_name", tmp_path / "m") == 0
    assert "num_classes=3, image_size=64" in capsys.readouterr().out
    assert (tmp_path / "m.mindir").exists()


@pytest.mark.parametrize("argv,message", [
    (["--image_size", "40"], "image_size must be a positive multiple of 32, got 40"),
    (["--batch_size", "0"], "--batch_size must be positive"),
    (["--config_path", "/nonexistent/config.yaml"], "config not found"),
])
def test_bad_arguments_are_one_line_errors(trained, capsys, argv, message):
    directory, _, _ = trained
    assert export("--ckpt_path", directory / "best.ckpt", "--file_name", directory / "x", *argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_tampered_checkpoint_is_not_exported(tmp_path, capsys):
    net = create_model("snnmlp", num_classes=3, lif_backend="primitive", **ARCH)
    path = tmp_path / "t.ckpt"
    save_checkpoint_atomic(net, path)
    os.chmod(path, 0o600)
    with open(path, "ab") as f:
        f.write(b"x")
    assert export("--ckpt_path", path, "--file_name", tmp_path / "t") == 1
    assert "SHA-256 mismatch" in capsys.readouterr().err
    assert not (tmp_path / "t.mindir").exists()


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as info:
        export("--help")
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--ckpt_path", "--ckpt_sha256", "--model", "--num_classes", "--file_format", "--file_name", "--batch_size",
                 "--image_size", "--config_path", "--device_target"):
        assert flag in text


def test_an_unverified_input_is_said_so(trained, tmp_path, capsys):
    directory, _, _ = trained
    copy = tmp_path / "copy.ckpt"  # a copy without its sidecar
    copy.write_bytes((directory / "best.ckpt").read_bytes())
    (tmp_path / "config.yaml").write_bytes((directory / "config.yaml").read_bytes())
    sha = sha256_file(copy)
    assert export("--ckpt_path", copy, "--file_name", tmp_path / "u") == 0
    captured = capsys.readouterr()
    assert captured.err == f"unverified: {copy}: no sidecar, no --ckpt_sha256, not a known release (sha256 {sha})\n"
    assert captured.out.splitlines()[-1].endswith(f"from {copy} (SHA-256 {sha}, UNVERIFIED)")
    assert export("--ckpt_path", copy, "--ckpt_sha256", sha, "--file_name", tmp_path / "v") == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.splitlines()[-1].endswith("verified against the expected hash)")
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside a weight: the file still parses
    copy.write_bytes(bytes(data))
    assert export("--ckpt_path", copy, "--file_name", tmp_path / "w") == 1
    assert "crc check is failed" in capsys.readouterr().err and not (tmp_path / "w.mindir").exists()


@pytest.mark.parametrize("case, message", [
    ("bad_config", "config.yaml: image_size: expected an integer, got 'large'"),
    ("folder", "is a folder: give a file name in it"),
])
def test_export_input_mistakes_are_one_line(trained, tmp_path, capsys, case, message):
    directory, _, _ = trained
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes((directory / "best.ckpt").read_bytes())
    (tmp_path / "best.ckpt.sha256").write_bytes((directory / "best.ckpt.sha256").read_bytes())
    config = (directory / "config.yaml").read_text()
    if case == "bad_config":
        config = config.replace("image_size: 32", "image_size: large")
    (tmp_path / "config.yaml").write_text(config)
    (tmp_path / "out").mkdir()
    file_name = f"{tmp_path / 'out'}/" if case == "folder" else tmp_path / "out" / "m"
    assert export("--ckpt_path", ckpt, "--file_name", file_name) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert os.listdir(tmp_path / "out") == []
