"""The blind preference study, a page of the app for participants:

    /study?study=NAME&PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...

study defaults to the shipped sample study; the Prolific ids are optional and stored hashed only.
Consent, instructions, then the participant's trials: two images of the same content and style
made by two methods. The browser gets the images as bare pixels (PNG files named image.png, without
metadata) and each trial's opaque token, never a method name or file name.
The participant token stays in the browser (gr.BrowserState), so a reload continues where it
stopped; a returning PROLIFIC_PID gets its token back from the store as well."""
import html
import io
import json
import re
import sys
import time
import urllib.parse
from pathlib import Path

import gradio as gr
from PIL import Image

from study.prepare import register
from study.store import IDENTITY_KEY, STUDY_NAME, StudyError, VoteRejected

from .choices import CHOICE_LABELS
from .limits import VoteLimits
from .storage import served_copy

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "studies" / "sample"
DEFAULT_STUDY = "sample"
EXTERNAL_IDS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
EXTERNAL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Prolific's ids are 24 hex digits
PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc="
# the BrowserState secret travels to the page, so it only obfuscates; it stays fixed so that saved
# participant tokens survive a restart of the app
BROWSER_KEY = "stya2k-study"

INSTRUCTIONS = """## How it works
Each page shows two pictures: the same photo painted in the same style by two different programs.
Click the button under your choice: **Left is better** or **Right is better**. If you really cannot
choose, click **Tie**; if neither picture looks acceptable, click **Both bad**.

Go with your impression of the whole picture; there are no right or wrong answers. A few pairs contain an
obviously broken picture, to check that the images load and that you are paying attention.
Your answers are saved as you go: if you reload the page, you continue where you stopped."""


class LinkError(ValueError):
    """The study link's URL parameters are not usable; the message is safe to show."""


def register_sample(store):
    """Register the shipped sample study (studies/sample: study.json, consent.md and the rendered
    images) unless the database already holds all of it. Idempotent; takes well under a second."""
    spec = json.loads((SAMPLE / "study.json").read_text(encoding="utf-8"))
    contents = [REPO / p for p in spec["contents"]]
    styles = [REPO / p for p in spec["styles"]]
    expected = len(contents) * len(styles) * (len(spec["methods"]) + 1)  # + one catch image per cell
    try:
        if len(store.stimuli(spec["name"])) == expected:
            return
    except StudyError:  # no such study yet
        pass
    consent = (SAMPLE / "consent.md").read_text(encoding="utf-8")
    try:
        store.create_study(spec["name"], consent, spec["n_trials"], spec["catch_rate"], SAMPLE / "images")
        _, missing = register(store, spec["name"], contents, styles, spec["methods"], SAMPLE / "images", spec["size"])
    except StudyError as exc:  # e.g. another study of that name: the app runs on without the sample
        print(f"warning: the sample study is not registered: {exc}", file=sys.stderr)
        return
    if missing:
        print(f"warning: the sample study lacks {', '.join(missing)}: run python studies/sample/build.py",
              file=sys.stderr)


def read_link(params):
    """(study name, external ids) from the page's URL parameters; LinkError for a bad value.
    Other parameters are ignored. Raw values never go into a message."""
    study = params.get("study", DEFAULT_STUDY)
    if not STUDY_NAME.fullmatch(study):
        raise LinkError("The study name in this link is not valid. Check the link you were given.")
    ids = {}
    for name in EXTERNAL_IDS:
        value = params.get(name)
        if value is not None:
            if not EXTERNAL_ID.fullmatch(value):
                raise LinkError(f"The {name} in this link is not valid (at most 64 letters, digits, '-' or '_'). "
                                "Open the study again from its link on Prolific.")
            ids[name] = value
    return study, ids


def saved_participant(saved, study, who):
    """The participant token the browser saved for this study and Prolific id, or None."""
    entry = saved.get(study) if isinstance(saved, dict) else None
    if isinstance(entry, dict) and entry.get("who") == who and isinstance(entry.get("participant"), str):
        return entry["participant"]
    return None


def bare_png(store, study, sha256, cache_dir):
    """The stimulus as a PNG of bare RGB pixels (no metadata: Gradio would pass on PNG text chunks),
    served from Gradio's cache under the neutral name image.png (see storage.served_copy)."""
    with Image.open(store.image_path(study, sha256)) as image:
        bare = image.convert("RGB")
    buf = io.BytesIO()
    bare.save(buf, "PNG")
    return served_copy(buf.getvalue(), cache_dir)


def progress_html(number, total):
    return (f'<div class="study-progress"><progress value="{number - 1}" max="{total}"></progress> '
            f"<span>Trial {number} of {total}</span></div>")


def done_html(code, prolific):
    """The completion code, with the link back to Prolific when the participant came from there."""
    text = ("<h2>Thank you!</h2><p>You have answered every pair. "
            f"Your completion code is <b>{html.escape(code)}</b>.</p>")
    if prolific:
        url = PROLIFIC_COMPLETE + urllib.parse.quote(code, safe="")
        text += (f'<p><a href="{html.escape(url)}" class="prolific-return">Return to Prolific to complete '
                 "the study</a> (or enter the code there).</p>")
    return text


def build_study_page(arena, app):
    """Lays out the study page inside the current route of `app` and wires its events."""
    store = arena.store
    limits = VoteLimits(arena.settings.vote_interval_ms, arena.settings.votes_per_minute)
    images = {}  # (study, stimulus sha256) -> the path bare_png gave
    session = gr.State(None)  # server-side: study, external ids, participant token, trial shown and when
    saved = gr.BrowserState({}, storage_key=BROWSER_KEY, secret=BROWSER_KEY)  # {study: {participant, who}}
    gr.Navbar(visible="hidden")  # participants see the study only ("hidden": False would not hide it)
    message = gr.Markdown()
    with gr.Column(visible=False) as consent_box:
        consent = gr.Markdown()
        agree = gr.Button("I agree", variant="primary")
    with gr.Column(visible=False) as instructions_box:
        gr.Markdown(INSTRUCTIONS)
        start = gr.Button("Start", variant="primary")
    with gr.Column(visible=False) as trial_box:
        progress = gr.HTML()
        with gr.Row():
            left = gr.Image(label="Left", type="pil", format="png", interactive=False, height=420,
                            buttons=["fullscreen"])
            right = gr.Image(label="Right", type="pil", format="png", interactive=False, height=420,
                             buttons=["fullscreen"])
        with gr.Row():
            buttons = [gr.Button(text, variant="primary" if c in ("left", "right") else "secondary")
                       for c, text in CHOICE_LABELS.items()]
        trial = gr.Textbox(visible="hidden")  # the shown trial's token: a vote names the pair it answers
    with gr.Column(visible=False) as done_box:
        done = gr.HTML()
    boxes = {"consent": consent_box, "instructions": instructions_box, "trial": trial_box, "done": done_box}
    fields = {"message": message, "consent": consent, "progress": progress, "left": left, "right": right,
              "trial": trial, "done": done}
    outputs = [*fields.values(), session, *boxes.values()]

    def screen(stage, state, **values):
        """Every output: the `stage` box shown, the others hidden; `values` by field name, other fields cleared."""
        cleared = {"message": "", "consent": "", "progress": "", "left": None, "right": None, "trial": "", "done": ""}
        out = {fields[name]: value for name, value in {**cleared, **values}.items()}
        out[session] = state
        out.update({box: gr.Column(visible=name == stage) for name, box in boxes.items()})
        return out

    def image(study, sha256):
        path = images.get((study, sha256))
        if path is None or not path.exists():
            path = images[study, sha256] = bare_png(store, study, sha256, left.GRADIO_CACHE)
        return path

    def consent_screen(state):
        return screen("consent", state, consent=store.study(state["study"])["consent"])

    def next_screen(state):
        """The participant's next unanswered trial, or the completion code when none is left."""
        try:
            remaining = store.remaining_trials(state["participant"])
        except StudyError:  # a token this database does not know (say, a new database): enrol again
            return consent_screen({**state, "participant": None})
        if not remaining:
            code = store.completion_code(state["participant"])
            return screen("done", {**state, "trial": None},
                          done=done_html(code, IDENTITY_KEY in state["external_ids"]))
        shown = remaining[0]
        state = {**state, "trial": shown["token"], "shown_at": time.monotonic()}
        return screen("trial", state, progress=progress_html(shown["position"] + 1, shown["n_trials"]),
                      left=image(state["study"], shown["left"]), right=image(state["study"], shown["right"]),
                      trial=shown["token"])

    def open_page(browser, request: gr.Request):
        """On page load: check the link, then resume the saved participant or ask for consent."""
        try:
            study, external_ids = read_link(dict(request.query_params))
            store.study(study)
        except LinkError as exc:
            return screen(None, None, message=str(exc))
        except StudyError:
            return screen(None, None, message="This link names a study that does not run here. "
                                              "Check the link you were given.")
        pid = external_ids.get(IDENTITY_KEY)
        who = store.hash_id(IDENTITY_KEY, pid) if pid else ""
        state = {"study": study, "external_ids": external_ids, "who": who,
                 "participant": saved_participant(browser, study, who)}
        return next_screen(state) if state["participant"] else consent_screen(state)

    def give_consent(state, browser):
        """Enrol the participant (a known PROLIFIC_PID gets its token back) and keep the token in the browser."""
        if not state:
            raise gr.Error("Open the study from its link first (or reload the page).")
        try:  # a second click enrols nobody new
            token = state["participant"] or store.new_participant(state["study"], state["external_ids"])
        except StudyError as exc:  # a study without stimuli, say: the message tells its researchers what to do
            raise gr.Error(str(exc)) from exc
        browser = {**(browser if isinstance(browser, dict) else {}),
                   state["study"]: {"participant": token, "who": state["who"]}}
        return {**screen("instructions", {**state, "participant": token}), saved: browser}

    def begin(state):
        if not state or not state.get("participant"):
            raise gr.Error("Agree to the consent form first (reload the page to see it).")
        return next_screen(state)

    def vote(choice, trial_token, state, address):
        """Record the answer to the trial on screen (response time measured here, from when it was sent),
        within the rate limits for the participant and for the network `address`."""
        if not state or not state.get("trial"):
            raise gr.Error("There is no pair to answer: reload the page.")
        if trial_token != state["trial"]:
            raise gr.Error("This answer is not for the pair on your screen, so it was not recorded. "
                           "Answer the pair shown, or reload the page.")
        refused = limits.check(state["participant"], address)
        if refused:
            raise gr.Error(refused)
        elapsed_ms = int((time.monotonic() - state["shown_at"]) * 1000)
        try:
            store.record_vote(trial_token, state["participant"], choice, elapsed_ms)
        except VoteRejected as exc:
            raise gr.Error(str(exc)) from exc
        return next_screen(state)

    def voter(choice):
        def handler(token, state, request: gr.Request):
            return vote(choice, token, state, request.client.host if request.client else "")
        return handler

    study_events = {"concurrency_id": "study", "concurrency_limit": 8}
    app.load(open_page, [saved], outputs, api_name="study_open", **study_events)
    agree.click(give_consent, [session, saved], [*outputs, saved], api_name="study_agree", **study_events)
    start.click(begin, [session], outputs, api_name="study_start", **study_events)
    for choice, button in zip(CHOICE_LABELS, buttons):
        button.click(voter(choice), [trial, session], outputs,
                     api_name=f"study_vote_{choice}", show_progress="minimal", **study_events)
