"""MindSpore Hub entry of SNN-MLP: ``create_network(name, **kwargs)``.

MindSpore Hub executes ``mindspore_hub_conf.py`` (which re-exports this) from a downloaded copy of the
repository. Importing does nothing else: no argument parsing, no config; the model code is imported on
the first call.
"""
import os
import sys

__all__ = ["create_network"]

_ROOT = os.path.dirname(os.path.abspath(__file__))


def _import_hub():
    # The hub may execute this file from anywhere; the model code is the 'src' package beside it.
    loaded = sys.modules.get("src")
    if loaded is not None and os.path.dirname(os.path.dirname(os.path.abspath(loaded.__file__ or ""))) != _ROOT:
        raise ImportError(f"another 'src' package ({loaded.__file__}) is already imported in this process; "
                          f"SNN-MLP's hub entry needs its own ({os.path.join(_ROOT, 'src')})")
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)
    from src import hub
    return hub


def create_network(name, *args, **kwargs):
    """Build ``name``: ``snn_mlp`` (= ``snnmlp_t``), ``snnmlp_t``, ``snnmlp_s`` or ``snnmlp_b``.

    Keyword arguments go to ``src.hub.load``: ``num_classes=1000``, ``pretrained=False`` (download and
    verify the released weights), ``ckpt_path=None`` (strictly load a local checkpoint), ``offline``, and any
    SNNMLP argument (``image_size``, ``drop_path_rate``, ``lif_backend``, …). Unknown names raise ValueError.
    """
    if args:
        raise TypeError(f"create_network takes its options as keywords (num_classes=..., pretrained=...), "
                        f"got positional {args!r}")
    hub = _import_hub()
    return hub.load(name, **kwargs)
