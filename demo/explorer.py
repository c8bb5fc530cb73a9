"""The Attention explorer tab: click a content position, see where it attends in the style."""
import gradio as gr
import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from model.explain import attention_maps
from model.images import resize_long_side
from model.pipeline import cached_method, to_tensor

from .security import PAGE_EVENT, peer
from .storage import StorageError, png_bytes, served_copy
from .upload import ImageUpload

SIZE = 384  # long side the explorer works at, px
PANELS = (("da", "A2K: distributed attention (weight of each style region)"),
          ("pa", "A2K: progressive attention (inside the matched region)"),
          ("all2all", "All-to-all attention (every style position)"))


def overlay(style, weights):
    """The style image under a heat map of `weights` (h, w) scaled to its maximum."""
    heat = weights.numpy() / max(float(weights.max()), 1e-12)
    rgba = (colormaps["inferno"](heat) * 255).astype(np.uint8)
    heat_img = Image.fromarray(rgba[..., :3]).resize(style.size, Image.NEAREST)
    return Image.blend(style, heat_img, 0.6)


def mark(content, point):
    img = content.copy()
    draw = ImageDraw.Draw(img)
    x, y = point
    r = max(4, max(img.size) // 60)
    draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 40, 40), width=3)
    return img


def click_position(index, image):
    """The clicked (x, y) pixel of `image`, checked: the event can be sent by anyone, not only the page."""
    if not (isinstance(index, (list, tuple)) and len(index) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in index)):
        raise gr.Error("Click a point of the content photo.")
    x, y = index
    width, height = image.size
    if not (0 <= x < width and 0 <= y < height):
        raise gr.Error(f"Click inside the content photo: it is {width}x{height} px.")
    return x, y


def build_explorer_tab(arena, content_input, style_input):
    settings = arena.settings
    gr.Markdown("Click a point of the content photo. The maps show where that position looks in the "
                "painting, at relu4_1 with the training-free pair's keys: A2K (distributed + progressive) "
                "against all-to-all. Uses the images chosen in the Compare tab.")
    with gr.Row():
        content_view = gr.Image(label="Content (click a point)", type="pil", interactive=False, height=360,
                                elem_id="explorer-content")
        # an input of the explorer's event: read as an upload is (size limits), whatever a client sends
        style_view = ImageUpload(label="Style", type="pil", image_mode=None, interactive=False, height=360)
    with gr.Row():
        maps = [gr.Image(label=label, format="png", interactive=False, height=300, elem_id=f"explorer-{key}")
                for key, label in PANELS]
    note = gr.Markdown()

    def at_size(img):
        return None if img is None else resize_long_side(img, SIZE)

    def served(request, *images):
        """The images as PNG files in Gradio's cache (None stays None), written once each and charged to
        the client's write budget."""
        pngs = [None if img is None else png_bytes(img) for img in images]
        try:
            with arena.hold(peer(request), sum(len(data) for data in pngs if data)) as hold:
                return [None if data is None else served_copy(data, maps[0].GRADIO_CACHE, hold) for data in pngs]
        except StorageError as exc:
            raise gr.Error(f"The server cannot show this now: {exc}") from exc

    def show(img, request: gr.Request):
        return served(request, at_size(img))[0]

    clean_content = gr.State(None)  # the view gets a marker drawn on it; attention runs on this copy

    def show_content(img, request: gr.Request):
        img = at_size(img)
        return served(request, img)[0], img

    content_input.change(show_content, content_input, [content_view, clean_content], api_name="explorer_photo",
                         **PAGE_EVENT)
    style_input.change(show, style_input, style_view, api_name="explorer_painting", **PAGE_EVENT)

    def explore(content, style, evt: gr.SelectData, request: gr.Request):
        if content is None or style is None:
            raise gr.Error("Choose a content photo and a style painting in the Compare tab first.")
        x, y = click_position(evt.index, content)
        style = at_size(style)  # the page sends it at SIZE; a direct call could send any size
        content, style = content.convert("RGB"), style.convert("RGB")
        with arena.device_lock:  # the device runs one network at a time, whichever event asks
            net = cached_method("a2k_free", settings.weights_dir, settings.torch_device)
            c, s = (to_tensor(img, settings.torch_device) for img in (content, style))
            result = attention_maps(net, c, s, (x, y))
        cx, cy = result["cell"]
        panels = [overlay(style, result[key]) for key, _ in PANELS]
        return (*served(request, mark(content, (x, y)), *panels),
                f"Position ({x}, {y}) px, cell ({cx}, {cy}) of the relu4_1 grid (8 px cells).")

    content_view.select(explore, [clean_content, style_view], [content_view, *maps, note],
                        api_name="explore", **settings.device_events, **PAGE_EVENT)
