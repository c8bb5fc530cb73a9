"""The study's statistics: unit checks (the sign-flip test against a brute-force enumeration);
simulations of many studies whose participants each have their own preference (interval coverage of
win rates and Bradley-Terry strengths at 5, 10 and 30 participants, Holm on planted nulls, the spread
estimator); and a simulated study (through the real store) with a known preference, a left bias and
careless participants, which the analysis must recover. tests/test_study_level.py holds the level of
the tests at any number of participants."""
import itertools
import random
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sqlalchemy import select

from study.analysis import (
    EXACT_UP_TO,
    MIN_PARTICIPANTS,
    RANDOM_FLIPS,
    AnalysisError,
    Rules,
    agreement,
    analyze,
    bradley_terry,
    bt_intervals,
    bt_strengths,
    holm,
    least_p,
    pair_win_rates,
    participant_draws,
    participant_flow,
    participant_table,
    participant_test,
    per_question,
    pooled_spread,
    position_bias,
    preference_spread,
    response_times,
    sign_flip_p,
    viewport_table,
    wilson_interval,
)
from study.analyze import main as analyze_main
from study.schema import participants
from study.store import CATCH, Store, load_participants, load_votes
from tests.study_fixtures import add_stimuli

# true Bradley-Terry strengths: a2k_free beats each of the others 65% of the time, they tie 50/50
TRUTH = {"a2k_free": 0.65 / 0.35, "adain": 1.0, "all2all_free": 1.0}
LEFT_BIAS = 0.08  # P(left chosen) = P(left method better) + 0.08, so 0.58 between equals
N_PEOPLE, N_CARELESS, N_TRIALS = 60, 4, 20


def frame(rows):
    """Votes as load_votes returns them, from (participant, content, left, right, choice, is_catch, catch_passed)."""
    df = pd.DataFrame(rows, columns=["participant", "content", "left_method", "right_method", "choice",
                                     "is_catch", "catch_passed"])
    df["style"] = "s"
    df["winner"] = np.where(df["choice"] == "left", df["left_method"],
                            np.where(df["choice"] == "right", df["right_method"], None))
    df["catch_passed"] = df["catch_passed"].astype("boolean")
    df["kind"] = np.where(df["is_catch"], "catch", "method")
    df["question"] = "overall"
    df["attention_passed"] = pd.array([pd.NA] * len(df), dtype="boolean")
    df["response_time_ms"] = pd.array([1500] * len(df), dtype="Int64")
    df["server_time_ms"] = pd.array([1800] * len(df), dtype="Int64")
    return df


def people_of(votes, n_trials=None):
    """The participant table of load_participants for a frame: everyone completed (n_trials = their votes)
    unless n_trials is given."""
    n = votes.groupby("participant").size()
    out = pd.DataFrame({"participant": n.index, "n_trials": n_trials or n.to_numpy(), "n_votes": n.to_numpy()})
    out["completed"] = out["n_votes"] >= out["n_trials"]
    out["external_key"] = None
    return out


def test_wilson_interval():
    z2 = 1.959964**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)), abs=1e-6)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(10 / (10 + z2), abs=1e-6)
    low, high = wilson_interval(65, 100)
    assert low < 0.65 < high and high - low < wilson_interval(13, 20)[1] - wilson_interval(13, 20)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no votes: NaN, without a warning in the report's output
        assert np.isnan(wilson_interval(0, 0)).all()
    lows, highs = wilson_interval(np.array([0, 65]), np.array([10, 100]))  # vectorised
    assert lows[1] == pytest.approx(low) and highs[0] == pytest.approx(z2 / (10 + z2), abs=1e-6)


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(adjusted[4])
    assert holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])  # 0.4 x 2 = 0.8; 0.5 x 1 raised to 0.8
    assert holm([0.3, 0.6, 0.9]) == pytest.approx([0.9, 1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02]) and len(holm([])) == 0


def simulate_counts(rng, n_studies, n_people, n_votes, rate, spread):
    """Decisive votes of n_studies studies: each participant has their own P(a) ~ Beta(mean rate, sd spread)
    and gives n_votes votes. Returns (wins, totals), each (n_studies, n_people)."""
    shape = (n_studies, n_people)
    nu = rate * (1 - rate) / spread**2 - 1 if spread else None
    p = rng.beta(rate * nu, (1 - rate) * nu, shape) if spread else np.full(shape, rate)
    return rng.binomial(n_votes, p), np.full((n_studies, n_people), n_votes)


def brute_force_p(wins, totals, theta):
    """The two-sided sign-flip p-value by listing every sign vector."""
    d = np.asarray(wins) - theta * np.asarray(totals)
    flips = [abs(np.dot(signs, d)) >= abs(d.sum()) - 1e-9 for signs in itertools.product((1, -1), repeat=len(d))]
    return np.mean(flips)


def test_sign_flip_test_by_hand():
    wins = np.array([[4, 3, 5, 2, 4, 4, 1], [6, 6, 6, 6, 6, 6, 0], [3, 0, 2, 0, 0, 0, 0]])
    totals = np.array([[5, 6, 6, 4, 5, 6, 3], [6, 6, 6, 6, 6, 6, 0], [5, 2, 4, 0, 0, 0, 0]])
    r = participant_test(wins, totals)
    assert r["n_people"].tolist() == [7, 6, 3]
    assert r["p_value"][:2] == pytest.approx([brute_force_p(wins[0], totals[0], 0.5), 2 / 2**6])
    assert np.isnan(r["p_value"][2]) and np.isnan(r["ci_low"][2])  # 3 participants: too thin to test
    assert r["min_p"] == pytest.approx([2 / 2**7, 2 / 2**6, 2 / 2**3]) and least_p(MIN_PARTICIPANTS - 1) > 0.05
    assert r["estimate"] == pytest.approx(wins.sum(axis=1) / totals.sum(axis=1))
    alone = participant_test([[1, 0], [0, 0]], [[2, 0], [0, 0]])  # one participant: p can be no lower than 1
    assert alone["min_p"][0] == 1.0 and np.isnan(alone["min_p"][1]) and np.isnan(alone["estimate"][1])
    # the interval is what the test does not reject: its ends are where p crosses 0.05
    low, high = r["ci_low"][0], r["ci_high"][0]
    assert low < r["estimate"][0] < high
    for end, outside in ((low, -1e-4), (high, 1e-4)):
        assert brute_force_p(wins[0], totals[0], end - outside) > 0.05 >= brute_force_p(wins[0], totals[0], end + outside)
    assert (low > 0.5) == (r["p_value"][0] <= 0.05)
    assert (r["ci_low"][1], r["ci_high"][1]) == pytest.approx((1.0, 1.0), abs=1e-6)  # all six chose a every time
    p = sign_flip_p(wins, totals)
    assert p.tolist()[:2] == r["p_value"].tolist()[:2] and np.isnan(p[2])
    many_wins, many_totals = np.array([3, 5, 2, 4, 6, 1, 4, 5, 3, 2, 4, 6, 3, 2]), np.full(14, 6)
    p = sign_flip_p(many_wins[None], many_totals[None])[0]  # 14 participants: Monte Carlo, 10,000 flips
    assert p == pytest.approx(brute_force_p(many_wins, many_totals, 0.5), abs=0.015)
    again = [sign_flip_p(many_wins[None], many_totals[None], seed=seed)[0] for seed in (7, 7, 8)]
    assert again[0] == again[1] != again[2]  # the seed makes the Monte Carlo test reproducible
    # EXACT_UP_TO participants: every sign vector, even beside a row that needs the Monte Carlo test
    exact = sign_flip_p(np.stack([np.append(many_wins[:13], 0), many_wins]), np.stack([np.append(many_totals[:13], 0),
                                                                                        many_totals]))[0]
    assert EXACT_UP_TO == 13 and exact == pytest.approx(brute_force_p(many_wins[:13], many_totals[:13], 0.5), rel=1e-12)
    gaps = np.insert(wins[0], [0, 3], 0), np.insert(totals[0], [0, 3], 0)  # participants without a vote in between
    once = np.array([1, 1, 1, 1, 1, 0]), np.ones(6)  # one decisive vote each: six participants, tested
    p = sign_flip_p(np.stack([gaps[0], np.pad(once[0], (0, 3))]), np.stack([gaps[1], np.pad(once[1], (0, 3))]))
    assert p == pytest.approx([r["p_value"][0], brute_force_p(*once, 0.5)], rel=1e-12)


def test_the_least_p_value_is_reached_when_everyone_prefers_one_method():
    """least_p: 1 with no participant or one, 2 / 2^N while the test enumerates the sign vectors (N up to
    EXACT_UP_TO), 1 / (RANDOM_FLIPS + 1) by Monte Carlo; participants (unequal counts) who all chose method_a every
    time get exactly it: the data and its mirror image are the only sign vectors as extreme (by Monte Carlo with 20
    participants, none of the random ones is)."""
    expected = [1, 1, 0.5, 2 / 2**EXACT_UP_TO, 1 / (RANDOM_FLIPS + 1)]
    assert least_p([0, 1, 2, EXACT_UP_TO, EXACT_UP_TO + 1]) == pytest.approx(expected, rel=1e-12)
    for n_people in (MIN_PARTICIPANTS, EXACT_UP_TO, 20):
        totals = np.arange(1, n_people + 1)
        r = participant_test(totals, totals)
        assert r["p_value"][0] == pytest.approx(least_p(n_people), rel=1e-12) and r["min_p"][0] == least_p(n_people)


def test_the_defaults_are_95_percent_seed_0_and_2000_resamples():
    """What the docstrings promise when a caller leaves them out (the Battle tab's tables do): level 0.95, seed 0
    (of the Monte Carlo sign flips, 16 participants here, and of the bootstrap) and 2000 resamples; a level or
    seed given is the one used; no resample: no interval. bt_strengths: strongest first (c, b, a here), indexed
    0..2, whole win counts; position_bias by hand."""
    rng = np.random.default_rng(5)
    pairs = [("b", "a"), ("c", "a"), ("c", "b")]  # the stronger method on the left, chosen 70% of the time
    votes = frame([(person, f"c{k}", left, right, "left" if rng.random() < 0.7 else "right", False, None)
                   for person in range(16) for left, right in pairs for k in range(3)])
    for fit, given in ((pair_win_rates, {"seed": 0, "level": 0.95}),
                       (bt_strengths, {"n_boot": 2000, "seed": 0, "level": 0.95})):
        usual = fit(votes)
        pd.testing.assert_frame_equal(usual, fit(votes, **given))
        assert not usual.equals(fit(votes, seed=1))
        narrow = fit(votes, level=0.8)
        assert ((narrow["ci_high"] - narrow["ci_low"]) < (usual["ci_high"] - usual["ci_low"])).all()
    strengths = bt_strengths(votes)
    assert strengths["method"].tolist() == ["c", "b", "a"] and strengths.index.equals(pd.RangeIndex(3))
    assert strengths[["wins", "losses"]].dtypes.tolist() == [np.int64, np.int64]
    per_person = rng.poisson(2, (8, 3, 3)) * (1 - np.eye(3))
    for usual, given in zip(bt_intervals(per_person), bt_intervals(per_person, 2000, 0, 0.95)):
        np.testing.assert_array_equal(usual, given)
    strength, *interval = bt_intervals(per_person, n_boot=0)  # the strengths only
    np.testing.assert_array_equal(strength, bt_intervals(per_person)[0])
    assert np.isnan(interval).all()
    wins, totals = rng.binomial(5, 0.6, (1, 16)), np.full((1, 16), 5)
    usual, given = participant_test(wins, totals), participant_test(wins, totals, 0, 0.95)
    for name in usual:
        np.testing.assert_array_equal(usual[name], given[name])
    bias = position_bias(votes)
    left = (votes["choice"] == "left").groupby(votes["participant"]).sum()
    test = participant_test(left.to_numpy()[None], np.full((1, 16), 9))
    low, high = wilson_interval(left.sum(), len(votes))
    assert bias == {"n_participants": 16, "n_decisive": len(votes), "n_left": left.sum(), "p_left": test["estimate"][0],
                    "min_p": least_p(16), "ci_low": test["ci_low"][0], "ci_high": test["ci_high"][0],
                    "p_value": test["p_value"][0], "wilson_low_per_vote": low, "wilson_high_per_vote": high}
    assert bias != position_bias(votes, seed=1)
    narrow = position_bias(votes, level=0.8)
    for start, end in (("ci_low", "ci_high"), ("wilson_low_per_vote", "wilson_high_per_vote")):
        assert narrow[end] - narrow[start] < bias[end] - bias[start]


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95, 0.950008, 0.9999])
def test_sign_flip_intervals_end_where_the_test_starts_rejecting(level):
    """Each end of the interval inside (0, 1) is where the test's p-value (same sign vectors) crosses 1 - level:
    just inside it the test keeps the win rate, just outside it rejects it; by enumeration (6 participants: 64
    vectors, whose k-th and (k+1)-th smallest ends differ at 0.95; 8 and 10 with unequal counts; no p-value is
    below 1/128, so not at 0.9999) and by Monte Carlo (14 participants; 40 with unequal counts, whose ends are each one
    sign vector's, so an end one vector off fails; at 0.950008 the rank floor(alpha (B + 1)) is 499 where
    floor(alpha B) + 1 and floor(alpha (B + 2)) are 500). Beyond the least Monte Carlo p-value the interval is all
    of [0, 1]."""
    rng = np.random.default_rng(3)
    unequal = rng.integers(20, 200, 40)
    rows = [([3, 5, 2, 4, 6, 1, 4, 5, 3, 2, 4, 6, 3, 2], [6] * 14), (rng.binomial(unequal, 0.6), unequal)]
    if level < 0.99:
        rows += [([4, 2, 5, 3, 3, 4], [6] * 6), ([5, 1, 7, 2, 9, 3, 4, 0], [6, 4, 9, 5, 12, 3, 8, 2]),
                 ([28, 11, 3, 21, 25, 6, 34, 14, 7, 22], [54, 13, 6, 24, 41, 9, 52, 22, 15, 34])]
    for wins, totals in rows:
        r = participant_test([wins], [totals], seed=4, level=level)
        low, high = r["ci_low"][0], r["ci_high"][0]
        assert 0 < low < r["estimate"][0] < high <= 1, (low, high)
        p = [sign_flip_p([wins], [totals], seed=4, null=theta)[0] for theta in (low - 1e-6, low + 1e-6,
                                                                                high - 1e-6, high + 1e-6)]
        assert p[0] <= 1 - level < p[1] and (high == 1 or p[3] <= 1 - level < p[2])
    wins, totals = rows[0]
    sure = participant_test([wins], [totals], level=1 - 0.5 / (RANDOM_FLIPS + 1))  # no Monte Carlo p-value that low
    assert (sure["ci_low"][0], sure["ci_high"][0]) == (0.0, 1.0)


@pytest.mark.parametrize("n_people", [5, 10, 30])
def test_win_rate_intervals_cover_the_population_rate_at_any_number_of_participants(n_people):
    """1000 studies whose participants each have their own preference (sd 0.15 around 0.6 and 0.7):
    the sign-flip test's inverted 95% interval covers the population rate in 90-98% of them (0.925-0.975
    at 30 participants; the coverage's standard error is 0.007), or is withheld below MIN_PARTICIPANTS;
    the per-vote Wilson interval covers less."""
    rng = np.random.default_rng(n_people)
    for rate in (0.6, 0.7):
        wins, totals = simulate_counts(rng, 1000, n_people, n_votes=6, rate=rate, spread=0.15)
        r = participant_test(wins, totals)
        if n_people < MIN_PARTICIPANTS:
            assert np.isnan(r["ci_low"]).all() and np.isnan(r["p_value"]).all()
            continue
        covered = np.mean((r["ci_low"] <= rate) & (rate <= r["ci_high"]))
        low, high = wilson_interval(wins.sum(axis=1), totals.sum(axis=1))
        per_vote = np.mean((low <= rate) & (rate <= high))
        print(f"{n_people} participants, rate {rate}: sign-flip interval covers {covered:.3f}, per-vote Wilson {per_vote:.3f}")
        assert (0.925 <= covered <= 0.975) if n_people == 30 else (0.90 <= covered <= 0.98)
        assert per_vote < covered - (0.03 if n_people == 30 else 0)


STRENGTHS = np.array([0.65 / 0.35, 1.0, 1.0]) / (0.65 / 0.35 + 2)  # a2k_free, adain, all2all_free


@pytest.mark.parametrize("n_people", [5, 10, 30])
def test_bradley_terry_intervals_cover_the_population_strengths(n_people):
    """500 studies of 3 methods, 6 votes per pair and participant, each participant with their own
    preference per pair (sd 0.15 around the rate the strengths give): the 95% intervals cover the
    population's strengths (the Bradley-Terry fit to its expected win counts) in 90-98% of studies per
    method, or are withheld below MIN_PARTICIPANTS."""
    rng = np.random.default_rng(10 + n_people)
    per_person = np.zeros((500, n_people, 3, 3))
    for a, b in ((0, 1), (0, 2), (1, 2)):
        rate = STRENGTHS[a] / (STRENGTHS[a] + STRENGTHS[b])
        per_person[..., a, b], totals = simulate_counts(rng, 500, n_people, n_votes=6, rate=rate, spread=0.15)
        per_person[..., b, a] = totals - per_person[..., a, b]
    truth = bradley_terry(1000 * STRENGTHS[:, None] / (STRENGTHS[:, None] + STRENGTHS[None, :]), pseudo=0)
    strength, low, high = bt_intervals(per_person, n_boot=400, seed=1)
    assert strength.shape == low.shape == (500, 3)
    if n_people < MIN_PARTICIPANTS:
        assert np.isnan(low).all() and np.isnan(high).all()
        return
    covered = np.mean((low <= truth) & (truth <= high), axis=0)
    print(f"{n_people} participants: Bradley-Terry intervals cover {np.round(covered, 3)}")
    assert ((0.90 <= covered) & (covered <= 0.98)).all()


def test_bradley_terry_intervals_follow_their_recipe_resample_by_resample():
    """The documented interval, one resample at a time: participants drawn with replacement (numpy's generator
    with the seed), each resample's wins fitted with pseudo-wins on the pairs the whole study compared (c-d by one
    vote of one participant, so most resamples lose it; a-d never), strength +- t(P - 1, level) x sd (ddof 1) x
    sqrt(P / (P - 1)), clipped to [0, 1] (a dominant a and a rare d reach both ends). Batched rows are separate
    studies; below MIN_PARTICIPANTS the intervals are withheld."""
    n_people, n_boot, seed, level = 7, 50, 3, 0.999
    rng = np.random.default_rng(0)
    per_person = np.zeros((n_people, 4, 4))
    per_person[:, 0, 1], per_person[:, 1, 0] = rng.integers(6, 12, n_people), rng.integers(0, 2, n_people)
    per_person[:, 0, 2], per_person[:, 2, 0] = rng.integers(6, 12, n_people), rng.integers(0, 2, n_people)
    per_person[:, 1, 2], per_person[:, 2, 1] = rng.integers(0, 4, n_people), rng.integers(0, 4, n_people)
    per_person[0, 2, 3] = 1
    wins = per_person.sum(axis=0)
    compared = (wins + wins.T) > 0
    assert not compared[0, 3] and compared[2, 3]
    draws = participant_draws(n_people, n_boot, np.random.default_rng(seed))
    boot = np.array([bradley_terry(np.tensordot(d, per_person, axes=1), compared=compared) for d in draws])
    half = stats.t.ppf((1 + level) / 2, n_people - 1) * boot.std(axis=0, ddof=1) * np.sqrt(n_people / (n_people - 1))
    strength = bradley_terry(wins, compared=compared)
    got = bt_intervals(per_person, n_boot, seed, level)
    assert got[0] == pytest.approx(strength, rel=1e-9)
    assert got[1] == pytest.approx(np.clip(strength - half, 0, 1), rel=1e-6)
    assert got[2] == pytest.approx(np.clip(strength + half, 0, 1), rel=1e-6)
    assert got[2][0] == 1 and strength[0] + half[0] > 1 and got[1][3] == 0 and strength[3] - half[3] < 0
    batched = bt_intervals(np.stack([per_person, per_person[:, ::-1, ::-1]]), n_boot, seed, level)
    assert batched[2][0] == pytest.approx(got[2]) and batched[2][1] == pytest.approx(got[2][::-1])
    few = bt_intervals(per_person[: MIN_PARTICIPANTS - 1], n_boot, seed, level)
    assert np.isnan(few[1]).all() and np.isnan(few[2]).all() and not np.isnan(few[0]).any()


def test_holm_keeps_the_family_error_on_planted_nulls():
    """1000 studies of 4 method pairs with no difference (participants differ, the population does not):
    unadjusted sign-flip tests reject some pair in far more than 5% of studies, Holm in at most about 5%;
    a fifth, real difference is still found."""
    rng = np.random.default_rng(3)
    n_studies, n_null = 1000, 4
    nulls = [simulate_counts(rng, n_studies, 30, 6, 0.5, 0.15) for _ in range(n_null)]
    real = simulate_counts(rng, n_studies, 30, 6, 0.7, 0.15)
    wins = np.concatenate([w for w, _ in nulls] + [real[0]])  # (5 x studies, people), pair-major
    totals = np.concatenate([t for _, t in nulls] + [real[1]])
    p = sign_flip_p(wins, totals, seed=4).reshape(n_null + 1, n_studies).T
    adjusted = np.array([holm(row) for row in p])
    per_test = np.mean(p[:, :n_null] <= 0.05)
    unadjusted = np.mean((p[:, :n_null] <= 0.05).any(axis=1))
    family = np.mean((adjusted[:, :n_null] <= 0.05).any(axis=1))
    print(f"type I error per test {per_test:.3f}; family-wise: unadjusted {unadjusted:.3f}, Holm {family:.3f}")
    assert 0.02 <= per_test <= 0.065
    assert unadjusted > 0.12 and family <= 0.065
    assert np.mean(adjusted[:, n_null] <= 0.05) > 0.9


def test_spread_estimator_recovers_the_between_participant_sd():
    rng = np.random.default_rng(5)
    rows = []
    for pair, (rate, spread) in {("a", "b"): (0.6, 0.2), ("a", "c"): (0.5, 0.0)}.items():
        wins, _ = simulate_counts(rng, 1, 400, 10, rate, spread)
        for person, k in enumerate(wins[0]):
            rows += [(person, "x", *pair, "left" if i < k else "right", False, None) for i in range(10)]
    table, pooled = preference_spread(frame(rows))
    assert table["spread"].tolist() == pytest.approx([0.2, 0.0], abs=0.03)
    assert pooled == pytest.approx(np.sqrt(0.2**2 / 2), abs=0.03)


def test_spread_by_hand_and_where_it_is_unknown():
    """Method of moments by hand: a-b, three people choosing a in 3 of 4, 1 of 4 and 2 of 2 votes: rate 0.6,
    h = mean(1/n) = 1/3, s2 = (0.15^2 + 0.35^2 + 0.4^2) / 2 = 0.1525, spread^2 = (s2 - 0.6 * 0.4 * h) / (1 - h).
    a-c, two people of two votes each, one all a, one all c: spread^2 = (0.5 - 0.25 * 0.5) / 0.5. Unknown (NaN)
    with one vote per person (h = 1: binomial noise is all there is) and with one person."""
    def votes(pair, person, n_a, n):
        return [(person, "x", *pair, "left" if i < n_a else "right", False, None) for i in range(n)]

    rows = votes("ab", 1, 3, 4) + votes("ba", 2, 3, 4) + votes("ab", 3, 2, 2) + votes("ac", 1, 2, 2) \
        + votes("ac", 2, 0, 2) + votes("ad", 1, 1, 1) + votes("ad", 2, 0, 1) + votes("ae", 1, 1, 3)
    table, pooled = preference_spread(frame(rows))
    assert list(table.columns) == ["method_a", "method_b", "n_participants", "a_win_rate", "spread"]
    assert table[["method_a", "method_b", "n_participants"]].values.tolist() == [
        ["a", "b", 3], ["a", "c", 2], ["a", "d", 2], ["a", "e", 1]]
    assert table["a_win_rate"].tolist() == pytest.approx([0.6, 0.5, 0.5, 1 / 3])
    ab, ac = np.sqrt((0.1525 - 0.24 / 3) / (2 / 3)), np.sqrt(0.375 / 0.5)
    assert table["spread"].iloc[:2].tolist() == pytest.approx([ab, ac])
    assert table["spread"].iloc[2:].isna().all() and table["spread"].dtype == float
    assert pooled == pytest.approx(np.sqrt((3 * ab**2 + 2 * ac**2) / 5))
    alone, pooled_alone = preference_spread(frame(votes("ab", 1, 2, 3)))
    assert alone["spread"].dtype == float and alone["spread"].isna().all() and np.isnan(pooled_alone)


def test_the_pooled_spread_weighs_pairs_by_their_participants():
    table = pd.DataFrame({"n_participants": [30, 10, 1], "spread": [0.1, 0.3, np.nan]})
    assert pooled_spread(table) == pytest.approx(np.sqrt((30 * 0.01 + 10 * 0.09) / 40))
    assert np.isnan(pooled_spread(table.iloc[2:])) and np.isnan(pooled_spread(table.iloc[:0]))


def test_bradley_terry_recovers_strengths_from_expected_counts():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    wins = 1000 * p[:, None] / (p[:, None] + p[None, :])
    np.fill_diagonal(wins, 0)
    assert bradley_terry(wins, pseudo=0) == pytest.approx(p, rel=1e-6)
    batch = bradley_terry(np.stack([wins, wins.T]), pseudo=0)
    assert batch[0] == pytest.approx(p, rel=1e-6) and batch[1] == pytest.approx(bradley_terry(wins.T, pseudo=0))
    never_wins = np.array([[0, 5], [0, 0]])
    # half a win each way on a compared pair keeps it finite: 5.5 to 0.5, so 11/12 and 1/12, batched or not
    assert bradley_terry(never_wins) == pytest.approx([11 / 12, 1 / 12], rel=1e-8)
    assert bradley_terry(np.stack([never_wins, never_wins.T])) == pytest.approx(np.array([[11, 1], [1, 11]]) / 12,
                                                                                rel=1e-8)
    chain = np.array([[0, 4, 0], [1, 0, 3], [0, 2, 0]])  # a and c never met: no pseudo-wins between them
    linked = np.array([[False, True, False], [True, False, True], [False, True, False]])
    assert bradley_terry(chain) == pytest.approx(bradley_terry(chain, compared=linked), rel=1e-8)
    assert bradley_terry(chain) != pytest.approx(bradley_terry(chain, compared=~np.eye(3, dtype=bool)), rel=1e-3)


def test_catch_threshold_is_configurable():
    rows = [(1, "c", CATCH, "a", "right", True, True), (1, "c", CATCH, "a", "left", True, False),
            (2, "c", "a", CATCH, "right", True, False), (2, "c", "a", CATCH, "tie", True, False),
            (3, "c", "a", CATCH, "left", True, True), (3, "c", "a", "b", "left", False, None)]
    votes = frame(rows)
    strict = participant_table(votes, people_of(votes))
    assert strict["n_catch_failed"].tolist() == [1, 2, 0]
    assert strict.loc[strict["excluded"], "participant"].tolist() == [1, 2]
    assert strict["reason"].tolist() == ["failed 1 of 2 catch trials", "failed 2 of 2 catch trials", ""]
    lenient = participant_table(votes, people_of(votes), Rules(max_catch_failures=1))
    assert lenient.loc[lenient["excluded"], "participant"].tolist() == [2]


def test_participant_table_by_hand():
    """Five participants, every column by hand. 1: four method votes (two left, one right, a tie), a passed catch
    trial and attention check, and a practice vote whose time (10 ms) would move the median. 2: fails a catch trial
    and an attention check, median time exactly at fast_ms (not under it). 3: not on the list and incomplete.
    4: enrolled without a vote. 5: fast (500 ms)."""
    rows = [  # participant, kind, choice, is_catch, catch_passed, attention_passed, ms
        (1, "method", "left", False, None, None, 1000), (1, "method", "left", False, None, None, 2000),
        (1, "method", "right", False, None, None, 3000), (1, "method", "tie", False, None, None, 4000),
        (1, "catch", "right", True, True, None, 5000), (1, "attention", "left", False, None, True, 6000),
        (1, "practice", "right", False, None, None, 10),
        (2, "method", "right", False, None, None, 700), (2, "catch", "left", True, False, None, 900),
        (2, "attention", "right", False, None, False, 800),
        (3, "method", "left", False, None, None, 2000),
        (5, "method", "left", False, None, None, 400), (5, "method", "right", False, None, None, 600)]
    votes = pd.DataFrame(rows, columns=["participant", "kind", "choice", "is_catch", "catch_passed",
                                        "attention_passed", "response_time_ms"])
    for column in ("catch_passed", "attention_passed"):
        votes[column] = votes[column].astype("boolean")
    votes["response_time_ms"] = votes["response_time_ms"].astype("Int64")
    votes["server_time_ms"] = pd.array([None] * len(votes), dtype="Int64")
    people = pd.DataFrame({"participant": [1, 2, 3, 4, 5], "n_trials": [6, 3, 4, 3, 2], "n_votes": [6, 3, 1, 0, 2],
                           "completed": [True, True, False, False, True]}, index=[10, 11, 12, 13, 14])
    rules = Rules(include=frozenset({1, 2, 4, 5}), include_source="ids.csv", fast_ms=800, exclude_fast=True)
    got = participant_table(votes, people, rules)
    assert list(got.columns) == ["participant", "n_trials", "n_votes", "completed", "n_catch", "n_catch_failed",
                                 "n_attention", "n_attention_failed", "median_rt_ms", "share_left", "fast",
                                 "excluded", "reason"]
    assert list(got.index) == [0, 1, 2, 3, 4]
    assert got[["n_catch", "n_catch_failed", "n_attention", "n_attention_failed"]].values.tolist() == [
        [1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert got["median_rt_ms"].tolist()[:3] == [3500, 800, 2000] and got["median_rt_ms"][4] == 500
    assert got["share_left"].tolist()[:3] == [2 / 3, 0.0, 1.0] and got["share_left"][4] == 0.5
    assert np.isnan(got["median_rt_ms"][3]) and np.isnan(got["share_left"][3])
    assert got["fast"].tolist() == [False, False, False, False, True]
    assert got["reason"].tolist() == ["", "failed 1 of 1 catch trials; failed 1 of 1 attention checks",
                                      "not in ids.csv; incomplete (1 of 4 trials)", "no vote",
                                      "median response time 500 ms < 800 ms"]
    assert got["excluded"].tolist() == [False, True, True, True, True]
    unnamed = participant_table(votes, people, Rules(include=frozenset({1})))
    assert unnamed["reason"][2] == "not in the list; incomplete (1 of 4 trials)"
    strangers = votes.assign(participant=votes["participant"] + 20)
    with pytest.raises(AnalysisError, match=r"missing from the participant table: \[21, 22, 23, 25\]$"):
        participant_table(strangers, people)
    many = pd.concat([strangers, strangers.assign(participant=26), strangers.assign(participant=27)])
    with pytest.raises(AnalysisError, match=r"missing from the participant table: \[21, 22, 23, 25, 26\]$"):
        participant_table(many, people)


def test_win_rates_count_ties_apart_and_agreement_by_hand():
    rows = [(1, "x", "b", "a", "right", False, None), (2, "x", "a", "b", "left", False, None),
            (3, "x", "a", "b", "left", False, None), (4, "y", "a", "b", "left", False, None),
            (5, "y", "b", "a", "left", False, None), (6, "y", "a", "b", "tie", False, None)]
    pairs = pair_win_rates(frame(rows))
    row = pairs.iloc[0]
    assert (row["method_a"], row["method_b"], row["a_wins"], row["b_wins"], row["ties"], row["n_decisive"]) \
        == ("a", "b", 4, 1, 1, 5)
    assert row["a_win_rate"] == pytest.approx(0.8) and row["n_participants"] == 6
    assert (row["wilson_low_per_vote"], row["wilson_high_per_vote"]) == pytest.approx(wilson_interval(4, 5))
    assert row["n_people"] == 5 and np.isnan(row["p_value"]) and np.isnan(row["ci_low"])  # too few to test
    assert row["min_p"] == pytest.approx(2 / 2**5)
    assert list(pairs.columns) == ["method_a", "method_b", "n_participants", "n_votes", "a_wins", "b_wins", "ties",
                                   "both_bad", "n_decisive", "a_win_rate", "n_people", "min_p", "ci_low", "ci_high",
                                   "p_value", "p_holm", "wilson_low_per_vote", "wilson_high_per_vote"]
    assert pairs.columns.name is None and row["n_votes"] == 6
    at_80 = pair_win_rates(frame(rows), level=0.8).iloc[0]
    assert (at_80["wilson_low_per_vote"], at_80["wilson_high_per_vote"]) == pytest.approx(wilson_interval(4, 5, 0.8))
    by_content = pair_win_rates(frame(rows), by=["content"])
    assert by_content["a_wins"].tolist() == [3, 1] and by_content["p_holm"].isna().all()
    # items: x = (a, a, a), y = (a, b, tie); rater pairs 6 + 6, agreeing 6 + 0; shares a 4/6, b 1/6, tie 1/6
    result = agreement(frame(rows))
    expected = (4 / 6) ** 2 + 2 * (1 / 6) ** 2
    assert result["n_items"] == 2 and result["n_rater_pairs"] == 12
    assert result["pairwise_agreement"] == pytest.approx(0.5)
    assert result["fleiss_kappa"] == pytest.approx((0.5 - expected) / (1 - expected))


def test_ties_only_leave_rates_undefined():
    votes = frame([(1, "x", "a", "b", "tie", False, None), (2, "x", "b", "a", "both_bad", False, None)])
    assert np.isnan(position_bias(votes)["p_left"])
    pairs = pair_win_rates(votes)
    assert pairs[["a_win_rate", "ci_low", "p_value", "p_holm", "wilson_low_per_vote"]].isna().all(axis=None)


def test_every_table_is_per_question_and_practice_attention_and_server_time_are_read():
    """Two questions with opposite preferences get their own rows (not pooled); practice votes enter nothing;
    a failed attention check excludes; a participant whose browser claims slow answers that the server
    saw fast is flagged fast."""
    rows, kinds, questions, server = [], [], [], []
    for person in range(8):
        for i in range(8):
            question = ("overall", "style")[i % 2]
            winner = "left" if (question == "overall") == (i % 4 < 2) else "right"
            left, right = ("a", "b") if winner == "left" or i % 4 >= 2 else ("b", "a")
            rows.append((person, f"c{i % 3}", left, right, "left" if (left == "a") == (question == "overall")
                         else "right", False, None))
            kinds.append("method")
            questions.append(question)
            server.append(300 if person == 7 else 2000)
        rows.append((person, "c0", "a", "b", "right", False, None))  # practice: always b, would move the rates
        kinds.append("practice")
        questions.append("overall")
        server.append(2000)
    votes = frame(rows)
    votes["kind"], votes["question"] = kinds, questions
    votes["server_time_ms"] = pd.array(server, dtype="Int64")
    attention = frame([(6, "c0", "a", "b", "left", False, None)])
    attention["kind"], attention["attention_passed"] = "attention", pd.array([False], dtype="boolean")
    votes = pd.concat([votes, attention], ignore_index=True)
    people = people_of(votes[votes["kind"] != "practice"])
    people["feedback"] = [None, "too dark", None, None, None, None, None, "fine"]
    r = analyze(votes, people, Rules(), n_boot=50, seed=3, level=0.9)
    assert r.feedback.to_dict("list") == {"participant": [1, 7], "feedback": ["too dark", "fine"]}
    overall = votes[(votes["participant"] != 6) & (votes["question"] == "overall")]
    assert r.strengths[r.strengths["question"] == "overall"].drop(columns="question").reset_index(drop=True).equals(
        bt_strengths(overall, 50, seed=3, level=0.9).reset_index(drop=True))  # the bootstrap as asked for
    assert r.questions == ["overall", "style"] and r.n_practice_votes == 8
    assert r.excluded == [6]  # the failed attention check
    assert r.attention_failure_rate == 1.0 and r.n_attention_votes == 1 and np.isnan(r.catch_failure_rate)
    rates = r.pairs.set_index("question")["a_win_rate"]
    assert rates["overall"] == 1.0 and rates["style"] == 0.0  # practice votes (all b) counted nowhere
    assert list(r.strengths["question"].unique()) == ["overall", "style"]
    assert set(r.agreement["question"]) == {"overall", "style"} and set(r.spread["question"]) == {"overall", "style"}
    fast = r.participants.set_index("participant")["fast"]
    assert fast[7] and not fast[0]  # the browser said 1500 ms, the server saw 300 ms


def test_analysis_errors_say_why():
    with pytest.raises(AnalysisError, match="^the study has no votes yet$"):
        analyze(frame([]), people_of(frame([])))
    caught = frame([(1, "x", CATCH, "a", "left", True, False), (1, "x", "a", "b", "left", False, None)])
    with pytest.raises(AnalysisError, match="max-catch-failures"):
        analyze(caught, people_of(caught))
    with pytest.raises(AnalysisError, match="^" + re.escape(
            "no method votes are left after the exclusions; --keep-incomplete keeps incomplete participants, "
            "--max-catch-failures and --max-attention-failures keep those failing catch trials and attention "
            "checks") + "$"):
        analyze(caught, people_of(caught, n_trials=5), Rules(max_catch_failures=1))
    apart = frame([(1, "x", "a", "b", "left", False, None), (1, "x", "c", "d", "left", False, None)])
    with pytest.raises(AnalysisError, match="^" + re.escape(
            "some methods were never compared with the others, even indirectly: their strengths cannot be put on "
            "one scale") + "$"):
        analyze(apart, people_of(apart), n_boot=10)
    with pytest.raises(AnalysisError, match="missing from the participant table"):
        analyze(apart, people_of(apart).iloc[:0])


def simulate(store, study, seed=0):
    """N_PEOPLE participants vote through the store: TRUTH with LEFT_BIAS, 5% ties, 3% both_bad;
    N_CARELESS of them click at random and pick the broken image in every catch trial.
    Returns the careless participants' ids."""
    rng = np.random.default_rng(seed)
    method = {s["output_sha256"]: s["method"] for s in store.stimuli(study)}
    careless = set(rng.choice(N_PEOPLE, N_CARELESS, replace=False).tolist())
    careless_tokens = []
    for i in range(N_PEOPLE):
        pid = store.new_participant(study, {"PROLIFIC_PID": f"sim-{i}"}, rng=random.Random(seed * 1000 + i))
        for trial in store.remaining_trials(pid):
            left, right = method[trial["left"]], method[trial["right"]]
            u = rng.random()
            if CATCH in (left, right):
                broken = "left" if left == CATCH else "right"
                choice = broken if i in careless else {"left": "right", "right": "left"}[broken]
            elif i in careless:
                choice = "left" if u < 0.5 else "right"
            elif u < 0.05:
                choice = "tie"
            elif u < 0.08:
                choice = "both_bad"
            else:
                p_left = TRUTH[left] / (TRUTH[left] + TRUTH[right]) + LEFT_BIAS
                choice = "left" if rng.random() < p_left else "right"
            store.record_vote(trial["token"], pid, choice, int(rng.lognormal(7.5, 0.4)))
        if i in careless:
            careless_tokens.append(pid)
    with store.engine.connect() as conn:
        return sorted(conn.scalars(select(participants.c.id).where(participants.c.token.in_(careless_tokens))))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """(database path, careless participant ids) of a finished simulated study named "sim"."""
    path = tmp_path_factory.mktemp("sim") / "study.db"
    with Store(path) as store:
        store.create_study("sim", "I agree.", N_TRIALS, 0.1)
        add_stimuli(store, "sim", contents=("c1", "c2", "c3"), styles=("s1", "s2"))
        careless = simulate(store, "sim")
    return path, careless


def test_simulated_study_is_recovered(simulated):
    path, careless = simulated
    votes = load_votes(path, "sim")
    assert len(votes) == N_PEOPLE * N_TRIALS
    r = analyze(votes, load_participants(path, "sim"), n_boot=1000, seed=0)

    assert r.excluded == careless  # exactly the participants who failed catch trials
    assert r.catch_failure_rate == pytest.approx(N_CARELESS / N_PEOPLE)
    kept = votes[~votes["participant"].isin(careless) & ~votes["is_catch"]]
    assert r.pairs["n_votes"].sum() == len(kept)

    s = r.strengths.set_index("method")
    truth = (pd.Series(TRUTH) / sum(TRUTH.values()))[s.index]
    assert ((s["ci_low"] <= truth) & (truth <= s["ci_high"])).all(), s
    assert s.index[0] == "a2k_free"
    for row in r.pairs.itertuples():
        true_rate = TRUTH[row.method_a] / (TRUTH[row.method_a] + TRUTH[row.method_b])
        assert row.ci_low <= true_rate <= row.ci_high, row
        assert (row.p_holm < 0.05) == (true_rate != 0.5), row
        assert row.p_holm >= row.p_value

    assert r.position["p_value"] < 0.05 and r.position["ci_low"] <= 0.5 + LEFT_BIAS <= r.position["ci_high"]
    assert set(r.pairs_by_style["style"]) == {"s1.jpg", "s2.jpg"}
    assert set(r.pairs_by_content["content"]) == {"c1.jpg", "c2.jpg", "c3.jpg"}
    agreed, = r.agreement.itertuples()
    assert agreed.question == "overall" and 0 < agreed.pairwise_agreement < 1 and agreed.n_items == 18


def test_analyze_command_writes_the_report(simulated, tmp_path, capsys):
    path, careless = simulated
    out = tmp_path / "report"
    assert analyze_main(["--db", str(path), "--study", "sim", "--out", str(out), "--bootstrap", "200"]) == 0
    for name in ("strengths.csv", "pairs.csv", "pairs_by_style.csv", "pairs_by_content.csv", "position_bias.csv",
                 "agreement.csv", "participants.csv", "flow.csv", "response_times.csv", "spread.csv", "votes.csv",
                 "votes.parquet", "strengths.png", "pairs.png", "response_times.png", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0, name
    assert len(pd.read_parquet(out / "votes.parquet")) == len(pd.read_csv(out / "votes.csv")) == N_PEOPLE * N_TRIALS
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "## Position bias" in md and "Excluded participants: " + ", ".join(map(str, careless)) in md
    assert '<img src="pairs.png"' in page and "Fleiss" in page
    assert "report.html" in capsys.readouterr().out

    assert analyze_main(["--db", str(tmp_path / "none.db"), "--study", "sim", "--out", str(out)]) == 2
    assert "no database file" in capsys.readouterr().err
    assert analyze_main(["--db", str(path), "--study", "other", "--out", str(out)]) == 2
    assert "no study named 'other'" in capsys.readouterr().err


def test_the_rules_as_the_report_states_them():
    fast = "A median response time (the lower of the browser's and the server's time per vote) under "
    assert Rules().describe() == [
        "Participants failing more than 0 catch trial(s) or more than 0 attention check(s) are excluded.",
        "Incomplete participants (fewer votes than trials) are excluded (default; --keep-incomplete keeps them).",
        fast + "1000 ms flags a participant, who is kept (default; --exclude-fast excludes them).",
        "Participants without any vote are excluded."]
    assert Rules(max_catch_failures=1, keep_incomplete=True, fast_ms=800, exclude_fast=True, include=frozenset({1}),
                 include_source="the Prolific export x.csv", max_attention_failures=2).describe() == [
        "Only participants in the Prolific export x.csv are analysed.",
        "Participants failing more than 1 catch trial(s) or more than 2 attention check(s) are excluded.",
        "Incomplete participants (fewer votes than trials) are kept (--keep-incomplete).",
        fast + "800 ms excludes a participant (--exclude-fast).",
        "Participants without any vote are excluded."]
    assert Rules(include=frozenset()).describe()[0] == "Only participants in the list are analysed."


def test_the_screens_per_outcome_and_device():
    """Measured screens by outcome and device (sorted; a screen without a device last), then the unmeasured
    count of each outcome that has any."""
    nan = float("nan")
    screens = pd.DataFrame([
        ("completed", "phone", 390, 844, 3.0, "Chrome"), ("declined", "desktop", 800, 600, 1.0, "Edge"),
        ("completed", None, 1000, 700, 1.0, "Other"), ("completed", "phone", 412, 915, 2.6, "Chrome"),
        ("completed", "desktop", 1280, 720, 1.0, "Firefox"), ("completed", "phone", 360, 800, 3.0, "Safari"),
        ("completed", "phone", 375, 812, 2.0, "Chrome"), ("screened_out", None, nan, nan, nan, None),
        ("screened_out", None, nan, nan, nan, None), ("completed", "desktop", nan, nan, nan, None),
    ], columns=["outcome", "device", "viewport_width", "viewport_height", "pixel_ratio", "browser"])
    got = viewport_table(screens)
    assert list(got.columns) == ["outcome", "device", "n", "width_min", "width_median", "width_max", "height_median",
                                 "pixel_ratio_median", "browsers"]
    rows = [tuple(None if pd.isna(v) else v for v in r) for r in got.itertuples(index=False)]
    assert rows == [
        ("completed", "desktop", 1, 1280, 1280.0, 1280, 720.0, 1.0, "Firefox (1)"),
        ("completed", "phone", 4, 360, 382.5, 412, 828.0, 2.8, "Chrome (3), Safari (1)"),
        ("completed", None, 1, 1000, 1000.0, 1000, 700.0, 1.0, "Other (1)"),
        ("declined", "desktop", 1, 800, 800.0, 800, 600.0, 1.0, "Edge (1)"),
        ("completed", "not measured", 1, None, None, None, None, None, ""),
        ("screened_out", "not measured", 2, None, None, None, None, None, ""),
    ]


def test_response_times_of_all_and_of_the_analysed_participants():
    """Practice votes left out; each vote at the lower of the browser's and the server's time; the analysed rows
    without the excluded participant; an empty series as NaN quantiles."""
    votes = pd.DataFrame({
        "participant": [1, 1, 1, 2, 2, 3],
        "kind": ["practice", "method", "catch", "method", "method", "method"],
        "response_time_ms": [50, 400, 900, 1500, 2500, 300],
        "server_time_ms": [60, 500, 800, 1600, None, 100]})
    people = pd.DataFrame({"participant": [1, 2, 3], "excluded": [False, False, True],
                           "median_rt_ms": [600.0, 2000.0, None]})
    got = response_times(votes, people, fast_ms=1000).set_index("times")
    assert list(got.index) == ["votes, all participants", "votes, analysed participants", "participant medians, all",
                               "participant medians, analysed"]
    assert got["n"].tolist() == [5, 4, 2, 2]
    assert got.loc["votes, all participants", "median"] == 800 and got.loc["votes, all participants", "p5"] == 160
    assert got.loc["votes, analysed participants", "median"] == 1150
    assert got["share_under_threshold"].tolist() == [0.6, 0.5, 0.5, 0.5]
    at = response_times(votes, people, fast_ms=800).set_index("times")  # a vote of exactly 800 ms is not under
    assert at.loc["votes, all participants", "share_under_threshold"] == 0.4
    empty = response_times(votes.iloc[:1], people.iloc[:0].astype({"excluded": bool}), fast_ms=1000)
    assert empty["n"].tolist() == [0, 0, 0, 0] and empty.drop(columns=["times", "n"]).isna().all().all()


def test_a_table_per_question_keeps_the_questions_after_one_that_fails():
    votes = pd.DataFrame({"question": ["q3", "q1", "q2", "q1", "q2", "q0"],
                          "kind": ["method", "method", "method", "method", "catch", "practice"], "x": [5, 1, 2, 3, 4, 9]})

    def table(v):
        if (v["x"] == 2).any():
            raise AnalysisError("too few votes")
        return pd.DataFrame({"total": [v["x"].sum()]}, index=[7])

    got, missing = per_question(votes, table)
    assert got.to_dict("list") == {"question": ["q1", "q3"], "total": [4, 5]} and list(got.index) == [0, 1]
    assert missing == {"q2": "too few votes"}
    none, _ = per_question(votes[votes["kind"] != "method"], table)
    assert list(none.columns) == ["question"] and none.empty


def flow_people(n_trials):
    """A participant table (participant_table's columns that the flow reads) of eight people, each meeting a
    different rule first: p1 not listed, p2 no vote, p3 incomplete, p4 a failed catch trial, p5 a failed attention
    check, p6 fast, p7 good, p8 incomplete and a failed catch trial (counted as incomplete)."""
    return pd.DataFrame({"participant": [f"p{i}" for i in range(1, 9)], "n_trials": n_trials,
                         "n_votes": [4, 0, 2, 4, 4, 4, 4, 1], "completed": [1, 0, 0, 1, 1, 1, 1, 0],
                         "n_catch_failed": [0, 0, 0, 1, 0, 0, 0, 1], "n_attention_failed": [0, 0, 0, 0, 1, 0, 0, 0],
                         "fast": [0, 0, 0, 0, 0, 1, 0, 0]}).astype({"completed": bool})


def flow_votes():
    """The stored votes the flow counts: p7's three method votes and a catch vote, and others' method votes."""
    return pd.DataFrame({"participant": ["p7", "p7", "p7", "p7", "p1", "p6", "p3"],
                         "kind": ["method", "method", "catch", "method", "method", "method", "practice"]})


def test_the_flow_from_the_link_to_the_analysed_participants():
    """Every rule at once: each participant counted at the first rule that excludes them, the openings, screen-outs,
    declines and enrolments with no recorded opening before them, the table and the sentence exact."""
    from study.store import Arrivals
    since = pd.Timestamp("2026-01-02 03:04:59").to_pydatetime()
    rules = Rules(include=frozenset(f"p{i}" for i in range(2, 9)), include_source="the export", exclude_fast=True)
    flow, sentence = participant_flow(flow_people([4, 4, 4, 4, 4, 4, 4, 6]), flow_votes(), rules,
                                      Arrivals(10, 3, since, frozenset(), 1))
    recorded = "openings are recorded since 2026-01-02 03:04 UTC"
    assert [tuple(r) for r in flow.itertuples(index=False)] == [
        ("opened the link", "", 10, "once per browser"),
        ("screened out (screen too small)", 1, 9, "sent back before consent"),
        ("declined consent", 3, 6, ""),
        ("neither declined nor enrolled", 0, 6, "left the consent page, or opened the link again in another browser"),
        ("enrolled (consented, trials assigned)", "", 8, f"6 from the openings above, 2 with no recorded opening "
                                                         f"({recorded})"),
        ("not in the export", 1, 7, ""), ("no vote", 1, 6, ""), ("incomplete (fewer votes than trials)", 2, 4, ""),
        ("failed more than 0 catch trial(s)", 1, 3, ""), ("failed more than 0 attention check(s)", 1, 2, ""),
        ("median response time under 1000 ms", 1, 1, ""), ("analysed", "", 1, "")]
    assert sentence == (
        f"The study link was opened in 10 browsers: 1 were screened out (screen too small), 3 declined consent, "
        f"0 neither declined nor enrolled, and 6 enrolled (2 more enrolled with no recorded opening: {recorded}). "
        "Of 8 enrolled participants, 7 voted and 5 completed all their trials. Excluded: 1 not in the export, "
        "1 with no vote, 2 incomplete, 1 who failed more than 0 catch trial(s), 1 who failed more than 0 attention "
        "check(s), 1 with a median response time under 1000 ms. Analysed: 1 participants and 3 method votes "
        "(of 7 votes stored).")


def test_the_flow_keeps_what_the_rules_keep_and_reads_odd_arrival_counts():
    """keep_incomplete and the default speed rule count without excluding; an unnamed list; without arrivals the flow
    starts at enrolment; more openings than enrolments are 'neither declined nor enrolled', and when every opening
    was screened out or declined, the enrolments all count as unrecorded."""
    from study.store import Arrivals
    since = pd.Timestamp("2026-05-06 07:08").to_pydatetime()
    rules = Rules(keep_incomplete=True, include=frozenset({"p1", "p2", "p3", "p6", "p7", "p8"}))
    flow, sentence = participant_flow(flow_people(4), flow_votes(), rules)
    assert [tuple(r) for r in flow.itertuples(index=False)] == [
        ("enrolled (consented, trials assigned)", "", 8, ""), ("not in the list", 2, 6, ""), ("no vote", 1, 5, ""),
        ("incomplete (fewer votes than trials)", 0, 5, "2 kept (--keep-incomplete)"),
        ("failed more than 0 catch trial(s)", 1, 4, ""), ("failed more than 0 attention check(s)", 0, 4, ""),
        ("median response time under 1000 ms", 0, 4, "1 flagged, kept"), ("analysed", "", 4, "")]
    assert sentence == (
        "Of 8 enrolled participants, 7 voted and 5 completed all 4 trials. Excluded: 2 not in the list, 1 with no "
        "vote, none for being incomplete (2 kept), 1 who failed more than 0 catch trial(s), 0 who failed more than 0 "
        "attention check(s), none for speed (1 with a median response time under 1000 ms flagged and kept). "
        "Analysed: 4 participants and 5 method votes (of 7 votes stored).")
    people = flow_people(4).iloc[:2]
    flow, sentence = participant_flow(people, flow_votes(), Rules(), Arrivals(9, 2, since, frozenset(), 4))
    assert flow["excluded"].tolist()[:4] == ["", 4, 2, 1] and flow["remaining"].tolist()[:5] == [9, 5, 3, 2, 2]
    assert flow["note"][4] == "" and sentence.startswith(
        "The study link was opened in 9 browsers: 4 were screened out (screen too small), 2 declined consent, "
        "1 neither declined nor enrolled, and 2 enrolled. Of 2 enrolled")
    flow, sentence = participant_flow(people, flow_votes(), Rules(), Arrivals(5, 4, since, frozenset(), 1))
    assert flow["excluded"].tolist()[:4] == ["", 1, 4, 0] and flow["remaining"].tolist()[:5] == [5, 4, 0, 0, 2]
    assert flow["note"][4] == ("0 from the openings above, 2 with no recorded opening (openings are recorded since "
                               "2026-05-06 07:08 UTC)")
    assert "and 0 enrolled (2 more enrolled with no recorded opening: openings are recorded since" in sentence


def test_agreement_counts_items_rated_twice_or_more():
    """An item rated once is left out and one rated twice counts; ties and 'both bad' are answers of their own;
    unanimous answers leave kappa undefined (chance agreement 1); no item rated twice leaves every share undefined."""
    rows = [(1, "x", "a", "b", "left", False, None), (2, "x", "b", "a", "right", False, None),
            (3, "y", "a", "b", "tie", False, None), (4, "y", "b", "a", "both_bad", False, None),
            (5, "y", "a", "b", "both_bad", False, None), (6, "z", "a", "b", "left", False, None),
            (7, "x", "a", "c", "left", False, None), (8, "x", "c", "a", "left", False, None)]
    result = agreement(frame(rows))
    # items: (x, a-b) = (a, a), (x, a-c) = (a, c), (y, a-b) = (tie, both_bad, both_bad); z rated once
    # rater pairs 2 + 2 + 6, agreeing 2 + 0 + 2; shares a 3/7, b 0, tie 1/7, both_bad 2/7, (c counts as b) 1/7
    expected = (3 / 7) ** 2 + (1 / 7) ** 2 + (1 / 7) ** 2 + (2 / 7) ** 2
    assert result["measure"].startswith("pairwise agreement and Fleiss' kappa")
    assert (result["n_items"], result["n_votes"], result["n_rater_pairs"]) == (3, 7, 10)
    assert result["pairwise_agreement"] == pytest.approx(0.4)
    assert result["chance_agreement"] == pytest.approx(expected)
    assert result["fleiss_kappa"] == pytest.approx((0.4 - expected) / (1 - expected))
    same = agreement(frame(rows[:2]))
    assert (same["pairwise_agreement"], same["chance_agreement"]) == (1.0, 1.0) and np.isnan(same["fleiss_kappa"])
    once = agreement(frame(rows[5:6]))
    assert (once["n_items"], once["n_votes"], once["n_rater_pairs"]) == (0, 0, 0)
    assert all(np.isnan(once[k]) for k in ("pairwise_agreement", "chance_agreement", "fleiss_kappa"))


def test_analyze_puts_together_each_table_of_the_analysed_votes_with_the_settings_asked_for():
    """analyze's every field against the function that makes it, run on the analysed votes with the seed and level
    asked for: 16 analysed participants (beyond EXACT_UP_TO, so the sign flips are random and the seed matters),
    two questions, three methods, two styles, ties and both_bad, practice votes, an attention check, and one
    participant who fails a catch trial (excluded, though their catch votes count in the failure rate)."""
    rng = np.random.default_rng(7)
    rows, kinds, questions, styles = [], [], [], []
    for person in range(17):
        for i in range(12):
            left, right = [("a", "b"), ("b", "c"), ("c", "a")][i % 3]
            u = rng.random()
            choice = "tie" if u < 0.08 else "both_bad" if u < 0.12 else "left" if u < 0.12 + 0.55 + person / 80 \
                else "right"
            rows.append((person, f"c{i % 4}", left, right, choice, False, None))
            kinds.append("method")
            questions.append(("overall", "style")[i % 2])
            styles.append(f"s{i // 6}")
        rows += [(person, "c0", CATCH, "a", "right", True, person != 16), (person, "c1", "a", "b", "left", False, None)]
        kinds += ["catch", "practice"]
        questions += ["overall", "overall"]
        styles += ["s0", "s0"]
    votes = frame(rows)
    votes["kind"], votes["question"], votes["style"] = kinds, questions, styles
    votes["server_time_ms"] = pd.array(rng.integers(800, 3000, len(votes)), dtype="Int64")
    attention = frame([(3, "c0", "a", "b", "left", False, None)])
    attention["kind"], attention["attention_passed"] = "attention", pd.array([True], dtype="boolean")
    votes = pd.concat([votes, attention], ignore_index=True)
    participants = people_of(votes[votes["kind"] != "practice"])
    screens = pd.DataFrame({"outcome": ["enrolled", "enrolled", "screened out"], "device": ["phone", "desktop", None],
                            "viewport_width": [390, 1280, 300], "viewport_height": [844, 720, 500],
                            "pixel_ratio": [3.0, 1.0, 2.0], "browser": ["Chrome", "Firefox", "Safari"]})
    rules = Rules(fast_ms=1200)
    r = analyze(votes, participants, rules, n_boot=40, seed=5, level=0.9, screens=screens)

    kept = votes[votes["participant"] != 16]
    method = kept[kept["kind"] == "method"]
    test = {"seed": 5, "level": 0.9}
    people = participant_table(votes, participants, rules)
    assert r.participants.equals(people) and r.excluded == [16] and r.rules is rules
    assert (r.n_participants, r.n_analysed, r.n_votes, r.n_method_votes) == (17, 16, len(votes), 16 * 12)
    assert (r.n_practice_votes, r.n_attention_votes, r.attention_failure_rate) == (17, 1, 0.0)
    assert r.catch_failure_rate == pytest.approx(1 / 17) and r.questions == ["overall", "style"]
    flow, sentence = participant_flow(people, votes, rules)
    assert r.flow.equals(flow) and r.flow_sentence == sentence
    assert r.tie_rate == (~method["choice"].isin(["left", "right"])).mean() > 0
    for got, table in [(r.pairs, lambda v: pair_win_rates(v, **test)),
                       (r.pairs_by_style, lambda v: pair_win_rates(v, by=["style"], **test)),
                       (r.pairs_by_content, lambda v: pair_win_rates(v, by=["content"], **test)),
                       (r.spread, lambda v: preference_spread(v)[0]),
                       (r.agreement, lambda v: pd.DataFrame([agreement(v)])),
                       (r.strengths, lambda v: bt_strengths(v, 40, **test))]:
        expected, missing = per_question(kept, table)
        pd.testing.assert_frame_equal(got, expected)
        assert not missing
    assert r.pairs["p_value"].notna().all() and not r.pairs.equals(per_question(kept, pair_win_rates)[0])
    assert r.position == position_bias(kept, **test) and r.position != position_bias(kept)
    pd.testing.assert_frame_equal(r.response_times, response_times(votes, people, 1200))
    assert r.pooled_spread == pooled_spread(r.spread)
    pd.testing.assert_frame_equal(r.viewports, viewport_table(screens))
    assert r.settings == {"max_catch_failures": 0, "keep_incomplete": False, "fast_ms": 1200, "exclude_fast": False,
                          "include_source": "", "max_attention_failures": 0, "n_boot": 40, "seed": 5, "level": 0.9}
    plain = analyze(votes, participants.drop(columns="feedback", errors="ignore"), n_boot=40)
    assert plain.viewports is None and plain.feedback.empty and list(plain.feedback.columns) == ["participant",
                                                                                                   "feedback"]
