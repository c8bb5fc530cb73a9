"""What the demo's tabs share: the methods that can run, stored images, cached results, the votes."""
import secrets
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model.features import FeatureCache
from model.methods import METHODS, available_methods, default_device
from model.metrics import evaluate_pair, load_encoder
from model.pipeline import STYLE_SIZE, cached_method, encode, is_encoded, resized_pair, stylize
from model.profiling import Cost
from model.weights import locate
from study.store import Store, default_url

from .budget import ClientBudgets, Hold, over_budget, png_bound
from .gallery import example_paths
from .security import BUDGET_WINDOW_S
from .storage import DiskCache, ImageStore, ResultCache, StorageError
from .upload import read_input, shrink

DEVICE_GROUP = "device"  # the concurrency group of every event that runs a network
RESULT_BOUND = 1024  # bytes of a result record at the most (its JSON takes about 150)


def time_left(seconds):
    """'under a second left', 'about 4 s left' (under 90 s) or 'about 3 min left'."""
    if seconds < 1:
        return "under a second left"
    return f"about {seconds:.0f} s left" if seconds < 90 else f"about {seconds / 60:.0f} min left"


@dataclass(frozen=True)
class Settings:
    """weights_dir: official checkpoints (optional); data_dir: images, cache and (by default) the
    database; max_size: the largest long side a visitor may ask for, in pixels; max_jobs: how many
    stylisations run at once on the device; admin_password: opens the study results page (None: disabled);
    vote_interval_ms, votes_per_minute: the study's vote rate limits (demo.limits; 0: no limit);
    enrolments_per_hour: participants one address may enrol in one study per hour (0: no limit);
    study_only: serve the study and its results only (nothing that makes or names images);
    storage_quota_mb: the size cap of stored images and cached results in data_dir (the least recently used
    are deleted to make room; never an image a vote refers to);
    client_write_mb: the most one network address may make the server write in any BUDGET_WINDOW_S
    (uploads, stored images and results, served copies);
    feature_cache_mib: the bound of the shared encoder-feature cache (a 512 px painting takes about 95 MiB;
    the warm-up puts the gallery's 12 in it, about 1.1 GiB);
    with_study: serve the study page beside the demo (to try a study out; real studies run study_only);
    counted_votes_per_day: the battle votes per network address and UTC day the leaderboard counts."""

    weights_dir: str | None = None
    device: str | None = None
    data_dir: str = "data"
    database: str | None = None
    max_size: int | None = None
    max_jobs: int = 1
    admin_password: str | None = field(default=None, repr=False)
    vote_interval_ms: int = 300
    votes_per_minute: int = 600
    enrolments_per_hour: int = 20
    study_only: bool = False
    storage_quota_mb: int = 4096
    feature_cache_mib: int = 2048
    client_write_mb: int = 512
    with_study: bool = False
    counted_votes_per_day: int = 50

    @property
    def serves_study(self):
        return self.study_only or self.with_study

    @property
    def device_events(self):
        """Event keywords for the events that run networks: one concurrency group, DEVICE_GROUP, of
        max_jobs at once (demo.security.Admission caps what may queue in it)."""
        return {"concurrency_id": DEVICE_GROUP, "concurrency_limit": self.max_jobs}

    @property
    def torch_device(self):
        return torch.device(self.device) if self.device else default_device()

    @property
    def default_size(self):
        return min(1024 if self.torch_device.type == "cuda" else 512, self.size_cap)

    @property
    def size_cap(self):
        return self.max_size or (2048 if self.torch_device.type == "cuda" else 1024)


@dataclass(frozen=True)
class Result:
    sha256: str
    seconds: float
    peak_mib: float | None
    cached: bool


class Arena:
    def __init__(self, settings):
        self.settings = settings
        self.status = available_methods(settings.weights_dir)
        data = Path(settings.data_dir)
        self.store = Store(settings.database or default_url(data))
        cache = DiskCache(settings.storage_quota_mb * 2**20, (data / "images", data / "results"), self.voted_paths)
        self.images = ImageStore(data / "images", cache)
        self.results = ResultCache(data / "results", cache)
        self.writes = ClientBudgets(settings.client_write_mb * 2**20, BUDGET_WINDOW_S)
        self.encoder = None  # the VGG for the metrics, loaded on first use
        self.warm = threading.Event()  # set when the example pairs are precomputed (demo.warmup)
        self.features = FeatureCache(settings.feature_cache_mib << 20)
        self.device_lock = threading.Lock()  # one job at a time per process on the device: a user's waits one painting at most
        self.throughput = Throughput()

    def voted_paths(self):
        """The stored images that votes refer to (the cache keeps them)."""
        return {self.images.path(sha) for sha in self.store.voted_images()}

    def hold(self, address, size):
        """A Hold of `size` bytes on the write budget of `address`; StorageError, with nothing reserved,
        when the budget lacks room."""
        taken = Hold.take(size, self.writes.of(address))
        if not isinstance(taken, Hold):
            raise StorageError(over_budget(taken))
        return taken

    def hold_for(self, address, inputs, size, outputs):
        """`hold` for storing `inputs` (RGB PIL images, as they will be stored) and `outputs` results of
        long side `size` px, each with a served copy."""
        return self.hold(address, sum(png_bound(*image.size) for image in inputs)
                         + outputs * (2 * png_bound(size, size) + RESULT_BOUND))

    def runnable(self):
        return [name for name, s in self.status.items() if s.available]

    def label(self, name):
        return METHODS[name].label

    def fingerprint(self, method):
        """What identifies the weights a method runs with: each file's path, size and mtime."""
        files = [locate(wf, self.settings.weights_dir) for wf in METHODS[method].all_files().values()]
        return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]

    def encode_gallery(self):
        """Puts the gallery paintings' encoder features into the feature cache, read as the Compare tab
        receives them and at the style size of the default output size, one painting at a time between
        user jobs, and measures the encoder's throughput on the way; returns how many."""
        net = cached_method(self.runnable()[0], self.settings.weights_dir, self.settings.torch_device)
        size, paths = self.settings.default_size, example_paths("styles")
        for path in paths:
            painting = shrink(read_input(path), self.settings.size_cap)
            _, style = resized_pair(painting, painting, size, style_size_for(size))
            with self.device_lock, Cost(self.settings.torch_device) as cost:
                encode(net, style, self.features)
            self.throughput.encoded(megapixels(style.size), cost.seconds)
        return len(paths)

    def plan(self, method, content_sha, style_sha, size, style_size=None):
        """(the output's size, the sizes of the inputs whose encoder features are not in the feature cache: what
        a run of `method` at long side `size` would encode), each (w, h) px, the inputs resized as the run does."""
        net = cached_method(method, self.settings.weights_dir, self.settings.torch_device)
        pair = resized_pair(self.images.get(content_sha), self.images.get(style_sha), size, style_size or style_size_for(size))
        return pair[0].size, [image.size for image in pair if not is_encoded(net, image, self.features)]

    def estimates(self, methods, size, content_sha, style_sha):
        """Estimated seconds of each run of `methods`, one after the other, at output long side `size` (px)
        on these stored inputs (the first run encodes what the feature cache lacks, the others find it
        there), from the measured throughput; None for each before anything was measured."""
        if not methods:
            return []
        output, encodes = self.plan(methods[0], content_sha, style_sha, size)
        return [self.throughput.estimate(m, size, output, encodes if i == 0 else ()) for i, m in enumerate(methods)]

    def estimate(self, methods, size, content_sha, style_sha):
        """`estimates` summed; None before anything was measured."""
        seconds = self.estimates(methods, size, content_sha, style_sha)
        return None if None in seconds else sum(seconds)

    def progress_text(self, methods, size, content_sha, style_sha, stored=()):
        """What a progress bar says while the first of `methods` is made: "Running A2K (training-free),
        about 4 s left", the estimate covering those of `methods` not in `stored` (methods whose result
        is stored take no time: "Loading A2K (training-free), stored"); no estimate before anything
        was measured."""
        pending = [m for m in methods if m not in stored]
        text = f"Running {self.label(methods[0])}" if methods[0] in pending else f"Loading {self.label(methods[0])}, stored"
        seconds = self.estimate(pending, size, content_sha, style_sha) if pending else None
        if seconds is None:
            return text
        return f"{text}, {time_left(seconds)}"

    def stored(self, content_sha, style_sha, method, size, alpha, preserve_color, style_size=None):
        """The stored result of these inputs and settings (a Result with cached=True), or None. style_size:
        the style's long side (default: `style_size_for(size)`)."""
        record = self.results.get(self.result_key(content_sha, style_sha, method, size, alpha, preserve_color, style_size))
        if record and self.images.path(record["output"]).exists():
            return Result(record["output"], record["seconds"], record["peak_mib"], True)
        return None

    def result_key(self, content_sha, style_sha, method, size, alpha, preserve_color, style_size=None):
        return self.results.key(content=content_sha, style=style_sha, method=method, size=size, alpha=alpha,
                                preserve_color=preserve_color, device=self.settings.torch_device.type,
                                weights=self.fingerprint(method), style_size=style_size or style_size_for(size))

    def stylize(self, content_sha, style_sha, method, size, alpha, preserve_color, hold, style_size=None):
        """The stored output for these inputs and settings (see `stored`), computed once
        (content-addressed; what it writes is counted on `hold`); the encoder features go through the
        shared cache, so the other method of a comparison, another alpha or a gallery painting does not
        encode again."""
        args = (content_sha, style_sha, method, size, alpha, preserve_color, style_size or style_size_for(size))
        result = self.stored(*args)
        if result:
            return result
        net = cached_method(method, self.settings.weights_dir, self.settings.torch_device)
        content, style = self.images.get(content_sha), self.images.get(style_sha)
        device = self.settings.torch_device
        with self.device_lock:
            began = time.perf_counter()
            fresh = [image for image in resized_pair(content, style, size, args[-1])
                     if not is_encoded(net, image, self.features)]
            with Cost(device) as encoding:  # timed apart: a run on cached features costs less
                for image in fresh:
                    encode(net, image, self.features)
            with Cost(device) as cost:
                output = stylize(content, style, net, size, alpha, preserve_color, style_size=args[-1], cache=self.features)
        seconds = encoding.seconds + cost.seconds
        peak = None if None in (encoding.mib, cost.mib) else max(encoding.mib, cost.mib)
        sha = self.images.put(output, hold)
        self.results.put(self.result_key(*args), {"output": sha, "seconds": seconds, "peak_mib": peak}, hold)
        if fresh:
            self.throughput.encoded(sum(megapixels(image.size) for image in fresh), encoding.seconds)
        # the estimate's run: everything from the device's turn to the stored output, but the encodings
        self.throughput.ran(method, size, output.size, time.perf_counter() - began - encoding.seconds)
        return Result(sha, seconds, peak, False)

    def metrics(self, content_sha, style_sha, outputs):
        """The paper's metrics for stored outputs {label: sha256} of one comparison: a DataFrame
        with columns method, content_loss, style_loss, ssim."""
        images = {label: self.images.get(sha) for label, sha in outputs.items()}
        with self.device_lock:  # one network at a time on the device, as for stylisations
            if self.encoder is None:
                self.encoder = load_encoder(self.settings.weights_dir, self.settings.torch_device)
            return evaluate_pair(self.images.get(content_sha), self.images.get(style_sha), images, self.encoder)

    @staticmethod
    def new_token():
        return secrets.token_urlsafe(16)


class Throughput:
    """Measured speed for time estimates: seconds per output megapixel of each method's last RUNS runs at
    each output long side, and at any size, a run timed from the device's turn to its stored output less
    its encodings (transform, decoder, storing); and the encoder's seconds per megapixel of its last RUNS
    encodings (the gallery warm-up's and the runs'). Before a method ran at all, its run is taken to cost
    an encoding of the output: the VGG decoder mirrors the encoder."""

    RUNS = 5

    def __init__(self):
        self.runs = {}  # (method, long side px) -> deque of seconds per output megapixel
        self.method_rates = {}  # method -> deque of seconds per output megapixel, any size
        self.encoder_rates = deque(maxlen=self.RUNS)
        self.lock = threading.Lock()

    def ran(self, method, size, output_size, seconds):
        """A run of `method` at long side `size` made an output of `output_size` (w, h) in `seconds` on cached features."""
        rate = seconds / megapixels(output_size)
        with self.lock:
            self.runs.setdefault((method, size), deque(maxlen=self.RUNS)).append(rate)
            self.method_rates.setdefault(method, deque(maxlen=self.RUNS)).append(rate)

    def encoded(self, mp, seconds):
        """The encoder took `seconds` for images of `mp` megapixels in all."""
        with self.lock:
            self.encoder_rates.append(seconds / mp)

    def estimate(self, method, size, output_size, encodes=()):
        """Seconds for a run of `method` at long side `size` (px) making an output of `output_size` (w, h)
        that encodes images of the sizes `encodes` ((w, h) each), or None before anything was measured."""
        with self.lock:
            runs = list(self.runs.get((method, size), ()))
            rates = {m: statistics.median(r) for m, r in self.method_rates.items()}
            encoder = statistics.median(self.encoder_rates) if self.encoder_rates else None
        if runs:
            rate = statistics.median(runs)
        elif rates:
            rate = rates.get(method, statistics.median(rates.values()))
        elif encoder is not None:
            rate = encoder
        else:
            return None
        return rate * megapixels(output_size) + (encoder or rate) * sum(megapixels(s) for s in encodes)


def style_size_for(size):
    """The style's long side for an output of long side `size` (px): STYLE_SIZE, or `size` when smaller,
    so a small output never pays for a 512 px style (tests/test_load.py's memory bound holds only then)."""
    return min(STYLE_SIZE, size)


def megapixels(size):
    """(width, height) in px -> megapixels."""
    return size[0] * size[1] / 1e6
