"""The study's votes: one plain HTTP route, POST study-vote, that the trial's own script calls
(demo.study_trial), outside Gradio's event queue (whose path per event was most of a vote's server CPU).

Every trial the server sends carries a ticket: the study, the participant token, the trial token,
whether the participant came from Prolific and when the server sent the trial (ms since the epoch),
signed with a key derived from the database's salt, so any app worker on the database takes it
(deploy/) and no one can vote with a ticket the server did not issue. The page posts
{"ticket", "choice", "client_ms"} and gets back what to show next: {"trial": view} (the participant's
next trial), {"done": html} (the completion code), or {"error": message} with status 400 (a request the
page never sends), 410 (the database does not know the participant: reload the page) or 429 (a rate
limit; the same trial may be answered again). A ticket whose trial is no longer the participant's next
one (answered in another window, or sent again after a lost answer) records nothing: the answer is
the next trial with a notice that says so. server_time_ms runs from the server sending the trial to
the vote arriving (the clocks of workers on one host agree; across hosts, keep them synchronised).
A trial's view carries its question (an attention check's says which button to press), its place
("Practice trial 1 of 1", then "Trial 1 of N") and, when the study shows them, the addresses of its
content photo and style painting. The completion screen shows the study's debrief and, when the study
asks one, its feedback question, whose answer the page posts to POST study-feedback with a ticket of
its own ({"ticket", "text"} -> {"ok": message}, or {"error": message} with status 400, or 429 for a rate
limit: the vote limits apply to it)."""
import html
import json
import time
import urllib.parse

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from study.questions import of_study
from study.schema import CHOICES, FEEDBACK_CHARS
from study.store import StudyError

from .security import peer
from .signing import Signer, b64, unb64
from .study_trial import FEEDBACK_ROUTE, ROUTE, ahead_html, instruction, trial_html

PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc="
MAX_RESPONSE_MS = 3_600_000  # a browser's response time above an hour is not believed
PRELOAD_TRIALS = 2  # the trials after the one shown whose pictures the page fetches while it is shown
ANSWERED = ("That pair had been answered already (in another window, or your answer reached us twice), "
            "so this answer was not recorded. Here is your next pair.")
BAD_REQUEST = "This answer could not be read, so it was not recorded: reload the page."
UNKNOWN = ("This study's database does not know you (it may have been reset), so the answer was not recorded: "
           "reload the page.")


def prolific_link(code, text):
    url = PROLIFIC_COMPLETE + urllib.parse.quote(code, safe="")
    return f'<p><a href="{html.escape(url)}" class="prolific-return">{text}</a></p>'


def way_back(code, prolific):
    """The way back to Prolific of a participant who leaves before the trials: the link with `code` (or the
    advice to return the study without one); nothing off Prolific."""
    if prolific and code:
        return prolific_link(code, "Return to Prolific") + f"<p>(or enter the code <b>{html.escape(code)}</b> there).</p>"
    return "<p>On Prolific, return the study (\"I don't want to take part\").</p>" if prolific else ""


def paragraphs(text):
    """Plain text (blank lines between paragraphs) as escaped HTML paragraphs."""
    return "".join(f"<p>{html.escape(p.strip())}</p>" for p in text.split("\n\n") if p.strip())


def done_html(code, prolific, debrief=None, feedback=None):
    """The completion code, with the link back to Prolific when the participant came from there, the
    study's debrief (plain text) and `feedback`: None, or (question, ticket) for the optional comment form."""
    text = ("<h2>Thank you!</h2><p>You have answered every pair. "
            f"Your completion code is <b>{html.escape(code)}</b>.</p>")
    if prolific:
        text += prolific_link(code, "Return to Prolific to complete the study") + "<p>(or enter the code there).</p>"
    if feedback:
        question, ticket = feedback
        text += (f'<form class="feedback" data-ticket="{html.escape(ticket)}"><label><b>{html.escape(question)}</b>'
                 f'<textarea name="feedback" maxlength="{FEEDBACK_CHARS}" rows="4"></textarea></label>'
                 '<button type="submit">Send comment</button><p class="sent" role="status" hidden></p></form>')
    if debrief:
        text += "<h3>About this study</h3>" + paragraphs(debrief)
    return text


def client_ms(value):
    """The browser's response time if it is believable (an integer from 0 to an hour), else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_RESPONSE_MS
    return value if ok else None


class StudyVotes:
    """The participant's next screen (`screen`), the votes posted to ROUTE (`vote`) and the route.
    limits: the demo.limits.VoteLimits every vote passes."""

    def __init__(self, store, images, limits):
        self.store, self.images, self.limits = store, images, limits
        self._signer = Signer(store, "study-votes")  # the same in every worker on the database
        self._feedback_signer = Signer(store, "study-feedback")
        self._settings = {}  # study -> Store.study (a study's settings never change once created)

    def ticket(self, study, participant, trial, prolific):
        """The signed ticket of a trial sent now."""
        return self._signer.sign(
            b64(json.dumps([study, participant, trial, bool(prolific), time.time_ns() // 1_000_000]).encode()))

    def read_ticket(self, ticket):
        """(study, participant, trial, prolific, sent at in ms) of a ticket this database's server issued, else None."""
        payload = self._signer.verify(ticket)
        if payload is None:
            return None
        return tuple(json.loads(unb64(payload)))

    def settings(self, study):
        """The study's settings (Store.study), read once."""
        found = self._settings.get(study)
        if found is None:
            found = self._settings[study] = self.store.study(study)
        return found

    def done(self, study, participant, prolific):
        """The completion screen's HTML (done_html) of a participant who answered every trial."""
        spec = self.settings(study)
        feedback = spec["feedback_question"] and (spec["feedback_question"], self._feedback_signer.sign(
            b64(json.dumps([study, participant]).encode())))
        return done_html(self.store.completion_code(participant), prolific, spec["debrief"], feedback)

    def screen(self, study, participant, prolific):
        """What the participant sees next: {"trial": view} of their first unanswered trial, or {"done": html}.
        StudyError for a participant this database does not know."""
        return self._next(study, participant, prolific, self.store.remaining_trials(participant), "")

    def ahead(self, study, participant):
        """The instructions screen's trial field: {"html": ahead_html} of the pictures of the participant's first
        trial and the PRELOAD_TRIALS after it, fetched while the instructions are read."""
        first = self.store.remaining_trials(participant)[:1 + PRELOAD_TRIALS]
        return {"html": ahead_html(self.images.preload(study, participant, first, self.settings(study)["show_references"]))}

    def _next(self, study, participant, prolific, remaining, notice):
        if not remaining:
            return {"done": self.done(study, participant, prolific)}
        shown, spec = remaining[0], self.settings(study)

        def side(trial, name):
            return self.images.url(study, participant, trial["token"], name, trial[name])

        def references(trial):
            return {kind: self.images.reference_url(study, participant, trial["left"], kind) if spec["show_references"]
                    else None for kind in ("content", "style")}
        (left, width, height), (right, _, _) = side(shown, "left"), side(shown, "right")
        if shown["practice"]:
            number, total = shown["position"] + 1, shown["practice_trials"]
            progress = f"Practice trial {number} of {total}"
        else:
            number, total = shown["position"] - shown["practice_trials"] + 1, shown["n_trials"]
            progress = f"Trial {number} of {total}"
        question = instruction(shown["instructed"]) if shown["instructed"] else of_study(spec)[shown["question"]]
        view = {"trial": shown["token"], "number": number, "total": total, "progress": progress, "question": question,
                "practice": shown["practice"], "left": left, "right": right, "width": width, "height": height,
                **references(shown), "notice": notice,
                "next": self.images.preload(study, participant, remaining[1:1 + PRELOAD_TRIALS], spec["show_references"]),
                "ticket": self.ticket(study, participant, shown["token"], prolific)}
        return {"trial": {**view, "html": trial_html(view)}}

    def vote(self, body, address):
        """(HTTP status, JSON answer) for the posted `body` from the network `address`; see the module."""
        ticket = self.read_ticket(body.get("ticket")) if isinstance(body, dict) else None
        if ticket is None:
            return 400, {"error": BAD_REQUEST}
        if body.get("choice") not in CHOICES:
            return 400, {"error": f"Choose one of {', '.join(CHOICES)}."}
        study, participant, trial, prolific, sent_ms = ticket
        refused = self.limits.check(participant, address)
        if refused:
            return 429, {"error": refused}
        server_ms = max(0, time.time_ns() // 1_000_000 - sent_ms)
        try:
            stored, remaining = self.store.answer_next(participant, trial, body["choice"],
                                                       client_ms(body.get("client_ms")), server_ms)
        except StudyError:
            return 410, {"error": UNKNOWN}
        return 200, self._next(study, participant, prolific, remaining, "" if stored else ANSWERED)

    def feedback(self, body, address):
        """(HTTP status, JSON answer) for a posted feedback `body` from the network `address`; see the module."""
        payload = self._feedback_signer.verify(body.get("ticket")) if isinstance(body, dict) else None
        if payload is None or not isinstance(body.get("text"), str):
            return 400, {"error": BAD_REQUEST}
        _, participant = json.loads(unb64(payload))
        refused = self.limits.check(participant, address)
        if refused:
            return 429, {"error": refused}
        try:
            self.store.save_feedback(participant, body["text"])
        except StudyError as exc:
            return 400, {"error": f"Your comment was not saved: {exc}."}
        return 200, {"ok": "Thank you: your comment is saved (sending it again replaces it)."}

    def route(self):
        """The starlette route taking POST study-vote."""
        return _json_route(ROUTE, self.vote)

    def feedback_route(self):
        """The starlette route taking POST study-feedback."""
        return _json_route(FEEDBACK_ROUTE, self.feedback)


def _json_route(path, answer):
    """A POST route whose JSON body goes to answer(body, address) -> (status, JSON answer), in a thread."""
    async def post(request):
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": BAD_REQUEST}, 400)
        status, reply = await run_in_threadpool(answer, body, peer(request))
        return JSONResponse(reply, status, headers={"Cache-Control": "no-store"})
    return Route(f"/{path}", post, methods=["POST"])
