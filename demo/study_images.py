"""The study's images as browsers get them: at addresses keyed by the server, padded to one size per study.

A trial's image is served at study-image/<name>.png, where name (20 bytes, hex) is the stimulus's
database id encrypted under a key derived from the database's salt: a 6-byte nonce (an HMAC of the
participant token, the trial token and the side), the id XORed with an HMAC keystream (8 bytes), and an
HMAC tag (6 bytes) over both. The address says nothing about the stimulus, differs for every
participant and trial, is not shared with the Compare tab's files, and is served by any app worker
on the same database (deploy/: a participant moved to another worker keeps valid addresses); a name
the server did not make fails the tag. The bytes are the stimulus as bare RGB pixels (no metadata),
padded with a private ancillary PNG chunk of random bytes to the size of the study's largest file, so a
catch image (blurred, so it would compress well) weighs as much as any other; it also has the size in
pixels of its cell's real images.
The padded files are written once per study into `cache_dir` (named by stimulus hash there, on the
server's disk only) and reused after a restart while the study's stimuli are the same."""
import hashlib
import hmac
import io
import json
import os
import re
import struct
import threading
import zlib
from pathlib import Path

from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from study.prepare import reference_path

from .storage import atomic_write

ROUTE = "study-image"
REFERENCE_ROUTE = "study-reference"
NAME = re.compile(r"[0-9a-f]{40}")
PAD_CHUNK = b"stPd"  # ancillary (s), private (t), reserved bit clear (P), safe to copy (d): decoders skip it
BLOCK = 4096  # padded sizes are multiples of this
MEMORY_BYTES = 256 * 2**20  # served files kept in memory (the sample study's take 8 MB); the rest is read per request


def bare_png(path):
    """The image file at `path` as PNG bytes of its RGB pixels, without any metadata chunk."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, "PNG")
    return buf.getvalue(), rgb.size


def pad_png(data, size):
    """The PNG `data` grown to exactly `size` bytes by a PAD_CHUNK of random bytes placed before IEND."""
    payload = size - len(data) - 12  # a chunk is length (4) + type (4) + data + CRC (4)
    if payload < 0:
        raise ValueError(f"cannot pad a {len(data)}-byte PNG to {size} bytes")
    body = os.urandom(payload)
    chunk = struct.pack(">I", payload) + PAD_CHUNK + body + struct.pack(">I", zlib.crc32(PAD_CHUNK + body))
    return data[:-12] + chunk + data[-12:]  # the last 12 bytes are the IEND chunk


class StudyImages:
    """Addresses for the trials' images (`url`) and the route that serves them (`route`)."""

    def __init__(self, store, cache_dir):
        self.store = store
        self.cache_dir = Path(cache_dir)
        self._key = bytes.fromhex(store.hash_id("study-images", "key"))  # the same in every worker on the database
        self._files = {}  # study -> {stimulus sha256: (path, width, height)}
        self._ids = {}  # (study, stimulus sha256) -> stimulus id, and stimulus id -> (study, stimulus sha256)
        self._data = {}  # path -> bytes of the files served so far
        self._data_bytes = 0
        self._lock = threading.Lock()
        self._preparing = threading.Lock()  # one study prepared at a time, once
        self._references = {}  # study -> (images folder, {stimulus sha256: stimulus dict}), for reference_url
        self._reference_sizes = {}  # reference file -> (width, height)

    def _mac(self, label, data):
        return hmac.new(self._key, label + b"\0" + data, hashlib.sha256).digest()

    def _xor(self, nonce, data):
        """data (8 bytes) XOR the keystream of `nonce`: encrypts and decrypts."""
        return bytes(a ^ b for a, b in zip(data, self._mac(b"stream", nonce)))

    def url(self, study, participant, trial, side, sha256):
        """(relative URL, width, height) of the trial's image on `side`."""
        _, width, height = self.files(study)[sha256]
        nonce = self._mac(b"nonce", f"{participant}\0{trial}\0{side}".encode())[:6]
        sealed = self._xor(nonce, struct.pack(">Q", self._ids[study, sha256]))
        return f"{ROUTE}/{(nonce + sealed + self._mac(b'tag', nonce + sealed)[:6]).hex()}.png", width, height

    def path(self, name):
        """The file served at `name` (40 hex digits), or None for a name that no worker on this database made."""
        raw = bytes.fromhex(name)
        nonce, sealed, tag = raw[:6], raw[6:14], raw[14:]
        if not hmac.compare_digest(tag, self._mac(b"tag", nonce + sealed)[:6]):
            return None
        (stimulus,) = struct.unpack(">Q", self._xor(nonce, sealed))
        with self._lock:
            entry = self._ids.get(stimulus)
        if entry is None:  # a study this worker has not served yet
            study = self.store.stimulus_study(stimulus)
            if study is None:
                return None
            self.files(study)
            with self._lock:
                entry = self._ids.get(stimulus)
        return entry and self.files(entry[0])[entry[1]][0]

    def data(self, path):
        """The bytes of the served file `path`, kept in memory (up to MEMORY_BYTES in all) once read."""
        with self._lock:
            found = self._data.get(path)
        if found is None:
            found = path.read_bytes()
            with self._lock:
                if self._data_bytes + len(found) <= MEMORY_BYTES and path not in self._data:
                    self._data[path] = found
                    self._data_bytes += len(found)
        return found

    def files(self, study):
        """{stimulus sha256: (padded file, width, height)} for every stimulus of the study, made on first use."""
        with self._lock:
            found = self._files.get(study)
        if found is not None:
            return found
        with self._preparing:
            found = self._files.get(study) or self._prepare(study)
            with self._lock:
                self._files[study] = found
        return found

    def _prepare(self, study):
        stimuli = {s["output_sha256"]: s for s in self.store.stimuli(study)}
        with self._lock:
            for sha, s in stimuli.items():
                self._ids[study, sha] = s["id"]
                self._ids[s["id"]] = (study, sha)
        folder = self.cache_dir / hashlib.sha256(study.encode()).hexdigest()[:16]
        index = folder / "index.json"
        try:
            known = json.loads(index.read_text())
            if set(known) == set(stimuli) and all((folder / f"{sha}.png").is_file() for sha in known):
                return {sha: (folder / f"{sha}.png", w, h) for sha, (w, h) in known.items()}
        except (OSError, ValueError):
            pass
        bare = {sha: bare_png(self.store.image_path(study, sha)) for sha in stimuli}
        size = -(-(max(len(data) for data, _ in bare.values()) + 12) // BLOCK) * BLOCK
        for sha, (data, _) in bare.items():
            atomic_write(folder / f"{sha}.png", pad_png(data, size))
        atomic_write(index, json.dumps({sha: dims for sha, (_, dims) in bare.items()}).encode())
        return {sha: (folder / f"{sha}.png", w, h) for sha, (_, (w, h)) in bare.items()}

    def route(self):
        """The starlette route serving study-image/<name>.png (404 for any other name)."""
        def load(name):
            path = self.path(name)
            return None if path is None else self.data(path)

        async def serve(request):
            name = request.path_params["name"]
            data = await run_in_threadpool(load, name[:-4]) if NAME.fullmatch(name[:-4]) and name.endswith(".png") else None
            if data is None:
                return Response("no such image", status_code=404)
            return Response(data, media_type="image/png",
                            headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"})
        return Route(f"/{ROUTE}/{{name}}", serve, methods=["GET", "HEAD"])

    # ---- reference pictures: the content photo and style painting of a trial (until the light-images merge) ----

    def reference_url(self, study, participant, stimulus_id, kind):
        """(relative URL, width, height) of the content photo (kind "content") or style painting ("style") of
        the study's stimulus `stimulus_id` (its output sha256, as `url` takes it): one address per participant
        and picture (the browser caches it across trials), sealing the study's first stimulus with that
        picture as `url` seals a stimulus; the file is study.prepare.reference_path's."""
        _, stimuli = self._stimuli(study)
        picture = stimuli[stimulus_id][f"{kind}_sha256"]
        first = min(s["id"] for s in stimuli.values() if s[f"{kind}_sha256"] == picture)
        nonce = self._mac(b"nonce", f"{participant}\0{kind}\0{picture}".encode())[:6]
        sealed = self._xor(nonce, struct.pack(">Q", 2 * first + (kind == "style")))
        name = (nonce + sealed + self._mac(b"reference", nonce + sealed)[:6]).hex()
        path = self._reference(study, stimulus_id, kind)
        if path not in self._reference_sizes:
            with Image.open(path) as image:
                self._reference_sizes[path] = image.size
        return (f"{REFERENCE_ROUTE}/{name}.jpg", *self._reference_sizes[path])

    def _stimuli(self, study):
        """(images folder, {stimulus output sha256: stimulus dict}) of the study, read once."""
        found = self._references.get(study)
        if found is None:
            found = self._references[study] = (self.store.study(study)["images_dir"],
                                               {s["output_sha256"]: s for s in self.store.stimuli(study)})
        return found

    def _reference(self, study, stimulus_id, kind):
        images_dir, stimuli = self._stimuli(study)
        return reference_path(images_dir, stimuli[stimulus_id][f"{kind}_sha256"])

    def reference_route(self):
        """The starlette route serving study-reference/<name>.jpg (404 for any other name)."""
        def load(name):
            raw = bytes.fromhex(name)
            nonce, sealed, tag = raw[:6], raw[6:14], raw[14:]
            if not hmac.compare_digest(tag, self._mac(b"reference", nonce + sealed)[:6]):
                return None
            (sealed_id,) = struct.unpack(">Q", self._xor(nonce, sealed))
            study = self.store.stimulus_study(sealed_id // 2)
            if study is None:
                return None
            stimulus = next(sha for sha, s in self._stimuli(study)[1].items() if s["id"] == sealed_id // 2)
            path = self._reference(study, stimulus, ("content", "style")[sealed_id % 2])
            return path.read_bytes() if path.is_file() else None

        async def serve(request):
            name = request.path_params["name"]
            ok = NAME.fullmatch(name[:-4]) and name.endswith(".jpg")
            data = await run_in_threadpool(load, name[:-4]) if ok else None
            if data is None:
                return Response("no such image", status_code=404)
            return Response(data, media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"})
        return Route(f"/{REFERENCE_ROUTE}/{{name}}", serve, methods=["GET", "HEAD"])
