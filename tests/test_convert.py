"""The torch-free PyTorch checkpoint reader and the converter CLI, against the independent PyTorch reference."""
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms

from src.checkpoint import CheckpointError, load_checkpoint_strict, read_sidecar, sha256_file
from src.convert import _rebuild_tensor, read_torch_checkpoint
from src.snn_mlp import create_model

torch = pytest.importorskip("torch")
from torch_reference import TorchSNNMLP, randomize_  # noqa: E402  (needs torch)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
SMALL = dict(num_classes=10, embed_dim=16, depths=(1, 1, 2, 1))


def load_cli():
    spec = importlib.util.spec_from_file_location("convert_cli", ROOT / "scripts" / "convert_pytorch_ckpt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def convert(*argv):
    return load_cli().main([str(a) for a in argv])


@pytest.fixture(scope="module")
def small_reference():
    return randomize_(TorchSNNMLP(lif=4, **SMALL), seed=3).eval()


def logits_close(torch_model, ckpt_path, image_size=64):
    net = create_model("snnmlp", lif=4, lif_backend="primitive", **SMALL)
    load_checkpoint_strict(net, ckpt_path)
    net.set_train(False)
    x = np.random.RandomState(0).randn(2, 3, image_size, image_size).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net(ms.Tensor(x)).asnumpy(), expected, atol=1e-4, rtol=1e-4)


def test_training_checkpoint_round_trip_reproduces_logits(tmp_path, small_reference, capsys):
    # The original training script saves {'model': state_dict, 'epoch': ..., 'max_accuracy': ...}.
    source = tmp_path / "ckpt_epoch.pth"
    torch.save({"model": small_reference.state_dict(), "epoch": 299, "max_accuracy": 81.88}, source)
    output = tmp_path / "converted.ckpt"
    assert convert("--input", source, "--output", output) == 0
    out = capsys.readouterr().out
    assert f"SHA-256 {sha256_file(source)}" in out
    assert "model snnmlp: num_classes=10, embed_dim=16, depths=(1, 1, 2, 1)" in out
    assert read_sidecar(output) == sha256_file(output)
    # 64x64 gives windows of 4 along 16, 8 and 4 positions: the LIF scans really fire.
    logits_close(small_reference, output)


def test_half_precision_state_dict_is_widened(tmp_path, small_reference):
    half = {name: value.half() for name, value in small_reference.state_dict().items()}
    source = tmp_path / "half.pt"
    torch.save(half, source)
    rounded = TorchSNNMLP(lif=4, **SMALL).eval()
    rounded.load_state_dict({name: value.float() for name, value in half.items()})
    assert convert("--input", source, "--output", tmp_path / "half.ckpt") == 0
    logits_close(rounded, tmp_path / "half.ckpt")


def test_reader_matches_torch_for_dtypes_and_views(tmp_path):
    base = torch.randn(6, 5)
    tensors = {
        "transposed": base.t(), "offset_slice": base[2:, 1:4], "every_other": base[::2],
        "half": base.half(), "bfloat16": base.bfloat16(), "int64": torch.arange(7), "bool": base > 0,
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3), "parameter": torch.nn.Parameter(base[:2]),
    }
    torch.save({"state_dict": tensors}, tmp_path / "many.pt")
    loaded = read_torch_checkpoint(tmp_path / "many.pt")["state_dict"]
    for name, tensor in tensors.items():
        expected = tensor.detach()
        expected = (expected.float() if expected.dtype == torch.bfloat16 else expected).numpy()
        assert loaded[name].shape == expected.shape, name
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)


def test_snnmlp_t_variant_is_inferred_and_loads_into_official_layout(tmp_path, capsys):
    source = tmp_path / "snnmlp_tiny.pt"
    torch.save(TorchSNNMLP().state_dict(), source)
    output = tmp_path / "snnmlp_t.ckpt"
    assert convert("--input", source, "--output", output) == 0
    assert "model snnmlp_t: num_classes=1000" in capsys.readouterr().out
    rows = (REFERENCE / "snnmlp_t_params.txt").read_text().strip().splitlines()
    expected = [(n, tuple(int(d) for d in re.findall(r"\d+", s))) for n, s in (r.split("\t") for r in rows)]
    assert [(n, tuple(p.shape)) for n, p in ms.load_checkpoint(str(output)).items()] == expected
    load_checkpoint_strict(create_model("snnmlp_t", lif_backend="primitive"), output)
    # Insisting on another variant is refused, naming what the file holds.
    assert convert("--input", source, "--output", tmp_path / "s.ckpt", "--model", "snnmlp_s") == 1
    assert "holds snnmlp_t, not snnmlp_s" in capsys.readouterr().err
    assert not (tmp_path / "s.ckpt").exists()


@pytest.mark.parametrize("edit,message", [
    (lambda sd: sd.pop("layers.1.blocks.0.mlp.fc2.bias"), r"1 missing \(layers\.1\.blocks\.0\.mlp\.fc2\.bias\)"),
    (lambda sd: sd.update({"extra.weight": torch.ones(2)}), r"1 unexpected \(extra\.weight\)"),
    (lambda sd: sd.update({"layers.2.blocks.1.lif_module.lif2.tau": torch.ones(2)}),
     r"1 shape mismatches \(layers\.2\.blocks\.1\.lif_module\.lif2\.tau \(2,\) vs \(1,\)\)"),
    (lambda sd: sd.pop("head.weight"), r"not an SNN-MLP state_dict: it has no head\.weight"),
])
def test_mismatched_state_dicts_are_refused(tmp_path, small_reference, capsys, edit, message):
    state_dict = dict(small_reference.state_dict())
    edit(state_dict)
    torch.save(state_dict, tmp_path / "edited.pt")
    assert convert("--input", tmp_path / "edited.pt", "--output", tmp_path / "out.ckpt") == 1
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1
    assert not (tmp_path / "out.ckpt").exists()


def test_code_in_the_pickle_is_never_run(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os
            return os.mkdir, (str(marker),)

    torch.save({"model": {"w": torch.ones(1)}, "config": Payload()}, tmp_path / "evil.pt")
    assert convert("--input", tmp_path / "evil.pt", "--output", tmp_path / "out.ckpt") == 1
    assert "refers to posix.mkdir, which this reader refuses to load" in capsys.readouterr().err
    assert not marker.exists()


def test_out_of_bounds_tensor_records_are_refused():
    storage = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(_rebuild_tensor(storage, 1, (2, 1), (2, 1)), [[1.0], [3.0]])
    with pytest.raises(CheckpointError, match="reaches element 4 of a storage of 4"):
        _rebuild_tensor(storage, 0, (3,), (2,))
    with pytest.raises(CheckpointError, match="malformed"):
        _rebuild_tensor(storage, 0, (2,), (-1,))


@pytest.mark.parametrize("content,message", [
    (b"definitely not torch", "is not a PyTorch checkpoint"),
    (b"\x80\x02legacy pickle", "legacy"),
    (None, "the zip is truncated or corrupt"),
])
def test_unreadable_inputs_give_one_line(tmp_path, small_reference, capsys, content, message):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save(small_reference.state_dict(), path)
        content = path.read_bytes()[:5000]
    path.write_bytes(content)
    assert convert("--input", path, "--output", tmp_path / "out.ckpt") == 1
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_argument_checks(tmp_path, small_reference, capsys):
    source = tmp_path / "m.pt"
    torch.save(small_reference.state_dict(), source)
    assert convert("--input", source, "--output", tmp_path / "m.bin") == 1
    assert "must end in .ckpt" in capsys.readouterr().err
    assert convert("--input", source, "--output", tmp_path / "m.ckpt", "--sha256", "ab" * 32) == 1
    assert f"expected {'ab' * 32}" in capsys.readouterr().err
    assert convert("--input", tmp_path / "missing.pt", "--output", tmp_path / "m.ckpt") == 1
    assert "not found" in capsys.readouterr().err


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as info:
        convert("--help")
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--input", "--output", "--model", "--sha256"):
        assert flag in text
    assert "SHA-256" in text and "torch is not needed" in text
