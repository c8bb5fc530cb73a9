"""An image input that checks uploads itself, so that every bad file gets a clear message."""
from pathlib import Path

import gradio as gr

from model.images import ImageError, as_rgb, open_image, resize_long_side


class ImageUpload(gr.Image):
    """gr.Image (create it with type="pil") whose value is an RGB PIL image read by
    `model.images.open_image` (EXIF applied, transparency flattened, size limits): a file that is
    not a usable image raises gr.Error saying what to do, not Gradio's generic preprocessing error."""

    is_template = True  # rendered in the browser as the plain Image component

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.path is None:  # pasted as a data URL: Gradio decodes it
            return as_rgb(super().preprocess(payload))
        try:
            return open_image(Path(payload.path).read_bytes())
        except ImageError as exc:
            raise gr.Error(f"{self.label}: {exc}") from exc


def shrink(image, size_cap):
    """Inputs larger than the size cap are stored downscaled: nothing bigger is ever processed."""
    return resize_long_side(image, size_cap) if max(image.size) > size_cap else image


def read_input(path):
    """The image an ImageUpload delivers for this file (for the example pairs)."""
    return open_image(Path(path).read_bytes())


def missing_input(content, style):
    """What a visitor who pressed a button without both images is told (None when both are there); an
    example picked a moment ago may still be on its way to the server."""
    missing = [what for what, image in (("a content photo", content), ("a style painting", style)) if image is None]
    if not missing:
        return None
    one = len(missing) == 1
    return (f"Add {' and '.join(missing)} first: upload {'one' if one else 'them'} or pick "
            f"{'an example' if one else 'examples'} (a picked example takes a moment to arrive).")
