"""Integrity and privacy of the study on the launched app: vote rate limits per participant and per
network address, no raw network address or Prolific id anywhere the app writes (the SQLite file's
bytes, every PostgreSQL table, the data folder), blind trials whose image URLs name no method, and
the results refused while no admin password is set.

The client's address is set with X-Forwarded-For, which uvicorn believes from 127.0.0.1 only (its
FORWARDED_ALLOW_IPS default): the app then sees that address, while all traffic stays on loopback."""
import json
import secrets
import time
from pathlib import Path

import psycopg
import pytest
from gradio_client import Client
from sqlalchemy import func, select

from bench.server import App, post_vote
from demo.limits import TOO_FAST, TOO_MANY, TOO_MANY_ENROLMENTS, EnrolLimits, VoteLimits
from demo.study_page import SCREEN
from demo.study_vote import StudyVotes
from study.schema import participants, votes
from study.store import Store

from .study_fixtures import db_url, postgres_server  # noqa: F401

METHOD_WORDS = ("a2k", "all2all", "adain", "catch")


LOCAL_PROXY = {"TRUSTED_PROXIES": "127.0.0.1"}  # the tests play a reverse proxy on this host


def connect(server, address, **link):
    """A study client whose requests come from `address` (X-Forwarded-For, believed from 127.0.0.1
    when the app runs with LOCAL_PROXY); images stay on the server (FileData dicts)."""
    return Client(server.url, verbose=False, headers={"X-Forwarded-For": address}, download_files=False,
                  httpx_kwargs={"params": {"page": "study", **link}})


def screen(values):
    """The page's fields by name, and the trial's token and progress text (None and "" off trials)."""
    s = dict(zip(SCREEN, values))
    view = s["trial"]
    return {**s, "view": view, "trial": view and view["trial"], "progress": view["progress"] if view else ""}


def enrol(client):
    """Consent and start: (the participant token, the first trial's screen)."""
    client.predict({}, None, api_name="/study_open")
    *_, saved = client.predict({}, api_name="/study_agree")
    return saved["sample"]["participant"], screen(client.predict(api_name="/study_start"))


def vote(server, address, view, choice="left"):
    """Answer the trial `view` from `address` -> (HTTP status, answer: {"trial"}, {"done"} or {"error"})."""
    return post_vote(server.url, view["ticket"], choice, 800, {"X-Forwarded-For": address})


def count_votes(database):
    with Store(database) as store, store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(votes))


def test_vote_rate_limits_per_participant_and_per_address(tmp_path):
    """2 s between a participant's votes, 3 votes a minute and 3 enrolments an hour per address (tiny limits,
    to hit them)."""
    server = App(tmp_path, "--with-study", env={"VOTE_INTERVAL_MS": "2000", "VOTES_PER_MINUTE": "3", "ENROLMENTS_PER_HOUR": "3",
                                **LOCAL_PROXY}).start()
    try:
        a, b, c, d = (connect(server, "127.0.0.21") for _ in range(4))
        other = connect(server, "127.0.0.22")
        (_, sa), (_, sb), (_, sc), (_, so) = (enrol(client) for client in (a, b, c, other))
        with pytest.raises(Exception, match=TOO_MANY_ENROLMENTS[:40]):
            enrol(d)  # the address's fourth enrolment in the sample study this hour
        status, second = vote(server, "127.0.0.21", sa["view"])
        assert status == 200
        # at once: refused, and the trial may be answered again
        assert vote(server, "127.0.0.21", second["trial"]) == (429, {"error": TOO_FAST})
        time.sleep(2.1)
        status, third = vote(server, "127.0.0.21", second["trial"])
        assert status == 200 and third["trial"]["progress"] == "Trial 2 of 10"  # after the practice trial and one
        assert vote(server, "127.0.0.21", sb["view"])[0] == 200  # the address's third vote this minute
        assert vote(server, "127.0.0.21", sc["view"]) == (429, {"error": TOO_MANY})
        status, other_next = vote(server, "127.0.0.22", so["view"])  # another address is not held back
        assert status == 200 and other_next["trial"]["progress"] == "Trial 1 of 10"
        assert count_votes(tmp_path / "arena.db") == 4
    finally:
        server.stop()


def test_enrolment_limits_are_per_address_and_study_and_forget_the_past():
    limits = EnrolLimits(per_hour=1, window_s=0.3)
    assert limits.check("sample", "10.0.0.1") is None and limits.check("other", "10.0.0.1") is None
    assert limits.check("sample", "10.0.0.1") == TOO_MANY_ENROLMENTS and limits.check("sample", "10.0.0.2") is None
    time.sleep(0.35)
    assert limits.check("sample", "10.0.0.1") is None
    assert EnrolLimits(per_hour=0).check("sample", "10.0.0.1") is None
    assert b"10.0.0.1" not in repr(vars(limits)).encode()


def test_vote_limits_forget_what_is_past_the_window():
    limits = VoteLimits(interval_ms=100, per_minute=2, window_s=0.3)
    assert limits.check("p1", "10.0.0.1") is None and limits.check("p2", "10.0.0.1") is None
    assert limits.check("p1", "10.0.0.2") == TOO_FAST and limits.check("p3", "10.0.0.1") == TOO_MANY
    time.sleep(0.35)
    assert limits.check("p3", "10.0.0.1") is None  # a window later the address may vote again
    assert len(limits._last) == 1 and len(limits._recent) == 1  # and the others are forgotten
    assert b"10.0.0.1" not in repr(vars(limits)).encode()  # addresses are held hashed only


def stored_bytes(database):
    """Everything the database holds: the SQLite files' bytes, or every PostgreSQL table's rows as text."""
    if "://" not in database:
        return b"".join(p.read_bytes() for p in sorted(Path(database).parent.glob(Path(database).name + "*")))
    with psycopg.connect(database.replace("postgresql+psycopg://", "postgresql://")) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        assert {"participants", "trials", "votes"} <= set(tables)
        return "\n".join(str(r[0]) for t in tables for r in conn.execute(f'SELECT t::text FROM "{t}" t')).encode()


def test_no_raw_address_or_prolific_id_is_stored(tmp_path, db_url):  # noqa: F811
    raw = {"PROLIFIC_PID": secrets.token_hex(12), "STUDY_ID": secrets.token_hex(12),
           "SESSION_ID": secrets.token_hex(12)}
    address = "127.83.19.201"
    server = App(tmp_path, "--with-study", "--database", db_url,
                 env={"VOTE_INTERVAL_MS": "0", "ADMIN_PASSWORD": "", **LOCAL_PROXY}).start()
    try:
        client = connect(server, address, **raw)
        _, s = enrol(client)
        answer = {"trial": s["view"]}
        with Store(db_url) as reader:
            tickets = StudyVotes(reader, None, None)  # reads the tickets as the server does
            while "trial" in answer:
                view = answer["trial"]
                shown = json.dumps({**view, "ticket": tickets.read_ticket(view["ticket"])})
                assert not any(word in shown for word in METHOD_WORDS), shown  # image paths and URLs too
                status, answer = vote(server, address, view)
                assert status == 200, answer
        assert "completion code" in answer["done"]
        again = connect(server, address, **raw)  # the same PROLIFIC_PID in another browser: the code at once
        assert "completion code" in screen(again.predict({}, None, api_name="/study_open"))["done"]
        admin = Client(server.url, verbose=False, httpx_kwargs={"params": {"page": "results"}})
        with pytest.raises(Exception, match="results view is disabled"):
            admin.predict("", "sample", 0, api_name="/results")
    finally:
        server.stop()
    with Store(db_url) as store, store.engine.connect() as conn:
        rows = conn.execute(select(participants.c.external_key, participants.c.external_ids)).all()
        assert rows == [(store.hash_id("PROLIFIC_PID", raw["PROLIFIC_PID"]),
                         {k: store.hash_id(k, v) for k, v in raw.items()})]
    written = stored_bytes(db_url) + b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for value in (*raw.values(), address):  # the data folder: images, result cache, the app's log
        assert value.encode() not in written, f"{value} is stored"
