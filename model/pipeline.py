"""From PIL images to a stylised PIL image: tensor conversion, cached networks, `stylize`, `compare`."""
import functools

import numpy as np
import torch
from PIL import Image

from .features import FeatureCache, encode_cached, feature_key, image_key
from .images import as_rgb, keep_colors, resize_long_side
from .methods import load_method
from .precision import autocast

STYLE_SIZE = 512  # the style's long side in px whatever the output size, as the papers test (None: the output's)


@functools.lru_cache(maxsize=8)
def cached_method(name, weights_dir=None, device=None):
    """`load_method`, kept for the next call with the same arguments (at most 8 networks)."""
    return load_method(name, weights_dir, device)


def to_tensor(img, device):
    """RGB PIL image -> (1, 3, H, W) float32 in [0, 1] on `device`."""
    array = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(device)


def to_image(tensor):
    """(1, 3, H, W) raw output -> RGB PIL image (clamped to [0, 1])."""
    return Image.fromarray(tensor[0].float().clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().cpu().numpy())


def resized_pair(content_image, style_image, size, style_size=STYLE_SIZE):
    """Both images as RGB PIL images: the content with long side `size`, the style with long side
    `style_size` (None: `size`)."""
    return resize_long_side(as_rgb(content_image), size), resize_long_side(as_rgb(style_image), style_size or size)


@torch.inference_mode()
def encode(net, image, cache=None):
    """net's encoder features of an RGB PIL image (five (1, C, h, w) tensors), through `cache`
    (a `FeatureCache`, None: none) keyed by the image's pixels and the encoder's weights."""
    device = next(net.parameters()).device
    with autocast(device):
        return encode_cached(net, to_tensor(image, device), image_key(image), cache)


@torch.inference_mode()
def is_encoded(net, image, cache):
    """Whether `cache` (a `FeatureCache`) holds net's encoder features of the RGB PIL image, as `encode` looks them up."""
    device = next(net.parameters()).device
    with autocast(device):
        return feature_key(net, to_tensor(image, device), image_key(image)) in cache


@torch.inference_mode()
def stylize(content_image, style_image, method, size=512, alpha=1.0, preserve_color=False, weights_dir=None,
            device=None, style_size=STYLE_SIZE, cache=None):
    """Stylise images of any size and mode (PIL images, paths or bytes): the content is resized
    to `size` px on the long side, the style to `style_size` (None: `size`). method: a name from
    METHODS or a network from `load_method`. Returns an RGB PIL image with the content's aspect
    ratio. alpha in [0, 1] is the style strength; preserve_color keeps the content's colours.
    cache: a `FeatureCache` for the encoder features (the same output as without one)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    net = cached_method(method, weights_dir, device) if isinstance(method, str) else method
    content, style = resized_pair(content_image, style_image, size, style_size)
    c, s = encode(net, content, cache), encode(net, style, cache)
    with autocast(next(net.parameters()).device):
        out = to_image(net.stylize_features(c, s, alpha))
    return keep_colors(out, content) if preserve_color else out


def compare(content_image, style_image, methods, size=512, alpha=1.0, preserve_color=False, weights_dir=None,
            device=None, style_size=STYLE_SIZE, cache=None):
    """`stylize` with each of `methods` (names or networks) on the same pair -> list of PIL images.
    Content and style are encoded once for all methods whose encoders hold the same weights
    (through `cache`, or a cache for this call when None)."""
    cache = FeatureCache() if cache is None else cache
    content, style = resized_pair(content_image, style_image, size, style_size)  # once: stylize then keeps them
    return [stylize(content, style, m, size, alpha, preserve_color, weights_dir, device, style_size, cache)
            for m in methods]
