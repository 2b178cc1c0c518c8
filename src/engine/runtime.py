"""Process set-up shared by training and evaluation: execution mode, device and seeds, distributed launch
(rank, group size, the host-side all-reduce) and the ``snn_mlp`` logger's handlers."""
import logging
import os
import sys

import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from ..config import ConfigError

__all__ = ["setup_context", "distributed_env", "init_distributed", "make_all_reduce", "setup_logging"]

logger = logging.getLogger("snn_mlp")

# msrun (MS_WORKER_NUM, MS_ROLE) and rank tables (RANK_TABLE_FILE) need init() even for one worker: their
# scheduler waits for it. mpirun-style launches say RANK_SIZE, which only matters above 1.
_LAUNCHER_ENV = ("MS_WORKER_NUM", "MS_ROLE", "RANK_TABLE_FILE")


def distributed_env():
    """True when a launcher (msrun, a rank table, mpirun with RANK_SIZE > 1) started this process."""
    if any(os.environ.get(name) for name in _LAUNCHER_ENV):
        return True
    rank_size = os.environ.get("RANK_SIZE", "").strip()
    return rank_size.isdigit() and int(rank_size) > 1


def setup_context(cfg):
    """Execution mode, device and seeds; returns the device target in use."""
    ms.set_context(mode=ms.GRAPH_MODE if cfg.mode == "GRAPH" else ms.PYNATIVE_MODE)
    target = ms.get_context("device_target") if cfg.device_target == "auto" else cfg.device_target
    device_id = os.environ.get("DEVICE_ID", "")
    try:
        if device_id.isdigit() and target != "CPU":
            ms.set_device(target, int(device_id))
        elif target != ms.get_context("device_target"):
            ms.set_device(target)  # only then: once the runtime runs, MindSpore refuses even the same target
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"cannot use device_target {target}: {str(e).strip().splitlines()[0]}") from e
    ms.set_seed(cfg.seed)
    return target


def init_distributed():
    """``(rank, group size)``; initialises communication and data parallelism only under a launcher."""
    if not distributed_env():
        return 0, 1
    from mindspore.communication import get_group_size, get_rank, init

    init()
    rank, size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=size)
    return rank, size


class _AllReduceSum(nn.Cell):
    def __init__(self):
        super().__init__()
        self.op = ops.AllReduce(ops.ReduceOp.SUM)

    def construct(self, x):
        return self.op(x)


def make_all_reduce(group_size):
    """``f(np.ndarray) -> np.ndarray`` summing across ranks (float32 on the wire), or None on one device."""
    if group_size == 1:
        return None
    cell = _AllReduceSum()
    return lambda values: cell(Tensor(np.asarray(values, np.float32))).asnumpy().astype(np.float64)


def setup_logging(output_dir=None, rank=0, stream=None):
    """The ``snn_mlp`` logger: rank 0 logs INFO to ``stream`` (stdout) and ``output_dir/train.log``; other
    ranks log warnings and errors only, prefixed with their rank, to stderr."""
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%Y-%m-%d %H:%M:%S")
    if rank == 0:
        console = logging.StreamHandler(stream or sys.stdout)
        console.setFormatter(fmt)
        logger.addHandler(console)
        if output_dir:
            file_handler = logging.FileHandler(os.path.join(output_dir, "train.log"), encoding="utf-8")
            file_handler.setFormatter(fmt)
            logger.addHandler(file_handler)
    else:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter(f"[rank {rank}] %(levelname).1s %(message)s"))
        logger.addHandler(console)
