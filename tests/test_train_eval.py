"""train.py and eval.py end to end on tiny networks: exact resume, the files a run leaves, eval's counting,
and eval's refusals (one stderr line, non-zero exit, nothing loaded)."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms

from src.config import load_config
from src.engine import builders, trainer
from src.engine.train_state import CheckpointManager
from tests.conftest import REPO_ROOT, build_image_folder, load_script

TINY_NET = ["--model", "snnmlp", "--embed_dim", "8", "--depths", "1,1,1,1", "--image_size", "32"]
PLAIN_AUG = ["--hflip", "0", "--auto_augment", "null", "--color_jitter", "null", "--reprob", "0", "--mixup", "0",
             "--cutmix", "0", "--scale_min", "0.5", "--num_parallel_workers", "1"]
# 3 classes; 8 training images each (6 steps of 4), 7 validation images (an odd count, a partial last batch).
PER_CLASS = {"train": 8, "val": [3, 2, 2]}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return str(build_image_folder(tmp_path_factory.mktemp("tiny"), num_classes=3, per_class=PER_CLASS,
                                  size=(32, 32)))


def _tiny_args(data, out, *extra):
    return [*TINY_NET, *PLAIN_AUG, "--num_classes", "3", "--dataset_path", data, "--output_dir", str(out),
            "--batch_size", "4", "--epochs", "2", "--warmup_epochs", "1", "--lr", "2e-3", "--lr_scale", "none",
            "--log_interval", "1", "--lif_start_epoch", "1", *extra]


def _step_log(out):
    """[(global step, lr)] of the per-step lines in train.log."""
    with open(os.path.join(out, "train.log"), encoding="utf-8") as f:
        text = f.read()
    return [(int(m.group(1)), float(m.group(2))) for m in re.finditer(r"\(global (\d+)\) .* lr (\S+) img", text)]


def _weights(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items() if not k.startswith(("adam_", "ema"))}


def _run(script, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(str(REPO_ROOT), script), *args], capture_output=True,
                          text=True, timeout=300, env=env)


def _json_line(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    summary = trainer.train(load_config(_tiny_args(tiny_data, out)))
    return out, summary


def test_resume_continues_at_the_same_step_and_lr(tiny_data, uninterrupted, tmp_path, monkeypatch):
    full_out, full_summary = uninterrupted
    out = tmp_path / "resumed"
    save_epoch = CheckpointManager.save_epoch

    def save_then_crash(self, state, epoch, steps, counters):
        save_epoch(self, state, epoch, steps, counters)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    monkeypatch.setattr(CheckpointManager, "save_epoch", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(load_config(_tiny_args(tiny_data, out)))
    monkeypatch.undo()
    # best.ckpt is written before the epoch checkpoint that names it as the best.
    assert sorted(f for f in os.listdir(out) if f.endswith(".ckpt")) == ["best.ckpt", "snnmlp-1_6.ckpt"]
    summary = trainer.train(load_config(_tiny_args(tiny_data, out)))  # auto-resume from the newest checkpoint

    full_steps, steps = _step_log(full_out), _step_log(out)
    assert [s for s, _ in full_steps] == list(range(1, 13))
    assert steps == full_steps  # same global steps, same learning rate at each
    assert summary["global_step"] == full_summary["global_step"] == 12
    assert "resumed from" in (out / "train.log").read_text()
    expected, got = _weights(str(full_out / "snnmlp-2_6.ckpt")), _weights(str(out / "snnmlp-2_6.ckpt"))
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert summary["last_top1"] == pytest.approx(full_summary["last_top1"])
    # Nothing left to do: a third run reports the finished training without stepping.
    assert trainer.train(load_config(_tiny_args(tiny_data, out)))["global_step"] == 12


def test_a_run_leaves_checkpoints_config_and_metrics(uninterrupted):
    out, summary = uninterrupted
    files = set(os.listdir(out))
    assert {"best.ckpt", "best.ckpt.sha256", "snnmlp-1_6.ckpt", "snnmlp-2_6.ckpt", "config.yaml", "train.log",
            "metrics.jsonl"} <= files
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all(r["val_images"] == 7 for r in records)
    assert summary["best_top1"] == max(r["val_top1"] for r in records)
    saved = load_config(["--config_path", str(out / "config.yaml")])
    assert (saved.model, saved.embed_dim, saved.depths, saved.num_classes) == ("snnmlp", 8, [1, 1, 1, 1], 3)
    assert (saved.resume, saved.ckpt_path, saved.ckpt_sha256) == (None, None, None)


def test_eval_counts_every_image_and_skips_unreadable(uninterrupted, tiny_data, tmp_path):
    out, summary = uninterrupted
    result = _run("eval.py", "--ckpt_path", str(out / "best.ckpt"), "--batch_size", "4")
    assert result.returncode == 0, result.stderr
    report = _json_line(result.stdout)
    assert report["num_images"] == 7 and report["skipped"] == 0
    assert report["top1"] == pytest.approx(summary["best_top1"])
    assert report["ckpt_sha256"] == open(str(out / "best.ckpt.sha256")).read().split()[0]
    assert {"top5", "loss", "ckpt", "model", "image_size"} <= set(report)
    broken = tmp_path / "data"
    shutil.copytree(tiny_data, broken)
    (broken / "val" / "c01" / "img_zzz.JPEG").write_bytes(b"not a jpeg")
    result = _run("eval.py", "--ckpt_path", str(out / "best.ckpt"), "--dataset_path", str(broken))
    assert result.returncode == 0, result.stderr
    report = _json_line(result.stdout)
    assert (report["num_images"], report["skipped"]) == (7, 1)


def _single_error_line(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_eval_refuses_a_wrong_sidecar_with_both_hashes(uninterrupted, tmp_path):
    out, _ = uninterrupted
    ckpt = tmp_path / "best.ckpt"
    shutil.copyfile(out / "best.ckpt", ckpt)
    shutil.copyfile(out / "config.yaml", tmp_path / "config.yaml")
    actual = open(str(out / "best.ckpt.sha256")).read().split()[0]
    wrong = "0" * 64
    (tmp_path / "best.ckpt.sha256").write_text(f"{wrong}  best.ckpt\n")
    line = _single_error_line(_run("eval.py", "--ckpt_path", str(ckpt)))
    assert wrong in line and actual in line and line.startswith("eval.py: error:")


def _eval_main():
    return load_script("eval.py", "eval_script").main


@pytest.mark.parametrize("case, message", [
    ("truncated", "corrupt"),
    ("wider", "does not fit the network"),  # another width: shape mismatches, nothing loaded
    ("hash", "1" * 64),
    ("no_ckpt", "--ckpt_path is required"),
    ("missing", "not found"),
])
def test_eval_refusals_are_one_line(uninterrupted, tmp_path, capsys, case, message):
    out, _ = uninterrupted
    best = str(out / "best.ckpt")
    if case == "truncated":
        best = str(tmp_path / "best.ckpt")
        (tmp_path / "best.ckpt").write_bytes((out / "best.ckpt").read_bytes()[:1000])
        shutil.copyfile(out / "config.yaml", tmp_path / "config.yaml")
    argv = {"truncated": ["--ckpt_path", best], "wider": ["--ckpt_path", best, "--embed_dim", "16"],
            "hash": ["--ckpt_path", best, "--ckpt_sha256", "1" * 64], "no_ckpt": [],
            "missing": ["--ckpt_path", str(tmp_path / "missing.ckpt")]}[case]
    assert _eval_main()(argv) != 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("eval.py: error:") and message in lines[0], err


def test_default_data_end_to_end(default_data, tmp_path):
    out = tmp_path / "digits"
    args = [*TINY_NET, "--embed_dim", "16", "--dataset_path", default_data, "--output_dir", str(out), "--epochs",
            "1", "--warmup_epochs", "0", "--log_interval", "20"]
    result = _run("train.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _json_line(result.stdout)
    assert {"best.ckpt", "best.ckpt.sha256", "config.yaml", "snnmlp-1_44.ckpt"} <= set(os.listdir(out))
    assert summary["val_images"] == 360 and summary["last_top1"] > 30.0  # 1 epoch: far above chance (10%)
    result = _run("eval.py", "--ckpt_path", str(out / "best.ckpt"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = _json_line(result.stdout)
    assert report["top1"] == pytest.approx(summary["last_top1"])
    assert report["num_images"] == 360 and report["model"] == "snnmlp" and report["image_size"] == 32


def test_unset_dataset_path_means_the_embedded_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNMLP_HOME", str(tmp_path))
    root = builders.resolve_dataset(load_config([]))
    assert root == str(tmp_path / "data" / "digits") and os.path.isdir(os.path.join(root, "val", "9"))
    with pytest.raises(Exception, match="--dataset_path"):
        builders.resolve_dataset(load_config(["--config_path", "config/snnmlp_t_imagenet_gpu.yaml"]))


def test_train_cli_errors_are_one_line(tmp_path):
    line = _single_error_line(_run("train.py", "--epochz", "3"))
    assert "unknown config key 'epochz'" in line and "did you mean epochs" in line
    line = _single_error_line(_run("train.py", "--config_path", "config/snnmlp_t_imagenet_gpu.yaml",
                                   "--output_dir", str(tmp_path / "x"), "--device_target", "CPU"))
    assert "--dataset_path" in line
