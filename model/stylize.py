"""Stylise PIL images with any method, and the batch command line:

    python -m model.stylize --content FILE_OR_DIR --style FILE_OR_DIR --method NAME [--method NAME ...]
                            [--size 512] [--alpha 1.0] [--preserve-color] [--weights-dir DIR] --out DIR

Outputs are named CONTENT__STYLE__METHOD.png; pairs whose output exists are skipped (resumable)."""
import argparse
import functools
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .images import ImageError, as_rgb, keep_colors, open_image, resize_long_side
from .methods import METHODS, load_method
from .precision import autocast
from .weights import WeightsError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


@functools.lru_cache(maxsize=8)
def cached_method(name, weights_dir=None, device=None):
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


def image_files(path):
    """A file -> [it]; a folder -> its image files, sorted."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"{path} is neither an image file nor a folder")


def output_name(content, style, method):
    return f"{Path(content).stem}__{Path(style).stem}__{method}.png"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.stylize", description="Stylise every content x style x method.")
    parser.add_argument("--content", required=True, help="an image or a folder of images")
    parser.add_argument("--style", required=True, help="an image or a folder of images")
    parser.add_argument("--method", action="append", required=True, choices=list(METHODS), help="repeat for several")
    parser.add_argument("--size", type=int, default=512, help="long side in pixels (default 512)")
    parser.add_argument("--alpha", type=float, default=1.0, help="style strength in [0, 1]")
    parser.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
    parser.add_argument("--weights-dir", help="folder with official checkpoints (see python -m model.weights list)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        contents, styles = image_files(args.content), image_files(args.style)
        nets = {m: load_method(m, args.weights_dir, args.device) for m in args.method}
    except (FileNotFoundError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(c, s, m) for c in contents for s in styles for m in args.method]
    unreadable = {}  # path -> why

    def read(path):
        if path not in unreadable:
            try:
                return open_image(path)
            except ImageError as exc:
                unreadable[path] = exc
                tqdm.write(f"skipping {path}: {exc}")
        return None

    done = skipped = failed = 0
    for content, style, method in tqdm(jobs, desc="stylising", unit="image"):
        target = args.out / output_name(content, style, method)
        if target.exists():
            skipped += 1
            continue
        content_img, style_img = read(content), read(style)
        if content_img is None or style_img is None:
            continue
        try:
            image = stylize(content_img, style_img, nets[method], args.size, args.alpha, args.preserve_color)
        except ImageError as exc:  # readable, but unusable at this size (too elongated)
            tqdm.write(f"skipping {content.name} x {style.name}: {exc}")
            failed += 1
            continue
        partial = target.with_suffix(".part.png")
        image.save(partial)
        partial.replace(target)
        done += 1
    print(f"{done} written, {skipped} already there, {len(unreadable)} unreadable file(s) and {failed} unusable "
          f"pair(s) skipped; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
