"""Evaluate an SNN-MLP checkpoint on the validation split: top-1, top-5 and loss over every image.

  python eval.py --ckpt_path output/snnmlp_digits/best.ckpt
  python eval.py --ckpt_path snnmlp_t.ckpt --config_path config/snnmlp_t_imagenet_gpu.yaml --dataset_path /data/imagenet

The network is rebuilt from --config_path when given, else from the config.yaml that train.py saved
beside the checkpoint, else from the default config; command-line keys override the file. The checkpoint is verified before it
is loaded: against --ckpt_sha256, else its .sha256 sidecar, else the hash of a known official release.
Model-zoo and mindcv spellings work too: --checkpoint_path for --ckpt_path, --platform for --device_target,
-c for --config_path. Images the pipeline cannot read are skipped and counted. The last stdout line is one JSON object:
top1, top5, loss, num_images, skipped, ckpt, ckpt_sha256, model, image_size, num_classes, dataset_path.
"""
import json
import os
import sys


def _beside_config(argv):
    from src.config import config_beside, peek_option

    ckpt = peek_option(argv, "ckpt_path")
    return config_beside(ckpt) if ckpt else None


def run(cfg):
    from src.checkpoint import load_checkpoint_strict, verify_file
    from src.dataset import unreadable_report
    from src.engine import evaluate
    from src.engine.builders import build_dataset, build_network, resolve_dataset
    from src.engine.runtime import init_distributed, make_all_reduce, setup_context, setup_logging

    device_target = setup_context(cfg)
    rank, group_size = init_distributed()
    setup_logging(None, rank)
    import logging

    logger = logging.getLogger("snn_mlp")
    logger.info("config %s", cfg.config_path)
    sha = verify_file(cfg.ckpt_path, cfg.ckpt_sha256)
    model, net = build_network(cfg, device_target)
    metadata = load_checkpoint_strict(model, cfg.ckpt_path, exclude=("ema.",), verified_sha256=sha)
    logger.info("loaded %s (SHA-256 %s)%s", cfg.ckpt_path, sha,
                f", epoch {metadata['epoch']}" if "epoch" in metadata else "")
    root = resolve_dataset(cfg)
    data = build_dataset(cfg, root, False, rank, group_size, cfg.seed)
    logger.info("evaluating %s on %s: %d batches of up to %d images", cfg.model, root, data.get_dataset_size(),
                cfg.batch_size)
    result = evaluate(net, data, all_reduce=make_all_reduce(group_size),
                      log_interval=max(1, data.get_dataset_size() // 10))
    unreadable_report("val")
    logger.info("top1 %.3f%% top5 %.3f%% loss %.4f over %d images (%d unreadable skipped) in %.1fs", result.top1,
                result.top5, result.loss, result.num_images, result.skipped, result.seconds)
    report = {"top1": result.top1, "top5": result.top5, "loss": result.loss, "num_images": result.num_images,
              "skipped": result.skipped, "ckpt": os.path.abspath(cfg.ckpt_path), "ckpt_sha256": sha,
              "model": cfg.model, "image_size": cfg.image_size, "num_classes": cfg.num_classes,
              "dataset_path": root, "seconds": round(result.seconds, 2)}
    return report if rank == 0 else None


def main(argv=None):
    from src.config import ConfigError, load_config

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(argv, description=__doc__, defaults_from=_beside_config(argv))
        if not cfg.ckpt_path:
            raise ConfigError("--ckpt_path is required (the checkpoint to evaluate; the model zoo's "
                              "--checkpoint_path works too)")
    except ConfigError as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        return 2
    from src.checkpoint import CheckpointError

    try:
        report = run(cfg)
    except (ConfigError, CheckpointError, ValueError) as e:
        print(f"eval.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("eval.py: interrupted", file=sys.stderr)
        return 130
    if report is not None:
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
