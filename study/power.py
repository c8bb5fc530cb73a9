"""Sample size and minimum detectable effect of a 2AFC study, by simulating the study's design and
running the analysis' own test (participant-level sign-flip test, Holm over the method pairs):

    python -m study.power --effect 0.6 [--trials 20] [--catch-rate 0.1] [--attention-rate 0.1] [--questions 1] [--methods 2]
                          [--spread 0.15 | --db URL_OR_PATH --study PILOT] [--tie-rate 0.05]
                          [--power 0.8] [--alpha 0.05] [--sims 1000] [--seed 0]

A simulated participant answers their share of the method trials on one pair (the design spreads
method trials evenly over the pairs), each a tie or both_bad with probability tie_rate, else a
choice of method_a with their own probability p ~ Beta(mean = effect, sd = spread). With K pairs,
Holm's first step tests at alpha / K: the power is exact for one real difference among K - 1 null
pairs and a lower bound otherwise. Each question of a study is analysed apart, on its share of the
method trials: the figures are per question. From a pilot (--db, --study) the trials, catch and
attention rates, questions, methods,
spread and tie rate are the study's, from the participants the analysis keeps (default exclusion
rules); flags given explicitly win. With the defaults this is the number study.prepare prints and
study.analyze's pilot banner compares with (recommended_participants).
"""
import argparse
import math
import sys
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import norm

from .analysis import MIN_PARTICIPANTS, least_p, participant_table, preference_spread, sign_flip_p
from .questions import DEFAULT as DEFAULT_QUESTIONS
from .store import CATCH, Store, StudyError, default_url, load_participants, load_votes

POWER, ALPHA = 0.8, 0.05
EFFECT = 0.6  # the win rate (vs 0.5) a study is sized for unless told otherwise
N_SIMS = 1000  # simulated studies per grid point
SPREAD, TIE_RATE = 0.15, 0.05  # assumed when there is no pilot


@dataclass(frozen=True)
class Design:
    """What one participant does, for one question. n_trials: per participant, catch and attention
    trials included; n_methods: the methods compared (every pair of them is a pair of the design);
    spread: sd across participants of their P(method_a chosen); tie_rate: share of method trials
    answered tie or both_bad; attention_rate: the fraction of attention checks; n_questions: the study's
    questions, which share the method trials (each question is analysed apart)."""

    n_trials: int = 20
    catch_rate: float = 0.1
    n_methods: int = 2
    spread: float = SPREAD
    tie_rate: float = TIE_RATE
    attention_rate: float = 0.1
    n_questions: int = 1

    @classmethod
    def of_study(cls, settings, n_methods, **measured):
        """The Design of a study's settings (Store.study), with spread and tie_rate when `measured`."""
        return cls(settings["n_trials"], settings["catch_rate"], n_methods, attention_rate=settings["attention_rate"],
                   n_questions=len(settings["questions"] or DEFAULT_QUESTIONS), **measured)

    @property
    def n_pairs(self):
        return self.n_methods * (self.n_methods - 1) // 2

    @property
    def method_trials(self):
        """Method trials per participant on one question (the store makes round(n_trials * catch_rate) catch
        trials and round(n_trials * attention_rate) attention checks, and spreads the questions evenly)."""
        others = round(self.n_trials * self.catch_rate) + round(self.n_trials * self.attention_rate)
        return (self.n_trials - others) / self.n_questions

    @property
    def per_pair(self):
        """Mean trials per participant on one pair."""
        return self.method_trials / self.n_pairs

    def describe(self):
        questions = f", {self.method_trials:.3g} on each of {self.n_questions} questions" if self.n_questions > 1 else ""
        return (f"{self.n_trials} trials per participant ({round(self.n_trials * self.catch_rate)} catch"
                + (f", {round(self.n_trials * self.attention_rate)} attention checks" if self.attention_rate else "")
                + f"){questions}, "
                f"{self.per_pair:.3g} per method pair over {self.n_pairs} pair(s) of {self.n_methods} methods, "
                f"{self.tie_rate:.0%} ties or both_bad, between-participant sd {self.spread:.3g} of the "
                "preference")


def simulate_counts(design, effect, n_participants, n_sims, rng):
    """Decisive votes on one pair in n_sims simulated studies: (wins, totals), each
    (n_sims, n_participants) counts of method_a chosen and of decisive votes."""
    base, extra = divmod(design.method_trials, design.n_pairs)
    shape = (n_sims, n_participants)
    trials = (base + (rng.random(shape) < extra / design.n_pairs)).astype(int)
    totals = rng.binomial(trials, 1 - design.tie_rate)
    if design.spread > 0:
        if design.spread ** 2 >= effect * (1 - effect):
            raise ValueError(f"a spread of {design.spread} is impossible around a win rate of {effect}: "
                             f"it must be under sqrt(p (1 - p)) = {math.sqrt(effect * (1 - effect)):.3f}")
        nu = effect * (1 - effect) / design.spread ** 2 - 1
        p = rng.beta(effect * nu, (1 - effect) * nu, shape)
    else:
        p = np.full(shape, effect)
    return rng.binomial(totals, p), totals


def detectable(design, n_participants, alpha=ALPHA):
    """Whether n_participants can reject at all at Holm's first step: the analysis tests a pair from
    MIN_PARTICIPANTS participants on, and its least p-value must reach alpha / n_pairs."""
    return n_participants >= MIN_PARTICIPANTS and least_p(n_participants) <= alpha / design.n_pairs


def simulated_power(design, effect, n_participants, alpha=ALPHA, n_sims=N_SIMS, seed=0):
    """Share of n_sims simulated studies in which the analysis' sign-flip test (study.analysis.sign_flip_p)
    rejects win rate 0.5 at alpha / n_pairs (Holm's first step)."""
    rng = np.random.default_rng(seed)
    wins, totals = simulate_counts(design, effect, n_participants, n_sims, rng)
    p = sign_flip_p(wins, totals, seed=int(rng.integers(2**31)))
    return float(np.mean(p <= alpha / design.n_pairs))


def _crossing(x, power, n_sims, target):
    """Where a probit line through (x, power) reaches target: the fit of norm.ppf(power) = a + b x,
    weighted by the binomial precision of each simulated power."""
    power = np.clip(power, 0.5 / n_sims, 1 - 0.5 / n_sims)
    z = norm.ppf(power)
    weight = n_sims * norm.pdf(z) ** 2 / (power * (1 - power))
    b, a = np.polyfit(x, z, 1, w=np.sqrt(weight))
    return (norm.ppf(target) - a) / b


def _variance(design, effect):
    """Variance of one participant's share of method_a among their decisive votes on a pair."""
    n = max(design.per_pair * (1 - design.tie_rate), 1)
    return design.spread ** 2 + (effect * (1 - effect) - design.spread ** 2) / n


def participants_needed(design, effect, power=POWER, alpha=ALPHA, n_sims=N_SIMS, seed=0):
    """Participants for `power` against a win rate of `effect` (vs 0.5): (n, grid), grid the simulated
    power at participant counts (MIN_PARTICIPANTS at least) around a normal approximation, n where a
    probit fit over sqrt(n) crosses `power` (rounded up)."""
    if not 0.5 < effect < 1:
        raise ValueError(f"the effect is a win rate between 0.5 and 1 (e.g. 0.6), not {effect}")
    z = norm.ppf(1 - alpha / design.n_pairs / 2) + norm.ppf(power)
    guess = z ** 2 * _variance(design, effect) / (effect - 0.5) ** 2
    for _ in range(4):
        sizes = np.unique(np.maximum(MIN_PARTICIPANTS, np.round(guess * np.array([0.6, 0.75, 0.9, 1, 1.1, 1.25, 1.5]))))
        sizes = sizes.astype(int)
        powers = np.array([simulated_power(design, effect, n, alpha, n_sims, seed + i) for i, n in enumerate(sizes)])
        guess = max(MIN_PARTICIPANTS, _crossing(np.sqrt(sizes), powers, n_sims, power) ** 2)
        if sizes[0] <= guess <= sizes[-1]:
            break
    return math.ceil(guess), pd.DataFrame({"participants": sizes, "power": powers})


def recommended_participants(design):
    """The participants study.power recommends for a design with its defaults (EFFECT, POWER, ALPHA,
    N_SIMS, seed 0): what study.prepare prints and study.analyze's pilot banner compares with."""
    return participants_needed(design, EFFECT)[0]


def minimum_detectable_effect(design, n_participants, power=POWER, alpha=ALPHA, n_sims=N_SIMS, seed=0):
    """The least win rate (vs 0.5) that n_participants detect with `power`: (effect, grid), grid the
    simulated power at effects around a normal approximation, effect where a probit fit crosses `power`.
    (NaN, None) when n_participants cannot reject at all (see detectable)."""
    if not detectable(design, n_participants, alpha):
        return float("nan"), None
    z = norm.ppf(1 - alpha / design.n_pairs / 2) + norm.ppf(power)
    limit = 0.5 + math.sqrt(0.25 - design.spread ** 2) - 1e-3  # the largest mean a Beta of this sd allows
    guess = min(0.5 + z * math.sqrt(_variance(design, 0.6) / n_participants), limit)
    for _ in range(4):
        gap = guess - 0.5
        effects = np.unique(np.clip(0.5 + gap * np.array([0.6, 0.75, 0.9, 1, 1.1, 1.25, 1.5]), 0.501, limit))
        powers = np.array([simulated_power(design, e, n_participants, alpha, n_sims, seed + i)
                           for i, e in enumerate(effects)])
        guess = float(np.clip(_crossing(effects, powers, n_sims, power), 0.501, limit))
        if effects[0] <= guess <= effects[-1]:
            break
    return guess, pd.DataFrame({"effect": effects, "power": powers})


def pilot_design(votes, participants, study_settings, n_methods):
    """The design of a pilot study (load_votes, load_participants): its trials and catch rate, spread and
    tie rate from the non-catch votes of the participants the analysis keeps (default exclusion rules).
    Returns (Design, sentence saying what was estimated)."""
    people = participant_table(votes, participants)
    votes = votes[votes["participant"].isin(people.loc[~people["excluded"], "participant"])]
    method = votes[votes["kind"] == "method"]
    _, spread = preference_spread(votes)
    tie_rate = float((~method["choice"].isin(["left", "right"])).mean()) if len(method) else TIE_RATE
    known = not np.isnan(spread)
    spread = spread if known else SPREAD
    note = (f"from {method['participant'].nunique()} analysed pilot participants' {len(method)} method votes "
            f"({int(people['excluded'].sum())} excluded as study.analyze does): tie rate "
            + ("estimated" if len(method) else "assumed") + f" {tie_rate:.2f}, spread "
            + ("estimated" if known else "unknown, assumed") + f" {spread:.3f}")
    return Design.of_study(study_settings, n_methods, spread=spread, tie_rate=tie_rate), note


def summary(design, effect, n, alpha=ALPHA, power=POWER):
    """The sample-size statement (no final full stop)."""
    return (f"{n} participants give {power:.0%} power to detect a {effect:.0%} vs 50% win rate at alpha "
            f"{alpha:g}" + (f" (Holm over {design.n_pairs} pairs: {alpha / design.n_pairs:.3g})" if design.n_pairs > 1
                           else "") + f", with {design.describe()}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m study.power", description=__doc__.split("\n\n")[0])
    parser.add_argument("--effect", type=float, default=EFFECT, help="win rate to detect against 0.5 (default %(default)s)")
    parser.add_argument("--trials", type=int, help="trials per participant, catch trials included (default 20)")
    parser.add_argument("--catch-rate", type=float, help="fraction of catch trials (default 0.1)")
    parser.add_argument("--attention-rate", type=float, help="fraction of attention checks (default 0.1)")
    parser.add_argument("--questions", type=int, help="questions sharing the method trials (default 1)")
    parser.add_argument("--methods", type=int, help="methods compared, every pair of them (default 2)")
    parser.add_argument("--spread", type=float,
                        help=f"sd across participants of their win probability (default {SPREAD}, or the pilot's)")
    parser.add_argument("--tie-rate", type=float,
                        help=f"share of tie/both_bad answers (default {TIE_RATE}, or the pilot's)")
    parser.add_argument("--db", help=f"pilot database, SQLAlchemy URL or SQLite file (e.g. {default_url()})")
    parser.add_argument("--study", help="pilot study whose design and votes to use (with --db)")
    parser.add_argument("--power", type=float, default=POWER, help="target power (default %(default)s)")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="family-wise alpha (default %(default)s)")
    parser.add_argument("--sims", type=int, default=N_SIMS, help="simulated studies per grid point (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if bool(args.db) != bool(args.study):
        parser.error("--db and --study go together (a pilot study)")
    given = {"n_trials": args.trials, "catch_rate": args.catch_rate, "attention_rate": args.attention_rate,
             "n_questions": args.questions, "n_methods": args.methods,
             "spread": args.spread, "tie_rate": args.tie_rate}
    try:
        design, note = Design(), f"spread {'given' if args.spread is not None else 'assumed'}"
        if args.db:
            with Store(args.db) as store:
                settings = store.study(args.study)
                methods = {s["method"] for s in store.stimuli(args.study)} - {CATCH}
                design, note = pilot_design(load_votes(store, args.study), load_participants(store, args.study),
                                            settings, len(methods))
        design = replace(design, **{k: v for k, v in given.items() if v is not None})
        if (design.n_methods < 2 or design.n_questions < 1 or design.method_trials < 1 or not 0 <= design.tie_rate < 1
                or design.spread < 0):
            raise ValueError("need at least 2 methods, 1 question, 1 method trial per question, a tie rate in [0, 1) "
                             "and a spread >= 0")
        n, grid = participants_needed(design, args.effect, args.power, args.alpha, args.sims, args.seed)
    except (StudyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(grid.to_string(index=False))
    print(summary(design, args.effect, n, args.alpha, args.power) + f" ({note}; {args.sims} simulated studies "
          "per participant count, probit fit).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
