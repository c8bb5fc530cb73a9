"""Write an analysis to a folder: tidy CSVs, the raw votes (CSV and Parquet), PNG plots, and the
same report as Markdown (report.md) and HTML (report.html)."""
import html
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import pandas as pd  # noqa: E402


def _fmt(x):
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.3g}"
    return str(x)


def _markdown_table(df):
    rows = [[_fmt(x) for x in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _html_table(df):
    return df.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.3g}", border=0, classes="t")


def _plot_strengths(strengths, path):
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(strengths)))
    s = strengths.iloc[::-1]
    ax.errorbar(s["strength"], range(len(s)), fmt="o", capsize=4,
                xerr=[s["strength"] - s["ci_low"], s["ci_high"] - s["strength"]])
    ax.set_yticks(range(len(s)), s["method"])
    ax.axvline(1 / len(s), color="grey", lw=0.8, ls="--")
    ax.set_xlabel("Bradley-Terry strength (sums to 1; dashed: all equal)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_pairs(pairs, path):
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(pairs)))
    p = pairs.iloc[::-1]
    ax.errorbar(p["a_win_rate"], range(len(p)), fmt="o", capsize=4,
                xerr=[p["a_win_rate"] - p["ci_low"], p["ci_high"] - p["a_win_rate"]])
    ax.set_yticks(range(len(p)), [f"{a} over {b}" for a, b in zip(p["method_a"], p["method_b"])])
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate over decisive votes (Wilson interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _blocks(study, r, parquet_note):
    """The report as (kind, content) blocks: kind in {"h1", "h2", "p", "table", "img"}."""
    pos, agr, s = r.position, r.agreement, r.settings
    level = f"{s['level']:.0%}"
    excluded = ", ".join(map(str, r.excluded)) or "none"
    yield "h1", f"Preference study {study}"
    yield "p", (f"{r.n_participants} participants, {r.n_votes} votes. {len(r.excluded)} participant(s) excluded "
                f"for failing more than {s['max_catch_failures']} catch trial(s); every statistic below "
                "leaves them and all catch trials out.")
    yield "h2", "Method strengths (Bradley-Terry)"
    yield "p", (f"Maximum-likelihood strengths (MM algorithm, 0.5 pseudo-wins each way per compared pair), "
                f"summing to 1; {level} percentile intervals from {s['n_boot']} bootstrap resamples of "
                f"participants (seed {s['seed']}).")
    yield "table", r.strengths
    yield "img", "strengths.png"
    yield "h2", "Pairwise win rates"
    yield "p", (f"a_win_rate: share of decisive (left/right) votes for method_a; {level} Wilson intervals; "
                "p_value: exact two-sided binomial test against 0.5. Ties and both_bad are counted apart.")
    yield "table", r.pairs
    yield "img", "pairs.png"
    yield "h2", "Position bias"
    yield "p", (f"P(left chosen) over {pos['n_decisive']} decisive votes: {_fmt(pos['p_left'])} "
                f"({level} interval {_fmt(pos['ci_low'])} to {_fmt(pos['ci_high'])}), binomial test against 0.5: "
                f"p = {_fmt(pos['p_value'])}. Sides are randomised per trial, so a bias adds noise, not a "
                "method advantage.")
    yield "h2", "Catch trials"
    yield "p", (f"Catch-trial failure rate (all participants): {_fmt(r.catch_failure_rate)}. "
                f"Excluded participants: {excluded}. Per participant: catch_trials.csv.")
    yield "h2", "Inter-rater agreement"
    yield "p", (f"{agr['measure']}. {agr['n_items']} items, {agr['n_rater_pairs']} rater pairs: pairwise "
                f"agreement {_fmt(agr['pairwise_agreement'])} (chance {_fmt(agr['chance_agreement'])}), "
                f"Fleiss' kappa {_fmt(agr['fleiss_kappa'])}.")
    yield "h2", "Win rates per style"
    yield "table", r.pairs_by_style
    yield "h2", "Win rates per content"
    yield "table", r.pairs_by_content
    yield "h2", "Files"
    yield "p", ("strengths.csv, pairs.csv, pairs_by_style.csv, pairs_by_content.csv, position_bias.csv, "
                "agreement.csv, catch_trials.csv; raw votes (catch trials and excluded participants included): "
                f"votes.csv{parquet_note}.")


def _markdown(blocks):
    out = []
    for kind, x in blocks:
        if kind == "table":
            out.append(_markdown_table(x))
        elif kind == "img":
            out.append(f"![{x}]({x})")
        else:
            out.append({"h1": "# ", "h2": "## ", "p": ""}[kind] + x)
    return "\n\n".join(out) + "\n"


def _html(title, blocks):
    body = []
    for kind, x in blocks:
        if kind == "table":
            body.append(_html_table(x))
        elif kind == "img":
            body.append(f'<img src="{html.escape(x)}" alt="{html.escape(x)}">')
        else:
            body.append(f"<{kind}>{html.escape(x)}</{kind}>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "table.t{border-collapse:collapse;font-size:90%}table.t td,table.t th{padding:2px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(results, votes, out_dir, study):
    """Write everything into out_dir (created); returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "strengths.csv": results.strengths, "pairs.csv": results.pairs,
        "pairs_by_style.csv": results.pairs_by_style, "pairs_by_content.csv": results.pairs_by_content,
        "position_bias.csv": pd.DataFrame([results.position]), "agreement.csv": pd.DataFrame([results.agreement]),
        "catch_trials.csv": results.participants, "votes.csv": votes,
    }
    for name, df in tables.items():
        df.to_csv(out / name, index=False)
    written = [out / name for name in tables]
    try:
        votes.to_parquet(out / "votes.parquet", index=False)
        written.append(out / "votes.parquet")
        parquet_note = " and votes.parquet"
    except ImportError:
        parquet_note = " (no Parquet copy: pyarrow is not installed; pip install pyarrow)"
    _plot_strengths(results.strengths, out / "strengths.png")
    _plot_pairs(results.pairs, out / "pairs.png")
    blocks = list(_blocks(study, results, parquet_note))
    (out / "report.md").write_text(_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(_html(f"Preference study {study}", blocks), encoding="utf-8")
    return written + [out / n for n in ("strengths.png", "pairs.png", "report.md", "report.html")]
