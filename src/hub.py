"""Build an SNN-MLP by name, optionally with verified pretrained weights (the body of hub_conf.py)."""
import inspect
import logging
import os

from .checkpoint import (DOWNLOAD_DEADLINE, DOWNLOAD_TIMEOUT, CheckpointError, bad_cache_hint, fetch_asset,
                         get_asset, load_checkpoint_strict, remember_asset, verify_file)
from .models import list_models, resolve_model_name
from .snn_mlp import SNNMLP, create_model

__all__ = ["HUB_MODELS", "load", "pretrained_checkpoint"]

logger = logging.getLogger("snn_mlp.hub")  # a child of the logger setup_logging configures

# Names the hub entry accepts: the released variants and their aliases (the r1.9 model-zoo name snn_mlp = T).
HUB_MODELS = tuple(list_models(custom=False))


def _variant(name):
    if name not in HUB_MODELS:
        raise ValueError(f"unknown SNN-MLP model '{name}'; valid names: {', '.join(HUB_MODELS)}")
    return resolve_model_name(name)


def pretrained_checkpoint(name, offline=None, timeout=DOWNLOAD_TIMEOUT, deadline=DOWNLOAD_DEADLINE):
    """Path of a verified MindSpore checkpoint of the default released weights of ``name``.

    MindSpore assets come from the cache (downloaded and verified when needed); PyTorch releases are
    downloaded, then converted once into ``<cache>/<release>.ckpt`` with a sidecar.
    """
    asset = get_asset(_variant(name))
    path = fetch_asset(asset, offline=offline, timeout=timeout, deadline=deadline)
    if asset.framework == "mindspore":
        return path
    converted = os.path.splitext(path)[0] + ".ckpt"
    if os.path.exists(converted):
        try:
            verify_file(converted)
            return converted
        except CheckpointError as e:
            logger.warning("%s; converting %s again", e, path)
    from .convert import convert_torch_checkpoint
    convert_torch_checkpoint(path, converted, log=logger.info)  # the strict load below checks the fit
    return converted


def _network_kwargs(args, kwargs):
    """Positional arguments as MindSpore Hub passes them (``mindspore_hub.load(uid, 1000)``): SNNMLP's
    parameters in its signature order, ``num_classes`` first; merged with the keywords."""
    names = [n for n in inspect.signature(SNNMLP.__init__).parameters if n != "self"]
    if len(args) > len(names):
        raise TypeError(f"SNN-MLP takes at most {len(names)} positional arguments ({', '.join(names)}), "
                        f"got {len(args)}")
    positional = dict(zip(names, args))
    if isinstance(positional.get("num_classes"), bool):  # load(name, True) meant pretrained=True
        raise TypeError("the first positional argument is num_classes; give pretrained=True as a keyword")
    both = sorted(set(positional) & set(kwargs))
    if both:
        raise TypeError(f"SNN-MLP got {both[0]!r} both positionally and as a keyword")
    return {**positional, **kwargs}


def load(name, *args, pretrained=False, ckpt_path=None, offline=None, timeout=DOWNLOAD_TIMEOUT,
         deadline=DOWNLOAD_DEADLINE, **kwargs):
    """SNN-MLP ``name`` (``snn_mlp`` = ``snnmlp_t``, ``snnmlp_s``, ``snnmlp_b``) built with ``args`` and
    ``kwargs``: SNNMLP's parameters, positionally in its order (``num_classes``, ``image_size``, …) or by
    keyword (``num_classes``, ``image_size``, ``drop_path_rate``, ``lif_backend``, …).

    ``ckpt_path``: strictly load that checkpoint (verified against its sidecar when it has one).
    ``pretrained=True`` (without ``ckpt_path``): download, verify and strictly load the released ImageNet
    weights; with another ``num_classes`` every weight but the classifier head is loaded (fine-tuning).
    ``offline``: never download (default: ``$SNNMLP_OFFLINE``). ``timeout``: seconds to connect and per read
    (and before the minimum rate applies); ``deadline``: seconds for the whole download (None: no limit).
    Errors are CheckpointError/ValueError.
    """
    variant = _variant(name)
    net = create_model(variant, **_network_kwargs(args, kwargs))
    if ckpt_path is not None:
        load_checkpoint_strict(net, ckpt_path)
    elif pretrained:
        asset = get_asset(variant)
        exclude = ()
        if net.num_classes != asset.num_classes:
            exclude = ("head.",)
            logger.info("num_classes=%d differs from the release's %d: the head keeps its initialisation",
                        net.num_classes, asset.num_classes)
        try:
            path = pretrained_checkpoint(variant, offline=offline, timeout=timeout, deadline=deadline)
            load_checkpoint_strict(net, path, expected_sha256=asset.sha256 if asset.framework == "mindspore"
                                   else None, exclude=exclude)
        except CheckpointError as e:
            if asset.sha256 is None:
                raise CheckpointError(f"{e}; {bad_cache_hint(asset)}") from e
            raise
        remember_asset(asset)  # an unpublished hash is trusted only now that the file loaded as its variant
    return net
