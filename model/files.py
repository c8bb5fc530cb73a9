"""File names and listings shared by the model's command lines and study/ (no torch here)."""
import hashlib
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def image_files(path):
    """A file -> [it]; a folder -> its image files (by suffix), sorted. FileNotFoundError for a
    missing path or a folder without images."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise FileNotFoundError(f"{path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return found
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"{path} is neither an image file nor a folder")


def output_name(content, style, method):
    """The file name of `method`'s output for a content and a style: CONTENT__STYLE__METHOD.png."""
    return f"{Path(content).stem}__{Path(style).stem}__{method}.png"


def sha256_file(path):
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
