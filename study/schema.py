"""The study database's tables (SQLAlchemy Core) and the steps that upgrade older databases.

Schema versions:
    1  meta, studies, stimuli, participants, trials, votes, comparisons
    2  participants.completed_at: when the participant's last vote came in
    3  comparisons.token: the demo's comparison id, unique, so each comparison gets one vote
    4  studies.title, no_consent_code, require_prolific, max_participants (set at prepare time);
       participants.repeat_of (a second attempt with a known PROLIFIC_PID from another browser);
       votes.server_time_ms (the server's own response time, beside the browser's response_time_ms)
    5  battles: the Battle tab's blind votes, one per visitor, content, style and method pair
    6  arrivals and arrival_counts: openings of a study link and consent declines, before enrolment;
       meta "arrivals_since" (when they began to be recorded)
    7  battles.source: a pseudonym of the network address a battle vote came from, unlinkable to the
       address (demo.pseudonyms); NULL for the votes before
    8  the trials a style-transfer study runs: studies.questions, show_references, practice_trials,
       attention_rate, min_image_px, screen_out_code, debrief, feedback_question; trials.question,
       practice, instructed; participants' screen (viewport_width, viewport_height, pixel_ratio,
       browser, device) and feedback; screen_outs (participants turned away by the screen check)
"""
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

SCHEMA_VERSION = 8
CHOICES = ("left", "right", "tie", "both_bad")
SIDES = ("left", "right")
ARRIVAL_EVENTS = ("opened", "declined")  # the study link opened in a browser; consent declined there
ARRIVALS_SINCE = "arrivals_since"  # the meta key: when this database began to record arrivals (ISO 8601, UTC)
INSTRUCTED = ("tie", "both_bad")  # the buttons an attention check tells to press: named alike in every layout
DEVICES = ("phone", "tablet", "desktop")
FEEDBACK_CHARS = 2000  # the longest free-text feedback kept

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


def _sql_list(values):
    return ", ".join(f"'{v}'" for v in values)


def _timestamp(name, nullable=False):
    """A UTC timestamp (SQLite keeps it as naive text, PostgreSQL as timestamptz)."""
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _screen_columns():
    """What the screen check measured: the viewport in CSS px, the device pixel ratio, browser and device type."""
    return [Column("viewport_width", Integer), Column("viewport_height", Integer), Column("pixel_ratio", Float),
            Column("browser", String(40)), Column("device", String(8))]


# key -> value: "schema_version", "salt" (the random salt of external-id hashes unless STUDY_SALT is set)
# and ARRIVALS_SINCE
meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

studies = Table(
    "studies", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("consent", Text, nullable=False),
    Column("n_trials", Integer, nullable=False),  # per participant, catch trials included
    Column("catch_rate", Float, nullable=False),  # fraction of the n_trials that are catch trials
    Column("completion_code", String(64), nullable=False),  # shown when every trial has a vote (Prolific's "cc")
    Column("images_dir", Text),  # stimuli paths are relative to it
    _timestamp("created_at"),
    Column("title", String(200)),  # the participants' page title (NULL: a neutral default)
    Column("no_consent_code", String(64)),  # Prolific's code for participants who do not consent
    Column("require_prolific", Boolean, nullable=False, server_default=text("false")),  # a PROLIFIC_PID is required
    Column("max_participants", Integer),  # enrolments the study takes (NULL: no limit)
    # version 8 (the defaults are what a study from before it ran: one question, no references, ...)
    Column("questions", JSON),  # [[key, wording], ...] (study.questions); NULL: the overall question
    Column("show_references", Boolean, nullable=False, server_default=text("false")),  # content and style shown
    Column("practice_trials", Integer, nullable=False, server_default=text("0")),  # before the counted ones
    Column("attention_rate", Float, nullable=False, server_default=text("0")),  # fraction of n_trials
    Column("min_image_px", Integer, nullable=False, server_default=text("0")),  # least CSS px per image (0: any)
    Column("screen_out_code", String(64)),  # Prolific's code for those whose screen is too small
    Column("debrief", Text),  # shown with the completion code
    Column("feedback_question", Text),  # asked with the completion code (NULL: none)
    CheckConstraint("n_trials > 0", name="n_trials"),
    CheckConstraint("catch_rate >= 0 AND catch_rate < 1", name="catch_rate"),
)

stimuli = Table(
    "stimuli", metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", ForeignKey("studies.id"), nullable=False),
    Column("content_name", String(300), nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("style_name", String(300), nullable=False),
    Column("style_sha256", String(64), nullable=False),
    Column("method", String(64), nullable=False),  # "catch" for the deliberately broken images
    Column("output_sha256", String(64), nullable=False),
    Column("path", Text, nullable=False),
    Column("settings", JSON, nullable=False),
    UniqueConstraint("study_id", "content_sha256", "style_sha256", "method"),
)

participants = Table(
    "participants", metadata,
    Column("id", Integer, primary_key=True),
    Column("token", String(64), nullable=False, unique=True),  # secrets.token_urlsafe: the browser's credential
    Column("study_id", ForeignKey("studies.id"), nullable=False),
    Column("external_key", String(64)),  # salted hash of PROLIFIC_PID: the same person resumes
    Column("external_ids", JSON),  # {name: salted hash}; raw ids are never stored
    _timestamp("created_at"),
    _timestamp("completed_at", nullable=True),
    # the first attempt of this PROLIFIC_PID, when this one came from another browser
    # (external_key is then NULL: the key stays with the first attempt)
    Column("repeat_of", ForeignKey("participants.id")),
    # version 8: the screen check's record (NULL: not measured, as for a client without the page's script)
    *_screen_columns(),
    Column("feedback", Text),  # the free-text answer at the end (at most FEEDBACK_CHARS)
    UniqueConstraint("study_id", "external_key"),
)

trials = Table(
    "trials", metadata,
    Column("id", Integer, primary_key=True),
    Column("token", String(64), nullable=False, unique=True),
    Column("participant_id", ForeignKey("participants.id"), nullable=False),
    Column("position", Integer, nullable=False),  # 0-based order within the participant's sequence
    Column("left_stimulus_id", ForeignKey("stimuli.id"), nullable=False),
    Column("right_stimulus_id", ForeignKey("stimuli.id"), nullable=False),
    Column("is_catch", Boolean, nullable=False),
    Column("catch_side", String(5)),  # the side showing the broken image, catch trials only
    _timestamp("created_at"),
    # version 8: the question asked (a key of studies.questions), a practice trial (never analysed), and the
    # button an attention check's question tells to press (instructed-response trials only)
    Column("question", String(32), nullable=False, server_default=text("'overall'")),
    Column("practice", Boolean, nullable=False, server_default=text("false")),
    Column("instructed", String(8)),
    CheckConstraint(f"instructed IN ({_sql_list(INSTRUCTED)})", name="instructed"),
    UniqueConstraint("participant_id", "position"),
    CheckConstraint("left_stimulus_id <> right_stimulus_id", name="two_stimuli"),
    CheckConstraint(f"catch_side IN ({_sql_list(SIDES)})", name="catch_side"),
    CheckConstraint("is_catch = (catch_side IS NOT NULL)", name="catch_has_side"),
)

votes = Table(
    "votes", metadata,
    Column("id", Integer, primary_key=True),
    Column("trial_id", ForeignKey("trials.id"), nullable=False, unique=True),  # one vote per trial, ever
    Column("choice", String(8), nullable=False),
    Column("response_time_ms", Integer),  # measured in the browser: both images painted to the click
    _timestamp("created_at"),
    Column("server_time_ms", Integer),  # measured on the server: trial sent to vote received (downloads included)
    CheckConstraint(f"choice IN ({_sql_list(CHOICES)})", name="choice"),
    CheckConstraint("response_time_ms >= 0", name="response_time"),
)

# unblinded votes from the demo's comparison tab (method names were visible)
comparisons = Table(
    "comparisons", metadata,
    Column("id", Integer, primary_key=True),
    Column("content_sha256", String(64), nullable=False),
    Column("style_sha256", String(64), nullable=False),
    Column("left_method", String(64), nullable=False),
    Column("right_method", String(64), nullable=False),
    Column("left_sha256", String(64), nullable=False),
    Column("right_sha256", String(64), nullable=False),
    Column("settings", JSON, nullable=False),
    Column("choice", String(8), nullable=False),
    _timestamp("created_at"),
    Column("token", String(64)),  # the comparison shown in the demo; NULL for votes before version 3
    CheckConstraint(f"choice IN ({_sql_list(CHOICES)})", name="choice"),
    Index("uq_comparisons_token", "token", unique=True),
)


# blind votes from the demo's Battle tab: the names were revealed only after the vote
def _battles_table(meta_data):
    """The battles table as version 5 defined it (frozen: later versions add to it, as `battles` below does)."""
    return Table(
        "battles", meta_data,
        Column("id", Integer, primary_key=True),
        Column("token", String(64), nullable=False, unique=True),  # the battle shown (one vote each)
        Column("voter", String(64), nullable=False),  # salted hash of the visitor's id (issued and signed by the server)
        Column("content_sha256", String(64), nullable=False),
        Column("style_sha256", String(64), nullable=False),
        Column("left_method", String(64), nullable=False),  # shown as Model A
        Column("right_method", String(64), nullable=False),  # shown as Model B
        Column("method_low", String(64), nullable=False),  # the pair in alphabetical order: the unique key
        Column("method_high", String(64), nullable=False),
        Column("left_sha256", String(64), nullable=False),
        Column("right_sha256", String(64), nullable=False),
        Column("settings", JSON, nullable=False),
        Column("choice", String(8), nullable=False),
        Column("response_time_ms", Integer),
        _timestamp("created_at"),
        UniqueConstraint("voter", "content_sha256", "style_sha256", "method_low", "method_high"),
        CheckConstraint("left_method <> right_method", name="two_methods"),
        CheckConstraint("method_low < method_high", name="pair_order"),
        CheckConstraint(f"choice IN ({_sql_list(CHOICES)})", name="choice"),
        CheckConstraint("response_time_ms >= 0", name="response_time"),
    )


battles = _battles_table(metadata)
# version 7: the vote's network address's pseudonym of the day (demo.pseudonyms); NULL for votes before it
battles.append_column(Column("source", String(64)))


# openings of a study link (once per browser) and consent declines: the time and, from a Prolific link,
# the salted hash of PROLIFIC_PID, nothing else; one row each up to a per-address limit, then counted only
def _arrival_tables(meta_data):
    itemised = Table(
        "arrivals", meta_data,
        Column("id", Integer, primary_key=True),
        Column("study_id", Integer, ForeignKey("studies.id"), nullable=False),
        Column("event", String(8), nullable=False),
        Column("external_key", String(64)),  # salted hash of PROLIFIC_PID (NULL without one)
        _timestamp("created_at"),
        CheckConstraint(f"event IN ({_sql_list(ARRIVAL_EVENTS)})", name="event"),
    )
    counted = Table(
        "arrival_counts", meta_data,  # arrivals beyond the per-address limit: a count per study, event and hour
        Column("study_id", Integer, ForeignKey("studies.id"), primary_key=True),
        Column("event", String(8), primary_key=True),
        Column("hour", DateTime(timezone=True), primary_key=True),  # the hour's start, UTC
        Column("n", Integer, nullable=False),
        CheckConstraint(f"event IN ({_sql_list(ARRIVAL_EVENTS)})", name="event"),
        CheckConstraint("n > 0", name="n"),
    )
    return itemised, counted


arrivals, arrival_counts = _arrival_tables(metadata)


# participants whose screen stayed below the study's minimum (before consent: not enrolled), once per
# browser, within the per-address limit of arrivals; the salted PROLIFIC_PID hash and the screen only
def _screen_outs_table(meta_data):
    return Table(
        "screen_outs", meta_data,
        Column("id", Integer, primary_key=True),
        Column("study_id", Integer, ForeignKey("studies.id"), nullable=False),
        Column("external_key", String(64)),
        *_screen_columns(),
        _timestamp("created_at"),
    )


screen_outs = _screen_outs_table(metadata)


def arrivals_since_row():
    """The meta row that dates the start of arrival records: now."""
    return {"key": ARRIVALS_SINCE, "value": datetime.now(UTC).isoformat()}


def _v2_completed_at(conn):
    """Add participants.completed_at; backfill it with the last vote of everyone who voted on every trial."""
    column_type = DateTime(timezone=True).compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE participants ADD COLUMN completed_at {column_type}"))
    conn.execute(text(
        "UPDATE participants SET completed_at = ("
        " SELECT MAX(votes.created_at) FROM votes JOIN trials ON trials.id = votes.trial_id"
        " WHERE trials.participant_id = participants.id)"
        " WHERE EXISTS (SELECT 1 FROM trials WHERE trials.participant_id = participants.id)"
        " AND NOT EXISTS (SELECT 1 FROM trials LEFT JOIN votes ON votes.trial_id = trials.id"
        " WHERE trials.participant_id = participants.id AND votes.id IS NULL)"
    ))


def _v3_comparison_token(conn):
    """Add comparisons.token with a unique index (NULLs, the older votes, do not collide)."""
    conn.execute(text("ALTER TABLE comparisons ADD COLUMN token VARCHAR(64)"))
    conn.execute(text("CREATE UNIQUE INDEX uq_comparisons_token ON comparisons (token)"))


def _v4_participant_page(conn):
    """Add the studies' page settings, participants.repeat_of and votes.server_time_ms (all NULL or false)."""
    conn.execute(text("ALTER TABLE studies ADD COLUMN title VARCHAR(200)"))
    conn.execute(text("ALTER TABLE studies ADD COLUMN no_consent_code VARCHAR(64)"))
    conn.execute(text("ALTER TABLE studies ADD COLUMN require_prolific BOOLEAN NOT NULL DEFAULT false"))
    conn.execute(text("ALTER TABLE studies ADD COLUMN max_participants INTEGER"))
    conn.execute(text("ALTER TABLE participants ADD COLUMN repeat_of INTEGER REFERENCES participants (id)"))
    conn.execute(text("ALTER TABLE votes ADD COLUMN server_time_ms INTEGER"))


def _v5_battles(conn):
    """Create the battles table as version 5 defined it (`_battles_table`)."""
    _battles_table(MetaData(naming_convention=metadata.naming_convention)).create(conn)


def _v6_arrivals(conn):
    """Create arrivals and arrival_counts as version 6 defines them (`_arrival_tables`: a later version
    that changes them must first copy them into this step, as `_v5_battles` was) and date the start of
    their records: the database's older enrolments have none."""
    frozen = MetaData(naming_convention=metadata.naming_convention)
    Table("studies", frozen, Column("id", Integer, primary_key=True))  # the foreign keys' target, not created
    for table in _arrival_tables(frozen):
        table.create(conn)
    conn.execute(meta.insert().values(arrivals_since_row()))


def _v7_battle_source(conn):
    """Add battles.source (NULL for the votes before it)."""
    conn.execute(text("ALTER TABLE battles ADD COLUMN source VARCHAR(64)"))


def _v8_trials(conn):
    """Add the study settings, trial and participant columns of version 8 (defaults: as studies ran before
    it, one overall question, no practice, attention checks, references or screen minimum) and create
    screen_outs as version 8 defines it (`_screen_outs_table`)."""
    for table, column in (
            ("studies", "questions JSON"),
            ("studies", "show_references BOOLEAN NOT NULL DEFAULT false"),
            ("studies", "practice_trials INTEGER NOT NULL DEFAULT 0"),
            ("studies", "attention_rate FLOAT NOT NULL DEFAULT 0"),
            ("studies", "min_image_px INTEGER NOT NULL DEFAULT 0"),
            ("studies", "screen_out_code VARCHAR(64)"),
            ("studies", "debrief TEXT"),
            ("studies", "feedback_question TEXT"),
            ("trials", "question VARCHAR(32) NOT NULL DEFAULT 'overall'"),
            ("trials", "practice BOOLEAN NOT NULL DEFAULT false"),
            ("trials", f"instructed VARCHAR(8) CONSTRAINT ck_trials_instructed CHECK (instructed IN ({_sql_list(INSTRUCTED)}))"),
            ("participants", "viewport_width INTEGER"),
            ("participants", "viewport_height INTEGER"),
            ("participants", "pixel_ratio FLOAT"),
            ("participants", "browser VARCHAR(40)"),
            ("participants", "device VARCHAR(8)"),
            ("participants", "feedback TEXT")):
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column}"))
    frozen = MetaData(naming_convention=metadata.naming_convention)
    Table("studies", frozen, Column("id", Integer, primary_key=True))  # the foreign key's target, not created
    _screen_outs_table(frozen).create(conn)


# version -> the step that upgrades a database from version - 1 (frozen SQL: never edit an old step)
UPGRADES = {2: _v2_completed_at, 3: _v3_comparison_token, 4: _v4_participant_page, 5: _v5_battles,
            6: _v6_arrivals, 7: _v7_battle_source, 8: _v8_trials}
