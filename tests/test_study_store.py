"""The study database on real SQLite files and (marker `postgres`) a throwaway PostgreSQL server."""
import random
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import delete, insert, inspect, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from study.analysis import Rules, participant_flow, participant_table, viewport_table
from study.schema import SCHEMA_VERSION, UPGRADES, participants, trials, votes
from study.store import (
    CATCH,
    SCREEN_FIELDS,
    Store,
    StudyError,
    VoteRejected,
    _design,
    _draw_trials,
    load_arrivals,
    load_participants,
    load_screens,
    load_votes,
    make_engine,
    migrate,
    schema_version,
)
from tests.study_fixtures import METHODS, SCHEMA_V1, add_stimuli, db_url, fake_sha, postgres_server, store  # noqa: F401

VIEW_KEYS = {"token", "position", "n_trials", "left", "right", "practice_trials", "question", "practice", "instructed"}


def study_with_stimuli(store, name="s", n_trials=10, catch_rate=0.2, **kw):
    store.create_study(name, "I agree.", n_trials, catch_rate)
    add_stimuli(store, name, **kw)
    return name


def vote_all(store, participant, choice="left"):
    for trial in store.remaining_trials(participant):
        store.record_vote(trial["token"], participant, choice, 700)


def test_schema_created_and_versioned(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {"meta", "studies", "stimuli", "participants", "trials", "votes", "comparisons"} <= tables
    assert schema_version(store.engine) == SCHEMA_VERSION
    assert migrate(store.engine) == SCHEMA_VERSION  # a second start finds it current and changes nothing


def test_no_column_for_network_addresses(store):
    columns = {c["name"] for t in inspect(store.engine).get_table_names() for c in inspect(store.engine).get_columns(t)}
    assert not {c for c in columns if "ip" in c.split("_") or "addr" in c or "agent" in c}


def test_sqlite_wal_busy_timeout_and_begin_immediate(tmp_path):
    path = tmp_path / "study.db"
    with Store(path) as store:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        with store.engine.begin() as conn:  # a write transaction holds the write lock from its BEGIN
            conn.execute(select(participants.c.id)).all()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with store._read() as conn:  # a read transaction does not
            conn.execute(select(participants.c.id)).all()
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        other.close()


def test_trial_views_hide_methods_and_resume(db_url):
    with Store(db_url) as store:
        study = study_with_stimuli(store)
        pid = store.new_participant(study, rng=random.Random(1))
        first = store.remaining_trials(pid)
        assert len(first) == 10 and [t["position"] for t in first] == list(range(10))
        for view in first:
            assert set(view) == VIEW_KEYS
            assert not any(m in str(v) for v in view.values() for m in (*METHODS, CATCH))
        assert store.get_trial(first[3]["token"]) == first[3]
        for trial in first[:4]:
            store.record_vote(trial["token"], pid, "right", 900)
    with Store(db_url) as reopened:  # a reload: same participant, same remaining trials, same order
        assert reopened.remaining_trials(pid) == first[4:]
        assert reopened.progress(pid) == {"done": 4, "total": 10}


def test_votes_are_refused_with_clear_reasons(store):
    study = study_with_stimuli(store)
    me, other = store.new_participant(study), store.new_participant(study)
    trial = store.remaining_trials(me)[0]["token"]
    for args, message in [
            ((trial, me, "up"), "invalid choice 'up': send one of left, right, tie, both_bad"),
            ((trial, me, "left", -5), "response_time_ms must be a non-negative integer, not -5"),
            ((trial, me, "left", True), "response_time_ms must be a non-negative integer, not True"),
            ((trial, me, "left", 900, 1.5), "server_time_ms must be a non-negative integer, not 1.5"),
            (("forged-token", me, "left"), "unknown trial: reload the study page to get your next trial"),
            ((trial, other, "left"), "this trial belongs to another participant: reload the study page")]:
        with pytest.raises(VoteRejected) as refused:
            store.record_vote(*args)
        assert str(refused.value) == message
    store.record_vote(trial, me, "tie", 1200, 1500)
    with pytest.raises(VoteRejected) as refused:
        store.record_vote(trial, me, "left")
    assert str(refused.value) == "this trial already has a vote and votes cannot be changed: go on to the next trial"
    with pytest.raises(StudyError) as refused:
        store.get_trial("forged-token")
    assert str(refused.value) == "unknown trial: reload the study page to get your next trial"
    with pytest.raises(StudyError) as refused:
        store.progress("forged-participant")
    assert str(refused.value) == "unknown participant id: start the study again from its link"
    stored = load_votes(store, study)
    assert stored[["choice", "response_time_ms", "server_time_ms"]].values.tolist() == [["tie", 1200, 1500]]


def test_the_last_vote_completes_the_participant(store):
    """record_vote marks a participant completed at their last trial's vote, not before."""
    study = study_with_stimuli(store, n_trials=3, catch_rate=0)
    me, other = store.new_participant(study), store.new_participant(study)

    def completed():
        with store.engine.connect() as conn:
            return {t for t, at in conn.execute(select(participants.c.token, participants.c.completed_at)) if at}

    first, *rest = store.remaining_trials(me)
    store.record_vote(first["token"], me, "left")
    store.record_vote(store.remaining_trials(other)[0]["token"], other, "left")
    assert completed() == set()
    for trial in rest:
        assert completed() == set()
        store.record_vote(trial["token"], me, "right")
    assert completed() == {me} and store.completion_code(me)


def test_trials_come_in_their_positions_order_not_the_order_they_were_stored_in(store):
    """The trials' order is their position (PostgreSQL returns rows in no set order): stored in one order and
    positioned in the reverse, they are handed out, and answered, in the reverse (the store fixture has SQLite
    return the rows of a query without ORDER BY in reverse: its index would read them in order)."""
    study = study_with_stimuli(store, n_trials=3, catch_rate=0)
    me = store.new_participant(study)
    first, second, third = store.remaining_trials(me)
    assert [t["position"] for t in (first, second, third)] == [0, 1, 2]
    with store.engine.begin() as conn:
        conn.execute(update(trials).values(position=trials.c.position + 10))
        conn.execute(update(trials).values(position=12 - trials.c.position))
    reordered = [{**t, "position": 2 - t["position"]} for t in (third, second, first)]
    assert store.remaining_trials(me) == reordered
    assert store.answer_next(me, first["token"], "left") == (False, reordered)
    assert store.answer_next(me, third["token"], "left") == (True, reordered[1:])


def test_answer_next_takes_only_the_next_trial_in_one_go(store):
    """A study vote: stored only for the participant's next unanswered trial, returning what is left;
    a stale or foreign token writes nothing; the last answer completes the participant."""
    study = study_with_stimuli(store, n_trials=3, catch_rate=0)
    me, other = store.new_participant(study), store.new_participant(study)
    first, second, third = store.remaining_trials(me)
    with pytest.raises(VoteRejected, match="invalid choice"):
        store.answer_next(me, first["token"], "up")
    with pytest.raises(StudyError, match="unknown participant"):
        store.answer_next("forged-participant", first["token"], "left")
    for token in (second["token"], store.remaining_trials(other)[0]["token"], "forged-token"):
        assert store.answer_next(me, token, "left") == (False, [first, second, third])
    assert store.answer_next(me, first["token"], "right", 900, 1500) == (True, [second, third])
    assert store.answer_next(me, first["token"], "left") == (False, [second, third])  # sent again
    assert store.answer_next(me, second["token"], "tie") == (True, [third])
    assert store.finished_participant(study, {}) is None
    assert store.answer_next(me, third["token"], "left") == (True, [])
    assert store.answer_next(me, third["token"], "left") == (False, [])
    votes_ = load_votes(store, study)
    assert votes_["choice"].tolist() == ["right", "tie", "left"] and votes_["server_time_ms"].iloc[0] == 1500
    assert store.progress(me) == {"done": 3, "total": 3} and store.progress(other)["done"] == 0
    with store.engine.connect() as conn:
        completed = dict(conn.execute(select(participants.c.token, participants.c.completed_at)).all())
    assert completed[me] is not None and completed[other] is None


def test_a_vote_that_loses_its_trial_between_the_query_and_the_insert_stores_nothing(store):
    """Another request's vote on the same trial lands after answer_next found the trial unanswered (PostgreSQL
    lets two requests interleave so; SQLite's write lock does not, so the rival vote is written here on the same
    connection just before answer_next's own insert): the insert fails on the trial's one-vote constraint, the
    transaction stores nothing, and the answer says so with the trials the participant has left."""
    study = study_with_stimuli(store, n_trials=2, catch_rate=0)
    me = store.new_participant(study)
    first, second = store.remaining_trials(me)
    rivals = []

    def rival(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO votes") and not rivals:
            rivals.append(cursor.execute(statement, parameters))

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", rival)
    assert store.answer_next(me, first["token"], "left") == (False, [first, second]) and rivals
    sqlalchemy.event.remove(store.engine, "before_cursor_execute", rival)
    assert load_votes(store, study).empty
    assert store.answer_next(me, first["token"], "left") == (True, [second])


def test_answer_next_sent_twice_at_once_stores_one_vote(db_url):
    """Two workers get the same vote at the same moment (a retry racing its first send): one stores
    it, the other answers that nothing was stored, and the trial has one vote."""
    stores = [Store(db_url) for _ in range(2)]

    def send(store, me, token, barrier, outcomes):
        barrier.wait()
        outcomes.append(store.answer_next(me, token, "left"))

    try:
        study = study_with_stimuli(stores[0], n_trials=5, catch_rate=0)
        for _ in range(5):
            me = stores[0].new_participant(study)
            token = stores[0].remaining_trials(me)[0]["token"]
            barrier, outcomes = threading.Barrier(2), []
            threads = [threading.Thread(target=send, args=(store, me, token, barrier, outcomes)) for store in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert sorted(stored for stored, _ in outcomes) == [False, True]
            assert all(len(left) == 4 for _, left in outcomes) and stores[0].progress(me)["done"] == 1
    finally:
        for store in stores:
            store.close()


def test_database_constraints_hold_without_the_api(store):
    study = study_with_stimuli(store)
    pid = store.new_participant(study)
    with store.engine.connect() as conn:
        trial_id = conn.scalar(select(trials.c.id).where(trials.c.token == store.remaining_trials(pid)[0]["token"]))
    row = {"trial_id": trial_id, "choice": "left", "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
    with store.engine.begin() as conn:
        conn.execute(insert(votes).values(**row))
    for bad in (row, {**row, "choice": "maybe"}):  # a second vote; a choice outside the CHECK
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(insert(votes).values(**bad))


def test_external_ids_are_only_stored_hashed(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDY_SALT", raising=False)
    raw = {"PROLIFIC_PID": "5f0c1e2d3a4b5c6d7e8f9a0b", "STUDY_ID": "60a1b2c3d4e5f6a7b8c9d0e1",
           "SESSION_ID": "zz9sessionzz9raw"}
    path = tmp_path / "study.db"
    with Store(path) as store:
        study = study_with_stimuli(store)
        pid = store.new_participant(study, raw)
        assert store.new_participant(study, {**raw, "PROLIFIC_PID": "someone-else"}) != pid
        with store.engine.connect() as conn:
            stored = conn.execute(select(participants.c.external_ids).where(participants.c.token == pid)).scalar()
        assert stored == {k: store.hash_id(k, v) for k, v in raw.items()}
        salted_here = store.hash_id("PROLIFIC_PID", raw["PROLIFIC_PID"])
    files = [p for p in tmp_path.iterdir() if p.name.startswith("study.db")]
    assert files and all(v.encode() not in p.read_bytes() for p in files for v in raw.values())
    monkeypatch.setenv("STUDY_SALT", "pepper")
    with Store(path) as store:
        assert store.hash_id("PROLIFIC_PID", raw["PROLIFIC_PID"]) != salted_here


def test_a_known_prolific_id_never_gets_the_token_back(store):
    """Another browser with the same PROLIFIC_PID, before or after the first attempt's first vote, starts a
    repeat attempt, flagged in the votes: it never gets the first attempt's token, so it can neither see
    nor cast that participant's votes."""
    study = study_with_stimuli(store, n_trials=3, catch_rate=0)
    ids = {"PROLIFIC_PID": "5f0c1e2d3a4b5c6d7e8f9a0b"}
    first = store.new_participant(study, ids)
    early = store.new_participant(study, ids)  # before any vote
    assert early != first and store.progress(early) == {"done": 0, "total": 3}
    for t in store.remaining_trials(first):
        store.record_vote(t["token"], first, "left")
    assert store.finished_participant(study, ids) == first
    second = store.new_participant(study, ids)
    assert second != first and store.progress(second) == {"done": 0, "total": 3}
    assert store.new_participant(study, ids) not in (first, early, second)  # each new browser: its own attempt
    store.record_vote(store.remaining_trials(second)[0]["token"], second, "right")
    df = load_votes(store, study)
    assert df["repeat_attempt"].tolist() == [False, False, False, True]
    assert store.finished_participant(study, {"PROLIFIC_PID": "someone-else"}) is None


def test_a_repeat_attempt_is_one_of_the_same_id_in_the_same_study(store):
    """A PROLIFIC_PID enrolled before in this study makes a repeat attempt of its first enrolment (which alone keeps
    the key); another id, the same id in another study, and no id at all are first enrolments. Tokens carry 192
    (participant) and 128 (trial) random bits."""
    study_with_stimuli(store, "one", n_trials=2, catch_rate=0)
    study_with_stimuli(store, "two", n_trials=2, catch_rate=0)
    tokens = [store.new_participant(study, ids) for study, ids in [
        ("one", {"PROLIFIC_PID": "A"}), ("one", {"PROLIFIC_PID": "B"}), ("one", {"PROLIFIC_PID": "A"}),
        ("two", {"PROLIFIC_PID": "A"}), ("one", {}), ("one", {"PROLIFIC_PID": ""})]]
    with store.engine.connect() as conn:
        rows = {r.token: r for r in conn.execute(select(participants))}
        trial_tokens = conn.scalars(select(trials.c.token)).all()
    first_a, b, again, elsewhere, anonymous, empty = (rows[t] for t in tokens)
    assert (first_a.external_key, b.external_key, elsewhere.external_key) == (
        store.hash_id("PROLIFIC_PID", "A"), store.hash_id("PROLIFIC_PID", "B"), store.hash_id("PROLIFIC_PID", "A"))
    assert again.repeat_of == first_a.id and again.external_key is None
    assert [r.repeat_of for r in (first_a, b, elsewhere, anonymous, empty)] == [None] * 5
    assert anonymous.external_key is None and empty.external_key is None
    assert {len(t) for t in tokens} == {32} and {len(t) for t in trial_tokens} == {22}


def test_a_full_study_takes_no_more_participants(store):
    store.create_study("full", "I agree.", 2, 0, max_participants=2)
    add_stimuli(store, "full", contents=("c1",), styles=("s1",), catch=False)
    store.new_participant("full")
    store.new_participant("full")
    with pytest.raises(StudyError) as refused:
        store.new_participant("full")
    assert str(refused.value) == "this study has all the participants it needs and takes no more: thank you for your " \
        "interest"
    with pytest.raises(StudyError, match="max_participants"):
        store.create_study("full", "I agree.", 2, 0, max_participants=3)


def test_an_enrolment_locks_its_study_row(store):
    """new_participant reads the study's row with SELECT ... FOR UPDATE (what PostgreSQL receives; SQLite has one
    writer at a time anyway), so enrolments into one study take turns and each is balanced against all before it."""
    study = study_with_stimuli(store)
    sent = []
    sqlalchemy.event.listen(store.engine, "before_execute", lambda conn, clause, *rest: sent.append(clause))
    store.new_participant(study)
    on_postgres = [str(c.compile(dialect=postgresql.dialect())) for c in sent if isinstance(c, sqlalchemy.Select)]
    assert [q.endswith("FOR UPDATE") for q in on_postgres if "\nFROM studies \n" in q] == [True]


def test_method_pairs_are_balanced_across_participants(store):
    study = study_with_stimuli(store, n_trials=12, catch_rate=0, catch=False)
    people = [store.new_participant(study, rng=random.Random(i)) for i in range(10)]
    method = {s["output_sha256"]: s["method"] for s in store.stimuli(study)}
    cell = {s["output_sha256"]: (s["content_name"], s["style_name"]) for s in store.stimuli(study)}
    pairs, items, left = Counter(), Counter(), Counter()
    for pid in people:
        mine = Counter()
        for t in store.remaining_trials(pid):
            pair = tuple(sorted((method[t["left"]], method[t["right"]])))
            mine[pair] += 1
            items[cell[t["left"]], pair] += 1
            left[method[t["left"]]] += 1
        assert sorted(mine.values()) == [4, 4, 4]  # 12 trials, 3 pairs: 4 each for everyone
        pairs.update(mine)
    assert set(pairs.values()) == {40}
    assert max(items.values()) - min(items.values()) <= 1  # 4 content x style cells per pair, 30 trials each
    assert all(25 <= n <= 55 for n in left.values())  # each method on the left about half of its 80 showings


def test_catch_trials_are_mixed_in_and_scored(store):
    study = study_with_stimuli(store, n_trials=8, catch_rate=0.25)
    pid = store.new_participant(study, rng=random.Random(3))
    catch = {s["output_sha256"] for s in store.stimuli(study) if s["method"] == CATCH}
    for t in store.remaining_trials(pid):
        broken = "left" if t["left"] in catch else "right" if t["right"] in catch else None
        store.record_vote(t["token"], pid, {"left": "right", "right": "left", None: "left"}[broken], 500)
    df = load_votes(store, study)
    assert df["is_catch"].sum() == 2
    assert df.loc[df["is_catch"], "catch_passed"].tolist() == [True, True]
    assert df.loc[~df["is_catch"], "catch_passed"].isna().all()
    assert (df.loc[df["is_catch"], ["left_method", "right_method"]] == CATCH).any(axis=1).all()


def test_questions_practice_and_attention_checks_are_drawn_stored_and_flagged(store):
    """Practice trials come first and are never counted; attention checks name a button (tie or both bad);
    every counted kind asks the study's questions evenly; load_votes gives each vote its question and kind."""
    store.create_study("q", "I agree.", 12, 0.25, questions=[("overall", "Better?"), ("style", "More painterly?")],
                       practice_trials=2, attention_rate=0.25)
    add_stimuli(store, "q")
    pid = store.new_participant("q", rng=random.Random(5), screen={"viewport_width": 390, "viewport_height": 844,
                                                                   "pixel_ratio": 3.0, "browser": "Chrome 131",
                                                                   "device": "phone"})
    remaining = store.remaining_trials(pid)
    assert [t["practice"] for t in remaining] == [True, True] + [False] * 12
    assert [t["question"] for t in remaining[:2]] == ["overall", "style"]
    instructed = [t["instructed"] for t in remaining if t["instructed"]]
    assert len(instructed) == 3 and set(instructed) <= {"tie", "both_bad"}
    catch = {s["output_sha256"] for s in store.stimuli("q") if s["method"] == CATCH}
    for t in remaining:
        choice = t["instructed"] or ("right" if t["left"] in catch else "left")
        store.record_vote(t["token"], pid, choice, 900, 1200)
    df = load_votes(store, "q")
    assert df["kind"].value_counts().to_dict() == {"method": 6, "catch": 3, "attention": 3, "practice": 2}
    for kind in ("method", "catch", "attention"):
        assert sorted(df.loc[df["kind"] == kind, "question"].value_counts()) in ([3, 3], [1, 2], [2, 1]), kind
    assert df["attention_passed"].dropna().tolist() == [True] * 3
    assert df.loc[df["kind"] != "attention", "attention_passed"].isna().all()
    people = load_participants(store, "q")
    assert people.loc[0, ["n_trials", "n_votes", "completed"]].tolist() == [12, 12, True]  # practice not counted
    assert people.loc[0, ["viewport_width", "viewport_height", "pixel_ratio", "browser", "device"]].tolist() == \
        [390, 844, 3.0, "Chrome 131", "phone"]
    with pytest.raises(StudyError, match="unknown screen fields"):
        store.new_participant("q", screen={"user_agent": "x"})


def test_feedback_after_the_last_vote_and_screen_outs(store):
    study = study_with_stimuli(store, n_trials=2, catch_rate=0)
    pid = store.new_participant(study)
    with pytest.raises(StudyError, match="once every trial"):
        store.save_feedback(pid, "too early")
    vote_all(store, pid)
    with pytest.raises(StudyError, match="at most 2000"):
        store.save_feedback(pid, "x" * 2001)
    store.save_feedback(pid, "  The second pair was hard.  ")
    assert load_participants(store, study)["feedback"].tolist() == ["The second pair was hard."]
    store.record_screen_out(study, {"viewport_width": 300, "viewport_height": 500, "device": "phone"}, "hash")
    arrived = load_arrivals(store, study)
    assert (arrived.screened_out, arrived.screened_keys) == (1, {"hash"})
    screens = load_screens(store, study)
    assert screens["outcome"].tolist() == ["enrolled", "screened out"]
    assert screens["viewport_width"].tolist()[1] == 300
    store.create_study("empty", "I agree.", 2, 0)
    stimulus = store.stimuli(study)[0]["id"]
    assert (store.stimulus_study(stimulus), store.stimulus_study(stimulus + 10_000)) == (study, None)
    none = load_screens(store, "empty")  # no enrolment yet: the columns all the same, for the viewport table
    assert none.empty and list(none.columns) == ["outcome", *SCREEN_FIELDS] and viewport_table(none).empty


def test_completion_code_only_after_the_last_vote(store):
    store.create_study("s", "I agree.", 4, 0.25, completion_code="C0DE42")
    add_stimuli(store, "s")
    pid = store.new_participant("s")
    with pytest.raises(StudyError, match="4 trial"):
        store.completion_code(pid)
    vote_all(store, pid)
    assert store.completion_code(pid) == "C0DE42"
    assert store.progress(pid) == {"done": 4, "total": 4}
    with store.engine.connect() as conn:
        assert conn.scalar(select(participants.c.completed_at)) is not None


def test_load_votes_one_row_per_vote(store):
    study = study_with_stimuli(store, n_trials=5, catch_rate=0)
    pid = store.new_participant(study)
    before = datetime.now(UTC)
    for t, choice in zip(store.remaining_trials(pid), ["left", "right", "tie", "both_bad", "left"]):
        store.record_vote(t["token"], pid, choice, 321, 1500)
    after = datetime.now(UTC)
    df = load_votes(store, study)
    assert list(df.columns) == ["participant", "trial", "position", "content", "style", "left_method",
                                "right_method", "question", "choice", "winner", "kind", "is_catch", "catch_passed",
                                "attention_passed", "response_time_ms", "server_time_ms", "repeat_attempt",
                                "created_at"]
    assert len(df) == 5 and df["response_time_ms"].eq(321).all() and str(df["created_at"].dt.tz) == "UTC"
    assert df["server_time_ms"].eq(1500).all() and not df["repeat_attempt"].any()
    expected = [r.left_method if r.choice == "left" else r.right_method if r.choice == "right" else None
                for r in df.itertuples()]
    assert df["winner"].tolist() == expected
    assert df["position"].tolist() == [0, 1, 2, 3, 4] and df["created_at"].is_monotonic_increasing
    assert df["created_at"].between(before, after).all()
    assert {c: str(df[c].dtype) for c in ("participant", "trial", "is_catch", "catch_passed", "attention_passed",
                                          "response_time_ms", "server_time_ms", "repeat_attempt", "winner", "kind")} == {
        "participant": "int64", "trial": "int64", "is_catch": "bool", "catch_passed": "boolean",
        "attention_passed": "boolean", "response_time_ms": "Int64", "server_time_ms": "Int64", "repeat_attempt": "bool",
        "winner": "object", "kind": "object"}


def test_load_participants_counts_each_persons_counted_trials_and_votes(store):
    """Practice trials and their votes are not counted; completed means a vote on every counted trial; a
    participant left without a trial (none drawn) has not completed; two enrolled at the same instant stay apart."""
    assert list(load_participants(store, study_with_stimuli(store, "empty"))) == [
        "participant", "enrolled_at", "n_trials", "n_votes", "completed", "external_key", *SCREEN_FIELDS,
        "feedback"]
    store.create_study("p", "I agree.", 1, 0, practice_trials=1)
    add_stimuli(store, "p")
    before = datetime.now(UTC)
    done, waiting, voted_practice, emptied = (store.new_participant("p") for _ in range(4))
    for trial in store.remaining_trials(done):
        store.record_vote(trial["token"], done, "left")
    store.record_vote(store.remaining_trials(voted_practice)[0]["token"], voted_practice, "left")
    with store.engine.begin() as conn:
        ids = {t: conn.scalar(select(participants.c.id).where(participants.c.token == t))
               for t in (done, waiting, voted_practice, emptied)}
        conn.execute(delete(trials).where(trials.c.participant_id == ids[emptied]))
        conn.execute(update(participants).values(created_at=before))
    people = load_participants(store, "p")
    assert people["participant"].tolist() == list(ids.values())
    assert people["n_trials"].tolist() == [1, 1, 1, 0] and people["n_votes"].tolist() == [1, 0, 0, 0]
    assert people["completed"].tolist() == [True, False, False, False]
    assert str(people["enrolled_at"].dt.tz) == "UTC" and people["enrolled_at"].eq(before).all()


def test_studies_and_stimuli_are_idempotent_with_clear_conflicts(store):
    first = store.create_study("s", "I agree.", 10)
    assert store.create_study("s", "I agree.", 10) == first
    with pytest.raises(StudyError, match="already exists with n_trials=10"):
        store.create_study("s", "I agree.", 12)
    for bad, message in [(("bad name!", "x"), "study name"), (("t", " "), "consent"),
                         (("t", "x", 0), "n_trials"), (("t", "x", 2, 0.9), "none of the 2 trials")]:
        with pytest.raises(StudyError, match=message):
            store.create_study(*bad)
    with pytest.raises(StudyError, match="no study named 'nope'.*known: s"):
        store.new_participant("nope")
    add_stimuli(store, "s")
    n = len(store.stimuli("s"))
    add_stimuli(store, "s")
    assert len(store.stimuli("s")) == n
    with pytest.raises(StudyError, match="already registered with another image"):
        store.add_stimulus("s", "c1.jpg", fake_sha("c1"), "s1.jpg", fake_sha("s1"), "adain", fake_sha("new"), "x.png")


def test_studies_without_enough_stimuli_say_what_to_do(store):
    store.create_study("one", "I agree.", 4, 0)
    add_stimuli(store, "one", methods=("adain",), catch=False)
    with pytest.raises(StudyError, match="at least two methods"):
        store.new_participant("one")
    store.create_study("nocatch", "I agree.", 4, 0.25)
    add_stimuli(store, "nocatch", catch=False)
    with pytest.raises(StudyError, match="no catch images"):
        store.new_participant("nocatch")


def test_unblinded_comparisons(store):
    args = ("c" * 64, "s" * 64, "a2k_free", "adain", "1" * 64, "2" * 64)
    cid = store.record_comparison("cmp-1", *args, "left", {"size": 512})
    with pytest.raises(VoteRejected, match="invalid choice"):
        store.record_comparison("cmp-2", *args, "meh")
    with pytest.raises(VoteRejected, match="already has a vote"):
        store.record_comparison("cmp-1", *args, "right")
    df = store.comparisons()
    assert df["id"].tolist() == [cid] and df.loc[0, "settings"] == {"size": 512} and df.loc[0, "choice"] == "left"
    assert df.loc[0, "token"] == "cmp-1"


def test_image_path_serves_by_hash(tmp_path, store):
    store.create_study("s", "I agree.", 4, 0, images_dir=tmp_path)
    add_stimuli(store, "s")
    stimulus = store.stimuli("s")[0]
    assert store.image_path("s", stimulus["output_sha256"]) == tmp_path.resolve() / stimulus["path"]
    with pytest.raises(StudyError) as refused:
        store.image_path("s", "0123456789abcdef" * 4)
    assert str(refused.value) == "no image 0123456789ab... in study 's'"
    store.create_study("t", "I agree.", 4, 0)
    add_stimuli(store, "t")
    with pytest.raises(StudyError) as refused:
        store.image_path("t", store.stimuli("t")[0]["output_sha256"])
    assert str(refused.value) == "study 't' has no images_dir: create it with python -m study.prepare"


def test_concurrent_sqlite_writers_queue_instead_of_failing(tmp_path):
    with Store(tmp_path / "study.db") as store:
        study = study_with_stimuli(store, n_trials=6, catch_rate=0)
        errors = []

        def participant(seed):
            try:
                pid = store.new_participant(study, rng=random.Random(seed))
                vote_all(store, pid)
            except Exception as exc:  # noqa: BLE001  (collected and reported below)
                errors.append(exc)

        threads = [threading.Thread(target=participant, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(load_votes(store, study)) == 36


OLD_ROWS = """
    INSERT INTO meta VALUES ('schema_version', '1'), ('salt', 'old-salt');
    INSERT INTO studies VALUES (1, 'old', 'I agree.', 2, 0.0, 'CODE1', NULL, '2025-01-01 10:00:00');
    INSERT INTO stimuli VALUES
        (1, 1, 'c.jpg', 'cc', 's.jpg', 'ss', 'a2k_free', 'o1', 'c__s__a2k_free.png', '{"size": 512}'),
        (2, 1, 'c.jpg', 'cc', 's.jpg', 'ss', 'adain', 'o2', 'c__s__adain.png', '{"size": 512}');
    INSERT INTO participants VALUES (1, 'done-token', 1, NULL, NULL, '2025-01-01 10:00:00'),
                                    (2, 'half-token', 1, NULL, NULL, '2025-01-01 11:00:00');
    INSERT INTO trials VALUES (1, 't1', 1, 0, 1, 2, false, NULL, '2025-01-01 10:00:00'),
                              (2, 't2', 1, 1, 2, 1, false, NULL, '2025-01-01 10:00:00'),
                              (3, 't3', 2, 0, 1, 2, false, NULL, '2025-01-01 11:00:00'),
                              (4, 't4', 2, 1, 2, 1, false, NULL, '2025-01-01 11:00:00');
    INSERT INTO votes VALUES (1, 1, 'left', 800, '2025-01-01 10:01:00'),
                             (2, 2, 'right', 900, '2025-01-01 10:02:00'),
                             (3, 3, 'tie', 1000, '2025-01-01 11:01:00');
    INSERT INTO comparisons VALUES (1, 'cc', 'ss', 'a2k_free', 'adain', 'o1', 'o2', '{}', 'left',
                                    '2025-01-02 09:00:00');
"""


def old_database(url, version):
    """A database as schema `version` left it, holding OLD_ROWS: version 1's tables (SQLite's DDL, or
    PostgreSQL's with its timestamp and serial types), then the frozen upgrade steps up to `version`."""
    engine = make_engine(url)
    postgres = engine.dialect.name == "postgresql"
    ddl = SCHEMA_V1.replace("DATETIME", "TIMESTAMP WITH TIME ZONE").replace(
        "id INTEGER NOT NULL PRIMARY KEY", "id SERIAL NOT NULL PRIMARY KEY") if postgres else SCHEMA_V1
    with engine.begin() as conn:
        for statement in (ddl + OLD_ROWS).split(";"):
            if statement.strip():
                conn.execute(text(statement))
        for table in ("studies", "stimuli", "participants", "trials", "votes", "comparisons") if postgres else ():
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"))
        for step in range(2, version + 1):
            UPGRADES[step](conn)
        conn.execute(text(f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version'"))
    engine.dispose()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_migration_from_every_older_version_keeps_data(db_url, version):
    old_database(db_url, version)
    with Store(db_url) as store:  # opening runs migrate()
        assert schema_version(store.engine) == SCHEMA_VERSION
        df = load_votes(store, "old")
        assert df["choice"].tolist() == ["left", "right", "tie"] and df["winner"].tolist() == ["a2k_free", "a2k_free", None]
        assert store.progress("half-token") == {"done": 1, "total": 2}
        assert store.completion_code("done-token") == "CODE1"
        assert store.remaining_trials("half-token")[0]["token"] == "t4"
        assert store.comparisons()["choice"].tolist() == ["left"]
        with Store(db_url) as again:
            assert again.hash_id("k", "v") == store.hash_id("k", "v")  # the stored salt survives
        with store.engine.connect() as conn:
            completed = dict(conn.execute(text("SELECT token, completed_at FROM participants")).all())
        assert {k: v and str(v)[:19] for k, v in completed.items()} == \
            {"done-token": "2025-01-01 10:02:00", "half-token": None}  # backfilled from votes
        store.record_vote("t4", "half-token", "left", 500)  # and it keeps working
        assert store.completion_code("half-token") == "CODE1"
        args = ("cc", "ss", "a2k_free", "adain", "o1", "o2")
        store.record_comparison("new", *args, "tie")  # version 3: old votes have no token, new ones one each
        with pytest.raises(VoteRejected, match="already has a vote"):
            store.record_comparison("new", *args, "left")
        assert store.comparisons()["token"].isna().tolist() == [True, False]
        old = store.study("old")  # version 4: the page settings are off, old votes have no server time
        assert (old["title"], old["no_consent_code"], old["require_prolific"], old["max_participants"]) \
            == (None, None, False, None)
        assert load_votes(store, "old")["server_time_ms"].isna().all()
        before = load_arrivals(store, "old")  # version 6: no arrivals before the upgrade, which dates their start
        assert (before.opened, before.declined, before.declined_keys) == (0, 0, frozenset())
        assert before.since > datetime(2025, 1, 2, tzinfo=UTC)
        votes, people = load_votes(store, "old"), load_participants(store, "old")
        flow, sentence = participant_flow(participant_table(votes, people), votes, Rules(), before)
        assert flow["remaining"].tolist()[:5] == [0, 0, 0, 0, 2]  # opened, screened out, declined, neither, enrolled
        assert flow.loc[4, "note"].startswith("0 from the openings above, 2 with no recorded opening (openings are "
                                              f"recorded since {before.since:%Y-%m-%d %H:%M} UTC)")
        assert "and 0 enrolled (2 more enrolled with no recorded opening" in sentence
        store.record_arrival("old", "opened")
        store.record_arrival("old", "declined", "hash")
        store.count_arrival("old", "opened")
        after = load_arrivals(store, "old")
        assert (after.opened, after.declined, after.declined_keys) == (2, 1, {"hash"})
        # version 8: old studies asked the overall question with no practice, checks, references or minimum
        old = store.study("old")
        assert (old["questions"], old["show_references"], old["practice_trials"], old["attention_rate"],
                old["min_image_px"], old["debrief"], old["feedback_question"]) == (None, False, 0, 0, 0, None, None)
        votes = load_votes(store, "old")
        assert votes["question"].tolist() == ["overall"] * 4 and votes["kind"].tolist() == ["method"] * 4
        assert load_participants(store, "old")["viewport_width"].isna().all()
        assert after.screened_out == 0
        store.record_screen_out("old", {"viewport_width": 320})
        assert load_arrivals(store, "old").screened_out == 1


@pytest.mark.parametrize("start", ["empty", "version 1"])
def test_two_processes_opening_the_database_at_once_both_succeed(db_url, start):
    """Two app processes starting together: the schema is created or upgraded once, and neither fails."""
    if start == "version 1":
        old_database(db_url, 1)
    code = f"from study.store import Store; Store({db_url!r}).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1], stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with Store(db_url) as store:
        assert schema_version(store.engine) == SCHEMA_VERSION
        if start == "version 1":
            assert load_votes(store, "old")["choice"].tolist() == ["left", "right", "tie"]


def test_workers_registering_the_same_study_at_once_all_succeed(db_url):
    """App workers starting together (deploy/) each register the sample study: create_study and
    add_stimulus stay idempotent when another process inserts the same row between their check and
    their insert (PostgreSQL's unique index then refuses the second insert)."""
    stores = [Store(db_url) for _ in range(4)]
    errors = []

    def register(store, study, barrier):
        try:
            barrier.wait()
            store.create_study(study, "Agree?", n_trials=4, catch_rate=0)
            add_stimuli(store, study, contents=("c1",), styles=("s1",), catch=False)
        except Exception as exc:  # collected for the assertion
            errors.append(repr(exc))

    try:
        for round_ in range(5):
            barrier = threading.Barrier(len(stores))
            threads = [threading.Thread(target=register, args=(store, f"race{round_}", barrier)) for store in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert errors == []
            assert len(stores[0].stimuli(f"race{round_}")) == len(METHODS)
    finally:
        for store in stores:
            store.close()


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "study.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StudyError, match="schema version 99, newer than this code"):
        Store(path)


def test_unreachable_database_says_what_to_check():
    with pytest.raises(StudyError, match="(?s)cannot open the study database.*DATABASE_URL"):
        Store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_plain_paths_become_sqlite_files(tmp_path):
    path = tmp_path / "sub" / "dir" / "study.db"
    Store(path).close()
    assert Path(path).is_file()


def test_study_never_imports_torch_gradio_or_model():
    code = ("import sys, study.store, study.schema, study.analysis, study.analyze, study.report, study.prepare; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'gradio', 'model')); "
            "sys.exit(', '.join(bad) or None)")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_design_counts_the_method_pairs_shown_in_each_cell_so_far(store):
    """What new participants are balanced against (_design's `used`): per cell and method pair, the method
    trials drawn so far for this study's participants (no catch, practice or attention trial; no other
    study's), whichever side each method was on."""
    for name in ("s", "other"):
        store.create_study(name, "I agree.", 6, 0.2, practice_trials=1, attention_rate=0.2)
        add_stimuli(store, name)
    tokens = [store.new_participant("s") for _ in range(4)]
    for _ in range(3):
        store.new_participant("other")
    by_sha = {x["output_sha256"]: x for x in store.stimuli("s")}
    expected = Counter()
    for token in tokens:
        for t in store.remaining_trials(token):
            left, right = by_sha[t["left"]], by_sha[t["right"]]
            if t["practice"] or t["instructed"] or CATCH in (left["method"], right["method"]):
                continue
            cell = (left["content_sha256"], left["style_sha256"])
            expected[cell, tuple(sorted((left["method"], right["method"])))] += 1
    with store.engine.connect() as conn:
        cells, used = _design(conn, store._study(conn, "s"))
    assert used == expected and sum(expected.values()) >= 4 * 3
    assert cells == {(x["content_sha256"], x["style_sha256"]): {y["method"]: y["id"] for y in store.stimuli("s")
                     if (y["content_sha256"], y["style_sha256"]) == (x["content_sha256"], x["style_sha256"])}
                     for x in store.stimuli("s")}


def test_draws_balance_pairs_and_cells_across_participants_and_spread_catch_trials(tmp_path):
    """12 participants of 7 trials (2 catch, so 5 method trials over 3 method pairs and 3 cells): across
    participants each pair, and each pair in each cell, is shown as often as any other give or take one; a
    participant never sees a pair in a cell twice while another cell is left, nor two catch trials in one
    cell; catch images fall on both sides."""
    with Store(tmp_path / "b.db") as store:
        store.create_study("b", "I agree.", 7, 0.25)
        add_stimuli(store, "b", contents=("c1", "c2", "c3"), styles=("s1",))
        by_sha = {x["output_sha256"]: x for x in store.stimuli("b")}
        pairs, cells, catch_sides = Counter(), Counter(), Counter()
        for i in range(12):
            mine, catch_cells = Counter(), []
            for t in store.remaining_trials(store.new_participant("b", rng=random.Random(i))):
                left, right = by_sha[t["left"]], by_sha[t["right"]]
                if CATCH in (left["method"], right["method"]):
                    catch_cells.append(left["content_sha256"])
                    catch_sides["left" if left["method"] == CATCH else "right"] += 1
                    continue
                pair = tuple(sorted((left["method"], right["method"])))
                pairs[pair] += 1
                cells[pair, left["content_sha256"]] += 1
                mine[pair, left["content_sha256"]] += 1
            assert max(mine.values()) == 1 and len(catch_cells) == len(set(catch_cells)) == 2
        assert len(pairs) == 3 and max(pairs.values()) - min(pairs.values()) <= 1 and sum(pairs.values()) == 60
        assert len(cells) == 9 and max(cells.values()) - min(cells.values()) <= 1
        assert min(catch_sides["left"], catch_sides["right"]) >= 6  # of 24


def drawn(cells, used, n_trials, catch_rate=0.0, seed=0):
    """_draw_trials on a design made by hand (cells: cell -> {method: id}; used: Counter of (cell, pair) -> method
    trials drawn before): each trial as (cell, the methods shown, sorted)."""
    where = {i: (cell, m) for cell, methods in cells.items() for m, i in methods.items()}
    study = {"n_trials": n_trials, "catch_rate": catch_rate, "attention_rate": 0.0, "questions": None,
             "practice_trials": 0}
    rows = _draw_trials((cells, Counter(used)), study, random.Random(seed))
    return [(where[r["left_stimulus_id"]][0], tuple(sorted(where[r[k]][1] for k in ("left_stimulus_id", "right_stimulus_id"))))
            for r in rows]


def test_a_participant_sees_each_cell_of_a_pair_before_any_again_and_the_least_used_pair_first():
    cells = {c: {"a": 10 * i + 1, "b": 10 * i + 2} for i, c in enumerate(("c1", "c2", "c3"))}
    for seed in range(20):  # 4 trials of the one pair over 3 cells: the fourth in the cell others used least
        shown = Counter(cell for cell, _ in drawn(cells, {("c1", ("a", "b")): 5}, 4, seed=seed))
        assert shown["c1"] == 1 and sorted(shown.values()) == [1, 1, 2]
    for seed in range(5):  # 6 trials: each cell twice, though others used c1 most
        assert Counter(cell for cell, _ in drawn(cells, {("c1", ("a", "b")): 5}, 6, seed=seed)) == \
            {"c1": 2, "c2": 2, "c3": 2}
    two_pairs = {"c1": {"a": 1, "b": 2, "c": 3}}
    for seed in range(5):  # the pair others saw 3 times waits until the other has been shown as often
        pairs = Counter(pair for _, pair in drawn(two_pairs, {("c1", ("a", "c")): 3, ("c1", ("b", "c")): 3}, 3, seed=seed))
        assert pairs == {("a", "b"): 3}


def test_catch_trials_spread_over_the_cells_with_a_catch_image_and_a_method():
    """A cell with the catch image and one method is used; one with the catch image alone never is."""
    cells = {"both": {"a": 1, "b": 2}, "one": {"a": 3, CATCH: 4}, "alone": {CATCH: 5}, "other": {"a": 6, CATCH: 7}}
    for seed in range(10):
        catch = Counter(cell for cell, methods in drawn(cells, {}, 8, catch_rate=0.5, seed=seed) if CATCH in methods)
        assert catch == {"one": 2, "other": 2}


def test_a_study_that_cannot_be_drawn_says_what_to_do(tmp_path):
    with Store(tmp_path / "n.db") as store:
        store.create_study("one", "I agree.", 4, 0.0)
        add_stimuli(store, "one", methods=("a2k_free",), catch=False)
        with pytest.raises(StudyError) as refused:
            store.new_participant("one")
        assert str(refused.value) == ("the study needs images of at least two methods for the same content and style: "
                                      "run python -m study.prepare with two or more --methods")
        store.create_study("nocatch", "I agree.", 4, 0.5)
        add_stimuli(store, "nocatch", catch=False)
        with pytest.raises(StudyError) as refused:
            store.new_participant("nocatch")
        assert str(refused.value) == ("the study has catch trials but no catch images: run python -m study.prepare "
                                      "(it makes them), or create the study with catch_rate=0")
        store.create_study("ids", "I agree.", 4, 0.0)
        add_stimuli(store, "ids")
        token = store.new_participant("ids", {"PROLIFIC_PID": "", "SESSION_ID": None, "STUDY_ID": "x"})
        kept = load_participants(store, "ids").set_index("participant")
        assert kept["external_key"].isna().all() and len(kept) == 1 and token


def test_arrivals_beyond_the_limit_are_counted_per_study_event_and_hour(store, monkeypatch):
    """count_arrival: one row per study, event and UTC hour (its start), its count growing by one per arrival;
    an event outside the vocabulary is refused with the ones there are."""
    from study import store as store_module
    from study.schema import arrival_counts
    study_with_stimuli(store, "one")
    study_with_stimuli(store, "two")
    for stamp, study, event in [("10:05:07.5", "one", "opened"), ("10:59:59.9", "one", "opened"),
                                ("10:30:00", "one", "declined"), ("10:31:00", "two", "opened"),
                                ("11:00:00", "one", "opened")]:
        monkeypatch.setattr(store_module, "now", lambda s=stamp: datetime.fromisoformat(f"2026-03-04T{s}+00:00"))
        store.count_arrival(study, event)
    with store.engine.connect() as conn:
        rows = conn.execute(select(arrival_counts.c.study_id, arrival_counts.c.event, arrival_counts.c.hour,
                                   arrival_counts.c.n).order_by(arrival_counts.c.hour, arrival_counts.c.study_id,
                                                                 arrival_counts.c.event)).all()
    one, two = (store.study(name)["id"] for name in ("one", "two"))
    assert [(s, e, h.strftime("%H:%M:%S.%f"), n) for s, e, h, n in rows] == [
        (one, "declined", "10:00:00.000000", 1), (one, "opened", "10:00:00.000000", 2),
        (two, "opened", "10:00:00.000000", 1), (one, "opened", "11:00:00.000000", 1)]
    assert load_arrivals(store, "one").opened == 3 and load_arrivals(store, "two").opened == 1
    with pytest.raises(StudyError) as refused:
        store.count_arrival("one", "clicked")
    assert str(refused.value) == "unknown arrival event 'clicked': use one of opened, declined"
