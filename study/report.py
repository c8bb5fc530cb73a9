"""Write an analysis to a folder: tidy CSVs, the raw votes (CSV and Parquet), PNG plots, example
thumbnails, and the same report as Markdown (report.md) and HTML (report.html).

Both reports come from one list of blocks, so they say the same; the tables in them are formatted
for reading (intervals as "low–high"), the CSVs hold every column at full precision.
"""
import html
import math
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from .analysis import AGREEMENT_MEASURE, EXACT_UP_TO, MIN_PARTICIPANTS, RANDOM_FLIPS, least_p  # noqa: E402
from .power import EFFECT  # noqa: E402
from .prepare import sha256_file  # noqa: E402
from .questions import DEFAULT as DEFAULT_QUESTIONS  # noqa: E402
from .store import CATCH  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
THUMBNAIL = 240  # px, long side of the example images
NUMBER = re.compile(r"[-+0-9.e /–]*")  # a cell of a right-aligned column: numbers, "a / b", intervals
CSS = (
    "body{font-family:system-ui,sans-serif;max-width:64em;margin:1.5em auto;padding:0 1em;line-height:1.45}"
    "div.wide{overflow-x:auto;max-width:100%;margin:.5em 0}"
    "table{border-collapse:collapse;font-size:88%}"
    "td,th{padding:3px 7px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top;overflow-wrap:break-word}"
    "th{background:#f3f3f3}.n{text-align:right}"
    "table.examples td{text-align:center}figure{margin:0}figcaption{font-size:90%}"
    "img{max-width:100%;height:auto}"
)


def code_version():
    """The git commit of the code (with ' + uncommitted changes' when the checkout differs), or a note."""
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True,  # noqa: E731
                                        check=True, timeout=20).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout, or git is missing)"
    return commit + (" + uncommitted changes" if dirty else "")


def _fmt(x):
    if isinstance(x, (float, np.floating)):
        return "" if math.isnan(x) else f"{x:.3g}"
    return "" if x is None or x is pd.NA else str(x)


def _interval(low, high):
    return "" if np.isnan(low) or np.isnan(high) else f"{low:.3f}–{high:.3f}"


def _p(p):
    return "" if np.isnan(p) else f"{p:.3g}"


def pilot_banner(n_analysed, recommended):
    """'pilot: N participants; M recommended' when the study has fewer analysed participants than
    study.power recommends for its design (study.power.recommended_participants), else None."""
    return f"pilot: {n_analysed} participants; {recommended} recommended" if n_analysed < recommended else None


def pairs_display(pairs, by=()):
    """The pair table as the report shows it; a row too thin to test shows "not tested" for its p-values."""
    out = pd.DataFrame({c: pairs[c] for c in by})
    out["pair (a vs b)"] = pairs["method_a"] + " vs " + pairs["method_b"]
    out["participants (decisive)"] = pairs["n_people"]
    out["decisive / all votes"] = [f"{d} / {n}" for d, n in zip(pairs["n_decisive"], pairs["n_votes"])]
    out["a_win_rate"] = [f"{x:.3f}" for x in pairs["a_win_rate"]]
    out["95% CI (sign-flip test inversion)"] = [_interval(a, b) for a, b in zip(pairs["ci_low"], pairs["ci_high"])]
    thin = pairs["n_people"] < MIN_PARTICIPANTS
    out["p (sign-flip)"] = np.where(thin, f"not tested (< {MIN_PARTICIPANTS})", pairs["p_value"].map(_p))
    out["least p"] = pairs["min_p"].map(_p)
    out["p_holm"] = np.where(thin, "", pairs["p_holm"].map(_p))
    out["95% CI per vote (Wilson, secondary)"] = [
        _interval(a, b) for a, b in zip(pairs["wilson_low_per_vote"], pairs["wilson_high_per_vote"])]
    return out


def response_times_display(times):
    """The response-time table as the report shows it (whole ms)."""
    out = times.copy()
    for c in ("p5", "p25", "median", "p75", "p95"):
        out[c] = out[c].map(lambda x: "" if np.isnan(x) else f"{x:.0f}")
    out["share_under_threshold"] = out["share_under_threshold"].map(lambda x: "" if np.isnan(x) else f"{x:.3f}")
    return out.rename(columns={c: f"{c} (ms)" for c in ("p5", "p25", "median", "p75", "p95")})


def people_display(people):
    """The per-participant table as the report shows it."""
    return pd.DataFrame({
        "participant": people["participant"],
        "votes / trials": [f"{v} / {t}" for v, t in zip(people["n_votes"], people["n_trials"])],
        "catch failed / seen": [f"{f} / {n}" for f, n in zip(people["n_catch_failed"], people["n_catch"])],
        "median response (ms)": people["median_rt_ms"].map(lambda x: "" if np.isnan(x) else f"{x:.0f}"),
        "share left": people["share_left"].map(lambda x: "" if np.isnan(x) else f"{x:.2f}"),
        "fast": people["fast"].map({True: "flagged", False: ""}),
        "excluded (why)": people["reason"],
    })


def design_table(settings, stimuli, pairs):
    """What participants saw, as (item, value) rows."""
    methods = sorted({s["method"] for s in stimuli} - {CATCH})
    contents = sorted({s["content_name"] for s in stimuli})
    styles = sorted({s["style_name"] for s in stimuli})
    n_catch = round(settings["n_trials"] * settings["catch_rate"])
    n_attention = round(settings["n_trials"] * settings["attention_rate"])
    n_method = settings["n_trials"] - n_catch - n_attention
    n_pairs = len(methods) * (len(methods) - 1) // 2
    catch = next((s["settings"].get("recipe") for s in stimuli if s["method"] == CATCH), None)
    questions = settings["questions"] or DEFAULT_QUESTIONS
    shown = pairs.drop_duplicates(["method_a", "method_b"])
    rows = [
        ("methods", ", ".join(methods)),
        ("method pairs", f"{n_pairs}: " + "; ".join(map(" vs ".join, zip(shown["method_a"], shown["method_b"])))),
        ("questions", f"{len(questions)}, one per trial, spread evenly over each participant's trials: "
                      + "; ".join(f"{k}: {w}" for k, w in questions)),
        ("content images", f"{len(contents)}: " + ", ".join(contents)),
        ("style images", f"{len(styles)}: " + ", ".join(styles)),
        ("stimuli", f"{len(contents) * len(styles)} content x style cells x {len(methods)} methods"
                    + (", plus a catch image per cell" if catch else "")),
        ("trials per participant", f"{settings['practice_trials']} practice (never analysed), then "
                                   f"{settings['n_trials']}: {n_method} method trials (about "
                                   f"{n_method / max(n_pairs, 1):.3g} per pair), {n_catch} catch trials, "
                                   f"{n_attention} attention checks"),
        ("catch rate", f"{settings['catch_rate']:.3g}" + (f" (catch image: {catch})" if catch else "")),
        ("attention checks", f"rate {settings['attention_rate']:.3g}: a method pair whose question names the button "
                             "to press (Tie or Both bad), Prolific's instructed-response check"),
        ("a trial", "the question above two stylisations of the same content and style side by side"
                    + (", the content photo and style painting beside them" if settings["show_references"] else "")
                    + ", sides random per trial, method names hidden; answers: left, right, tie, both bad"),
        ("screen check", f"each image at least {settings['min_image_px']} CSS px wide on the participant's screen "
                         "(checked before consent; smaller screens are screened out)" if settings["min_image_px"]
                         else "none"),
        ("assignment", "each participant gets the least-shown method pairs first and, within a pair, the "
                       "least-shown content x style they have not seen; order shuffled"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def write_examples(results, votes, stimuli, images_dir, out):
    """One thumbnail pair per method pair, from the content x style with most analysed votes on it.
    Returns (rows for an 'examples' block, None) or ([], the reason there are none)."""
    if images_dir is None:
        return [], "the study has no images folder"
    kept = votes[~votes["participant"].isin(results.excluded) & ~votes["is_catch"]]
    path = {(s["content_name"], s["style_name"], s["method"]): Path(images_dir) / s["path"] for s in stimuli}
    folder = out / "examples"
    folder.mkdir(exist_ok=True)
    rows = []
    pairs = results.pairs.drop_duplicates(["method_a", "method_b"])  # the same pairs under every question
    for i, (a, b) in enumerate(zip(pairs["method_a"], pairs["method_b"]), 1):
        mine = kept[kept[["left_method", "right_method"]].isin([a, b]).all(axis=1)]
        cells = mine.groupby(["content", "style"]).size().sort_index().sort_values(ascending=False, kind="stable")
        if cells.empty:
            continue
        content, style = cells.index[0]
        shown = []
        for side, method in (("a", a), ("b", b)):
            source, target = path.get((content, style, method)), folder / f"pair{i}_{side}.jpg"
            if source is None or not source.is_file():
                return [], f"{source or content + ' x ' + style + ' x ' + method} is missing"
            with Image.open(source) as im:
                im = im.convert("RGB")
                im.thumbnail((THUMBNAIL, THUMBNAIL))
                im.save(target, quality=85)
            shown.append((method, f"examples/{target.name}"))
        rows.append({"pair": f"{a} vs {b}", "cell": f"{content} x {style}", "images": shown})
    return rows, None


def _plot_intervals(labels, estimate, low, high, reference, xlabel, path):
    fig, ax = plt.subplots(figsize=(6.5, 0.7 + 0.45 * len(labels)))
    y = np.arange(len(labels))[::-1]
    ax.errorbar(estimate, y, xerr=[estimate - low, high - estimate], fmt="o", capsize=4)
    ax.set_yticks(y, labels)
    ax.axvline(reference, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_response_times(votes, people, fast_ms, path):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, x, title in ((axes[0], votes["response_time_ms"].astype(float), "every vote"),
                         (axes[1], people["median_rt_ms"], "participant medians")):
        x = x.dropna()
        x = x[x > 0]
        if len(x):
            ax.hist(x, bins=np.geomspace(min(x.min(), fast_ms / 2), max(x.max(), fast_ms * 2), 40))
        ax.set_xscale("log")
        ax.axvline(fast_ms, color="red", lw=1, ls="--")
        ax.set_xlabel("response time (ms, log scale; red: threshold)")
        ax.set_title(title)
    axes[0].set_ylabel("count")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _blocks(r, design, examples, power, provenance, parquet_note, wording, debrief):
    """The report as (kind, content) blocks: kind in {"h1", "h2", "h3", "p", "table", "img", "examples"}.
    wording: {question key: its wording}; debrief: the study's debrief text or None."""
    s, pos = r.settings, r.position
    level, n_boot = f"{s['level']:.0%}", s["n_boot"]
    n_pairs = len(r.pairs) // max(len(r.questions), 1)
    yield "h1", f"Preference study {provenance['study']}"
    banner = pilot_banner(r.n_analysed, power["recommended"])
    if banner:
        yield "p", (f"{banner}: study.power's figure for this design at a {EFFECT:.0%} win "
                    f"rate ({power['power']:.0%} power, spread and ties assumed, as study.prepare printed). Read "
                    "the results as a pilot's: wide intervals, and rows too thin to test.")
    yield "table", pd.DataFrame([
        ("generated", provenance["date"]), ("code version", provenance["code"]),
        ("data fingerprint", f"sha256 of votes.csv: {provenance['sha256']}"),
        ("votes", f"{r.n_votes} stored ({r.n_method_votes} method votes analysed)"),
    ], columns=["item", "value"])
    yield "h2", "Design"
    yield "table", design
    yield "h2", "Example stimuli"
    examples_rows, missing = examples
    if examples_rows:
        yield "p", ("One content x style per method pair (the one with most analysed votes), as "
                    f"thumbnails of at most {THUMBNAIL} px.")
        yield "examples", examples_rows
    else:
        yield "p", f"No example images: {missing}."
    yield "h2", "Participants"
    yield "p", "Exclusion rules: " + " ".join(r.rules.describe())
    yield "table", r.flow
    yield "p", r.flow_sentence
    yield "p", (f"Practice votes: {r.n_practice_votes} (stored, never analysed). Attention checks (the question "
                f"names the button to press): {r.n_attention_votes} answered, failure rate "
                f"{_fmt(r.attention_failure_rate) or 'n/a'}; only they ground a Prolific rejection "
                "(study.analyze --prolific-ids).")
    yield "h2", "Screens"
    if r.viewports is None or r.viewports.empty:
        yield "p", "No screen was measured (participants from before schema version 8, or API clients)."
    else:
        yield "p", ("The viewport in CSS px, the device pixel ratio and the browser of every enrolled and screened-out "
                    "participant (the screen check before consent), per device type.")
        yield "table", r.viewports
    yield "h2", "Pairwise win rates"
    yield "p", (f"a_win_rate: share of decisive (left/right) votes choosing method_a. A participant gives several "
                "votes, which are not independent, so the test works on participants: a two-sided sign-flip test "
                "of each participant's net preference w - 0.5 n (w: their votes for method_a, n: their decisive "
                "votes in the row; sides are randomised, so with no preference it is as likely negative as "
                f"positive), exact over all 2^N sign flips up to {EXACT_UP_TO} participants, else "
                f"{RANDOM_FLIPS:,} random ones (seed {s['seed']}). The {level} interval holds the win rates that "
                f"the same test does not reject (sign-flip test inversion). least p: the smallest p-value the row's "
                f"N participants allow (2/2^N: with 3, 0.25); a row is significant after Holm only if it is at "
                f"most 0.05 over the number of tested rows. p_holm adjusts the p-values with Holm's procedure "
                f"over the tested rows. The per-vote Wilson interval treats votes as independent and is shown only "
                "for comparison. Ties and both_bad are counted apart (pairs.csv).")
    yield "p", (f"Rows with fewer than {MIN_PARTICIPANTS} participants with a decisive vote are not tested (no "
                f"p-value or interval, left out of Holm): with {MIN_PARTICIPANTS - 1} the exact test cannot go "
                f"below 2/2^{MIN_PARTICIPANTS - 1} = {least_p(MIN_PARTICIPANTS - 1):.4g}, above 0.05, so its "
                "interval would be 0-1 whatever the votes. Their counts and rates are shown.")
    yield "p", ("Each question is analysed apart (its own table, Holm over its own rows): a vote answers the "
                "question its trial asked.")
    for question in r.questions:
        yield "h3", f"Question {question}: {wording.get(question, question)}"
        yield "table", pairs_display(r.pairs[r.pairs["question"] == question])
    yield "img", "pairs.png"
    yield "h2", "Method strengths (Bradley-Terry)"
    yield "p", (f"Maximum-likelihood strengths (MM algorithm, 0.5 pseudo-wins each way per compared pair), "
                f"summing to 1; {level} intervals: strength +- t(N - 1) x the standard deviation over {n_boot} "
                f"bootstrap resamples of the N participants (seed {s['seed']}) x sqrt(N / (N - 1)), a small-sample "
                "correction (percentile intervals from few participants are too narrow); clipped to 0-1, and "
                f"withheld with fewer than {MIN_PARTICIPANTS} participants.")
    for question in r.questions:
        yield "h3", f"Question {question}: {wording.get(question, question)}"
        if question in r.strengths_missing:
            yield "p", f"No strengths: {r.strengths_missing[question]}."
        else:
            yield "table", r.strengths[r.strengths["question"] == question].drop(columns="question")
    yield "img", "strengths.png"
    yield "h2", "Sample size"
    holm_note = f" (Holm over {n_pairs} pairs)" if n_pairs > 1 else ""
    if math.isnan(power["effect"]):
        yield "p", (f"Minimum detectable effect of the study as run: none. With {r.n_analysed} analysed "
                    f"participants the test cannot reject at alpha {power['alpha']:g}{holm_note} whatever the "
                    f"votes ({MIN_PARTICIPANTS} participants are needed to test a pair, and a least p of "
                    f"{least_p(r.n_analysed):.3g}); python -m study.power gives the participants needed.")
    else:
        yield "p", (f"Minimum detectable effect of the study as run: with {r.n_analysed} analysed participants, a "
                    f"win rate of {power['effect']:.3f} against 0.5 is detected with {power['power']:.0%} power at "
                    f"alpha {power['alpha']:g}{holm_note}, by simulating {power['design'].describe()} "
                    f"({power['spread_note']}; python -m study.power gives the participants needed for a chosen "
                    "effect).")
    yield "p", ("Between-participant spread: the standard deviation across participants of their own "
                "P(method_a chosen), by the method of moments (binomial noise removed).")
    yield "table", r.spread
    yield "h2", "Position bias"
    tested = (f"{level} interval {_interval(pos['ci_low'], pos['ci_high'])} and p = {_p(pos['p_value'])} from the "
              f"sign-flip test on each participant's left minus right votes" if pos["n_participants"] >= MIN_PARTICIPANTS
              else f"not tested: fewer than {MIN_PARTICIPANTS} participants")
    yield "p", (f"P(left chosen) over {pos['n_decisive']} decisive votes of {pos['n_participants']} participants: "
                f"{pos['p_left']:.3f} ({tested}; per-vote Wilson "
                f"{_interval(pos['wilson_low_per_vote'], pos['wilson_high_per_vote'])}). "
                "Sides are randomised per trial, so a bias adds noise, not a method advantage.")
    yield "h2", "Response times"
    yield "p", ("From showing the images to the click, in ms: per vote the lower of the browser's figure and the "
                "server's (sending the trial to receiving the vote, downloads included), so a client cannot claim slow "
                f"answers; share_under_threshold: below {s['fast_ms']:g} ms, the fast-responder threshold. Practice "
                "votes are left out.")
    yield "table", response_times_display(r.response_times)
    yield "img", "response_times.png"
    yield "h2", "Catch trials"
    rate = "n/a (no catch votes)" if math.isnan(r.catch_failure_rate) else f"{r.catch_failure_rate:.3g}"
    unseen = int(((r.participants["n_catch"] == 0) & ~r.participants["excluded"]).sum())
    yield "p", (f"Catch-trial failure rate over all catch votes: {rate}. Analysed participants who saw no catch "
                f"trial: {unseen}. Excluded participants: {', '.join(map(str, r.excluded)) or 'none'}.")
    yield "h2", "Inter-rater agreement"
    yield "p", f"{AGREEMENT_MEASURE}; per question."
    yield "table", r.agreement.drop(columns="measure")
    yield "h2", "Per participant"
    yield "table", people_display(r.participants)
    for by, table in (("style", r.pairs_by_style), ("content", r.pairs_by_content)):
        yield "h2", f"Win rates per {by}"
        yield "p", "Intervals and p-values as above; Holm over each question's tested rows of this table."
        for question in r.questions:
            yield "h3", f"Question {question}: {wording.get(question, question)}"
            yield "table", pairs_display(table[table["question"] == question], [by])
    yield "h2", "Feedback"
    if r.feedback.empty:
        yield "p", "No participant left a comment."
    else:
        yield "p", "The free-text answers to the feedback question at the end, as written."
        yield "table", r.feedback
    if debrief:
        yield "h2", "Debrief shown at the end"
        yield "p", debrief
    yield "h2", "Files"
    yield "p", ("pairs.csv, pairs_by_style.csv, pairs_by_content.csv, strengths.csv, spread.csv, agreement.csv (every "
                "one with a question column), participants.csv, flow.csv, response_times.csv, position_bias.csv, "
                "viewports.csv, feedback.csv; raw votes (practice, catch and attention-check votes and excluded "
                f"participants included): votes.csv{parquet_note}.")


def _cell_md(x):
    return _fmt(x).replace("|", "\\|")


def _markdown(blocks):
    out = []
    for kind, x in blocks:
        if kind == "table":
            lines = ["| " + " | ".join(map(str, x.columns)) + " |", "|" + "---|" * len(x.columns)]
            rows = ["| " + " | ".join(map(_cell_md, row)) + " |" for row in x.itertuples(index=False)]
            out.append("\n".join(lines + rows))
        elif kind == "examples":
            lines = ["| pair | content x style | method_a | method_b |", "|---|---|---|---|"]
            for e in x:
                images = " | ".join(f"![{m}]({src}) {m}" for m, src in e["images"])
                lines.append(f"| {e['pair']} | {e['cell']} | {images} |")
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{x}]({x})")
        else:
            out.append({"h1": "# ", "h2": "## ", "h3": "### ", "p": ""}[kind] + x)
    return "\n\n".join(out) + "\n"


def _cell_html(text):
    """Escaped text with line-break chances after '_', '/' and '–' (long file and method names)."""
    return re.sub(r"([_/–])", r"\1<wbr>", html.escape(text))


def _html_table(df):
    cells = [[_fmt(v) for v in row] for row in df.itertuples(index=False)]
    numeric = [bool(cells) and all(NUMBER.fullmatch(row[i]) for row in cells) for i in range(len(df.columns))]
    tag = lambda kind, i, text: f'<{kind}{" class=n" if numeric[i] else ""}>{_cell_html(text)}</{kind}>'  # noqa: E731
    head = "".join(tag("th", i, str(c)) for i, c in enumerate(df.columns))
    body = "".join("<tr>" + "".join(tag("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in cells)
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html(title, blocks):
    body = []
    for kind, x in blocks:
        if kind == "table":
            body.append(_html_table(x))
        elif kind == "examples":
            rows = "".join(
                f"<tr><td>{_cell_html(e['pair'])}</td><td>{_cell_html(e['cell'])}</td>"
                + "".join(f'<td><figure><img src="{html.escape(src)}" alt="{html.escape(m)}">'
                          f"<figcaption>{html.escape(m)}</figcaption></figure></td>" for m, src in e["images"])
                + "</tr>" for e in x)
            body.append('<div class="wide"><table class="examples"><thead><tr><th>pair</th><th>content x style</th>'
                        f"<th>method_a</th><th>method_b</th></tr></thead><tbody>{rows}</tbody></table></div>")
        elif kind == "img":
            body.append(f'<img src="{html.escape(x)}" alt="{html.escape(x)}">')
        else:
            body.append(f"<{kind}>{html.escape(x)}</{kind}>")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(results, votes, out_dir, settings, stimuli, power):
    """Write everything into out_dir (created); returns the paths written.
    settings: Store.study (name, n_trials, catch_rate, images_dir); stimuli: Store.stimuli;
    power: {"effect", "power", "alpha", "design" (study.power.Design), "spread_note"}: the minimum
    detectable effect (study.power.minimum_detectable_effect; NaN when none), and "recommended":
    study.power.recommended_participants for the study's design (a pilot banner when fewer participants
    were analysed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "votes.csv": votes, "pairs.csv": results.pairs, "pairs_by_style.csv": results.pairs_by_style,
        "pairs_by_content.csv": results.pairs_by_content, "strengths.csv": results.strengths,
        "participants.csv": results.participants, "flow.csv": results.flow,
        "response_times.csv": results.response_times, "spread.csv": results.spread,
        "position_bias.csv": pd.DataFrame([results.position]), "agreement.csv": results.agreement,
        "viewports.csv": results.viewports if results.viewports is not None else pd.DataFrame(),
        "feedback.csv": results.feedback,
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
    p, st = results.pairs, results.strengths
    _plot_intervals([f"{q}: {a} over {b}" for q, a, b in zip(p["question"], p["method_a"], p["method_b"])],
                    p["a_win_rate"], p["ci_low"], p["ci_high"], 0.5,
                    "win rate over decisive votes (sign-flip test inversion interval)", out / "pairs.png")
    _plot_intervals([f"{q}: {m}" for q, m in zip(st["question"], st["method"])], st["strength"], st["ci_low"],
                    st["ci_high"], 1 / st["method"].nunique(), "Bradley-Terry strength per question (sums to 1; "
                    "dashed: all equal)", out / "strengths.png")
    _plot_response_times(votes, results.participants, results.settings["fast_ms"], out / "response_times.png")
    examples = write_examples(results, votes, stimuli, settings.get("images_dir"), out)
    provenance = {"study": settings["name"], "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                  "code": code_version(), "sha256": sha256_file(out / "votes.csv")}
    design = design_table(settings, stimuli, results.pairs)
    wording = dict(settings.get("questions") or DEFAULT_QUESTIONS)
    blocks = list(_blocks(results, design, examples, power, provenance, parquet_note, wording, settings.get("debrief")))
    (out / "report.md").write_text(_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(_html(f"Preference study {settings['name']}", blocks), encoding="utf-8")
    images = [out / n for n in ("pairs.png", "strengths.png", "response_times.png")]
    return written + images + sorted((out / "examples").glob("*.jpg")) + [out / "report.md", out / "report.html"]
