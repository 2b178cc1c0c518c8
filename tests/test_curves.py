"""Training curves: metrics.jsonl read back as the run's history, curves.png drawn after every epoch,
scripts/plot_metrics.py overlaying runs (and refusing bad folders in one line), TensorBoard event files read
back with tensorboardX's own protobuf classes."""
import glob
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from src.engine.curves import MetricsError, TrainingCurves, plot_runs, read_metrics
from tests.conftest import REPO_ROOT, build_image_folder, load_script

# matplotlib's default colour cycle: the first two runs of a figure.
RUN_COLORS = ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E))


def _record(epoch, top1, lr=1e-3, loss=1.0):
    return {"epoch": epoch, "global_step": 3 * epoch, "train_loss": loss, "skipped_steps": 0, "train_seconds": 1.0,
            "lr": lr, "val_top1": top1, "val_top5": min(100.0, top1 + 20), "val_loss": loss * 1.1,
            "val_images": 10, "val_skipped": 0}


def _write_metrics(run_dir, records):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return str(run_dir)


def _pixels_of(path, color, tolerance=12):
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(image - np.array(color)).max(-1) <= tolerance).sum())


def test_read_metrics_keeps_the_history_that_led_to_the_last_record(tmp_path):
    # Epochs 1-3, then a resume from the epoch-1 checkpoint redid 2 and 3: the redone records count.
    run = _write_metrics(tmp_path / "run", [_record(1, 10), _record(2, 20), _record(3, 30), _record(2, 21),
                                            _record(3, 31), _record(4, 41)])
    assert [(r["epoch"], r["val_top1"]) for r in read_metrics(run)] == [(1, 10), (2, 21), (3, 31), (4, 41)]


@pytest.mark.parametrize("content, message", [
    (None, "has no metrics.jsonl"),
    ("", "is empty"),
    ('{"epoch": 1}\nnot json\n', "line 2 is not an epoch record"),
    ('{"loss": 1}\n', "line 1 is not an epoch record"),
])
def test_read_metrics_refuses_what_is_not_a_run(tmp_path, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "metrics.jsonl").write_text(content)
    with pytest.raises(MetricsError, match=message):
        read_metrics(str(run))
    with pytest.raises(MetricsError, match="is not a directory"):
        read_metrics(str(tmp_path / "missing"))


def test_plot_runs_draws_each_run_in_its_colour(tmp_path):
    first = [_record(e, 50 + 10 * e, lr=1e-3 * e) for e in range(1, 5)]
    second = [_record(e, 40 + 5 * e, loss=2.0) for e in range(1, 3)]
    one = plot_runs([("a", first)], str(tmp_path / "one.png"), title="one run")
    both = plot_runs([("a", first), ("b", second)], str(tmp_path / "both.png"))
    assert Image.open(one).size == Image.open(both).size == (1600, 480)
    assert _pixels_of(one, RUN_COLORS[0]) > 500 and _pixels_of(one, RUN_COLORS[1]) == 0
    assert _pixels_of(both, RUN_COLORS[0]) > 500 and _pixels_of(both, RUN_COLORS[1]) > 200
    assert sorted(os.listdir(tmp_path)) == ["both.png", "one.png"]  # no temporary file left


def test_plot_metrics_script_overlays_runs(tmp_path):
    a = _write_metrics(tmp_path / "run_a", [_record(e, 50 + e) for e in range(1, 4)])
    b = _write_metrics(tmp_path / "run_b", [_record(e, 40 + e) for e in range(1, 3)])
    result = subprocess.run([sys.executable, os.path.join(str(REPO_ROOT), "scripts", "plot_metrics.py"), a, b,
                             "--output", "cmp.png"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {tmp_path / 'cmp.png'} (epochs: run_a 3, run_b 2)"
    assert _pixels_of(tmp_path / "cmp.png", RUN_COLORS[1]) > 200


def test_plot_metrics_script_refuses_bad_folders_in_one_line(tmp_path, capsys):
    plot_metrics = load_script("scripts/plot_metrics.py", "plot_metrics")
    a = _write_metrics(tmp_path / "run_a", [_record(1, 50)])
    (tmp_path / "empty").mkdir()
    for args, message in (([a, str(tmp_path / "nope")], f"{tmp_path / 'nope'} is not a directory"),
                          ([str(tmp_path / "empty")], f"{tmp_path / 'empty'} has no metrics.jsonl"),
                          ([a, a, "--labels", "x"], "1 labels for 2 run folders"),
                          ([a, "--output", str(tmp_path / "no" / "x.png")], "the folder of --output")):
        assert plot_metrics.main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"plot_metrics.py: error: {message}"), lines
    assert not list(tmp_path.rglob("*.png"))


def _scalars(directory):
    """``{tag: [(step, value)]}`` from the event files under ``directory`` (TFRecord framing, Event protos)."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        data = open(path, "rb").read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_missing_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if it were not installed
    with pytest.raises(MetricsError, match="--tensorboard true needs the tensorboardX package: pip install "):
        TrainingCurves(str(tmp_path), tensorboard=True)
    TrainingCurves(str(tmp_path), tensorboard=False)  # not asked for: not needed
    TrainingCurves(str(tmp_path), tensorboard=True, writer=False)  # rank > 0 writes nothing


def test_training_writes_curves_and_tensorboard_scalars(tmp_path):
    # One epoch of 6 batches of 2, 2 micro-batches per optimizer step: the per-step scalars count optimizer
    # steps.
    pytest.importorskip("tensorboardX")
    import mindspore as ms

    from src.config import load_config
    from src.engine import trainer

    ms.set_context(mode=ms.PYNATIVE_MODE)
    data = build_image_folder(tmp_path / "data", num_classes=3, per_class={"train": 4, "val": 1}, size=(32, 32))
    out = tmp_path / "out"
    cfg = load_config(["--model", "snnmlp", "--embed_dim", "8", "--depths", "1,1,1,1", "--image_size", "32",
                       "--num_classes", "3", "--dataset_path", str(data), "--output_dir", str(out), "--batch_size",
                       "2", "--accumulation_steps", "2", "--epochs", "1", "--warmup_epochs", "0", "--mode",
                       "PYNATIVE", "--tensorboard", "true", "--log_interval", "2", "--mixup", "0", "--cutmix", "0",
                       "--auto_augment", "null", "--reprob", "0", "--num_parallel_workers", "1"])
    summary = trainer.train(cfg)
    assert summary["global_step"] == 3
    [record] = read_metrics(str(out))
    assert Image.open(out / "curves.png").size == (1600, 480)
    assert _pixels_of(out / "curves.png", RUN_COLORS[0]) > 100
    scalars = _scalars(out / "tensorboard")
    assert [s for s, _ in scalars["train/lr"]] == [1, 2, 3]
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [s for s, _ in scalars["train/images_per_s"]] == [2, 3]  # every log line (and the epoch's end)
    assert all(v > 0 for _, v in scalars["train/images_per_s"] + scalars["train/grad_norm"])
    for key in ("val_top1", "val_top5", "val_loss", "train_loss", "lr"):
        assert scalars[f"epoch/{key}"] == [(1, pytest.approx(record[key], rel=1e-6))], key
    # The per-step losses average to the epoch's train loss.
    assert np.mean([v for _, v in scalars["train/loss"]]) == pytest.approx(record["train_loss"], rel=1e-5)
    # A fresh start in the same folder moves this run's picture and events aside with its checkpoints: the
    # new run's TensorBoard shows its own steps once (it used to add a second curve over the same steps).
    cfg.auto_resume = False
    trainer.train(cfg)
    [moved] = out.glob("superseded-*-earlier-run")
    assert (moved / "curves.png").exists() and list((moved / "tensorboard").iterdir())
    assert [s for s, _ in _scalars(out / "tensorboard")["train/loss"]] == [1, 2, 3]
