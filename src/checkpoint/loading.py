"""Loading: reading a verified checkpoint, and the strict all-or-nothing load into a network."""
import os
import re

import numpy as np

import mindspore as ms
from mindspore import Parameter
from mindspore import dtype as mstype

from .errors import CheckpointError
from .integrity import sidecar_path, verify_file

__all__ = ["read_checkpoint", "load_checkpoint_strict", "mismatch_report", "IGNORED_ENTRY_PREFIXES",
           "IGNORED_ENTRY_NAMES"]

_CRC_TRAILER = 17  # b"crc_num" + 10 bytes of CRC32, at the end of a checkpoint saved with crc_check=True


# ---------------------------------------------------------------------------------------------------------
# Strict load
# ---------------------------------------------------------------------------------------------------------

# Training state MindSpore optimizers and wrappers store beside the weights; a weights-only load skips them.
IGNORED_ENTRY_PREFIXES = (
    "moments.", "moment.", "moment1.", "moment2.", "adam_m.", "adam_v.", "lamb_m.", "lamb_v.", "exp_avg.",
    "exp_avg_sq.", "max_exp_avg_sq.", "exp_inf.", "vhat.", "accum.", "accum_update.", "stat.", "linear.",
    "mean_grad.", "mean_square.", "prev.", "step_size.", "ax.", "ax_.",
)
IGNORED_ENTRY_NAMES = re.compile(
    r"^(learning_rate(_group_\d+)?|global_step|beta1_power|beta2_power|momentum|weight_decay|scale_sense|"
    r"loss_scale|current_iterator_step|last_overflow_iterator_step|epoch_num|step_num)$")


def _is_ignored(name):
    return name.startswith(IGNORED_ENTRY_PREFIXES) or bool(IGNORED_ENTRY_NAMES.match(name))


def mismatch_report(*groups):
    """One line describing how a checkpoint does not fit: ``(label, names[, shown])`` groups become
    ``"N label (first, …, (k more))"`` joined by ``"; "``, empty groups left out ("" when all are empty).
    The one wording of strict loads, resume and conversion."""
    parts = []
    for label, names, *shown in groups:
        names, limit = list(names), (shown or [5])[0]
        if names:
            first = ", ".join(names[:limit]) + (f", … ({len(names) - limit} more)" if len(names) > limit else "")
            parts.append(f"{len(names)} {label} ({first})")
    return "; ".join(parts)


def _has_crc(path):
    """Whether ``path`` ends in the CRC32 trailer ``ms.save_checkpoint(crc_check=True)`` writes."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < _CRC_TRAILER:
                return False
            f.seek(-_CRC_TRAILER, os.SEEK_END)
            return f.read(_CRC_TRAILER).startswith(b"crc_num")
    except OSError:
        return False


def read_checkpoint(path, expected_sha256=None, choice_func=None, verified_sha256=None):
    """Verify ``path`` and read it into ``{name: Parameter | str}`` (only the names ``choice_func`` accepts,
    when given). A file without a sidecar (a copy) is also checked against its CRC32 trailer when it has one
    (ours do), so corruption is caught even when nothing else vouches for it; a file with a sidecar skips
    the CRC, which adds ~1 s to a 113 MB load. Corrupt files become CheckpointError. ``verified_sha256``: the
    hash ``check_file``/``verify_file`` just returned for this file, which is then not hashed a second time."""
    if verified_sha256 is None:
        verify_file(path, expected_sha256)
    path = os.fspath(path)
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"cannot read the checkpoint {path}: it is empty (0 bytes; an interrupted copy or "
                              f"download?)")
    has_sidecar = any(os.path.exists(sidecar_path(owner)) for owner in (path, os.path.realpath(path)))
    try:
        entries = ms.load_checkpoint(path, choice_func=choice_func, crc_check=not has_sidecar and _has_crc(path))
    except Exception as e:  # MindSpore raises ValueError/RuntimeError/TypeError for unreadable files
        cause = e
        while cause.__cause__ or cause.__context__:  # MindSpore rewraps a failed CRC as a permission problem
            cause = cause.__cause__ or cause.__context__
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise CheckpointError(f"cannot read the checkpoint {path}: the file is corrupt, truncated or not a "
                              f"MindSpore checkpoint ({first_line})") from e
    return entries


def _metadata_value(value):
    if isinstance(value, str):
        return value
    array = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
    if array.ndim == 0:
        return array.item()
    return None


def load_checkpoint_strict(net, path, expected_sha256=None, exclude=(), verified_sha256=None):
    """Load every parameter of ``net`` from ``path`` and use every entry of it, or load nothing.

    The file is verified first (``expected_sha256`` or its sidecar; see ``read_checkpoint`` for
    ``verified_sha256``). Entry names go through the network's
    ``checkpoint_filter_fn`` when it has one (SNN-MLP's accepts official ``0.blocks…`` and structural
    ``layers.k.…`` names), else are taken as they are. Optimizer state (``IGNORED_ENTRY_*``) is skipped;
    scalar or string entries whose name has no dot (epoch, step, …) are returned as a dict of Python values. Parameters
    whose name starts with a prefix in ``exclude`` (``("head.",)`` for a new classifier) keep their values
    and their checkpoint entries are skipped. Floating-point entries are cast to the parameter's type.
    Anything missing, unexpected, of another shape or of a non-float type is a CheckpointError naming
    the first offenders; nothing is assigned unless everything matches.
    """
    exclude = tuple(exclude)
    rename = getattr(net, "checkpoint_filter_fn", None) or (lambda name: name)
    entries = read_checkpoint(path, expected_sha256, verified_sha256=verified_sha256)
    params = {p.name: p for p in net.get_parameters()}
    to_load, metadata, seen_from = {}, {}, {}
    unexpected, wrong_shape, wrong_type, refused = [], [], [], set()
    for name, value in entries.items():
        target = rename(name)
        if target in seen_from:
            raise CheckpointError(f"{path}: the entries {seen_from[target]} and {name} are the same parameter")
        seen_from[target] = name
        if target in params:
            if target.startswith(exclude):
                continue
            param = params[target]
            if isinstance(value, str) or tuple(value.shape) != tuple(param.shape):
                shape = "a string" if isinstance(value, str) else tuple(value.shape)
                wrong_shape.append(f"{target} {shape} vs network {tuple(param.shape)}")
                refused.add(target)
            elif value.dtype == param.dtype:
                to_load[target] = value
            elif value.dtype in mstype.float_type and param.dtype in mstype.float_type:
                to_load[target] = value.astype(param.dtype)  # e.g. a float16 release into a float32 net
            else:
                wrong_type.append(f"{target} {value.dtype} vs network {param.dtype}")
                refused.add(target)
        elif _is_ignored(name) or name.startswith(exclude):
            continue
        elif "." not in name and _metadata_value(value) is not None:
            metadata[name] = _metadata_value(value)
        else:
            unexpected.append(name)
    missing = [n for n in params if n not in to_load and n not in refused and not n.startswith(exclude)]
    problems = mismatch_report(("network parameters missing", missing), ("unexpected entries", unexpected),
                               ("shape mismatches", wrong_shape, 3), ("type mismatches", wrong_type, 3))
    if problems:
        hint = ""
        if wrong_shape and all(m.startswith("head.") for m in wrong_shape):
            hint = "; a checkpoint for another number of classes: build the network with its num_classes"
        raise CheckpointError(f"{path} does not fit the network: {problems}{hint}")
    ms.load_param_into_net(net, {name: Parameter(value, name=name) for name, value in to_load.items()},
                           strict_load=True)
    return metadata
