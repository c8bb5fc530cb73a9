"""Images kept by content hash, and a content-addressed cache of stylisation results.

    DATA/images/ab/abcdef....png      every input and output, named by the sha256 of its PNG bytes
    DATA/results/<key>.json           {"output": sha256, "seconds": float, "peak_mib": float | null}

Both share a Quota: the bytes they hold are counted once at start and on every write, and a write
that would pass the limit is refused (StorageError) before anything is written."""
import hashlib
import io
import json
import os
import tempfile
import threading
from pathlib import Path

from PIL import Image


class StorageError(Exception):
    """The data folder cannot be written (full disk, permissions); the message says what to do."""


def atomic_write(path, data):
    """Write bytes to path through a temporary file and a rename: a crash or full disk never
    leaves a half-written file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"cannot write to {path.parent} ({exc.strerror or exc}); free some disk space or "
                           "point --data-dir elsewhere") from exc


def served_copy(data, cache_dir, name=None):
    """The bytes `data` as the file cache_dir/<name>/image.png (name: default the sha256 of the bytes),
    written once and atomically; returns its path. Give Gradio image outputs as such a path in its cache
    (a component's GRADIO_CACHE), which it serves as it is. Given a PIL image instead, Gradio re-encodes
    it into a cache file named by its content on every response, rewriting in place a file that another
    visitor who got the same image may be downloading: they get a truncated image."""
    path = Path(cache_dir) / (name or hashlib.sha256(data).hexdigest()) / "image.png"
    if not path.exists():
        atomic_write(path, data)
    return path


def encoded(image):
    """(PNG bytes, their sha256) of a PIL image: what ImageStore stores it as, and names it by."""
    buf = io.BytesIO()
    image.save(buf, "PNG")
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


class Quota:
    """At most `limit_bytes` in the files under `roots` (which only this process writes to)."""

    def __init__(self, limit_bytes, *roots):
        self.limit = limit_bytes
        self.used = sum(p.stat().st_size for root in roots for p in Path(root).rglob("*") if p.is_file())
        self._lock = threading.Lock()

    def write(self, path, data):
        """atomic_write, if the quota has room for `data`; else StorageError and nothing written."""
        with self._lock:
            if self.used + len(data) > self.limit:
                raise StorageError("its storage for new images is full: come back later")
            self.used += len(data)
        try:
            atomic_write(path, data)
        except StorageError:
            with self._lock:
                self.used -= len(data)
            raise


class ImageStore:
    """PNG files under `root`, addressed by the sha256 of their bytes."""

    def __init__(self, root, quota):
        self.root = Path(root)
        self.quota = quota

    def path(self, sha256):
        return self.root / sha256[:2] / f"{sha256}.png"

    def put(self, image):
        """Store an RGB PIL image as PNG (if not there yet); returns its sha256."""
        data, sha = encoded(image)
        if not self.path(sha).exists():
            self.quota.write(self.path(sha), data)
        return sha

    def get(self, sha256):
        with Image.open(self.path(sha256)) as img:
            return img.convert("RGB")


class ResultCache:
    """Stylisation results by a key made from everything that determines them."""

    def __init__(self, root, quota):
        self.root = Path(root)
        self.quota = quota

    @staticmethod
    def key(**fields):
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def get(self, key):
        try:
            return json.loads((self.root / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def put(self, key, record):
        self.quota.write(self.root / f"{key}.json", json.dumps(record).encode())
