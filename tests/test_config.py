"""src/config.py: defaults, overrides and types, clear errors, --help, round trips through config.yaml, and the
shipped ImageNet recipes."""
import os

import pytest
import yaml

from src import config as config_module
from src.config import AUG_KEYS, KEYS, ConfigError, dump_config, load_config, model_kwargs
from tests.conftest import REPO_ROOT


def test_config_defaults_overrides_and_types():
    cfg = load_config([])
    assert cfg.config_path == os.path.join(str(REPO_ROOT), "config", "snnmlp_digits.yaml")
    assert (cfg.model, cfg.num_classes, cfg.depths, cfg.dataset_path) == ("snnmlp_custom", 10, [1, 1, 2, 1], None)
    cfg = load_config(["--depths", "2,2,6,2", "--lr=3e-4", "--ema", "true", "--dataset_path", "/data",
                       "--betas", "[0.8, 0.99]", "--mode", "pynative", "--auto_augment", "null",
                       "--ckpt_save_dir", "out"])
    assert cfg.depths == [2, 2, 6, 2] and cfg.lr == 3e-4 and cfg.ema is True and cfg.dataset_path == "/data"
    assert cfg.betas == [0.8, 0.99] and cfg.mode == "PYNATIVE" and cfg.auto_augment is None
    assert cfg.output_dir == "out"
    defaults = vars(load_config([]))  # auto_augment is null there too: checked above
    assert {k for k, v in vars(cfg).items() if v != defaults[k]} == {"depths", "lr", "ema", "dataset_path", "betas",
                                                                     "mode", "output_dir"}
    assert model_kwargs(cfg)["depths"] == (2, 2, 6, 2)
    assert "embed_dim" not in model_kwargs(load_config(["--config_path", "config/snnmlp_t_imagenet_gpu.yaml"]))


@pytest.mark.parametrize("argv, message", [
    (["--learning_rate", "1"], "unknown config key 'learning_rate'.*Valid keys: model, num_classes"),
    (["--epoch", "3"], "did you mean epochs"),
    (["--epochs", "three"], "epochs: expected an integer"),
    (["--ema", "maybe"], "ema: expected true or false"),
    (["--mode", "eager"], "mode: 'eager' is not one of GRAPH, PYNATIVE"),
    (["--epochs", "2", "--warmup_epochs", "5"], "warmup_epochs .5. exceeds epochs .2."),
    (["--num_classes", "null"], "num_classes must be set"),
    (["stray"], "unexpected argument 'stray'"),
    (["--config_path", "config/nope.yaml"], "config file not found"),
])
def test_config_errors_are_clear(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(argv)


def test_config_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: snnmlp_t\nlearning_rate: 1e-3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rate' in .*bad.yaml"):
        load_config(["--config_path", str(bad)])
    sci = tmp_path / "sci.yaml"
    sci.write_text("lr: 5e-4\n")  # YAML 1.1 reads this as a string
    assert load_config(["--config_path", str(sci)]).lr == 5e-4


def test_help_lists_every_key_with_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_config(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for key in KEYS.values():
        assert f"--{key.name}" in text
        assert " ".join(key.help.split()) in text
    assert "(default: 1,1,2,1)" in text  # the depths of the default YAML


def test_config_resolves_from_any_directory_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(["--config_path", "config/snnmlp_b_imagenet_ascend.yaml", "--lr", "1e-3"])
    saved = tmp_path / "config.yaml"
    config_module.save_config(cfg, str(saved))
    again = load_config(["--config_path", str(saved)])
    for name in KEYS:
        assert getattr(again, name) == getattr(cfg, name), name
    assert yaml.safe_load(dump_config(cfg))["lr"] == 1e-3


def test_aug_keys_are_the_pipeline_keys():
    from src.dataset import DEFAULT_AUG

    assert set(AUG_KEYS) == set(DEFAULT_AUG)


@pytest.mark.parametrize("name", ["bicubic", "bilinear", "nearest", "lanczos"])
def test_every_interpolation_the_pipeline_takes_is_a_valid_setting(name, image_folder):
    from src.config import aug_settings
    from src.dataset import create_dataset

    cfg = load_config(["--interpolation", name])
    root = image_folder(num_classes=2, per_class={"val": 2})
    create_dataset(root, False, 2, image_size=8, num_classes=2, num_workers=1, aug=aug_settings(cfg))
    with pytest.raises(ConfigError, match="interpolation: 'cubic' is not one of bicubic, bilinear, nearest, lanczos"):
        load_config(["--interpolation", "cubic"])


@pytest.mark.parametrize("variant, drop_path", [("t", 0.2), ("s", 0.3), ("b", 0.5)])
@pytest.mark.parametrize("device, amp", [("ascend", "O2"), ("gpu", "O2")])
def test_imagenet_configs_carry_the_original_recipe(variant, drop_path, device, amp):
    cfg = load_config(["--config_path", f"config/snnmlp_{variant}_imagenet_{device}.yaml"])
    assert (cfg.model, cfg.drop_path_rate, cfg.amp_level) == (f"snnmlp_{variant}", drop_path, amp)
    assert (cfg.epochs, cfg.warmup_epochs, cfg.lr, cfg.base_batch_size, cfg.lr_scale) == (300, 20, 5e-4, 512, "linear")
    assert (cfg.warmup_lr, cfg.min_lr, cfg.weight_decay, cfg.clip_grad, cfg.batch_size) == (5e-7, 5e-6, 0.05, 5.0, 128)
    assert (cfg.lif, cfg.lif_init_tau, cfg.lif_init_vth, cfg.lif_lr, cfg.lif_weight_decay) == (4, 0.25, 0.1, 1e-4, 0.0)
    assert (cfg.label_smoothing, cfg.mixup, cfg.cutmix, cfg.reprob) == (0.1, 0.8, 1.0, 0.25)
    assert (cfg.auto_augment, cfg.betas, cfg.eps, cfg.image_size) == ("rand-m9-mstd0.5-inc1", [0.9, 0.999], 1e-8, 224)
