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
decides which votes count (study.counting).

A battle that starts scrolls its pictures and vote buttons into view; while a model paints, the status
counts down its estimated time (demo.arena: from recent runs of that method and size) and gives the next
model's, corrected by how far the first was off. Keys A, B, T and N vote (BATTLE_KEYS, shown on the buttons).
Regenerate drops the battle on screen unvoted for another pair on the same images; New round, after the
vote, starts another pair on the same images, or on a gallery photo and painting once this visitor has
voted on every pair for these."""
import hashlib
import hmac
import io
import itertools
import json
import random
import secrets
import time
from concurrent.futures import ThreadPoolExecutor, wait

import gradio as gr
import numpy as np
from PIL import Image

from model.images import ImageError
from model.methods import METHODS
from model.weights import WeightsError
from study.store import StudyError

from .arena import time_left
from .choices import BATTLE_KEYS, BATTLE_LABELS
from .gallery import example_paths
from .limits import VoteLimits
from .pseudonyms import DailyPseudonyms
from .security import PAGE_EVENT, peer
from .session import inputs_key, visitor
from .storage import StorageError, encoded, served_copy
from .upload import ImageUpload, missing_input, read_input, shrink
from .warmup import DEFAULTS, pair_paths

CROSS = 0.75  # probability of an A2K-against-all-to-all pair when one is left to vote on
SIDES = ("A", "B")
STALE = "The photo or painting changed after this battle: start a new battle to vote."
TICK_S = 1.0  # how often the status counts down while a model paints
# installed once per page by the tab's hidden HTML element: the vote keys (a key press clicks the button, when
# it is enabled and on screen, so it is the same event under the same limits), and, each time a battle starts
# (the element's value changes), the pictures and the vote buttons brought into view
PAGE_JS = f"const KEYS = {json.dumps({key.lower(): f'battle-vote-{c}' for c, key in BATTLE_KEYS.items()})};" + """
if (!window.battleKeys) {
  window.battleKeys = true;
  document.addEventListener('keydown', (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || target.isContentEditable
        || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName)) return;
    const button = document.getElementById(KEYS[event.key.toLowerCase()]);
    if (!button || button.disabled || !button.offsetParent) return;  // no vote open, or another tab
    event.preventDefault();
    button.click();
  });
}
watch('value', () => document.getElementById('battle-arena')?.scrollIntoView({block: 'start'}));
"""


def pick_pair(runnable, voted, rng):
    """Two different methods in random order, or None when the visitor has voted on every pair."""
    pairs = [p for p in itertools.combinations(sorted(runnable), 2) if p not in voted]
    if not pairs:
        return None
    cross = [p for p in pairs if {METHODS[p[0]].attention, METHODS[p[1]].attention} == {"a2k", "all2all"}]
    pair = list(rng.choice(cross if cross and rng.random() < CROSS else pairs))
    rng.shuffle(pair)
    return pair


def run_text(side, estimates, elapsed):
    """The status while Model `side` paints: its time left (`estimates`: side -> seconds, 0 for a stored
    result, None before anything was measured) and the estimates of the sides after it."""
    estimate = estimates[side]
    if estimate == 0:
        text = f"Model {side}: precomputed, loading"
    elif estimate is None:
        text = f"Model {side} is painting"
    elif elapsed <= estimate:
        text = f"Model {side} is painting, {time_left(estimate - elapsed)}"
    else:
        text = f"Model {side} is painting, longer than estimated ({elapsed:.0f} s so far)"
    later = SIDES[SIDES.index(side) + 1:]
    then = [f"Model {s}: " + ("precomputed" if estimates[s] == 0 else f"about {max(1, round(estimates[s]))} s")
            for s in later if estimates[s] is not None]
    return " · ".join([text + "…", *then])


def corrected(estimates, side, took):
    """`estimates` (side -> seconds, 0 for a stored result, None unknown) once Model `side` took `took` seconds:
    the sides after it scaled by how far its own estimate was off."""
    if not estimates[side]:
        return estimates
    ratio = took / estimates[side]
    return {s: e * ratio if e and SIDES.index(s) > SIDES.index(side) else e for s, e in estimates.items()}


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


class Battles:
    """One app's battles apart from their layout: the pair drawn, its pictures as they are painted (served from
    `cache_dir`, Gradio's file cache), the vote under the limits. A battle is a dict: its token, inputs,
    content and style sha256, methods (side A's first), outputs, results and when it was shown."""

    def __init__(self, arena, cache_dir):
        self.arena, self.cache_dir = arena, cache_dir
        self.runnable = arena.runnable()
        self.size = arena.settings.default_size
        self.limits = VoteLimits(arena.settings.vote_interval_ms, arena.settings.votes_per_minute)
        self.sources = DailyPseudonyms()
        self.key = secrets.token_bytes(32)  # names the served images; a restart makes new names
        self.rng = random.SystemRandom()

    def fight(self, content_img, style_img, state, address, avoid=None):
        """Pick the pair (another than `avoid` where one is left), paint it; yields (token, pictures, status,
        battle): battle None while painting, then the battle open to vote on the last, or None there with
        STALE when the session's inputs changed meanwhile. What it stores is charged to `address`'s write
        budget (reserved before anything is stored)."""
        missing = missing_input(content_img, style_img)
        if missing:
            raise gr.Error(missing)
        inputs = inputs_key(content_img, style_img)
        state["battle_inputs"] = inputs
        try:
            shrunk = [shrink(image, self.arena.settings.size_cap) for image in (content_img, style_img)]
            with self.arena.hold_for(address, shrunk, self.size, len(SIDES)) as hold:
                content_sha, style_sha = (self.arena.images.put(image, hold) for image in shrunk)
                voted = self.arena.store.voted_pairs(visitor(state), content_sha, style_sha)
                methods = pick_pair(self.runnable, voted | {avoid}, self.rng) or pick_pair(self.runnable, voted, self.rng)
                if methods is None:
                    raise gr.Error("You have voted on every pair of models for this photo and painting: "
                                   "choose another photo or painting.")
                token, results = secrets.token_urlsafe(16), []
                for pictures, text in self.painted(content_sha, style_sha, methods, hold, token, results):
                    yield token, pictures, text, None
        except gr.Error:  # a ValueError itself, whose str() is quoted
            raise
        except (ImageError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc
        except (WeightsError, StorageError) as exc:
            raise gr.Error(f"The server cannot run this now: {exc}") from exc
        if state.get("battle_inputs") != inputs:
            yield token, pictures, STALE, None
            return
        yield token, pictures, "Which picture is better? The names appear after your vote.", {
            "token": token, "inputs": inputs, "content": content_sha, "style": style_sha, "methods": methods,
            "outputs": [r.sha256 for r in results], "results": results, "shown_at": time.monotonic()}

    def painted(self, content_sha, style_sha, methods, hold, token, results):
        """Runs each model in turn, appending its Result to `results` and yielding (pictures so far, status
        text) at once, every TICK_S and when a picture is ready; the pictures are served under names made
        from `token`. Each model's estimate is corrected by how far the models before it were off."""
        arena, size = self.arena, self.size
        stored = {m for m in methods if arena.stored(content_sha, style_sha, m, size, **DEFAULTS)}
        pending = [m for m in methods if m not in stored]
        guesses = dict(zip(pending, arena.estimates(pending, size, content_sha, style_sha)))
        estimates = {side: 0.0 if m in stored else guesses[m] for side, m in zip(SIDES, methods)}
        pictures = [None, None]
        with ThreadPoolExecutor(1) as pool:
            for i, (side, m) in enumerate(zip(SIDES, methods)):
                began = time.monotonic()
                job = pool.submit(arena.stylize, content_sha, style_sha, m, size, hold=hold, **DEFAULTS)
                if i == 0:
                    yield list(pictures), run_text(side, estimates, 0)
                while not wait([job], TICK_S)[0]:
                    yield list(pictures), run_text(side, estimates, time.monotonic() - began)
                results.append(job.result())
                if not results[-1].cached:  # (a result stored meanwhile by another visitor's run took no time)
                    estimates = corrected(estimates, side, time.monotonic() - began)
                name = hmac.new(self.key, f"{token}:{side}".encode(), hashlib.sha256).hexdigest()
                pictures[i] = served_copy(disguised(arena.images.data(results[-1].sha256)), self.cache_dir, hold, name)
                yield list(pictures), run_text(SIDES[i + 1], estimates, 0) if i + 1 < len(SIDES) else ""

    def left_to_vote(self, who, content_img, style_img):
        """Whether a pair of models is left that `who` has not voted on for these images (as stored)."""
        shas = [encoded(shrink(image, self.arena.settings.size_cap))[1] for image in (content_img, style_img)]
        return pick_pair(self.runnable, self.arena.store.voted_pairs(who, *shas), self.rng) is not None

    def ran(self, result):
        """How a revealed model's picture was made: its time, stored or run now, and a GPU's peak memory."""
        memory = (f", {result.peak_mib:,.0f} MiB GPU peak"
                  if self.arena.settings.torch_device.type == "cuda" and result.peak_mib is not None else "")
        return (f"precomputed (its run: {result.seconds:.1f} s{memory})" if result.cached
                else f"run now, {result.seconds:.1f} s{memory}")

    def vote(self, choice, battle, state, address):
        """Stores the vote `choice` (BATTLE_LABELS) on `battle` from `address`; returns (the methods' labels,
        side A's first, the reveal text)."""
        if not battle:
            raise gr.Error("Start a battle before voting.")
        if battle["inputs"] != state.get("battle_inputs"):
            raise gr.Error(STALE)
        who = visitor(state)
        refused = self.limits.check(who, address)
        if refused:
            raise gr.Error(refused)
        settings = self.arena.settings
        try:
            self.arena.store.record_battle(
                battle["token"], who, self.sources.of(address), battle["content"], battle["style"], *battle["methods"],
                *battle["outputs"], choice, {"size": self.size, **DEFAULTS, "device": settings.torch_device.type},
                int((time.monotonic() - battle["shown_at"]) * 1000))
        except StudyError as exc:
            raise gr.Error(str(exc)) from exc
        labels = [self.arena.label(m) for m in battle["methods"]]
        runs = [f"**Model {side}** was **{label}**: {self.ran(r)}"
                for side, label, r in zip(SIDES, labels, battle["results"])]
        return labels, f"Your vote: **{BATTLE_LABELS[choice]}**. " + ". ".join(runs) + "."


class BattleTab:
    """The Battle tab's event functions over `battles`: each gives updates of the tab's outputs (`screen`), those
    that start a battle preceded by the photo and the painting."""

    def __init__(self, battles):
        self.battles = battles

    @staticmethod
    def screen(pictures=(None, None), text="", revealed="", state=None, stage="idle", names=None, token=None):
        """Updates of [picture A, picture B, status, reveal, the battle (server-side state), the vote buttons,
        Regenerate, New round, the scroll trigger]; pictures None: keep those on screen; names: the methods,
        once revealed; stage: "idle", "vote" (the vote and Regenerate open) or "voted" (New round open);
        token: a new battle's, which brings it into view."""
        if pictures is None:
            shown_images = [gr.Image(label=f"Model {side}: {name}") for side, name in zip(SIDES, names)]
        else:
            shown_images = [gr.Image(value=p, label=f"Model {side}") for p, side in zip(pictures, SIDES)]
        return (*shown_images, text, revealed, state, *(gr.Button(interactive=stage == "vote") for _ in BATTLE_LABELS),
                gr.Button(interactive=stage == "vote"), gr.Button(interactive=stage == "voted"),
                gr.skip() if token is None else token)

    def fight(self, content_img, style_img, state, request, paths=(None, None), avoid=None):
        """Battles.fight as updates of [photo, painting, *screen], the inputs set to `paths` on the first."""
        inputs_out = [gr.skip() if p is None else p for p in paths]
        steps = self.battles.fight(content_img, style_img, state, peer(request), avoid)
        for n, (token, pictures, text, current) in enumerate(steps):
            yield (*inputs_out, *self.screen(pictures, text, state=current, stage="vote" if current else "idle",
                                             token=None if n else token))
            inputs_out = [gr.skip(), gr.skip()]

    def start(self, content_img, style_img, state, request: gr.Request):
        """Start battle: a pair on the visitor's photo and painting."""
        yield from self.fight(content_img, style_img, state, request)

    def example(self, index, state, request: gr.Request):
        """An example pair clicked: a battle on it, the inputs set to its pictures."""
        paths = pair_paths()[index]
        yield from self.fight(*(read_input(p) for p in paths), state, request, paths)

    def regenerate(self, content_img, style_img, current, state, request: gr.Request):
        """Regenerate: another pair on the battle's images, the battle on screen left without a vote."""
        avoid = tuple(sorted(current["methods"])) if current else None
        yield from self.fight(content_img, style_img, state, request, avoid=avoid)

    def new_round(self, content_img, style_img, state, request: gr.Request):
        """New round: another pair on the same images, or new images from the gallery when this visitor has
        voted on every pair for these."""
        paths, rng = (None, None), self.battles.rng
        if content_img is None or style_img is None or not self.battles.left_to_vote(visitor(state), content_img, style_img):
            paths = (rng.choice(example_paths("contents")), rng.choice(example_paths("styles")))
            content_img, style_img = (read_input(p) for p in paths)
        yield from self.fight(content_img, style_img, state, request, paths)

    def inputs_changed(self, content_img, style_img, state):
        """A new photo or painting ends the battle on screen. Inputs equal to those of the battle running or
        shown are that battle's own inputs arriving (an example pair): they change nothing."""
        inputs = inputs_key(content_img, style_img)
        if state.get("battle_inputs") == inputs:
            return [gr.skip()] * len(self.screen())
        state["battle_inputs"] = inputs
        return self.screen()

    def voter(self, choice):
        """The event function of the vote button for `choice` (BATTLE_LABELS): stores it, reveals the names."""
        def vote(current, state, request: gr.Request):
            labels, revealed = self.battles.vote(choice, current, state, peer(request))
            return self.screen(None, "Thank you! **New round**: another pair of models.", revealed, None, "voted",
                               names=labels)
        return vote


def build_battle_tab(arena, session):  # pragma: no mutate block (layout and wiring: the launched app's tests)
    """Lays out the tab inside the current Blocks and wires its events to a BattleTab; returns its (photo,
    painting) inputs."""
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
    with gr.Column(elem_id="battle-arena"):  # brought into view when a battle starts (PAGE_JS)
        status = gr.Markdown(elem_id="battle-status")
        reveal = gr.Markdown(elem_id="battle-reveal")  # above the pictures: on a phone, in view after the vote
        with gr.Row(elem_id="battle-results"):
            images = [gr.Image(label=f"Model {side}", format="png", interactive=False, height=320, min_width=120,
                               buttons=["fullscreen"], elem_id=f"battle-{side.lower()}") for side in SIDES]
        with gr.Row(elem_id="battle-votes"):
            buttons = [gr.Button(f"{text} ({BATTLE_KEYS[c]})", interactive=False, min_width=140, elem_id=f"battle-vote-{c}",
                                 variant="primary" if c in ("left", "right") else "secondary")
                       for c, text in BATTLE_LABELS.items()]
        with gr.Row():
            regenerate = gr.Button("Regenerate (another pair)", interactive=False, size="sm", min_width=80)
            new_round = gr.Button("New round", interactive=False, size="sm", min_width=80, elem_id="battle-new-round")
    focus = gr.HTML(None, html_template="", js_on_load=PAGE_JS, visible="hidden", elem_id="battle-focus")
    battle = gr.State(None)  # server-side: the battle on screen, its methods and outputs
    shown = [*images, status, reveal, battle, *buttons, regenerate, new_round, focus]
    tab = BattleTab(Battles(arena, images[0].GRADIO_CACHE))
    device = arena.settings.device_events
    battle_outputs = [content, style, *shown]
    start.click(tab.start, [content, style, session], battle_outputs, api_name="battle", **device)
    pairs.click(tab.example, [pairs, session], battle_outputs, api_name="battle_example", **device, **PAGE_EVENT)
    regenerate.click(tab.regenerate, [content, style, battle, session], battle_outputs, api_name="battle_regenerate",
                     **device)
    new_round.click(tab.new_round, [content, style, session], battle_outputs, api_name="battle_new_round", **device)
    gr.on([content.change, style.change], tab.inputs_changed, [content, style, session], shown,
          api_name="battle_inputs_changed", show_progress="hidden", trigger_mode="always_last", **PAGE_EVENT)
    for choice, button in zip(BATTLE_LABELS, buttons):
        button.click(tab.voter(choice), [battle, session], shown, api_name=f"battle_vote_{choice}")
    return content, style
