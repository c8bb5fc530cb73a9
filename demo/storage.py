"""Images kept by content hash, and a content-addressed cache of stylisation results.

    DATA/images/ab/abcdef....png      every input and output, named by the sha256 of its PNG bytes
    DATA/results/<key>.json           {"output": sha256, "seconds": float, "peak_mib": float | null}

Both are one DiskCache: a write that would pass its size cap first deletes the least recently used
files, never those it is told to keep (images that votes refer to). Every write a visitor's request
makes is counted on that request's Hold (demo.budget), which charges it to the visitor's address."""
import hashlib
import io
import json
import os
import tempfile
import threading
from collections import OrderedDict
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


def png_bytes(image):
    """A PIL image as PNG bytes of its pixels only: an ICC profile the upload carried (Pillow would copy
    it, up to megabytes) is left out."""
    buf = io.BytesIO()
    image.save(buf, "PNG", icc_profile=None)
    return buf.getvalue()


def served_copy(data, cache_dir, hold, name=None):
    """The bytes `data` as the file cache_dir/<name>/image.png (name: default the sha256 of the bytes),
    written once and atomically (and counted on `hold`); returns its path. Give Gradio image outputs as
    such a path in its cache (a component's GRADIO_CACHE), which it serves as it is. Given a PIL image
    instead, Gradio re-encodes it into a cache file named by its content on every response, rewriting in
    place a file that another visitor who got the same image may be downloading: they get a truncated image."""
    path = Path(cache_dir) / (name or hashlib.sha256(data).hexdigest()) / "image.png"
    if not path.exists():
        atomic_write(path, data)
        hold.add(len(data))
    return path


def encoded(image):
    """(png_bytes of a PIL image, their sha256): what ImageStore stores it as, and names it by."""
    data = png_bytes(image)
    return data, hashlib.sha256(data).hexdigest()


class DiskCache:
    """The files under `roots` (which only this process writes to) as a cache of at most `limit_bytes`.
    A write that would pass the limit first deletes the least recently used files, down to EVICT_TO of
    the limit, sparing the paths in the set `kept()` returns; if the others do not make room, StorageError
    and nothing is written. Sizes and the order of use are kept in memory: read from the folders at start
    (oldest modification first), then updated by this process's writes and by `touch`."""

    EVICT_TO = 0.9  # an eviction frees a tenth of the cap at once, so that `kept()` is asked rarely

    def __init__(self, limit_bytes, roots, kept):
        self.limit = limit_bytes
        self.kept = kept
        found = [(p.stat().st_mtime_ns, p) for root in roots for p in Path(root).rglob("*") if p.is_file()]
        self._files = OrderedDict((p, p.stat().st_size) for _, p in sorted(found))  # least recently used first
        self.used = sum(self._files.values())
        self._lock = threading.Lock()

    def touch(self, path):
        """`path` was used: it is the last to be evicted now."""
        with self._lock:
            if path in self._files:
                self._files.move_to_end(path)

    def write(self, path, data):
        """atomic_write, after making room for `data`."""
        with self._lock:
            replaced = self._files.pop(path, 0)  # a file written again (its result record) counts once
            self.used -= replaced
            if self.used + len(data) > self.limit:
                try:
                    self._evict(len(data))
                except StorageError:
                    if replaced and path.exists():
                        self._files[path] = replaced
                        self.used += replaced
                    raise
            self._files[path] = len(data)
            self.used += len(data)
        try:
            atomic_write(path, data)
        except StorageError:
            with self._lock:
                self.used -= self._files.pop(path, 0)
            raise

    def _evict(self, size):
        goal = max(self.limit * self.EVICT_TO, size) - size  # bytes that may stay
        kept = self.kept()
        for path in [p for p in self._files if p not in kept]:
            if self.used <= goal:
                break
            path.unlink(missing_ok=True)
            self.used -= self._files.pop(path)
        if self.used + size > self.limit:
            raise StorageError("its storage for new images is full of pictures that votes refer to: "
                               "come back later")


class ImageStore:
    """PNG files under `root` in `cache`, addressed by the sha256 of their bytes."""

    def __init__(self, root, cache):
        self.root = Path(root)
        self.cache = cache

    def path(self, sha256):
        return self.root / sha256[:2] / f"{sha256}.png"

    def put(self, image, hold):
        """Store an RGB PIL image as `encoded` (if not there yet; its bytes counted on `hold`); returns
        its sha256."""
        data, sha = encoded(image)
        if self.path(sha).exists():
            self.cache.touch(self.path(sha))
        else:
            self.cache.write(self.path(sha), data)
            hold.add(len(data))
        return sha

    def data(self, sha256):
        """The PNG bytes; StorageError if the cache has evicted them."""
        self.cache.touch(self.path(sha256))
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise StorageError("an image this needs has been removed to make room for new ones: "
                               "send the photo and painting again") from exc

    def get(self, sha256):
        with Image.open(io.BytesIO(self.data(sha256))) as img:
            return img.convert("RGB")


class ResultCache:
    """Stylisation results by a key made from everything that determines them, in `cache`."""

    def __init__(self, root, cache):
        self.root = Path(root)
        self.cache = cache

    @staticmethod
    def key(**fields):
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def get(self, key):
        path = self.root / f"{key}.json"
        self.cache.touch(path)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def put(self, key, record, hold):
        data = json.dumps(record).encode()
        self.cache.write(self.root / f"{key}.json", data)
        hold.add(len(data))
