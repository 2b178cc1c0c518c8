"""Export a trained SNN-MLP to MINDIR, ONNX or AIR for deployment.

The network is built with the primitive LIF back-end and without the fused CPU ops (plain MindSpore ops), so
the exported graph needs no custom kernel library. The checkpoint is verified (its .sha256 sidecar) and loaded strictly before export.
Model variant, num_classes, image_size and architecture arguments come from the config.yaml that training
saved beside the checkpoint when there is one; flags given on the command line override it.
"""
import argparse
import inspect
import os
import sys

import numpy as np

import mindspore as ms

from src.fast_ops.onnx import make_onnx_exportable
from src.kernels.export_mode import exporting
from src.checkpoint import CheckpointError, check_file, load_checkpoint_strict, unverified_notice, write_sidecar
from src.config import ConfigError, config_beside, load_yaml
from src.models import CUSTOM_MODEL, list_models
from src.snn_mlp import SNNMLP, create_model

FILE_FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}
MODEL_CHOICES = list_models(deprecated=True)
DEFAULTS = dict(model="snnmlp_t", num_classes=1000, image_size=224)
# SNNMLP arguments a config.yaml may carry; the LIF back-end is always "primitive" here.
ARCH_KEYS = [name for name in inspect.signature(SNNMLP).parameters
             if name not in ("num_classes", "image_size", "lif_backend")]


class ExportError(Exception):
    """A problem with the arguments or the environment, printed as one line."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", "--ckpt_file", required=True, dest="ckpt_path",
                        help="MindSpore checkpoint to export; verified against --ckpt_sha256, else CKPT.sha256 "
                             "(beside it or beside the file a symlink points to), else a known release's hash "
                             "(--ckpt_file: the model zoo's spelling)")
    parser.add_argument("--ckpt_sha256", default=None,
                        help="expected SHA-256 of the checkpoint (for a copy without its sidecar)")
    parser.add_argument("--model", choices=MODEL_CHOICES, default=None,
                        help="variant (default: 'model' of config.yaml beside the checkpoint, else snnmlp_t; "
                             f"'{CUSTOM_MODEL}' takes the architecture from config.yaml)")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="classifier size (default: config.yaml, else 1000)")
    parser.add_argument("--file_format", choices=sorted(FILE_FORMATS), default="MINDIR",
                        help="MINDIR (MindSpore Lite / ms.load), ONNX (onnxruntime etc.) or AIR (Ascend only)")
    parser.add_argument("--file_name", required=True,
                        help="output path; the format's suffix (.mindir/.onnx/.air) is added when missing")
    parser.add_argument("--batch_size", type=int, default=1, help="batch size fixed in the exported graph")
    parser.add_argument("--image_size", type=int, default=None,
                        help="input height and width, a multiple of 32 (default: config.yaml, else 224)")
    parser.add_argument("--config_path", default=None,
                        help="training config to read instead of config.yaml beside the checkpoint")
    parser.add_argument("--device_target", choices=["CPU", "GPU", "Ascend"], default=None,
                        help="MindSpore device target (default: MindSpore's); AIR needs Ascend")
    return parser.parse_args(argv)


def read_training_config(args):
    """The config.yaml beside the checkpoint (or --config_path) as a dict, {} when there is none."""
    if args.config_path and not os.path.exists(args.config_path):
        raise ExportError(f"config not found: {args.config_path}")
    path = args.config_path or config_beside(args.ckpt_path)
    if path is None:
        return {}, None
    try:
        return load_yaml(path, skip_nulls=True), path  # validated as train.py and eval.py do
    except ConfigError as e:
        raise ExportError(str(e)) from e


def resolve_model(args):
    """(model name, SNNMLP kwargs, image_size) from flags over config.yaml over defaults."""
    config, config_file = read_training_config(args)

    def pick(key):
        value = getattr(args, key)
        return value if value is not None else config.get(key, DEFAULTS[key])

    model, num_classes, image_size = pick("model"), int(pick("num_classes")), int(pick("image_size"))
    if model not in MODEL_CHOICES:
        raise ExportError(f"unknown model '{model}' (from {config_file or 'the flags'}); "
                          f"valid: {', '.join(MODEL_CHOICES)}")
    if args.batch_size < 1:
        raise ExportError(f"--batch_size must be positive, got {args.batch_size}")
    if image_size < 32 or image_size % 32:
        raise ExportError(f"image_size must be a positive multiple of 32, got {image_size}")
    # Null architecture keys (embed_dim/depths of a preset variant) mean "the variant's own".
    kwargs = {key: config[key] for key in ARCH_KEYS if config.get(key) is not None}
    if "depths" in kwargs:
        kwargs["depths"] = tuple(kwargs["depths"])
    kwargs.update(num_classes=num_classes, image_size=image_size, lif_backend="primitive")
    source = f"{config_file} and flags" if config_file else "flags"
    print(f"model {model} ({source}): num_classes={num_classes}, image_size={image_size}", flush=True)
    return model, kwargs, image_size


def export(args):
    if args.device_target:
        ms.set_context(device_target=args.device_target)
    if args.file_format == "AIR" and ms.get_context("device_target") != "Ascend":
        raise ExportError(f"AIR export needs the Ascend device target (this is "
                          f"{ms.get_context('device_target')}); use --file_format MINDIR or ONNX")
    if args.file_name.endswith(("/", os.sep)) or os.path.isdir(args.file_name):
        raise ExportError(f"--file_name {args.file_name} is a folder: give a file name in it, e.g. "
                          f"{os.path.join(args.file_name, 'snnmlp')}")
    input_sha, verified_by = check_file(args.ckpt_path, args.ckpt_sha256)  # before the slow network build
    if verified_by is None:
        print(unverified_notice(args.ckpt_path, input_sha), file=sys.stderr, flush=True)
    model, kwargs, image_size = resolve_model(args)
    # Neither the LIF kernels nor the fused CPU ops: their .so would be a dangling path inside the file.
    with exporting():
        net = create_model(model, **kwargs)
    # Hashed once above; a copy without sidecar also has its CRC checked here.
    load_checkpoint_strict(net, args.ckpt_path, verified_sha256=input_sha)
    net.set_train(False)
    if args.file_format == "ONNX":
        make_onnx_exportable(net)
    suffix = FILE_FORMATS[args.file_format]
    base = args.file_name[:-len(suffix)] if args.file_name.lower().endswith(suffix) else args.file_name
    output = os.path.abspath(base + suffix)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    dummy = ms.Tensor(np.zeros((args.batch_size, net.in_chans, image_size, image_size), np.float32))
    # Exported under a temp name and renamed, so an interrupted export never leaves a truncated model.
    partial = os.path.join(os.path.dirname(output), f".{os.path.basename(base)}.{os.getpid()}.partial")
    try:
        ms.export(net, dummy, file_name=partial, file_format=args.file_format)
        os.replace(partial + suffix, output)
    finally:
        if os.path.exists(partial + suffix):
            os.remove(partial + suffix)
    sha = write_sidecar(output)
    source = f"verified against {verified_by}" if verified_by else "UNVERIFIED"
    print(f"exported {output} ({args.file_format}, input {tuple(dummy.shape)}): SHA-256 {sha}; from "
          f"{args.ckpt_path} (SHA-256 {input_sha}, {source})", flush=True)
    return output


def main(argv=None):
    args = parse_args(argv)
    try:
        export(args)
    except (CheckpointError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
