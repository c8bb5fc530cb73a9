"""The Battle tab: two anonymous models stylise the visitor's photo and painting, the visitor votes
once, then the names are revealed.

The server picks the pair (StyA2K-family against an all-to-all baseline with probability CROSS, else any
two different runnable methods, never a pair this visitor has voted on for these images) and the sides.
Until the vote the browser gets only "Model A" and "Model B": the names and the pair stay in the
session's server-side state, and the images are served as <HMAC(process key, battle id, side)>/image.png
(bare PNG pixels; no name or content hash that another tab also serves), each with invisible noise of its
own (`disguised`), so that its bytes match no stored result, no Compare output and no other battle's
picture. The store keeps one vote per visitor, content, style and method pair, with its network address's
pseudonym of the day (demo.pseudonyms), under the study's rate limits (demo.limits); the leaderboard
decides which votes count (study.counting)."""
import hashlib
import hmac
import io
import itertools
import random
import secrets
import time

import gradio as gr
import numpy as np
from PIL import Image

from model.images import ImageError
from model.methods import METHODS
from model.weights import WeightsError
from study.store import StudyError

from .choices import BATTLE_LABELS
from .gallery import example_paths
from .limits import VoteLimits
from .pseudonyms import DailyPseudonyms
from .security import PAGE_EVENT, peer
from .session import inputs_key, visitor
from .storage import StorageError, served_copy
from .upload import ImageUpload, missing_input, read_input, shrink
from .warmup import DEFAULTS, pair_paths

CROSS = 0.75  # probability of an A2K-against-all-to-all pair when one is left to vote on
SIDES = ("A", "B")
STALE = "The photo or painting changed after this battle: start a new battle to vote."


def pick_pair(runnable, voted, rng):
    """Two different methods in random order, or None when the visitor has voted on every pair."""
    pairs = [p for p in itertools.combinations(sorted(runnable), 2) if p not in voted]
    if not pairs:
        return None
    cross = [p for p in pairs if {METHODS[p[0]].attention, METHODS[p[1]].attention} == {"a2k", "all2all"}]
    pair = list(rng.choice(cross if cross and rng.random() < CROSS else pairs))
    rng.shuffle(pair)
    return pair


def disguised(data):
    """The PNG image `data` (bytes) with each channel of each pixel moved by -1, 0 or +1 at random (invisible:
    about 50 dB PSNR), as PNG bytes (zlib level 1: about 40 ms and 1.2 times the stored size at 512 px).
    A table of hashes learnt from earlier reveals, or a Compare run on the same inputs, names no battle
    picture by its bytes (nearest-picture matching still would: the leaderboard's counting is the answer)."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    pixels += np.random.default_rng().integers(-1, 2, pixels.shape, dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def build_battle_tab(arena, session):
    """Lays out the tab inside the current Blocks and wires its events; returns its (photo, painting) inputs."""
    settings = arena.settings
    runnable = arena.runnable()
    limits = VoteLimits(settings.vote_interval_ms, settings.votes_per_minute)
    sources = DailyPseudonyms()
    key = secrets.token_bytes(32)  # names the served images; a restart makes new names
    rng = random.SystemRandom()
    size = settings.default_size
    gr.Markdown("Two anonymous models paint your photo in the style of your painting. Vote for the better "
                "picture; the names appear after your vote. Each vote feeds the Leaderboard (votes on two example "
                "pictures are not counted there: use your own photo or painting).")
    with gr.Row():
        content = ImageUpload(label="Your photo", type="pil", image_mode=None, height=280, sources=["upload", "clipboard"])
        style = ImageUpload(label="Your painting", type="pil", image_mode=None, height=280, sources=["upload", "clipboard"])
    pairs = gr.Dataset(components=[gr.Image(visible=False), gr.Image(visible=False)], samples=pair_paths(),
                       type="index", label="Example pairs (click one to start a battle)", elem_id="battle-pairs")
    with gr.Accordion("More example photos and paintings", open=False):
        with gr.Row():
            gr.Examples([[p] for p in example_paths("contents")], inputs=[content], label="Photos", examples_per_page=12)
            gr.Examples([[p] for p in example_paths("styles")], inputs=[style], label="Paintings", examples_per_page=12)
    start = gr.Button("Start battle", variant="primary")
    status = gr.Markdown(elem_id="battle-status")
    with gr.Row(elem_id="battle-results"):
        images = [gr.Image(label=f"Model {side}", format="png", interactive=False, height=360,
                           buttons=["fullscreen"], elem_id=f"battle-{side.lower()}") for side in SIDES]
    with gr.Row():
        buttons = [gr.Button(text, interactive=False, variant="primary" if c in ("left", "right") else "secondary")
                   for c, text in BATTLE_LABELS.items()]
    reveal = gr.Markdown(elem_id="battle-reveal")
    battle = gr.State(None)  # server-side: the battle on screen, its methods and outputs
    shown = [*images, status, reveal, battle, *buttons]

    def screen(pictures=(None, None), text="", revealed="", state=None, open_vote=False, names=None):
        """Every output; pictures None: keep those on screen; names: the methods, once revealed."""
        if pictures is None:
            shown_images = [gr.Image(label=f"Model {side}: {name}") for side, name in zip(SIDES, names)]
        else:
            shown_images = [gr.Image(value=p, label=f"Model {side}") for p, side in zip(pictures, SIDES)]
        return (*shown_images, text, revealed, state, *(gr.Button(interactive=open_vote) for _ in buttons))

    def fight(content_img, style_img, state, request: gr.Request):
        """Pick the pair, stream each model's picture as it is ready, then open the vote. What it stores is
        charged to the client's write budget (reserved before anything is stored)."""
        missing = missing_input(content_img, style_img)
        if missing:
            raise gr.Error(missing)
        inputs = inputs_key(content_img, style_img)
        state["battle_inputs"] = inputs
        who = visitor(state)
        try:
            shrunk = [shrink(image, settings.size_cap) for image in (content_img, style_img)]
            with arena.hold_for(peer(request), shrunk, size, len(SIDES)) as hold:
                content_sha, style_sha = (arena.images.put(image, hold) for image in shrunk)
                methods = pick_pair(runnable, arena.store.voted_pairs(who, content_sha, style_sha), rng)
                if methods is None:
                    raise gr.Error("You have voted on every pair of models for this photo and painting: "
                                   "choose another photo or painting.")
                token = secrets.token_urlsafe(16)
                pictures, results = [None, None], []
                for i, m in enumerate(methods):
                    yield screen(pictures, f"Model {SIDES[i]} is painting…")
                    results.append(arena.stylize(content_sha, style_sha, m, size, hold=hold, **DEFAULTS))
                    name = hmac.new(key, f"{token}:{SIDES[i]}".encode(), hashlib.sha256).hexdigest()
                    pictures[i] = served_copy(disguised(arena.images.data(results[-1].sha256)),
                                              images[i].GRADIO_CACHE, hold, name)
        except (ImageError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc
        except (WeightsError, StorageError) as exc:
            raise gr.Error(f"The server cannot run this now: {exc}") from exc
        if state.get("battle_inputs") != inputs:
            yield screen(pictures, STALE)
            return
        current = {"token": token, "inputs": inputs, "content": content_sha, "style": style_sha, "methods": methods,
                   "outputs": [r.sha256 for r in results], "results": results, "shown_at": time.monotonic()}
        yield screen(pictures, "Which picture is better? The names appear after your vote.", state=current,
                     open_vote=True)

    def fight_example(index, state, request: gr.Request):
        paths = pair_paths()[index]
        for update in fight(*(read_input(p) for p in paths), state, request):
            yield (*paths, *update)
            paths = (gr.skip(), gr.skip())  # set once: every update of an input is a change event

    def clear_if_changed(content_img, style_img, state):
        """A new photo or painting ends the battle on screen. Inputs equal to those of the battle running or
        shown are that battle's own inputs arriving (an example pair): they change nothing."""
        inputs = inputs_key(content_img, style_img)
        if state.get("battle_inputs") == inputs:
            return [gr.skip()] * len(shown)
        state["battle_inputs"] = inputs
        return screen()

    def vote(choice, current, state, address):
        if not current:
            raise gr.Error("Start a battle before voting.")
        if current["inputs"] != state.get("battle_inputs"):
            raise gr.Error(STALE)
        who = visitor(state)
        refused = limits.check(who, address)
        if refused:
            raise gr.Error(refused)
        try:
            arena.store.record_battle(
                current["token"], who, sources.of(address), current["content"], current["style"], *current["methods"],
                *current["outputs"], choice, {"size": size, **DEFAULTS, "device": settings.torch_device.type},
                int((time.monotonic() - current["shown_at"]) * 1000))
        except StudyError as exc:
            raise gr.Error(str(exc)) from exc
        labels = [arena.label(m) for m in current["methods"]]
        runs = []
        for side, label, r in zip(SIDES, labels, current["results"]):
            memory = f"{r.peak_mib:,.0f} MiB" if r.peak_mib is not None else "memory not measured"
            runs.append(f"**Model {side}** was **{label}** ({r.seconds:.2f} s, {memory} for its run"
                        + (", precomputed)" if r.cached else ")"))
        revealed = (f"Your vote: **{BATTLE_LABELS[choice]}**. " + " · ".join(runs)
                    + ". Start another battle, or see the Leaderboard.")
        return screen(None, "Thank you!", revealed, None, names=labels)

    device = settings.device_events
    start.click(fight, [content, style, session], shown, api_name="battle", **device)
    pairs.click(fight_example, [pairs, session], [content, style, *shown], api_name="battle_example", **device,
                **PAGE_EVENT)
    gr.on([content.change, style.change], clear_if_changed, [content, style, session], shown,
          api_name="battle_inputs_changed", show_progress="hidden", trigger_mode="always_last", **PAGE_EVENT)
    for choice, button in zip(BATTLE_LABELS, buttons):
        def handler(current, state, request: gr.Request, choice=choice):
            return vote(choice, current, state, request.client.host if request.client else "")
        button.click(handler, [battle, session], shown, api_name=f"battle_vote_{choice}")
    return content, style
