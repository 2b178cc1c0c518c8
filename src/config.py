"""One flat configuration: a YAML file, then ``--key value`` overrides on the command line.

Every key is declared once below (type, default, one-line help), so the YAML files, the command line and
``--help`` agree, a misspelt key is refused with the valid names, and ``5e-4`` in a YAML file is a float
even where YAML 1.1 reads it as a string. Nothing is parsed at import time.
"""
import argparse
import difflib
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Tuple

import yaml

from .data.aug import DEFAULT_AUG, INTERPOLATIONS
from .models import CUSTOM_MODEL, DEPRECATED_NAMES, list_models

__all__ = ["ConfigError", "Key", "KEYS", "SECTIONS", "AUG_KEYS", "REPO_ROOT", "DEFAULT_CONFIG", "load_config",
           "load_yaml", "parse_value", "peek_option", "dump_config", "save_config", "model_kwargs", "aug_settings",
           "resolve_config_path", "model_arg_names"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join("config", "snnmlp_digits.yaml")


class ConfigError(ValueError):
    """A configuration mistake; the message is one line meant to be printed as is."""


@dataclass(frozen=True)
class Key:
    name: str
    type: str  # str, int, float, bool, int_list, float_list
    default: Any
    help: str
    section: str
    nullable: bool = False
    choices: Tuple[str, ...] = ()
    aliases: Tuple[str, ...] = field(default=())


def _aug_key(name, type_, help_, **kwargs):
    """A key of the ``aug`` section: its default is the pipeline's (``DEFAULT_AUG``), declared only there."""
    default = DEFAULT_AUG[name]
    return Key(name, type_, list(default) if isinstance(default, tuple) else default, help_, "aug", **kwargs)


SECTIONS = {
    "model": "model (written to config.yaml beside the checkpoints, so eval.py rebuilds the same network)",
    "data": "data",
    "aug": "augmentation of the training images (passed to src/dataset.py as the aug dict)",
    "optim": "optimization",
    "precision": "mixed precision",
    "run": "run, output and checkpoints",
}

_KEYS = [
    # model
    Key("model", "str", "snnmlp_t", f"network: snnmlp_t/s/b (paper variants; snn_mlp = T) or {CUSTOM_MODEL} "
        f"(architecture from embed_dim/depths; {', '.join(DEPRECATED_NAMES)}: its deprecated name)", "model",
        choices=tuple(list_models(deprecated=True))),
    Key("num_classes", "int", 1000, "number of classes (the classifier's outputs)", "model"),
    Key("image_size", "int", 224, "input side in pixels (a multiple of 32)", "model"),
    Key("in_chans", "int", 3, "input channels", "model"),
    Key("patch_size", "int", 4, "patch embedding stride", "model"),
    Key("embed_dim", "int", None, "channels of stage 1; null: the variant's own (required for model snnmlp_custom)",
        "model", nullable=True),
    Key("depths", "int_list", None, "blocks per stage, e.g. 2,2,6,2; null: the variant's own (required for model "
        "snnmlp_custom)", "model", nullable=True),
    Key("mlp_ratio", "float", 4.0, "hidden width of the channel MLP over its input width", "model"),
    Key("lif_bias", "bool", True, "biases in the token-mixing 1x1 and depthwise convolutions", "model"),
    Key("drop_rate", "float", 0.0, "dropout rate", "model"),
    Key("drop_path_rate", "float", None, "stochastic depth rate of the last block (linear from 0); null: the "
        "variant's own (T 0.2, S 0.3, B 0.5, as the original trained them; snnmlp_custom 0.2)", "model",
        nullable=True),
    Key("lif", "int", 4, "LIF window along H and W: -1 off, 0 the whole axis, k>0 windows of k positions", "model"),
    Key("lif_fix_tau", "bool", False, "keep the LIF membrane decay tau fixed", "model"),
    Key("lif_fix_vth", "bool", False, "keep the LIF threshold Vth fixed", "model"),
    Key("lif_init_tau", "float", 0.25, "initial LIF tau", "model"),
    Key("lif_init_vth", "float", 0.1, "initial LIF Vth", "model"),
    Key("lif_backend", "str", "auto", "LIF scan implementation: auto (kernel if it can be built), custom, "
        "primitive", "model", choices=("auto", "custom", "primitive")),
    # data
    Key("dataset_path", "str", None, "ImageFolder root holding train/ and val/; null: the embedded digits "
        "(exported on first use)", "data", nullable=True, aliases=("data_dir",)),
    Key("batch_size", "int", 128, "images per device per micro-batch (per step without accumulation)", "data"),
    Key("num_parallel_workers", "int", None,
        "data loading threads per device; null: 1 or more, whichever a short timing probe finds faster", "data",
        nullable=True),
    # augmentation: the keys of src.data.aug.DEFAULT_AUG, whose values are their defaults
    _aug_key("scale_min", "float", "smallest area fraction of the random resized crop"),
    _aug_key("hflip", "float", "probability of a horizontal flip"),
    _aug_key("auto_augment", "str", "RandAugment spec (timm syntax); null: none", nullable=True),
    _aug_key("color_jitter", "float", "colour jitter strength when auto_augment is null; null: none", nullable=True),
    _aug_key("interpolation", "str", "resize interpolation", choices=tuple(INTERPOLATIONS)),
    _aug_key("crop_pct", "float", "validation: centre crop of image_size from a resize to image_size/crop_pct"),
    _aug_key("reprob", "float", "random erasing probability"),
    _aug_key("mixup", "float", "mixup alpha (0: off)"),
    _aug_key("cutmix", "float", "cutmix alpha (0: off)"),
    _aug_key("mixup_prob", "float", "probability of mixing a batch when mixup or cutmix is on"),
    _aug_key("mixup_switch_prob", "float", "probability of cutmix instead of mixup when both are on"),
    _aug_key("label_smoothing", "float", "label smoothing of the soft targets"),
    _aug_key("mean", "float_list", "per-channel mean subtracted (RGB, 0..1 scale)"),
    _aug_key("std", "float_list", "per-channel standard deviation divided by (RGB, 0..1 scale)"),
    # optimization
    Key("epochs", "int", 300, "training epochs", "optim"),
    Key("warmup_epochs", "int", 20, "epochs of linear warmup from warmup_lr", "optim"),
    Key("lr", "float", 5e-4, "peak learning rate per base_batch_size images (see lr_scale)", "optim"),
    Key("lr_scale", "str", "linear", "linear: lr, warmup_lr and min_lr times global batch / base_batch_size; "
        "none: as given", "optim", choices=("linear", "none")),
    Key("base_batch_size", "int", 512, "global batch size the learning rates are given for", "optim"),
    Key("warmup_lr", "float", 5e-7, "learning rate of the first step", "optim"),
    Key("min_lr", "float", 5e-6, "floor of the cosine decay", "optim"),
    Key("weight_decay", "float", 0.05, "AdamW decoupled weight decay", "optim"),
    Key("filter_bias_and_bn", "bool", True, "no weight decay on biases and norm scales/shifts (false: decay them "
        "too, as the PyTorch original did)", "optim"),
    Key("betas", "float_list", [0.9, 0.999], "AdamW beta1,beta2", "optim"),
    Key("eps", "float", 1e-8, "AdamW epsilon", "optim"),
    Key("lif_lr", "float", 1e-4, "peak learning rate of the LIF tau/Vth (not batch-scaled, as in the original)",
        "optim"),
    Key("lif_weight_decay", "float", 0.0, "weight decay of the LIF tau/Vth", "optim"),
    Key("lif_start_epoch", "int", 1, "epoch (0-based) from which tau/Vth are updated (the original froze them "
        "in epoch 0)", "optim"),
    Key("accumulation_steps", "int", 1, "micro-batches per optimizer step (gradient accumulation): the effective "
        "global batch, which lr_scale uses, is devices x batch_size x this", "optim"),
    Key("clip_grad", "float", 5.0, "clip the gradients' global L2 norm to this (0: off)", "optim"),
    Key("ema", "bool", False, "keep an EMA of the weights; validation and best.ckpt then use it", "optim"),
    Key("ema_decay", "float", 0.9999, "EMA decay", "optim"),
    # precision
    Key("amp_level", "str", "O0", "mixed precision: O0 off, O1/O2/O3 (mindspore.amp); forced to O0 on CPU",
        "precision", choices=("O0", "O1", "O2", "O3")),
    Key("loss_scale_type", "str", "fixed", "fixed or dynamic loss scaling", "precision",
        choices=("fixed", "dynamic")),
    Key("loss_scale", "float", 1.0, "(initial) loss scale", "precision"),
    Key("loss_scale_factor", "float", 2.0, "dynamic: divide on overflow / multiply after a clean window", "precision"),
    Key("loss_scale_window", "int", 2000, "dynamic: finite steps before the scale grows", "precision"),
    # run
    Key("mode", "str", "GRAPH", "GRAPH (compiled, fast) or PYNATIVE (eager, for debugging)", "run",
        choices=("GRAPH", "PYNATIVE")),
    Key("device_target", "str", "auto", "auto (what MindSpore finds), CPU, GPU or Ascend", "run",
        choices=("auto", "CPU", "GPU", "Ascend"), aliases=("platform",)),
    Key("seed", "int", 42, "random seed (weights, data order, augmentation)", "run"),
    Key("log_interval", "int", 20, "steps between training log lines", "run"),
    Key("output_dir", "str", "output/snnmlp", "where checkpoints, config.yaml, train.log, metrics.jsonl and "
        "curves.png go",
        "run", aliases=("ckpt_save_dir",)),
    Key("tensorboard", "bool", False, "train: also write TensorBoard event files (tensorboardX) to output_dir/"
        "tensorboard: the epoch metrics of curves.png, per step loss, lr and grad_norm, images/s per log line",
        "run"),
    Key("keep_checkpoint_max", "int", 5, "epoch checkpoints kept (the newest; best.ckpt is kept apart)", "run"),
    Key("resume", "str", None, "train: continue from this checkpoint (its epoch, step, optimizer state)", "run",
        nullable=True),
    Key("auto_resume", "bool", True, "train: continue from the newest complete checkpoint in output_dir", "run"),
    Key("ckpt_path", "str", None, "eval: the checkpoint to evaluate; train: weights to start from", "run",
        nullable=True, aliases=("checkpoint_path",)),
    Key("ckpt_sha256", "str", None, "expected SHA-256 of ckpt_path (else its .sha256 sidecar when present)", "run",
        nullable=True),
]

KEYS = {key.name: key for key in _KEYS}
AUG_KEYS = tuple(key.name for key in _KEYS if key.section == "aug")
_ALIASES = {alias: key.name for key in _KEYS for alias in key.aliases}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NULL = ("null", "none", "~", "")


def _unknown_key(name, where):
    close = difflib.get_close_matches(name, list(KEYS) + list(_ALIASES), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key '{name}' {where}{hint} Valid keys: {', '.join(KEYS)}")


def _scalar(key, value, item_type):
    if item_type == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(f"{key.name}: expected true or false, got {value!r}")
    if item_type == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{key.name}: expected an integer, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key.name}: expected an integer, got {value!r}") from None
    if item_type == "float":
        if isinstance(value, bool):
            raise ConfigError(f"{key.name}: expected a number, got {value!r}")
        try:
            return float(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key.name}: expected a number, got {value!r}") from None
    return str(value)


def parse_value(key, value):
    """``value`` (from YAML, or a command-line string) converted to the type of ``key``; ConfigError if not."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NULL and key.type != "str"):
        if key.nullable:
            return None
        raise ConfigError(f"{key.name} must be set (it cannot be null)")
    if isinstance(value, str) and key.nullable and value.strip().lower() in ("null", "none", "~"):
        return None
    if key.type.endswith("_list"):
        if isinstance(value, str):
            text = value.strip()
            try:
                value = yaml.safe_load(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
            except yaml.YAMLError as e:
                problem = getattr(e, "problem", None) or " ".join(str(e).split())
                raise ConfigError(f"{key.name}: cannot read {value!r} as a list ({problem}); write it like "
                                  f"1,2,3 or [1,2,3]") from None
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{key.name}: expected a non-empty list like 1,2,3, got {value!r}")
        return [_scalar(key, v, key.type[:-len("_list")]) for v in value]
    result = _scalar(key, value, key.type)
    if key.choices and result not in key.choices:
        matched = [c for c in key.choices if c.lower() == str(result).lower()]
        if not matched:
            raise ConfigError(f"{key.name}: {result!r} is not one of {', '.join(key.choices)}")
        result = matched[0]
    return result


def resolve_config_path(path):
    """An existing config file: ``path`` as given (relative to the working directory), else relative to the
    repository, so ``--config_path config/x.yaml`` works from anywhere."""
    for candidate in (path, os.path.join(REPO_ROOT, path)):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise ConfigError(f"config file not found: {path} (looked in the working directory and in {REPO_ROOT})")


def load_yaml(path, skip_nulls=False):
    """``{key: typed value}`` of a config file; unknown keys and bad values are ConfigErrors. ``skip_nulls``:
    a null means "not set" for every key (leaves it out) instead of being refused where a key needs a value."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read the config {path}: {' '.join(str(e).split())}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"the config {path} must be a mapping of key: value, got {type(data).__name__}")
    values = {}
    for name, value in data.items():
        canonical = _ALIASES.get(name, name)
        if canonical not in KEYS:
            raise _unknown_key(name, f"in {path}")
        if value is None and skip_nulls:
            continue
        try:
            values[canonical] = parse_value(KEYS[canonical], value)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    return values


def _format_default(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=34, width=120)


def _build_parser(description, defaults, source):
    parser = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter, add_help=True,
                                     allow_abbrev=False, usage="%(prog)s [--config_path FILE] [--KEY VALUE ...]",
                                     epilog="Every key can also be set in the YAML file; the command line wins. "
                                            "Lists: 1,2,3 or [1,2,3]. Booleans: true/false. null: unset.")
    parser.add_argument("-c", "--config_path", metavar="FILE", default=DEFAULT_CONFIG,
                        help=f"YAML config, relative to the working directory or the repository "
                             f"(default: {DEFAULT_CONFIG}; defaults below are from {source}); -c as in mindcv")
    groups = {name: parser.add_argument_group(title) for name, title in SECTIONS.items()}
    for key in _KEYS:
        flags = [f"--{key.name}"] + [f"--{alias}" for alias in key.aliases]
        choices = f" [{'|'.join(key.choices)}]" if key.choices else ""
        groups[key.section].add_argument(
            *flags, dest=key.name, metavar=key.type.upper(), default=argparse.SUPPRESS,
            help=f"{key.help}{choices} (default: {_format_default(defaults[key.name])})")
    return parser


def config_beside(ckpt_path):
    """The ``config.yaml`` that training saved beside ``ckpt_path`` (eval.py and export.py rebuild the network
    from it), or None."""
    candidate = os.path.join(os.path.dirname(os.path.abspath(ckpt_path)), "config.yaml")
    return candidate if os.path.isfile(candidate) else None


def peek_option(argv, name):
    """The value of ``--name VALUE`` or ``--name=VALUE`` (or an alias of ``name``; ``-c FILE``/``-cFILE`` for
    config_path) in ``argv`` (the last one), or None; for the few options that decide which config file to
    read before the full parse."""
    flags = [f"--{name}"] + [f"--{alias}" for alias in (KEYS[name].aliases if name in KEYS else ())]
    value = None
    for i, arg in enumerate(argv):
        if arg in flags and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(tuple(f"{flag}=" for flag in flags)):
            value = arg.split("=", 1)[1]
        elif name == "config_path" and arg.startswith("-c") and not arg.startswith("--"):
            value = argv[i + 1] if arg == "-c" and i + 1 < len(argv) else arg[2:].lstrip("=") or value
    return value


def load_config(argv=None, description="SNN-MLP", defaults_from=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into a flat ``argparse.Namespace`` of every key.

    Precedence: declared defaults < ``defaults_from`` (a config file that takes the place of the default
    config when ``--config_path`` is not given, e.g. the ``config.yaml`` beside a checkpoint) or
    ``--config_path`` < command line. The namespace also carries ``config_path`` (the file used). Raises
    ConfigError for any mistake; ``--help`` exits.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    given_path = peek_option(argv, "config_path")
    path = resolve_config_path(given_path or defaults_from or DEFAULT_CONFIG)
    defaults = {key.name: key.default for key in _KEYS}
    defaults.update(load_yaml(path))
    inside_repo = os.path.commonpath([path, REPO_ROOT]) == REPO_ROOT
    parser = _build_parser(description, defaults, os.path.relpath(path, REPO_ROOT) if inside_repo else path)
    parser.error = lambda message: (_ for _ in ()).throw(ConfigError(message))  # no usage dump, no exit 2 here
    known, unknown = parser.parse_known_args(argv)
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        if flag.startswith("--"):
            raise _unknown_key(flag[2:].split("=", 1)[0], "on the command line")
        raise ConfigError(f"unexpected argument {flag!r}: give every setting as --key value")
    values = dict(defaults)
    for name, raw in vars(known).items():
        if name == "config_path":
            continue
        values[name] = parse_value(KEYS[name], raw)
    values["config_path"] = path
    _check(values)
    return argparse.Namespace(**values)


def _check(values):
    """Cross-key rules that single values cannot express."""
    positive = ("num_classes", "image_size", "in_chans", "patch_size", "batch_size", "epochs", "base_batch_size",
                "log_interval", "keep_checkpoint_max", "loss_scale_window", "accumulation_steps")
    for name in positive:
        if values[name] <= 0:
            raise ConfigError(f"{name} must be positive, got {values[name]}")
    non_negative = ("warmup_epochs", "lr", "warmup_lr", "min_lr", "weight_decay", "lif_lr", "lif_weight_decay",
                    "lif_start_epoch", "clip_grad", "drop_rate", "drop_path_rate")
    for name in non_negative:
        if values[name] is not None and values[name] < 0:
            raise ConfigError(f"{name} must not be negative, got {values[name]}")
    if values["warmup_epochs"] > values["epochs"]:
        raise ConfigError(f"warmup_epochs ({values['warmup_epochs']}) exceeds epochs ({values['epochs']})")
    if DEPRECATED_NAMES.get(values["model"], values["model"]) == CUSTOM_MODEL and (
            values["embed_dim"] is None or values["depths"] is None):
        raise ConfigError(f"model {values['model']} has no preset architecture: set embed_dim and depths")
    if len(values["betas"]) != 2:
        raise ConfigError(f"betas must be two numbers beta1,beta2, got {values['betas']}")
    for name in ("lr", "warmup_lr", "min_lr", "lif_lr", "weight_decay", "loss_scale"):
        if not math.isfinite(values[name]):
            raise ConfigError(f"{name} must be a finite number, got {values[name]}")
    if values["loss_scale"] <= 0:
        raise ConfigError(f"loss_scale must be positive, got {values['loss_scale']}")
    if values["lr"] <= 0:
        raise ConfigError(f"lr must be positive, got {values['lr']} (nothing would be learnt)")
    if values["min_lr"] > values["lr"]:
        raise ConfigError(f"min_lr ({values['min_lr']}) exceeds lr ({values['lr']}): the cosine decay would rise")
    # Each stage after the first halves the resolution: the network's input_multiple.
    stages = len(values["depths"]) if values["depths"] else 4
    multiple = values["patch_size"] * 2 ** (stages - 1)
    if values["image_size"] % multiple:
        raise ConfigError(f"image_size {values['image_size']} is not a multiple of {multiple} (patch_size "
                          f"{values['patch_size']} halved over {stages} stages)")


def model_kwargs(cfg):
    """``create_model`` keyword arguments of a config: every SNNMLP argument (its signature) the config sets;
    null architecture keys keep the variant's own."""
    kwargs = {name: getattr(cfg, name) for name in model_arg_names() if getattr(cfg, name, None) is not None}
    if "depths" in kwargs:
        kwargs["depths"] = tuple(kwargs["depths"])
    return kwargs


def model_arg_names():
    """SNNMLP's keyword arguments, from its signature (imports the network, hence MindSpore)."""
    import inspect

    from .snn_mlp import SNNMLP

    return [name for name in inspect.signature(SNNMLP).parameters]


def aug_settings(cfg):
    """The ``aug`` dict ``create_dataset`` takes."""
    return {name: getattr(cfg, name) for name in AUG_KEYS}


def dump_config(cfg, header=None):
    """YAML text of every key of ``cfg``, grouped and commented like ``--help``; loads back to the same."""
    lines = [f"# {line}" for line in (header or "").splitlines()]
    for section, title in SECTIONS.items():
        lines.append(f"\n# --- {title}")
        for key in _KEYS:
            if key.section == section:
                value = yaml.safe_dump(getattr(cfg, key.name), default_flow_style=True).strip()
                value = value[:-len("\n...")].strip() if value.endswith("...") else value
                lines.append(f"{key.name}: {value}  # {key.help}")
    return "\n".join(lines).lstrip("\n") + "\n"


def save_config(cfg, path, header=None):
    """Write ``dump_config(cfg)`` to ``path`` atomically (a reader never sees half a file)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dump_config(cfg, header))
    os.replace(tmp, path)
