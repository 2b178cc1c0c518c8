"""scripts/benchmark.py: its sections run and write their figures, its flags fail in one line, and the train
section times the train step that train.py builds."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, load_script

BENCHMARK = REPO_ROOT / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def bench_tool():
    return load_script("scripts/benchmark.py", "benchmark_under_test")


def test_benchmark_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--sections", "layers,lif", "--batch_size", "1",
         "--image_size", "32", "--repeats", "2", "--warmup", "0", "--fast_ops", "on,off", "--torch", "off",
         "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(out.read_text())
    rows = payload["results"]
    assert payload["machine"]["threads"] == 1
    assert {r["section"] for r in rows} == {"layers", "lif"}
    assert all(len(r["samples_s"]) == 2 and r["median_s"] > 0 for r in rows)
    fused = [r for r in rows if r["section"] == "layers" and r["variant"] == "mindspore"
             and not r["what"].startswith("1x1")]
    assert len(fused) == 6 and all(r["ratio_vs_plain"] > 0 for r in fused)  # beside MindSpore's own operators
    assert {r["variant"] for r in rows if r["section"] == "lif"} >= {"copy", "forward", "backward"}
    assert "GroupNorm(1) forward" in result.stdout and "load average" in result.stdout


@pytest.mark.parametrize("argv,message", [(["--image_size", "100"], "multiple of 32"),
                                          (["--mode", "EAGER"], "unknown mode"),
                                          (["--sections", "eval,speed"], "unknown section"),
                                          (["--repeats", "0"], "positive integer")])
def test_benchmark_bad_flags_are_one_line_errors(argv, message):
    result = subprocess.run([sys.executable, str(BENCHMARK), *argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_benchmark_data_section_measures_both_pipelines_and_the_stages(image_folder, tmp_path):
    root = image_folder(num_classes=2, per_class={"train": 4, "val": 2}, size=(48, 40))
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--sections", "data", "--data_path",
         str(root), "--image_size", "32", "--data_batch_size", "2", "--data_batches", "1", "--repeats", "1",
         "--torch", "off", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    ours = {r["what"]: r for r in rows if r["variant"] == "mindspore"}
    assert set(ours) == {f"{p} pipeline workers={n}" for p in ("train", "eval") for n in (1, 2)}
    assert all(r["median_s"] > 0 and "CPU" in r["note"] and "ms/image/worker" in r["note"] for r in ours.values())
    stages = {r["what"] for r in rows if r["variant"] == "profile"}
    assert {"read (file bytes)", "flip + RandAugment", "mixup/cutmix (per batch, in place)"} <= stages
    assert not [r for r in rows if r["note"].startswith("failed")]


def test_train_section_times_the_step_of_the_recipe(bench_tool):
    from src.config import load_config
    from src.snn_mlp import create_model

    net = create_model("snnmlp_t", num_classes=10, embed_dim=8, depths=(1, 1, 1, 1), image_size=32)
    step = bench_tool.train_step_for(net, "snnmlp_t")
    cfg = load_config(["--config_path", "config/snnmlp_t_imagenet_gpu.yaml"])
    assert (step.clip_grad, step.dynamic, float(step.loss_scale.asnumpy())) == (5.0, True, 65536.0)
    assert (step.scale_factor, step.scale_window) == (cfg.loss_scale_factor, cfg.loss_scale_window)
    optimizer = step.optimizer
    assert (optimizer.beta1, optimizer.beta2, optimizer.eps) == (0.9, 0.999, 1e-8)
    assert {g.name: g.weight_decay for g in optimizer.groups}["decay"] == 0.05
    assert step.ema is None and not step.use_ema
