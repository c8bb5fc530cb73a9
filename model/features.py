"""Encoder features computed once per (image, size, encoder weights) and shared between methods.

Every shipped method encodes with vgg_normalised; two networks share features only when their
encoders hold the same tensor values (`encoder_fingerprint`), not merely the same file name."""
import hashlib
import threading
from collections import OrderedDict

import torch


def encoder_fingerprint(encoder):
    """sha256 of the encoder's state dict (names, dtypes, shapes, values); computed once per module
    (the encoder is frozen), about 0.1 s for VGG up to relu5_1."""
    if getattr(encoder, "_fingerprint", None) is None:
        digest = hashlib.sha256()
        for name, tensor in encoder.state_dict().items():
            t = tensor.detach().cpu()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).numpy().tobytes())  # values in logical order, whatever the layout
        encoder._fingerprint = digest.hexdigest()
    return encoder._fingerprint


def image_key(img):
    """sha256 of an RGB PIL image's size and pixels (the same picture gives the same key however it was read)."""
    digest = hashlib.sha256(f"{img.mode}:{img.size}".encode())
    digest.update(img.tobytes())
    return digest.hexdigest()


def nbytes(feats):
    return sum(f.numel() * f.element_size() for f in feats)


class FeatureCache:
    """LRU cache of encoder features, bounded by bytes: key -> list of five (1, C, h, w) tensors.
    A set of features larger than the whole bound is not kept. Thread-safe (the demo fills it
    from a background thread)."""

    def __init__(self, max_bytes=1 << 30):
        self.max_bytes = max_bytes
        self.entries = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            feats = self.entries.get(key)
            if feats is None:
                self.misses += 1
                return None
            self.hits += 1
            self.entries.move_to_end(key)
            return feats

    def __contains__(self, key):
        """Whether `key` is held (counted neither as a hit nor as a miss)."""
        with self.lock:
            return key in self.entries

    def put(self, key, feats):
        size = nbytes(feats)
        if size > self.max_bytes:
            return
        with self.lock:
            if key in self.entries:
                self.bytes -= nbytes(self.entries.pop(key))
            self.entries[key] = feats
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self.entries.popitem(last=False)
                self.bytes -= nbytes(old)

    def clear(self):
        with self.lock:
            self.entries.clear()
            self.bytes = 0


def feature_key(net, tensor, key):
    """The cache key of net's features of `tensor` (see `encode_cached`)."""
    return (key, tuple(tensor.shape), encoder_fingerprint(net.encoder), str(tensor.device), str(tensor.dtype),
            torch.is_autocast_enabled(tensor.device.type))


def encode_cached(net, tensor, key, cache):
    """net.encode(tensor), looked up first in `cache` (None: no cache) under
    (key, shape, encoder fingerprint, device, dtype, autocast on). tensor: (1, 3, H, W) in [0, 1]; key
    identifies the picture it was made from (e.g. `image_key` of the resized image)."""
    if cache is None:
        return net.encode(tensor)
    full_key = feature_key(net, tensor, key)
    feats = cache.get(full_key)
    if feats is None:
        feats = net.encode(tensor)
        cache.put(full_key, feats)
    return feats
