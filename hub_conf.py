"""MindSpore Hub entry of SNN-MLP: ``create_network(name, *args, **kwargs)``.

MindSpore Hub executes ``mindspore_hub_conf.py`` (which re-exports this) from a downloaded copy of the
repository. Importing does nothing else: no argument parsing, no config; the model code is imported on
the first call.

Every model-zoo network ships a package named ``src``. So that this one loads next to any of them, and
from several folders in one process, the ``src`` package beside this file is imported under a private
name derived from its folder (its modules import each other relatively), unless ``src`` already is that
very package (a checkout, where ``src.snn_mlp`` stays the import path).
"""
import hashlib
import importlib
import importlib.util
import os
import sys

__all__ = ["create_network"]

_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "src")


def _import_hub():
    loaded = sys.modules.get("src")
    if loaded is not None and os.path.realpath(os.path.dirname(loaded.__file__ or "")) == _PACKAGE_DIR:
        return importlib.import_module("src.hub")
    private = "_snn_mlp_src_" + hashlib.sha256(_PACKAGE_DIR.encode()).hexdigest()[:12]
    if private not in sys.modules:
        spec = importlib.util.spec_from_file_location(private, os.path.join(_PACKAGE_DIR, "__init__.py"),
                                                      submodule_search_locations=[_PACKAGE_DIR])
        package = importlib.util.module_from_spec(spec)
        sys.modules[private] = package
        try:
            spec.loader.exec_module(package)
        except BaseException:
            del sys.modules[private]
            raise
    return importlib.import_module(f"{private}.hub")


def create_network(name, *args, **kwargs):
    """Build ``name``: ``snn_mlp`` (= ``snnmlp_t``), ``snnmlp_t``, ``snnmlp_s`` or ``snnmlp_b``.

    ``args``: SNNMLP's parameters in its order, ``num_classes`` first, as ``mindspore_hub.load(uid, 1000)``
    passes them. Keywords go to ``src.hub.load``: ``num_classes=1000``, ``pretrained=False`` (download,
    verify and strictly load the released weights), ``ckpt_path=None`` (strictly load a local checkpoint),
    ``offline``, and any SNNMLP argument (``image_size``, ``drop_path_rate``, ``lif_backend``, …). Unknown
    names raise ValueError.
    """
    return _import_hub().load(name, *args, **kwargs)
