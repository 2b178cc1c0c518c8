"""Read the PyTorch SNN-MLP checkpoints without torch and turn them into MindSpore checkpoints.

A ``.pt`` file written by ``torch.save`` (zip format, torch >= 1.6) is a zip holding ``<root>/data.pkl`` and
one raw little-endian buffer per storage under ``<root>/data/``. The pickle is read by an unpickler that
knows only what a state_dict needs (tensor rebuilds, storage types, OrderedDict) and refuses every other
global, so a hostile file cannot run code. Tensors come back as numpy arrays.
"""
import collections
import os
import pickle
import re
import zipfile

import numpy as np

from src.checkpoint import (CheckpointError, save_checkpoint_atomic, sha256_file, to_official_name,
                            to_structural_name)

__all__ = ["read_torch_checkpoint", "extract_state_dict", "infer_architecture", "to_mindspore_names",
           "convert_torch_checkpoint"]

_BFLOAT16 = "bfloat16"  # numpy has no bfloat16: read as uint16 and widen to float32
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": _BFLOAT16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` etc. inside the pickle; only its dtype is used."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    """numpy version of ``torch._utils._rebuild_tensor_v2``: a strided view of a storage, copied out.

    Offsets and strides are checked against the storage size first, so a malformed file cannot make
    ``as_strided`` read outside the buffer.
    """
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
        raise CheckpointError(f"malformed tensor record (size {size}, stride {stride}, offset {offset})")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise CheckpointError(f"a tensor record reaches element {last} of a storage of {storage.size}")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * storage.itemsize for s in stride), writeable=False)
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(f"the checkpoint refers to {module}.{name}, which this reader refuses to load "
                              f"(only tensors in dicts are read, for safety); save just the state_dict: "
                              f"torch.save(model.state_dict(), path)")

    def persistent_load(self, pid):
        # torch.save records each storage as ('storage', storage_type, key, location, numel).
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"unsupported storage record in the checkpoint: {pid!r:.80}")
        return self._load_storage(pid[1].dtype, str(pid[2]), int(pid[4]))


def read_torch_checkpoint(path):
    """Load a ``torch.save`` zip file into Python containers of numpy arrays, without torch."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"PyTorch checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic.startswith(b"PK"):
            raise CheckpointError(f"cannot read the PyTorch checkpoint {path}: the zip is truncated or corrupt")
        if magic[:1] == b"\x80":
            raise CheckpointError(f"{path} is a legacy (torch < 1.6) checkpoint, which is not read; re-save it "
                                  f"with torch.save from a recent torch")
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not a torch.save zip file)")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise CheckpointError(f"{path} is a zip but not a torch.save checkpoint (no single data.pkl)")
            root = pickles[0][:-len("data.pkl")]
            names = set(archive.namelist())
            if f"{root}constants.pkl" in names:
                raise CheckpointError(f"{path} is a TorchScript archive; save the state_dict with torch.save")
            big_endian = (f"{root}byteorder" in names and archive.read(f"{root}byteorder").strip() == b"big")
            storages = {}

            def load_storage(dtype, key, numel):
                if key not in storages:
                    storages[key] = _read_storage(archive, f"{root}data/{key}", dtype, numel, big_endian)
                return storages[key]

            with archive.open(pickles[0]) as data:
                return _RestrictedUnpickler(data, load_storage).load()
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, ValueError, OSError) as e:
        raise CheckpointError(f"cannot read the PyTorch checkpoint {path}: it is corrupt or truncated ({e})") from e


def _read_storage(archive, member, dtype, numel, big_endian):
    raw = archive.read(member)
    item = np.dtype(np.uint16 if dtype == _BFLOAT16 else dtype)
    if len(raw) < numel * item.itemsize:
        raise CheckpointError(f"storage {member} holds {len(raw)} bytes, {numel * item.itemsize} expected")
    array = np.frombuffer(raw, item.newbyteorder(">") if big_endian else item, count=numel)
    if dtype == _BFLOAT16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(item, copy=False)


def extract_state_dict(obj):
    """The state_dict inside what ``torch.save`` stored: ``{'model': sd, ...}``, ``{'state_dict': sd}`` or
    a bare ``sd``; a ``module.`` prefix (DistributedDataParallel) is dropped."""
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, np.ndarray) for v in obj.values()):
        keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"no state_dict found (expected a dict of tensors, or one under 'model' or "
                              f"'state_dict'; found {keys})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


_NORM_AFFINE = re.compile(r"^(.*(?:^|\.)norm\d*)\.(weight|bias)$")


def to_mindspore_names(state_dict):
    """PyTorch names -> official MindSpore names: stages as in ``to_official_name``, GroupNorm
    ``weight``/``bias`` -> ``gamma``/``beta``; conv and linear weights keep their names and layouts."""
    converted = {}
    for name, value in state_dict.items():
        match = _NORM_AFFINE.match(name)
        if match:
            name = f"{match.group(1)}.{'gamma' if match.group(2) == 'weight' else 'beta'}"
        converted[to_official_name(name)] = value
    return converted


def infer_architecture(state_dict):
    """SNNMLP keyword arguments read off the tensor shapes of a PyTorch state_dict."""
    try:
        proj = state_dict["patch_embed.proj.weight"]
        head = state_dict["head.weight"]
        fc1 = state_dict["layers.0.blocks.0.mlp.fc1.weight"]
    except KeyError as e:
        raise CheckpointError(f"not an SNN-MLP state_dict: it has no {e.args[0]}") from None
    stages = collections.defaultdict(set)
    for name in state_dict:
        match = re.match(r"^layers\.(\d+)\.blocks\.(\d+)\.", name)
        if match:
            stages[int(match.group(1))].add(int(match.group(2)))
    if sorted(stages) != list(range(len(stages))):
        raise CheckpointError(f"not an SNN-MLP state_dict: stages {sorted(stages)} are not 0..n-1")
    embed_dim = int(proj.shape[0])
    return dict(embed_dim=embed_dim, depths=tuple(len(stages[i]) for i in range(len(stages))),
                patch_size=int(proj.shape[2]), in_chans=int(proj.shape[1]),
                mlp_ratio=float(fc1.shape[0]) / embed_dim, num_classes=int(head.shape[0]))


def _match_variant(arch):
    from src.snn_mlp import MODEL_ARCHS
    for name, preset in MODEL_ARCHS.items():
        if (arch["embed_dim"], arch["depths"]) == (preset["embed_dim"], tuple(preset["depths"])) \
                and arch["patch_size"] == 4 and arch["in_chans"] == 3 and arch["mlp_ratio"] == 4.0:
            return name
    return None


def _compare(converted, net):
    """Missing / unexpected / shape-mismatched names (PyTorch spelling, as the user's file has them)."""
    expected = {p.name: tuple(p.shape) for p in net.get_parameters()}
    missing = [to_structural_name(n) for n in expected if n not in converted]
    unexpected = [to_structural_name(n) for n in converted if n not in expected]
    mismatched = [f"{to_structural_name(n)} {tuple(v.shape)} vs {expected[n]}"
                  for n, v in converted.items() if n in expected and tuple(v.shape) != expected[n]]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", mismatched)):
        if names:
            shown = ", ".join(names[:5]) + (f", … ({len(names) - 5} more)" if len(names) > 5 else "")
            problems.append(f"{len(names)} {label} ({shown})")
    return problems


def convert_torch_checkpoint(input_path, output_path, model=None, log=print):
    """Convert a PyTorch SNN-MLP checkpoint to an official-layout MindSpore ``.ckpt`` (plus sidecar).

    ``model``: ``snnmlp_t``/``_s``/``_b`` (``snn_mlp`` = T) to insist on a variant; None infers it from the
    shapes (architectures outside the presets are built as ``snnmlp`` with the inferred arguments).
    Returns ``(model_name, model_kwargs, input_sha256, output_sha256)``.
    """
    from src.snn_mlp import MODEL_ALIASES, create_model

    if not os.fspath(output_path).endswith(".ckpt"):
        raise CheckpointError(f"the output file name must end in .ckpt: {output_path}")
    state_dict = extract_state_dict(read_torch_checkpoint(input_path))
    input_sha = sha256_file(input_path)
    log(f"input {input_path}: SHA-256 {input_sha}")
    arch = infer_architecture(state_dict)
    variant = _match_variant(arch)
    if model is not None:
        wanted = MODEL_ALIASES.get(model, model)
        if variant != wanted:
            found = variant or f"a custom SNN-MLP (embed_dim {arch['embed_dim']}, depths {arch['depths']})"
            raise CheckpointError(f"{input_path} holds {found}, not {model}; omit --model to convert it as is")
    name = variant or "snnmlp"
    kwargs = dict(num_classes=arch["num_classes"], lif_backend="primitive")
    if variant is None:
        kwargs.update({k: arch[k] for k in ("embed_dim", "depths", "patch_size", "in_chans", "mlp_ratio")})
    log(f"model {name}: " + ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "lif_backend"))
    net = create_model(name, **kwargs)
    converted = to_mindspore_names(state_dict)
    problems = _compare(converted, net)
    if problems:
        raise CheckpointError(f"{input_path} does not fit {name}: " + "; ".join(problems))
    # Official order, float32 like the network's parameters (half/bfloat16 releases are widened).
    ordered = {p.name: np.ascontiguousarray(converted[p.name], dtype=np.float32) for p in net.get_parameters()}
    output_sha = save_checkpoint_atomic(ordered, output_path)
    log(f"wrote {output_path} ({len(ordered)} tensors): SHA-256 {output_sha}")
    kwargs.pop("lif_backend")
    return name, kwargs, input_sha, output_sha
