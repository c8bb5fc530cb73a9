"""Study conclusions that hold at any number of participants (issue #24): in simulated null studies
(3 methods nobody can tell apart) at 3 to 30 participants no table of the report finds a significant
row after Holm in more than 5% of studies; three random clickers run through `python -m study.analyze`
give no significant row and a pilot banner; a planted preference with 30 participants is still found;
the arena leaderboard withholds intervals from too few visitors."""
import random

import numpy as np
import pandas as pd
import pytest

from demo.leaderboard import interval
from study.analysis import battle_pairs, battle_strengths, holm, least_p, pair_win_rates, position_bias
from study.analyze import main as analyze_main
from study.store import Store
from tests.study_fixtures import METHODS, add_stimuli

PAIRS = [("a2k_free", "adain"), ("a2k_free", "all2all_free"), ("adain", "all2all_free")]
CONTENTS, STYLES = ("c1", "c2", "c3"), ("s1", "s2")
N_TRIALS, N_STUDIES = 12, 300
TABLES = {"pairs": ["study"], "pairs_by_style": ["study", "style"], "pairs_by_content": ["study", "content"]}


def null_votes(rng, n_studies, n_people):
    """The votes of n_studies null studies (a `study` column), as load_votes gives them: each participant
    has N_TRIALS method trials, 4 per pair, each on a different content x style, sides random; they answer
    tie 6% and both_bad 4% of the time, else left or right at random."""
    shape = (n_studies, n_people, N_TRIALS)
    pair = np.arange(N_TRIALS) % 3
    cells = rng.permuted(np.broadcast_to(np.arange(6), (n_studies, n_people, 3, 6)), axis=-1)
    cell = cells[..., pair, np.arange(N_TRIALS) // 3]  # the k-th trial of a pair gets the pair's k-th cell
    swap = rng.random(shape) < 0.5
    first, second = np.array(PAIRS)[pair].T
    u = rng.random(shape)
    choice = np.select([u < 0.06, u < 0.10, u < 0.55], ["tie", "both_bad", "left"], "right")
    study, person, _ = np.indices(shape)
    v = pd.DataFrame({
        "study": study.ravel(), "participant": person.ravel(),
        "content": np.array(CONTENTS)[cell // 2].ravel(), "style": np.array(STYLES)[cell % 2].ravel(),
        "left_method": np.where(swap, second, first).ravel(), "right_method": np.where(swap, first, second).ravel(),
        "choice": choice.ravel(), "is_catch": False, "kind": "method", "question": "overall"})
    v["winner"] = np.where(v["choice"] == "left", v["left_method"],
                           np.where(v["choice"] == "right", v["right_method"], None))
    return v


def any_significant(p_values, study):
    """Per study: whether a row of its table has a Holm-adjusted p-value under 0.05."""
    adjusted = pd.Series(p_values).groupby(np.asarray(study)).transform(lambda p: holm(p.to_numpy()))
    return (adjusted < 0.05).groupby(np.asarray(study)).any()


@pytest.mark.parametrize("n_people", [3, 4, 5, 6, 8, 12, 20, 30])
def test_null_studies_find_nothing_at_any_number_of_participants(n_people):
    """N_STUDIES null studies: the share with any significant row is at most 5% plus two binomial
    standard errors (0.075 with 300 studies; 10% would exceed it by two of its own errors), in every table."""
    votes = null_votes(np.random.default_rng(n_people), N_STUDIES, n_people)
    shares = {}
    for table, by in TABLES.items():
        rows = pair_win_rates(votes, by=by)
        shares[table] = any_significant(rows["p_value"], rows["study"]).mean()
    shares["position_bias"] = np.mean([position_bias(v)["p_value"] < 0.05 for _, v in votes.groupby("study")])
    print(f"{n_people} participants, share of null studies with a significant row: {shares}")
    bound = 0.05 + 2 * np.sqrt(0.05 * 0.95 / N_STUDIES)
    assert all(share <= bound for share in shares.values()), shares


def run_study(path, name, n_people, p_a2k, seed):
    """A study of METHODS through the real store: n_people participants, N_TRIALS trials each, no catch
    trials; a2k_free is chosen over either other method with probability p_a2k, the other pair at 50%."""
    rng = np.random.default_rng(seed)
    with Store(path) as store:
        store.create_study(name, "I agree.", N_TRIALS, 0.0)
        add_stimuli(store, name, contents=CONTENTS, styles=STYLES, catch=False)
        method = {s["output_sha256"]: s["method"] for s in store.stimuli(name)}
        for i in range(n_people):
            token = store.new_participant(name, rng=random.Random(seed * 1000 + i))
            for trial in store.remaining_trials(token):
                left, right = method[trial["left"]], method[trial["right"]]
                p_left = p_a2k if left == "a2k_free" else 1 - p_a2k if right == "a2k_free" else 0.5
                store.record_vote(trial["token"], token, "left" if rng.random() < p_left else "right", 1500)


def test_three_random_clickers_find_nothing_and_get_a_pilot_banner(tmp_path, capsys):
    path, out = tmp_path / "study.db", tmp_path / "report"
    run_study(path, "clickers", 3, 0.5, seed=0)
    assert analyze_main(["--db", str(path), "--study", "clickers", "--out", str(out), "--bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    recommended = int(printed.split("pilot: 3 participants; ")[1].split(" recommended")[0])
    assert recommended > 3
    for table in TABLES:
        rows = pd.read_csv(out / f"{table}.csv")
        assert len(rows) and rows[["p_value", "p_holm", "ci_low", "ci_high"]].isna().all(axis=None), table
        assert (rows["min_p"] == least_p(rows["n_people"])).all() and (rows["min_p"] >= 0.25).all()
        assert rows["a_win_rate"].notna().all()
    assert pd.read_csv(out / "position_bias.csv")["p_value"].isna().all()
    assert pd.read_csv(out / "strengths.csv")[["ci_low", "ci_high"]].isna().all(axis=None)
    md = (out / "report.md").read_text()
    assert f"pilot: 3 participants; {recommended} recommended" in md
    assert "Rows with fewer than 6 participants with a decisive vote are not tested" in md
    assert "Minimum detectable effect of the study as run: none." in md


def test_a_planted_preference_is_found_with_30_participants(tmp_path):
    path, out = tmp_path / "study.db", tmp_path / "report"
    run_study(path, "planted", 30, 0.7, seed=1)
    assert analyze_main(["--db", str(path), "--study", "planted", "--out", str(out), "--bootstrap", "500"]) == 0
    pairs = pd.read_csv(out / "pairs.csv").set_index(["method_a", "method_b"])
    assert (pairs.loc[PAIRS[:2], "p_holm"] < 0.05).all() and pairs.loc[PAIRS[2], "p_holm"] > 0.05
    assert (pairs.loc[PAIRS[:2], "ci_low"] > 0.5).all()
    strengths = pd.read_csv(out / "strengths.csv")
    assert strengths["method"][0] == "a2k_free" and strengths["ci_low"][0] > strengths["ci_high"][1:].max()
    assert set(METHODS) == set(strengths["method"])


def test_the_arena_leaderboard_withholds_intervals_from_few_visitors():
    """The Leaderboard tab's intervals resample visitors: from 5 of them they are withheld, and the tab says so."""
    def battles(n_visitors):
        rows = [(f"v{i}", *pair, "left" if (i + k) % 3 else "right") for i in range(n_visitors)
                for k, pair in enumerate(PAIRS * 2)]
        return pd.DataFrame(rows, columns=["voter", "left_method", "right_method", "choice"])

    few, enough = ({"strengths": battle_strengths(battles(n), 100), "pairs": battle_pairs(battles(n))} for n in (5, 6))
    for table in ("strengths", "pairs"):
        assert few[table][["ci_low", "ci_high"]].isna().all(axis=None), table
        assert enough[table][["ci_low", "ci_high"]].notna().all(axis=None), table
    assert few["strengths"]["strength"].notna().all() and few["pairs"]["a_win_rate"].notna().all()
    assert interval(np.nan, np.nan) == "withheld: under 6 sources" and interval(0.25, 0.5) == "0.250 – 0.500"
