"""Statistics of a blind 2AFC preference study, on the tables of `study.store.load_votes` and
`study.store.load_participants`.

Win rates use decisive votes (left/right); ties and both_bad are counted separately. A pair's two
methods are in alphabetical order, method_a then method_b: a_win_rate is P(method_a chosen).
Each participant gives many votes, which are not independent, so the tests work on participants:
a sign-flip test on each participant's net preference (exact up to EXACT_UP_TO participants, Monte
Carlo beyond), its inversion for the win-rate intervals, and a participant bootstrap with a
small-sample t correction for the Bradley-Terry strengths. A row with fewer than MIN_PARTICIPANTS
participants is not tested; Holm's procedure adjusts the p-values of a table's tested rows.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.sparse.csgraph import connected_components
from scipy.stats import norm, t

OUTCOMES = ("a", "b", "tie", "both_bad")  # method_a chosen, method_b chosen, tie, both bad
AGREEMENT_MEASURE = (
    "pairwise agreement and Fleiss' kappa over the four answers (method_a, method_b, tie, both_bad); "
    "items are trials showing the same stimulus pair (content, style, method pair) to 2+ raters, "
    "rater pairs pooled over items (Fleiss' kappa generalised to varying raters per item)")
# With 5 participants the exact two-sided sign-flip test cannot go below 2 / 2^5 = 0.0625: rows with
# fewer participants (with a decisive vote) get counts and rates but no p-value or interval.
MIN_PARTICIPANTS = 6
EXACT_UP_TO = 13  # participants: up to this many the sign-flip test enumerates all 2^N sign vectors (8192)
RANDOM_FLIPS = 10_000  # random sign vectors beyond (numpy seed `seed`)
FLIP_ROWS = 256  # rows tested at once: bounds the (sign vectors x rows) arrays to about 20 MB each


class AnalysisError(ValueError):
    """The votes cannot be analysed as asked; the message says why."""


def wilson_interval(k, n, level=0.95):
    """Wilson score interval (low, high) of the proportion k / n, treating the n votes as independent;
    k, n: scalars or arrays of the same shape; NaN where n == 0."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    z = norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return (centre - half)[()], (centre + half)[()]


def participant_draws(n_people, n_boot, rng):
    """(n_boot, n_people) counts: how often each participant appears in each bootstrap resample
    (n_people drawn with replacement)."""
    return rng.multinomial(n_people, np.full(n_people, 1 / n_people), size=n_boot)


def least_p(n_people):
    """The smallest p-value the sign-flip test can give with n_people participants (array-like):
    2 / 2^n when it enumerates every sign vector, 1 / (RANDOM_FLIPS + 1) by Monte Carlo."""
    n = np.asarray(n_people, dtype=float)
    return np.where(n <= EXACT_UP_TO, np.minimum(1.0, 2.0 / 2.0**n), 1 / (RANDOM_FLIPS + 1))[()]


def sign_vectors(n_people, seed):
    """(B, n_people) signs +-1: all B = 2^n_people vectors when n_people <= EXACT_UP_TO, else
    RANDOM_FLIPS random ones (numpy seed `seed`)."""
    if n_people <= EXACT_UP_TO:
        bits = (np.arange(2**n_people)[:, None] >> np.arange(n_people)) & 1
        return 1.0 - 2.0 * bits
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=(RANDOM_FLIPS, n_people))


class SignFlips:
    """The sign-flip distribution of T(theta) = sum_i (w_i - theta n_i) for g rows: w_i, n_i are
    participant i's wins and decisive votes in a row. Under "each participant's net preference is
    symmetric about 0 at theta" every flip of the participants' signs is as likely as the data."""

    def __init__(self, wins, totals, signs):
        """wins, totals: (g, P) counts; signs: (B, P) from sign_vectors (all of them, or random ones)."""
        self.exact = signs.shape[1] <= EXACT_UP_TO
        self.flipped_wins, self.flipped_totals = signs @ wins.T, signs @ totals.T  # (B, g)
        self.wins, self.totals = wins.sum(axis=1), totals.sum(axis=1)

    def p_value(self, theta):
        """Two-sided p-values (g,) at win rates theta (g,): the share of sign vectors with |T*| >= |T|
        (exact), or (1 + their number) / (B + 1) (Monte Carlo)."""
        observed = np.abs(self.wins - theta * self.totals) - 1e-9  # float slack: ties count as extreme
        extreme = (np.abs(self.flipped_wins - theta * self.flipped_totals) >= observed).sum(axis=0)
        n = len(self.flipped_wins)
        return extreme / n if self.exact else (1 + extreme) / (n + 1)

    def interval(self, level):
        """The win rates the test does not reject at 1 - level: (low, high), each (g,)."""
        low = self._lower_end(self.flipped_wins, self.wins, level)
        high = 1 - self._lower_end(self.flipped_totals - self.flipped_wins, self.totals - self.wins, level)
        return low, high

    def _lower_end(self, flipped_wins, wins, level):
        """The least theta that the test does not reject, from wins (the upper end: from losses, as 1 - it).
        Below the estimate W / N, sign vector b (T* = a - theta c) counts as extreme, |a - theta c| >=
        W - theta N, from x_b = min((W - a) / (N - c), (W + a) / (N + c)) on (from 0 when |a| >= W): both
        sides grow with theta from below 0. So p(theta) counts the x_b <= theta, and the end is the k-th
        smallest x_b, k the least count whose p-value exceeds 1 - level."""
        alpha, n_flips = 1 - level, len(flipped_wins)
        k = math.floor(alpha * n_flips) + 1 if self.exact else math.floor(alpha * (n_flips + 1))
        if k <= 0:
            return np.zeros(len(wins))
        c, n = self.flipped_totals, self.totals
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.minimum((wins - flipped_wins) / (n - c), (wins + flipped_wins) / (n + c))
        x = np.where(np.abs(flipped_wins) >= wins - 1e-9, 0.0, x)
        return np.partition(x, k - 1, axis=0)[k - 1]


def sign_flip_sets(wins, totals, seed):
    """Yield (row indices, SignFlips) over the rows of (G, P) counts that have at least MIN_PARTICIPANTS
    participants with decisive votes, FLIP_ROWS at a time; the enumerated and the Monte Carlo rows apart."""
    wins, totals = np.atleast_2d(np.asarray(wins, dtype=float)), np.atleast_2d(np.asarray(totals, dtype=float))
    n_people = (totals > 0).sum(axis=1)
    order = np.argsort(totals == 0, axis=1, kind="stable")  # each row's participants first
    wins, totals = np.take_along_axis(wins, order, axis=1), np.take_along_axis(totals, order, axis=1)
    tested = n_people >= MIN_PARTICIPANTS
    for exact in (True, False):
        rows = np.flatnonzero(tested & ((n_people <= EXACT_UP_TO) == exact))
        if len(rows):
            width = int(n_people[rows].max())
            signs = sign_vectors(width, seed)
            for chunk in np.array_split(rows, -(-len(rows) // FLIP_ROWS)):
                yield chunk, SignFlips(wins[chunk, :width], totals[chunk, :width], signs)


def sign_flip_p(wins, totals, seed=0, null=0.5):
    """p-values (G,) of the two-sided sign-flip test of "win rate == null" for G rows of (G, P) wins and
    decisive totals per participant; NaN for a row with fewer than MIN_PARTICIPANTS participants."""
    p = np.full(len(np.atleast_2d(wins)), np.nan)
    for rows, flips in sign_flip_sets(wins, totals, seed):
        p[rows] = flips.p_value(np.full(len(rows), null))
    return p


def participant_test(wins, totals, seed=0, level=0.95, null=0.5):
    """Participant-level inference on the ratios sum(wins) / sum(totals) of G rows.

    wins, totals: (G, P) counts per row (e.g. method pair) and participant (zeros where a participant
    has no decisive vote in the row). Returns a dict of (G,) arrays: estimate, n_people (participants
    with a decisive vote), min_p (least_p of n_people), p_value (sign_flip_p against null), and the
    interval (ci_low, ci_high) at `level` from inverting that test. estimate is NaN without decisive
    votes; p_value and the interval are NaN for rows with fewer than MIN_PARTICIPANTS participants."""
    wins, totals = np.atleast_2d(np.asarray(wins, dtype=float)), np.atleast_2d(np.asarray(totals, dtype=float))
    n_people = (totals > 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = wins.sum(axis=1) / totals.sum(axis=1)
    out = {"estimate": estimate, "n_people": n_people, "min_p": np.where(n_people > 0, least_p(n_people), np.nan)}
    for name in ("p_value", "ci_low", "ci_high"):
        out[name] = np.full(len(wins), np.nan)
    for rows, flips in sign_flip_sets(wins, totals, seed):
        out["p_value"][rows] = flips.p_value(np.full(len(rows), null))
        out["ci_low"][rows], out["ci_high"][rows] = flips.interval(level)
    return out


def holm(p_values):
    """Holm's step-down adjustment of a family of p-values (array-like; NaNs are left out of the
    family and stay NaN): the k-th smallest of m becomes max over j <= k of (m - j + 1) p_(j), capped at 1."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    q = p[tested]
    order = np.argsort(q, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((len(q) - np.arange(len(q))) * q[order]))
    ranked = np.empty_like(q)
    ranked[order] = adjusted
    out[tested] = ranked
    return out


@dataclass(frozen=True)
class Rules:
    """Which participants the analysis leaves out. include: participant ids to restrict the analysis
    to (None: everyone), described by include_source (e.g. "the Prolific export FILE")."""

    max_catch_failures: int = 0  # exclude participants failing more catch trials than this
    keep_incomplete: bool = False  # keep participants who did not vote on every trial
    fast_ms: float = 1000.0  # a median response time (response_ms) under this flags a participant
    exclude_fast: bool = False  # exclude flagged participants instead of only flagging them
    include: frozenset = None
    include_source: str = ""
    max_attention_failures: int = 0  # exclude participants failing more attention checks than this

    def describe(self):
        """The rules as sentences, with their values."""
        out = [f"Participants failing more than {self.max_catch_failures} catch trial(s) or more than "
               f"{self.max_attention_failures} attention check(s) are excluded.",
               "Incomplete participants (fewer votes than trials) are "
               + ("kept (--keep-incomplete)." if self.keep_incomplete
                  else "excluded (default; --keep-incomplete keeps them)."),
               f"A median response time (the lower of the browser's and the server's time per vote) under "
               f"{self.fast_ms:g} ms "
               + ("excludes a participant (--exclude-fast)." if self.exclude_fast
                  else "flags a participant, who is kept (default; --exclude-fast excludes them)."),
               "Participants without any vote are excluded."]
        if self.include is not None:
            out.insert(0, f"Only participants in {self.include_source or 'the list'} are analysed.")
        return out


def response_ms(votes):
    """Each vote's response time in ms (float, NaN if unknown): the lower of the browser's claim and the
    server's own figure (which includes the download), so a client claiming slow answers is read at the
    server's time; the browser's alone only for votes stored before the server measured (schema < 4)."""
    return np.fmin(votes["response_time_ms"].astype(float), votes["server_time_ms"].astype(float))


def _oriented(votes):
    """Method votes (kind "method") with method_a <= method_b (alphabetical) and outcome in OUTCOMES."""
    v = votes[votes["kind"] == "method"].copy()
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


def participant_table(votes, participants, rules=Rules()):
    """One row per enrolled participant: participant, n_trials (assigned, practice ones not), n_votes,
    completed, n_catch, n_catch_failed, n_attention, n_attention_failed, median_rt_ms (response_ms over
    their counted votes; NaN without times), share_left (of their decisive votes on method trials), fast
    (median_rt_ms < rules.fast_ms), excluded, and reason (every rule that excludes them, '; '-joined; ''
    when kept). Practice votes are left out."""
    unknown = set(votes["participant"]) - set(participants["participant"])
    if unknown:
        raise AnalysisError(f"votes of participants missing from the participant table: {sorted(unknown)[:5]}")
    votes = votes[votes["kind"] != "practice"]
    by = votes["participant"]
    failed = votes["is_catch"] & ~votes["catch_passed"].fillna(True).astype(bool)
    attention = votes["kind"] == "attention"
    method = votes[(votes["kind"] == "method") & votes["choice"].isin(["left", "right"])]
    per = pd.DataFrame({
        "n_catch": votes["is_catch"].groupby(by).sum(),
        "n_catch_failed": failed.groupby(by).sum(),
        "n_attention": attention.groupby(by).sum(),
        "n_attention_failed": (attention & ~votes["attention_passed"].fillna(True).astype(bool)).groupby(by).sum(),
        "median_rt_ms": response_ms(votes).groupby(by).median(),
        "share_left": (method["choice"] == "left").groupby(method["participant"]).mean(),
    })
    out = participants[["participant", "n_trials", "n_votes", "completed"]].merge(
        per, left_on="participant", right_index=True, how="left")
    counts = ["n_catch", "n_catch_failed", "n_attention", "n_attention_failed"]
    out[counts] = out[counts].fillna(0).astype(int)
    out["fast"] = out["median_rt_ms"] < rules.fast_ms
    reasons = []
    for row in out.itertuples():
        why = []
        if rules.include is not None and row.participant not in rules.include:
            why.append("not in " + (rules.include_source or "the list"))
        if row.n_votes == 0:
            why.append("no vote")
        elif not row.completed and not rules.keep_incomplete:
            why.append(f"incomplete ({row.n_votes} of {row.n_trials} trials)")
        if row.n_catch_failed > rules.max_catch_failures:
            why.append(f"failed {row.n_catch_failed} of {row.n_catch} catch trials")
        if row.n_attention_failed > rules.max_attention_failures:
            why.append(f"failed {row.n_attention_failed} of {row.n_attention} attention checks")
        if row.fast and rules.exclude_fast:
            why.append(f"median response time {row.median_rt_ms:.0f} ms < {rules.fast_ms:g} ms")
        reasons.append("; ".join(why))
    out["excluded"] = [bool(r) for r in reasons]
    out["reason"] = reasons
    return out.reset_index(drop=True)


def participant_flow(people, votes, rules=Rules(), arrivals=None):
    """CONSORT-style flow of a participant_table: (DataFrame of stage, excluded, remaining, note; a
    sentence). Rules apply in the table's order; a participant counts at the first rule excluding them.
    votes: the load_votes table, for the number of method votes analysed. arrivals: load_arrivals'
    counts, which start the flow at "opened the link" (None: it starts at enrolment). Enrolments that
    the recorded openings do not account for (made before openings were recorded, or not through the
    study page) are counted apart, in the enrolment row's note."""
    remaining = pd.Series(True, index=people.index)
    rows, arrived = _arrival_flow(arrivals, len(people))

    def step(stage, hit, applies=True, kept_note=""):
        """Exclude the remaining participants that `hit` marks (applies) or only count them (kept_note)."""
        n = int((remaining & hit).sum())
        if applies:
            remaining[hit] = False
        rows.append((stage, n if applies else 0, int(remaining.sum()), "" if applies else f"{n} {kept_note}"))
        return n

    listed = ""
    if rules.include is not None:
        source = rules.include_source or "the list"
        listed = f"{step('not in ' + source, ~people['participant'].isin(rules.include))} not in {source}, "
    no_vote = step("no vote", people["n_votes"] == 0)
    incomplete = step("incomplete (fewer votes than trials)", ~people["completed"], not rules.keep_incomplete,
                      "kept (--keep-incomplete)")
    catch = step(f"failed more than {rules.max_catch_failures} catch trial(s)",
                 people["n_catch_failed"] > rules.max_catch_failures)
    attention = step(f"failed more than {rules.max_attention_failures} attention check(s)",
                     people["n_attention_failed"] > rules.max_attention_failures)
    fast = step(f"median response time under {rules.fast_ms:g} ms", people["fast"].astype(bool), rules.exclude_fast,
                "flagged, kept")
    rows.append(("analysed", "", int(remaining.sum()), ""))
    flow = pd.DataFrame(rows, columns=["stage", "excluded", "remaining", "note"])
    n_trials = people["n_trials"].unique()
    trials = f"all {n_trials[0]} trials" if len(n_trials) == 1 else "all their trials"
    analysed = set(people.loc[remaining, "participant"])
    n_method = int((votes["participant"].isin(analysed) & (votes["kind"] == "method")).sum())
    sentence = (
        f"{arrived}Of {len(people)} enrolled participants, {int((people['n_votes'] > 0).sum())} voted and "
        f"{int(people['completed'].sum())} completed {trials}. Excluded: {listed}{no_vote} with no vote, "
        + (f"none for being incomplete ({incomplete} kept)" if rules.keep_incomplete else f"{incomplete} incomplete")
        + f", {catch} who failed more than {rules.max_catch_failures} catch trial(s), {attention} who failed more "
        f"than {rules.max_attention_failures} attention check(s), "
        + (f"{fast} with a median response time under {rules.fast_ms:g} ms" if rules.exclude_fast
           else f"none for speed ({fast} with a median response time under {rules.fast_ms:g} ms flagged and kept)")
        + f". Analysed: {len(analysed)} participants and {n_method} method votes (of {len(votes)} votes stored).")
    return flow, sentence


def _arrival_flow(arrivals, enrolled):
    """The flow's rows up to enrolment, and the sentence that tells them ("" without arrivals)."""
    if arrivals is None:
        return [("enrolled (consented, trials assigned)", "", enrolled, "")], ""
    screened = arrivals.opened - arrivals.screened_out
    undecided = screened - arrivals.declined
    from_openings = min(enrolled, max(undecided, 0))
    unrecorded = enrolled - from_openings
    since = f"openings are recorded since {arrivals.since:%Y-%m-%d %H:%M} UTC"
    note = f"{from_openings} from the openings above, {unrecorded} with no recorded opening ({since})" if unrecorded else ""
    rows = [("opened the link", "", arrivals.opened, "once per browser"),
            ("screened out (screen too small)", arrivals.screened_out, screened, "sent back before consent"),
            ("declined consent", arrivals.declined, undecided, ""),
            ("neither declined nor enrolled", undecided - from_openings, from_openings,
             "left the consent page, or opened the link again in another browser"),
            ("enrolled (consented, trials assigned)", "", enrolled, note)]
    sentence = (f"The study link was opened in {arrivals.opened} browsers: {arrivals.screened_out} were screened out "
                f"(screen too small), {arrivals.declined} declined consent, "
                f"{undecided - from_openings} neither declined nor enrolled, and {from_openings} enrolled"
                + (f" ({unrecorded} more enrolled with no recorded opening: {since})" if unrecorded else "") + ". ")
    return rows, sentence


def _per_participant(v, keys, column):
    """(groups, participants) sums of the 0/1 column `column` of v, groups as in _outcome_counts."""
    per = v.groupby([*keys, "participant"])[column].sum()
    return per.unstack("participant", fill_value=0)


def pair_win_rates(votes, by=(), seed=0, level=0.95):
    """One row per method pair (per value of the `by` columns, e.g. ["style"]): n_participants, n_votes,
    a_wins, b_wins, ties, both_bad, n_decisive, a_win_rate, and participant_test's n_people (the test's N:
    participants with a decisive vote), min_p, interval (ci_low, ci_high) and p_value against 0.5;
    p_holm (Holm over the tested rows), and the per-vote Wilson interval that treats votes as independent
    (wilson_low_per_vote, wilson_high_per_vote; too narrow when participants differ)."""
    v = _oriented(votes)
    keys = [*by, "method_a", "method_b"]
    counts = _outcome_counts(v, keys)
    out = counts.rename(columns={"a": "a_wins", "b": "b_wins", "tie": "ties"})
    out.insert(0, "n_votes", counts.sum(axis=1))
    out.insert(0, "n_participants", v.groupby(keys)["participant"].nunique())
    out["n_decisive"] = out["a_wins"] + out["b_wins"]
    v["win"] = (v["outcome"] == "a").astype(int)
    v["decisive"] = v["outcome"].isin(["a", "b"]).astype(int)
    wins = _per_participant(v, keys, "win").reindex(counts.index)
    totals = _per_participant(v, keys, "decisive").reindex(counts.index)
    test = participant_test(wins.to_numpy(), totals.to_numpy(), seed, level)
    out["a_win_rate"] = test["estimate"]
    for name in ("n_people", "min_p", "ci_low", "ci_high", "p_value"):
        out[name] = test[name]
    out["p_holm"] = holm(test["p_value"])
    out["wilson_low_per_vote"], out["wilson_high_per_vote"] = wilson_interval(out["a_wins"], out["n_decisive"], level)
    out.columns.name = None
    return out.reset_index()


def preference_spread(votes):
    """How much participants differ: per method pair, the standard deviation across participants of
    their own P(method_a chosen) on decisive votes, by the method of moments (binomial noise removed;
    0 when votes vary no more than chance). Returns (DataFrame of method_a, method_b, n_participants,
    a_win_rate, spread; the pooled spread, a participant-weighted root mean square; NaN if unknown)."""
    v = _oriented(votes)
    v = v[v["outcome"].isin(["a", "b"])]
    rows = []
    for (a, b), g in v.groupby(["method_a", "method_b"]):
        k = (g["outcome"] == "a").groupby(g["participant"]).sum().to_numpy()
        n = g.groupby("participant").size().to_numpy()
        rate, h = k.sum() / n.sum(), np.mean(1 / n)
        spread = np.nan
        if len(n) >= 2 and h < 1:
            s2 = np.sum((k / n - rate) ** 2) / (len(n) - 1)
            spread = np.sqrt(np.clip((s2 - rate * (1 - rate) * h) / (1 - h), 0, None))
        rows.append((a, b, len(n), rate, spread))
    table = pd.DataFrame(rows, columns=["method_a", "method_b", "n_participants", "a_win_rate", "spread"])
    return table, pooled_spread(table)


def pooled_spread(table):
    """The participant-weighted root mean square of a preference_spread table's known spreads (NaN if none)."""
    known = table[table["spread"].notna()]
    if known.empty:
        return np.nan
    return float(np.sqrt(np.average(known["spread"] ** 2, weights=known["n_participants"])))


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


def bt_intervals(per_person, n_boot=2000, seed=0, level=0.95):
    """Bradley-Terry strengths with participant-clustered intervals, batched over leading axes.

    per_person: (..., P, M, M) wins of each of P participants (bradley_terry's layout). Returns
    (strength, low, high), each (..., M): strength from the summed wins; the interval strength +- t(P - 1)
    x sd x sqrt(P / (P - 1)), sd over n_boot resamples of participants (numpy seed `seed`; a t quantile
    and the inflation keep coverage at few participants, where percentile intervals are too narrow),
    clipped to [0, 1]; NaN with fewer than MIN_PARTICIPANTS participants, or n_boot 0 (the strengths only)."""
    per_person = np.asarray(per_person, dtype=float)
    n_people = per_person.shape[-3]
    wins = per_person.sum(axis=-3)
    compared = (wins + np.swapaxes(wins, -1, -2)) > 0
    strength = bradley_terry(wins, compared=compared)
    if n_people < MIN_PARTICIPANTS or n_boot == 0:
        nothing = np.full(strength.shape, np.nan)
        return strength, nothing, nothing
    draws = participant_draws(n_people, n_boot, np.random.default_rng(seed)).astype(float)  # (B, P)
    boot = bradley_terry(np.einsum("bp,...pij->...bij", draws, per_person), compared=compared[..., None, :, :])
    half = t.ppf((1 + level) / 2, n_people - 1) * boot.std(axis=-2, ddof=1) * np.sqrt(n_people / (n_people - 1))
    return strength, np.clip(strength - half, 0, 1), np.clip(strength + half, 0, 1)


def check_linked(wins):
    """AnalysisError unless the (M, M) wins link every method to the others (directly or through others)."""
    n_groups, _ = connected_components((wins + wins.T) > 0, directed=False)
    if n_groups > 1:
        raise AnalysisError("some methods were never compared with the others, even indirectly: "
                            "their strengths cannot be put on one scale")


def bt_strengths(votes, n_boot=2000, seed=0, level=0.95):
    """One row per method, strongest first: strength (Bradley-Terry, summing to 1 over methods), its
    participant-clustered interval (ci_low, ci_high; see bt_intervals), and decisive wins and losses."""
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
    check_linked(wins)
    strength, low, high = bt_intervals(per_person, n_boot, seed, level)
    out = pd.DataFrame({"method": methods, "strength": strength, "ci_low": low, "ci_high": high,
                        "wins": wins.sum(axis=1).astype(int), "losses": wins.sum(axis=0).astype(int)})
    return out.sort_values("strength", ascending=False, ignore_index=True)


def position_bias(votes, seed=0, level=0.95):
    """P(left chosen) over decisive non-catch votes: n_participants, n_decisive, n_left, p_left, and
    participant_test's min_p, interval (ci_low, ci_high) and p_value against 0.5 (NaN with fewer than
    MIN_PARTICIPANTS participants), and the per-vote Wilson interval (wilson_low_per_vote, wilson_high_per_vote)."""
    v = votes[(votes["kind"] == "method") & votes["choice"].isin(["left", "right"])]
    left = (v["choice"] == "left").groupby(v["participant"]).sum()
    total = v.groupby("participant").size()
    test = participant_test(left.to_numpy()[None], total.to_numpy()[None], seed, level)
    n, k = int(total.sum()), int(left.sum())
    low, high = wilson_interval(k, n, level)
    return {"n_participants": len(total), "n_decisive": n, "n_left": k, "p_left": float(test["estimate"][0]),
            "min_p": float(test["min_p"][0]), "ci_low": float(test["ci_low"][0]), "ci_high": float(test["ci_high"][0]),
            "p_value": float(test["p_value"][0]),
            "wilson_low_per_vote": float(low), "wilson_high_per_vote": float(high)}


def response_times(votes, people, fast_ms):
    """Response times (ms, response_ms; practice votes left out) in four rows: votes and participant
    medians, of all participants and of the analysed ones (people: a participant_table). Columns: n, p5,
    p25, median, p75, p95, and share_under_threshold (share below fast_ms)."""
    kept = set(people.loc[~people["excluded"], "participant"])
    votes = votes[votes["kind"] != "practice"]
    rt = response_ms(votes)
    medians = people.set_index("participant")["median_rt_ms"]
    series = {"votes, all participants": rt, "votes, analysed participants": rt[votes["participant"].isin(kept)],
              "participant medians, all": medians, "participant medians, analysed": medians[medians.index.isin(kept)]}
    rows = []
    for name, x in series.items():
        x = x.dropna().to_numpy()
        q = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95]) if len(x) else np.full(5, np.nan)
        rows.append((name, len(x), *q, float(np.mean(x < fast_ms)) if len(x) else np.nan))
    return pd.DataFrame(rows, columns=["times", "n", "p5", "p25", "median", "p75", "p95", "share_under_threshold"])


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


def per_question(votes, table):
    """table(votes) -> DataFrame, run on the votes of each question that has method votes (sorted by key),
    concatenated with a leading question column. Returns (that DataFrame, {question: why it has no rows}
    for the questions whose table raised AnalysisError)."""
    parts, missing = [], {}
    for question in sorted(votes.loc[votes["kind"] == "method", "question"].unique()):
        try:
            part = table(votes[votes["question"] == question])
        except AnalysisError as exc:
            missing[question] = str(exc)
            continue
        parts.append(part.assign(question=question)[["question", *part.columns]])
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["question"])), missing


def viewport_table(screens):
    """The screens of a study (load_screens) summarised per outcome and device: n, the viewport width
    and height in CSS px (min, median, max of the width; median height), the median device pixel ratio
    and the browsers seen (most frequent first, with counts)."""
    measured = screens.dropna(subset=["viewport_width"])
    rows = []
    for (outcome, device), g in measured.groupby(["outcome", "device"], dropna=False):
        browsers = g["browser"].value_counts()
        rows.append((outcome, device, len(g), int(g["viewport_width"].min()), float(g["viewport_width"].median()),
                     int(g["viewport_width"].max()), float(g["viewport_height"].median()),
                     float(g["pixel_ratio"].median()), ", ".join(f"{b} ({n})" for b, n in browsers.items())))
    unmeasured = screens["viewport_width"].isna().groupby(screens["outcome"]).sum()
    for outcome, n in unmeasured[unmeasured > 0].items():
        rows.append((outcome, "not measured", int(n), None, None, None, None, None, ""))
    return pd.DataFrame(rows, columns=["outcome", "device", "n", "width_min", "width_median", "width_max",
                                       "height_median", "pixel_ratio_median", "browsers"])


@dataclass
class Results:
    """What `analyze` found. DataFrames are tidy; see the function that makes each."""

    n_participants: int  # enrolled
    n_analysed: int  # participants left after the exclusions
    n_votes: int  # every stored vote, practice, catch trials and excluded participants included
    n_method_votes: int  # method votes of the analysed participants (no practice, catch or attention check)
    questions: list  # the keys of the questions with method votes, as every per-question table orders them
    participants: pd.DataFrame  # participant_table
    excluded: list  # participant ids left out of everything below
    flow: pd.DataFrame  # participant_flow
    flow_sentence: str
    catch_failure_rate: float  # over all catch votes, excluded participants included
    n_attention_votes: int  # attention checks answered, excluded participants included
    attention_failure_rate: float  # over them
    n_practice_votes: int  # stored, never analysed
    # per question (a leading question column, per_question): Holm and the bootstrap run within each question
    strengths: pd.DataFrame  # bt_strengths
    strengths_missing: dict  # question -> why it has no strengths (bt_strengths' AnalysisError)
    pairs: pd.DataFrame  # pair_win_rates
    pairs_by_style: pd.DataFrame
    pairs_by_content: pd.DataFrame
    spread: pd.DataFrame  # preference_spread, per pair
    agreement: pd.DataFrame  # agreement, one row per question
    position: dict  # position_bias, over every question (the sides, not the question, bias a click)
    response_times: pd.DataFrame
    pooled_spread: float  # over every question's pairs
    tie_rate: float  # share of the analysed method votes that are tie or both_bad
    viewports: pd.DataFrame  # viewport_table (None without screens)
    feedback: pd.DataFrame  # participant, feedback: the free-text answers given
    rules: Rules
    settings: dict  # the rules' values, n_boot (Bradley-Terry), seed, level


def analyze(votes, participants, rules=Rules(), n_boot=2000, seed=0, level=0.95, arrivals=None, screens=None):
    """Every statistic of the study. votes: load_votes; participants: load_participants; arrivals:
    load_arrivals (see participant_flow); screens: load_screens (the viewport table). The rules decide
    who is excluded first; practice, catch and attention-check votes never enter the method statistics,
    which are given per question. n_boot: bootstrap resamples for the Bradley-Terry intervals; seed:
    theirs and the Monte Carlo sign flips'."""
    if votes.empty:
        raise AnalysisError("the study has no votes yet")
    people = participant_table(votes, participants, rules)
    excluded = people.loc[people["excluded"], "participant"].tolist()
    kept = votes[~votes["participant"].isin(excluded)]
    method = kept[kept["kind"] == "method"]
    if method.empty:
        raise AnalysisError("no method votes are left after the exclusions; --keep-incomplete keeps "
                            "incomplete participants, --max-catch-failures and --max-attention-failures keep "
                            "those failing catch trials and attention checks")
    flow, sentence = participant_flow(people, votes, rules, arrivals)
    catch = votes.loc[votes["is_catch"], "catch_passed"]
    attention = votes.loc[votes["kind"] == "attention", "attention_passed"]
    test = {"seed": seed, "level": level}
    spread, _ = per_question(kept, lambda v: preference_spread(v)[0])
    strengths, strengths_missing = per_question(kept, lambda v: bt_strengths(v, n_boot, **test))
    if strengths.empty:  # no question has strengths: the study cannot be analysed as it stands
        raise AnalysisError(next(iter(strengths_missing.values())))
    feedback = participants.dropna(subset=["feedback"])[["participant", "feedback"]] if "feedback" in participants \
        else pd.DataFrame(columns=["participant", "feedback"])
    return Results(
        n_participants=len(people), n_analysed=len(people) - len(excluded), n_votes=len(votes),
        n_method_votes=len(method), questions=sorted(method["question"].unique()), participants=people,
        excluded=excluded, flow=flow, flow_sentence=sentence,
        catch_failure_rate=float(1 - catch.astype(bool).mean()),  # NaN without catch votes
        n_attention_votes=len(attention),
        attention_failure_rate=float(1 - attention.astype(bool).mean()),
        n_practice_votes=int((votes["kind"] == "practice").sum()),
        strengths=strengths, strengths_missing=strengths_missing,
        pairs=per_question(kept, lambda v: pair_win_rates(v, **test))[0],
        pairs_by_style=per_question(kept, lambda v: pair_win_rates(v, by=["style"], **test))[0],
        pairs_by_content=per_question(kept, lambda v: pair_win_rates(v, by=["content"], **test))[0],
        spread=spread,
        agreement=per_question(kept, lambda v: pd.DataFrame([agreement(v)]))[0],
        position=position_bias(kept, **test),
        response_times=response_times(votes, people, rules.fast_ms),
        pooled_spread=pooled_spread(spread),
        tie_rate=float((~method["choice"].isin(["left", "right"])).mean()),
        viewports=None if screens is None else viewport_table(screens),
        feedback=feedback.reset_index(drop=True), rules=rules,
        settings={**{k: v for k, v in asdict(rules).items() if k != "include"}, "n_boot": n_boot, **test},
    )


def battle_votes(battles):
    """The Battle tab's votes (`Store.battles()`) as the vote table the functions above take: the visitor
    is the participant, and no vote is a catch trial."""
    v = battles.rename(columns={"voter": "participant"})[["participant", "left_method", "right_method", "choice"]].copy()
    v["winner"] = np.where(v["choice"] == "left", v["left_method"],
                           np.where(v["choice"] == "right", v["right_method"], None))
    v["kind"] = "method"
    return v


def vote_tally(battles):
    """The Battle tab's votes counted per left_method, right_method and choice (a Series): what battle_counts
    and tally_strengths need; the tallies of two sets of votes add up (`a.add(b, fill_value=0)`)."""
    return battles.groupby(["left_method", "right_method", "choice"]).size()


def _decided(tally):
    """(winner, loser, number of votes) arrays of the decisive rows of a vote_tally."""
    t = tally.rename("n").reset_index()
    t = t[t["choice"].isin(["left", "right"])]
    left = (t["choice"] == "left").to_numpy()
    return (np.where(left, t["left_method"], t["right_method"]), np.where(left, t["right_method"], t["left_method"]),
            t["n"].to_numpy())


def battle_counts(tally):
    """From a vote_tally: one row per method, most votes first: wins and losses (decisive votes) and votes
    (ties and both_bad included)."""
    t = tally.rename("n").reset_index()
    winner, loser, n = _decided(tally)
    played = pd.concat([t.groupby("left_method")["n"].sum(), t.groupby("right_method")["n"].sum()])
    counts = pd.DataFrame({"votes": played.groupby(level=0).sum(), "wins": pd.Series(n).groupby(winner).sum(),
                           "losses": pd.Series(n).groupby(loser).sum()})
    counts = counts.fillna(0).astype(int).rename_axis("method").reset_index()
    return counts.sort_values(["votes", "method"], ascending=[False, True], ignore_index=True)


def tally_strengths(tally):
    """From a vote_tally: one row per method with a decisive vote, strongest first: its Bradley-Terry
    strength (bt_strengths' point estimate, without an interval). AnalysisError as bt_strengths."""
    winner, loser, n = _decided(tally)
    methods = sorted(set(winner) | set(loser))
    if len(methods) < 2:
        raise AnalysisError("Bradley-Terry needs decisive votes between at least two methods")
    index = {m: i for i, m in enumerate(methods)}
    wins = np.zeros((len(methods), len(methods)))
    np.add.at(wins, ([index[m] for m in winner], [index[m] for m in loser]), n)
    check_linked(wins)
    out = pd.DataFrame({"method": methods, "strength": bradley_terry(wins)})
    return out.sort_values("strength", ascending=False, ignore_index=True)


def battle_strengths(battles, n_boot):
    """From the Battle tab's votes: bt_strengths (n_boot resamples of the visitors, seed 0; 0: no intervals)
    with each method's vote count (votes, ties and both_bad included). Visitors are the participants (intervals
    NaN with fewer than MIN_PARTICIPANTS of them). AnalysisError when no two methods have a decisive vote
    between them."""
    strengths = bt_strengths(battle_votes(battles), n_boot)
    strengths["votes"] = strengths["method"].map(battle_counts(vote_tally(battles)).set_index("method")["votes"])
    return strengths


def interval_ranks(low, high):
    """The rank of each of N intervals (arrays (N,)): 1 + the number of intervals lying entirely above it
    (low above its high); overlapping intervals share ranks, as in Chatbot Arena."""
    low, high = np.asarray(low), np.asarray(high)
    return 1 + (low[None, :] > high[:, None]).sum(axis=1)


def battle_pairs(battles):
    """From the Battle tab's votes: one row per method pair, pair_win_rates' counts and intervals (seed 0). Visitors
    are the participants (intervals NaN with fewer than MIN_PARTICIPANTS of them)."""
    columns = ["method_a", "method_b", "n_participants", "n_votes", "a_wins", "b_wins", "ties", "both_bad",
               "a_win_rate", "n_people", "ci_low", "ci_high"]
    return pair_win_rates(battle_votes(battles))[columns]
