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
the vote arriving (the clocks of workers on one host agree; across hosts, keep them synchronised)."""
import base64
import html
import json
import time
import urllib.parse

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from study.schema import CHOICES
from study.store import StudyError

from .signing import Signer, b64
from .study_trial import ROUTE, trial_html

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


def done_html(code, prolific):
    """The completion code, with the link back to Prolific when the participant came from there."""
    text = ("<h2>Thank you!</h2><p>You have answered every pair. "
            f"Your completion code is <b>{html.escape(code)}</b>.</p>")
    if prolific:
        text += prolific_link(code, "Return to Prolific to complete the study") + "<p>(or enter the code there).</p>"
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

    def ticket(self, study, participant, trial, prolific):
        """The signed ticket of a trial sent now."""
        return self._signer.sign(
            b64(json.dumps([study, participant, trial, bool(prolific), time.time_ns() // 1_000_000]).encode()))

    def read_ticket(self, ticket):
        """(study, participant, trial, prolific, sent at in ms) of a ticket this database's server issued, else None."""
        payload = self._signer.verify(ticket)
        if payload is None:
            return None
        return tuple(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))

    def screen(self, study, participant, prolific, notice=""):
        """What the participant sees next: {"trial": view} of their first unanswered trial, or {"done": html}.
        StudyError for a participant this database does not know."""
        return self._next(study, participant, prolific, self.store.remaining_trials(participant), notice)

    def _next(self, study, participant, prolific, remaining, notice=""):
        if not remaining:
            return {"done": done_html(self.store.completion_code(participant), prolific)}
        shown = remaining[0]

        def side(trial, name):
            return self.images.url(study, participant, trial["token"], name, trial[name])
        (left, width, height), (right, _, _) = side(shown, "left"), side(shown, "right")
        number, total = shown["position"] + 1, shown["n_trials"]
        view = {"trial": shown["token"], "number": number, "total": total, "progress": f"Trial {number} of {total}",
                "left": left, "right": right, "width": width, "height": height, "notice": notice,
                "next": self.images.preload(study, participant, remaining[1:1 + PRELOAD_TRIALS]),
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

    def route(self):
        """The starlette route taking POST study-vote."""
        async def post(request):
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"error": BAD_REQUEST}, 400)
            status, answer = await run_in_threadpool(self.vote, body, request.client.host if request.client else "")
            return JSONResponse(answer, status, headers={"Cache-Control": "no-store"})
        return Route(f"/{ROUTE}", post, methods=["POST"])
