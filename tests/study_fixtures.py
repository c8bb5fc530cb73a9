"""Fixtures and helpers for the study/ tests: a throwaway PostgreSQL server, a database URL fixture
over SQLite and PostgreSQL, a small stimulus set, and the frozen version-1 schema."""
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy

from bench.server import free_port
from study.store import CATCH, Store

METHODS = ("a2k_free", "adain", "all2all_free")


def _postgres_bin(name):
    """A PostgreSQL server binary on PATH or in /usr/lib/postgresql/*/bin (newest first), else None."""
    candidates = [shutil.which(name), *sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)]
    return next((str(c) for c in candidates if c and os.access(c, os.X_OK)), None)


def _unprivileged_user():
    """PostgreSQL refuses to run as root: `nobody`, or a system user created for the tests."""
    for name in ("nobody", "study-pg"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "study-pg"],
                   check=True, capture_output=True)
    return pwd.getpwnam("study-pg")


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server (initdb + pg_ctl) in a temp folder on a free local port, for the whole session.
    Yields (host, port); superuser `postgres`, trust authentication, fsync off."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql to run these tests"
        if os.environ.get("CI"):  # .ci/run installs the server: there a missing one is a failure, not a skip
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="study-pg-"))
    as_user = {"cwd": root}
    if os.geteuid() == 0:
        user = _unprivileged_user()
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    data, port = root / "data", free_port()
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True, text=True, **as_user)  # noqa: E731
    try:
        run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    except subprocess.CalledProcessError as exc:
        log = root / "server.log"
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr}\n{log.read_text() if log.exists() else ''}")
    try:
        yield "127.0.0.1", port
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True, **as_user)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, monkeypatch):
    """A fresh, empty database: a SQLite file in tmp_path, or a new database on the test PostgreSQL server."""
    monkeypatch.delenv("STUDY_SALT", raising=False)
    if request.param == "sqlite":
        return str(tmp_path / "study.db")
    import psycopg

    host, port = request.getfixturevalue("postgres_server")
    name = f"study_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@{host}:{port}/{name}"


@pytest.fixture
def store(db_url):
    """A Store on db_url. On SQLite, a query without ORDER BY returns its rows in reverse (PRAGMA
    reverse_unordered_selects): PostgreSQL promises no order either, and SQLite's indexes would hide a missing one."""
    with Store(db_url) as s:
        if s.engine.dialect.name == "sqlite":
            sqlalchemy.event.listen(s.engine, "connect",
                                    lambda dbapi, _: dbapi.execute("PRAGMA reverse_unordered_selects = ON"))
            s.engine.dispose()
        yield s


def fake_sha(*parts):
    return ("-".join(parts).encode().hex() + "0" * 64)[:64]


def add_stimuli(store, study, contents=("c1", "c2"), styles=("s1", "s2"), methods=METHODS, catch=True):
    """Register a stimulus per content x style x method (and a catch one per cell) with fake hashes."""
    for c in contents:
        for s in styles:
            for m in (*methods, CATCH) if catch else methods:
                store.add_stimulus(study, f"{c}.jpg", fake_sha(c), f"{s}.jpg", fake_sha(s), m,
                                   fake_sha(c, s, m), f"{c}__{s}__{m}.png", {"size": 64})


# The schema as version 1 created it (SQLite), frozen: migrations are tested against it.
SCHEMA_V1 = """
CREATE TABLE meta ("key" VARCHAR(64) NOT NULL PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE studies (
    id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL UNIQUE, consent TEXT NOT NULL,
    n_trials INTEGER NOT NULL, catch_rate FLOAT NOT NULL, completion_code VARCHAR(64) NOT NULL,
    images_dir TEXT, created_at DATETIME NOT NULL,
    CONSTRAINT ck_studies_n_trials CHECK (n_trials > 0),
    CONSTRAINT ck_studies_catch_rate CHECK (catch_rate >= 0 AND catch_rate < 1));
CREATE TABLE stimuli (
    id INTEGER NOT NULL PRIMARY KEY, study_id INTEGER NOT NULL REFERENCES studies (id),
    content_name VARCHAR(300) NOT NULL, content_sha256 VARCHAR(64) NOT NULL,
    style_name VARCHAR(300) NOT NULL, style_sha256 VARCHAR(64) NOT NULL, method VARCHAR(64) NOT NULL,
    output_sha256 VARCHAR(64) NOT NULL, path TEXT NOT NULL, settings JSON NOT NULL,
    UNIQUE (study_id, content_sha256, style_sha256, method));
CREATE TABLE participants (
    id INTEGER NOT NULL PRIMARY KEY, token VARCHAR(64) NOT NULL UNIQUE,
    study_id INTEGER NOT NULL REFERENCES studies (id), external_key VARCHAR(64), external_ids JSON,
    created_at DATETIME NOT NULL, UNIQUE (study_id, external_key));
CREATE TABLE trials (
    id INTEGER NOT NULL PRIMARY KEY, token VARCHAR(64) NOT NULL UNIQUE,
    participant_id INTEGER NOT NULL REFERENCES participants (id), position INTEGER NOT NULL,
    left_stimulus_id INTEGER NOT NULL REFERENCES stimuli (id),
    right_stimulus_id INTEGER NOT NULL REFERENCES stimuli (id),
    is_catch BOOLEAN NOT NULL, catch_side VARCHAR(5), created_at DATETIME NOT NULL,
    UNIQUE (participant_id, position),
    CONSTRAINT ck_trials_two_stimuli CHECK (left_stimulus_id <> right_stimulus_id),
    CONSTRAINT ck_trials_catch_side CHECK (catch_side IN ('left', 'right')),
    CONSTRAINT ck_trials_catch_has_side CHECK (is_catch = (catch_side IS NOT NULL)));
CREATE TABLE votes (
    id INTEGER NOT NULL PRIMARY KEY, trial_id INTEGER NOT NULL UNIQUE REFERENCES trials (id),
    choice VARCHAR(8) NOT NULL, response_time_ms INTEGER, created_at DATETIME NOT NULL,
    CONSTRAINT ck_votes_choice CHECK (choice IN ('left', 'right', 'tie', 'both_bad')),
    CONSTRAINT ck_votes_response_time CHECK (response_time_ms >= 0));
CREATE TABLE comparisons (
    id INTEGER NOT NULL PRIMARY KEY, content_sha256 VARCHAR(64) NOT NULL, style_sha256 VARCHAR(64) NOT NULL,
    left_method VARCHAR(64) NOT NULL, right_method VARCHAR(64) NOT NULL,
    left_sha256 VARCHAR(64) NOT NULL, right_sha256 VARCHAR(64) NOT NULL, settings JSON NOT NULL,
    choice VARCHAR(8) NOT NULL, created_at DATETIME NOT NULL,
    CONSTRAINT ck_comparisons_choice CHECK (choice IN ('left', 'right', 'tie', 'both_bad')));
"""
