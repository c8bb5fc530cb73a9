"""The study database: studies, stimuli, participants, blind 2AFC trials and their votes.

SQLite (a file path) by default, any SQLAlchemy URL otherwise (PostgreSQL through psycopg 3).
Every public method runs one short transaction. The browser only ever sees opaque tokens and
image hashes: serve images by hash (`image_path`), since output file names contain method names.
"""
import functools
import hashlib
import hmac
import itertools
import os
import random
import re
import secrets
import sqlite3
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import URL, bindparam, create_engine, event, func, insert, inspect, select, text, update
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from .questions import DEFAULT as DEFAULT_QUESTIONS
from .questions import QuestionError, checked
from .schema import (
    ARRIVAL_EVENTS,
    ARRIVALS_SINCE,
    CHOICES,
    FEEDBACK_CHARS,
    INSTRUCTED,
    SCHEMA_VERSION,
    UPGRADES,
    arrival_counts,
    arrivals,
    arrivals_since_row,
    battles,
    comparisons,
    meta,
    metadata,
    participants,
    screen_outs,
    stimuli,
    studies,
    trials,
    votes,
)

BUSY_TIMEOUT_MS = 5000
MIGRATION_LOCK = 0x5717A2  # the PostgreSQL advisory lock key that serialises schema creation and upgrades
CATCH = "catch"  # the method name of the deliberately broken stimuli
KINDS = ("method", "catch", "attention", "practice")  # load_votes' kinds of trial
IDENTITY_KEY = "PROLIFIC_PID"  # the external id that identifies a person: they resume, never restart
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SCREEN_FIELDS = ("viewport_width", "viewport_height", "pixel_ratio", "browser", "device")  # a screen check's record
MIN_IMAGE_PX = 256  # a study's default least width of each image on a participant's screen, CSS px


class StudyError(Exception):
    """A request the study cannot carry out; the message says what to do instead."""


class VoteRejected(StudyError):
    """A vote that is not stored: unknown or foreign trial, a second vote, or an invalid answer."""


def data_dir():
    """The app's data folder (images, result cache, the default database): env DATA_DIR, else data/."""
    return Path(os.environ.get("DATA_DIR") or "data")


def default_url(data=None):
    """The database of the app, study.prepare and study.analyze when none is given: env DATABASE_URL,
    else the SQLite file arena.db in the data folder `data` (default: `data_dir()`)."""
    return os.environ.get("DATABASE_URL") or str(Path(data or data_dir()) / "arena.db")


def now():
    return datetime.now(UTC)


def make_engine(url_or_path):
    """A SQLAlchemy engine. A plain path is a SQLite file (its folder is created); SQLite runs in WAL
    mode with a busy timeout, and write transactions start with BEGIN IMMEDIATE so that concurrent
    writers queue instead of failing half-way. postgresql:// URLs use psycopg 3."""
    url = str(url_or_path)
    if "://" not in url:
        path = Path(url).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        url = URL.create("sqlite", database=str(path))
    elif url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection, _record):
    dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own; _sqlite_begin does
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _set_wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _set_wal(cursor):
    """Switch the file to WAL mode. SQLite answers "database is locked" at once, without waiting the
    busy timeout, while another process creates or switches the same new file: retry within that timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sqlite_begin(conn):
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")


def schema_version(engine):
    """The database's schema version; 0 for an empty database."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("meta"):
            return 0
        return int(conn.scalar(select(meta.c.value).where(meta.c.key == "schema_version")))


def migrate(engine):
    """Create the schema in an empty database, or upgrade an older one step by step (one transaction,
    data kept). Returns the version found before (0: empty). Processes starting at once take turns:
    SQLite's write transactions begin IMMEDIATE; on PostgreSQL a transaction-scoped advisory lock."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        if not inspect(conn).has_table("meta"):
            metadata.create_all(conn)
            conn.execute(insert(meta), [
                {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                {"key": "salt", "value": secrets.token_hex(32)},
                arrivals_since_row(),
            ])
            return 0
        found = int(conn.scalar(select(meta.c.value).where(meta.c.key == "schema_version")))
        if found > SCHEMA_VERSION:
            raise StudyError(
                f"the database has schema version {found}, newer than this code's {SCHEMA_VERSION}: "
                "update the code (git pull) before using it")
        for version in range(found + 1, SCHEMA_VERSION + 1):
            UPGRADES[version](conn)
        conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
        return found


class Store:
    """The study database at `url_or_path` (a SQLAlchemy URL or a SQLite file path), created or
    upgraded on open. Participants and trials are addressed by their tokens (unguessable strings)."""

    def __init__(self, url_or_path):
        try:
            self.engine = make_engine(url_or_path)
            migrate(self.engine)
        except (ArgumentError, OperationalError, ModuleNotFoundError) as exc:
            raise StudyError(f"cannot open the study database ({getattr(exc, 'orig', None) or exc}); "
                             "check --db or DATABASE_URL, and pip install -r requirements.txt") from exc
        with self._read() as conn:
            stored = conn.scalar(select(meta.c.value).where(meta.c.key == "salt"))
        self._salt = (os.environ.get("STUDY_SALT") or stored).encode()

    def close(self):
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _read(self):
        """A read-only transaction (a plain BEGIN on SQLite: it takes no write lock)."""
        with self.engine.connect() as conn:
            conn.execution_options(read_only=True)
            yield conn

    def _study(self, conn, name, lock=False):
        query = select(studies).where(studies.c.name == name)
        row = conn.execute(query.with_for_update() if lock else query).mappings().first()
        if row is None:
            known = conn.scalars(select(studies.c.name).order_by(studies.c.name)).all()
            raise StudyError(
                f"no study named {name!r} in this database (known: {', '.join(known) or 'none'}); "
                "create it with python -m study.prepare")
        return row

    def _participant(self, conn, token):
        row = conn.execute(select(participants).where(participants.c.token == token)).mappings().first()
        if row is None:
            raise StudyError("unknown participant id: start the study again from its link")
        return row

    # ---- studies and stimuli ----

    def create_study(self, name, consent, n_trials=20, catch_rate=0.1, images_dir=None, completion_code=None,
                     title=None, no_consent_code=None, require_prolific=False, max_participants=None, *,
                     questions=DEFAULT_QUESTIONS, show_references=True, practice_trials=0, attention_rate=0.0,
                     min_image_px=MIN_IMAGE_PX, screen_out_code=None, debrief=None, feedback_question=None):
        """Create a study, or return the id of the existing one with this name if its settings match.
        n_trials: per participant, catch and attention trials included; catch_rate, attention_rate: the
        fractions that are catch trials (a broken image) and attention checks (the question says which
        button to press). completion_code: shown at the end (e.g. Prolific's); a random one by default.
        title: the participants' page title; no_consent_code: Prolific's code for those who decline;
        require_prolific: refuse links without a well-formed PROLIFIC_PID; max_participants: enrolments taken.
        questions: [(key, wording)] (study.questions), each trial asks one; show_references: the content
        photo and style painting beside the pair; practice_trials: shown before the counted ones, never
        analysed; min_image_px: the least width in CSS px each image must get on the participant's screen
        (0: any); screen_out_code: Prolific's code for those whose screen is smaller; debrief: the text shown
        with the completion code; feedback_question: asked there, answered optionally (None: not asked)."""
        if not STUDY_NAME.fullmatch(name or ""):
            raise StudyError(f"study name {name!r}: use 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit")
        if not (consent or "").strip():
            raise StudyError("the consent text is empty: give the text participants must agree to")
        if not isinstance(n_trials, int) or n_trials < 1:
            raise StudyError(f"n_trials must be a positive integer, not {n_trials!r}")
        if not 0 <= catch_rate < 1:
            raise StudyError(f"catch_rate must be in [0, 1), not {catch_rate!r}")
        if not 0 <= attention_rate < 1:
            raise StudyError(f"attention_rate must be in [0, 1), not {attention_rate!r}")
        if n_trials - round(n_trials * catch_rate) - round(n_trials * attention_rate) < 1:
            raise StudyError(f"with catch_rate={catch_rate} and attention_rate={attention_rate}, none of the "
                             f"{n_trials} trials compares methods: lower them")
        for label, value in (("practice_trials", practice_trials), ("min_image_px", min_image_px)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise StudyError(f"{label} must be a non-negative integer, not {value!r}")
        try:
            questions = checked(questions)
        except QuestionError as exc:
            raise StudyError(str(exc)) from exc
        if feedback_question is not None and not feedback_question.strip():
            feedback_question = None
        if max_participants is not None and (not isinstance(max_participants, int) or max_participants < 1):
            raise StudyError(f"max_participants must be a positive integer or None, not {max_participants!r}")
        images_dir = str(Path(images_dir).resolve()) if images_dir is not None else None
        wanted = {"consent": consent, "n_trials": n_trials, "catch_rate": catch_rate, "images_dir": images_dir,
                  "title": title, "no_consent_code": no_consent_code, "require_prolific": bool(require_prolific),
                  "max_participants": max_participants, "questions": questions,
                  "show_references": bool(show_references), "practice_trials": practice_trials,
                  "attention_rate": attention_rate, "min_image_px": min_image_px, "screen_out_code": screen_out_code,
                  "debrief": debrief, "feedback_question": feedback_question}

        def create(conn):
            row = conn.execute(select(studies).where(studies.c.name == name)).mappings().first()
            if row is not None:
                differ = [k for k, v in wanted.items() if row[k] != v]
                if completion_code is not None and row["completion_code"] != completion_code:
                    differ.append("completion_code")
                if differ:
                    raise StudyError(
                        f"study {name!r} already exists with "
                        + ", ".join("another consent text" if k == "consent" else f"{k}={row[k]!r}" for k in differ)
                        + ": use the same settings, or a new study name")
                return row["id"]
            code = completion_code or secrets.token_hex(4).upper()
            return conn.execute(
                insert(studies).values(name=name, completion_code=code, created_at=now(), **wanted)
            ).inserted_primary_key[0]
        return self._idempotent(create)

    def _idempotent(self, body):
        """body(conn) in a transaction, run once more if another process inserted the same row between
        its check and its insert (IntegrityError: app workers starting at once register the sample
        study together); the second run finds that row."""
        try:
            with self.engine.begin() as conn:
                return body(conn)
        except IntegrityError:
            with self.engine.begin() as conn:
                return body(conn)

    def study(self, name):
        """The study's settings as a dict (name, consent, n_trials, catch_rate, images_dir, ...)."""
        with self._read() as conn:
            return dict(self._study(conn, name))

    def add_stimulus(self, study, content_name, content_sha256, style_name, style_sha256, method,
                     output_sha256, path, settings=None):
        """Register one image shown to participants; `path` is relative to the study's images_dir.
        Idempotent: registering the same image again returns its id."""
        def add(conn):
            study_id = self._study(conn, study)["id"]
            key = (stimuli.c.study_id == study_id) & (stimuli.c.content_sha256 == content_sha256) \
                & (stimuli.c.style_sha256 == style_sha256) & (stimuli.c.method == method)
            row = conn.execute(select(stimuli.c.id, stimuli.c.output_sha256).where(key)).first()
            if row is not None:
                if row.output_sha256 != output_sha256:
                    raise StudyError(
                        f"{content_name} x {style_name} x {method} is already registered with another image "
                        f"({row.output_sha256[:12]}, now {output_sha256[:12]}): the output changed after "
                        "participants may have seen it; register it under a new study name")
                return row.id
            return conn.execute(insert(stimuli).values(
                study_id=study_id, content_name=content_name, content_sha256=content_sha256,
                style_name=style_name, style_sha256=style_sha256, method=method,
                output_sha256=output_sha256, path=str(path), settings=settings or {},
            )).inserted_primary_key[0]
        return self._idempotent(add)

    def stimuli(self, study):
        """The study's stimuli as dicts (content_name, style_name, method, output_sha256, path, ...)."""
        with self._read() as conn:
            study_id = self._study(conn, study)["id"]
            rows = conn.execute(select(stimuli).where(stimuli.c.study_id == study_id).order_by(stimuli.c.id))
            return [dict(r) for r in rows.mappings()]

    def stimulus_study(self, stimulus_id):
        """The name of the study that holds the stimulus with this id, or None."""
        with self._read() as conn:
            return conn.scalar(select(studies.c.name).join(stimuli, stimuli.c.study_id == studies.c.id)
                               .where(stimuli.c.id == stimulus_id))

    def image_path(self, study, sha256):
        """The file of the study's stimulus with this output hash (what a blind trial's image URL serves)."""
        with self._read() as conn:
            row = self._study(conn, study)
            path = conn.scalar(select(stimuli.c.path).where(
                (stimuli.c.study_id == row["id"]) & (stimuli.c.output_sha256 == sha256)))
        if path is None:
            raise StudyError(f"no image {sha256[:12]}... in study {study!r}")
        if row["images_dir"] is None:
            raise StudyError(f"study {study!r} has no images_dir: create it with python -m study.prepare")
        return Path(row["images_dir"]) / path

    # ---- participants and trials ----

    def hash_id(self, name, value):
        """Salted SHA-256 (HMAC) of an external id such as PROLIFIC_PID: 64 hex characters. The salt is
        env STUDY_SALT if set, else the random one made with the database (keep it fixed: a changed salt
        no longer recognises returning participants)."""
        return hmac.new(self._salt, f"{name}\0{value}".encode(), hashlib.sha256).hexdigest()

    def new_participant(self, study, external_ids=None, rng=None, screen=None):
        """Enrol a participant and draw their trial sequence; returns their token (the browser keeps it).
        external_ids: e.g. {"PROLIFIC_PID": ..., "STUDY_ID": ..., "SESSION_ID": ...}, stored hashed only.
        screen: what the screen check measured (SCREEN_FIELDS: viewport_width, viewport_height in CSS px,
        pixel_ratio, browser, device), stored with the participant; None when not measured.
        A PROLIFIC_PID seen before in this study never gets the earlier token: a new participant is enrolled
        as a repeat attempt (repeat_of: the first one), so another browser can neither see nor cast that
        participant's votes (only the browser that keeps the token resumes it).
        Raises StudyError when the study has its max_participants. rng: a random.Random for the draw."""
        hashed = {str(k): self.hash_id(k, v) for k, v in (external_ids or {}).items() if v not in (None, "")}
        key = hashed.get(IDENTITY_KEY)
        with self.engine.begin() as conn:
            row = self._study(conn, study, lock=True)  # one enrolment at a time per study keeps pairs balanced
            first = None
            if key is not None:
                first = conn.execute(select(participants.c.id).where(
                    (participants.c.study_id == row["id"]) & (participants.c.external_key == key))).first()
            enrolled = conn.scalar(select(func.count()).where(participants.c.study_id == row["id"]))
            if row["max_participants"] is not None and enrolled >= row["max_participants"]:
                raise StudyError("this study has all the participants it needs and takes no more: thank you "
                                 "for your interest")
            token = secrets.token_urlsafe(24)
            participant_id = conn.execute(insert(participants).values(
                token=token, study_id=row["id"], external_key=None if first else key, external_ids=hashed or None,
                created_at=now(), repeat_of=first.id if first else None, **_screen_row(screen),
            )).inserted_primary_key[0]
            sequence = _draw_trials(_design(conn, row), row, rng or random.Random())
            stamp = now()
            conn.execute(insert(trials), [
                {"token": secrets.token_urlsafe(16), "participant_id": participant_id, "position": i,
                 "created_at": stamp, **trial} for i, trial in enumerate(sequence)
            ])
            return token

    def record_screen_out(self, study, screen, external_key=None):
        """Record a participant turned away by the screen check (before consent: nobody is enrolled), with
        the screen (see new_participant) and external_key (the salted PROLIFIC_PID hash; None without one)."""
        with self.engine.begin() as conn:
            conn.execute(insert(screen_outs).values(study_id=self._study(conn, study)["id"], external_key=external_key,
                                                    created_at=now(), **_screen_row(screen)))

    def save_feedback(self, participant, text):
        """Keep the participant's free-text feedback (it replaces any sent before). StudyError for an unknown
        participant, one with trials left, or a text over FEEDBACK_CHARS characters."""
        if not isinstance(text, str) or len(text) > FEEDBACK_CHARS:
            raise StudyError(f"the feedback must be text of at most {FEEDBACK_CHARS} characters")
        with self.engine.begin() as conn:
            row = self._participant(conn, participant)
            if row["completed_at"] is None:
                raise StudyError("feedback is taken once every trial has an answer")
            conn.execute(update(participants).where(participants.c.id == row["id"]).values(feedback=text.strip() or None))

    def record_arrival(self, study, event, external_key=None):
        """Record one arrival of `study`'s link, event "opened" (in a browser) or "declined" (consent), with
        the time and external_key (the salted hash of PROLIFIC_PID, Store.hash_id; None without one)."""
        with self.engine.begin() as conn:
            conn.execute(insert(arrivals).values(study_id=self._study(conn, study)["id"], event=_event(event),
                                                 external_key=external_key or None, created_at=now()))

    def count_arrival(self, study, event):
        """Count one arrival (see record_arrival) without a row of its own: one more in the study's count
        for the event and the current hour (the store of arrivals beyond a per-address limit)."""
        stamp = now()
        hour = stamp.replace(minute=0, second=0, microsecond=0)

        def count(conn):
            key = {"study_id": self._study(conn, study)["id"], "event": _event(event), "hour": hour}
            where = [arrival_counts.c[k] == v for k, v in key.items()]
            if not conn.execute(update(arrival_counts).where(*where).values(n=arrival_counts.c.n + 1)).rowcount:
                conn.execute(insert(arrival_counts).values(**key, n=1))
        self._idempotent(count)

    def finished_participant(self, study, external_ids):
        """The token of the participant with this PROLIFIC_PID (in external_ids) who answered every trial of
        the study, or None: such a participant is shown the completion code again, on any browser."""
        pid = (external_ids or {}).get(IDENTITY_KEY)
        if not pid:
            return None
        with self._read() as conn:
            study_id = self._study(conn, study)["id"]
            return conn.scalar(select(participants.c.token).where(
                (participants.c.study_id == study_id) & (participants.c.external_key == self.hash_id(IDENTITY_KEY, pid))
                & participants.c.completed_at.is_not(None)))

    def remaining_trials(self, participant):
        """The participant's unvoted trials in order, as the browser may see them:
        {"token", "position" (0-based, practice trials first), "n_trials" (counted ones), "practice_trials",
        "left", "right" (image sha256s, no method names), "question" (its key), "practice", "instructed"}.
        One query (a study vote makes one), and a second only when none is left."""
        with self._read() as conn:
            return self._remaining(conn, participant)[0]

    def _remaining(self, conn, participant):
        """(remaining_trials' list, [(trial id, participant id)] of its trials); StudyError for an unknown participant."""
        found = _views(conn, _remaining_query(), {"participant": participant})
        if not found:
            self._participant(conn, participant)  # raises StudyError for an unknown participant
        return found, [(r.pop("trial_id"), r.pop("participant_id")) for r in found]

    def get_trial(self, token):
        """One trial as the browser may see it (see remaining_trials)."""
        with self._read() as conn:
            found = _views(conn, _trial_view_query(), {"token": token})
        if not found:
            raise StudyError("unknown trial: reload the study page to get your next trial")
        return found[0]

    def record_vote(self, trial_token, participant, choice, response_time_ms=None, server_time_ms=None):
        """Store the participant's answer to a trial. choice: 'left', 'right', 'tie' or 'both_bad';
        response_time_ms: from both images painted in the browser to the click (the browser's clock);
        server_time_ms: from sending the trial to receiving the vote (the server's clock, downloads included).
        Raises VoteRejected for an unknown trial, another participant's trial, a second vote on a trial,
        or an invalid answer."""
        row = _vote_row(choice, response_time_ms, server_time_ms)
        try:
            with self.engine.begin() as conn:
                trial = conn.execute(_TRIAL_OWNER, {"token": trial_token}).first()
                if trial is None:
                    raise VoteRejected("unknown trial: reload the study page to get your next trial")
                if not hmac.compare_digest(trial.owner, str(participant)):
                    raise VoteRejected("this trial belongs to another participant: reload the study page")
                conn.execute(insert(votes).values(trial_id=trial.id, **row))
                if _unvoted(conn, trial.participant_id) == 0:
                    _complete(conn, trial.participant_id)
        except IntegrityError as exc:
            raise VoteRejected("this trial already has a vote and votes cannot be changed: go on to the next trial") from exc

    def answer_next(self, participant, trial_token, choice, response_time_ms=None, server_time_ms=None):
        """Store the participant's answer to their next unanswered trial, in one transaction (a study
        vote; see record_vote for the arguments). Returns (stored, remaining): stored is False, and
        nothing written, when `trial_token` is not their next trial (answered already, or by a request
        that got there first); remaining: their unvoted trials now, as remaining_trials gives them.
        Raises StudyError for an unknown participant, VoteRejected for an invalid answer."""
        row = _vote_row(choice, response_time_ms, server_time_ms)
        try:
            with self.engine.begin() as conn:
                remaining, ids = self._remaining(conn, participant)
                if not remaining or remaining[0]["token"] != trial_token:
                    return False, remaining
                conn.execute(insert(votes).values(trial_id=ids[0][0], **row))
                if len(remaining) == 1:
                    _complete(conn, ids[0][1])
                return True, remaining[1:]
        except IntegrityError:  # the same trial answered by another request since the query
            return False, self.remaining_trials(participant)

    def progress(self, participant):
        """{"done": trials voted, "total": trials assigned}."""
        with self._read() as conn:
            participant_id = self._participant(conn, participant)["id"]
            total = conn.scalar(select(func.count()).where(trials.c.participant_id == participant_id))
            return {"done": total - _unvoted(conn, participant_id), "total": total}

    def completion_code(self, participant):
        """The study's completion code, once the participant has voted on every trial."""
        with self._read() as conn:
            row = self._participant(conn, participant)
            left = _unvoted(conn, row["id"])
            if left:
                raise StudyError(f"{left} trial(s) still need an answer before the completion code is shown")
            return conn.scalar(select(studies.c.completion_code).where(studies.c.id == row["study_id"]))

    # ---- unblinded demo votes ----

    def record_comparison(self, token, content_sha256, style_sha256, left_method, right_method,
                          left_sha256, right_sha256, choice, settings=None):
        """Store the vote on the demo comparison `token` (method names were visible); returns its id.
        A second vote on the same comparison is refused (VoteRejected)."""
        if choice not in CHOICES:
            raise VoteRejected(f"invalid choice {choice!r}: send one of {', '.join(CHOICES)}")
        try:
            with self.engine.begin() as conn:
                return conn.execute(insert(comparisons).values(
                    token=token, content_sha256=content_sha256, style_sha256=style_sha256,
                    left_method=left_method, right_method=right_method, left_sha256=left_sha256,
                    right_sha256=right_sha256, settings=settings or {}, choice=choice, created_at=now(),
                )).inserted_primary_key[0]
        except IntegrityError as exc:
            raise VoteRejected("this comparison already has a vote: run a new comparison to vote again") from exc

    def comparisons(self):
        """All unblinded demo votes, oldest first, as a DataFrame (one row per vote)."""
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(select(comparisons).order_by(comparisons.c.id)).mappings()]
        return pd.DataFrame(rows, columns=list(comparisons.c.keys()))

    # ---- blind battles (the demo's Battle tab) ----

    def voted_pairs(self, visitor, content_sha256, style_sha256):
        """The method pairs (alphabetical tuples) this visitor has voted on for this content and style."""
        voter = self.hash_id("visitor", visitor)
        with self._read() as conn:
            rows = conn.execute(select(battles.c.method_low, battles.c.method_high).where(
                (battles.c.voter == voter) & (battles.c.content_sha256 == content_sha256)
                & (battles.c.style_sha256 == style_sha256)))
            return {tuple(r) for r in rows}

    def record_battle(self, token, visitor, source, content_sha256, style_sha256, left_method, right_method,
                      left_sha256, right_sha256, choice, settings=None, response_time_ms=None):
        """Store the vote on battle `token` (names hidden until the vote) by `visitor` (a browser's id, stored
        as a salted hash) from `source` (its network address's pseudonym, demo.pseudonyms); returns its id.
        Refused (VoteRejected): an invalid choice, the same method on both sides, a second vote on the battle,
        or a second vote of the visitor on this content, style and method pair (either side)."""
        if choice not in CHOICES:
            raise VoteRejected(f"invalid choice {choice!r}: send one of {', '.join(CHOICES)}")
        if left_method == right_method:
            raise VoteRejected("both sides show the same method: there is nothing to compare")
        low, high = sorted((left_method, right_method))
        try:
            with self.engine.begin() as conn:
                return conn.execute(insert(battles).values(
                    token=token, voter=self.hash_id("visitor", visitor), source=source, content_sha256=content_sha256,
                    style_sha256=style_sha256, left_method=left_method, right_method=right_method,
                    method_low=low, method_high=high, left_sha256=left_sha256, right_sha256=right_sha256,
                    settings=settings or {}, choice=choice, response_time_ms=response_time_ms, created_at=now(),
                )).inserted_primary_key[0]
        except IntegrityError as exc:
            raise VoteRejected("you have already voted on these two models for this photo and painting: "
                               "start a new battle") from exc

    def battles(self, after=0):
        """The battle votes with an id above `after` (default: all; any integer, numpy's included), oldest first,
        as a DataFrame (one row per vote; voter is a salted hash, source a pseudonym of the address, None for votes
        stored before schema version 7)."""
        with self._read() as conn:  # int(): SQLite would bind a numpy integer as a blob, above which no id lies
            rows = [dict(r) for r in conn.execute(
                select(battles).where(battles.c.id > int(after)).order_by(battles.c.id)).mappings()]
        df = pd.DataFrame(rows, columns=list(battles.c.keys()))
        df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
        return df

    def battle_ids(self, visitor):
        """The ids of the battle votes of `visitor` (a browser's id)."""
        with self._read() as conn:
            return list(conn.scalars(select(battles.c.id).where(battles.c.voter == self.hash_id("visitor", visitor))))

    def voted_images(self):
        """The sha256 of every image a demo vote refers to (photo, painting and both results, of the
        battles and the comparisons): the demo's image cache never deletes these."""
        columns = ("content_sha256", "style_sha256", "left_sha256", "right_sha256")
        with self._read() as conn:
            return {sha for table in (battles, comparisons) for column in columns
                    for sha in conn.scalars(select(table.c[column]).distinct())}


def _unvoted(conn, participant_id):
    return conn.scalar(_UNVOTED, {"participant_id": participant_id})


def _complete(conn, participant_id):
    conn.execute(update(participants).where(participants.c.id == participant_id).values(completed_at=now()))


def _screen_row(screen):
    """The SCREEN_FIELDS of a screen check's dict (missing ones None); StudyError for another key."""
    screen = screen or {}
    unknown = set(screen) - set(SCREEN_FIELDS)
    if unknown:
        raise StudyError(f"unknown screen fields {sorted(unknown)}: use {', '.join(SCREEN_FIELDS)}")
    return {name: screen.get(name) for name in SCREEN_FIELDS}


def _event(event):
    if event not in ARRIVAL_EVENTS:
        raise StudyError(f"unknown arrival event {event!r}: use one of {', '.join(ARRIVAL_EVENTS)}")
    return event


def _vote_row(choice, response_time_ms, server_time_ms):
    """The columns of a vote, checked; VoteRejected for an invalid choice or time."""
    if choice not in CHOICES:
        raise VoteRejected(f"invalid choice {choice!r}: send one of {', '.join(CHOICES)}")
    for name, value in (("response_time_ms", response_time_ms), ("server_time_ms", server_time_ms)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise VoteRejected(f"{name} must be a non-negative integer, not {value!r}")
    return {"choice": choice, "response_time_ms": None if response_time_ms is None else int(response_time_ms),
            "server_time_ms": None if server_time_ms is None else int(server_time_ms), "created_at": now()}


# the study page's queries, built once (building a select with its aliases costs more than running it)
_UNVOTED = (select(func.count()).select_from(trials).outerjoin(votes, votes.c.trial_id == trials.c.id)
            .where((trials.c.participant_id == bindparam("participant_id")) & votes.c.id.is_(None)))
_TRIAL_OWNER = (select(trials.c.id, trials.c.participant_id, participants.c.token.label("owner"))
                .join(participants, participants.c.id == trials.c.participant_id)
                .where(trials.c.token == bindparam("token")))


def _view_query(where, *ids):
    left, right = stimuli.alias(), stimuli.alias()
    return (select(trials.c.token, trials.c.position, left.c.output_sha256.label("left"),
                   right.c.output_sha256.label("right"), studies.c.n_trials, studies.c.practice_trials,
                   trials.c.question, trials.c.practice, trials.c.instructed, *ids)
            .join(left, left.c.id == trials.c.left_stimulus_id)
            .join(right, right.c.id == trials.c.right_stimulus_id)
            .join(participants, participants.c.id == trials.c.participant_id)
            .join(studies, studies.c.id == participants.c.study_id)
            .outerjoin(votes, votes.c.trial_id == trials.c.id)
            .where(where).order_by(trials.c.position))


@functools.cache
def _remaining_query():
    """A participant's unvoted trials, with their ids (built on first use, as mutation testing needs)."""
    return _view_query((participants.c.token == bindparam("participant")) & votes.c.id.is_(None),
                       trials.c.id.label("trial_id"), trials.c.participant_id)


@functools.cache
def _trial_view_query():
    """One trial by its token (built on first use)."""
    return _view_query(trials.c.token == bindparam("token"))


def _views(conn, query, params):
    return [dict(r) for r in conn.execute(query, params).mappings()]


def _design(conn, study):
    """What can be shown in the study: (cells, used).
    cells: (content_sha256, style_sha256) -> {method: stimulus id};
    used: Counter of (cell, (method_a, method_b)) -> method trials drawn so far for all participants."""
    cells = {}
    for r in conn.execute(select(stimuli.c.id, stimuli.c.content_sha256, stimuli.c.style_sha256, stimuli.c.method)
                          .where(stimuli.c.study_id == study["id"]).order_by(stimuli.c.id)):
        cells.setdefault((r.content_sha256, r.style_sha256), {})[r.method] = r.id
    left, right = stimuli.alias(), stimuli.alias()
    shown = conn.execute(
        select(left.c.content_sha256, left.c.style_sha256, left.c.method, right.c.method, func.count())
        .select_from(trials)
        .join(participants, participants.c.id == trials.c.participant_id)
        .join(left, left.c.id == trials.c.left_stimulus_id)
        .join(right, right.c.id == trials.c.right_stimulus_id)
        .where((participants.c.study_id == study["id"]) & trials.c.is_catch.is_(False) & trials.c.practice.is_(False)
               & trials.c.instructed.is_(None))
        .group_by(left.c.content_sha256, left.c.style_sha256, left.c.method, right.c.method)
    )
    used = Counter()
    for content, style, a, b, n in shown:
        used[((content, style), tuple(sorted((a, b))))] += n
    return cells, used


def _draw_trials(design, study, rng):
    """A participant's sequence as trials rows (left_stimulus_id, right_stimulus_id, is_catch, catch_side,
    question, practice, instructed): the study's practice trials first, then its n_trials shuffled.
    Method pairs: least shown across participants first, then the least shown content x style for
    that pair (never one this participant has seen while others remain); ties broken at random.
    Sides are random per trial. Catch trials pair a method's image with the cell's broken one.
    Attention checks and practice trials show a random method pair of a random cell (outside the
    balance: never analysed), an attention check with the button its question names (INSTRUCTED).
    Questions: each kind of trial (method, catch, attention) asks the study's questions in turn from a
    random one, so their counts differ by at most one; practice trials ask them in order."""
    cells, used = design
    n_trials = study["n_trials"]
    by_pair = {}
    for cell, methods in cells.items():
        for pair in itertools.combinations(sorted(m for m in methods if m != CATCH), 2):
            by_pair.setdefault(pair, []).append(cell)
    if not by_pair:
        raise StudyError("the study needs images of at least two methods for the same content and style: "
                         "run python -m study.prepare with two or more --methods")
    n_catch = round(n_trials * study["catch_rate"])
    n_attention = round(n_trials * study["attention_rate"])
    catch_cells = [c for c, methods in cells.items() if CATCH in methods and len(methods) > 1]
    if n_catch and not catch_cells:
        raise StudyError("the study has catch trials but no catch images: run python -m study.prepare "
                         "(it makes them), or create the study with catch_rate=0")
    keys = [k for k, _ in study["questions"] or DEFAULT_QUESTIONS]

    def asked(n):
        first = rng.randrange(len(keys))
        return [keys[(first + i) % len(keys)] for i in range(n)]

    def row(left, right, question, catch_side=None, practice=False, instructed=None):
        return {"left_stimulus_id": left, "right_stimulus_id": right, "is_catch": catch_side is not None,
                "catch_side": catch_side, "question": question, "practice": practice, "instructed": instructed}

    def any_pair():
        pair = rng.choice(sorted(by_pair))
        cell = rng.choice(by_pair[pair])
        ids = [cells[cell][m] for m in pair]
        rng.shuffle(ids)
        return ids

    pair_used = Counter()
    for (_, pair), n in used.items():
        pair_used[pair] += n
    mine = Counter()
    sequence = []
    for question in asked(n_trials - n_catch - n_attention):
        pair = min(sorted(by_pair), key=lambda p: (pair_used[p], rng.random()))
        cell = min(by_pair[pair], key=lambda c: (mine[c, pair], used[c, pair], rng.random()))
        mine[cell, pair] += 1
        used[cell, pair] += 1
        pair_used[pair] += 1
        ids = [cells[cell][m] for m in pair]
        rng.shuffle(ids)
        sequence.append(row(*ids, question))
    seen = Counter()
    for question in asked(n_catch):
        cell = min(catch_cells, key=lambda c: (seen[c], rng.random()))
        seen[cell] += 1
        real = cells[cell][rng.choice(sorted(m for m in cells[cell] if m != CATCH))]
        broken = cells[cell][CATCH]
        sequence.append(row(broken, real, question, "left") if rng.random() < 0.5
                        else row(real, broken, question, "right"))
    sequence += [row(*any_pair(), question, instructed=rng.choice(INSTRUCTED)) for question in asked(n_attention)]
    rng.shuffle(sequence)
    practice = [row(*any_pair(), keys[i % len(keys)], practice=True) for i in range(study["practice_trials"])]
    return practice + sequence


@contextmanager
def opened(source):
    """The Store for `source`: a Store as it is, or a URL / SQLite path opened now and closed after."""
    if isinstance(source, Store):
        yield source
    else:
        with Store(source) as store:
            yield store


def load_votes(source, study):
    """One row per vote of `study` (source: a Store, a URL or a SQLite path), in voting order.
    Columns: participant (int), trial (int), position, content, style, left_method, right_method,
    question (the key of the question the trial asked), choice, winner (method chosen; None for
    tie/both_bad), kind (KINDS: "method", "catch", "attention" or "practice"; practice votes are stored,
    never analysed), is_catch, catch_passed (nullable bool: the intact image was chosen; NA off catch
    trials), attention_passed (nullable bool: the button the attention check named was pressed; NA off
    them), response_time_ms (Int64, the browser's),
    server_time_ms (Int64, the server's), repeat_attempt (the participant's PROLIFIC_PID had enrolled in
    another browser before: see Store.new_participant), created_at (UTC)."""
    left, right = stimuli.alias(), stimuli.alias()
    with opened(source) as store, store._read() as conn:
        study_id = store._study(conn, study)["id"]
        rows = conn.execute(
            select(participants.c.id.label("participant"), trials.c.id.label("trial"), trials.c.position,
                   left.c.content_name.label("content"), left.c.style_name.label("style"),
                   left.c.method.label("left_method"), right.c.method.label("right_method"),
                   trials.c.question, votes.c.choice, trials.c.is_catch, trials.c.catch_side, trials.c.practice,
                   trials.c.instructed, votes.c.response_time_ms,
                   votes.c.server_time_ms, participants.c.repeat_of.is_not(None).label("repeat_attempt"),
                   votes.c.created_at)
            .select_from(votes)
            .join(trials, trials.c.id == votes.c.trial_id)
            .join(participants, participants.c.id == trials.c.participant_id)
            .join(left, left.c.id == trials.c.left_stimulus_id)
            .join(right, right.c.id == trials.c.right_stimulus_id)
            .where(participants.c.study_id == study_id)
            .order_by(votes.c.id)
        ).mappings()
        rows = [dict(r) for r in rows]
    columns = ["participant", "trial", "position", "content", "style", "left_method", "right_method", "question",
               "choice", "is_catch", "catch_side", "practice", "instructed", "response_time_ms", "server_time_ms",
               "repeat_attempt", "created_at"]
    df = pd.DataFrame(rows, columns=columns)
    df["is_catch"] = df["is_catch"].astype(bool)
    df["practice"] = df["practice"].astype(bool)
    df["repeat_attempt"] = df["repeat_attempt"].astype(bool)
    df["response_time_ms"] = df["response_time_ms"].astype("Int64")
    df["server_time_ms"] = df["server_time_ms"].astype("Int64")
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    winner = np.where(df["choice"] == "left", df["left_method"],
                      np.where(df["choice"] == "right", df["right_method"], None))
    df.insert(df.columns.get_loc("choice") + 1, "winner", pd.Series(winner, index=df.index, dtype=object))
    passed = pd.Series(pd.NA, index=df.index, dtype="boolean")
    passed[df["is_catch"]] = df["choice"].isin(["left", "right"]) & (df["choice"] != df["catch_side"])
    df.insert(df.columns.get_loc("is_catch") + 1, "catch_passed", passed)
    attention = df["instructed"].notna()
    checked_ = pd.Series(pd.NA, index=df.index, dtype="boolean")
    checked_[attention] = df["choice"] == df["instructed"]
    df.insert(df.columns.get_loc("catch_passed") + 1, "attention_passed", checked_)
    kind = np.select([df["practice"], df["is_catch"], attention], ["practice", "catch", "attention"], "method")
    df.insert(df.columns.get_loc("winner") + 1, "kind", pd.Series(kind, index=df.index, dtype=object))
    return df.drop(columns=["catch_side", "practice", "instructed"])


def load_participants(source, study):
    """One row per participant enrolled in `study` (source: a Store, a URL or a SQLite path), in
    enrolment order. Columns: participant (int, as in load_votes), enrolled_at (UTC), n_trials
    (assigned, catch and attention trials included, practice ones not), n_votes (on those), completed
    (a vote on every assigned trial), external_key (the salted hash of PROLIFIC_PID, None without one;
    compare with Store.hash_id), the screen check's SCREEN_FIELDS (None: not measured) and feedback."""
    kept = [participants.c[name] for name in ("external_key", *SCREEN_FIELDS, "feedback")]
    with opened(source) as store, store._read() as conn:
        study_id = store._study(conn, study)["id"]
        rows = conn.execute(
            select(participants.c.id.label("participant"), participants.c.created_at.label("enrolled_at"),
                   func.count(trials.c.id).label("n_trials"), func.count(votes.c.id).label("n_votes"),
                   *kept)
            .select_from(participants)
            .outerjoin(trials, (trials.c.participant_id == participants.c.id) & trials.c.practice.is_(False))
            .outerjoin(votes, votes.c.trial_id == trials.c.id)
            .where(participants.c.study_id == study_id)
            .group_by(participants.c.id)
            .order_by(participants.c.id)
        ).mappings()
        rows = [dict(r) for r in rows]
    df = pd.DataFrame(rows, columns=["participant", "enrolled_at", "n_trials", "n_votes", *(c.name for c in kept)])
    df["enrolled_at"] = pd.to_datetime(df["enrolled_at"], utc=True)
    df[["n_trials", "n_votes"]] = df[["n_trials", "n_votes"]].astype(int)
    df.insert(4, "completed", (df["n_votes"] >= df["n_trials"]) & (df["n_trials"] > 0))
    return df


@dataclass(frozen=True)
class Arrivals:
    """What the study page recorded before enrolment (Store.record_arrival and count_arrival).
    opened: openings of the study link, once per browser; declined: consent declines, once per browser;
    since: when the database began to record them (UTC; participants enrolled before have no opening);
    declined_keys: the salted PROLIFIC_PID hashes of the declines from Prolific links (Store.hash_id);
    screened_out: turned away by the screen check (Store.record_screen_out), screened_keys their hashes."""

    opened: int
    declined: int
    since: datetime
    declined_keys: frozenset
    screened_out: int = 0
    screened_keys: frozenset = frozenset()


def load_arrivals(source, study):
    """The Arrivals of `study` (source: a Store, a URL or a SQLite path)."""
    with opened(source) as store, store._read() as conn:
        study_id = store._study(conn, study)["id"]
        itemised = dict(conn.execute(select(arrivals.c.event, func.count()).where(arrivals.c.study_id == study_id)
                                     .group_by(arrivals.c.event)).all())
        counted = dict(conn.execute(select(arrival_counts.c.event, func.sum(arrival_counts.c.n))
                                    .where(arrival_counts.c.study_id == study_id).group_by(arrival_counts.c.event)).all())
        keys = conn.scalars(select(arrivals.c.external_key).distinct().where(
            (arrivals.c.study_id == study_id) & (arrivals.c.event == "declined") & arrivals.c.external_key.is_not(None)))
        since = conn.scalar(select(meta.c.value).where(meta.c.key == ARRIVALS_SINCE))
        total = {e: int(itemised.get(e, 0) + (counted.get(e) or 0)) for e in ARRIVAL_EVENTS}
        screened = conn.execute(select(screen_outs.c.external_key).where(screen_outs.c.study_id == study_id)).scalars().all()
        return Arrivals(total["opened"], total["declined"], datetime.fromisoformat(since), frozenset(keys),
                        len(screened), frozenset(k for k in screened if k))


def load_screens(source, study):
    """Every screen check record of `study`: one row per enrolled participant and per screen-out, columns
    outcome ("enrolled" or "screened out") and SCREEN_FIELDS (None where not measured)."""
    with opened(source) as store, store._read() as conn:
        study_id = store._study(conn, study)["id"]
        rows = [{"outcome": outcome, **dict(r)} for outcome, table in (("enrolled", participants),
                                                                      ("screened out", screen_outs))
                for r in conn.execute(select(*(table.c[f] for f in SCREEN_FIELDS))
                                      .where(table.c.study_id == study_id).order_by(table.c.id)).mappings()]
    return pd.DataFrame(rows, columns=["outcome", *SCREEN_FIELDS])
