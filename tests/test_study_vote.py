"""demo.study_vote in process, on a real SQLite database holding the sample study: what each posted vote
stores and answers (the launched app's route: test_study_flow, test_hostile, test_integrity). Fast enough
for mutation testing (bench.mutation) to run for every mutant of the module."""
import json
import re
import time
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from demo.limits import VoteLimits
from demo.security import peer
from demo.signing import b64, unb64
from demo.study_images import StudyImages
from demo.study_page import REPO, SAMPLE, register_sample
from demo.study_trial import FEEDBACK_ROUTE, ROUTE, ahead_html, instruction
from demo.study_vote import (
    ANSWERED,
    BAD_REQUEST,
    MAX_RESPONSE_MS,
    PRELOAD_TRIALS,
    PROLIFIC_COMPLETE,
    UNKNOWN,
    StudyVotes,
    client_ms,
    done_html,
    way_back,
)
from study.prepare import register
from study.questions import of_study
from study.schema import FEEDBACK_CHARS, participants
from study.store import Store, load_votes

STUDY = "sample"
PID = {"PROLIFIC_PID": "5f0c1d2e3a4b5c6d7e8f9a01"}
ADDRESS = "203.0.113.7"


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "votes.db") as db:
        register_sample(db)
        yield db


def votes_of(store, interval_ms=0, per_minute=0):
    cache = Path(store.engine.url.database).parent / "cache"
    return StudyVotes(store, StudyImages(store, cache), VoteLimits(interval_ms, per_minute))


def answer(votes, view, choice, client=1234):
    return votes.vote({"ticket": view["ticket"], "choice": choice, "client_ms": client}, ADDRESS)


def test_every_vote_stores_the_choice_on_the_trial_shown_and_answers_the_next(store):
    """A participant's whole study: each view is the participant's next trial (its place, question, pictures
    by address and the next trials' addresses), each vote stores that trial's choice with the browser's and
    the server's times, and the last answer is the completion screen with the code and the way back."""
    votes = votes_of(store)
    participant = store.new_participant(STUDY, PID)
    spec, trials = store.study(STUDY), store.remaining_trials(participant)
    wording = of_study(spec)
    view = votes.screen(STUDY, participant, True)["trial"]
    choices = ["left", "right", "tie", "both_bad"]
    for i, trial in enumerate(trials):
        assert view["trial"] == trial["token"] and view["practice"] == trial["practice"] and view["notice"] == ""
        if trial["practice"]:
            assert view["progress"] == f"Practice trial {trial['position'] + 1} of {trial['practice_trials']}"
        else:
            assert view["progress"] == f"Trial {trial['position'] - trial['practice_trials'] + 1} of {trial['n_trials']}"
        question = instruction(trial["instructed"]) if trial["instructed"] else wording[trial["question"]]
        assert view["question"] == question and f">{question}<" in view["html"]
        for side in ("left", "right"):
            url, width, height = votes.images.url(STUDY, participant, trial["token"], side, trial[side])
            assert view[side] == url and (view["width"], view["height"]) == (width, height)
            assert f'src="{url}"' in view["html"]
        for kind in ("content", "style"):
            assert view[kind] == votes.images.reference_url(STUDY, participant, trial["left"], kind)
        assert view["next"] == votes.images.preload(STUDY, participant, trials[i + 1:i + 1 + PRELOAD_TRIALS], True)
        assert store.finished_participant(STUDY, PID) is None  # complete at the last answer, not before
        time.sleep(0.03 if i == 2 else 0)  # the third trial looked at for 30 ms at least
        status, reply = answer(votes, view, choices[i % 4], client=1000 + i)
        assert status == 200
        view = reply.get("trial")
    assert view is None and "Your completion code is" in reply["done"]
    assert store.finished_participant(STUDY, PID) == participant
    code = store.completion_code(participant)
    assert f"<b>{code}</b>" in reply["done"] and PROLIFIC_COMPLETE + code in reply["done"]
    stored = load_votes(store, STUDY)
    assert stored["trial"].tolist() == sorted(stored["trial"]) and len(stored) == len(trials)
    assert stored["choice"].tolist() == [choices[i % 4] for i in range(len(trials))]
    assert stored["response_time_ms"].tolist() == [1000 + i for i in range(len(trials))]
    assert stored["server_time_ms"].notna().all() and stored["server_time_ms"].between(0, 60_000).all()
    assert stored["server_time_ms"].iloc[2] >= 30
    assert votes.screen(STUDY, participant, False) == {"done": votes.done(STUDY, participant, False)}


def test_a_replayed_or_stale_ticket_records_nothing_and_shows_the_next_trial_with_a_notice(store):
    votes = votes_of(store)
    participant = store.new_participant(STUDY)
    first = votes.screen(STUDY, participant, False)["trial"]
    status, reply = answer(votes, first, "left")
    second = reply["trial"]
    assert status == 200 and second["notice"] == "" and second["trial"] != first["trial"]
    status, again = answer(votes, first, "right")  # the first trial's ticket once more
    assert status == 200 and again["trial"]["trial"] == second["trial"] and again["trial"]["notice"] == ANSWERED
    assert ANSWERED in again["trial"]["html"]
    assert load_votes(store, STUDY)["choice"].tolist() == ["left"]


@pytest.mark.parametrize("body", [None, [], "x", {}, {"choice": "left"}, {"ticket": "forged.ticket", "choice": "left"},
                                  {"ticket": 42, "choice": "left"}])
def test_a_body_without_a_ticket_this_server_issued_is_refused(store, body):
    votes = votes_of(store)
    assert votes.vote(body, ADDRESS) == (400, {"error": BAD_REQUEST})
    assert load_votes(store, STUDY).empty


def test_a_choice_outside_the_vocabulary_is_refused_and_the_trial_stays(store):
    votes = votes_of(store)
    participant = store.new_participant(STUDY)
    view = votes.screen(STUDY, participant, False)["trial"]
    for choice in ("LEFT", "", None, "both bad"):
        status, reply = answer(votes, view, choice)
        assert status == 400 and reply["error"].startswith("Choose one of left, right, tie, both_bad")
    assert load_votes(store, STUDY).empty
    assert votes.screen(STUDY, participant, False)["trial"]["trial"] == view["trial"]


def test_a_ticket_signed_by_another_database_or_for_an_unknown_participant(store, tmp_path):
    votes = votes_of(store)
    participant = store.new_participant(STUDY)
    view = votes.screen(STUDY, participant, False)["trial"]
    with Store(tmp_path / "other.db") as other:
        register_sample(other)
        assert votes_of(other).vote({"ticket": view["ticket"], "choice": "left"}, ADDRESS) == (400, {"error": BAD_REQUEST})
    forged = votes.ticket(STUDY, "no-such-participant", view["trial"], False)
    assert votes.vote({"ticket": forged, "choice": "left"}, ADDRESS) == (410, {"error": UNKNOWN})
    assert votes.read_ticket(view["ticket"])[:4] == (STUDY, participant, view["trial"], False)


def test_the_rate_limits_refuse_before_anything_is_stored(store):
    votes = votes_of(store, per_minute=2)
    participant = store.new_participant(STUDY)
    view = votes.screen(STUDY, participant, False)["trial"]
    view = answer(votes, view, "left")[1]["trial"]
    view = answer(votes, view, "left")[1]["trial"]
    status, reply = answer(votes, view, "left")
    assert status == 429 and "error" in reply and len(load_votes(store, STUDY)) == 2
    assert votes.vote({"ticket": view["ticket"], "choice": "left"}, "198.51.100.99")[0] == 200  # another address
    slow = votes_of(store, interval_ms=60_000)
    other, third = store.new_participant(STUDY), store.new_participant(STUDY)
    view = slow.screen(STUDY, other, False)["trial"]
    assert answer(slow, view, "right")[0] == 200
    assert answer(slow, slow.screen(STUDY, other, False)["trial"], "right")[0] == 429
    assert answer(slow, slow.screen(STUDY, third, False)["trial"], "right")[0] == 200  # another participant


@pytest.mark.parametrize("value, kept", [(0, 0), (1500, 1500), (MAX_RESPONSE_MS, MAX_RESPONSE_MS),
                                         (MAX_RESPONSE_MS + 1, None), (-1, None), (True, None), (2.5, None),
                                         ("900", None), (None, None)])
def test_only_a_believable_browser_time_is_kept(store, value, kept):
    assert client_ms(value) == kept
    votes = votes_of(store)
    participant = store.new_participant(STUDY)
    answer(votes, votes.screen(STUDY, participant, False)["trial"], "tie", client=value)
    stored = load_votes(store, STUDY)["response_time_ms"].iloc[0]
    assert pd.isna(stored) if kept is None else stored == kept


def finish(votes, participant):
    """Answers every trial of `participant` ("left"); returns the completion screen's HTML."""
    view = votes.screen(STUDY, participant, False)["trial"]
    while view:
        status, reply = answer(votes, view, "left")
        view = reply.get("trial")
    return reply["done"]


def feedback_ticket(done):
    """The feedback form's ticket on a completion screen."""
    return re.search(r'data-ticket="([^"]+)"', done)[1]


def test_feedback_is_kept_once_the_study_is_done_and_only_with_its_own_ticket(store):
    votes = votes_of(store, per_minute=100)
    participant = store.new_participant(STUDY)
    done = finish(votes, participant)
    ticket = feedback_ticket(done)
    assert votes.feedback({"ticket": ticket, "text": "y" * FEEDBACK_CHARS}, ADDRESS)[0] == 200  # the longest kept
    assert votes.feedback({"ticket": ticket, "text": "  the left ones were blurry "}, ADDRESS)[0] == 200
    assert votes.feedback({"ticket": ticket, "text": 5}, ADDRESS) == (400, {"error": BAD_REQUEST})
    assert votes.feedback({"ticket": "made.up", "text": "x"}, ADDRESS) == (400, {"error": BAD_REQUEST})
    assert votes.feedback(None, ADDRESS) == (400, {"error": BAD_REQUEST})
    status, reply = votes.feedback({"ticket": ticket, "text": "x" * (FEEDBACK_CHARS + 1)}, ADDRESS)
    assert status == 400 and reply["error"].startswith("Your comment was not saved: the feedback must be text")
    with store.engine.connect() as conn:
        assert conn.scalar(select(participants.c.feedback).where(participants.c.token == participant)) == \
            "the left ones were blurry"
    assert votes.feedback({"ticket": ticket, "text": "again"}, ADDRESS) == \
        (200, {"ok": "Thank you: your comment is saved (sending it again replaces it)."})
    early = store.new_participant(STUDY)  # a ticket for a participant with trials left
    early_ticket = votes._feedback_signer.sign(b64(json.dumps([STUDY, early]).encode()))
    assert votes.feedback({"ticket": early_ticket, "text": "x"}, ADDRESS) == \
        (400, {"error": "Your comment was not saved: feedback is taken once every trial has an answer."})


def test_feedback_passes_the_vote_limits_of_its_participant_and_address(store):
    votes = votes_of(store, per_minute=100)
    done = finish(votes, store.new_participant(STUDY))
    ticket = feedback_ticket(done)
    slow = votes_of(store, interval_ms=60_000)
    assert slow.feedback({"ticket": ticket, "text": "first"}, ADDRESS)[0] == 200
    status, reply = slow.feedback({"ticket": ticket, "text": "second"}, "198.51.100.99")  # the same participant
    assert status == 429 and list(reply) == ["error"] and reply["error"]
    other = feedback_ticket(finish(votes, store.new_participant(STUDY)))
    assert slow.feedback({"ticket": other, "text": "another participant"}, ADDRESS)[0] == 200
    crowded = votes_of(store, per_minute=1)
    assert crowded.feedback({"ticket": ticket, "text": "x"}, ADDRESS)[0] == 200
    status, reply = crowded.feedback({"ticket": other, "text": "y"}, ADDRESS)  # the same address
    assert status == 429 and list(reply) == ["error"]
    assert crowded.feedback({"ticket": other, "text": "y"}, "198.51.100.99")[0] == 200  # another address


def test_the_completion_screen_shows_the_debrief_and_the_feedback_question(store):
    votes = votes_of(store)
    participant = store.new_participant(STUDY)
    done = finish(votes, participant)
    spec = store.study(STUDY)
    assert spec["feedback_question"] in done and "<h3>About this study</h3>" in done
    assert PROLIFIC_COMPLETE not in done
    assert done_html("AB&C", False) == ("<h2>Thank you!</h2><p>You have answered every pair. "
                                        "Your completion code is <b>AB&amp;C</b>.</p>")
    assert done_html("AB&C", True, "Thanks.", ("Anything <odd>?", "t.k")) == (
        "<h2>Thank you!</h2><p>You have answered every pair. Your completion code is <b>AB&amp;C</b>.</p>"
        '<p><a href="https://app.prolific.com/submissions/complete?cc=AB%26C" class="prolific-return">'
        "Return to Prolific to complete the study</a></p><p>(or enter the code there).</p>"
        '<form class="feedback" data-ticket="t.k"><label><b>Anything &lt;odd&gt;?</b>'
        f'<textarea name="feedback" maxlength="{FEEDBACK_CHARS}" rows="4"></textarea></label>'
        '<button type="submit">Send comment</button><p class="sent" role="status" hidden></p></form>'
        "<h3>About this study</h3><p>Thanks.</p>")
    assert "<p>one</p><p>two &lt;b&gt;</p>" in done_html("C", False, "one\n\n\n two <b>\n")


def test_the_way_back_to_prolific():
    assert way_back("NO/CONSENT", True) == (
        '<p><a href="https://app.prolific.com/submissions/complete?cc=NO%2FCONSENT" class="prolific-return">'
        "Return to Prolific</a></p><p>(or enter the code <b>NO/CONSENT</b> there).</p>")
    assert way_back(None, True) == "<p>On Prolific, return the study (\"I don't want to take part\").</p>"
    assert way_back("X", False) == way_back(None, False) == ""


def test_the_instructions_fetch_the_first_trials_pictures(store):
    votes = votes_of(store)
    participant = store.new_participant(STUDY)
    first = store.remaining_trials(participant)[:1 + PRELOAD_TRIALS]
    urls = votes.images.preload(STUDY, participant, first, True)
    assert len(urls) == 4 * len(first) and votes.ahead(STUDY, participant) == {"html": ahead_html(urls)}


def test_tickets_carry_any_bytes_through_base64_without_padding():
    for n in range(40):
        data = bytes(range(256))[n:2 * n]
        assert "=" not in b64(data) and unb64(b64(data)) == data


def test_a_vote_ticket_is_no_feedback_ticket_and_back(store):
    votes = votes_of(store, per_minute=100)
    participant = store.new_participant(STUDY)
    first = votes.screen(STUDY, participant, False)["trial"]
    done = finish(votes, participant)
    ticket = feedback_ticket(done)
    assert votes.feedback({"ticket": first["ticket"], "text": "x"}, ADDRESS) == (400, {"error": BAD_REQUEST})
    assert votes.vote({"ticket": ticket, "choice": "left"}, ADDRESS) == (400, {"error": BAD_REQUEST})


def test_a_study_without_references_shows_none(store):
    spec = json.loads((SAMPLE / "study.json").read_text())
    store.create_study("plain", "Consent.", 4, 0.0, SAMPLE / "images", show_references=False)
    register(store, "plain", [REPO / p for p in spec["contents"]], [REPO / p for p in spec["styles"]], spec["methods"],
             SAMPLE / "images", spec["size"])
    votes = votes_of(store)
    participant = store.new_participant("plain")
    view = votes.screen("plain", participant, False)["trial"]
    assert view["content"] is view["style"] is None and "reference" not in view["html"]
    assert votes.ahead("plain", participant) == {"html": ahead_html(votes.images.preload(
        "plain", participant, store.remaining_trials(participant)[:1 + PRELOAD_TRIALS], False))}


def test_the_routes_take_json_from_the_clients_address_and_answer_uncached(store):
    """The two POST routes as starlette serves them: a body that is no JSON gets 400 with BAD_REQUEST; a vote
    and feedback reach StudyVotes with the client's address (the rate limit per address refuses the second)."""
    votes = votes_of(store, per_minute=1)
    client = TestClient(Starlette(routes=[votes.route(), votes.feedback_route()]))
    participant = store.new_participant(STUDY)
    view = votes.screen(STUDY, participant, False)["trial"]
    for path in (ROUTE, FEEDBACK_ROUTE):
        refused = client.post(f"/{path}", content=b"{not json")
        assert (refused.status_code, refused.json()) == (400, {"error": BAD_REQUEST})
        assert client.get(f"/{path}").status_code == 405
    sent = client.post(f"/{ROUTE}", json={"ticket": view["ticket"], "choice": "left", "client_ms": 900})
    assert sent.status_code == 200 and sent.headers["cache-control"] == "no-store" and "trial" in sent.json()
    assert load_votes(store, STUDY)["choice"].tolist() == ["left"]
    second = sent.json()["trial"]
    limited = client.post(f"/{ROUTE}", json={"ticket": second["ticket"], "choice": "left", "client_ms": 900})
    assert limited.status_code == 429 and limited.headers["cache-control"] == "no-store"
    again = {"ticket": second["ticket"], "choice": "left", "client_ms": 900}
    assert votes.vote(again, "testclient")[0] == 429  # the route's votes were counted on the client's address
    assert votes.vote(again, ADDRESS)[0] == 200
    feedback = client.post(f"/{FEEDBACK_ROUTE}", json={"ticket": "x", "text": "fine"})
    assert (feedback.status_code, feedback.json()) == (400, {"error": BAD_REQUEST})  # the body reached feedback()


def test_the_address_charged_is_the_connections_peer_or_none():
    """peer(): the client's address of a Starlette request (the vote routes) or a gr.Request (the events), "" when
    the transport gives none; the limits then charge every such request to that one address."""
    assert peer(Request({"type": "http", "client": ("198.51.100.2", 4321)})) == "198.51.100.2"
    assert peer(Request({"type": "http"})) == peer(gr.Request(Request({"type": "http"}))) == peer(None) == ""
    assert peer(gr.Request(client={"host": "203.0.113.5"})) == "203.0.113.5"
