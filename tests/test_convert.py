"""The torch-free PyTorch checkpoint reader and the converter CLI, against the independent PyTorch reference."""
import builtins
import collections
import importlib.util
import io
import os
import pickle
import posix
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mindspore as ms

from src.checkpoint import CheckpointError, load_checkpoint_strict, read_sidecar, sha256_file
from src import convert as convert_module
from src.convert import extract_state_dict, read_torch_checkpoint
from src.snn_mlp import create_model

torch = pytest.importorskip("torch")
from reference.snn_mlp_torch import TorchSNNMLP, randomize_  # noqa: E402  (needs torch)

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
    assert "model snnmlp_custom: num_classes=10, embed_dim=16, depths=(1, 1, 2, 1)" in out
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
    assert "config (posix.mkdir, not run)" in capsys.readouterr().out
    assert not marker.exists()


@pytest.mark.parametrize("content,message", [
    (b"definitely not torch", "is not a PyTorch checkpoint"),
    (b"\x80\x02legacy pickle", "the pickle is malformed or truncated"),
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
    for flag in ("--input", "--output", "--model", "--use_ema", "--max_bytes", "--sha256"):
        assert flag in text
    assert "SHA-256" in text and "torch is not needed" in text


# --- Checkpoints as the original training code and timm write them, in both torch.save formats ---------------

def save(obj, path, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def original_training_checkpoint(model, amp_opt_level="O1"):
    """What the original main.py ``save_checkpoint`` writes: weights, two AdamW optimizers (main and LIF
    parameters) after a step, the state of two timm cosine schedulers, the yacs config, and apex's amp state
    when AMP_OPT_LEVEL is not O0."""
    from yacs.config import CfgNode

    config = CfgNode()
    config.MODEL = CfgNode(dict(TYPE="snnmlp", NAME="snnmlp_tiny_patch4_lif4_224", RESUME="", NUM_CLASSES=10))
    config.TRAIN = CfgNode(dict(EPOCHS=300, BASE_LR=5e-4, LIF_LR=1e-4, WEIGHT_DECAY=0.05, CLIP_GRAD=5.0))
    config.TRAIN.OPTIMIZER = CfgNode(dict(NAME="adamw", EPS=1e-8, BETAS=(0.9, 0.999)))
    config.TRAIN.LR_SCHEDULER = CfgNode(dict(NAME="cosine", DECAY_EPOCHS=30))
    config.AMP_OPT_LEVEL, config.OUTPUT, config.LOCAL_RANK = amp_opt_level, "output/snnmlp_t", 0
    config.freeze()
    lif = [p for n, p in model.named_parameters() if "tau" in n or "Vth" in n]
    main = [p for n, p in model.named_parameters() if not ("tau" in n or "Vth" in n)]
    optimizers = [torch.optim.AdamW(main, lr=5e-4), torch.optim.AdamW(lif, lr=1e-4)]
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)
    for optimizer in optimizers:
        optimizer.step()
    model.zero_grad(set_to_none=True)

    def cosine_scheduler_state(base_lr):  # timm's Scheduler.state_dict(): its __dict__ minus the optimizer
        return {"param_group_field": "lr", "base_values": [base_lr], "metric": None, "t_in_epochs": False,
                "t_initial": 37500, "lr_min": 5e-6, "warmup_t": 2500, "warmup_lr_init": 5e-7,
                "warmup_steps": [(base_lr - 5e-7) / 2500], "noise_range_t": None, "noise_seed": 42}

    state = {"model": model.state_dict(),
             "optimizer": optimizers[0].state_dict(), "optimizer_lif": optimizers[1].state_dict(),
             "lr_scheduler": cosine_scheduler_state(5e-4), "lr_scheduler_lif": cosine_scheduler_state(1e-4),
             "max_accuracy": 81.88, "epoch": 299, "config": config}
    if config.AMP_OPT_LEVEL != "O0":
        state["amp"] = collections.OrderedDict(loss_scaler0={"loss_scale": 65536.0, "unskipped": 17},
                                               loss_scaler1={"loss_scale": 32768.0, "unskipped": 3})
    return state


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_original_save_checkpoint_converts_and_reproduces_the_reference_logits(tmp_path, legacy, capsys):
    reference = randomize_(TorchSNNMLP(lif=4, **SMALL), seed=5).eval()
    source = save(original_training_checkpoint(reference), tmp_path / "ckpt_epoch.pth", legacy)
    output = tmp_path / "converted.ckpt"
    assert convert("--input", source, "--output", output) == 0
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.startswith("skipped")]
    assert skipped == ["skipped (not model weights): optimizer (dict), optimizer_lif (dict), lr_scheduler (dict), "
                       "lr_scheduler_lif (dict), max_accuracy (81.88), epoch (299), "
                       "config (yacs.config.CfgNode, not run), amp (dict)"]
    logits_close(reference, output)
    net = create_model("snnmlp", lif=4, lif_backend="primitive", **SMALL)
    load_checkpoint_strict(net, output)
    net.set_train(False)
    x = np.random.RandomState(1).randn(2, 3, 64, 64).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    relative = np.abs(net(ms.Tensor(x)).asnumpy() - expected).max() / np.abs(expected).max()
    assert relative < 1e-4


def test_optimizer_state_and_config_are_never_read(tmp_path):
    reference = TorchSNNMLP(lif=4, **SMALL)
    source = save(original_training_checkpoint(reference, amp_opt_level="O0"), tmp_path / "o0.pth")
    weights = sum(v.numel() * 4 for v in reference.state_dict().values())
    # The optimizers hold twice the weights again; the budget admits only the weights (storage + tensor).
    state_dict, skipped = read_torch_checkpoint(source, max_bytes=2 * weights + (1 << 20),
                                                select=extract_state_dict)
    assert set(state_dict) == set(reference.state_dict()) and not any(s.startswith("amp") for s in skipped)
    with pytest.raises(CheckpointError, match="passes the --max_bytes limit"):
        read_torch_checkpoint(source, max_bytes=2 * weights + (1 << 20))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_timm_checkpoint_takes_state_dict_or_its_ema(tmp_path, small_reference, legacy, capsys):
    ema = randomize_(TorchSNNMLP(lif=4, **SMALL), seed=11).eval()
    source = save({"epoch": 3, "arch": "snnmlp_t", "state_dict": small_reference.state_dict(),
                   "state_dict_ema": ema.state_dict(), "optimizer": {"state": {}, "param_groups": []}},
                  tmp_path / "timm.pth.tar", legacy)
    assert convert("--input", source, "--output", tmp_path / "plain.ckpt") == 0
    assert "state_dict_ema (dict; --use_ema takes it)" in capsys.readouterr().out
    logits_close(small_reference, tmp_path / "plain.ckpt")
    assert convert("--input", source, "--output", tmp_path / "ema.ckpt", "--use_ema") == 0
    assert "skipped (not model weights): epoch (3), arch ('snnmlp_t'), state_dict (dict)" in capsys.readouterr().out
    logits_close(ema, tmp_path / "ema.ckpt")


def test_use_ema_without_ema_weights_is_refused(tmp_path, small_reference, capsys):
    source = save({"model": small_reference.state_dict(), "epoch": 1}, tmp_path / "m.pth")
    assert convert("--input", source, "--output", tmp_path / "m.ckpt", "--use_ema") == 1
    err = capsys.readouterr().err
    assert "--use_ema: the checkpoint has no EMA weights" in err and "its entries: model, epoch" in err
    assert err.count("\n") == 1 and not (tmp_path / "m.ckpt").exists()


def test_legacy_bare_state_dict_matches_torch_for_dtypes_and_views(tmp_path):
    base = torch.randn(6, 5)
    tensors = {"transposed": base.t(), "offset_slice": base[2:, 1:4], "half": base.half(),
               "int64": torch.arange(7), "bool": base > 0, "shared": base}
    loaded = read_torch_checkpoint(save(tensors, tmp_path / "legacy.pt", legacy=True))
    for name, tensor in tensors.items():
        np.testing.assert_array_equal(loaded[name], tensor.numpy(), err_msg=name)


# --- Hostile pickles: nothing in them is ever called ----------------------------------------------------------

def _numpy_pickle_bomb(tmp_path, marker):
    """An object .npy whose loading (np.load with allow_pickle=True) would create ``marker``."""
    path = tmp_path / "payload.npy"
    np.save(path, np.array([_Evil(os.mkdir, (str(marker),))], dtype=object), allow_pickle=True)
    return path


class _Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # lets a payload be the callable of another (pickle checks callable())
        raise AssertionError("only the unpickler would call this")


EVIL = {
    "os.system": lambda m, d: (os.system, (f"touch {m}",)),
    "posix.system": lambda m, d: (posix.system, (f"touch {m}",)),
    "builtins.exec": lambda m, d: (builtins.exec, (f"open({str(m)!r}, 'w').close()",)),
    "subprocess.call": lambda m, d: (subprocess.call, (["touch", str(m)],)),
    "subprocess.Popen": lambda m, d: (subprocess.Popen, (["touch", str(m)],)),
    "numpy.load": lambda m, d: (np.load, (str(_numpy_pickle_bomb(d, m)), None, True)),
    "builtins.getattr": lambda m, d: (_Evil(getattr, (_Evil(importlib.import_module, ("os",)), "system")),
                                      (f"touch {m}",)),
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("where", ["model", "config"])
@pytest.mark.parametrize("payload", sorted(EVIL))
def test_evil_payloads_are_never_run(tmp_path, small_reference, payload, where, legacy):
    marker = tmp_path / "pwned"
    evil = _Evil(*EVIL[payload](marker, tmp_path))
    state = {"model": dict(small_reference.state_dict()), "epoch": 1}
    if where == "model":
        state["model"]["evil"] = evil
    else:
        state["config"] = evil
    source = save(state, tmp_path / "evil.pt", legacy)
    assert not marker.exists()
    state_dict, skipped = read_torch_checkpoint(source, select=extract_state_dict)
    everything = read_torch_checkpoint(source)  # reading the whole object graph runs nothing either
    assert set(state_dict) == set(small_reference.state_dict())
    assert any(s.startswith(("model.evil (" if where == "model" else "config (")) and s.endswith("not run)")
               for s in skipped), skipped
    assert "not run" in repr(everything["model"]["evil"] if where == "model" else everything["config"])
    assert not marker.exists()


def test_evil_payload_beside_the_weights_converts_with_a_notice(tmp_path, small_reference, capsys):
    marker = tmp_path / "pwned"
    state = {"model": {**small_reference.state_dict(), "evil": _Evil(os.system, (f"touch {marker}",))},
             "config": _Evil(builtins.exec, (f"open({str(marker)!r}, 'w').close()",))}
    source = save(state, tmp_path / "evil.pt", legacy=True)
    assert convert("--input", source, "--output", tmp_path / "out.ckpt") == 0
    assert ("skipped (not model weights): config (builtins.exec, not run), model.evil (posix.system, not run)"
            in capsys.readouterr().out)
    logits_close(small_reference, tmp_path / "out.ckpt")
    assert not marker.exists()


# --- Hand-made records: sizes, strides and compression are bounded -------------------------------------------

class _Storage:
    """Pickled as torch's persistent storage id, with whatever element count a test declares."""

    def __init__(self, key, numel, storage_type=None):
        self.key, self.numel, self.type = key, numel, storage_type or torch.FloatStorage


class _Tensor:
    def __init__(self, storage, offset, size, stride, state=None):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())
        self.state = state

    def __reduce__(self):  # with a state, pickle follows the rebuild with BUILD
        return (torch._utils._rebuild_tensor_v2, self.args) + ((self.state,) if self.state else ())


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", obj.type, obj.key, "cpu", obj.numel) if isinstance(obj, _Storage) else None


def write_torch_zip(path, obj, storages, compression=zipfile.ZIP_STORED):
    """A torch.save-style zip: ``archive/data.pkl`` plus ``archive/data/<key>`` for each of ``storages``."""
    data = io.BytesIO()
    _TorchPickler(data, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("archive/data.pkl", data.getvalue())
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
    return path


FOUR = np.arange(4, dtype=np.float32).tobytes()


@pytest.mark.parametrize("tensor,message", [
    (_Tensor(_Storage("0", 4), 0, (3,), (2,)), "reaches element 4 of a storage of 4"),
    (_Tensor(_Storage("0", 4), 0, (2,), (-1,)), r"malformed tensor record \(size \(2,\), stride \(-1,\)"),
    (_Tensor(_Storage("0", 4), 0, None, (1,)), r"malformed tensor record \(size None"),
    (_Tensor(_Storage("0", 4), "x", (2,), (1,)), "malformed tensor record"),
    (_Tensor(5, 0, (2,), (1,)), "malformed tensor record: its storage is 5"),
    (_Tensor(_Storage("0", 3), 0, (2, 2), (1, 1)), "a tensor record of 4 elements .* expands a storage of 3"),
    # The case: 16 bytes on disk, a stride-0 view of 4 GiB.
    (_Tensor(_Storage("0", 4), 0, (1 << 30,), (0,)), "a tensor record of 1073741824 elements .* expands"),
    (_Tensor(_Storage("1", 4), 0, (4,), (1,)), "storage archive/data/1 is missing"),
    (_Tensor(_Storage("0", 8), 0, (8,), (1,)), "storage archive/data/0 holds 16 bytes, 32 expected"),
    (_Evil(collections.OrderedDict, (5,)), r"the pickle is malformed or truncated \(TypeError"),
    (_Tensor(_Storage("0", 4, torch.nn.Linear), 0, (4,), (1,)), "unsupported storage record"),
    # A checked record whose sizes the pickle rewrites afterwards (64 MiB from a 16-byte storage).
    (_Tensor(_Storage("0", 4), 0, (4,), (1,), state={"size": (1 << 24,), "stride": (0,), "numel": 1, "nbytes": 4}),
     "malformed checkpoint: the pickle sets the state of a TensorRecord"),
])
def test_malformed_tensor_records_give_one_line(tmp_path, tensor, message, capsys):
    source = write_torch_zip(tmp_path / "bad.pt", {"head.weight": tensor}, {"0": FOUR})
    with pytest.raises(CheckpointError, match=message):
        read_torch_checkpoint(source)
    assert convert("--input", source, "--output", tmp_path / "out.ckpt") == 1
    err = capsys.readouterr().err
    assert re.search(message, err) and err.startswith("error: ") and err.count("\n") == 1


def test_deeply_nested_containers_give_one_line(tmp_path):
    depth = 100_000  # built by the unpickler without recursion: a list in a list in a list ...
    with zipfile.ZipFile(tmp_path / "deep.pt", "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b".")
    with pytest.raises(CheckpointError, match="its containers nest too deeply"):
        read_torch_checkpoint(tmp_path / "deep.pt")


def test_plain_views_of_a_hand_made_storage_are_read(tmp_path):
    source = write_torch_zip(tmp_path / "ok.pt", {"a": _Tensor(_Storage("0", 4), 1, (2, 1), (2, 1))}, {"0": FOUR})
    np.testing.assert_array_equal(read_torch_checkpoint(source)["a"], [[1.0], [3.0]])


def test_zip_bomb_is_refused_before_it_inflates(tmp_path, capsys):
    numel = 16 << 20  # 64 MiB of zeros deflate to about 64 KiB
    source = write_torch_zip(tmp_path / "bomb.pt", {"w": _Tensor(_Storage("0", numel), 0, (numel,), (1,))},
                             {"0": bytes(4 * numel)}, compression=zipfile.ZIP_DEFLATED)
    assert source.stat().st_size < 1 << 20
    assert convert("--input", source, "--output", tmp_path / "out.ckpt", "--max_bytes", "32M") == 1
    err = capsys.readouterr().err
    assert "a tensor of shape (16777216,) needs 64.0 MiB" in err and "--max_bytes limit of 32.0 MiB" in err
    assert err.count("\n") == 1
    # A member that inflates past what the pickle declares is read only up to the declared size.
    lying = write_torch_zip(tmp_path / "lying.pt", {"w": _Tensor(_Storage("0", 4), 0, (4,), (1,))},
                            {"0": bytes(4 * numel)}, compression=zipfile.ZIP_DEFLATED)
    np.testing.assert_array_equal(read_torch_checkpoint(lying, max_bytes=1 << 20)["w"], np.zeros(4))


def test_declared_sizes_beyond_the_default_cap_are_refused_without_allocating(tmp_path):
    numel = 1 << 30  # a 4 GiB storage declared by a tiny file: refused before any read
    source = write_torch_zip(tmp_path / "huge.pt", {"w": _Tensor(_Storage("0", numel), 0, (numel,), (1,))},
                             {"0": FOUR})
    with pytest.raises(CheckpointError, match=r"needs 4\.0 GiB.*--max_bytes limit of 2\.0 GiB"):
        read_torch_checkpoint(source)


def test_truncated_legacy_file_and_memory_errors_give_one_line(tmp_path, small_reference, capsys, monkeypatch):
    source = save(small_reference.state_dict(), tmp_path / "legacy.pt", legacy=True)
    source.write_bytes(source.read_bytes()[:-100])
    assert convert("--input", source, "--output", tmp_path / "out.ckpt") == 1
    err = capsys.readouterr().err
    assert "truncated" in err and err.count("\n") == 1

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(convert_module, "_materialize", out_of_memory)
    save(small_reference.state_dict(), source)
    assert convert("--input", source, "--output", tmp_path / "out.ckpt") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory while converting") and err.count("\n") == 1


def test_max_bytes_sizes_are_parsed(capsys):
    cli = load_cli()
    assert [cli.byte_count(t) for t in ("1024", "512M", "2G", "3k", "1GiB")] == [1024, 512 << 20, 2 << 30, 3072,
                                                                                1 << 30]
    with pytest.raises(SystemExit):
        cli.parse_args(["--input", "a", "--output", "b.ckpt", "--max_bytes", "lots"])
    assert "expected a positive size such as 2G or 512M" in capsys.readouterr().err
