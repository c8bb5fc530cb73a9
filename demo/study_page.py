"""The blind preference study, a page of the app for participants:

    /study?study=NAME&PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...

study defaults to the shipped sample study, except on a study-only server (there the link must name
it); the Prolific ids are optional unless the study requires PROLIFIC_PID, and stored hashed only.
A screen check (demo.study_screen: a window too small for the study's pictures is asked to grow once,
then sent back), consent (or "I do not agree"), instructions, then the participant's trials (practice
first): two images of the same content and style made by two methods, under the trial's question, beside
the content photo and style painting when the study shows them; at the end the completion code, the
study's debrief and its optional feedback question. A trial is one HTML block (demo.study_trial) holding both
images, the trial's opaque token and the buttons; its images come from addresses keyed by the server
(demo.study_images), never from a method or file name. The trial's script posts each vote to the
study's vote route (demo.study_vote), which answers with the next trial or the completion code.
The participant token stays in the browser (gr.BrowserState), so a reload continues where it
stopped. Another browser with the same PROLIFIC_PID never gets the token: it starts a repeat attempt
(Store.new_participant), and a finished one sees the code again.
The browser state also marks each link (study and Prolific id) opened, then declined or screened out:
the first load of a link in a browser records an opening, its "I do not agree" a decline (Store.record_arrival:
the time and, from a Prolific link, the PROLIFIC_PID's salted hash), a screen still too small a screen-out
(Store.record_screen_out), each once per browser; a reload after either shows its screen again."""
import json
import re
import sys
from pathlib import Path

import gradio as gr

from study.prepare import FEEDBACK_QUESTION, register
from study.questions import parse
from study.store import IDENTITY_KEY, STUDY_NAME, StudyError

from .limits import ARRIVALS_PER_HOUR, EnrolLimits, HourlyLimit
from .security import PAGE_EVENT, peer
from .study_screen import MEASURE, read_screen, screened_out_html, shortfall, too_small_text
from .study_trial import TRIAL_CSS, TRIAL_JS
from .study_vote import way_back

# the study endpoints' outputs, in order, as API clients (bench/load.py, tests) read them
SCREEN = ("message", "title", "consent", "trial", "done")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "studies" / "sample"
DEFAULT_STUDY = "sample"
DEFAULT_TITLE = "Picture study"
EXTERNAL_IDS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
EXTERNAL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
PROLIFIC_PID = re.compile(r"[0-9a-f]{24}")  # what Prolific's participant ids look like
# the BrowserState secret travels to the page, so it only obfuscates; it stays fixed so that saved
# participant tokens survive a restart of the app
BROWSER_KEY = "stya2k-study"
ARRIVED = "#arrived"  # the browser state's key of its links' marks (no study name starts with '#')
SCREENED = "screened"  # the browser state's mark of a link whose screen stayed too small (Store.record_screen_out)
# the page shows no footer (API and Gradio links), keeps narrow margins on phones, and sets its title
PAGE_HEAD = ("<style>footer { display: none !important; } "
             "@media (max-width: 640px) { .gradio-container .main.app { padding: 8px; } "
             "#study-trial > .html-container { padding-left: 0; padding-right: 0; } }</style>")
PAGE_JS = "const set = () => { if (props.value) document.title = props.value; }; watch('value', set); set();"


def instructions(settings):
    """The instructions (Markdown) for the study's settings (Store.study): its references, practice and checks."""
    references = (", and in small, the photo and the painting they started from"
                  if settings["show_references"] else "")
    practice = settings["practice_trials"]
    checks = ["one of their pictures is upside down, so choose the other one"] if settings["catch_rate"] else []
    if settings["attention_rate"]:
        checks.append("the question tells you which button to press, so press that one")
    return ("## How it works\n"
            f"Each page shows two pictures: the same photo painted in the same style by two different programs{references}. "
            "Answer the question above the pictures: click the button under the better one (**Left is better** or "
            "**Right is better**; on a phone held upright, **Top** or **Bottom**). If you really cannot choose, click "
            "**Tie**; if neither picture looks acceptable, click **Both bad**. With a keyboard: **←** left, **→** right, "
            "**↓** tie.\n\n"
            + (f"The first {'pair is' if practice == 1 else f'{practice} pairs are'} for practice and not counted. "
               if practice else "")
            + "Go with your impression; there are no right or wrong answers. "
            + (f"A few pairs are checks: {'; or '.join(checks)}. " if checks else "")
            + "Your answers are saved as you go: if you reload the page, you continue where you stopped.")


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
        registered = store.stimuli(spec["name"])
    except StudyError:  # no such study yet
        registered = []
    if len(registered) == expected:
        folder = Path(store.study(spec["name"])["images_dir"])
        gone = [s["path"] for s in registered if not (folder / s["path"]).is_file()]
        if gone:  # registered before the sample was re-rendered: the store keeps a study's images fixed
            print(f"warning: this database's sample study shows images that {folder} no longer holds ({gone[0]} "
                  "and others), so its trials cannot be shown: start the app on a new database (--data-dir or "
                  "DATABASE_URL) to try the current sample", file=sys.stderr)
        return
    consent = (SAMPLE / "consent.md").read_text(encoding="utf-8")
    try:
        store.create_study(spec["name"], consent, spec["n_trials"], spec["catch_rate"], SAMPLE / "images",
                           questions=parse(spec["questions"]), practice_trials=spec["practice_trials"],
                           attention_rate=spec["attention_rate"], feedback_question=FEEDBACK_QUESTION,
                           debrief=(SAMPLE / "debrief.md").read_text(encoding="utf-8"))
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


def arrival_mark(saved, study, who):
    """What the browser saved of this link's arrivals: "opened", "declined" or None (none counted; a
    browser that saved a participant of the link before arrivals were recorded counts as opened)."""
    marks = saved.get(ARRIVED) if isinstance(saved, dict) else None
    mark = marks.get(f"{study} {who}") if isinstance(marks, dict) else None
    return mark or ("opened" if saved_participant(saved, study, who) else None)


def declined_html(no_consent_code, prolific):
    """What a participant who does not consent sees: only the decline was recorded; Prolific's way back."""
    text = ("<h2>You did not agree to take part</h2><p>None of your answers were recorded, only that you "
            "declined, and when. You can close this page.</p><p>Clicked by mistake? Open the study's link in a "
            "private window to see the consent form again.</p>")
    return text + way_back(no_consent_code, prolific)


def build_study_page(arena, app, votes):
    """Lays out the study page inside the current route of `app` and wires its events.
    votes: the demo.study_vote.StudyVotes whose route takes the trials' votes."""
    store = arena.store
    settings = arena.settings
    enrolments = EnrolLimits(settings.enrolments_per_hour)
    itemised = HourlyLimit(ARRIVALS_PER_HOUR)  # arrivals recorded one by one; beyond, counted only
    default_study = None if settings.study_only else DEFAULT_STUDY
    session = gr.State(None)  # server-side: study, external ids, their hash, title, screen, participant token
    # {study: {participant, who}, ARRIVED: {"study who": "opened", "declined" or "screened"}}
    saved = gr.BrowserState({}, storage_key=BROWSER_KEY, secret=BROWSER_KEY)
    gr.Navbar(visible="hidden")  # participants see the study only ("hidden": False would not hide it)
    title = gr.HTML(None, html_template="", js_on_load=PAGE_JS, head=PAGE_HEAD, elem_id="study-title",
                    visible="hidden")
    message = gr.Markdown()
    with gr.Column(visible=False) as consent_box:
        consent = gr.Markdown()
        with gr.Row():
            agree = gr.Button("I agree", variant="primary")
            decline = gr.Button("I do not agree")
    with gr.Column(visible=False) as small_box:
        recheck = gr.Button("Check again", variant="primary")
    with gr.Column(visible=False) as instructions_box:  # the instructions themselves are the message
        start = gr.Button("Start", variant="primary")
    trial = gr.HTML(None, html_template="${value ? value.html : ''}", css_template=TRIAL_CSS, js_on_load=TRIAL_JS,
                    elem_id="study-trial")
    done = gr.HTML()
    viewport = gr.JSON(None, visible=False)  # filled by MEASURE in the browser
    boxes = {"consent": consent_box, "small": small_box, "instructions": instructions_box}
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

    def prolific(state):
        return IDENTITY_KEY in state["external_ids"]

    def done_screen(state, participant):
        return screen(None, state, done=votes.done(state["study"], participant, prolific(state)))

    def next_screen(state):
        """The participant's next unanswered trial, or the completion code when none is left."""
        try:
            shown = votes.screen(state["study"], state["participant"], prolific(state))
        except StudyError:  # a token this database does not know (say, a new database): enrol again
            return consent_screen({**state, "participant": None})
        return screen(None, state, **shown)  # shown: {"trial": view} or {"done": html}

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
        return {"study": study, "external_ids": external_ids, "who": who, "title": spec["title"], "screen": None,
                "participant": saved_participant(browser, study, who)}

    def arrive(state, browser, event, request):
        """Record the arrival `event` ("opened", "declined", SCREENED) of the page's link unless this browser has
        (one by one within the per-address limit, else counted only) -> what the browser keeps then.
        A decline counts only in a browser whose opening counted, so declines never outnumber openings."""
        study, who = state["study"], state["who"]
        if arrival_mark(browser, study, who) != (None if event == "opened" else "opened"):
            return browser  # counted before in this browser (or, for a decline, its opening was not)
        if itemised.allow(f"{study}\0{event}", peer(request)):
            if event == SCREENED:
                store.record_screen_out(study, state["screen"], who or None)
            else:
                store.record_arrival(study, event, who)
        elif event != SCREENED:  # screen-outs beyond the per-address limit are not recorded (see the README)
            store.count_arrival(study, event)
        browser = browser if isinstance(browser, dict) else {}
        marks = browser.get(ARRIVED) if isinstance(browser.get(ARRIVED), dict) else {}
        return {**browser, ARRIVED: {**marks, f"{study} {who}": event}}

    def open_page(browser, measured, request: gr.Request):
        """On page load: check the link and record its opening, then resume the saved participant, show a
        finished one their code, one who declined or was screened out that screen again, ask a screen
        too small for the study to grow, or ask for consent."""
        try:
            state = link_state(browser, request)
        except LinkError as exc:
            return {**screen(None, None, message=str(exc)), saved: browser}
        kept = arrive(state, browser, "opened", request)
        if state["participant"]:
            return {**next_screen(state), saved: kept}
        finished = store.finished_participant(state["study"], state["external_ids"])
        if finished:
            return {**done_screen(state, finished), saved: kept}
        mark = arrival_mark(kept, state["study"], state["who"])
        if mark == "declined":
            return {**declined_screen(state), saved: kept}
        if mark == SCREENED:
            return {**screened_screen(state), saved: kept}
        state, got = checked(state, measured, request)
        if got is None:
            return {**consent_screen(state), saved: kept}
        return {**screen("small", state, message=too_small_text(got, votes.settings(state["study"]))), saved: kept}

    def checked(state, measured, request):
        """(state with the screen measured, shortfall: None when it fits the study, else each image's width there)."""
        state = {**state, "screen": read_screen(measured, request.headers.get("user-agent"))}
        return state, shortfall(state["screen"], votes.settings(state["study"]))

    def screened_screen(state):
        return screen(None, state, done=screened_out_html(votes.settings(state["study"])["screen_out_code"],
                                                          prolific(state)))

    def check_again(browser, measured, request: gr.Request):
        """The screen measured again: consent if it fits now, else the participant is screened out (once per browser)."""
        try:
            state = link_state(browser, request)
        except LinkError as exc:
            return {**screen(None, None, message=str(exc)), saved: browser}
        if state["participant"] or arrival_mark(browser, state["study"], state["who"]) != "opened":
            return open_page(browser, measured, request)  # enrolled, declined or screened out meanwhile
        state, got = checked(state, measured, request)
        if got is None:
            return {**consent_screen(state), saved: browser}
        return {**screened_screen(state), saved: arrive(state, browser, SCREENED, request)}

    def give_consent(state, browser, request: gr.Request):
        """Enrol the participant (within the enrolment limits) and keep the token in the browser."""
        if not state:
            raise gr.Error("Open the study from its link first (or reload the page).")
        token = state["participant"]  # a second click enrols nobody new
        if token is None:
            refused = enrolments.check(state["study"], peer(request))
            if refused:
                raise gr.Error(refused)
            try:
                token = store.new_participant(state["study"], state["external_ids"], screen=state.get("screen"))
            except StudyError as exc:  # a full study; one without stimuli: the message says what to do
                raise gr.Error(str(exc)) from exc
        browser = {**(browser if isinstance(browser, dict) else {}),
                   state["study"]: {"participant": token, "who": state["who"]}}
        return {**screen("instructions", {**state, "participant": token},
                         message=instructions(votes.settings(state["study"])),
                         trial=votes.ahead(state["study"], token)), saved: browser}

    def declined_screen(state):
        return screen(None, state, done=declined_html(store.study(state["study"])["no_consent_code"], prolific(state)))

    def refuse_consent(state, browser, request: gr.Request):
        """Record the decline (once per browser) and say how to leave."""
        if not state:
            raise gr.Error("Open the study from its link first (or reload the page).")
        return {**declined_screen(state), saved: arrive(state, browser, "declined", request)}

    def begin(state):
        if not state or not state.get("participant"):
            raise gr.Error("Agree to the consent form first (reload the page to see it).")
        return next_screen(state)

    # outside Gradio's queue: each event is one POST answered at once (run/predict), with no event stream
    # and no queue that tells every waiting page its place whenever the queue moves (with hundreds of
    # participants arriving at once, that made a page load several times dearer). They are short
    # database calls, which never wait behind a stylisation.
    study_events = {"queue": False, **PAGE_EVENT}
    app.load(open_page, [saved, viewport], [*outputs, saved], js=MEASURE, api_name="study_open", **study_events)
    recheck.click(check_again, [saved, viewport], [*outputs, saved], js=MEASURE, api_name="study_recheck",
                  **study_events)
    agree.click(give_consent, [session, saved], [*outputs, saved], api_name="study_agree", **study_events)
    decline.click(refuse_consent, [session, saved], [*outputs, saved], api_name="study_decline", **study_events)
    start.click(begin, [session], outputs, api_name="study_start", **study_events)
