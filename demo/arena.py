"""What the demo's tabs share: the methods that can run, stored images, cached results, the votes."""
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model.methods import METHODS, available_methods, default_device
from model.metrics import evaluate_pair, load_encoder
from model.pipeline import cached_method, stylize
from model.profiling import Cost
from model.weights import locate
from study.store import Store, default_url

from .storage import ImageStore, Quota, ResultCache


@dataclass(frozen=True)
class Settings:
    """weights_dir: official checkpoints (optional); data_dir: images, cache and (by default) the
    database; max_size: the largest long side a visitor may ask for, in pixels; max_jobs: how many
    stylisations run at once on the device; admin_password: opens the study results page (None: disabled);
    vote_interval_ms, votes_per_minute: the study's vote rate limits (demo.limits; 0: no limit);
    enrolments_per_hour: participants one address may enrol in one study per hour (0: no limit);
    study_only: serve the study and its results only (nothing that makes or names images);
    storage_quota_mb: the most that stored images and cached results may take in data_dir."""

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
        quota = Quota(settings.storage_quota_mb * 2**20, data / "images", data / "results")
        self.images = ImageStore(data / "images", quota)
        self.results = ResultCache(data / "results", quota)
        self.store = Store(settings.database or default_url(data))
        self.encoder = None  # the VGG for the metrics, loaded on first use
        self.warm = threading.Event()  # set when the example pairs are precomputed (demo.warmup)

    def runnable(self):
        return [name for name, s in self.status.items() if s.available]

    def label(self, name):
        return METHODS[name].label

    def fingerprint(self, method):
        """What identifies the weights a method runs with: each file's path, size and mtime."""
        files = [locate(wf, self.settings.weights_dir) for wf in METHODS[method].all_files().values()]
        return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]

    def stylize(self, content_sha, style_sha, method, size, alpha, preserve_color):
        """The stored output for these inputs and settings, computed once (content-addressed)."""
        key = self.results.key(content=content_sha, style=style_sha, method=method, size=size, alpha=alpha,
                               preserve_color=preserve_color, device=self.settings.torch_device.type,
                               weights=self.fingerprint(method))
        record = self.results.get(key)
        if record and self.images.path(record["output"]).exists():
            return Result(record["output"], record["seconds"], record["peak_mib"], True)
        net = cached_method(method, self.settings.weights_dir, self.settings.torch_device)
        content, style = self.images.get(content_sha), self.images.get(style_sha)
        with Cost(self.settings.torch_device) as cost:
            output = stylize(content, style, net, size, alpha, preserve_color)
        sha = self.images.put(output)
        self.results.put(key, {"output": sha, "seconds": cost.seconds, "peak_mib": cost.mib})
        return Result(sha, cost.seconds, cost.mib, False)

    def metrics(self, content_sha, style_sha, outputs):
        """The paper's metrics for stored outputs {label: sha256} of one comparison: a DataFrame
        with columns method, content_loss, style_loss, ssim."""
        if self.encoder is None:
            self.encoder = load_encoder(self.settings.weights_dir, self.settings.torch_device)
        images = {label: self.images.get(sha) for label, sha in outputs.items()}
        return evaluate_pair(self.images.get(content_sha), self.images.get(style_sha), images, self.encoder)

    @staticmethod
    def new_token():
        return secrets.token_urlsafe(16)
