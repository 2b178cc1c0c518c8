"""Convert a PyTorch SNN-MLP checkpoint (.pt) into an official-layout MindSpore checkpoint (.ckpt).

torch is not needed, and nothing in the file is run: reads the original training script's checkpoints
(weights under 'model', plus optimizers, schedulers, yacs config, amp state), timm's ('state_dict',
'state_dict_ema') and bare state_dicts, in the zip (torch >= 1.6) and legacy formats. Only the weights are
taken; what else the file holds is listed in one line.

Prints the input file's SHA-256 (record it in src/models.py RELEASES the first time a release is
converted) and writes the output atomically with its .sha256 sidecar.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.checkpoint import CheckpointError, verify_file  # noqa: E402  (needs the path above)
from src.convert import DEFAULT_MAX_BYTES, convert_torch_checkpoint  # noqa: E402
from src.models import list_models  # noqa: E402

MODEL_CHOICES = list_models(custom=False)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def byte_count(text):
    """``2147483648``, ``512M`` or ``2G`` (binary units) -> bytes."""
    match = re.fullmatch(r"(\d+)([KMG]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive size such as 2G or 512M, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python scripts/convert_pytorch_ckpt.py --input snnmlp_tiny_81.88.pt "
               "--output snnmlp_t.ckpt --model snnmlp_t")
    parser.add_argument("--input", required=True, metavar="PT",
                        help="PyTorch checkpoint written by torch.save: a state_dict, or a dict holding it "
                             "under 'model' (the original training script's format) or 'state_dict' (timm)")
    parser.add_argument("--output", required=True, metavar="CKPT",
                        help="MindSpore checkpoint to write (must end in .ckpt); CKPT.sha256 is written too")
    parser.add_argument("--model", choices=MODEL_CHOICES, default=None,
                        help="variant the input must be (snn_mlp = snnmlp_t); default: inferred from the "
                             "tensor shapes, and architectures outside the presets are converted as is")
    parser.add_argument("--use_ema", action="store_true",
                        help="convert the EMA weights ('state_dict_ema', or 'model_ema') instead of the "
                             "trained ones; refused when the file has none")
    parser.add_argument("--max_bytes", type=byte_count, default=DEFAULT_MAX_BYTES, metavar="SIZE",
                        help=f"most memory the reader may allocate for the file's pickle, storages and "
                             f"tensors together, e.g. 512M or 4G (default {DEFAULT_MAX_BYTES >> 30}G; SNN-MLP-B "
                             f"needs about 0.7G); larger files, zip bombs and tensors that expand their "
                             f"storage are refused")
    parser.add_argument("--sha256", default=None, metavar="HEX",
                        help="refuse the input unless its SHA-256 is this (e.g. a published release hash)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.sha256:
            verify_file(args.input, args.sha256)
        name, kwargs, _, _ = convert_torch_checkpoint(args.input, args.output, model=args.model,
                                                      use_ema=args.use_ema, max_bytes=args.max_bytes)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"error: out of memory while converting {args.input}; free memory, or lower --max_bytes to "
              f"refuse such files early", file=sys.stderr)
        return 1
    arch = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    print(f"load it with: create_model({name!r}, {arch}) and src.checkpoint.load_checkpoint_strict")
    return 0


if __name__ == "__main__":
    sys.exit(main())
