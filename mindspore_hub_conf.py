"""The file MindSpore Hub looks for: ``create_network`` from hub_conf.py beside it.

hub_conf.py is loaded by its path (under a private module name), so this works however the hub executes
this file, and never picks up another project's ``hub_conf`` module.
"""
import importlib.util
import os

__all__ = ["create_network"]

_spec = importlib.util.spec_from_file_location(
    "_snn_mlp_hub_conf", os.path.join(os.path.dirname(os.path.abspath(__file__)), "hub_conf.py"))
_hub_conf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_hub_conf)
create_network = _hub_conf.create_network
