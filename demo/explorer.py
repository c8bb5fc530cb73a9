"""The Attention explorer tab: click a point of the photo, see where it attends in the painting.

The photo and painting are the last ones chosen in the Battle or the Compare tab, and an example pair
before either. Each map is a heat map over the greyed painting on a log scale (DECADES decades below its
peak), with a colour legend, so that a sharp all-to-all peak and A2K's spread both show."""
import gradio as gr
import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageEnhance

from model.explain import attention_maps
from model.images import resize_long_side
from model.pipeline import cached_method, to_tensor

from .security import PAGE_EVENT, peer
from .storage import StorageError, png_bytes, served_copy
from .upload import ImageUpload, read_input
from .warmup import pair_paths

SIZE = 384  # long side the explorer works at, px
PANELS = (("da", "A2K 1: regions"), ("pa", "A2K 2: inside the best region"), ("all2all", "All-to-all"))
COLORMAP = "inferno"
DECADES = 3  # the colour scale spans 1/1000 of a map's peak (transparent) to the peak (opaque yellow)
RING_SHARE, RING_CELLS = 0.9, 8  # a map with 90% of its weight on 8 cells or fewer gets a ring around each
RING_COLOUR = (0, 230, 255)
CAPTION = ("Click a point of the photo. Each map shows where that point of the photo looks in the painting: "
           "the brighter the colour, the more of its attention goes there (grey: almost none). A2K first weighs "
           "regions of the painting (map 1), then looks inside the one that matches best (map 2); all-to-all looks "
           "at every position of the painting at once (map 3). The maps use the last photo and painting chosen in "
           "the Battle or Compare tab.")
MISSED = "That click was beside the photo: click on the photo itself."
# mirrors the position Gradio's Image computes for a click (the image is centred and never enlarged):
# a click in the margin around the photo sends no event, so the page says why nothing happened
MISSED_JS = """
document.addEventListener('click', (event) => {
  const view = document.getElementById('explorer-content');
  const img = view && view.contains(event.target) ? view.querySelector('img') : null;
  if (!img || !img.naturalWidth) return;
  const r = img.getBoundingClientRect();
  const k = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight, 1);
  const x = (event.clientX - r.left - (r.width - img.naturalWidth * k) / 2) / k;
  const y = (event.clientY - r.top - (r.height - img.naturalHeight * k) / 2) / k;
  const missed = x < 0 || y < 0 || x >= img.naturalWidth || y >= img.naturalHeight;
  element.textContent = missed ? MESSAGE : '';
}, true);
"""


def heat(weights):
    """(h, w) weights -> (h, w) values in [0, 1]: log10(weight / peak) over DECADES decades, 0 at or below
    the peak / 10^DECADES."""
    w = weights.numpy().astype(np.float64)
    relative = np.maximum(w / max(w.max(), 1e-30), 10.0 ** -DECADES)
    return 1 + np.log10(relative) / DECADES


def peaks(weights):
    """The (column, row) cells of `weights` (h, w) that hold RING_SHARE of its weight, if RING_CELLS or fewer
    do (a sharp map), else []."""
    w = weights.numpy().ravel()
    order = np.argsort(w)[::-1][:RING_CELLS]
    if w[order].sum() < RING_SHARE * w.sum():
        return []
    needed = int(np.searchsorted(np.cumsum(w[order]), RING_SHARE * w.sum())) + 1
    return [(int(i) % weights.shape[1], int(i) // weights.shape[1]) for i in order[:needed]]


def overlay(style, weights):
    """The painting, greyed and dimmed, under the heat map of `weights` (h, w): colour and opacity grow
    with the heat; cells stay square (nearest-neighbour scaling); a ring around each of the `peaks`, which
    are too small to find otherwise."""
    value = heat(weights)
    rgba = colormaps[COLORMAP](value)
    rgba[..., 3] = value
    heat_img = Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA").resize(style.size, Image.NEAREST)
    grey = ImageEnhance.Brightness(style.convert("L").convert("RGB")).enhance(0.5).convert("RGBA")
    img = Image.alpha_composite(grey, heat_img).convert("RGB")
    draw = ImageDraw.Draw(img)
    cell_w, cell_h = style.width / weights.shape[1], style.height / weights.shape[0]
    r = max(12, max(style.size) // 20)
    for col, row in peaks(weights):
        x, y = (col + 0.5) * cell_w, (row + 0.5) * cell_h
        draw.ellipse((x - r, y - r, x + r, y + r), outline=RING_COLOUR, width=3)
    return img


def legend_html():
    """The colour scale of the maps: a gradient from 1/10^DECADES of the peak to the peak, labelled."""
    stops = ", ".join(f"rgba({r * 255:.0f}, {g * 255:.0f}, {b * 255:.0f}, {v:.2f}) {v * 100:.0f}%"
                      for v in np.linspace(0, 1, 9) for r, g, b, _ in [colormaps[COLORMAP](v)])
    labels = "".join(f"<span>{'peak' if d == 0 else f'1/{10 ** d:,}'}</span>" for d in range(DECADES, -1, -1))
    return (f"<div style='max-width: 480px'><div style='height: 14px; border: 1px solid #888; "
            f"background: linear-gradient(to right, {stops}), #444'></div>"
            f"<div style='display: flex; justify-content: space-between; font-size: 0.85em'>{labels}</div>"
            "<div style='font-size: 0.85em'>Share of the point's attention, relative to the map's brightest cell "
            "(log scale; one cell: 8 x 8 px of the painting at 384 px). <span style='color: rgb"
            f"{RING_COLOUR}; font-weight: bold'>Rings</span>: when {RING_SHARE:.0%} of the attention lies on "
            f"{RING_CELLS} cells or fewer, a ring around each of them.</div></div>")


def spread(weights):
    """How many of the map's cells hold half its weight, in words."""
    w = np.sort(weights.numpy().ravel())[::-1]
    half = int(np.searchsorted(np.cumsum(w), 0.5 * w.sum())) + 1
    return f"half of the attention on {half} of {w.size} cells"


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


def at_size(img):
    return None if img is None else resize_long_side(img, SIZE)


def build_explorer_tab(arena, sources):
    """Lays out the tab; sources: the (photo, painting) inputs of the tabs it follows (Compare's first)."""
    settings = arena.settings
    example = [at_size(read_input(path)) for path in pair_paths()[0]]  # shown until a tab chooses images
    gr.Markdown(CAPTION)
    with gr.Row():
        content_view = gr.Image(example[0], label="Photo (click a point)", type="pil", format="png",
                                interactive=False, height=360, elem_id="explorer-content")
        # an input of the explorer's event: read as an upload is (size limits), whatever a client sends
        style_view = ImageUpload(example[1], label="Painting", type="pil", format="png", image_mode=None,
                                 interactive=False, height=360, elem_id="explorer-painting")
    gr.HTML(None, js_on_load=f"const MESSAGE = {MISSED!r};{MISSED_JS}", elem_id="explorer-missed")
    gr.HTML(legend_html(), js_on_load=None, elem_id="explorer-legend")
    with gr.Row():
        maps = [gr.Image(label=label, format="png", interactive=False, height=360, min_width=320,
                         elem_id=f"explorer-{key}") for key, label in PANELS]
    note = gr.Markdown(elem_id="explorer-note")

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

    for i, (content_input, style_input) in enumerate(sources):
        suffix = "" if i == 0 else f"_{i + 1}"
        content_input.change(show_content, content_input, [content_view, clean_content],
                             api_name=f"explorer_photo{suffix}", **PAGE_EVENT)
        style_input.change(show, style_input, style_view, api_name=f"explorer_painting{suffix}", **PAGE_EVENT)

    def explore(content, style, evt: gr.SelectData, request: gr.Request):
        if style is None:
            raise gr.Error("Choose a painting in the Battle or Compare tab first.")
        content = example[0] if content is None else content  # the example the view shows until a tab chooses
        x, y = click_position(evt.index, content)
        style = at_size(style)  # the page sends it at SIZE; a direct call could send any size
        content, style = content.convert("RGB"), style.convert("RGB")
        with arena.device_lock:  # the device runs one network at a time, whichever event asks
            net = cached_method("a2k_free", settings.weights_dir, settings.torch_device)
            c, s = (to_tensor(img, settings.torch_device) for img in (content, style))
            result = attention_maps(net, c, s, (x, y))
        cx, cy = result["cell"]
        panels = [overlay(style, result[key]) for key, _ in PANELS]
        words = "; ".join(f"{name}: {spread(result[key])}" for key, name in
                          (("da", "A2K's regions"), ("pa", "A2K inside its region"), ("all2all", "all-to-all")))
        return (*served(request, mark(content, (x, y)), *panels),
                f"Position ({x}, {y}) px, cell ({cx}, {cy}) of the relu4_1 grid (8 px cells). {words}.")

    content_view.select(explore, [clean_content, style_view], [content_view, *maps, note],
                        api_name="explore", **settings.device_events, **PAGE_EVENT)
