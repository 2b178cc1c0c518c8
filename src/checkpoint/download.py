"""Download and cache: fetching released checkpoints, verified, into ``$SNNMLP_HOME``."""
import hashlib
import http.client
import json
import logging
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

from .assets import get_asset
from .errors import CheckpointError
from .integrity import _CHUNK, _fsync_dir, _normalize_sha, _write_text_durably, sha256_file

__all__ = ["cache_dir", "download_file", "fetch_asset", "remember_asset", "bad_cache_hint", "DOWNLOAD_TIMEOUT",
           "DOWNLOAD_MIN_RATE", "DOWNLOAD_DEADLINE"]

logger = logging.getLogger("snn_mlp.checkpoint")  # a child of the logger setup_logging configures


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
