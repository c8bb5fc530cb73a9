"""Battle votes in the store (schema version 5 on) and the leaderboard computed from them."""
import itertools
import random

import numpy as np
import pandas as pd
import pytest

from demo.battle import CROSS, pick_pair
from demo.leaderboard import ranking
from model.methods import METHODS
from study.analysis import (
    AnalysisError,
    battle_counts,
    battle_pairs,
    battle_strengths,
    battle_votes,
    bt_strengths,
    interval_ranks,
    pair_win_rates,
    tally_strengths,
    vote_tally,
)
from study.counting import counted
from study.schema import SCHEMA_VERSION
from study.store import Store, VoteRejected, schema_version

from .study_fixtures import db_url, postgres_server, store  # noqa: F401
from .test_study_store import old_database

ARGS = ("cc", "ss")


def vote(store, visitor, left, right, choice, token=None, content="cc"):
    return store.record_battle(token or f"{visitor}-{content}-{left}-{right}", visitor, "198.51.100.1", content, "ss",
                               left, right, f"o-{left}", f"o-{right}", choice, {"size": 128})


def test_one_vote_per_visitor_content_style_and_pair(store):
    """On SQLite and PostgreSQL; battles() oldest first (the store fixture has SQLite return unordered rows reversed)."""
    vote(store, "v1", "a2k_free", "adain", "left")
    again = "you have already voted on these two models for this photo and painting: start a new battle"
    for args, kw, message in [
            (("v1", "adain", "a2k_free", "right"), {"token": "other"}, again),  # the same pair on swapped sides
            (("v2", "a2k_free", "adain", "left"), {"token": "v1-cc-a2k_free-adain"}, again),  # the same battle
            (("v1", "adain", "adain", "left"), {}, "both sides show the same method: there is nothing to compare"),
            (("v1", "adain", "a2k_free", "up"), {}, "invalid choice 'up': send one of left, right, tie, both_bad")]:
        with pytest.raises(VoteRejected) as refused:
            vote(store, *args, **kw)
        assert str(refused.value) == message
    vote(store, "v2", "adain", "a2k_free", "tie")  # another visitor
    vote(store, "v1", "a2k_free", "adain", "left", content="other")  # another photo
    vote(store, "v1", "a2k_free", "all2all_free", "left", content="other")
    assert store.voted_pairs("v1", "cc", "ss") == {("a2k_free", "adain")}
    assert store.voted_pairs("v1", "other", "ss") == {("a2k_free", "adain"), ("a2k_free", "all2all_free")}
    assert store.voted_pairs("v3", "cc", "ss") == set()
    df = store.battles()
    assert len(df) == 4 and "v1" not in set(df["voter"])  # visitors are stored hashed
    assert str(df["created_at"].dt.tz) == "UTC" and df["id"].is_monotonic_increasing
    assert store.battles(after=df["id"].iloc[1])["id"].tolist() == df["id"].iloc[2:].tolist()  # a numpy int


def test_version_4_database_gains_the_battles_table(tmp_path):
    path = tmp_path / "v4.db"
    old_database(str(path), 4)  # as version 4 left it, with a Compare vote: no battles table yet
    with Store(path) as store:
        assert schema_version(store.engine) == SCHEMA_VERSION
        assert store.comparisons()["choice"].tolist() == ["left"]
        vote(store, "v1", "a2k_free", "adain", "left")
        with pytest.raises(VoteRejected, match="already voted"):
            vote(store, "v1", "adain", "a2k_free", "left", token="x")


def test_leaderboard_ranks_by_bradley_terry_over_visitors(tmp_path):
    rng = np.random.default_rng(1)
    strength = {"a2k_free": 3.0, "all2all_free": 1.0, "adain": 0.5}
    with Store(tmp_path / "a.db") as store:
        for visitor in range(12):
            for x, y in [("a2k_free", "all2all_free"), ("a2k_free", "adain"), ("adain", "all2all_free")]:
                for content in range(3):
                    first = rng.random() < strength[x] / (strength[x] + strength[y])
                    vote(store, f"v{visitor}", x, y, "left" if first else "right", content=f"c{content}")
        battles = store.battles()
    ranks = battle_strengths(battles, 200)
    assert ranks.drop(columns="votes").equals(bt_strengths(battle_votes(battles), 200))  # the bootstrap asked for
    half = len(battles) // 2  # a page view's point strengths, from the tallies of two batches of votes added up
    tally = vote_tally(battles[:half]).add(vote_tally(battles[half:]), fill_value=0)
    points = tally_strengths(tally)
    assert points["method"].tolist() == ranks["method"].tolist()
    assert np.allclose(points["strength"], ranks["strength"], rtol=1e-8)
    assert battle_counts(tally).set_index("method").loc[ranks["method"], ["wins", "losses", "votes"]].to_numpy().tolist() \
        == ranks[["wins", "losses", "votes"]].to_numpy().tolist()
    assert ranks["method"].tolist() == ["a2k_free", "all2all_free", "adain"]
    assert (ranks["ci_low"] <= ranks["strength"]).all() and (ranks["strength"] <= ranks["ci_high"]).all()
    assert ranks["votes"].tolist() == [72, 72, 72]
    pairs = battle_pairs(battles)
    assert pairs.equals(pair_win_rates(battle_votes(battles))[list(pairs.columns)])
    pairs = pairs.set_index(["method_a", "method_b"])
    assert pairs.loc[("a2k_free", "adain"), "a_win_rate"] > 0.5 > pairs.loc[("adain", "all2all_free"), "a_win_rate"]
    assert pairs["n_votes"].sum() == 108


def test_ranks_count_the_intervals_entirely_above():
    """Ranks respect overlap: 1 + the number of intervals lying wholly above (equal ends overlap)."""
    low, high = [0.5, 0.45, 0.2, 0.1, 0.0], [0.6, 0.55, 0.5, 0.2, 0.1]
    assert interval_ranks(low, high).tolist() == [1, 1, 1, 3, 4]


def test_strengths_need_decisive_votes_between_two_methods(tmp_path):
    message = "^Bradley-Terry needs decisive votes between at least two methods$"
    with Store(tmp_path / "a.db") as store:
        with pytest.raises(AnalysisError, match=message):
            battle_strengths(store.battles(), 10)
        vote(store, "v1", "a2k_free", "adain", "tie")
        for fit in (lambda b: battle_strengths(b, 10), lambda b: tally_strengths(vote_tally(b))):
            with pytest.raises(AnalysisError, match=message):
                fit(store.battles())
        vote(store, "v1", "a2k_free", "adain", "right", content="c2")
        assert tally_strengths(vote_tally(store.battles()))["method"].tolist() == ["adain", "a2k_free"]


def test_counts_and_point_strengths_of_a_tally():
    """battle_counts: most votes first, then by name, a model that never won with 0 wins; tally_strengths:
    strongest first; both indexed 0..n-1."""
    battles = pd.DataFrame([("b", "a", "left"), ("c", "b", "right"), ("a", "c", "tie"), ("b", "d", "left"),
                            ("a", "b", "right"), ("d", "c", "both_bad"), ("b", "c", "right"), ("d", "a", "tie")],
                           columns=["left_method", "right_method", "choice"])
    counts = battle_counts(vote_tally(battles))
    assert counts.equals(pd.DataFrame({"method": ["b", "a", "c", "d"], "votes": [5, 4, 4, 3], "wins": [4, 0, 1, 0],
                                       "losses": [1, 2, 1, 1]}))
    points = tally_strengths(vote_tally(battles))
    assert points["method"].tolist() == ["b", "c", "d", "a"] and list(points.index) == [0, 1, 2, 3]


def test_the_leaderboard_moves_the_chosen_side_up(tmp_path):
    """Votes for A move A's model up, votes for B move B's, through the counting the Leaderboard tab uses: x
    beats y and z, y beats z, each from either side, from six sources; the ranking and each model's wins and
    losses follow the choices (with every choice mirrored, z would lead)."""
    order = ["all2all_free", "adain", "a2k_free"]  # x, y, z: not the alphabetical or any default order
    with Store(tmp_path / "a.db") as store:
        for source in range(6):
            for winner, loser in itertools.combinations(order, 2):
                for choice in ("left", "right"):
                    left, right = (winner, loser) if choice == "left" else (loser, winner)
                    store.record_battle(f"{source}-{left}-{right}", f"v{source}", f"source-{source}", f"c-{choice}", "ss",
                                        left, right, "o1", "o2", choice)
        counting = counted(store.battles(), gallery=set(), per_day=50)
    assert counting.tally["counted"] == 36
    ranks = battle_strengths(counting.votes, 50)
    assert ranks["method"].tolist() == order
    assert ranks["wins"].tolist() == [24, 12, 0] and ranks["losses"].tolist() == [0, 12, 24]


def test_models_sharing_a_rank_and_a_shown_strength_keep_one_order():
    """Two models in the same rank whose strengths differ only beyond the 3 decimals shown (a refit's float
    noise) are ordered by votes, then name, whichever is larger underneath."""
    counts = pd.DataFrame({"method": ["b", "a", "c"], "wins": [9, 9, 1], "losses": [1, 1, 9], "votes": [10, 10, 10]})
    full = pd.DataFrame({"method": ["a", "b", "c"], "ci_low": [0.2, 0.2, 0.0], "ci_high": [0.4, 0.4, 0.1]})
    for noise in (1e-12, -1e-12):
        live = pd.DataFrame({"method": ["a", "b", "c"], "strength": [0.3, 0.3 + noise, 0.05]})
        rows = ranking(counts, live, full, str.upper)
        assert [(r["rank"], r["model"]) for r in rows] == [(1, "A"), (1, "B"), (3, "C")]


def test_comparison_votes_are_kept_once_each_in_order(tmp_path):
    with Store(tmp_path / "a.db") as store:
        assert store.comparisons().empty and "token" in store.comparisons().columns and "choice" in store.comparisons()
        for token in ("c2", "c1"):
            store.record_comparison(token, "cc", "ss", "a2k_free", "adain", "o1", "o2", "left")
        with pytest.raises(VoteRejected) as refused:
            store.record_comparison("c1", "cc", "ss", "a2k_free", "adain", "o1", "o2", "right")
        assert str(refused.value) == "this comparison already has a vote: run a new comparison to vote again"
        with pytest.raises(VoteRejected) as refused:
            store.record_comparison("c3", "cc", "ss", "a2k_free", "adain", "o1", "o2", "middle")
        assert str(refused.value) == "invalid choice 'middle': send one of left, right, tie, both_bad"
        assert store.comparisons()["token"].tolist() == ["c2", "c1"]
        vote(store, "v1", "a2k_free", "adain", "left", content="photo")
        assert store.voted_images() == {"cc", "ss", "o1", "o2", "photo", "o-a2k_free", "o-adain"}  # kept in the cache


def test_a_battle_draws_a2k_against_all_to_all_at_the_cross_rate():
    """pick_pair: an A2K-family method against an all-to-all one with probability CROSS while such a pair is
    left, else any pair left; never a pair voted on."""
    rng = random.Random(5)
    runnable = ["a2k_free", "adain", "all2all_free", "sanet_here", "stya2k_here"]
    kinds = {m: METHODS[m].attention for m in runnable}
    draws = [tuple(sorted(pick_pair(runnable, set(), rng))) for _ in range(4000)]
    cross = sum({kinds[a], kinds[b]} == {"a2k", "all2all"} for a, b in draws) / len(draws)
    n_cross = sum({kinds[a], kinds[b]} == {"a2k", "all2all"} for a, b in itertools.combinations(sorted(runnable), 2))
    expected = CROSS + (1 - CROSS) * n_cross / 10  # the other draws pick any of the 10 pairs
    assert abs(cross - expected) < 0.03, (cross, expected)
    every = set(itertools.combinations(sorted(runnable), 2))
    for last in (("adain", "all2all_free"), ("a2k_free", "sanet_here"), ("a2k_free", "stya2k_here")):
        assert tuple(sorted(pick_pair(runnable, every - {last}, rng))) == last  # the one pair left
    assert pick_pair(runnable, every, rng) is None
