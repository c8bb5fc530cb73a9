"""The study's statistics: unit checks, and a simulated study (through the real store) with a known
preference, a left bias and careless participants, which the analysis must recover."""
import random

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from study.analysis import (
    AnalysisError,
    agreement,
    analyze,
    binomial_p,
    bradley_terry,
    catch_summary,
    pair_win_rates,
    wilson_interval,
)
from study.analyze import main as analyze_main
from study.schema import participants
from study.store import CATCH, Store, load_votes
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
    return df


def test_wilson_interval_and_binomial_test():
    z2 = 1.959964**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)), abs=1e-6)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(10 / (10 + z2), abs=1e-6)
    low, high = wilson_interval(65, 100)
    assert low < 0.65 < high and high - low < wilson_interval(13, 20)[1] - wilson_interval(13, 20)[0]
    assert np.isnan(wilson_interval(0, 0)).all()
    assert binomial_p(9, 10) == pytest.approx(22 / 1024)


def test_bradley_terry_recovers_strengths_from_expected_counts():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    wins = 1000 * p[:, None] / (p[:, None] + p[None, :])
    np.fill_diagonal(wins, 0)
    assert bradley_terry(wins, pseudo=0) == pytest.approx(p, rel=1e-6)
    batch = bradley_terry(np.stack([wins, wins.T]), pseudo=0)
    assert batch[0] == pytest.approx(p, rel=1e-6) and batch[1] == pytest.approx(bradley_terry(wins.T, pseudo=0))
    never_wins = np.array([[0, 5], [0, 0]])
    assert np.all(bradley_terry(never_wins) > 0)  # pseudo-wins keep it finite


def test_catch_threshold_is_configurable():
    rows = [(1, "c", CATCH, "a", "right", True, True), (1, "c", CATCH, "a", "left", True, False),
            (2, "c", "a", CATCH, "right", True, False), (2, "c", "a", CATCH, "tie", True, False),
            (3, "c", "a", CATCH, "left", True, True), (3, "c", "a", "b", "left", False, None)]
    strict = catch_summary(frame(rows))
    assert strict["n_catch_failed"].tolist() == [1, 2, 0]
    assert strict.loc[strict["excluded"], "participant"].tolist() == [1, 2]
    lenient = catch_summary(frame(rows), max_failures=1)
    assert lenient.loc[lenient["excluded"], "participant"].tolist() == [2]


def test_win_rates_count_ties_apart_and_agreement_by_hand():
    rows = [(1, "x", "b", "a", "right", False, None), (2, "x", "a", "b", "left", False, None),
            (3, "x", "a", "b", "left", False, None), (4, "y", "a", "b", "left", False, None),
            (5, "y", "b", "a", "left", False, None), (6, "y", "a", "b", "tie", False, None)]
    pairs = pair_win_rates(frame(rows))
    row = pairs.iloc[0]
    assert (row["method_a"], row["method_b"], row["a_wins"], row["b_wins"], row["ties"], row["n_decisive"]) \
        == ("a", "b", 4, 1, 1, 5)
    assert row["a_win_rate"] == pytest.approx(0.8)
    by_content = pair_win_rates(frame(rows), by=["content"])
    assert by_content["a_wins"].tolist() == [3, 1]
    # items: x = (a, a, a), y = (a, b, tie); rater pairs 6 + 6, agreeing 6 + 0; shares a 4/6, b 1/6, tie 1/6
    result = agreement(frame(rows))
    expected = (4 / 6) ** 2 + 2 * (1 / 6) ** 2
    assert result["n_items"] == 2 and result["n_rater_pairs"] == 12
    assert result["pairwise_agreement"] == pytest.approx(0.5)
    assert result["fleiss_kappa"] == pytest.approx((0.5 - expected) / (1 - expected))


def test_analysis_errors_say_why():
    with pytest.raises(AnalysisError, match="no votes"):
        analyze(frame([]))
    caught = [(1, "x", CATCH, "a", "left", True, False), (1, "x", "a", "b", "left", False, None)]
    with pytest.raises(AnalysisError, match="max-catch-failures"):
        analyze(frame(caught))
    apart = [(1, "x", "a", "b", "left", False, None), (1, "x", "c", "d", "left", False, None)]
    with pytest.raises(AnalysisError, match="never compared"):
        analyze(frame(apart), n_boot=10)


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
    r = analyze(votes, n_boot=1000, seed=0)

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
        assert (row.p_value < 0.05) == (true_rate != 0.5), row

    assert r.position["p_value"] < 0.05 and r.position["ci_low"] <= 0.5 + LEFT_BIAS <= r.position["ci_high"]
    assert set(r.pairs_by_style["style"]) == {"s1.jpg", "s2.jpg"}
    assert set(r.pairs_by_content["content"]) == {"c1.jpg", "c2.jpg", "c3.jpg"}
    assert 0 < r.agreement["pairwise_agreement"] < 1 and r.agreement["n_items"] == 18


def test_analyze_command_writes_the_report(simulated, tmp_path, capsys):
    path, careless = simulated
    out = tmp_path / "report"
    assert analyze_main(["--db", str(path), "--study", "sim", "--out", str(out), "--bootstrap", "200"]) == 0
    for name in ("strengths.csv", "pairs.csv", "pairs_by_style.csv", "pairs_by_content.csv", "position_bias.csv",
                 "agreement.csv", "catch_trials.csv", "votes.csv", "votes.parquet", "strengths.png", "pairs.png",
                 "report.md", "report.html"):
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
