"""Statistics of a blind 2AFC preference study, on the vote table of `study.store.load_votes`.

Win rates use decisive votes (left/right); ties and both_bad are counted separately. A pair's two
methods are in alphabetical order, method_a then method_b: a_win_rate is P(method_a chosen).
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse.csgraph import connected_components
from scipy.stats import binomtest, norm

OUTCOMES = ("a", "b", "tie", "both_bad")  # method_a chosen, method_b chosen, tie, both bad
AGREEMENT_MEASURE = (
    "pairwise agreement and Fleiss' kappa over the four answers (method_a, method_b, tie, both_bad); "
    "items are trials showing the same stimulus pair (content, style, method pair) to 2+ raters, "
    "rater pairs pooled over items (Fleiss' kappa generalised to varying raters per item)")


class AnalysisError(ValueError):
    """The votes cannot be analysed as asked; the message says why."""


def wilson_interval(k, n, level=0.95):
    """Wilson score interval (low, high) of the proportion k / n; NaNs when n == 0."""
    if n == 0:
        return float("nan"), float("nan")
    z = norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return float(centre - half), float(centre + half)


def binomial_p(k, n):
    """Exact two-sided binomial test of k successes in n against p = 0.5; NaN when n == 0."""
    return float(binomtest(int(k), int(n), 0.5).pvalue) if n else float("nan")


def catch_summary(votes, max_failures=0):
    """One row per participant: n_votes, n_catch, n_catch_failed, and excluded (more than
    max_failures failed catch trials)."""
    failed = votes["is_catch"] & ~votes["catch_passed"].fillna(True).astype(bool)
    by = votes["participant"]
    out = pd.DataFrame({
        "n_votes": by.value_counts(),
        "n_catch": votes["is_catch"].groupby(by).sum(),
        "n_catch_failed": failed.groupby(by).sum(),
    }).astype(int).rename_axis("participant").sort_index()
    out["excluded"] = out["n_catch_failed"] > max_failures
    return out.reset_index()


def _oriented(votes):
    """Non-catch votes with method_a <= method_b (alphabetical) and outcome in OUTCOMES."""
    v = votes[~votes["is_catch"]].copy()
    swap = v["left_method"] > v["right_method"]
    v["method_a"] = v["left_method"].where(~swap, v["right_method"])
    v["method_b"] = v["right_method"].where(~swap, v["left_method"])
    v["outcome"] = np.select(
        [v["winner"] == v["method_a"], v["winner"] == v["method_b"], v["choice"] == "tie"],
        ["a", "b", "tie"], "both_bad")
    return v


def _outcome_counts(v, keys):
    """(groups x OUTCOMES) vote counts."""
    return v.groupby(keys)["outcome"].value_counts().unstack(fill_value=0).reindex(columns=list(OUTCOMES), fill_value=0)


def pair_win_rates(votes, by=(), level=0.95):
    """One row per method pair (per value of the `by` columns, e.g. ["style"]): n_votes, a_wins,
    b_wins, ties, both_bad, n_decisive, a_win_rate with its Wilson interval (ci_low, ci_high), and
    p_value, the exact two-sided binomial test of a_win_rate = 0.5."""
    counts = _outcome_counts(_oriented(votes), [*by, "method_a", "method_b"])
    out = counts.rename(columns={"a": "a_wins", "b": "b_wins", "tie": "ties"})
    out.insert(0, "n_votes", counts.sum(axis=1))
    out["n_decisive"] = out["a_wins"] + out["b_wins"]
    out["a_win_rate"] = out["a_wins"] / out["n_decisive"].where(out["n_decisive"] > 0)
    ci = [wilson_interval(k, n, level) for k, n in zip(out["a_wins"], out["n_decisive"])]
    out["ci_low"], out["ci_high"] = [c[0] for c in ci], [c[1] for c in ci]
    out["p_value"] = [binomial_p(k, n) for k, n in zip(out["a_wins"], out["n_decisive"])]
    out.columns.name = None
    return out.reset_index()


def bradley_terry(wins, pseudo=0.5, compared=None, tol=1e-10, max_iter=20_000):
    """Bradley-Terry strengths (..., M) summing to 1, from wins (..., M, M) with wins[i, j] = times
    method i beat method j; batched over leading axes. Hunter's (2004) MM updates. `pseudo` virtual
    wins each way on every compared pair (`compared`: (M, M) bool, default: pairs with any vote)
    keep strengths finite when a method never wins or never loses."""
    wins = np.asarray(wins, dtype=float)
    if compared is None:
        compared = (wins + np.swapaxes(wins, -1, -2)) > 0
    w = wins + pseudo * compared
    games = w + np.swapaxes(w, -1, -2)
    total = w.sum(axis=-1)
    p = np.full(total.shape, 1.0 / total.shape[-1])
    for _ in range(max_iter):
        new = total / (games / (p[..., :, None] + p[..., None, :])).sum(axis=-1)
        new /= new.sum(axis=-1, keepdims=True)
        converged = np.max(np.abs(np.log(new / p))) < tol
        p = new
        if converged:
            break
    return p


def bt_strengths(votes, n_boot=1000, seed=0, level=0.95):
    """One row per method, strongest first: strength (Bradley-Terry, summing to 1 over methods),
    its bootstrap percentile interval (ci_low, ci_high; participants resampled with replacement,
    numpy seed `seed`), and decisive wins and losses."""
    v = _oriented(votes)
    v = v[v["outcome"].isin(["a", "b"])]
    methods = sorted(set(v["method_a"]) | set(v["method_b"]))
    if len(methods) < 2:
        raise AnalysisError("Bradley-Terry needs decisive votes between at least two methods")
    index = {m: i for i, m in enumerate(methods)}
    people, person = np.unique(v["participant"].to_numpy(), return_inverse=True)
    winner = np.where(v["outcome"] == "a", v["method_a"], v["method_b"])
    loser = np.where(v["outcome"] == "a", v["method_b"], v["method_a"])
    per_person = np.zeros((len(people), len(methods), len(methods)))  # (P, M, M) wins
    np.add.at(per_person, (person, [index[m] for m in winner], [index[m] for m in loser]), 1)
    wins = per_person.sum(axis=0)
    compared = (wins + wins.T) > 0
    n_groups, _ = connected_components(compared, directed=False)
    if n_groups > 1:
        raise AnalysisError("some methods were never compared with the others, even indirectly: "
                            "their strengths cannot be put on one scale")
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(people), np.full(len(people), 1 / len(people)), size=n_boot)  # (B, P)
    boot = bradley_terry(np.tensordot(draws, per_person, axes=1), compared=compared)  # (B, M)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0)
    out = pd.DataFrame({"method": methods, "strength": bradley_terry(wins), "ci_low": low, "ci_high": high,
                        "wins": wins.sum(axis=1).astype(int), "losses": wins.sum(axis=0).astype(int)})
    return out.sort_values("strength", ascending=False, ignore_index=True)


def position_bias(votes, level=0.95):
    """P(left chosen) over decisive non-catch votes: n_decisive, n_left, p_left, its Wilson interval
    (ci_low, ci_high) and p_value (exact two-sided binomial test against 0.5)."""
    v = votes[~votes["is_catch"] & votes["choice"].isin(["left", "right"])]
    n, k = len(v), int((v["choice"] == "left").sum())
    low, high = wilson_interval(k, n, level)
    return {"n_decisive": n, "n_left": k, "p_left": k / n if n else float("nan"),
            "ci_low": low, "ci_high": high, "p_value": binomial_p(k, n)}


def agreement(votes):
    """Inter-rater agreement (see AGREEMENT_MEASURE): n_items, n_votes, n_rater_pairs,
    pairwise_agreement (share of rater pairs giving the same answer), chance_agreement
    (from the pooled answer shares) and fleiss_kappa; NaNs without an item rated twice."""
    counts = _outcome_counts(_oriented(votes), ["content", "style", "method_a", "method_b"])
    counts = counts[counts.sum(axis=1) >= 2]
    raters = counts.sum(axis=1)
    pairs = int((raters * (raters - 1)).sum())
    if pairs == 0:
        observed = expected = kappa = float("nan")
    else:
        observed = float((counts * (counts - 1)).to_numpy().sum() / pairs)
        shares = counts.sum(axis=0) / counts.to_numpy().sum()
        expected = float((shares**2).sum())
        kappa = (observed - expected) / (1 - expected) if expected < 1 else float("nan")
    return {"measure": AGREEMENT_MEASURE, "n_items": len(counts), "n_votes": int(counts.to_numpy().sum()),
            "n_rater_pairs": pairs, "pairwise_agreement": observed, "chance_agreement": expected,
            "fleiss_kappa": kappa}


@dataclass
class Results:
    """What `analyze` found. DataFrames are tidy; see the function that makes each."""

    n_participants: int
    n_votes: int
    participants: pd.DataFrame  # catch_summary
    excluded: list  # participant ids left out of everything below
    catch_failure_rate: float  # over all catch votes, excluded participants included
    strengths: pd.DataFrame  # bt_strengths
    pairs: pd.DataFrame  # pair_win_rates
    pairs_by_style: pd.DataFrame
    pairs_by_content: pd.DataFrame
    position: dict  # position_bias
    agreement: dict
    settings: dict  # max_catch_failures, n_boot, seed, level


def analyze(votes, max_catch_failures=0, n_boot=1000, seed=0, level=0.95):
    """Every statistic of the study. Participants with more than max_catch_failures failed catch
    trials are excluded first; catch votes never enter the method statistics."""
    if votes.empty:
        raise AnalysisError("the study has no votes yet")
    people = catch_summary(votes, max_catch_failures)
    excluded = people.loc[people["excluded"], "participant"].tolist()
    kept = votes[~votes["participant"].isin(excluded)]
    if kept["is_catch"].all():
        raise AnalysisError("no method votes are left after excluding participants who failed catch trials; "
                            "raise --max-catch-failures to keep them")
    catch = votes.loc[votes["is_catch"], "catch_passed"]
    return Results(
        n_participants=len(people), n_votes=len(votes), participants=people, excluded=excluded,
        catch_failure_rate=float(1 - catch.astype(bool).mean()) if len(catch) else float("nan"),
        strengths=bt_strengths(kept, n_boot, seed, level),
        pairs=pair_win_rates(kept, level=level),
        pairs_by_style=pair_win_rates(kept, by=["style"], level=level),
        pairs_by_content=pair_win_rates(kept, by=["content"], level=level),
        position=position_bias(kept, level),
        agreement=agreement(kept),
        settings={"max_catch_failures": max_catch_failures, "n_boot": n_boot, "seed": seed, "level": level},
    )
