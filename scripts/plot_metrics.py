"""Overlay the training curves of several runs in one PNG.

Each RUN_DIR is a train.py output folder (it holds metrics.jsonl, one record per finished epoch). The figure has
three panels per epoch: loss (train solid, validation dashed), validation top-1/top-5, and the learning rate;
one colour per run, labelled with the folder name (or --labels). train.py draws the same figure for its own run
into RUN_DIR/curves.png after every epoch.

examples:
  python scripts/plot_metrics.py output/snnmlp_digits
  python scripts/plot_metrics.py output/run_a output/run_b --labels "lr 5e-4,lr 1e-3" --output compare.png
"""
import argparse
import importlib.util
import os
import sys

CURVES_MODULE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "engine", "curves.py")


def _curves():
    """src/engine/curves.py loaded on its own: importing it through ``src.engine`` would load MindSpore (the
    package's other modules), seconds spent on nothing a plot needs."""
    spec = importlib.util.spec_from_file_location("snn_mlp_curves", CURVES_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="train.py output folders (metrics.jsonl)")
    parser.add_argument("--output", default="curves_compared.png",
                        help="PNG to write (default: curves_compared.png in the working directory)")
    parser.add_argument("--labels", default=None,
                        help="comma-separated legend names, one per RUN_DIR (default: the folder names)")
    parser.add_argument("--title", default=None, help="figure title (default: none)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    curves = _curves()
    labels = args.labels.split(",") if args.labels else [os.path.basename(os.path.normpath(d)) for d in args.run_dirs]
    if len(labels) != len(args.run_dirs):
        print(f"plot_metrics.py: error: {len(labels)} labels for {len(args.run_dirs)} run folders", file=sys.stderr)
        return 2
    try:
        runs = [(label, curves.read_metrics(run_dir)) for label, run_dir in zip(labels, args.run_dirs)]
    except curves.MetricsError as e:
        print(f"plot_metrics.py: error: {e}", file=sys.stderr)
        return 2
    output = os.path.abspath(args.output)
    if not os.path.isdir(os.path.dirname(output)):
        print(f"plot_metrics.py: error: the folder of --output {args.output} does not exist", file=sys.stderr)
        return 2
    curves.plot_runs(runs, output, title=args.title)
    epochs = ", ".join(f"{label} {len(records)}" for label, records in runs)
    print(f"wrote {output} (epochs: {epochs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
