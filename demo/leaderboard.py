"""The Leaderboard tab: Bradley-Terry strengths from the Battle tab's blind votes only, counting the votes
study.counting lets through (no gallery pair, no anomalous source, a cap per source; a source is one
network address on one UTC day); one board of all counted votes and one per gallery painting.

A background thread counts every vote and computes the intervals, ranks and pair tests at start, then
every REFRESH_S seconds (bootstraps over sources). A page view counts the votes stored since at once
(study.counting.counted_since: one read of the new rows), adds them to each board's vote tally and refits
the point strengths of the board it shows from its tally (an M x M fit, no bootstrap): a visitor's own
vote shows on their next view, and what a vote costs does not grow with the number of viewers."""
import html
import sys
import threading
from datetime import UTC, datetime

import gradio as gr
import pandas as pd

from study.analysis import (
    MIN_PARTICIPANTS,
    AnalysisError,
    battle_counts,
    battle_pairs,
    battle_strengths,
    interval_ranks,
    tally_strengths,
    vote_tally,
)
from study.counting import ALPHA, counted, counted_since

from .gallery import gallery_paintings, gallery_sha256s
from .security import PAGE_EVENT
from .session import visitor

REFRESH_S = 60.0
N_BOOT = 1000
MIN_VOTES = 20  # counted votes (ties and both bad included) a model needs to be ranked; below: provisional
ALL = "all"  # the board of every counted vote (the others are keyed by a painting's sha256 as stored)
ALL_LABEL = "All paintings"
STARTING = "The votes are being counted: the leaderboard appears in a few seconds (open the tab again)."
NOT_COUNTED = ("The votes could not be counted (the server logged why): the leaderboard tries again every "
               f"{REFRESH_S:.0f} s.")
EMPTY = ("No battle votes yet. Play a battle on the Battle tab with your own photo or painting: the "
         "leaderboard starts with the first votes.")
TABLE_CSS = """
table { width: 100%; border-collapse: collapse; font-size: var(--text-md); }
th, td { padding: 4px 6px; border-bottom: 1px solid var(--border-color-primary); text-align: left;
         vertical-align: top; overflow-wrap: break-word; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
small { color: var(--body-text-color-subdued); }
@media (max-width: 600px) { table { font-size: var(--text-sm); } th, td { padding: 3px 3px; } }
"""
HTML_TEMPLATE = "${value ? value.html : ''}"  # the value: {"html": the table, "rows": its cells, for API clients}


def interval(low, high):
    """An interval as the tab shows it, or why there is none (study.analysis withholds it below MIN_PARTICIPANTS)."""
    return f"withheld: under {MIN_PARTICIPANTS} sources" if pd.isna(low) else f"{low:.3f} – {high:.3f}"


def percent(rate):
    return "–" if pd.isna(rate) else f"{rate:.0%}"


def rate_interval(low, high):
    """A win rate's interval in percent, or why there is none."""
    return f"withheld: under {MIN_PARTICIPANTS} sources" if pd.isna(low) else f"{low:.0%} – {high:.0%}"


def table(rows, header, cells):
    """{"html", "rows"} of a table: `header` (column titles), `cells(row)` -> the row's HTML cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(cells(r))}</tr>" for r in rows)
    return {"html": f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>", "rows": rows}


def established(tally):
    """The methods with MIN_VOTES or more votes in `tally` (a vote_tally of counted votes): those the strengths
    are fitted on."""
    counts = battle_counts(tally)
    return set(counts.loc[counts["votes"] >= MIN_VOTES, "method"])


def votes_among(votes, methods):
    """The votes between two of `methods`."""
    return votes[votes["left_method"].isin(methods) & votes["right_method"].isin(methods)]


def tally_among(tally, methods):
    """The vote_tally of the votes between two of `methods`."""
    return tally[tally.index.get_level_values("left_method").isin(methods)
                 & tally.index.get_level_values("right_method").isin(methods)]


def ranking(counts, live, full, label):
    """The ranking rows of a board, ranked models first. counts: battle_counts of the votes counted now;
    live: their battle_strengths without intervals among the methods the last full count established (None:
    no fit); full: that count's battle_strengths with intervals (None: no fit). A model is ranked when the last
    full count gave it an interval; its rank is 1 + the number of ranked models whose interval lies entirely
    above its own. The others are provisional (their strengths, if fitted, without a rank). Within a rank, rows
    go by strength as shown (3 decimals), votes, then name: an order that a refit cannot flip."""
    s = counts.set_index("method").join(columns(live, ["strength"])).join(columns(full, ["ci_low", "ci_high"]))
    s["ranked"] = s["ci_low"].notna() & s["strength"].notna()
    s.loc[s["ranked"], "rank"] = interval_ranks(s.loc[s["ranked"], "ci_low"], s.loc[s["ranked"], "ci_high"])
    s = s.reset_index().assign(shown=lambda d: d["strength"].round(3))  # equal as shown: by votes, then name
    s = s.sort_values(["ranked", "rank", "shown", "votes", "method"], ascending=[False, True, False, False, True])
    return [{"rank": int(r.rank) if r.ranked else "provisional", "model": label(r.method),
             "strength": "–" if pd.isna(r.strength) else f"{r.strength:.3f}", "95% interval": interval_text(r),
             "wins": int(r.wins), "losses": int(r.losses), "votes": int(r.votes)} for r in s.itertuples()]


def columns(fit, names):
    """The columns `names` of a battle_strengths table by method (empty when there is no fit)."""
    return fit.set_index("method")[names] if fit is not None else pd.DataFrame(columns=names, dtype=float)


def interval_text(row):
    """A ranking row's interval, or why it has none: too few votes, not yet counted in full, too few sources."""
    if row.votes < MIN_VOTES:
        return f"provisional: {row.votes} of {MIN_VOTES} votes"
    if pd.isna(row.strength):
        return f"ranked at the next full count (every {REFRESH_S:.0f} s)"
    return interval(row.ci_low, row.ci_high)


def ranking_table(rows):
    def cells(r):
        rank = "–" if r["rank"] == "provisional" else str(r["rank"])
        return [f"<td class='n'>{rank}</td>", f"<td>{html.escape(r['model'])}</td>",
                f"<td class='n'>{r['strength']}<br><small>{html.escape(r['95% interval'])}</small></td>",
                f"<td class='n'>{r['wins']} – {r['losses']}</td>", f"<td class='n'>{r['votes']}</td>"]
    return table(rows, ["Rank", "Model", "Strength (95% interval)", "Wins – losses", "Votes"], cells)


def pairs_table(pairs, label):
    rows = [{"model A": label(p.method_a), "model B": label(p.method_b), "votes": int(p.n_votes),
             "sources": int(p.n_participants), "A wins": int(p.a_wins), "B wins": int(p.b_wins), "ties": int(p.ties),
             "both bad": int(p.both_bad), "A win rate": percent(p.a_win_rate),
             "95% interval": rate_interval(p.ci_low, p.ci_high)} for p in pairs.itertuples()]

    def cells(r):
        return [f"<td>{html.escape(r['model A'])}<br><small>against</small> {html.escape(r['model B'])}</td>",
                f"<td class='n'>{r['votes']}<br><small>{r['sources']} sources</small></td>",
                f"<td class='n'>{r['A wins']} / {r['B wins']} / {r['ties']} / {r['both bad']}</td>",
                f"<td class='n'>{r['A win rate']}<br><small>{html.escape(r['95% interval'])}</small></td>"]
    return table(rows, ["Pair", "Votes", "A / B / tie / both bad", "A's win rate (95%)"], cells)


class Leaderboard:
    """The boards, counted by a daemon thread now and every `interval_s` seconds, and brought up to date
    with the votes stored since on each view (`view`). size_cap: the Battle tab's (its gallery pictures are
    recognised by their stored sha256); per_day: the votes counted per source (an address on one UTC day)."""

    def __init__(self, store, label, size_cap, per_day, interval_s=REFRESH_S, n_boot=N_BOOT):
        self.store, self.label, self.per_day, self.n_boot = store, label, per_day, n_boot
        self.lock = threading.Lock()  # guards the counting, the full count's tables and the live fits
        self.counting = None  # study.counting.Counted, up to the last vote seen
        self.full = None  # {"boards": {board: {"methods": established, "fit": battle_strengths}}, "pairs", "at"}
        self.tallies = {}  # board -> vote_tally of the votes counted now
        self.live = {}  # board -> (battle_counts, tally_strengths or None) of the votes counted now
        self.gallery, self.paintings = set(), {}
        self.failed = False  # whether a full count failed (the tab says so until one succeeds)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, args=(size_cap, interval_s), name="leaderboard", daemon=True)
        self.thread.start()

    def _loop(self, size_cap, interval_s):
        while not self.stopped.is_set():
            try:
                self.gallery, self.paintings = gallery_sha256s(size_cap), gallery_paintings(size_cap)  # cached
                self.count_all()
            except Exception as exc:  # a database or file hiccup: keep the last tables and try again later
                print(f"leaderboard: {exc!r}", file=sys.stderr, flush=True)
                self.failed = True
            self.stopped.wait(interval_s)

    def close(self):
        """Stop the counting thread (after the count in progress, if any)."""
        self.stopped.set()
        self.thread.join()

    def tallies_of(self, votes):
        """{board: vote_tally} of counted `votes`: all of them, and those on each gallery painting."""
        tallies = {ALL: vote_tally(votes)}
        on_paintings = votes[votes["style_sha256"].isin(list(self.paintings))]
        tallies.update({sha: vote_tally(v) for sha, v in on_paintings.groupby("style_sha256")})
        return tallies

    @staticmethod
    def fitted(fit, *args):
        """fit(*args), None when the votes do not link two methods (AnalysisError)."""
        try:
            return fit(*args)
        except AnalysisError:
            return None

    def count_all(self):
        """Every rule over every vote; for each board the methods established and their strengths with
        intervals; the pair tests of all counted votes."""
        counting = counted(self.store.battles(), self.gallery, self.per_day)
        votes, tallies, boards = counting.votes, self.tallies_of(counting.votes), {}
        for board, tally in tallies.items():
            methods = established(tally)
            on_board = votes_among(votes if board == ALL else votes[votes["style_sha256"] == board], methods)
            boards[board] = {"methods": methods, "fit": self.fitted(battle_strengths, on_board, self.n_boot)}
        full = {"boards": boards, "pairs": battle_pairs(votes), "at": datetime.now(UTC)}
        with self.lock:
            self.counting, self.tallies, self.full, self.live = counting, tallies, full, {}

    def view(self, board, session):
        """(summary markdown, ranking table, pairs table, the board choices, the board shown: `board`, or all
        votes if it has no counted vote) as of now. session: the page's (its visitor's votes are summed up)."""
        with self.lock:
            if self.counting is None:
                return NOT_COUNTED if self.failed else STARTING, None, None, [(ALL_LABEL, ALL)], ALL
            new = self.store.battles(after=self.counting.last_id)
            if len(new):
                self.count_since(new)
            counting, full = self.counting, self.full
            choices = self.choices()
            board = board if board in {value for _, value in choices} else ALL
            known = full["boards"].get(board, {"methods": set(), "fit": None})
            if board not in self.live:
                tally = self.tallies[board]
                self.live[board] = (battle_counts(tally),
                                    self.fitted(tally_strengths, tally_among(tally, known["methods"])))
            counts, live = self.live[board]
        summary = self.summary(counting, full, board, counts, live is not None) + self.mine(counting, session)
        if counts.empty:
            return summary, None, None, choices, board
        rows = ranking(counts, live, known["fit"], self.label)
        pairs = pairs_table(full["pairs"], self.label) if board == ALL and len(full["pairs"]) else None
        return summary, ranking_table(rows), pairs, choices, board

    def show(self, board, session):
        """`view` as the tab's updates: the summary, the ranking and pair tables, and the board menu."""
        text, rows, pair_rows, choices, shown = self.view(board, session)
        return text, rows, pair_rows, gr.Dropdown(choices=choices, value=shown)

    def count_since(self, new):
        """Counts the votes `new` (stored after the last seen) into the counting and the boards' tallies."""
        before = len(self.counting.votes)
        self.counting = counted_since(self.counting, new, self.gallery, self.per_day)
        for board, tally in self.tallies_of(self.counting.votes.iloc[before:]).items():
            self.tallies[board] = tally.add(self.tallies[board], fill_value=0) if board in self.tallies else tally
        self.live = {}

    def choices(self):
        """The boards to choose from: all counted votes, and each gallery painting with counted votes."""
        return [(ALL_LABEL, ALL)] + [(f"{title} ({int(self.tallies[sha].sum())} votes)", sha)
                                     for sha, title in self.paintings.items() if sha in self.tallies]

    def summary(self, counting, full, board, counts, fitted):
        """The board's counts and state in words. counts: its battle_counts now; fitted: whether it has strengths."""
        t = counting.tally
        if not t["stored"]:
            return EMPTY
        text = (f"{t['stored']} battle votes from {len(counting.visitors)} visitors and {t['sources']} sources. "
                f"The ranking counts {t['counted']}; left out: {t['gallery']} on two gallery pictures, "
                f"{t['anomalous']} from anomalous sources ({t['anomalous_sources']}), {t['over_cap']} beyond "
                f"{self.per_day} a day from one source.")
        if board != ALL:
            text += f" This board: the {counts['votes'].sum() // 2} counted votes on {self.paintings[board]}."
        if not t["counted"]:
            text += " No vote is counted yet: the ranking starts with the first vote on your own photo or painting."
        elif not fitted and (counts["votes"] >= MIN_VOTES).sum() >= 2:
            text += (f" The models with {MIN_VOTES} counted votes are ranked at the next full count (every "
                     f"{REFRESH_S:.0f} s); until then every model is provisional.")
        elif not fitted:
            text += (f" No ranking yet: it needs two models with {MIN_VOTES} counted votes each and decisive votes "
                     "(A or B) between them; until then every model is provisional.")
        else:
            text += (f" Strengths, wins and votes include every vote up to now; intervals and ranks as of "
                     f"{full['at']:%H:%M:%S} UTC (recomputed every {REFRESH_S:.0f} s).")
        return text

    def mine(self, counting, session):
        """What became of the visitor's own votes (a paragraph), or "" before their first."""
        if not (session or {}).get("visitor"):
            return ""
        status = counting.status.reindex(self.store.battle_ids(visitor(session))).value_counts()
        if status.empty:
            return ""
        why = {"gallery": "on two gallery pictures", "anomalous": "from an anomalous source",
               "over_cap": f"beyond {self.per_day} a day from your address"}
        left_out = [f"{status[s]} {text}" for s, text in why.items() if s in status.index]
        return (f"\n\n**Your votes**: {int(status.sum())}, of which {int(status.get('counted', 0))} counted"
                + (f" (not counted: {', '.join(left_out)})" if left_out else "") + ".")


def build_leaderboard_tab(board, session):  # pragma: no mutate block (layout and wiring: the launched app's tests)
    """Lays out the tab; returns the event listeners' function (Leaderboard.show), inputs and outputs, for the
    tab's select event (the board choice changes them too)."""
    choice = gr.Dropdown([(ALL_LABEL, ALL)], value=ALL, label="Board", elem_id="leaderboard-board")
    summary = gr.Markdown(elem_id="leaderboard-summary")
    ranked = gr.HTML(None, html_template=HTML_TEMPLATE, css_template=TABLE_CSS, js_on_load=None,
                     elem_id="leaderboard-ranking")
    pairs = gr.HTML(None, html_template=HTML_TEMPLATE, css_template=TABLE_CSS, js_on_load=None,
                    elem_id="leaderboard-pairs")
    gr.Markdown(
        "### How the votes are counted and ranked\n"
        "Blind battle votes only (the Compare tab's votes, with names visible, are kept apart), and of those "
        "only the votes that one client cannot fake in bulk. A vote's **source** is the network address it came "
        "from on one UTC day. Counted: none on two **gallery pictures** (a gallery photo with a gallery painting: "
        "their battle pictures are recognisable after a few reveals; upload your own photo or painting for your "
        "vote to count); none from **anomalous sources**, whose decisive votes shift a model's wins away from "
        "what the other sources' votes on the same pairs predict (a score test per model with Bennett's bound, "
        f"p < {ALPHA}); at most **{board.per_day} votes per source**. Strengths: Bradley-Terry, summing to 1, "
        "with 95% intervals from a bootstrap over sources (t interval, small-sample corrected); pair win rates "
        f"with the interval of a sign-flip test over sources; intervals are withheld with fewer than "
        f"{MIN_PARTICIPANTS} sources. A model is **ranked** once it has {MIN_VOTES} counted votes and an "
        "interval; until then it is listed as **provisional**. Its rank is 1 + the number of ranked models "
        "whose interval lies entirely above its own, so models whose intervals overlap share a rank. "
        "**Per painting**: the counted votes whose painting is that gallery painting (with your own photo).")

    outputs = [summary, ranked, pairs, choice]
    choice.input(board.show, [choice, session], outputs, api_name="leaderboard_board", **PAGE_EVENT)
    return board.show, [choice, session], outputs
