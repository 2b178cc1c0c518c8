"""Convert a PyTorch SNN-MLP checkpoint (.pt) into an official-layout MindSpore checkpoint (.ckpt).

torch is not needed. Prints the input file's SHA-256 (record it in src/checkpoint.py ASSETS the first time
a release is converted) and writes the output atomically with its .sha256 sidecar.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.checkpoint import CheckpointError, verify_file  # noqa: E402  (needs the path above)
from src.convert import convert_torch_checkpoint  # noqa: E402

MODEL_CHOICES = ("snn_mlp", "snnmlp_t", "snnmlp_s", "snnmlp_b")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python scripts/convert_pytorch_ckpt.py --input snnmlp_tiny_81.88.pt "
               "--output snnmlp_t.ckpt --model snnmlp_t")
    parser.add_argument("--input", required=True, metavar="PT",
                        help="PyTorch checkpoint written by torch.save: a state_dict, or a dict holding it "
                             "under 'model' (the original training script's format)")
    parser.add_argument("--output", required=True, metavar="CKPT",
                        help="MindSpore checkpoint to write (must end in .ckpt); CKPT.sha256 is written too")
    parser.add_argument("--model", choices=MODEL_CHOICES, default=None,
                        help="variant the input must be (snn_mlp = snnmlp_t); default: inferred from the "
                             "tensor shapes, and architectures outside the presets are converted as is")
    parser.add_argument("--sha256", default=None, metavar="HEX",
                        help="refuse the input unless its SHA-256 is this (e.g. a published release hash)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.sha256:
            verify_file(args.input, args.sha256)
        name, kwargs, _, _ = convert_torch_checkpoint(args.input, args.output, model=args.model)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    arch = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    print(f"load it with: create_model({name!r}, {arch}) and src.checkpoint.load_checkpoint_strict")
    return 0


if __name__ == "__main__":
    sys.exit(main())
