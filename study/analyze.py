"""Analyse a preference study and write its report:

    python -m study.analyze --db URL_OR_PATH --study NAME --out DIR
                            [--max-catch-failures 0] [--bootstrap 1000] [--seed 0]

--db defaults to env DATABASE_URL, else DATA_DIR/arena.db (DATA_DIR: env, else data/), the app's database.
"""
import argparse
import sys
from pathlib import Path

from .analysis import AnalysisError, analyze
from .report import write_report
from .store import StudyError, default_url, load_votes


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m study.analyze", description="Analyse a 2AFC preference study.")
    parser.add_argument("--db", default=default_url(), help="SQLAlchemy URL or SQLite file (default: %(default)s)")
    parser.add_argument("--study", required=True, help="the study's name")
    parser.add_argument("--out", required=True, type=Path, help="folder for the CSVs, plots and report")
    parser.add_argument("--max-catch-failures", type=int, default=0,
                        help="exclude participants failing more catch trials than this (default 0: any failure)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    if "://" not in args.db and not Path(args.db).is_file():
        print(f"error: no database file at {args.db}; pass --db PATH_OR_URL", file=sys.stderr)
        return 2
    if args.bootstrap < 1 or args.max_catch_failures < 0:
        print("error: --bootstrap must be at least 1 and --max-catch-failures at least 0", file=sys.stderr)
        return 2
    try:
        votes = load_votes(args.db, args.study)
        results = analyze(votes, args.max_catch_failures, args.bootstrap, args.seed)
    except (StudyError, AnalysisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_report(results, votes, args.out, args.study)
    print(results.strengths.to_string(index=False))
    print(f"{results.n_participants} participants ({len(results.excluded)} excluded), {results.n_votes} votes; "
          f"P(left) = {results.position['p_left']:.3f} (p = {results.position['p_value']:.2g})")
    print(f"report: {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
