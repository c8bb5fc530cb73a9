"""demo.leaderboard in process on a real SQLite database: what the Leaderboard tab shows as battle votes
arrive (counted at once, ranked at the full count), provisional and ranked models, the per-painting
boards and a visitor's own votes (the tab in Chromium: test_board_browser; the attacks: test_attacks_votes).
Fast enough for mutation testing (bench.mutation)."""
import itertools
import random
import re
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from demo.gallery import gallery_paintings, gallery_sha256s
from demo.leaderboard import (
    ALL,
    ALL_LABEL,
    EMPTY,
    MIN_VOTES,
    NOT_COUNTED,
    STARTING,
    Leaderboard,
    pairs_table,
    ranking,
    ranking_table,
)
from study.analysis import MIN_PARTICIPANTS, battle_strengths
from study.store import Store

SIZE_CAP = 512
# the gallery as the boards see it, computed on import (demo.gallery caches it): once per process, and once for
# all the runs of a mutation test, which fork from a process that imported this module
GALLERY, PAINTINGS = gallery_sha256s(SIZE_CAP), gallery_paintings(SIZE_CAP)
PER_DAY = 50
STRENGTHS = {"a": 6.0, "b": 2.0, "c": 1.0}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "board.db") as db:
        yield db


class Votes:
    """Battle votes made up for a test: each from its own visitor, on its own photo unless told."""

    def __init__(self, store):
        self.store, self.n, self.rng = store, 0, random.Random(3)

    def add(self, left, right, choice, source=None, style="painting", content=None, visitor=None):
        self.n += 1
        return self.store.record_battle(f"t{self.n}", visitor or f"v{self.n}", source or f"198.51.100.{self.n % 40}",
                                        content or f"photo-{self.n}", style, left, right, f"o{self.n}l",
                                        f"o{self.n}r", choice)

    def honest(self, n, methods=STRENGTHS, **where):
        """n votes by Bradley-Terry strengths over the pairs of `methods`, random sides."""
        pairs = list(itertools.combinations(methods, 2))
        for i in range(n):
            left, right = self.rng.sample(pairs[i % len(pairs)], 2)
            won = self.rng.random() < methods[left] / (methods[left] + methods[right])
            self.add(left, right, "left" if won else "right", **where)


@pytest.fixture
def boards():
    """Leaderboard(store, ...) with the tests' gallery and limits; their counting threads stop with the test
    (one counting every 0.2 s would go on through every later test)."""
    made = []

    def board(store, interval_s=3600, n_boot=20):
        made.append(Leaderboard(store, str.upper, SIZE_CAP, PER_DAY, interval_s=interval_s, n_boot=n_boot))
        return made[-1]

    yield board
    for b in made:
        b.close()
        assert not b.thread.is_alive()


@pytest.fixture
def started(boards):
    """board(store, n_boot=200, interval_s=3600) once its first full count is done."""
    def started(store, n_boot=200, interval_s=3600):
        return wait_for_count(boards(store, interval_s, n_boot))
    return started


def wait_for_count(board):
    deadline = time.monotonic() + 60
    while (summary := board.view(ALL, {})[0]) == STARTING:
        assert board.thread.is_alive(), "the counting thread ended"
        assert time.monotonic() < deadline, "the first full count never ended"
        time.sleep(0.1)
    assert summary != NOT_COUNTED, "the first full count failed (stderr has why)"
    assert board.thread.daemon  # the server exits without waiting for it
    return board


def rows(view):
    return {r["model"]: r for r in view[1]["rows"]}


def test_no_vote_yet(store, started):
    summary, ranking, pairs, choices, shown = started(store).view(ALL, {})
    assert (summary, ranking, pairs, choices, shown) == (EMPTY, None, None, [(ALL_LABEL, ALL)], ALL)


def test_a_first_count_that_fails_is_said_and_the_next_one_shows_the_board(store, boards, capfd):
    """A database the first full count cannot read: the tab says so (the reason goes to the server's log, not to
    visitors) instead of promising the board in a few seconds; a later count shows it."""
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE battles RENAME TO battles_away"))
    board = boards(store)
    deadline = time.monotonic() + 60
    while (view := board.view(ALL, {}))[0] == STARTING:
        assert time.monotonic() < deadline, "the first full count never ended"
        time.sleep(0.1)
    assert view == (NOT_COUNTED, None, None, [(ALL_LABEL, ALL)], ALL) and "every 60 s" in NOT_COUNTED
    assert "no such table: battles" in capfd.readouterr().err
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE battles_away RENAME TO battles"))
    board.count_all()
    assert board.view(ALL, {})[0] == EMPTY


def test_models_are_ranked_by_overlapping_intervals_and_provisional_below_the_minimum(store, started):
    votes = Votes(store)
    votes.honest(240)
    for i in range(MIN_VOTES - 1):  # d: one vote short of being ranked
        votes.add("d", "c", "right" if i % 2 else "left")
    board = started(store)
    view = board.view(ALL, {})
    shown = rows(view)
    assert [r["model"] for r in view[1]["rows"]] == ["A", "B", "C", "D"]
    counted_votes = board.counting.votes  # the ranked models are fitted without D's votes against them
    without_d = counted_votes[(counted_votes["left_method"] != "d") & (counted_votes["right_method"] != "d")]
    fit = battle_strengths(without_d, 200).set_index("method")
    assert shown["A"]["95% interval"] == f"{fit.loc['a', 'ci_low']:.3f} – {fit.loc['a', 'ci_high']:.3f}"  # n_boot
    assert shown["A"]["rank"] == 1 and shown["C"]["rank"] >= 2 and shown["D"]["rank"] == "provisional"
    assert shown["D"]["95% interval"] == f"provisional: {MIN_VOTES - 1} of {MIN_VOTES} votes"
    assert shown["D"]["strength"] == "–" and "<td class='n'>–</td><td>D</td>" in view[1]["html"]
    low, high = (float(x) for x in shown["A"]["95% interval"].split(" – "))
    assert low < float(shown["A"]["strength"]) < high
    a = shown["A"]
    assert (a["wins"], a["losses"], a["votes"]) == (a["wins"], a["votes"] - a["wins"], a["votes"])
    assert sum(r["votes"] for r in shown.values()) == 2 * (240 + MIN_VOTES - 1)
    assert f"{240 + MIN_VOTES - 1} battle votes from {240 + MIN_VOTES - 1} visitors and 40 sources" in view[0]
    assert "The ranking counts 259; left out: 0 on two gallery pictures, 0 from anomalous sources (0), 0 beyond " \
           f"{PER_DAY} a day from one source." in view[0] and "intervals and ranks as of" in view[0]
    assert [(r["model A"], r["model B"]) for r in view[2]["rows"]][:3] == [("A", "B"), ("A", "C"), ("B", "C")]


def test_a_vote_counts_at_once_and_its_rank_at_the_next_full_count(store, started):
    votes = Votes(store)
    votes.honest(120, {"a": 3.0, "b": 1.0})
    board = started(store)
    before = rows(board.view(ALL, {}))
    for i in range(MIN_VOTES):  # a new model: counted at once, ranked at the next full count
        votes.add("e", "b", "left", source=f"203.0.113.{i}")
    summary, ranking, *_ = board.view(ALL, {})
    now = rows((summary, ranking))
    assert now["B"]["votes"] == before["B"]["votes"] + MIN_VOTES and now["E"]["wins"] == MIN_VOTES
    assert now["E"]["rank"] == "provisional" and now["E"]["95% interval"].startswith("ranked at the next full count")
    assert f"{120 + MIN_VOTES} battle votes" in summary
    board.count_all()
    assert rows(board.view(ALL, {}))["E"]["rank"] == 1


def test_no_ranking_until_two_models_have_the_minimum(store, started):
    votes = Votes(store)
    for _ in range(5):
        votes.add("a", "b", "left")
    summary, ranking, *_ = started(store).view(ALL, {})
    assert "No ranking yet: it needs two models with 20 counted votes" in summary
    assert {r["rank"] for r in ranking["rows"]} == {"provisional"}


def test_votes_on_two_gallery_pictures_and_from_a_flooding_source_are_left_out(store, started):
    votes = Votes(store)
    votes.honest(200)
    photo, painting = sorted(GALLERY - set(PAINTINGS))[0], next(iter(PAINTINGS))
    votes.add("c", "a", "left", content=photo, style=painting, visitor="me")
    votes.add("c", "b", "left", visitor="me")
    for i in range(80):  # one source picking c whenever shown
        votes.add(*(("c", "a") if i % 2 else ("b", "c")), "left" if i % 2 else "right", source="192.0.2.1")
    board = started(store)
    summary = board.view(ALL, {})[0]
    assert "left out: 1 on two gallery pictures, 80 from anomalous sources (1)" in summary
    mine = board.show(ALL, {"visitor": "me"})[0]  # as the tab shows it
    assert mine.endswith("**Your votes**: 2, of which 1 counted (not counted: 1 on two gallery pictures).")
    assert "Your votes" not in board.view(ALL, {"visitor": "someone else"})[0]


def test_a_source_counts_at_most_its_daily_votes(store, started):
    votes = Votes(store)
    votes.honest(100)
    for _ in range(PER_DAY + 7):
        votes.add("a", "b", "tie", source="192.0.2.9")
    summary = started(store).view(ALL, {})[0]
    assert f"7 beyond {PER_DAY} a day from one source" in summary


def test_each_gallery_painting_has_its_board(store, started):
    votes = Votes(store)
    sha, title = next(iter(PAINTINGS.items()))
    votes.honest(90, style=sha)
    votes.honest(60)
    board = started(store)
    summary, ranking, pairs, choices, shown = board.view(sha, {})
    assert shown == sha and (f"{title} (90 votes)", sha) in choices and choices[0] == (ALL_LABEL, ALL)
    assert f"This board: the 90 counted votes on {title}." in summary and pairs is None
    assert sum(r["votes"] for r in ranking["rows"]) == 180
    assert board.view("no such board", {})[4] == ALL
    *shown_view, menu = board.show(sha, {})  # as the tab puts it on screen
    assert shown_view == [summary, ranking, pairs] and (menu.value, menu.choices) == (sha, choices)
    other, other_title = list(PAINTINGS.items())[1]
    votes.honest(3, style=other)  # a board that appears between two full counts
    assert (f"{other_title} (3 votes)", other) in board.view(ALL, {})[3]
    assert sum(r["votes"] for r in board.view(other, {})[1]["rows"]) == 6
    votes.honest(2, style=sha)  # counted into a board that has a tally
    summary, ranking, *_, choices, _ = board.view(sha, {})
    assert f"This board: the 92 counted votes on {title}." in summary and (f"{title} (92 votes)", sha) in choices


def test_the_tables_as_html():
    """The ranking and pair tables as the tab renders them: headers, numbers, a provisional model's dash, escaped
    names, and a pair's withheld interval and unknown rate."""
    ranked = ranking_table([
        {"rank": 1, "model": "A<1>", "strength": "0.600", "95% interval": "0.500 – 0.700", "wins": 30, "losses": 10,
         "votes": 40},
        {"rank": "provisional", "model": "B", "strength": "–", "95% interval": "provisional: 3 of 20 votes",
         "wins": 1, "losses": 2, "votes": 3}])
    assert ranked["html"] == (
        "<table><thead><tr><th>Rank</th><th>Model</th><th>Strength (95% interval)</th><th>Wins – losses</th>"
        "<th>Votes</th></tr></thead><tbody>"
        "<tr><td class='n'>1</td><td>A&lt;1&gt;</td><td class='n'>0.600<br><small>0.500 – 0.700</small></td>"
        "<td class='n'>30 – 10</td><td class='n'>40</td></tr>"
        "<tr><td class='n'>–</td><td>B</td><td class='n'>–<br><small>provisional: 3 of 20 votes</small></td>"
        "<td class='n'>1 – 2</td><td class='n'>3</td></tr></tbody></table>")
    pairs = pd.DataFrame({"method_a": ["a", "b"], "method_b": ["b", "c"], "n_votes": [40, 4], "n_participants": [12, 3],
                          "a_wins": [25, 0], "b_wins": [10, 0], "ties": [3, 2], "both_bad": [2, 2],
                          "a_win_rate": [25 / 35, np.nan], "ci_low": [0.55, np.nan], "ci_high": [0.85, np.nan]})
    shown = pairs_table(pairs, str.upper)
    assert shown["rows"][1] == {"model A": "B", "model B": "C", "votes": 4, "sources": 3, "A wins": 0, "B wins": 0,
                                "ties": 2, "both bad": 2, "A win rate": "–",
                                "95% interval": f"withheld: under {MIN_PARTICIPANTS} sources"}
    assert shown["html"] == (
        "<table><thead><tr><th>Pair</th><th>Votes</th><th>A / B / tie / both bad</th><th>A&#x27;s win rate (95%)</th>"
        "</tr></thead><tbody>"
        "<tr><td>A<br><small>against</small> B</td><td class='n'>40<br><small>12 sources</small></td>"
        "<td class='n'>25 / 10 / 3 / 2</td><td class='n'>71%<br><small>55% – 85%</small></td></tr>"
        "<tr><td>B<br><small>against</small> C</td><td class='n'>4<br><small>3 sources</small></td>"
        "<td class='n'>0 / 0 / 2 / 2</td><td class='n'>–<br><small>withheld: under 6 sources</small></td></tr>"
        "</tbody></table>")


def test_a_ranking_orders_ranks_then_strength_as_shown_then_votes():
    """ranking() on made-up fits: b and a overlap (rank 1, the stronger first though it has fewer votes), c and d
    share rank 3 and a strength as shown (0.100: the one with more votes first); e has an interval from the last
    full count but no strength in the live fit (provisional until the next count), f too few votes."""
    counts = pd.DataFrame({"method": list("abcdef"), "votes": [100, 50, 40, 30, 25, 5], "wins": [60, 30, 10, 9, 12, 2],
                           "losses": [40, 20, 30, 21, 13, 3]})
    live = pd.DataFrame({"method": list("bacd"), "strength": [0.5, 0.3, 0.10001, 0.10009]})
    full = pd.DataFrame({"method": list("abcde"), "ci_low": [0.2, 0.35, 0.05, 0.06, 0.0],
                         "ci_high": [0.4, 0.6, 0.15, 0.16, 0.5]})
    got = ranking(counts, live, full, str.upper)
    assert [(r["rank"], r["model"], r["strength"], r["95% interval"]) for r in got] == [
        (1, "B", "0.500", "0.350 – 0.600"), (1, "A", "0.300", "0.200 – 0.400"), (3, "C", "0.100", "0.050 – 0.150"),
        (3, "D", "0.100", "0.060 – 0.160"), ("provisional", "E", "–", "ranked at the next full count (every 60 s)"),
        ("provisional", "F", "–", f"provisional: 5 of {MIN_VOTES} votes")]
    assert [(r["wins"], r["losses"], r["votes"]) for r in got][:2] == [(30, 20, 50), (60, 40, 100)]
    unfitted = ranking(counts, None, None, str.upper)
    assert [r["model"] for r in unfitted] == list("ABCDEF") and {r["rank"] for r in unfitted} == {"provisional"}


def head(n, sources, gallery=0, anomalous=0, flagged=0, over_cap=0):
    """The summary's first two sentences."""
    return (f"{n} battle votes from {n} visitors and {sources} sources. The ranking counts "
            f"{n - gallery - anomalous - over_cap}; left out: {gallery} on two gallery pictures, {anomalous} from "
            f"anomalous sources ({flagged}), {over_cap} beyond {PER_DAY} a day from one source.")


def test_the_summary_says_what_the_board_stands_on(store, started, monkeypatch):
    """The summary word for word: votes only on gallery pairs (none counted), too few votes to rank, two models at
    exactly the minimum between full counts, a ranked board (its time in UTC whatever the server's zone), and a
    painting's board."""
    votes = Votes(store)
    photo, painting = sorted(GALLERY - set(PAINTINGS))[0], next(iter(PAINTINGS))
    for _ in range(3):
        votes.add("a", "b", "left", content=photo, style=painting)
    board = started(store)
    assert board.view(ALL, {})[0] == head(3, 3, gallery=3) + (
        " No vote is counted yet: the ranking starts with the first vote on your own photo or painting.")
    for i in range(MIN_VOTES - 1):
        votes.add("a", "b", "left" if i % 3 else "right", style=painting)
    assert board.view(ALL, {})[0] == head(22, 22, gallery=3) + (
        f" No ranking yet: it needs two models with {MIN_VOTES} counted votes each and decisive votes (A or B) "
        "between them; until then every model is provisional.")
    votes.add("a", "b", "tie", style=painting)
    assert board.view(ALL, {})[0] == head(23, 23, gallery=3) + (
        f" The models with {MIN_VOTES} counted votes are ranked at the next full count (every 60 s); until then "
        "every model is provisional.")
    title = PAINTINGS[painting]
    assert board.view(painting, {})[0] == head(23, 23, gallery=3) + (
        f" This board: the {MIN_VOTES} counted votes on {title}. The models with {MIN_VOTES} counted votes are "
        "ranked at the next full count (every 60 s); until then every model is provisional.")
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: a local time would show a different hour
    time.tzset()
    try:
        board.count_all()
    finally:
        monkeypatch.undo()
        time.tzset()
    summary = board.view(ALL, {})[0]
    at = re.search(r"intervals and ranks as of (\d\d:\d\d:\d\d) UTC", summary)[1]
    assert summary == head(23, 23, gallery=3) + (
        f" Strengths, wins and votes include every vote up to now; intervals and ranks as of {at} UTC (recomputed "
        "every 60 s).")
    shown = datetime.strptime(at, "%H:%M:%S").replace(tzinfo=UTC)
    late = datetime.now(UTC) - datetime.combine(datetime.now(UTC).date(), shown.timetz())
    assert abs(late.total_seconds()) < 120 or abs(late.total_seconds()) > 86_400 - 120


def test_a_visitor_is_told_what_became_of_their_votes(store, started):
    """Each reason a vote of theirs was left out, in the summary's order, with the counted ones; nothing for a
    visitor with no vote."""
    votes = Votes(store)
    votes.honest(200)
    photo, painting = sorted(GALLERY - set(PAINTINGS))[0], next(iter(PAINTINGS))
    for i in range(80):  # a source picking c whenever shown: anomalous
        votes.add(*(("c", "a") if i % 2 else ("b", "c")), "left" if i % 2 else "right", source="192.0.2.1")
    for _ in range(PER_DAY):  # a source at its daily cap of ties
        votes.add("a", "b", "tie", source="192.0.2.9")
    votes.add("a", "b", "left", visitor="me")
    votes.add("c", "a", "left", content=photo, style=painting, visitor="me")
    votes.add("c", "a", "left", source="192.0.2.1", visitor="me")
    votes.add("a", "c", "tie", source="192.0.2.9", visitor="me")
    votes.add("c", "b", "left", content=photo, style=painting, visitor="unlucky")
    votes.add("b", "a", "right", visitor="lucky")
    board = started(store)
    plain = board.view(ALL, {})[0]
    assert board.view(ALL, {"visitor": "me"})[0] == plain + (
        f"\n\n**Your votes**: 4, of which 1 counted (not counted: 1 on two gallery pictures, 1 from an anomalous "
        f"source, 1 beyond {PER_DAY} a day from your address).")
    assert board.view(ALL, {"visitor": "unlucky"})[0] == plain + (
        "\n\n**Your votes**: 1, of which 0 counted (not counted: 1 on two gallery pictures).")
    assert board.view(ALL, {"visitor": "lucky"})[0] == plain + "\n\n**Your votes**: 1, of which 1 counted."
    assert board.view(ALL, {"visitor": "new"})[0] == board.view(ALL, {"visitor": ""})[0] == plain


def test_each_board_is_fitted_on_its_own_votes_and_counted_again_every_interval(store, started):
    """A painting on which c beats a, while a beats c everywhere else: its board ranks C first. The counting
    thread counts again every interval_s: a new model is ranked without anyone calling count_all."""
    votes = Votes(store)
    sha = next(iter(PAINTINGS))
    votes.honest(150, {"a": 1.0, "c": 8.0}, style=sha)
    votes.honest(400, {"a": 8.0, "c": 1.0})
    board = started(store, n_boot=100, interval_s=0.2)
    assert [(r["model"], r["rank"]) for r in board.view(sha, {})[1]["rows"]] == [("C", 1), ("A", 2)]
    assert [(r["model"], r["rank"]) for r in board.view(ALL, {})[1]["rows"]] == [("A", 1), ("C", 2)]
    for i in range(MIN_VOTES):
        votes.add("e", "c", "left", source=f"203.0.113.{i}")
    deadline = time.monotonic() + 60
    while rows(board.view(ALL, {}))["E"]["rank"] == "provisional":
        assert board.thread.is_alive(), "the counting thread ended"
        assert time.monotonic() < deadline, "no full count after the first"
        time.sleep(0.1)
