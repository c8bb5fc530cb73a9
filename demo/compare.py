"""The Compare tab: two named methods side by side on the same content and style, and an unblinded vote.

A vote counts once per visitor and comparison: its token is a keyed hash of the visitor, both inputs'
content hashes, the two methods and the settings (`comparison_token`), so pressing Stylise again does
not open a second vote. Any change of an input clears the result on screen and the server refuses a
vote on a result whose inputs are no longer the ones on screen."""
import json

import gradio as gr

from model.images import ImageError
from model.methods import METHODS
from model.metrics import DEFINITIONS
from model.weights import WeightsError
from study.store import StudyError

from .gallery import example_paths
from .limits import VoteLimits
from .security import PAGE_EVENT, peer
from .session import inputs_key, visitor
from .storage import StorageError, served_copy
from .upload import ImageUpload, missing_input, read_input, shrink
from .warmup import pair_paths

DEFAULT_PAIR = ("a2k_free", "all2all_free")
MIN_SIZE = 128
SAME_METHOD = "Both sides ran the same method: choose two different methods to vote."
STALE = "The inputs changed after this result: press Stylise to compare what is on screen, then vote."


def describe(arena, method, result):
    memory = f"{result.peak_mib:,.0f} MiB" if result.peak_mib is not None else "memory not measured"
    run = f"{result.seconds:.2f} s and {memory} for this call"
    return f"**{arena.label(method)}**: " + (f"from the cache (its run: {run})" if result.cached else run)


def alpha_note(arena, methods, alpha):
    """Why a method's alpha < 1 does not move towards the photo, when one of `methods` cannot."""
    cannot = [arena.label(m) for m in dict.fromkeys(methods) if not METHODS[m].reconstructs]
    if alpha >= 1 or not cannot:
        return ""
    return (f"\n\nAlpha blends each method's features with the photo passed through it on its own. "
            f"{' and '.join(cannot)} cannot give the photo back: trained without an identity loss (the paper's "
            "losses have none), its decoder never learnt to, so at alpha 0 it repaints the photo with its own "
            "textures. The other methods reconstruct the photo at alpha 0.")


def comparison_token(arena, who, content, style, methods, settings):
    """The id of one visitor's vote on this comparison (sides do not matter): 64 hex characters."""
    return arena.store.hash_id("comparison", json.dumps([who, content, style, sorted(methods), settings], sort_keys=True))


def vote_buttons(arena, methods, interactive):
    names = {"left": f"{arena.label(methods[0])} is better", "right": f"{arena.label(methods[1])} is better",
             "tie": "Tie", "both_bad": "Both bad"}
    return [gr.Button(value=text, interactive=interactive) for text in names.values()]


def build_compare_tab(arena, session):
    """Lays out the tab inside the current Blocks; returns the content and style inputs."""
    settings = arena.settings
    runnable = arena.runnable()
    limits = VoteLimits(settings.vote_interval_ms, settings.votes_per_minute)
    with gr.Row():
        content = ImageUpload(label="Content photo", type="pil", image_mode=None, height=320, sources=["upload", "clipboard"])
        style = ImageUpload(label="Style painting", type="pil", image_mode=None, height=320, sources=["upload", "clipboard"])
    with gr.Row():
        gr.Examples([[p] for p in example_paths("contents")], inputs=[content], label="Example photos",
                    examples_per_page=12)
        gr.Examples([[p] for p in example_paths("styles")], inputs=[style], label="Example paintings",
                    examples_per_page=12)
    pairs = gr.Dataset(components=[gr.Image(visible=False), gr.Image(visible=False)], samples=pair_paths(),
                       type="index", label="Example pairs (click one to compare at once)", elem_id="compare-pairs")
    with gr.Row():
        left = gr.Dropdown([(arena.label(m), m) for m in runnable], value=DEFAULT_PAIR[0], label="First method")
        right = gr.Dropdown([(arena.label(m), m) for m in runnable], value=DEFAULT_PAIR[1], label="Second method")
    with gr.Row():
        size = gr.Slider(MIN_SIZE, settings.size_cap, value=settings.default_size, step=32,
                         label="Output size (long side, px)")
        alpha = gr.Slider(0, 1, value=1, step=0.05, label="Style strength (alpha)")
        preserve = gr.Checkbox(label="Preserve content colours")
    run = gr.Button("Stylise", variant="primary")
    info = gr.Markdown()
    with gr.Row():
        out_left = gr.Image(label=arena.label(DEFAULT_PAIR[0]), format="png", interactive=False,
                            buttons=["download", "fullscreen"], elem_id="compare-first")
        out_right = gr.Image(label=arena.label(DEFAULT_PAIR[1]), format="png", interactive=False,
                             buttons=["download", "fullscreen"], elem_id="compare-second")
    slider = gr.ImageSlider(label="Drag to compare", format="png", interactive=False)
    with gr.Row():
        buttons = vote_buttons(arena, DEFAULT_PAIR, False)
    vote_info = gr.Markdown()
    with gr.Accordion("Metrics for this comparison", open=False):
        measure = gr.Button("Compute content loss, style loss and SSIM")
        metrics_table = gr.Dataframe(interactive=False, label="Lower losses: closer to the content / the style")
        gr.Markdown(f"Definitions: {DEFINITIONS}. Time and memory are those of the runs above "
                    "(a cached result keeps the numbers of its first run).")
    comparison = gr.State(None)
    inputs = [content, style, left, right, size, alpha, preserve]
    shown = [out_left, out_right, slider, info, comparison, *buttons, vote_info]

    def compare(content_img, style_img, left_method, right_method, size_px, strength, keep_colors, state,
                request: gr.Request):
        """Stream the two results as each is ready; the last update opens the vote. What it stores is
        charged to the client's write budget (reserved before anything is stored)."""
        missing = missing_input(content_img, style_img)
        if missing:
            raise gr.Error(missing)
        for m in (left_method, right_method):
            if m not in runnable:
                raise gr.Error(f"Method {m!r} cannot run here; choose one of {', '.join(runnable)}.")
        if not MIN_SIZE <= size_px <= settings.size_cap:
            raise gr.Error(f"Output size must be between {MIN_SIZE} and {settings.size_cap} px.")
        if not 0 <= strength <= 1:
            raise gr.Error("Style strength must be between 0 and 1.")
        size_px, strength, keep_colors = int(size_px), float(strength), bool(keep_colors)
        methods = [left_method, right_method]
        key = inputs_key(content_img, style_img, *methods, size_px, strength, keep_colors)
        state["compare_inputs"] = key
        pictures = [None, None]  # plain values: API clients get file paths (labels follow the dropdowns)
        try:
            shrunk = [shrink(image, settings.size_cap) for image in (content_img, style_img)]
            with arena.hold_for(peer(request), shrunk, size_px, len(methods)) as hold:
                content_sha, style_sha = (arena.images.put(image, hold) for image in shrunk)
                results, images = [], []
                for i, m in enumerate(methods):
                    stored = [n for n in methods[i:] if arena.stored(content_sha, style_sha, n, size_px, strength, keep_colors)]
                    yield (*pictures, None, arena.progress_text(methods[i:], size_px, content_sha, style_sha, stored) + "…", None,
                           *vote_buttons(arena, methods, False), "")
                    results.append(arena.stylize(content_sha, style_sha, m, size_px, strength, keep_colors, hold))
                    images.append(served_copy(arena.images.data(results[-1].sha256), out_left.GRADIO_CACHE, hold))
                    pictures[i] = images[-1]
        except (ImageError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc
        except (WeightsError, StorageError) as exc:
            raise gr.Error(f"The server cannot run this now: {exc}") from exc
        result = {
            "key": key, "content": content_sha, "style": style_sha, "methods": methods,
            "outputs": [r.sha256 for r in results], "costs": [(r.seconds, r.peak_mib) for r in results],
            "settings": {"size": size_px, "alpha": strength, "preserve_color": keep_colors,
                         "device": settings.torch_device.type},
        }
        text = " · ".join(describe(arena, m, r) for m, r in zip(methods, results)) + alpha_note(arena, methods, strength)
        if state.get("compare_inputs") != key:
            prompt, open_vote = STALE, False
        elif left_method == right_method:
            prompt, open_vote = SAME_METHOD, False
        else:
            prompt, open_vote = "Which result is better?", True
        yield (*pictures, tuple(images), text, result, *vote_buttons(arena, methods, open_vote), prompt)

    def compare_example(index, left_method, right_method, size_px, strength, keep_colors, state, request: gr.Request):
        """An example pair: load it into the inputs and compare it with the current settings."""
        paths = pair_paths()[index]
        content_img, style_img = (read_input(p) for p in paths)
        for update in compare(content_img, style_img, left_method, right_method, size_px, strength, keep_colors,
                              state, request):
            yield (*paths, *update)
            paths = (gr.skip(), gr.skip())  # set once: every update of an input is a change event

    def clear_if_changed(content_img, style_img, left_method, right_method, size_px, strength, keep_colors, state):
        """Any input change: the result on screen no longer matches, so it goes (and with it the vote). Inputs
        equal to those of the comparison running or shown are its own inputs arriving (an example pair)."""
        key = inputs_key(content_img, style_img, left_method, right_method, int(size_px or 0), float(strength or 0),
                         bool(keep_colors))
        if state.get("compare_inputs") == key:
            return [gr.skip()] * len(shown)
        state["compare_inputs"] = key
        methods = (left_method, right_method) if {left_method, right_method} <= set(runnable) else DEFAULT_PAIR
        return (gr.Image(value=None, label=arena.label(methods[0])), gr.Image(value=None, label=arena.label(methods[1])),
                None, "", None, *vote_buttons(arena, methods, False), "")

    def vote(choice, result, state, address):
        if not result:
            raise gr.Error("Run a comparison before voting.")
        if result["key"] != state.get("compare_inputs"):
            raise gr.Error(STALE)
        if result["methods"][0] == result["methods"][1]:
            raise gr.Error(SAME_METHOD)
        who = visitor(state)
        refused = limits.check(who, address)
        if refused:
            raise gr.Error(refused)
        token = comparison_token(arena, who, result["content"], result["style"], result["methods"], result["settings"])
        try:
            arena.store.record_comparison(
                token, result["content"], result["style"], *result["methods"], *result["outputs"], choice,
                result["settings"],
            )
        except StudyError as exc:
            raise gr.Error(str(exc)) from exc
        said = {"left": f"{arena.label(result['methods'][0])} is better",
                "right": f"{arena.label(result['methods'][1])} is better", "tie": "tie", "both_bad": "both bad"}
        return (*vote_buttons(arena, result["methods"], False),
                f"Recorded: {said[choice]}. Thank you! Change the photo, painting, methods or settings to vote again.")

    def metrics(result):
        if not result:
            raise gr.Error("Run a comparison first.")
        labels = [f"{which}: {arena.label(m)}" for which, m in zip(("first", "second"), result["methods"])]
        try:
            table = arena.metrics(result["content"], result["style"], dict(zip(labels, result["outputs"])))
        except StorageError as exc:
            raise gr.Error(f"The server cannot run this now: {exc}") from exc
        table["seconds"] = [round(seconds, 3) for seconds, _ in result["costs"]]
        table["call_mib"] = [None if peak is None else round(peak) for _, peak in result["costs"]]
        return table.round(4)

    device = settings.device_events
    measure.click(metrics, [comparison], [metrics_table], api_name="metrics", **device)
    run.click(compare, [*inputs, session], shown, api_name="stylize", **device)
    pairs.click(compare_example, [pairs, left, right, size, alpha, preserve, session], [content, style, *shown],
                api_name="compare_example", **device, **PAGE_EVENT)
    gr.on([component.change for component in inputs], clear_if_changed, [*inputs, session], shown,
          api_name="compare_inputs_changed", show_progress="hidden", trigger_mode="always_last", **PAGE_EVENT)
    for choice, button in zip(("left", "right", "tie", "both_bad"), buttons):
        def handler(result, state, request: gr.Request, choice=choice):
            return vote(choice, result, state, peer(request))
        button.click(handler, [comparison, session], [*buttons, vote_info], api_name=f"vote_{choice}")
    return content, style
