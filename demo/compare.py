"""The Compare tab: two methods side by side on the same content and style, and an unblinded vote."""
import gradio as gr

from model.images import ImageError, resize_long_side
from model.metrics import DEFINITIONS
from model.weights import WeightsError
from study.store import StudyError

from .choices import CHOICE_LABELS
from .gallery import example_paths
from .storage import StorageError, served_copy
from .upload import ImageUpload

DEFAULT_PAIR = ("a2k_free", "all2all_free")
MIN_SIZE = 128


def missing_methods_markdown(arena):
    lines = [
        f"- **{s.label}** (`{s.name}`): put " + "; ".join(f"`{wf.path}` ({wf.source})" for wf in s.missing)
        for s in arena.status.values() if not s.available
    ]
    if not lines:
        return ""
    where = arena.settings.weights_dir or "a folder given with --weights-dir"
    return f"Other methods need files you download once, into {where}:\n" + "\n".join(lines)


def shrink(image, size_cap):
    """Inputs larger than the size cap are stored downscaled: nothing bigger is ever processed."""
    return resize_long_side(image, size_cap) if max(image.size) > size_cap else image


def describe(arena, method, result):
    memory = f"{result.peak_mib:,.0f} MiB peak" if result.peak_mib is not None else "peak memory not measured"
    where = "cached" if result.cached else f"{result.seconds:.2f} s"
    return f"**{arena.label(method)}**: {where}, {memory}"


def build_compare_tab(arena):
    """Lays out the tab inside the current Blocks; returns the content and style inputs."""
    settings = arena.settings
    runnable = arena.runnable()
    with gr.Row():
        content = ImageUpload(label="Content photo", type="pil", image_mode=None, height=320, sources=["upload", "clipboard"])
        style = ImageUpload(label="Style painting", type="pil", image_mode=None, height=320, sources=["upload", "clipboard"])
    with gr.Row():
        gr.Examples([[p] for p in example_paths("contents")], inputs=[content], label="Example photos",
                    examples_per_page=12)
        gr.Examples([[p] for p in example_paths("styles")], inputs=[style], label="Example paintings",
                    examples_per_page=12)
    with gr.Row():
        left = gr.Dropdown([(arena.label(m), m) for m in runnable], value=DEFAULT_PAIR[0], label="Left method")
        right = gr.Dropdown([(arena.label(m), m) for m in runnable], value=DEFAULT_PAIR[1], label="Right method")
    with gr.Row():
        size = gr.Slider(MIN_SIZE, settings.size_cap, value=settings.default_size, step=32,
                         label="Output size (long side, px)")
        alpha = gr.Slider(0, 1, value=1, step=0.05, label="Style strength (alpha)")
        preserve = gr.Checkbox(label="Preserve content colours")
    run = gr.Button("Stylise", variant="primary")
    info = gr.Markdown()
    with gr.Row():
        out_left = gr.Image(label="Left", format="png", interactive=False, buttons=["download", "fullscreen"])
        out_right = gr.Image(label="Right", format="png", interactive=False, buttons=["download", "fullscreen"])
    slider = gr.ImageSlider(label="Left | right (drag to compare)", format="png", interactive=False)
    with gr.Row():
        buttons = [gr.Button(text, interactive=False) for text in CHOICE_LABELS.values()]
    vote_info = gr.Markdown()
    with gr.Accordion("Metrics for this comparison", open=False):
        measure = gr.Button("Compute content loss, style loss and SSIM")
        metrics_table = gr.Dataframe(interactive=False, label="Lower losses: closer to the content / the style")
        gr.Markdown(f"Definitions: {DEFINITIONS}. Time and peak memory are those of the run above "
                    "(a cached result keeps the numbers of its first run).")
    comparison = gr.State(None)
    missing = missing_methods_markdown(arena)
    if missing:
        gr.Markdown(missing)

    def compare(content_img, style_img, left_method, right_method, size_px, strength, keep_colors,
                progress=gr.Progress()):
        if content_img is None or style_img is None:
            raise gr.Error("Upload a content photo and a style painting first (or pick two examples).")
        for m in (left_method, right_method):
            if m not in runnable:
                raise gr.Error(f"Method {m!r} cannot run here; choose one of {', '.join(runnable)}.")
        if not MIN_SIZE <= size_px <= settings.size_cap:
            raise gr.Error(f"Output size must be between {MIN_SIZE} and {settings.size_cap} px.")
        if not 0 <= strength <= 1:
            raise gr.Error("Style strength must be between 0 and 1.")
        size_px, strength, keep_colors = int(size_px), float(strength), bool(keep_colors)
        try:
            content_sha = arena.images.put(shrink(content_img, settings.size_cap))
            style_sha = arena.images.put(shrink(style_img, settings.size_cap))
            results = []
            for i, m in enumerate((left_method, right_method)):
                progress(i / 2, desc=arena.progress_text((left_method, right_method)[i:], size_px))
                results.append(arena.stylize(content_sha, style_sha, m, size_px, strength, keep_colors))
            images = [served_copy(arena.images.path(r.sha256).read_bytes(), out_left.GRADIO_CACHE) for r in results]
        except (ImageError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc
        except (WeightsError, StorageError) as exc:
            raise gr.Error(f"The server cannot run this now: {exc}") from exc
        state = {
            "token": arena.new_token(), "content": content_sha, "style": style_sha,
            "methods": [left_method, right_method], "outputs": [r.sha256 for r in results],
            "costs": [(r.seconds, r.peak_mib) for r in results],
            "settings": {"size": size_px, "alpha": strength, "preserve_color": keep_colors,
                         "device": settings.torch_device.type},
        }
        text = " · ".join(describe(arena, m, r) for m, r in zip((left_method, right_method), results))
        enabled = [gr.Button(interactive=True) for _ in buttons]
        return (images[0], images[1], tuple(images), text, state, *enabled, "Which result is better?")

    def vote(choice, state):
        if not state:
            raise gr.Error("Run a comparison before voting.")
        try:
            arena.store.record_comparison(
                state["token"], state["content"], state["style"], *state["methods"], *state["outputs"],
                choice, state["settings"],
            )
        except StudyError as exc:
            raise gr.Error(str(exc)) from exc
        disabled = [gr.Button(interactive=False) for _ in buttons]
        return (*disabled, f"Recorded: {CHOICE_LABELS[choice].lower()}. Thank you! Run another comparison to vote again.")

    def metrics(state):
        if not state:
            raise gr.Error("Run a comparison first.")
        labels = [f"{side}: {arena.label(m)}" for side, m in zip(("left", "right"), state["methods"])]
        table = arena.metrics(state["content"], state["style"], dict(zip(labels, state["outputs"])))
        table["seconds"] = [round(seconds, 3) for seconds, _ in state["costs"]]
        table["peak_mib"] = [None if peak is None else round(peak) for _, peak in state["costs"]]
        return table.round(4)

    measure.click(metrics, [comparison], [metrics_table], api_name="metrics",
                  concurrency_id="device", concurrency_limit=settings.max_jobs)
    run.click(compare, [content, style, left, right, size, alpha, preserve],
              [out_left, out_right, slider, info, comparison, *buttons, vote_info],
              api_name="stylize", concurrency_id="device", concurrency_limit=settings.max_jobs)
    for choice, button in zip(CHOICE_LABELS, buttons):
        button.click(lambda state, c=choice: vote(c, state), [comparison], [*buttons, vote_info],
                     api_name=f"vote_{choice}")
    return content, style
