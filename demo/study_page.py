"""The blind preference study, a page of the app for participants:

    /study?study=NAME&PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...

study defaults to the shipped sample study, except on a study-only server (there the link must name
it); the Prolific ids are optional unless the study requires PROLIFIC_PID, and stored hashed only.
Consent (or "I do not agree"), instructions, then the participant's trials: two images of the same
content and style made by two methods. A trial is one HTML block (demo.study_trial) holding both
images, the trial's opaque token and the buttons; its images come from addresses keyed by the server
(demo.study_images), never from a method or file name.
The participant token stays in the browser (gr.BrowserState), so a reload continues where it
stopped. Another browser with the same PROLIFIC_PID gets the token back only while it has no vote;
after that it starts a repeat attempt (Store.new_participant), and a finished one sees the code again."""
import html
import json
import re
import sys
import time
import urllib.parse
from pathlib import Path

import gradio as gr

from study.prepare import register
from study.schema import CHOICES
from study.store import IDENTITY_KEY, STUDY_NAME, StudyError, VoteRejected

from .limits import EnrolLimits, VoteLimits
from .study_trial import TRIAL_CSS, TRIAL_JS, trial_html

# the study endpoints' outputs, in order, as API clients (bench/load.py, tests) read them
SCREEN = ("message", "title", "consent", "trial", "done")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "studies" / "sample"
DEFAULT_STUDY = "sample"
DEFAULT_TITLE = "Picture study"
EXTERNAL_IDS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
EXTERNAL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
PROLIFIC_PID = re.compile(r"[0-9a-f]{24}")  # what Prolific's participant ids look like
PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc="
MAX_RESPONSE_MS = 3_600_000  # a browser's response time above an hour is not believed
# the BrowserState secret travels to the page, so it only obfuscates; it stays fixed so that saved
# participant tokens survive a restart of the app
BROWSER_KEY = "stya2k-study"
# the page shows no footer (API and Gradio links), keeps narrow margins on phones, and sets its title
PAGE_HEAD = ("<style>footer { display: none !important; } "
             "@media (max-width: 640px) { .gradio-container .main.app { padding: 8px; } }</style>")
PAGE_JS = "const set = () => { if (props.value) document.title = props.value; }; watch('value', set); set();"

INSTRUCTIONS = """## How it works
Each page shows two pictures: the same photo painted in the same style by two different programs.
Click the button under the better one (**Left is better** or **Right is better**; on a phone held upright,
**Top** or **Bottom**). If you really cannot choose, click **Tie**; if neither picture looks acceptable,
click **Both bad**. With a keyboard: **←** left, **→** right, **↓** tie.

Go with your impression of the whole picture; there are no right or wrong answers.
A few pairs are checks: one of their pictures is obviously broken (blurred, with inverted colours), so choose the other one.
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


def read_link(params, default_study=DEFAULT_STUDY):
    """(study name, external ids) from the page's URL parameters; LinkError for a bad value.
    default_study: the study of a link without study= (None: such a link is refused).
    Other parameters are ignored. Raw values never go into a message."""
    study = params.get("study", default_study)
    if study is None:
        raise LinkError("This link does not say which study to open (it has no study=...). "
                        "Open the study from the exact link you were given.")
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


def prolific_link(code, text):
    url = PROLIFIC_COMPLETE + urllib.parse.quote(code, safe="")
    return f'<p><a href="{html.escape(url)}" class="prolific-return">{text}</a></p>'


def done_html(code, prolific):
    """The completion code, with the link back to Prolific when the participant came from there."""
    text = ("<h2>Thank you!</h2><p>You have answered every pair. "
            f"Your completion code is <b>{html.escape(code)}</b>.</p>")
    if prolific:
        text += prolific_link(code, "Return to Prolific to complete the study") + "<p>(or enter the code there).</p>"
    return text


def declined_html(no_consent_code, prolific):
    """What a participant who does not consent sees: nothing was recorded; Prolific's way back."""
    text = "<h2>You did not agree to take part</h2><p>Nothing was recorded. You can close this page.</p>"
    if prolific and no_consent_code:
        text += prolific_link(no_consent_code, "Return to Prolific") + \
            f"<p>(or enter the code <b>{html.escape(no_consent_code)}</b> there).</p>"
    elif prolific:
        text += "<p>On Prolific, return the study (\"I don't want to take part\").</p>"
    return text


def client_ms(value):
    """The browser's response time if it is believable (an integer from 0 to an hour), else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_RESPONSE_MS
    return value if ok else None


def build_study_page(arena, app, images):
    """Lays out the study page inside the current route of `app` and wires its events.
    images: the demo.study_images.StudyImages whose route serves the trials' pictures."""
    store = arena.store
    settings = arena.settings
    limits = VoteLimits(settings.vote_interval_ms, settings.votes_per_minute)
    enrolments = EnrolLimits(settings.enrolments_per_hour)
    default_study = None if settings.study_only else DEFAULT_STUDY
    session = gr.State(None)  # server-side: study, external ids, participant token, trial shown and when
    saved = gr.BrowserState({}, storage_key=BROWSER_KEY, secret=BROWSER_KEY)  # {study: {participant, who}}
    gr.Navbar(visible="hidden")  # participants see the study only ("hidden": False would not hide it)
    title = gr.HTML(None, html_template="", js_on_load=PAGE_JS, head=PAGE_HEAD, elem_id="study-title",
                    visible="hidden")
    message = gr.Markdown()
    with gr.Column(visible=False) as consent_box:
        consent = gr.Markdown()
        with gr.Row():
            agree = gr.Button("I agree", variant="primary")
            decline = gr.Button("I do not agree")
    with gr.Column(visible=False) as instructions_box:
        gr.Markdown(INSTRUCTIONS)
        start = gr.Button("Start", variant="primary")
    trial = gr.HTML(None, html_template="${value ? value.html : ''}", css_template=TRIAL_CSS, js_on_load=TRIAL_JS,
                    elem_id="study-trial")
    done = gr.HTML()
    boxes = {"consent": consent_box, "instructions": instructions_box}
    fields = dict(zip(SCREEN, (message, title, consent, trial, done)))
    outputs = [*fields.values(), session, *boxes.values()]

    def screen(stage, state, **values):
        """Every output: the `stage` box shown, the others hidden; `values` by field name, other fields cleared."""
        page_title = (state or {}).get("title") or DEFAULT_TITLE
        cleared = {"message": "", "title": page_title, "consent": "", "trial": None, "done": ""}
        out = {fields[name]: value for name, value in {**cleared, **values}.items()}
        out[session] = state
        out.update({box: gr.Column(visible=name == stage) for name, box in boxes.items()})
        return out

    def consent_screen(state):
        return screen("consent", state, consent=store.study(state["study"])["consent"])

    def done_screen(state, participant):
        code = store.completion_code(participant)
        return screen(None, {**state, "trial": None}, done=done_html(code, IDENTITY_KEY in state["external_ids"]))

    def trial_view(state, shown, following):
        """The trial as the browser gets it: token, progress, image addresses and the HTML that shows them."""
        def side(trial, name):
            return images.url(state["study"], state["participant"], trial["token"], name, trial[name])
        (left, width, height), (right, _, _) = side(shown, "left"), side(shown, "right")
        preload = [side(following, name)[0] for name in ("left", "right")] if following else []
        number, total = shown["position"] + 1, shown["n_trials"]
        view = {"trial": shown["token"], "number": number, "total": total, "progress": f"Trial {number} of {total}",
                "left": left, "right": right, "width": width, "height": height, "next": preload, "notice": "",
                "retry": 0}
        return {**view, "html": trial_html(view)}

    def next_screen(state):
        """The participant's next unanswered trial, or the completion code when none is left."""
        try:
            remaining = store.remaining_trials(state["participant"])
        except StudyError:  # a token this database does not know (say, a new database): enrol again
            return consent_screen({**state, "participant": None})
        if not remaining:
            return done_screen(state, state["participant"])
        view = trial_view(state, remaining[0], remaining[1] if len(remaining) > 1 else None)
        return screen(None, {**state, "trial": view["trial"], "view": view, "shown_at": time.monotonic()}, trial=view)

    def link_state(browser, request):
        """The session state of the page's link and the participant the browser saved for it (None if
        none); LinkError with the message to show for a link that cannot be used."""
        try:
            study, external_ids = read_link(dict(request.query_params), default_study)
            spec = store.study(study)
        except StudyError:
            raise LinkError("This link names a study that does not run here. Check the link you were given.") from None
        pid = external_ids.get(IDENTITY_KEY)
        if spec["require_prolific"] and not (pid and PROLIFIC_PID.fullmatch(pid)):
            raise LinkError("This study runs on Prolific, and this link lacks your Prolific ID. "
                            "Open the study from its link on Prolific.")
        who = store.hash_id(IDENTITY_KEY, pid) if pid else ""
        return {"study": study, "external_ids": external_ids, "who": who, "title": spec["title"],
                "participant": saved_participant(browser, study, who)}

    def open_page(browser, request: gr.Request):
        """On page load: check the link, then resume the saved participant, show a finished one their code,
        or ask for consent."""
        try:
            state = link_state(browser, request)
        except LinkError as exc:
            return screen(None, None, message=str(exc))
        if state["participant"]:
            return next_screen(state)
        finished = store.finished_participant(state["study"], state["external_ids"])
        return done_screen(state, finished) if finished else consent_screen(state)

    def give_consent(state, browser, request: gr.Request):
        """Enrol the participant (within the enrolment limits) and keep the token in the browser."""
        if not state:
            raise gr.Error("Open the study from its link first (or reload the page).")
        token = state["participant"]  # a second click enrols nobody new
        if token is None:
            refused = enrolments.check(state["study"], request.client.host if request.client else "")
            if refused:
                raise gr.Error(refused)
            try:
                token = store.new_participant(state["study"], state["external_ids"])
            except StudyError as exc:  # a full study; one without stimuli: the message says what to do
                raise gr.Error(str(exc)) from exc
        browser = {**(browser if isinstance(browser, dict) else {}),
                   state["study"]: {"participant": token, "who": state["who"]}}
        return {**screen("instructions", {**state, "participant": token}), saved: browser}

    def refuse_consent(state):
        if not state:
            raise gr.Error("Open the study from its link first (or reload the page).")
        code = store.study(state["study"])["no_consent_code"]
        return screen(None, {**state, "trial": None}, done=declined_html(code, IDENTITY_KEY in state["external_ids"]))

    def begin(state):
        if not state or not state.get("participant"):
            raise gr.Error("Agree to the consent form first (reload the page to see it).")
        return next_screen(state)

    def vote(answer, state, browser=None, request: gr.Request = None):
        """Record the answer to the trial on screen: answer = {"trial": token, "choice": one of CHOICES,
        "client_ms": the browser's response time}, within the rate limits for the participant and the
        network address (refused: the same trial again, with a notice). A server that has not shown this
        page (its first server stopped: deploy/) resumes the participant the browser saved, whose trial on
        screen is then their next unanswered one."""
        if not state and browser:
            try:
                resumed = link_state(browser, request)
            except LinkError:
                resumed = None
            if resumed and resumed["participant"]:
                state = {**next_screen(resumed)[session], "shown_at": None}
        if not state or not state.get("trial"):
            raise gr.Error("There is no pair to answer: reload the page.")
        if not isinstance(answer, dict) or answer.get("trial") != state["trial"]:
            raise gr.Error("This answer is not for the pair on your screen, so it was not recorded. "
                           "Answer the pair shown, or reload the page.")
        if answer.get("choice") not in CHOICES:
            raise gr.Error(f"Choose one of {', '.join(CHOICES)}.")
        refused = limits.check(state["participant"], request.client.host if request.client else "")
        if refused:
            view = {**state["view"], "notice": refused, "retry": state["view"]["retry"] + 1}
            return unboxed(screen(None, {**state, "view": view}, trial={**view, "html": trial_html(view)}))
        server_ms = None if state["shown_at"] is None else int((time.monotonic() - state["shown_at"]) * 1000)
        try:
            store.record_vote(state["trial"], state["participant"], answer["choice"],
                              client_ms(answer.get("client_ms")), server_ms)
        except VoteRejected as exc:
            raise gr.Error(str(exc)) from exc
        return unboxed(next_screen(state))

    def unboxed(out):
        """The outputs of a vote without the boxes when they stay hidden (a vote comes from a trial, so
        they are hidden already): an update of a layout block costs Gradio a new block and its config."""
        if any(out[box].visible for box in boxes.values()):
            return out
        return {k: v for k, v in out.items() if k not in boxes.values()}

    study_events = {"concurrency_id": "study", "concurrency_limit": 8}
    app.load(open_page, [saved], outputs, api_name="study_open", **study_events)
    agree.click(give_consent, [session, saved], [*outputs, saved], api_name="study_agree", **study_events)
    decline.click(refuse_consent, [session], outputs, api_name="study_decline", **study_events)
    start.click(begin, [session], outputs, api_name="study_start", **study_events)
    trial.vote(vote, [trial, session, saved], outputs, api_name="study_vote", show_progress="hidden", **study_events)
