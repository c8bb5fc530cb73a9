"""Analyse a preference study and write its report:

    python -m study.analyze --db URL_OR_PATH --study NAME --out DIR
                            [--max-catch-failures 0] [--max-attention-failures 0] [--keep-incomplete]
                            [--fast-ms 1000] [--exclude-fast]
                            [--prolific-ids EXPORT.csv [--only-prolific-ids] [--reject-attention-failures 2]]
                            [--bootstrap 2000] [--seed 0]

--db defaults to env DATABASE_URL, else DATA_DIR/arena.db (DATA_DIR: env, else data/), the app's database.
--prolific-ids matches the participant ids of a Prolific export to the stored salted hashes and writes
prolific_{approve,reject,review}.csv: rejections on failed attention checks only (Prolific's policy);
catch-trial failures and fast answers go to review.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from .analysis import AnalysisError, Rules, analyze
from .power import ALPHA, POWER, SPREAD, Design, minimum_detectable_effect, recommended_participants
from .prolific import DECISIONS, decide, read_export, write_lists
from .report import pilot_banner, write_report
from .store import (
    CATCH,
    IDENTITY_KEY,
    Store,
    StudyError,
    default_url,
    load_arrivals,
    load_participants,
    load_screens,
    load_votes,
)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m study.analyze", description="Analyse a 2AFC preference study.")
    parser.add_argument("--db", default=default_url(), help="SQLAlchemy URL or SQLite file (default: %(default)s)")
    parser.add_argument("--study", required=True, help="the study's name")
    parser.add_argument("--out", required=True, type=Path, help="folder for the CSVs, plots and report")
    parser.add_argument("--max-catch-failures", type=int, default=0,
                        help="exclude participants failing more catch trials than this (default 0: any failure)")
    parser.add_argument("--max-attention-failures", type=int, default=0,
                        help="exclude participants failing more attention checks than this (default 0: any failure)")
    parser.add_argument("--keep-incomplete", action="store_true",
                        help="keep participants who did not answer every trial (default: excluded)")
    parser.add_argument("--fast-ms", type=float, default=1000.0,
                        help="flag participants whose median response time is under this, in ms (default 1000)")
    parser.add_argument("--exclude-fast", action="store_true", help="exclude flagged fast participants (default: kept)")
    parser.add_argument("--prolific-ids", type=Path, help="Prolific's export CSV: write approve/reject/review lists")
    parser.add_argument("--only-prolific-ids", action="store_true",
                        help="analyse only participants whose id is in the --prolific-ids export")
    parser.add_argument("--reject-attention-failures", type=int, default=2,
                        help="reject a submission with at least this many failed attention checks (default 2, as "
                             "Prolific asks for studies of 5 minutes or more; 1 below 5 minutes)")
    parser.add_argument("--bootstrap", type=int, default=2000,
                        help="bootstrap resamples for the Bradley-Terry intervals (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the Monte Carlo sign flips (default 0)")
    args = parser.parse_args(argv)
    if "://" not in args.db and not Path(args.db).is_file():
        print(f"error: no database file at {args.db}; pass --db PATH_OR_URL", file=sys.stderr)
        return 2
    if (args.bootstrap < 1 or args.max_catch_failures < 0 or args.max_attention_failures < 0
            or args.reject_attention_failures < 1 or args.fast_ms < 0):
        print("error: --bootstrap and --reject-attention-failures must be at least 1, --max-catch-failures, "
              "--max-attention-failures and --fast-ms at least 0", file=sys.stderr)
        return 2
    if args.only_prolific_ids and not args.prolific_ids:
        print("error: --only-prolific-ids needs --prolific-ids EXPORT.csv", file=sys.stderr)
        return 2
    try:
        with Store(args.db) as store:
            settings, stimuli = store.study(args.study), store.stimuli(args.study)
            votes, participants = load_votes(store, args.study), load_participants(store, args.study)
            arrivals, screens = load_arrivals(store, args.study), load_screens(store, args.study)
            ids = read_export(args.prolific_ids) if args.prolific_ids else []
            keys = {pid: store.hash_id(IDENTITY_KEY, pid) for pid in ids}
        listed = frozenset(participants.loc[participants["external_key"].isin(set(keys.values())), "participant"])
        rules = Rules(args.max_catch_failures, args.keep_incomplete, args.fast_ms, args.exclude_fast,
                      listed if args.only_prolific_ids else None,
                      f"the Prolific export {args.prolific_ids.name}" if args.only_prolific_ids else "",
                      args.max_attention_failures)
        results = analyze(votes, participants, rules, args.bootstrap, args.seed, arrivals=arrivals, screens=screens)
    except (StudyError, AnalysisError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_methods = len({s["method"] for s in stimuli} - {CATCH})
    spread = results.pooled_spread
    design = Design.of_study(settings, n_methods, spread=SPREAD if np.isnan(spread) else spread,
                             tie_rate=results.tie_rate)
    effect, _ = minimum_detectable_effect(design, results.n_analysed, seed=args.seed)
    recommended = recommended_participants(Design.of_study(settings, n_methods))
    power = {"effect": effect, "power": POWER, "alpha": ALPHA, "design": design, "recommended": recommended,
             "spread_note": f"spread {'assumed' if np.isnan(spread) else 'observed'}, tie rate observed"}
    write_report(results, votes, args.out, settings, stimuli, power)
    banner = pilot_banner(results.n_analysed, recommended)
    if banner:
        print(banner)
    print(results.pairs[["question", "method_a", "method_b", "n_people", "a_win_rate", "ci_low", "ci_high",
                         "p_value", "p_holm"]].to_string(index=False))
    print(results.flow_sentence)
    print(f"minimum detectable effect ({POWER:.0%} power): "
          + ("none (too few participants to test)" if np.isnan(effect) else f"win rate {effect:.3f} vs 0.5"))
    if ids:
        decisions = decide(ids, keys.get, participants, results.participants, arrivals,
                           args.reject_attention_failures, args.max_catch_failures, args.fast_ms)
        write_lists(decisions, args.out)
        counts = decisions["decision"].value_counts()
        print(f"Prolific: {len(ids)} ids, " + ", ".join(f"{counts.get(d, 0)} {d}" for d in DECISIONS)
              + f": {args.out / 'prolific_approve.csv'} and the reject and review lists beside it")
    print(f"report: {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
