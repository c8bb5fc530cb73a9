"""The study page (/study), its vote route (/study-vote) and the results page (/results) of the launched
app, over HTTP with gradio_client and plain POSTs, and once in a real headless Chromium. The client sends
the page's URL parameters with every request, as the browser's Gradio client does (httpx params)."""
import html
import io
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from gradio_client import Client
from PIL import Image
from playwright.sync_api import sync_playwright
from sqlalchemy import func, select

from bench.server import ROOT, App, post_vote
from demo.choices import CHOICE_LABELS
from demo.limits import ARRIVALS_PER_HOUR, VoteLimits
from demo.results_page import check_password
from demo.security import Lockout
from demo.study_images import StudyImages
from demo.study_page import SAMPLE, SCREEN, register_sample
from demo.study_vote import ANSWERED, BAD_REQUEST, UNKNOWN, StudyVotes
from study.analysis import Rules, participant_flow, participant_table
from study.prepare import register
from study.schema import arrival_counts, arrivals, participants, studies, trials
from study.store import Store, load_arrivals, load_participants, load_votes

from .test_study_vote import feedback_ticket

PASSWORD = "correct horse battery staple"
SPEC = json.loads((SAMPLE / "study.json").read_text())
N_TRIALS = SPEC["n_trials"]
SMALL = "small"  # a second study, with a Prolific completion code
SMALL_CODE = "C0MPL3TE"
LEAKS = ("a2k_free", "all2all_free", "A2K (", "all-to-all", "training-free", "catch")
IMAGE_URL = re.compile(r"study-image/[0-9a-f]{40}\.webp")
PID = "5f0c1d2e3a4b5c6d7e8f9a0b"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a fresh database that also holds SMALL (3 trials, made from the sample's images)."""
    data = tmp_path_factory.mktemp("study")
    with Store(data / "arena.db") as store:
        store.create_study(SMALL, "Small study: agree to go on.", n_trials=3, catch_rate=0, completion_code=SMALL_CODE,
                           images_dir=SAMPLE / "images")
        register(store, SMALL, [ROOT / SPEC["contents"][0]], [ROOT / SPEC["styles"][0]], SPEC["methods"],
                 SAMPLE / "images", SPEC["size"])
    server = App(data, "--with-study", env={"ADMIN_PASSWORD": PASSWORD, "VOTE_INTERVAL_MS": "0",  # votes at bot speed
                            "ENROLMENTS_PER_HOUR": "0"}).start()
    server.data = data
    yield server
    server.stop()


def store(server):
    return Store(server.data / "arena.db")


def connect(server, page="study", **params):
    return Client(server.url, verbose=False, httpx_kwargs={"params": {"page": page, **params}})


def screen(values):
    """The page's fields by name, and the trial's token and progress text (None and "" off trials)."""
    s = dict(zip(SCREEN, values))
    view = s["trial"]
    return {**s, "view": view, "trial": view and view["trial"], "progress": view["progress"] if view else ""}


def answered(answer):
    """The screen a vote's answer shows: the next trial, or the completion code in `done`."""
    return screen([answer.get("trial") if name == "trial" else answer.get(name, "") for name in SCREEN])


def open_page(client, saved=None):
    return screen(client.predict(saved or {}, None, api_name="/study_open"))


def arrive(client, saved=None, event="/study_open"):
    """A page load (or, event="/study_decline", "I do not agree") -> (its screen, what the browser keeps then)."""
    *values, kept = client.predict(saved or {}, *[None] * (event == "/study_open"), api_name=event)
    return screen(values), kept


def enrol(client, saved=None):
    """Consent, instructions and the practice trials (answered "tie"); returns (what the browser keeps, the
    first counted trial's screen)."""
    *_, saved = client.predict(saved or {}, api_name="/study_agree")
    s = screen(client.predict(api_name="/study_start"))
    while s["view"] and s["view"]["practice"]:
        status, answer = post_vote(client.src, s["view"]["ticket"], "tie", 500)
        assert status == 200, answer
        s = answered(answer)
    return saved, s


def vote(server, s, choice, client_ms=500):
    """Answer the trial on screen `s` as the page's script does -> the next screen."""
    status, answer = post_vote(server.url, s["view"]["ticket"], choice, client_ms)
    assert status == 200, answer
    return answered(answer)


def fetch(server, url):
    return urllib.request.urlopen(server.url + url).read()


def assert_blind(server, s):
    """Nothing in a screen names a method: not the text, not the image addresses, not the files' metadata."""
    assert not any(leak in json.dumps(s) for leak in LEAKS), s
    if s["view"]:
        references = [s["view"][kind][0] for kind in ("content", "style") if s["view"][kind]]
        for url in (s["view"]["left"], s["view"]["right"], *references, *s["view"]["next"]):
            assert IMAGE_URL.fullmatch(url)
            with Image.open(io.BytesIO(fetch(server, url))) as im:
                assert im.format == "WEBP" and not any(isinstance(v, str) for v in im.info.values())


def test_full_session_then_completion_code(server):
    client = connect(server)
    first = open_page(client)
    assert "Click **I agree**" in first["consent"] and not first["trial"]
    saved, s = enrol(client)
    participant = saved["sample"]["participant"]
    choices = ["left", "right", "tie", "both_bad"] * 3
    for i in range(N_TRIALS):
        assert f"Trial {i + 1} of {N_TRIALS}" in s["progress"]
        assert re.fullmatch(r"[\w-]{16,}", s["trial"]) and s["trial"] in s["view"]["html"]
        assert_blind(server, s)
        last = s
        s = vote(server, s, choices[i], client_ms=700 + i)
    with store(server) as db:
        code = db.completion_code(participant)
        votes = load_votes(db, "sample")
    assert f"completion code is <b>{code}</b>" in s["done"] and "prolific-return" not in s["done"]
    assert s["view"] is None
    assert votes["choice"].tolist()[-N_TRIALS:] == choices[:N_TRIALS]
    mine = votes.tail(N_TRIALS)
    assert mine["response_time_ms"].tolist() == [700 + i for i in range(N_TRIALS)]  # the browser's figure
    assert (mine["server_time_ms"] >= 0).all() and mine["participant"].nunique() == 1
    decided = mine[mine["choice"].isin(["left", "right"])]
    sides = decided["left_method"].where(decided["choice"] == "left", decided["right_method"])
    assert (decided["winner"] == sides).all()  # the side clicked is the side stored
    assert "completion code" in vote(server, last, "right")["done"]  # the last pair again: nothing changes
    with store(server) as db:
        assert load_votes(db, "sample")["choice"].tolist()[-N_TRIALS:] == choices[:N_TRIALS]


def test_reload_resumes_at_the_next_trial(server):
    client = connect(server)
    open_page(client)
    saved, s = enrol(client)
    *_, clicked_twice = client.predict(saved, api_name="/study_agree")
    assert clicked_twice == saved  # no second participant
    s = vote(server, s, "left")
    s = vote(server, s, "right")
    again = open_page(connect(server), saved)  # a new page load, with what the browser kept
    assert "Trial 3 of" in again["progress"] and again["trial"] == s["trial"] and not again["consent"]


def test_any_worker_on_the_database_takes_a_vote_for_the_next_trial_only(server, tmp_path):
    """Behind nginx (deploy/), a participant whose worker died sends the vote to another worker: a
    StudyVotes made on the same database takes its ticket, and the vote is stored with the time the
    server sent the trial. A ticket for a pair already answered (another window, or a vote sent again
    after a lost answer) stores nothing and answers the next pair with a notice; a ticket a server on
    another database issued, or one changed by a character, is refused."""
    client = connect(server, PROLIFIC_PID=PID[::-1])
    open_page(client)
    saved, first = enrol(client)
    participant = saved["sample"]["participant"]
    second = vote(server, first, "left")
    with store(server) as db:
        other_worker = StudyVotes(db, StudyImages(db, tmp_path / "served"), VoteLimits(0, 0))
        stale, answer = other_worker.vote({"ticket": first["view"]["ticket"], "choice": "right"}, "127.0.0.1")
        assert stale == 200 and answer["trial"]["trial"] == second["trial"] and answer["trial"]["notice"] == ANSWERED
        time.sleep(0.2)
        status, answer = other_worker.vote({"ticket": second["view"]["ticket"], "choice": "tie", "client_ms": 5},
                                           "127.0.0.1")
        assert status == 200 and answer["trial"]["progress"] == f"Trial 3 of {N_TRIALS}"
        assert not answer["trial"]["notice"]
        mine = load_votes(db, "sample").tail(2)
        assert db.progress(participant)["done"] == 3 and mine["choice"].tolist() == ["left", "tie"]  # + practice
        assert mine["server_time_ms"].iloc[1] >= 200 and mine["response_time_ms"].iloc[1] == 5
    with Store(tmp_path / "another.db") as another:
        foreign = StudyVotes(another, StudyImages(another, tmp_path / "other"), VoteLimits(0, 0))
        ticket = foreign.ticket("sample", participant, answer["trial"]["trial"], False)
    changed = answer["trial"]["ticket"]
    changed = changed[:5] + ("A" if changed[5] != "A" else "B") + changed[6:]
    for bad in (ticket, changed, "", "x.y"):
        assert post_vote(server.url, bad, "left") == (400, {"error": BAD_REQUEST})
    with store(server) as db:
        assert db.progress(participant)["done"] == 3


def test_a_vote_of_a_participant_the_database_does_not_know_asks_for_a_reload(server, tmp_path):
    """A ticket the server signed for a participant its database no longer holds (a reset database
    with the same STUDY_SALT, say): 410 and the message that says to reload; nothing stored."""
    with store(server) as db:
        before = len(load_votes(db, "sample"))
        ticket = StudyVotes(db, None, None).ticket("sample", secrets.token_urlsafe(16), secrets.token_urlsafe(16), False)
    assert post_vote(server.url, ticket, "left") == (410, {"error": UNKNOWN})
    with store(server) as db:
        assert len(load_votes(db, "sample")) == before


def test_prolific_participant_resumes_and_returns_to_prolific(server):
    link = {"study": SMALL, "PROLIFIC_PID": PID, "STUDY_ID": "a" * 24, "SESSION_ID": "b" * 24}
    client = connect(server, **link)
    assert "Small study" in open_page(client)["consent"]
    saved, s = enrol(client)
    for choice in ("left", "tie", "right"):
        s = vote(server, s, choice)
    assert f'href="https://app.prolific.com/submissions/complete?cc={SMALL_CODE}"' in s["done"]
    back = open_page(connect(server, **link))  # a third browser: the code at once, no consent
    assert SMALL_CODE in back["done"] and not back["consent"] and back["view"] is None
    raw = b"".join(p.read_bytes() for p in server.data.glob("arena.db*"))
    assert PID.encode() not in raw  # the database keeps salted hashes only


def test_another_browser_after_a_vote_starts_a_flagged_attempt(server):
    """The resume rule: the browser that saved the token resumes; another browser with the same PROLIFIC_PID
    starts a new attempt flagged in the votes (tests/test_attacks_votes.py: before the first vote too)."""
    link = {"study": SMALL, "PROLIFIC_PID": "0123456789abcdef01234567"}
    first = connect(server, **link)
    open_page(first)
    saved, s = enrol(first)
    s = vote(server, s, "left")
    assert "Trial 2 of 3" in open_page(connect(server, **link), saved)["progress"]  # the same browser resumes
    other = connect(server, **link)
    open_page(other)
    other_saved, t = enrol(other)
    assert other_saved[SMALL]["participant"] != saved[SMALL]["participant"]
    assert "Trial 1 of 3" in t["progress"]  # none of the first attempt's votes
    vote(server, t, "right")
    with store(server) as db:
        votes = load_votes(db, SMALL)
    assert votes["repeat_attempt"].tolist()[-2:] == [False, True]


def test_declining_is_counted_once_per_browser_and_gives_the_prolific_return_code(server):
    """An opening and a decline are recorded once per browser across reloads (the browser state marks
    them), with the time and, from a Prolific link, the salted PROLIFIC_PID hash only; no participant."""
    with store(server) as db:
        db.create_study("declinable", "Agree?", n_trials=2, catch_rate=0, images_dir=SAMPLE / "images",
                        no_consent_code="NOCONSENT", title="Pictures and paintings")
    client = connect(server, study="declinable", PROLIFIC_PID=PID)
    s, kept = arrive(client)
    assert s["title"] == "Pictures and paintings" and s["consent"] == "Agree?"
    assert arrive(client, kept) == (s, kept)  # a reload: nothing new
    s, declined = arrive(client, kept, "/study_decline")
    assert "did not agree" in s["done"] and "complete?cc=NOCONSENT" in s["done"] and not s["view"]
    assert arrive(client, declined, "/study_decline")[1] == declined  # a second click
    again, kept = arrive(client, declined)  # a reload after declining: the declined screen again
    assert "did not agree" in again["done"] and not again["consent"] and kept == declined
    plain = connect(server, study="declinable")
    _, kept = arrive(plain)
    s, _ = arrive(plain, kept, "/study_decline")
    assert "only that you declined" in s["done"] and "prolific" not in s["done"].lower()
    arrive(plain, {}, "/study_decline")  # a client that drops what the page saved: no opening of its own counted
    with store(server) as db, db.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(participants).join(studies).where(
            studies.c.name == "declinable")) == 0
        rows = conn.execute(select(arrivals.c.event, arrivals.c.external_key).join(studies).where(
            studies.c.name == "declinable").order_by(arrivals.c.id)).all()
        assert rows == [("opened", db.hash_id("PROLIFIC_PID", PID)), ("declined", db.hash_id("PROLIFIC_PID", PID)),
                        ("opened", None), ("declined", None)]
        counted = load_arrivals(db, "declinable")
    assert (counted.opened, counted.declined) == (2, 2)
    assert counted.declined_keys == {db.hash_id("PROLIFIC_PID", PID)}


def test_opening_a_link_with_another_prolific_id_keeps_the_saved_participant(server):
    """One browser, two Prolific ids (a shared computer): the second id's opening is marked beside the
    first id's saved participant, who resumes afterwards; no opening is counted twice."""
    first, second = "1" * 24, "2" * 24
    client = connect(server, study=SMALL, PROLIFIC_PID=first)
    saved, s = enrol(client, arrive(client)[1])
    vote(server, s, "left")
    with store(server) as db:
        before = load_arrivals(db, SMALL).opened
    _, kept = arrive(connect(server, study=SMALL, PROLIFIC_PID=second), saved)
    again, kept_again = arrive(connect(server, study=SMALL, PROLIFIC_PID=first), kept)
    assert "Trial 2 of 3" in again["progress"] and kept_again == kept
    with store(server) as db:
        assert load_arrivals(db, SMALL).opened == before + 1


def test_the_flow_starts_at_opened_the_link(server):
    """Three browsers open a study (one reloads): one declines, one enrols and finishes, one leaves."""
    with store(server) as db:
        db.create_study("flowing", "Agree?", n_trials=2, catch_rate=0, images_dir=SAMPLE / "images")
        register(db, "flowing", [ROOT / SPEC["contents"][0]], [ROOT / SPEC["styles"][0]], SPEC["methods"],
                 SAMPLE / "images", SPEC["size"])
    decliner, finisher, leaver = (connect(server, study="flowing") for _ in range(3))
    _, kept = arrive(decliner)
    _, kept = arrive(decliner, kept)  # a reload
    arrive(decliner, kept, "/study_decline")
    _, kept = arrive(finisher)
    saved, s = enrol(finisher, kept)
    assert "completion code" in vote(server, vote(server, s, "left"), "right")["done"]
    assert open_page(connect(server, study="flowing"), saved)["done"]  # the finisher's browser again: no opening
    arrive(leaver)
    with store(server) as db:
        votes, people = load_votes(db, "flowing"), load_participants(db, "flowing")
        flow, sentence = participant_flow(participant_table(votes, people), votes, Rules(), load_arrivals(db, "flowing"))
    assert flow["stage"].tolist()[:5] == ["opened the link", "screened out (screen too small)", "declined consent",
                                          "neither declined nor enrolled", "enrolled (consented, trials assigned)"]
    assert flow["remaining"].tolist() == [3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert flow["excluded"].tolist()[1:4] == [0, 1, 1]
    assert sentence.startswith("The study link was opened in 3 browsers: 0 were screened out (screen too small), "
                               "1 declined consent, 1 neither declined nor enrolled, and 1 enrolled. Of 1 enrolled "
                               "participants, 1 voted")


def test_a_flood_of_openings_is_counted_in_a_bounded_number_of_rows(server):
    """A client that keeps no browser state and opens the link again and again: the first
    ARRIVALS_PER_HOUR openings of its address get a row each, the rest one count per hour; all are counted."""
    with store(server) as db:
        db.create_study("flooded", "Agree?", n_trials=2, catch_rate=0)
    client = connect(server, study="flooded")
    for _ in range(ARRIVALS_PER_HOUR + 5):
        assert open_page(client)["consent"] == "Agree?"  # the page works on beyond the limit
    with store(server) as db, db.engine.connect() as conn:
        study = select(studies.c.id).where(studies.c.name == "flooded").scalar_subquery()
        assert conn.scalar(select(func.count()).where(arrivals.c.study_id == study)) == ARRIVALS_PER_HOUR
        assert conn.scalar(select(func.sum(arrival_counts.c.n)).where(arrival_counts.c.study_id == study)) == 5
        assert load_arrivals(db, "flooded").opened == ARRIVALS_PER_HOUR + 5


def test_a_study_can_require_a_prolific_id(server):
    with store(server) as db:
        db.create_study("prolific-only", "Agree?", n_trials=2, catch_rate=0, images_dir=SAMPLE / "images",
                        require_prolific=True)
    for params in ({}, {"PROLIFIC_PID": "not-a-prolific-id"}):
        s = open_page(connect(server, study="prolific-only", **params))
        assert "lacks your Prolific ID" in s["message"] and not s["consent"]
    assert open_page(connect(server, study="prolific-only", PROLIFIC_PID=PID))["consent"] == "Agree?"


def test_image_addresses_are_keyed_per_participant_and_trial(server):
    """Two participants shown the same stimulus get different addresses; none is a stimulus hash."""
    seen = {}
    with store(server) as db:
        hashes = {s["output_sha256"] for s in db.stimuli("sample")}
    for _ in range(2):
        client = connect(server)
        open_page(client)
        saved, s = enrol(client)
        participant = saved["sample"]["participant"]
        with store(server) as db:
            first = db.remaining_trials(participant)[0]
        for side in ("left", "right"):
            url = s["view"][side]
            assert not any(h in url for h in hashes)
            seen.setdefault(first[side], set()).add(url)
    assert all(len(urls) == len(set(urls)) for urls in seen.values())
    assert sum(len(urls) for urls in seen.values()) == 4
    with pytest.raises(urllib.error.HTTPError, match="404"):
        fetch(server, "study-image/" + "0" * 40 + ".webp")


@pytest.mark.parametrize("params,message", [
    ({"study": "no-such-study"}, "does not run here"),
    ({"study": "../../etc/passwd"}, "study name in this link is not valid"),
    ({"study": ""}, "study name in this link is not valid"),
    ({"PROLIFIC_PID": "x" * 65}, "PROLIFIC_PID in this link is not valid"),
    ({"STUDY_ID": "<img src=x onerror=alert(1)>"}, "STUDY_ID in this link is not valid"),
    ({"SESSION_ID": "**bold** [link](http://evil)"}, "SESSION_ID in this link is not valid"),
])
def test_bad_links_get_a_message_and_no_echo(server, params, message):
    client = connect(server, **params)
    s = open_page(client)
    assert message in s["message"] and not s["consent"] and not s["trial"]
    assert not any(v and v in s["message"] for v in params.values())
    with pytest.raises(Exception, match="Open the study from its link first"):
        client.predict({}, api_name="/study_agree")


def test_a_vote_needs_a_ticket_the_server_issued_and_a_known_choice(server):
    """Votes with no ticket, a made-up one, another trial's token in place of the ticket, a ticket with
    its signature moved to another payload, or a choice outside the vocabulary store nothing."""
    mine, theirs = connect(server), connect(server)
    for client in (mine, theirs):
        open_page(client)
    _, s = enrol(mine)
    their_saved, t = enrol(theirs)
    payload, signature = s["view"]["ticket"].split(".")
    their_payload, _ = t["view"]["ticket"].split(".")
    for ticket in (None, secrets.token_urlsafe(16), t["trial"], f"{their_payload}.{signature}", f"{payload}."):
        assert post_vote(server.url, ticket, "left") == (400, {"error": BAD_REQUEST})
    for choice in ("LEFT", "", None, "winner"):
        status, answer = post_vote(server.url, s["view"]["ticket"], choice)
        assert status == 400 and "Choose one of left, right, tie, both_bad" in answer["error"]
    request = urllib.request.Request(server.url + "study-vote", b"{not json", {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError, match="400"):
        urllib.request.urlopen(request)
    with store(server) as db:
        remaining = db.remaining_trials(their_saved["sample"]["participant"])
    assert remaining[0]["token"] == t["trial"] and len(remaining) == N_TRIALS  # their trial has no vote
    assert "Trial 2 of" in vote(server, s, "left")["progress"]  # the real one still counts


def test_the_study_page_itself_names_no_method(server):
    config = urllib.request.urlopen(server.url + "config?page=study").read().decode()
    page = urllib.request.urlopen(server.url + "study").read().decode()
    info = urllib.request.urlopen(server.url + "gradio_api/info?page=study").read().decode()
    for text in (config, page, info):
        assert not any(leak in text for leak in LEAKS)


def test_results_need_the_admin_password(server):
    admin = connect(server, page="results")
    for wrong in ("", "correct horse", PASSWORD + " "):
        with pytest.raises(Exception, match="Wrong password"):
            admin.predict(wrong, "sample", 0, api_name="/results")
    with pytest.raises(Exception, match="no study named 'nope'"):
        admin.predict(PASSWORD, "nope", 0, api_name="/results")
    client = connect(server)  # decisive votes to analyse: 4 trials hold at most 2 catch trials and 1 check
    open_page(client)
    _, s = enrol(client)
    for _ in range(4):
        s = vote(server, s, instructed(s) or "left")
    summary, strengths, pairs, position, catch, feedback, csv = admin.predict(PASSWORD, "sample", 10,
                                                                             api_name="/results")
    with store(server) as db:
        votes = load_votes(db, "sample")
    assert "participants" in summary and f"{len(votes)} votes" in summary and "per question (" in summary
    assert "Debrief shown at the end:" in summary
    assert set(pd.DataFrame(strengths["data"], columns=strengths["headers"])["method"]) == set(SPEC["methods"])
    assert {"question", "a_win_rate", "ci_low", "ci_high"} <= set(pairs["headers"])
    assert "p_left" in position["headers"] and {"n_catch_failed", "n_attention_failed"} <= set(catch["headers"])
    assert feedback["headers"] == ["participant", "feedback"]
    assert len(pd.read_csv(csv)) == len(votes)


def instructed(s):
    """The button an attention check's question names (None on other trials)."""
    question = s["view"]["question"] if s["view"] else ""
    return next((c for c, label in CHOICE_LABELS.items() if question.endswith(f"click the {label} button.")), None)


def test_each_trial_asks_its_question_beside_its_references_and_the_end_takes_feedback(server):
    """The sample study: a practice trial first, then each trial's question (the study's two, or an attention
    check's instruction), the content photo and style painting of the pair's stimuli; every stored vote
    carries the question shown. At the end, the debrief and the feedback form: its text is stored (bounded),
    a forged ticket or an over-long text is refused, and /results shows it."""
    client = connect(server)
    open_page(client)
    *_, saved = client.predict({}, api_name="/study_agree")
    s = screen(client.predict(api_name="/study_start"))
    with store(server) as db:
        settings, by_sha = db.study("sample"), {x["output_sha256"]: x for x in db.stimuli("sample")}
    wording = dict(settings["questions"])
    shown = {}
    while s["view"]:
        view = s["view"]
        shown[view["trial"]] = view["question"]
        assert view["progress"].startswith("Practice trial 1 of 1" if len(shown) == 1 else "Trial ")
        assert f'<p class="question">{html.escape(view["question"])}</p>' in view["html"]
        for kind in ("content", "style"):
            with Image.open(io.BytesIO(fetch(server, view[kind][0]))) as reference:
                assert reference.size == tuple(view[kind][1:])
        s = vote(server, s, instructed(s) or "left")
    with store(server) as db, db.engine.connect() as conn:
        rows = conn.execute(select(trials.c.token, trials.c.question, trials.c.practice, trials.c.instructed,
                                   trials.c.left_stimulus_id).where(trials.c.token.in_(shown))).all()
        ids = {x["id"]: x for x in by_sha.values()}
    assert len(rows) == 11 and sum(r.practice for r in rows) == 1 and sum(bool(r.instructed) for r in rows) == 1
    for token, question, _, instructed_choice, _ in rows:
        expected = f"click the {CHOICE_LABELS[instructed_choice]} button." if instructed_choice else wording[question]
        assert shown[token].endswith(expected)
    assert {r.question for r in rows if not r.practice} == {"overall", "style"}
    assert len({ids[r.left_stimulus_id]["content_sha256"] for r in rows}) >= 2  # references follow the pair
    done = s["done"]
    assert "About this study" in done and 'class="feedback"' in done
    ticket = feedback_ticket(done)
    participant = saved["sample"]["participant"]

    def send(body):
        request = urllib.request.Request(server.url + "study-feedback", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
    assert send({"ticket": ticket, "text": "x" * 2001})[0] == 400
    assert send({"ticket": ticket[:-2] + "AA", "text": "forged"}) == (400, {"error": BAD_REQUEST})
    status, answer = send({"ticket": ticket, "text": "The style question was hard."})
    assert status == 200 and "saved" in answer["ok"]
    with store(server) as db:
        people = load_participants(db, "sample")
        assert people.loc[people["feedback"].notna(), "feedback"].tolist()[-1] == "The style question was hard."
        assert db.progress(participant)["done"] == 11
    admin = connect(server, page="results")
    *_, feedback, _ = admin.predict(PASSWORD, "sample", 10, api_name="/results")
    assert ["The style question was hard."] in [row[1:] for row in feedback["data"]]


def test_a_screen_too_small_is_asked_to_grow_then_screened_out_once_with_its_code(server):
    """Before consent: a 320 x 480 window is asked to grow; measured again at 390 x 844 (the phone layout's
    images are 262 px wide) it gets the consent; another browser still at 320 x 480 is screened out with the
    study's screen-out code and counted once in the flow, across reloads. The participant keeps its screen."""
    with store(server) as db:
        db.create_study("screened", "Agree?", n_trials=2, catch_rate=0, images_dir=SAMPLE / "images",
                        screen_out_code="SMALL123")
        register(db, "screened", [ROOT / SPEC["contents"][0]], [ROOT / SPEC["styles"][0]], SPEC["methods"],
                 SAMPLE / "images", SPEC["size"])
    small, phone = {"width": 320, "height": 480, "ratio": 2}, {"width": 390, "height": 844, "ratio": 3}
    link = {"study": "screened", "PROLIFIC_PID": PID}
    client = connect(server, **link)
    *values, kept = client.predict({}, small, api_name="/study_open")
    s = screen(values)
    assert "too small" in s["message"] and "**Check again**" in s["message"] and not s["consent"]
    *values, kept = client.predict(kept, phone, api_name="/study_recheck")
    assert screen(values)["consent"] == "Agree?"
    *_, saved = client.predict(kept, api_name="/study_agree")
    other = connect(server, **{**link, "PROLIFIC_PID": PID[::-1]})
    *_, kept = other.predict({}, small, api_name="/study_open")
    *values, screened = other.predict(kept, small, api_name="/study_recheck")
    assert "needs a larger screen" in screen(values)["done"] and "cc=SMALL123" in screen(values)["done"]
    *values, _ = other.predict(screened, {"width": 1400, "height": 900, "ratio": 1}, api_name="/study_open")
    assert "needs a larger screen" in screen(values)["done"]  # a reload: the same screen, nothing counted again
    other.predict(screened, small, api_name="/study_recheck")
    with store(server) as db:
        arrived, people = load_arrivals(db, "screened"), load_participants(db, "screened")
    assert (arrived.opened, arrived.screened_out) == (2, 1)
    assert arrived.screened_keys == {db.hash_id("PROLIFIC_PID", PID[::-1])}
    assert people[["viewport_width", "viewport_height", "pixel_ratio", "device"]].values.tolist() == \
        [[390, 844, 3.0, "desktop"]]  # the client's User-Agent names no phone
    assert saved["screened"]["participant"]


def test_results_are_disabled_without_a_password():
    with pytest.raises(Exception, match="disabled"):
        check_password(None, "", Lockout(), "127.0.0.1")


def test_image_addresses_are_served_by_every_worker_on_the_database(tmp_path):
    """An address made by one app worker is served by another on the same database (its key comes from
    the database's salt; deploy/ runs several behind nginx), as the same file; a name that differs in any
    hex digit, or one made under another database's key, is not served."""
    with Store(tmp_path / "db.sqlite") as db, Store(tmp_path / "other.sqlite") as other:
        register_sample(db)
        register_sample(other)
        sha = db.stimuli("sample")[3]["output_sha256"]
        url, _, _ = StudyImages(db, tmp_path / "a").url("sample", "participant", "trial", "left", sha)
        name = url.removeprefix("study-image/").removesuffix(".webp")
        served = StudyImages(db, tmp_path / "b").path(name)  # a fresh worker that has served nothing yet
        assert served is not None and served == db.image_path("sample", sha)
        for i in range(len(name)):
            assert StudyImages(db, tmp_path / "b").path(name[:i] + format(int(name[i], 16) ^ 1, "x") + name[i + 1:]) is None
        assert StudyImages(other, tmp_path / "c").path(name) is None


def test_sample_registration_is_idempotent(tmp_path):
    with Store(tmp_path / "db.sqlite") as db:
        register_sample(db)
        first = db.stimuli("sample")
        register_sample(db)
        assert db.stimuli("sample") == first
    assert len(first) == len(SPEC["contents"]) * len(SPEC["styles"]) * (len(SPEC["methods"]) + 1)


def test_browser_consents_votes_and_resumes_after_reload(server):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    seen = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda request: seen.append(request.url))
        page.goto(server.url + "study")
        page.get_by_role("button", name="I agree").click(timeout=60_000)
        page.get_by_role("button", name="Start").click()
        page.get_by_text("Practice trial 1 of 1").wait_for()
        page.locator("#study-trial [data-state=ready]").wait_for()
        page.get_by_role("button", name="Tie").click()
        page.get_by_text(f"Trial 1 of {N_TRIALS}").wait_for()
        page.get_by_role("button", name="Left is better").click()
        page.get_by_text(f"Trial 2 of {N_TRIALS}").wait_for()
        page.get_by_role("button", name="Right is better").click()
        page.get_by_text(f"Trial 3 of {N_TRIALS}").wait_for()
        page.reload()
        page.get_by_text(f"Trial 3 of {N_TRIALS}").wait_for(timeout=60_000)
        page.locator("#study-trial [data-state=ready]").wait_for()
        assert page.get_by_role("button", name="I agree").is_hidden()
        (ROOT / "artifacts").mkdir(exist_ok=True)
        page.screenshot(path=ROOT / "artifacts" / "study.png", full_page=True)
        browser.close()
    assert not any(leak in url for url in seen for leak in LEAKS)
    with store(server) as db:
        votes = load_votes(db, "sample")
    assert votes["choice"].tolist()[-2:] == ["left", "right"]
