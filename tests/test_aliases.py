"""Model-zoo and mindcv spellings of the entry points' flags: eval.py --checkpoint_path and --platform,
export.py --ckpt_file, train/eval -c for --config_path; each listed in --help and equal in effect to ours."""
import json
import os
import subprocess
import sys

import pytest

import export as export_cli
from src.checkpoint import save_checkpoint_atomic
from src.config import load_config, peek_option, save_config
from src.snn_mlp import create_model
from tests.conftest import REPO_ROOT, build_image_folder, load_script

TINY = ["--model", "snnmlp", "--embed_dim", "8", "--depths", "1,1,1,1", "--image_size", "32", "--num_classes",
        "3", "--lif_backend", "primitive"]


def load_eval():
    return load_script("eval.py", "eval_aliases")


@pytest.mark.parametrize("form", ["-c {}", "-c{}", "-c={}", "--config_path {}", "--config_path={}"])
def test_dash_c_reads_the_config_like_config_path(tmp_path, form):
    config = tmp_path / "mine.yaml"
    config.write_text("epochs: 7\nwarmup_epochs: 1\nbatch_size: 5\n")
    argv = form.format(config).split()
    assert peek_option(argv, "config_path") == str(config)
    cfg = load_config([*argv, "--batch_size", "6"])
    assert os.path.samefile(cfg.config_path, config) and (cfg.epochs, cfg.batch_size) == (7, 6)


def test_platform_and_checkpoint_path_set_their_keys():
    cfg = load_config(["--platform", "CPU", "--checkpoint_path", "zoo.ckpt"])
    assert (cfg.device_target, cfg.ckpt_path) == ("CPU", "zoo.ckpt")
    defaults = vars(load_config([]))
    assert sorted(k for k, v in vars(cfg).items() if v != defaults[k]) == ["ckpt_path", "device_target"]
    assert peek_option(["--checkpoint_path=a.ckpt"], "ckpt_path") == "a.ckpt"


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_help_lists_the_aliases(script):
    result = subprocess.run([sys.executable, os.path.join(str(REPO_ROOT), script), "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for listed in ("-c FILE, --config_path FILE", "--device_target STR, --platform STR",
                   "--ckpt_path STR, --checkpoint_path STR"):
        assert listed in result.stdout, listed


def test_eval_with_zoo_flags_finds_the_config_beside_the_checkpoint(tmp_path):
    data = build_image_folder(tmp_path / "data", num_classes=3, per_class={"train": 1, "val": 2}, size=(32, 32))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = load_config(TINY)
    save_config(cfg, run_dir / "config.yaml")
    net = create_model("snnmlp", num_classes=3, image_size=32, embed_dim=8, depths=(1, 1, 1, 1),
                       lif_backend="primitive")
    save_checkpoint_atomic(net, run_dir / "best.ckpt")
    eval_module = load_eval()
    assert eval_module._beside_config(["--checkpoint_path", str(run_dir / "best.ckpt")]) == str(run_dir / "config.yaml")
    result = subprocess.run([sys.executable, os.path.join(str(REPO_ROOT), "eval.py"), "--checkpoint_path",
                             str(run_dir / "best.ckpt"), "--platform", "CPU", "--dataset_path", str(data),
                             "--batch_size", "2", "--num_parallel_workers", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ckpt"] == str(run_dir / "best.ckpt") and report["num_images"] == 6
    assert report["model"] == "snnmlp" and report["num_classes"] == 3 and report["image_size"] == 32


def test_eval_requires_a_checkpoint_under_either_name(capsys):
    assert load_eval().main(["--platform", "CPU"]) == 2
    err = capsys.readouterr().err
    assert "--ckpt_path is required" in err and "--checkpoint_path works too" in err


def test_export_ckpt_file_is_ckpt_path(tmp_path, capsys):
    args = export_cli.parse_args(["--ckpt_file", "zoo.ckpt", "--file_name", "out"])
    assert args.ckpt_path == "zoo.ckpt"
    with pytest.raises(SystemExit):
        export_cli.parse_args(["--help"])
    assert "--ckpt_path CKPT_PATH, --ckpt_file CKPT_PATH" in capsys.readouterr().out
