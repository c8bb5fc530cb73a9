"""The admin results page (/results): the live analysis of a study (every table per question), the
participants' feedback and the study's debrief, and its raw votes as CSV.

Disabled unless the app runs with the environment variable ADMIN_PASSWORD set. The event handler
checks the password on every call, so the API refuses exactly as the page does; after a few wrong
passwords from one address, that address is locked out for a while (demo.security.Lockout).
The CSV export is written with private permissions into Gradio's cache, whose cleanup deletes it, in a
folder that only the browser that asked for it may download from (demo.browser_key)."""
import hmac
import math
import os
from pathlib import Path

import gradio as gr
import pandas as pd

from study.analysis import AnalysisError, Rules, analyze
from study.store import STUDY_NAME, StudyError, load_participants, load_votes

from .browser_key import browser_key, private_folder
from .security import PAGE_EVENT, Lockout, peer
from .study_page import DEFAULT_STUDY

NO_CSV = ("\n\nThe CSV of the votes is made for the browser that asks for it: open this page in a browser "
          "(a client must load the page or /config first, and keep its cookie) to download it.")
DISABLED = "The results view is disabled: start the app with the environment variable ADMIN_PASSWORD set."
MIN_PASSWORD = 12  # the app refuses to start with a shorter ADMIN_PASSWORD
MAX_PASSWORD = 256


def check_password(expected, given, lockout, address):
    """Raise gr.Error unless `given` is the admin password (constant-time comparison) and `address`
    is not locked out after too many wrong ones."""
    if not expected:
        raise gr.Error(DISABLED)
    wait_s = lockout.wait_s(address)
    if wait_s:
        raise gr.Error(f"Too many wrong passwords from your network: try again in {math.ceil(wait_s / 60)} min.")
    if (not isinstance(given, str) or len(given) > MAX_PASSWORD
            or not hmac.compare_digest(given.encode(), expected.encode())):
        lockout.failed(address)
        raise gr.Error("Wrong password: type the ADMIN_PASSWORD the app was started with.")
    lockout.succeeded(address)


def private_csv(votes, folder, name, key):
    """votes as CSV in a new folder under `folder` (Gradio's cache) that only this user can read, and
    that the file route serves to the browser with `key` only."""
    path = Path(folder) / private_folder(key) / name
    path.parent.mkdir(mode=0o700, parents=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", newline="") as f:
        votes.to_csv(f, index=False)
    return path


def summary_markdown(study, r, debrief):
    rate = "n/a (no catch trials)" if math.isnan(r.catch_failure_rate) else f"{r.catch_failure_rate:.3g}"
    attention = "n/a" if math.isnan(r.attention_failure_rate) else f"{r.attention_failure_rate:.3g}"
    return (f"**Study `{study}`** (live: participants still voting are kept): {r.flow_sentence} "
            f"Catch failure rate {rate}; attention checks: {r.n_attention_votes} answered, failure rate {attention}; "
            f"{r.n_practice_votes} practice votes. The statistics, per question ({', '.join(r.questions)}), leave out "
            "practice, catch and attention-check votes and excluded participants; the CSV has every vote."
            + (f"\n\n**Debrief shown at the end:** {debrief}" if debrief else ""))


def build_results_page(arena):
    """Lays out the results page inside the current route and wires its one event."""
    expected = arena.settings.admin_password
    lockout = Lockout()
    gr.Navbar(visible="hidden")
    gr.Markdown("# Study results")
    if not expected:
        gr.Markdown(DISABLED)
    with gr.Row():
        password = gr.Textbox(label="Admin password", type="password", max_length=MAX_PASSWORD)
        study = gr.Textbox(label="Study", value=DEFAULT_STUDY, max_length=100)
        max_failures = gr.Number(0, label="Exclude participants failing more catch trials than", precision=0,
                                 minimum=0)
    show = gr.Button("Show results", variant="primary")
    summary = gr.Markdown()
    with gr.Column(visible=False) as tables:
        gr.Markdown("### Method strengths (Bradley-Terry, participant-bootstrap t 95% CI)")
        strengths = gr.Dataframe(interactive=False)
        gr.Markdown("### Pairwise win rates (decisive votes, sign-flip test over participants: 95% CI, Holm-adjusted p)")
        pairs = gr.Dataframe(interactive=False)
        gr.Markdown("### Position bias (P(left chosen) over decisive votes, sign-flip test over participants, 95% CI)")
        position = gr.Dataframe(interactive=False)
        gr.Markdown("### Per participant")
        catch = gr.Dataframe(interactive=False)
        gr.Markdown("### Feedback (the free-text answers at the end)")
        feedback = gr.Dataframe(interactive=False)
    csv = gr.File(label="Raw votes (CSV)")

    def results(given, name, max_catch_failures, request: gr.Request):
        check_password(expected, given, lockout, peer(request))
        if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
            raise gr.Error("Type a study name: letters, digits, '_', '-' or '.'.")
        try:
            votes, participants = load_votes(arena.store, name), load_participants(arena.store, name)
        except StudyError as exc:
            raise gr.Error(str(exc)) from exc
        key = browser_key(request.cookies)
        path = str(private_csv(votes, csv.GRADIO_CACHE, f"{name}-votes.csv", key)) if key else None
        no_csv = "" if key else NO_CSV
        try:
            r = analyze(votes, participants, Rules(int(max_catch_failures or 0), keep_incomplete=True))
        except AnalysisError as exc:
            return f"**Study `{name}`**: {exc}.{no_csv}", gr.Column(visible=False), None, None, None, None, None, path
        return (summary_markdown(name, r, arena.store.study(name)["debrief"]) + no_csv, gr.Column(visible=True),
                r.strengths.round(3), r.pairs.round(3), pd.DataFrame([r.position]).round(3), r.participants,
                r.feedback, path)

    show.click(results, [password, study, max_failures],
               [summary, tables, strengths, pairs, position, catch, feedback, csv], api_name="results", **PAGE_EVENT)
