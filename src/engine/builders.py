"""What a run is built from, given its config: the data root and pipelines, the network (with mixed
precision), initial weights, and the train step (parameter groups, AdamW, EMA, gradient mean across devices,
clipping and loss scaling). ``train`` and ``eval.py`` call these; so does ``scripts/benchmark.py``, which times
the train step that training runs."""
import logging
import os

import mindspore as ms
from mindspore import nn

from ..checkpoint import load_checkpoint_strict, read_checkpoint, verify_file
from ..config import ConfigError, aug_settings, model_kwargs
from .optim import EMA, AdamW, build_param_groups
from .step import TrainStep

__all__ = ["resolve_dataset", "build_dataset", "build_network", "load_initial_weights", "build_train_step"]

logger = logging.getLogger("snn_mlp")


def resolve_dataset(cfg):
    """The ImageFolder root to read: ``dataset_path``, or the embedded digits exported on first use."""
    if cfg.dataset_path is None:
        from ..default_data import DIGITS_NUM_CLASSES, prepare_default_data

        if cfg.num_classes != DIGITS_NUM_CLASSES:
            raise ConfigError(f"dataset_path is not set: pass --dataset_path (the ImageFolder root of the "
                              f"{cfg.num_classes}-class data); unset, it means the embedded {DIGITS_NUM_CLASSES}-class "
                              f"digits")
        return prepare_default_data()
    path = os.path.abspath(os.path.expanduser(cfg.dataset_path))
    if not os.path.isdir(path):
        raise ConfigError(f"dataset_path {cfg.dataset_path} is not a directory (expected an ImageFolder root "
                          f"holding train/ and val/)")
    return path


def build_network(cfg, device_target, workdir=None):
    """``(model, net)``: the SNN-MLP of ``cfg``, and what to call for the forward pass, ``model`` itself or its
    mixed-precision version (``amp_level`` O1/O2/O3 on GPU/Ascend; on CPU training stays in float32).

    Both share the Parameters, whose names stay the official ones. O1 is MindSpore's source rewrite of the
    network: it writes a ``rewritten_network/`` folder into the working directory, hence ``workdir``.
    """
    from ..snn_mlp import SNNMLP, create_model

    model = create_model(cfg.model, **model_kwargs(cfg))
    if cfg.amp_level == "O0":
        return model, model
    if device_target == "CPU":
        logger.warning("amp_level %s ignored on CPU: computing in float32", cfg.amp_level)
        return model, model
    names = [(p.name, tuple(p.shape)) for p in model.get_parameters()]
    cwd = os.getcwd()
    try:
        if workdir:
            os.chdir(workdir)
        net = ms.amp.auto_mixed_precision(model, cfg.amp_level)
    except Exception as e:  # the rewrite behind O1 fails on Cells it cannot parse
        raise ConfigError(f"amp_level {cfg.amp_level} cannot be applied to this network "
                          f"({' '.join(str(e).split())[:300]}); use amp_level O2") from e
    finally:
        os.chdir(cwd)
    params = list(net.get_parameters())
    if [tuple(p.shape) for p in params] != [shape for _, shape in names]:
        raise ConfigError(f"amp_level {cfg.amp_level} changed the network's parameters; use amp_level O2")
    # O1 rebuilds the network class, whose parameters come back with their structural names.
    for param, (name, _) in zip(params, names):
        param.name = name
    # O2/O3 wrap `model` (same Parameters); O1 returns a rebuilt SNN-MLP that replaces it.
    return (net if isinstance(net, SNNMLP) else model), net


def load_initial_weights(net, path, expected_sha256=None):
    """Strictly load the weights of ``path`` into ``net`` to start training from them. A classifier for
    another number of classes (fine-tuning ImageNet weights on a new dataset) is left at its initialisation;
    everything else must match."""
    sha = verify_file(path, expected_sha256)  # the one hash of this load: the reads below reuse it
    head = read_checkpoint(path, choice_func=lambda name: name == "head.weight", verified_sha256=sha).get("head.weight")
    exclude = ("ema.",)
    if head is not None and tuple(head.shape) != tuple(net.head.weight.shape):
        exclude += ("head.",)
        logger.warning("%s has a %d-class classifier: starting from its other weights with a new %d-class head",
                       path, head.shape[0], net.head.weight.shape[0])
    load_checkpoint_strict(net, path, exclude=exclude, verified_sha256=sha)
    logger.info("initial weights from %s", path)


def build_dataset(cfg, root, train, rank, size, seed):
    """``create_dataset`` of ``cfg`` for the train or val split of ``root``, this rank's shard, seeded by ``seed``;
    a setting the pipeline refuses is a ConfigError."""
    from ..dataset import create_dataset

    try:
        return create_dataset(root, train, cfg.batch_size, image_size=cfg.image_size, num_classes=cfg.num_classes,
                              rank_id=rank, rank_size=size, num_workers=cfg.num_parallel_workers, seed=seed,
                              aug=aug_settings(cfg))
    except ValueError as e:
        raise ConfigError(str(e)) from e


def build_train_step(cfg, model, net, group_size=1):
    """The ``TrainStep`` that training runs for ``cfg``: AdamW over ``model``'s parameter groups (its
    ``optimizer.groups``), the EMA of ``cfg.ema`` (its ``ema``, or None), the gradient mean across
    ``group_size`` devices, clipping and loss scaling; ``net`` is what the forward pass calls (``model`` or its
    mixed-precision version, see ``build_network``). The learning rates come with each call."""
    groups = build_param_groups(model, cfg.weight_decay, cfg.lif_weight_decay, cfg.filter_bias_and_bn)
    optimizer = AdamW(groups, cfg.betas[0], cfg.betas[1], cfg.eps)
    ema = EMA(model.trainable_params(), cfg.ema_decay) if cfg.ema else None
    reducer = None
    if group_size > 1:
        reducer = nn.DistributedGradReducer(optimizer.parameters, mean=True, degree=group_size)
    return TrainStep(net, optimizer, cfg.clip_grad, cfg.loss_scale, cfg.loss_scale_type, cfg.loss_scale_factor,
                     cfg.loss_scale_window, ema, reducer)
