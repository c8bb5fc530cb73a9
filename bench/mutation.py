"""Mutation testing of the code that results and stored votes rest on (issue #29), with mutmut 3:

    python -m bench.mutation [--max-children 2] [--continue] [--report-only | --recheck]

mutmut, configured in pyproject.toml's [tool.mutmut] (the modules in `only_mutate`, the fast in-process
tests in `pytest_add_cli_args_test_selection`), copies the code into mutants/, makes every mutant of those
modules and runs, for each, the tests that reached the mutated function; it keeps its verdicts there, so
a run stopped half-way goes on where it stopped (--report-only reads them without running). mutmut keeps a
verdict until the mutated function changes, so after new tests --recheck runs the survivors that
tests/mutants_equivalent.csv does not list again (a clean clone, with no mutants/, runs every mutant). mutants/
is not committed; the verdicts are, in docs/mutation/verdicts.json, and --continue starts from them on another
machine (mutmut checks again the mutants of every function changed since). Then this
writes docs/mutation/survivors.csv (every mutant not killed: module, function, status, the mutated line and
what it becomes, and for an equivalent one the reason), docs/mutation/scores.csv (per module: the counts and
the score) and the same table into tests/README.md between its two MARK lines.

score = killed / (mutants - equivalent - not checked): timeouts count as killed (the mutant hangs where the
code returns), "no tests" as survived (no selected test reaches the function); "not checked" is zero after
a whole run, and the rest of a run stopped half-way. The survivors judged equivalent or harmless are listed,
each with its reason, in tests/mutants_equivalent.csv (file, function, line: the mutated line as mutmut
shows it, mutant: the line it becomes, reason), by their change rather than their number, which shifts when
the function changes; a listed change that no survivor makes any more is reported, so the list cannot go
stale silently. study/store.py counts its vote and trial functions (STORE_SCOPE), as the issue asks; its other
functions get a row of their own."""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "mutation"
SAVED = OUT / "verdicts.json"  # mutmut's verdicts and function hashes, for --continue on another machine
EQUIVALENT = ROOT / "tests" / "mutants_equivalent.csv"
README = ROOT / "tests" / "README.md"
MARK = "<!-- mutation scores: python -m bench.mutation writes this table -->"
# the functions of study/store.py that make, hand out and record trials and votes (battles included), and load them
# for the analysis
STORE_SCOPE = {"Store.new_participant", "Store.remaining_trials", "Store._remaining", "Store.get_trial",
               "Store.record_vote", "Store.answer_next", "Store.progress", "Store.completion_code",
               "Store.record_comparison", "Store.voted_pairs", "Store.record_battle", "Store.battles",
               "Store.battle_ids", "_unvoted", "_complete", "_vote_row", "_view_query", "_remaining_query",
               "_trial_view_query", "_views", "_design",
               "_draw_trials", "load_votes", "load_participants"}
KILLED = {"killed", "timeout"}
NAME = re.compile(r"^(?P<module>[\w.]+)\.x(?:ǁ(?P<cls>\w+)ǁ|_)(?P<func>\w+?)__mutmut_\d+$")


def modules():
    """The files mutmut mutates (pyproject.toml's only_mutate)."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]


def verdicts():
    """{mutant name: status} from mutmut's results (`mutmut results --all true`)."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return dict(line.strip().rsplit(": ", 1) for line in out.splitlines() if ": " in line)


def row_of(mutant):
    """(file, function as Class.method or name) of a mutant's name."""
    m = NAME.match(mutant)
    if m is None:
        raise ValueError(f"unexpected mutant name {mutant!r}: has mutmut's naming changed?")
    function = f"{m['cls']}.{m['func']}" if m["cls"] else m["func"]
    return m["module"].replace(".", "/") + ".py", function


def group(file, function):
    """The table row a mutant counts in."""
    if file == "study/store.py":
        return "study/store.py (votes, trials)" if function in STORE_SCOPE else "study/store.py (other, not scored)"
    return file


def change(mutant):
    """(the mutated lines, what they become) of a mutant, as `mutmut show` gives them (each stripped)."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line[:1] in "-+" and line[:3] not in ("---", "+++")]
    return tuple("\n".join(x[1:].strip() for x in lines if x[0] == sign) for sign in "-+")


def save_verdicts():
    """Copy mutmut's verdicts (mutants/**/*.meta: each mutant's exit code, None when not checked, and each
    function's hash) to SAVED."""
    saved = {}
    for meta in sorted((ROOT / "mutants").rglob("*.meta")):
        data = json.loads(meta.read_text())
        saved[meta.relative_to(ROOT / "mutants").as_posix()] = {k: data[k] for k in ("hash_by_function_name",
                                                                                    "exit_code_by_key")}
    OUT.mkdir(parents=True, exist_ok=True)
    SAVED.write_text(json.dumps(saved, indent=0, sort_keys=True) + "\n")


def restore_verdicts():
    """Write SAVED's verdicts as mutmut's meta files where mutants/ has none: mutmut then keeps the verdicts of
    the functions whose hash is unchanged and checks the rest."""
    for path, data in json.loads(SAVED.read_text()).items():
        meta = ROOT / "mutants" / path
        if not meta.exists():
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta.write_text(json.dumps({**data, "durations_by_key": {}, "estimated_durations_by_key": {}}))


def equivalents():
    """{(file, function, line, mutant): reason} of tests/mutants_equivalent.csv."""
    with open(EQUIVALENT, newline="") as f:
        return {(r["file"], r["function"], r["line"], r["mutant"]): r["reason"] for r in csv.DictReader(f)}


def unexplained():
    """The names of the survivors (survived or no tests) that tests/mutants_equivalent.csv does not list."""
    listed = equivalents()
    return [m for m, s in verdicts().items()
            if s in ("survived", "no tests") and (*row_of(m), *change(m)) not in listed]


def report():
    """Write the CSVs and the README table from mutmut's verdicts; returns the table (Markdown)."""
    equivalent = equivalents()
    rows, used, mutated = [], set(), modules()
    for mutant, s in sorted(verdicts().items()):
        file, function = row_of(mutant)
        if file not in mutated:
            continue
        before, after = change(mutant) if s == "survived" else ("", "")
        reason = equivalent.get((file, function, before, after), "")
        if reason:
            s = "equivalent"
            used.add((file, function, before, after))
        rows.append({"module": group(file, function), "function": function, "mutant": mutant, "status": s,
                     "reason": reason, "line": before, "becomes": after})
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "survivors.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["module", "function", "mutant", "status", "reason", "line", "becomes"])
        writer.writeheader()
        writer.writerows(r for r in rows if r["status"] not in KILLED)
    scores = []
    for module in sorted({r["module"] for r in rows}):
        n = Counter(r["status"] for r in rows if r["module"] == module)
        killed, total, eq, unchecked = sum(n[s] for s in KILLED), sum(n.values()), n["equivalent"], n["not checked"]
        scored = total - eq - unchecked
        scores.append({"module": module, "mutants": total, "killed": killed, "survived": n["survived"],
                       "no_tests": n["no tests"], "equivalent": eq, "not_checked": unchecked,
                       "other": scored - killed - n["survived"] - n["no tests"],
                       "score": f"{killed / scored:.3f}" if scored else ""})
    with open(OUT / "scores.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(scores[0]))
        writer.writeheader()
        writer.writerows(scores)
    table = "\n".join(["| module | mutants | killed | survived | no test | equivalent | not checked | other | score |",
                       "|---|---|---|---|---|---|---|---|---|"]
                      + [f"| `{s['module']}` | {s['mutants']} | {s['killed']} | {s['survived']} | {s['no_tests']} | "
                         f"{s['equivalent']} | {s['not_checked']} | {s['other']} | {s['score']} |" for s in scores])
    head, _, rest = README.read_text().partition(MARK)
    _, _, tail = rest.partition(MARK)
    README.write_text(f"{head}{MARK}\n{table}\n{MARK}{tail}")
    for file, function, before, after in sorted(set(equivalent) - used):
        print(f"{EQUIVALENT.name} lists a change that no survivor makes now (remove it): {file} {function}: "
              f"{before!r} -> {after!r}")
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2: the cores here)")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help=f"start from the verdicts saved in {SAVED.relative_to(ROOT)} (a run spread over machines; "
                             "without it a clean clone checks every mutant; --recheck after it, not with it)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--report-only", action="store_true", help="only read the verdicts of the last run")
    which.add_argument("--recheck", action="store_true",
                       help="run again the survivors of the last run that mutants_equivalent.csv does not list (after "
                            "new tests)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    if args.resume:
        restore_verdicts()
    if not args.report_only:
        names = unexplained() if args.recheck else []
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children), *names],
                       cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # two runs share two cores
        print(f"mutmut run: {(time.monotonic() - start) / 60:.1f} min")
    save_verdicts()
    print(report())
    print(f"written: {OUT / 'survivors.csv'}, {OUT / 'scores.csv'}, {SAVED.name}, and the table in "
          f"{README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
