"""Reading user images safely into RGB PIL images (no torch here: the demo and study use it too)."""
import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000
MIN_SIDE = 32


class ImageError(ValueError):
    """The input is not a usable image; the message says why and what to do."""


def open_image(source, max_pixels=MAX_PIXELS):
    """A path, bytes or file object -> RGB PIL image, EXIF orientation applied, transparency
    flattened on white, first frame of an animation; ImageError for anything unusable."""
    name = str(source) if isinstance(source, (str, Path)) else "the upload"
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        img = Image.open(source)
    except FileNotFoundError as exc:
        raise ImageError(f"{name} does not exist.") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"{name} is not an image PIL can read (JPEG, PNG, WebP, ...): upload a photo or painting.") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name} is too large: {exc}") from exc
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is {width}x{height} = {width * height / 1e6:.0f} megapixels; the limit is "
            f"{max_pixels / 1e6:.0f}. Downscale it first."
        )
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        return flatten(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name} is damaged or truncated ({exc}); save it again and re-upload.") from exc


def as_rgb(image):
    """A PIL image (any mode, EXIF orientation applied, transparency flattened) or what
    `open_image` takes -> RGB PIL image."""
    if isinstance(image, Image.Image):
        return flatten(ImageOps.exif_transpose(image))
    return open_image(image)


def flatten(img):
    """Any PIL mode -> RGB: palette and grey expanded, 16-bit scaled, CMYK converted, alpha over white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 257).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_long_side(img, size):
    """Resize (bicubic) so the longer side is `size`, keeping the aspect ratio; ImageError if the
    shorter side would drop below MIN_SIDE pixels."""
    width, height = img.size
    scale = size / max(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    if min(new) < MIN_SIDE:
        raise ImageError(
            f"the image is {width}x{height}: at {size} px on the long side its short side is {min(new)} px, "
            f"under {MIN_SIDE}. Use a less elongated image or a larger size."
        )
    return img if new == img.size else img.resize(new, Image.BICUBIC)


def keep_colors(output, content):
    """The output's luminance with the content's chrominance (YCbCr), at the output's size."""
    y, _, _ = output.convert("YCbCr").split()
    _, cb, cr = content.resize(output.size, Image.BICUBIC).convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
