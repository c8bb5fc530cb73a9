"""From PIL images to a stylised PIL image: tensor conversion, cached networks, `stylize`."""
import functools

import numpy as np
import torch
from PIL import Image

from .images import as_rgb, keep_colors, resize_long_side
from .methods import load_method
from .precision import autocast


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


@torch.inference_mode()
def stylize(content_image, style_image, method, size=512, alpha=1.0, preserve_color=False, weights_dir=None, device=None):
    """Stylise images of any size and mode (PIL images, paths or bytes); both are resized to
    `size` px on the long side. method: a name from METHODS or a network from `load_method`.
    Returns an RGB PIL image with the content's aspect ratio. alpha in [0, 1] is the style
    strength; preserve_color keeps the content's colours."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    net = cached_method(method, weights_dir, device) if isinstance(method, str) else method
    device = next(net.parameters()).device
    content = resize_long_side(as_rgb(content_image), size)
    style = resize_long_side(as_rgb(style_image), size)
    with autocast(device):
        out = to_image(net(to_tensor(content, device), to_tensor(style, device), alpha=alpha))
    return keep_colors(out, content) if preserve_color else out
