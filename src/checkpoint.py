"""Checkpoints you can trust: SHA-256 sidecars, atomic saves, strict loads, the official assets, downloads.

Every failure a user can cause is a ``CheckpointError`` whose message is one readable line, so entry points
catch that one type, print it and exit non-zero.

Layout on disk: ``model.ckpt`` and its ``model.ckpt.sha256`` sidecar in the ``sha256sum`` format
(``<hex>  model.ckpt``), so ``sha256sum -c model.ckpt.sha256`` works too. Every load hashes the whole file
again (streamed). A downloaded asset whose hash is not published gets a ``<file>.verified.json`` record of
its hash only once it has loaded strictly as its variant (``remember_asset``); later uses are checked
against that.
"""
import hashlib
import http.client
import json
import logging
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Optional

import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor
from mindspore import dtype as mstype

__all__ = [
    "CheckpointError", "sha256_file", "sidecar_path", "write_sidecar", "read_sidecar", "check_file", "verify_file",
    "unverified_notice", "save_checkpoint_atomic", "read_checkpoint", "load_checkpoint_strict", "to_official_name",
    "to_structural_name", "IGNORED_ENTRY_PREFIXES", "IGNORED_ENTRY_NAMES", "Asset", "ASSETS", "DEFAULT_ASSETS",
    "get_asset", "cache_dir", "fetch_asset", "remember_asset", "bad_cache_hint", "download_file",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_CRC_TRAILER = 17  # b"crc_num" + 10 bytes of CRC32, at the end of a checkpoint saved with crc_check=True
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(Exception):
    """A checkpoint or asset problem the user can fix; the message is one line meant to be printed as is."""


# ---------------------------------------------------------------------------------------------------------
# Hashes and sidecars
# ---------------------------------------------------------------------------------------------------------

def sha256_file(path):
    """Hex SHA-256 of a file, streamed in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from e
    return digest.hexdigest()


def _normalize_sha(value, what):
    sha = str(value).strip().lower()
    if not _HEX64.match(sha):
        raise CheckpointError(f"{what} is not a SHA-256 (64 hex digits): {value!r}")
    return sha


def sidecar_path(path):
    return os.fspath(path) + ".sha256"


def _pending_sidecar_path(path):
    # Written before the checkpoint is renamed into place; see save_checkpoint_atomic.
    return os.fspath(path) + ".sha256.pending"


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every platform lets a directory be opened; the rename itself is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text_durably(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _sidecar_line(sha, path):
    return f"{sha}  {os.path.basename(os.fspath(path))}\n"


def write_sidecar(path, sha=None):
    """Write ``path.sha256`` (atomically) and return the hash; ``sha`` saves re-hashing a known file."""
    sha = _normalize_sha(sha, "sha") if sha else sha256_file(path)
    target = sidecar_path(path)
    tmp = f"{target}.{os.getpid()}.tmp"
    _write_text_durably(tmp, _sidecar_line(sha, path))
    os.replace(tmp, target)
    return sha


def _parse_sidecar(sidecar, path):
    try:
        with open(sidecar, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read the sidecar {sidecar}: {e}") from e
    base = os.path.basename(os.fspath(path))
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if not parts:
            continue
        name = parts[1].lstrip("*") if len(parts) == 2 else base  # '*' marks binary mode in sha256sum
        if name == base:
            return _normalize_sha(parts[0], f"the hash in {sidecar}")
    raise CheckpointError(f"the sidecar {sidecar} has no line for {base}")


def read_sidecar(path):
    """The hash recorded in ``path.sha256``, or None when there is no sidecar."""
    return _parse_sidecar(sidecar_path(path), path)


def _finish_interrupted_save(path, actual):
    """A save killed between its two renames leaves the new checkpoint beside the old sidecar (or none) and
    the new sidecar still pending; when the pending hash matches the file, complete that save."""
    pending = _pending_sidecar_path(path)
    if not os.path.exists(pending):
        return False
    try:
        recorded = _parse_sidecar(pending, path)
    except CheckpointError:
        return False
    if recorded != actual:
        return False
    os.replace(pending, sidecar_path(path))
    logger.warning("completed the interrupted save of %s (its sidecar was still pending)", path)
    return True


def _known_release(sha):
    return next((asset.name for asset in ASSETS.values() if asset.sha256 == sha), None)


def check_file(path, expected_sha256=None):
    """Hash ``path`` (streamed, on every call: no size or mtime is trusted) and check it against
    ``expected_sha256``, else the sidecar beside it, else the sidecar beside the file a symlink resolves to,
    else the published hash of a known release. Returns ``(sha, source)``, ``source`` saying what the hash
    was checked against, or None when there was nothing to check it against (unverified).

    Raises CheckpointError for a missing file, a directory or a mismatch (both hashes in the message).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    actual = sha256_file(path)
    if expected_sha256 is not None:
        expected, source = _normalize_sha(expected_sha256, "the expected SHA-256"), "the expected hash"
    else:
        expected = None
        for owner in dict.fromkeys((path, os.path.realpath(path))):  # a symlink's target may have the sidecar
            source = f"{'its' if owner == path else 'its target'} sidecar {sidecar_path(owner)}"
            if _finish_interrupted_save(owner, actual):  # a save killed between its two renames
                return actual, source
            expected = read_sidecar(owner)
            if expected is not None:
                break
        if expected is None:
            release = _known_release(actual)
            return actual, (f"the published hash of {release}" if release else None)
    if actual != expected:
        raise CheckpointError(f"SHA-256 mismatch for {path}: expected {expected} ({source}), got {actual}; "
                              f"the file is corrupt, truncated or not the one meant")
    return actual, source


def verify_file(path, expected_sha256=None):
    """``check_file`` that returns the hash, after a one-line notice on the ``snn_mlp`` log when there was
    nothing to check it against."""
    sha, source = check_file(path, expected_sha256)
    if source is None:
        logging.getLogger("snn_mlp").warning(unverified_notice(path, sha))
    return sha


def unverified_notice(path, sha):
    """The one line said when a file had nothing to be checked against."""
    return f"unverified: {path}: no sidecar, no --ckpt_sha256, not a known release (sha256 {sha})"


# ---------------------------------------------------------------------------------------------------------
# Atomic save
# ---------------------------------------------------------------------------------------------------------

def _partial_prefix(path):
    return f".{os.path.basename(path)}."


def _remove_quietly(path):
    try:
        os.chmod(path, 0o600)  # MindSpore leaves its files read-only
        os.remove(path)
    except OSError:
        pass


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(path):
    """Delete temp files that a killed save of ``path`` left behind (their writer's pid is gone)."""
    directory, prefix = os.path.dirname(path), _partial_prefix(path)
    for entry in os.listdir(directory):
        if not (entry.startswith(prefix) and ".partial." in entry):
            continue
        pid = entry[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            _remove_quietly(os.path.join(directory, entry))


def _as_save_obj(net_or_params):
    # MindSpore saves a Cell or a list of {'name', 'data'}; a dict name -> Parameter/Tensor/ndarray (what
    # the converter and the tests build) becomes that list.
    if isinstance(net_or_params, dict):
        return [{"name": name, "data": value if isinstance(value, Tensor) else Tensor(np.asarray(value))}
                for name, value in net_or_params.items()]
    return net_or_params


def save_checkpoint_atomic(net_or_params, path, append_dict=None):
    """Save a network (or a dict name -> Parameter/Tensor/ndarray) to ``path`` with its sidecar; return
    the hash.

    The data goes to a temp file in the same directory, is fsynced and hashed; the sidecar is staged as
    ``path.sha256.pending``; then both are renamed into place. A crash at any point leaves the previous
    checkpoint and sidecar usable (a crash between the two renames is completed by ``verify_file``).
    A path without the ``.ckpt`` suffix gets it, as MindSpore does.
    """
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".ckpt"):
        path += ".ckpt"
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        _remove_stale_partials(path)
        fd, tmp = tempfile.mkstemp(prefix=f"{_partial_prefix(path)}{os.getpid()}.", suffix=".partial.ckpt",
                                   dir=directory)
    except OSError as e:
        raise CheckpointError(f"cannot write a checkpoint in {directory}: {e.strerror or e}") from e
    os.close(fd)
    # MindSpore writes through its own '<name>.tmp' beside the file name it is given.
    mindspore_tmp = os.path.splitext(tmp)[0] + ".tmp"
    pending = _pending_sidecar_path(path)
    if os.path.exists(pending) and os.path.isfile(path):
        # A save killed between its renames: complete it now, before this save replaces the pending file.
        _finish_interrupted_save(path, sha256_file(path))
    renamed = False
    try:
        ms.save_checkpoint(_as_save_obj(net_or_params), tmp, append_dict=append_dict, crc_check=True)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        sha = sha256_file(tmp)
        _write_text_durably(pending, _sidecar_line(sha, path))
        os.replace(tmp, path)
        renamed = True
        os.replace(pending, sidecar_path(path))
        _fsync_dir(directory)  # one directory sync makes both renames durable
        return sha
    except OSError as e:
        raise CheckpointError(f"cannot save {path}: {e.strerror or e}") from e
    finally:
        for leftover in (tmp, mindspore_tmp) + (() if renamed else (pending,)):
            if os.path.exists(leftover):
                _remove_quietly(leftover)
        if renamed and os.path.exists(pending):
            os.replace(pending, sidecar_path(path))  # interrupted between the renames: finish the pair


# ---------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------

_STRUCTURAL = re.compile(r"^layers\.(\d+)\.(.+)$")
_OFFICIAL_LATER_STAGE = re.compile(r"^0\.blocks\.(\d+)\.((?:blocks|downsample)\..+)$")


def to_official_name(name):
    """``layers.0.X`` -> ``0.X``; ``layers.k.X`` -> ``0.blocks.k.X`` (k > 0); other names unchanged.

    The r1.9 network's stages got these names from ``nn.CellList.append`` (see src/snn_mlp.py).
    """
    match = _STRUCTURAL.match(name)
    if not match:
        return name
    stage, rest = match.groups()
    return f"0.{rest}" if stage == "0" else f"0.blocks.{stage}.{rest}"


def to_structural_name(name):
    """Inverse of ``to_official_name``: ``0.blocks.k.blocks…``/``0.blocks.k.downsample…`` are stage k, any
    other ``0.…`` is stage 0 (whose own blocks are ``0.blocks.i.norm1…`` etc.)."""
    match = _OFFICIAL_LATER_STAGE.match(name)
    if match:
        return f"layers.{match.group(1)}.{match.group(2)}"
    if name.startswith("0."):
        return f"layers.0.{name[2:]}"
    return name


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


def _first(names, limit=5):
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


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


def read_checkpoint(path, expected_sha256=None, choice_func=None):
    """Verify ``path`` and read it into ``{name: Parameter | str}`` (only the names ``choice_func`` accepts,
    when given). A file without a sidecar (a copy) is also checked against its CRC32 trailer when it has one
    (ours do), so corruption is caught even when nothing else vouches for it; a file with a sidecar skips
    the CRC, which adds ~1 s to a 113 MB load. Corrupt files become CheckpointError."""
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


def load_checkpoint_strict(net, path, expected_sha256=None, exclude=()):
    """Load every parameter of ``net`` from ``path`` and use every entry of it, or load nothing.

    The file is verified first (``expected_sha256`` or its sidecar). Names may be official (``0.blocks…``)
    or structural (``layers.k.…``). Optimizer state (``IGNORED_ENTRY_*``) is skipped; scalar or string
    entries whose name has no dot (epoch, step, …) are returned as a dict of Python values. Parameters
    whose name starts with a prefix in ``exclude`` (``("head.",)`` for a new classifier) keep their values
    and their checkpoint entries are skipped. Floating-point entries are cast to the parameter's type.
    Anything missing, unexpected, of another shape or of a non-float type is a CheckpointError naming
    the first offenders; nothing is assigned unless everything matches.
    """
    exclude = tuple(exclude)
    entries = read_checkpoint(path, expected_sha256)
    params = {p.name: p for p in net.get_parameters()}
    to_load, metadata, seen_from = {}, {}, {}
    unexpected, wrong_shape, wrong_type, refused = [], [], [], set()
    for name, value in entries.items():
        target = to_official_name(name)
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
    problems = []
    if missing:
        problems.append(f"{len(missing)} network parameters missing ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected entries ({_first(unexpected)})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatches ({_first(wrong_shape, 3)})")
    if wrong_type:
        problems.append(f"{len(wrong_type)} type mismatches ({_first(wrong_type, 3)})")
    if problems:
        hint = ""
        if wrong_shape and all(m.startswith("head.") for m in wrong_shape):
            hint = "; a checkpoint for another number of classes: build the network with its num_classes"
        raise CheckpointError(f"{path} does not fit the network: " + "; ".join(problems) + hint)
    ms.load_param_into_net(net, {name: Parameter(value, name=name) for name, value in to_load.items()},
                           strict_load=True)
    return metadata


# ---------------------------------------------------------------------------------------------------------
# Official assets
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Asset:
    """A released checkpoint. ``sha256`` None: not yet recorded (printed by the first download/convert)."""
    name: str
    url: str
    sha256: Optional[str]
    variant: str
    top1: float
    framework: str  # "mindspore" (.ckpt, loads as is) or "pytorch" (.pt, converted by src/convert.py)
    num_classes: int = 1000


_PT_RELEASE = "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/snnmlp/"

# The MindSpore Hub asset (mindspore-ai/hub, mshub_res/assets/mindspore/1.9/snn_mlp_imagenet2012.md), and the
# PyTorch releases of the paper's authors.
ASSETS = {asset.name: asset for asset in (
    Asset("snnmlp_t_ascend_v190_imagenet2012_research_cv_top1acc81.8.ckpt",
          "https://download.mindspore.cn/models/r1.9/"
          "snnmlp_t_ascend_v190_imagenet2012_research_cv_top1acc81.8.ckpt",
          "760515ca0fd2a80d02d43fa4e4dceab368622f673d807dafc4b9545e87810f1d", "snnmlp_t", 81.8, "mindspore"),
    Asset("snnmlp_tiny_81.88.pt", _PT_RELEASE + "snnmlp_tiny_81.88.pt", None, "snnmlp_t", 81.88, "pytorch"),
    Asset("snnmlp_small_83.30.pt", _PT_RELEASE + "snnmlp_small_83.30.pt", None, "snnmlp_s", 83.30, "pytorch"),
    Asset("snnmlp_base_83.59.pt", _PT_RELEASE + "snnmlp_base_83.59.pt", None, "snnmlp_b", 83.59, "pytorch"),
)}
# What ``pretrained=True`` loads for each variant: the MindSpore asset where there is one.
DEFAULT_ASSETS = {
    "snnmlp_t": "snnmlp_t_ascend_v190_imagenet2012_research_cv_top1acc81.8.ckpt",
    "snnmlp_s": "snnmlp_small_83.30.pt",
    "snnmlp_b": "snnmlp_base_83.59.pt",
}


def get_asset(name):
    """An Asset by file name, or the default asset of a variant name."""
    if name in ASSETS:
        return ASSETS[name]
    if name in DEFAULT_ASSETS:
        return ASSETS[DEFAULT_ASSETS[name]]
    raise CheckpointError(f"unknown asset '{name}'; known: {', '.join(sorted([*DEFAULT_ASSETS, *ASSETS]))}")


# ---------------------------------------------------------------------------------------------------------
# Download and cache
# ---------------------------------------------------------------------------------------------------------

def cache_dir():
    """``$SNNMLP_HOME`` or ``~/.cache/snn_mlp``."""
    return os.path.abspath(os.path.expanduser(os.environ.get("SNNMLP_HOME") or "~/.cache/snn_mlp"))


def _offline_by_default():
    return os.environ.get("SNNMLP_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class _Progress:
    """A download progress line on stderr, redrawn at most every ``interval`` seconds."""

    def __init__(self, label, total, enabled=True):
        self.label, self.total, self.enabled = label, total, enabled
        self.tty = sys.stderr.isatty()
        self.interval = 0.5 if self.tty else 5.0
        self.start = self.last = time.monotonic()
        self.done = 0

    def update(self, count):
        self.done += count
        now = time.monotonic()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            self._draw(now, end="\r" if self.tty else "\n")

    def close(self):
        if self.enabled:
            self._draw(time.monotonic(), end="\n")

    def _draw(self, now, end):
        rate = self.done / max(now - self.start, 1e-6) / 1e6
        size = f"{self.done / 1e6:.1f}"
        if self.total:
            size += f"/{self.total / 1e6:.1f} MB ({100 * self.done / self.total:.0f}%)"
        else:
            size += " MB"
        print(f"downloading {self.label}: {size} {rate:.1f} MB/s", end=end, file=sys.stderr, flush=True)


# Downloads: seconds to connect and for any one read (also the time allowed before the minimum average rate
# applies), that rate in bytes/s, and the longest a whole download may take.
DOWNLOAD_TIMEOUT = 60.0
DOWNLOAD_MIN_RATE = 10_000
DOWNLOAD_DEADLINE = 3 * 3600.0


def download_file(url, dest, expected_sha256=None, progress=True, timeout=DOWNLOAD_TIMEOUT,
                  deadline=DOWNLOAD_DEADLINE, min_rate=DOWNLOAD_MIN_RATE):
    """Download ``url`` to ``dest`` through a temp file beside it; verify, then rename. Returns the hash.

    ``timeout`` seconds to connect and for each read; after ``timeout`` seconds the average rate must stay
    at or above ``min_rate`` bytes/s, and the whole download must end within ``deadline`` seconds (None: no
    limit), so a server that trickles bytes cannot hold it forever. A short body (with or without a
    Content-Length) or a hash that is not ``expected_sha256`` is deleted and refused in one line.
    """
    dest = os.path.abspath(dest)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".download",
                               dir=os.path.dirname(dest))
    digest = hashlib.sha256()
    start = time.monotonic()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    total = int(response.headers.get("Content-Length") or 0)
                    bar = _Progress(os.path.basename(dest), total, progress)
                    for chunk in iter(lambda: response.read1(_CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                        _check_pace(url, bar.done, time.monotonic() - start, timeout, deadline, min_rate)
                    bar.close()
            except http.client.IncompleteRead as e:
                raise CheckpointError(f"the download of {url} ended early: the connection closed after "
                                      f"{bar.done + len(e.partial)} bytes; try again") from e
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                raise CheckpointError(f"cannot download {url}: {reason or type(e).__name__}") from e
            if total and bar.done != total:
                raise CheckpointError(f"download of {url} ended early: {bar.done} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if expected_sha256 is not None and actual != _normalize_sha(expected_sha256, "expected SHA-256"):
            raise CheckpointError(f"the download of {url} failed verification: expected SHA-256 "
                                  f"{expected_sha256}, got {actual}; the file was deleted")
        os.replace(tmp, dest)
        _fsync_dir(os.path.dirname(dest))
        return actual
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_pace(url, done, elapsed, timeout, deadline, min_rate):
    if deadline is not None and elapsed > deadline:
        raise CheckpointError(f"the download of {url} passed its deadline of {deadline:g} s after {done} bytes; "
                              f"allow more time (deadline=...) or download it by hand")
    if elapsed > timeout and done < min_rate * elapsed:
        raise CheckpointError(f"the download of {url} is too slow: {done / elapsed:.0f} bytes/s on average over "
                              f"{elapsed:.0f} s, below the minimum of {min_rate} bytes/s")


def _remembered_path(path):
    return os.fspath(path) + ".verified.json"


def _remembered_sha(path, variant):
    """The hash recorded by ``remember_asset`` for ``path`` as ``variant``, or None (an older record without
    the variant it loaded as is not trusted: the file is checked by loading it again)."""
    try:
        with open(_remembered_path(path), encoding="utf-8") as f:
            record = json.load(f)
        if record.get("loaded_as") != variant:
            return None
        return _normalize_sha(record["sha256"], "remembered hash")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, CheckpointError):
        return None


def _asset_path(asset, root=None):
    return os.path.join(os.path.abspath(root or cache_dir()), asset.name)


def remember_asset(asset, root=None):
    """Record the hash of the cached ``asset`` whose hash is not published, to be called once the file has
    loaded strictly as ``asset.variant``; later uses are checked against it."""
    asset = get_asset(asset) if isinstance(asset, str) else asset
    path = _asset_path(asset, root)
    if asset.sha256 is not None or _remembered_sha(path, asset.variant) is not None:
        return
    sha = sha256_file(path)
    record = _remembered_path(path)
    tmp = f"{record}.{os.getpid()}.tmp"
    _write_text_durably(tmp, json.dumps({"sha256": sha, "loaded_as": asset.variant}))
    os.replace(tmp, record)


def bad_cache_hint(asset, root=None):
    """How to clear a cached download that failed to load (for assets without a published hash)."""
    asset = get_asset(asset) if isinstance(asset, str) else asset
    path = _asset_path(asset, root)
    return (f"{path} is a download of {asset.url} with no published hash to check it against: if it is "
            f"damaged (an error page, a cut-off download), delete it (rm {path}) and it is downloaded again")


def fetch_asset(asset, root=None, offline=None, progress=True, timeout=DOWNLOAD_TIMEOUT, deadline=DOWNLOAD_DEADLINE):
    """Path of a local copy of ``asset`` (an Asset or a name for ``get_asset``), downloading it
    into the cache when missing or no longer matching.

    A cached file is hashed again on every call and checked against the published hash, else against the
    hash ``remember_asset`` recorded once it loaded strictly. A changed (tampered, truncated) file is
    deleted and downloaded again, or refused when offline (``offline=True`` or ``$SNNMLP_OFFLINE=1``). A file
    with neither hash is returned unverified: the caller loads it strictly, then calls ``remember_asset``.
    ``timeout`` and ``deadline``: see ``download_file``.
    """
    asset = get_asset(asset) if isinstance(asset, str) else asset
    offline = _offline_by_default() if offline is None else offline
    path = _asset_path(asset, root)
    if os.path.exists(path):
        expected = asset.sha256 or _remembered_sha(path, asset.variant)
        actual = sha256_file(path)
        if expected is None:
            logger.warning("%s has no published or remembered hash yet (SHA-256 %s): it is used only if it loads as "
                           "%s", path, actual, asset.variant)
            return path
        if actual == expected:
            return path
        problem = f"the cached {path} does not match its hash (expected {expected}, got {actual})"
        if offline:
            raise CheckpointError(problem + "; offline, so it cannot be downloaded again: delete it or go online")
        logger.warning("%s; downloading it again", problem)
        for stale in (path, _remembered_path(path)):
            if os.path.exists(stale):
                os.remove(stale)
    elif offline:
        raise CheckpointError(f"{asset.name} is not in the cache {os.path.dirname(path)} and downloads are off "
                              f"(offline); download {asset.url} there, or go online")
    sha = download_file(asset.url, path, asset.sha256, progress=progress, timeout=timeout, deadline=deadline)
    if asset.sha256 is None:
        print(f"{asset.name}: SHA-256 {sha} (not published; remembered once it loads as {asset.variant})",
              file=sys.stderr)
    return path
