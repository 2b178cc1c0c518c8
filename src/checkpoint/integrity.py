"""Integrity: SHA-256 of files, ``.sha256`` sidecars, checking a file against them, atomic saves."""
import hashlib
import logging
import os
import re
import tempfile

import numpy as np

import mindspore as ms
from mindspore import Tensor

from .assets import ASSETS
from .errors import CheckpointError

__all__ = ["sha256_file", "sidecar_path", "write_sidecar", "read_sidecar", "check_file", "verify_file",
           "unverified_notice", "save_checkpoint_atomic"]

logger = logging.getLogger("snn_mlp.checkpoint")  # a child of the logger setup_logging configures

_CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


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


def _published_hash(path, actual):
    """``(hash, source)`` a file without sidecar is held to: the published hash of the release it is named
    after, else the published hash it has (a renamed release); ``(None, None)`` when neither."""
    asset = ASSETS.get(os.path.basename(path))
    if asset is not None and asset.sha256:
        return asset.sha256, f"the published hash of {asset.name}"
    release = next((asset.name for asset in ASSETS.values() if asset.sha256 == actual), None)
    return (actual, f"the published hash of {release}") if release else (None, None)


def check_file(path, expected_sha256=None):
    """Hash ``path`` (streamed, on every call: no size or mtime is trusted) and check it against the one
    expected hash of the project's policy (eval.py, train.py --ckpt_path, export.py and every load use it):
    ``expected_sha256``, else the sidecar beside it, else the sidecar beside the file a symlink resolves to,
    else the published hash of the release it is named after, else a published hash it matches. Returns
    ``(sha, source)``, ``source`` saying what the hash was checked against, or None when there was nothing to
    check it against (unverified). The releases are the model room's table (``src/models.py`` RELEASES).

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
            expected, source = _published_hash(path, actual)
            if expected is None:
                return actual, None
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
