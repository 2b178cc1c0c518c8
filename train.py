"""Train SNN-MLP.

With no arguments it trains the small SNN-MLP of config/snnmlp_digits.yaml on the embedded digits data
(exported from scikit-learn on first use) in a few minutes on a CPU, into output/snnmlp_digits. ImageNet:
  python train.py --config_path config/snnmlp_t_imagenet_gpu.yaml --dataset_path /data/imagenet
Checkpoints, config.yaml, train.log, metrics.jsonl and curves.png (loss, accuracy and lr per epoch, redrawn
after every epoch; scripts/plot_metrics.py overlays several runs) go to --output_dir; running the same
command again continues from the newest complete checkpoint there. Fewer devices than the recipe's 8: keep
its global batch with --accumulation_steps (e.g. 2 devices x 128 x 4). The last stdout line is a JSON summary.
"""
import json
import sys


def main(argv=None):
    from src.config import ConfigError, load_config

    try:
        cfg = load_config(argv, description=__doc__)
    except ConfigError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    from src.checkpoint import CheckpointError
    from src.engine import TrainingError, train

    try:
        summary = train(cfg)
    except (ConfigError, CheckpointError, TrainingError, ValueError) as e:
        print(f"train.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"train.py: interrupted; the checkpoints of finished epochs are in {cfg.output_dir}: run the same "
              f"command to continue from the last one", file=sys.stderr)
        return 130
    print(json.dumps(summary), flush=True)  # every rank: its log then shows that it finished
    return 0


if __name__ == "__main__":
    sys.exit(main())
