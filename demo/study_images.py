"""The study's pictures as browsers get them: at addresses keyed by the server, in one light format.

A picture is served at study-image/<name>.webp, where name (20 bytes, hex) seals what it shows under
a key derived from the database's salt: a 6-byte nonce, 8 bytes (the picture's kind, 1 byte, and a
stimulus's database id, 7 bytes) XORed with an HMAC keystream, and an HMAC tag (6 bytes) over both.
A trial's image (`url`) has a nonce made from the participant token, the trial token and the side, so
its address differs for every participant and trial; a stimulus's content photo or style painting
(`reference_url`) has one made from the participant token and the picture, so that a participant's
browser fetches each reference once (the sealed id is the study's first stimulus with that picture).
The address says nothing about the stimulus, is not shared with the Compare tab's files, and is
served by any app worker on the same database (deploy/: a participant moved to another worker keeps
valid addresses); a name the server did not make fails the tag.
The bytes are the study's files in study.picture_files' format (a lossy WebP, which holds no
metadata), served as they are; a file in another format (a study prepared before that format had PNG
stimuli) is encoded into it once per study into `cache_dir` (named by stimulus hash there, on the
server's disk only) and reused after a restart. Catch and real images are encoded alike, so they
weigh about the same without padding (tests/test_study_images.py)."""
import hashlib
import hmac
import re
import struct
import threading
from pathlib import Path

from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from study.picture_files import MEDIA_TYPE, QUALITY, SUFFIX, encode, is_served_form, reference_path
from study.store import StudyError

from .storage import atomic_write

ROUTE = "study-image"
NAME = re.compile(r"[0-9a-f]{40}")
KINDS = ("output", "content", "style")  # what a name shows: the stimulus, or its content photo or style painting
ID_BITS = 56  # the sealed 8 bytes: the kind's index above these, the stimulus id in them
MEMORY_BYTES = 256 * 2**20  # served files kept in memory (the sample study's take 2.2 MB); the rest is read per request


class StudyImages:
    """Addresses for the trials' images (`url`) and reference pictures (`reference_url`), and the
    route that serves them (`route`)."""

    def __init__(self, store, cache_dir):
        self.store = store
        self.cache_dir = Path(cache_dir)
        self._key = bytes.fromhex(store.hash_id("study-images", "key"))  # the same in every worker on the database
        self._files = {}  # study -> {stimulus sha256: (path, width, height)}
        self._stimuli = {}  # stimulus id -> (study, {kind: sha256 of its output, content or style})
        self._ids = {}  # (study, kind, sha256) -> the first stimulus id showing that picture
        self._references = {}  # (study, sha256) -> (path, width, height)
        self._data = {}  # path -> bytes of the files served so far
        self._data_bytes = 0
        self._lock = threading.Lock()
        self._preparing = threading.Lock()  # one study prepared at a time, once

    def _mac(self, label, data):
        return hmac.new(self._key, label + b"\0" + data, hashlib.sha256).digest()

    def _xor(self, nonce, data):
        """data (8 bytes) XOR the keystream of `nonce`: encrypts and decrypts."""
        return bytes(a ^ b for a, b in zip(data, self._mac(b"stream", nonce)))

    def _address(self, seed, kind, stimulus):
        """The relative URL that serves `kind` of the stimulus id, with a nonce made from `seed` (str)."""
        nonce = self._mac(b"nonce", seed.encode())[:6]
        sealed = self._xor(nonce, struct.pack(">Q", KINDS.index(kind) << ID_BITS | stimulus))
        return f"{ROUTE}/{(nonce + sealed + self._mac(b'tag', nonce + sealed)[:6]).hex()}{SUFFIX}"

    def url(self, study, participant, trial, side, sha256):
        """(relative URL, width, height) of the trial's image on `side`."""
        _, width, height = self.files(study)[sha256]
        return self._address(f"{participant}\0{trial}\0{side}", "output", self._ids[study, "output", sha256]), width, height

    def path(self, name):
        """The file served at `name` (40 hex digits), or None for a name that no worker on this database made."""
        raw = bytes.fromhex(name)
        nonce, sealed, tag = raw[:6], raw[6:14], raw[14:]
        if not hmac.compare_digest(tag, self._mac(b"tag", nonce + sealed)[:6]):
            return None
        (value,) = struct.unpack(">Q", self._xor(nonce, sealed))
        kind, stimulus = value >> ID_BITS, value & ((1 << ID_BITS) - 1)
        with self._lock:
            entry = self._stimuli.get(stimulus)
        if entry is None:  # a study this worker has not served yet
            study = self.store.stimulus_study(stimulus)
            if study is None:
                return None
            self.files(study)
            with self._lock:
                entry = self._stimuli.get(stimulus)
        if entry is None or kind >= len(KINDS):
            return None
        study, shas = entry
        if KINDS[kind] == "output":
            return self.files(study)[shas["output"]][0]
        try:
            return self._reference(study, shas[KINDS[kind]])[0]
        except StudyError:
            return None

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
        """{stimulus sha256: (served file, width, height)} for every stimulus of the study, made on first use."""
        with self._lock:
            found = self._files.get(study)
        if found is not None:
            return found
        with self._preparing:
            found = self._files.get(study) or self._prepare(study)
            with self._lock:
                self._files[study] = found
        return found

    def _cache(self, study):
        return self.cache_dir / hashlib.sha256(study.encode()).hexdigest()[:16]

    def _served(self, study, source, sha256):
        """(served file, width, height) of the picture file `source`: itself when it is in the served
        format, else its encoding in the study's cache folder (made once)."""
        path = source
        if not is_served_form(source):
            path = self._cache(study) / f"{sha256}-q{QUALITY}{SUFFIX}"
            if not path.is_file():
                with Image.open(source) as image:
                    atomic_write(path, encode(image))
        with Image.open(path) as image:
            return path, image.width, image.height

    def _prepare(self, study):
        stimuli = self.store.stimuli(study)
        with self._lock:
            for s in stimuli:
                shas = {kind: s[f"{kind}_sha256"] for kind in KINDS}
                self._stimuli[s["id"]] = (study, shas)
                for kind, sha in shas.items():
                    self._ids.setdefault((study, kind, sha), s["id"])
        return {s["output_sha256"]: self._served(study, self.store.image_path(study, s["output_sha256"]), s["output_sha256"])
                for s in stimuli}

    def route(self):
        """The starlette route serving study-image/<name>.webp (404 for any other name)."""
        def load(name):
            path = self.path(name)
            return None if path is None else self.data(path)

        async def serve(request):
            name, suffix = request.path_params["name"][:40], request.path_params["name"][40:]
            data = await run_in_threadpool(load, name) if NAME.fullmatch(name) and suffix == SUFFIX else None
            if data is None:
                return Response("no such image", status_code=404)
            return Response(data, media_type=MEDIA_TYPE,
                            headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"})
        return Route(f"/{ROUTE}/{{name}}", serve, methods=["GET", "HEAD"])

    def preload(self, study, participant, trials, references):
        """The addresses of the pictures of `trials` (Store.remaining_trials' dicts) in the order a page
        needs them: each trial's left and right image, then, when the study shows `references`, its
        content photo and style painting (none for a study prepared before reference pictures were kept).
        The first two are the next trial's pair, which TRIAL_JS's first trial on a page waits for."""
        urls = []
        for trial in trials:
            urls += [self.url(study, participant, trial["token"], side, trial[side])[0] for side in ("left", "right")]
            if not references:
                continue
            try:
                urls += [self.reference_url(study, participant, trial["left"], kind)[0] for kind in KINDS[1:]]
            except StudyError:
                pass
        return urls

    def _reference(self, study, sha256):
        """(served file, width, height) of the study's reference picture of the content or style file
        with this sha256; StudyError when the study has none (prepared before references were kept)."""
        with self._lock:
            found = self._references.get((study, sha256))
        if found is None:
            source = reference_path(self.store.study(study)["images_dir"], sha256)
            if not source.is_file():
                raise StudyError(f"study {study!r} has no reference picture {source.name} in its images folder: "
                                 "run python -m study.prepare for it again (it makes them)")
            found = self._served(study, source, sha256)
            with self._lock:
                self._references[study, sha256] = found
        return found

    def reference_url(self, study, participant, sha256, kind):
        """(relative URL, width, height) of the content photo (kind "content") or style painting ("style")
        of the stimulus whose output has this sha256 (as `url` takes it), one address per participant and
        picture (the browser caches it across trials)."""
        if kind not in KINDS[1:]:
            raise ValueError(f"kind must be 'content' or 'style', not {kind!r}")
        self.files(study)
        with self._lock:
            stimulus = self._ids.get((study, "output", sha256))
        if stimulus is None:
            raise StudyError(f"study {study!r} has no stimulus with output {sha256}")
        sha = self._stimuli[stimulus][1][kind]
        _, width, height = self._reference(study, sha)
        return self._address(f"{participant}\0{kind}\0{sha}", kind, self._ids[study, kind, sha]), width, height
