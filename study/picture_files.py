"""The study's pictures as browsers get them: one format for the outputs, the catch images and the
reference pictures, and where the references are kept.

Format: lossy WebP at QUALITY, RGB, in WebP's simple layout (RIFF 'WEBP' holding one 'VP8 ' chunk),
which has no room for metadata, so a file in that layout is served byte for byte. Measured on the
sample study's 24 outputs (512 x 288-385 px; mean SSIM of luma, PSNR of RGB, against the PNG):
JPEG q85 52 kB, 0.979, 32.7 dB; JPEG q90 63 kB, 0.986, 33.8 dB; WebP q85 45 kB, 0.980, 33.8 dB;
WebP q90 57 kB, 0.988, 34.8 dB (the PNG: 325 kB). WebP q90 is the lightest of these at SSIM
>= 0.98 for every image (min 0.976): two of them take 2.3 s at 400 kbit/s, within a trial's look.
Catch images are encoded by the same call as the real outputs, from the same lossless renders.
References: `<images_dir>/references/<sha256 of the original file>.webp`, shorter side REFERENCE_SIDE, at
REFERENCE_QUALITY (libwebp's default): they are context, not judged, and shown smaller than the pair (104 CSS px
wide on a phone, at most about 270 on a wide screen). Measured on the sample study's 7 references: WebP q90
195 kB, mean SSIM of luma 0.989; q80 129 kB, 0.974; q75 107 kB, 0.965 (min 0.946). Every new reference a trial
brings is fetched while the previous trial is looked at, so at 400 kbit/s the 88 kB saved are 1.8 s of the
early trials, which bring most of them."""
import io
import os
import tempfile
from pathlib import Path

from PIL import Image

SUFFIX = ".webp"
MEDIA_TYPE = "image/webp"
QUALITY = 90
REFERENCE_QUALITY = 75
REFERENCE_SIDE = 256  # px, shorter side of a content photo or style painting shown beside the outputs
REFERENCES = "references"


def encode(image, quality=QUALITY):
    """The PIL image in the served format at WebP `quality`: bytes."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "WEBP", quality=quality, method=6)
    return buf.getvalue()


def save(image, target, quality=QUALITY):
    """Write the PIL image to `target` in the served format at WebP `quality`, through a temporary file and a
    rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(encode(image, quality))
    os.replace(partial, target)


def is_served_form(path):
    """True when the file at `path` is a WebP in the simple lossy layout (so it holds no metadata)."""
    with open(path, "rb") as f:
        head = f.read(20)
    size = os.path.getsize(path)
    if len(head) < 20 or head[:4] != b"RIFF" or head[8:16] != b"WEBPVP8 ":
        return False
    chunk = int.from_bytes(head[16:20], "little")
    return int.from_bytes(head[4:8], "little") == size - 8 and 20 + chunk + chunk % 2 == size


def reference_image(path):
    """The picture at `path` as RGB, shrunk so that its shorter side is at most REFERENCE_SIDE."""
    with Image.open(path) as image:
        image = image.convert("RGB")
    scale = REFERENCE_SIDE / min(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    return image


def reference_path(images_dir, sha256):
    """Where a study keeps the reference picture of the content or style file with this sha256."""
    return Path(images_dir) / REFERENCES / f"{sha256}{SUFFIX}"
