"""Read the PyTorch SNN-MLP checkpoints without torch and turn them into MindSpore checkpoints.

Both ``torch.save`` formats are read: the zip (torch >= 1.6: ``<root>/data.pkl`` plus one raw buffer per
storage under ``<root>/data/``) and the legacy stream (torch < 1.6: magic, protocol and system-info
pickles, the object pickle, the storage keys, then each storage as an int64 element count and its bytes).

Nothing in the file is executed. The unpickler maps the few globals a tensor needs to local code; every
other global (``yacs.config.CfgNode``, ``os.system``, ``numpy`` loaders, …) becomes an inert placeholder
that records its name and the arguments it was "called" with and is never called itself. Tensors are
read lazily: only those of the state_dict taken are materialised, each bounded by its storage's declared
size, and all of them together by ``max_bytes``.
"""
import _compat_pickle
import collections
import os
import pickle
import re
import struct
import zipfile

import numpy as np

from .checkpoint import CheckpointError, mismatch_report, save_checkpoint_atomic, sha256_file
from .models import CUSTOM_MODEL, MODEL_ARCHS, resolve_model_name, to_official_name, to_structural_name

__all__ = ["DEFAULT_MAX_BYTES", "read_torch_checkpoint", "extract_state_dict", "infer_architecture",
           "to_mindspore_names", "convert_torch_checkpoint"]

# The largest release (SNN-MLP-B, 88 M parameters) needs about 0.7 GiB read as float32 (storage + tensor).
DEFAULT_MAX_BYTES = 2 << 30

_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_BFLOAT16 = "bfloat16"  # numpy has no bfloat16: read as uint16 and widen to float32
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": _BFLOAT16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


def _format_bytes(n):
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


class _Placeholder:
    """An unknown global of the pickle (a subclass per global, named by ``qualname``) or what pickle made of
    it: records the arguments, items and state it receives and never runs anything."""
    qualname = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.args, self.kwargs, self.items, self.state = args, kwargs, [], None
        return self

    def __call__(self, *args, **kwargs):
        return _placeholder_class(f"{self.qualname}(...)")(*args, **kwargs)

    def __setitem__(self, key, value):
        self.items.append((key, value))

    def append(self, value):
        self.items.append(value)

    def extend(self, values):
        self.items.extend(values)

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<{self.qualname}, not run>"


def _placeholder_class(qualname):
    return type("Placeholder", (_Placeholder,), {"qualname": qualname})


class _Sealed:
    """What the reader builds for torch's own records: a pickle may not set its state (BUILD), which could
    otherwise rewrite checked sizes after the check."""

    def __setstate__(self, state):
        raise CheckpointError(f"malformed checkpoint: the pickle sets the state of a {type(self).__name__[1:]}")


class _StorageType(_Sealed):
    """Stands in for ``torch.FloatStorage`` etc. inside the pickle; only its dtype is used."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]
        self.itemsize = np.dtype(np.uint16 if self.dtype == _BFLOAT16 else self.dtype).itemsize


class _StorageRef(_Sealed):
    """A storage as the pickle declares it (type, key, element count); its bytes are read on demand."""

    def __init__(self, storage_type, key, numel):
        self.type, self.key, self.numel = storage_type, key, numel
        self.nbytes = numel * storage_type.itemsize


class _TensorRecord(_Sealed):
    """A tensor as the pickle declares it: a strided view of a storage, checked, not yet read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.numel = int(np.prod(size, dtype=np.int64)) if size else 1
        out_itemsize = 4 if storage.type.dtype == _BFLOAT16 else storage.type.itemsize
        self.nbytes = self.numel * out_itemsize


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    """``torch._utils._rebuild_tensor_v2`` as a checked record: the view must stay inside its storage and
    may not hold more elements than the storage (a stride-0 or overlapping expansion is refused)."""
    try:
        size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        offset = int(storage_offset)
    except (TypeError, ValueError, OverflowError):
        raise CheckpointError(f"malformed tensor record (size {size!r:.60}, stride {stride!r:.60}, "
                              f"offset {storage_offset!r:.30})") from None
    if not isinstance(storage, _StorageRef):
        raise CheckpointError(f"malformed tensor record: its storage is {storage!r:.60}")
    if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
        raise CheckpointError(f"malformed tensor record (size {size}, stride {stride}, offset {offset})")
    record = _TensorRecord(storage, offset, size, stride)
    if record.numel == 0:
        return record
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.numel:
        raise CheckpointError(f"a tensor record reaches element {last} of a storage of {storage.numel}")
    if record.numel > storage.numel:
        raise CheckpointError(f"a tensor record of {record.numel} elements (size {size}, stride {stride}) "
                              f"expands a storage of {storage.numel}; refused (only plain views are read)")
    return record


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _Unpickler(pickle.Unpickler):
    """Builds containers, tensor records and placeholders; calls nothing from outside this module."""

    def __init__(self, file, storages=None, legacy=False):
        super().__init__(file)
        self._storages = {} if storages is None else storages
        self._legacy = legacy

    def find_class(self, module, name):
        # Python 2 names as protocol 2 writes them (``__builtin__.exec``), named as Python 3 does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        return _placeholder_class(f"{module}.{name}")

    def persistent_load(self, pid):
        # zip:    ('storage', storage_type, key, location, numel)
        # legacy: ('storage', storage_type, key, location, numel, view_metadata); ('module', ...) for source
        if isinstance(pid, tuple) and pid[:1] == ("module",) and self._legacy:
            return _placeholder_class("torch module source")()
        if not (isinstance(pid, tuple) and len(pid) == (6 if self._legacy else 5) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[4], int) and pid[4] >= 0):
            raise CheckpointError(f"unsupported storage record in the checkpoint: {pid!r:.80}")
        if self._legacy and pid[5] is not None:
            raise CheckpointError("the checkpoint uses storage views (torch < 0.4), which are not read")
        key = str(pid[2])
        ref = self._storages.setdefault(key, _StorageRef(pid[1], key, pid[4]))
        if (ref.type.dtype, ref.numel) != (pid[1].dtype, pid[4]):
            raise CheckpointError(f"storage {key} is declared twice with different types or sizes")
        return ref


class _Budget:
    def __init__(self, max_bytes):
        self.limit, self.used = int(max_bytes), 0

    def take(self, nbytes, what):
        if self.used + nbytes > self.limit:
            raise CheckpointError(f"{what} needs {_format_bytes(nbytes)}, which with the "
                                  f"{_format_bytes(self.used)} already read passes the --max_bytes limit of "
                                  f"{_format_bytes(self.limit)}; refused (raise --max_bytes if the file is "
                                  f"genuine)")
        self.used += nbytes


def _load(unpickler):
    """Run an unpickler; anything it raises but our own errors means a malformed or truncated file."""
    try:
        return unpickler.load()
    except (CheckpointError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - a hostile pickle can make the unpickler raise any type
        raise CheckpointError(f"the pickle is malformed or truncated ({type(e).__name__}: {e!s:.80})") from None


class _ZipSource:
    """The zip format: storages are members ``<root>data/<key>``."""

    def __init__(self, path):
        self.archive = zipfile.ZipFile(path)

    def parse(self, budget):
        names = self.archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError("a zip but not a torch.save checkpoint (no single data.pkl)")
        self.root = pickles[0][:-len("data.pkl")]
        if f"{self.root}constants.pkl" in names:
            raise CheckpointError("a TorchScript archive; save the state_dict with torch.save")
        self.big_endian = (f"{self.root}byteorder" in names
                           and self.archive.read(f"{self.root}byteorder").strip() == b"big")
        budget.take(self.archive.getinfo(pickles[0]).file_size, "the pickle data.pkl")
        with self.archive.open(pickles[0]) as data:
            self.obj = _load(_Unpickler(data))

    def read(self, ref):
        member = f"{self.root}data/{ref.key}"
        try:
            size = self.archive.getinfo(member).file_size
        except KeyError:
            raise CheckpointError(f"storage {member} is missing") from None
        if size < ref.nbytes:
            raise CheckpointError(f"storage {member} holds {size} bytes, {ref.nbytes} expected")
        with self.archive.open(member) as f:  # at most the declared bytes, however well the member inflates
            return f.read(ref.nbytes)

    def close(self):
        self.archive.close()


class _LegacySource:
    """The legacy stream: storages follow the pickles, in the order of the key list, each after its count."""

    def __init__(self, path):
        self.file = open(path, "rb")

    def parse(self, budget):
        file_size = os.fstat(self.file.fileno()).st_size
        if _load(_Unpickler(self.file)) != _LEGACY_MAGIC:
            raise CheckpointError("not a PyTorch checkpoint (a pickle without torch's magic number)")
        _load(_Unpickler(self.file))  # protocol version
        sys_info = _load(_Unpickler(self.file))
        self.big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
        storages = {}
        self.obj = _load(_Unpickler(self.file, storages, legacy=True))
        keys = _load(_Unpickler(self.file))
        if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
            raise CheckpointError("the storage key list does not match the storages the pickle declares")
        self.offsets, position = {}, self.file.tell()
        budget.take(position, "the pickles of the legacy stream")  # what unpickling them held in memory
        for key in map(str, keys):
            ref = storages[key]
            self.file.seek(position)
            count = self.file.read(8)
            if len(count) < 8 or struct.unpack(">q" if self.big_endian else "<q", count)[0] != ref.numel:
                raise CheckpointError(f"storage {key} is truncated or its size differs from the declared "
                                      f"{ref.numel} elements")
            self.offsets[key] = position + 8
            position += 8 + ref.nbytes
        if position > file_size:
            raise CheckpointError(f"the file is truncated: its storages need {position} bytes, it has {file_size}")

    def read(self, ref):
        self.file.seek(self.offsets[ref.key])
        return self.file.read(ref.nbytes)

    def close(self):
        self.file.close()


def _open_source(path, budget):
    """The parsed zip or legacy source of ``path`` (closed again when parsing fails)."""
    if zipfile.is_zipfile(path):
        source = _ZipSource(path)
    else:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic.startswith(b"PK"):
            raise CheckpointError("the zip is truncated or corrupt")
        if magic[:1] != b"\x80":
            raise CheckpointError("this is not a PyTorch checkpoint (neither a torch.save zip nor a legacy pickle)")
        source = _LegacySource(path)
    try:
        source.parse(budget)
    except BaseException:
        source.close()
        raise
    return source


def _materialize(obj, source, budget, storages):
    """``obj`` with every tensor record replaced by a numpy array (containers rebuilt, others kept)."""
    if isinstance(obj, _TensorRecord):
        ref = obj.storage
        budget.take(obj.nbytes, f"a tensor of shape {obj.size}")
        if ref.key not in storages:
            budget.take(ref.nbytes, f"storage {ref.key}")
            raw = source.read(ref)
            if len(raw) < ref.nbytes:
                raise CheckpointError(f"storage {ref.key} is truncated ({len(raw)} of {ref.nbytes} bytes)")
            item = np.dtype(np.uint16 if ref.type.dtype == _BFLOAT16 else ref.type.dtype)
            storages[ref.key] = np.frombuffer(raw, item.newbyteorder(">") if source.big_endian else item)
        storage = storages[ref.key]
        if obj.numel == 0:
            array = np.zeros(obj.size, storage.dtype)
        else:
            view = np.lib.stride_tricks.as_strided(storage[obj.offset:], shape=obj.size, writeable=False,
                                                   strides=tuple(s * storage.itemsize for s in obj.stride))
            array = np.array(view, dtype=storage.dtype.newbyteorder("="))
        return (array.astype(np.uint32) << 16).view(np.float32) if ref.type.dtype == _BFLOAT16 else array
    if isinstance(obj, dict):
        rebuilt = type(obj)() if type(obj) in (dict, collections.OrderedDict) else {}
        rebuilt.update((k, _materialize(v, source, budget, storages)) for k, v in obj.items())
        return rebuilt
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, source, budget, storages) for v in obj)
    return obj


def read_torch_checkpoint(path, max_bytes=DEFAULT_MAX_BYTES, select=None):
    """Load what ``torch.save`` wrote (zip or legacy format) without torch and without running any of it.

    ``select(obj)`` picks the part whose tensors are read (default: all of it); tensors come back as numpy
    arrays, unknown objects as placeholders. At most ``max_bytes`` are allocated for pickles, storages and
    tensors together. Every problem is a one-line CheckpointError.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"PyTorch checkpoint not found: {path}")
    budget = _Budget(max_bytes)
    try:
        source = _open_source(path, budget)
        try:
            part = source.obj if select is None else select(source.obj)
            return _materialize(part, source, budget, {})
        finally:
            source.close()
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except RecursionError:
        raise CheckpointError(f"cannot read the PyTorch checkpoint {path}: its containers nest too deeply") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError, struct.error) as e:
        raise CheckpointError(f"cannot read the PyTorch checkpoint {path}: it is corrupt or truncated "
                              f"({type(e).__name__}: {e!s:.80})") from None


_EMA_KEYS = ("state_dict_ema", "model_ema")
_WEIGHT_KEYS = ("model", "state_dict")


def _describe(value):
    if isinstance(value, _Placeholder):
        return f"{value.qualname}, not run"
    if isinstance(value, (_TensorRecord, np.ndarray)):
        return "tensor, not read"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return f"{value!r:.20}"
    return "dict" if isinstance(value, dict) else type(value).__name__


def _is_tensor(value):
    return isinstance(value, (_TensorRecord, np.ndarray))


def extract_state_dict(obj, use_ema=False):
    """The state_dict inside what ``torch.save`` stored and a list of what was left out.

    Taken: ``obj['model']`` (the original training script) or ``obj['state_dict']`` (timm), or ``obj``
    itself when it is a bare state_dict; with ``use_ema`` ``obj['state_dict_ema']`` (timm) or
    ``obj['model_ema']``. Only tensors are taken; a ``module.`` prefix (DistributedDataParallel) is dropped.
    Returns ``(state_dict, skipped)`` with ``skipped`` as ``"name (what)"`` strings.
    """
    if not isinstance(obj, dict):
        raise CheckpointError(f"no state_dict found: the file holds {_describe(obj)}, not a dict of tensors")
    keys = [k for k in (_EMA_KEYS if use_ema else _WEIGHT_KEYS) if isinstance(obj.get(k), dict)]
    if use_ema and not keys:
        raise CheckpointError(f"--use_ema: the checkpoint has no EMA weights ('state_dict_ema' or 'model_ema' "
                              f"holding a dict); its entries: {', '.join(map(str, list(obj)[:10]))}")
    if keys:
        taken, state_dict = keys[0], obj[keys[0]]
        skipped = [f"{k} ({_describe(v)}{'; --use_ema takes it' if k in _EMA_KEYS else ''})"
                   for k, v in obj.items() if k != taken]
    else:
        wrapped = [k for k in _WEIGHT_KEYS if k in obj]
        if wrapped:
            raise CheckpointError(f"no state_dict found: '{wrapped[0]}' holds {_describe(obj[wrapped[0]])}, not "
                                  f"a dict of tensors (save model.state_dict())")
        taken, state_dict, skipped = None, obj, []
    prefix = f"{taken}." if taken else ""
    skipped += [f"{prefix}{k} ({_describe(v)})" for k, v in state_dict.items() if not _is_tensor(v)]
    tensors = {str(k): v for k, v in state_dict.items() if _is_tensor(v)}
    if not tensors:
        raise CheckpointError(f"no state_dict found (expected a dict of tensors, or one under 'model' or "
                              f"'state_dict'; found {list(obj)[:8]})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors, skipped


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
    for name, preset in MODEL_ARCHS.items():
        if (arch["embed_dim"], arch["depths"]) == (preset["embed_dim"], tuple(preset["depths"])) \
                and arch["patch_size"] == 4 and arch["in_chans"] == 3 and arch["mlp_ratio"] == 4.0:
            return name
    return None


def _compare(converted, net):
    """Missing / unexpected / shape-mismatched names (PyTorch spelling, as the user's file has them), one line."""
    expected = {p.name: tuple(p.shape) for p in net.get_parameters()}
    missing = [to_structural_name(n) for n in expected if n not in converted]
    unexpected = [to_structural_name(n) for n in converted if n not in expected]
    mismatched = [f"{to_structural_name(n)} {tuple(v.shape)} vs {expected[n]}"
                  for n, v in converted.items() if n in expected and tuple(v.shape) != expected[n]]
    return mismatch_report(("missing", missing), ("unexpected", unexpected), ("shape mismatches", mismatched))


def convert_torch_checkpoint(input_path, output_path, model=None, use_ema=False, max_bytes=DEFAULT_MAX_BYTES,
                             log=print):
    """Convert a PyTorch SNN-MLP checkpoint to an official-layout MindSpore ``.ckpt`` (plus sidecar).

    ``model``: ``snnmlp_t``/``_s``/``_b`` (``snn_mlp`` = T) to insist on a variant; None infers it from the
    shapes (architectures outside the presets are built as ``snnmlp_custom`` with the inferred arguments).
    ``use_ema``: take the EMA weights (timm's ``state_dict_ema``). ``max_bytes``: see read_torch_checkpoint.
    What the file holds besides the weights (optimizer, config, …) is logged in one line, never run.
    Returns ``(model_name, model_kwargs, input_sha256, output_sha256)``.
    """
    from .snn_mlp import create_model

    if not os.fspath(output_path).endswith(".ckpt"):
        raise CheckpointError(f"the output file name must end in .ckpt: {output_path}")
    state_dict, skipped = read_torch_checkpoint(input_path, max_bytes,
                                                select=lambda obj: extract_state_dict(obj, use_ema))
    input_sha = sha256_file(input_path)
    log(f"input {input_path}: SHA-256 {input_sha}")
    if skipped:
        log(f"skipped (not model weights): {', '.join(skipped)}")
    arch = infer_architecture(state_dict)
    variant = _match_variant(arch)
    if model is not None:
        wanted = resolve_model_name(model)
        if variant != wanted:
            found = variant or f"a custom SNN-MLP (embed_dim {arch['embed_dim']}, depths {arch['depths']})"
            raise CheckpointError(f"{input_path} holds {found}, not {model}; omit --model to convert it as is")
    name = variant or CUSTOM_MODEL
    kwargs = dict(num_classes=arch["num_classes"], lif_backend="primitive")
    if variant is None:
        kwargs.update({k: arch[k] for k in ("embed_dim", "depths", "patch_size", "in_chans", "mlp_ratio")})
    log(f"model {name}: " + ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "lif_backend"))
    net = create_model(name, **kwargs)
    converted = to_mindspore_names(state_dict)
    problems = _compare(converted, net)
    if problems:
        raise CheckpointError(f"{input_path} does not fit {name}: {problems}")
    # Official order, float32 like the network's parameters (half/bfloat16 releases are widened).
    ordered = {p.name: np.ascontiguousarray(converted[p.name], dtype=np.float32) for p in net.get_parameters()}
    output_sha = save_checkpoint_atomic(ordered, output_path)
    log(f"wrote {output_path} ({len(ordered)} tensors): SHA-256 {output_sha}")
    kwargs.pop("lif_backend")
    return name, kwargs, input_sha, output_sha
