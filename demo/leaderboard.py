"""The Leaderboard tab: Bradley-Terry strengths from the Battle tab's blind votes only, counting the votes
study.counting lets through (no gallery pictures, no anomalous source, a cap per source; a source is one
network address on one UTC day).

A background thread computes the tables at start, then every REFRESH_S seconds (bootstrap over sources);
page views only read the latest copy."""
import sys
import threading
import time
from datetime import UTC, datetime

import gradio as gr
import pandas as pd

from study.analysis import MIN_PARTICIPANTS, AnalysisError, leaderboard
from study.counting import ALPHA, counted

from .gallery import gallery_sha256s

REFRESH_S = 60.0
N_BOOT = 1000
STARTING = "The votes are being counted: the leaderboard appears in a few seconds (reload the tab)."


def interval(low, high):
    """An interval as the tab shows it, or why there is none (study.analysis withholds it below MIN_PARTICIPANTS)."""
    return f"withheld: under {MIN_PARTICIPANTS} sources" if pd.isna(low) else f"{low:.3f} – {high:.3f}"


class Leaderboard:
    """The latest tables (`snapshot`), computed by a daemon thread now and every `interval_s` seconds.
    size_cap: the Battle tab's (its gallery pictures are recognised by their stored sha256);
    per_day: the votes counted per source (a network address on one UTC day)."""

    def __init__(self, store, label, size_cap, per_day, interval_s=REFRESH_S, n_boot=N_BOOT):
        self.store, self.label, self.per_day, self.n_boot = store, label, per_day, n_boot
        self.snapshot = (STARTING, None, None, None)
        threading.Thread(target=self._loop, args=(size_cap, interval_s), name="leaderboard", daemon=True).start()

    def _loop(self, size_cap, interval_s):
        gallery = gallery_sha256s(size_cap)
        while True:
            try:
                self.snapshot = self.compute(gallery)
            except Exception as exc:  # a database hiccup: keep the last tables and try again later
                print(f"leaderboard: {exc!r}", file=sys.stderr, flush=True)
            time.sleep(interval_s)

    def compute(self, gallery):
        """(summary, strengths, win-rate matrix, pair counts) as shown; tables None without enough votes.
        gallery: the sha256s of the gallery's pictures as stored."""
        battles = self.store.battles()
        votes, tally = counted(battles, gallery, self.per_day)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        head = (f"{tally['stored']} battle votes from {battles['voter'].nunique()} visitors and {tally['sources']} "
                f"sources, as of {stamp}. The ranking counts {tally['counted']}; left out: {tally['gallery']} on two "
                f"gallery pictures, {tally['anomalous']} from anomalous sources ({tally['anomalous_sources']}), "
                f"{tally['over_cap']} beyond {self.per_day} a day from one source.")
        try:
            board = leaderboard(votes, self.n_boot)
        except AnalysisError:
            return head + " Not enough counted votes yet: the ranking needs decisive votes (A or B) linking the models.", \
                None, None, None
        s = board["strengths"]
        strengths = pd.DataFrame({
            "rank": range(1, len(s) + 1), "model": s["method"].map(self.label),
            "strength": s["strength"].round(3),
            "95% interval": [interval(lo, hi) for lo, hi in zip(s["ci_low"], s["ci_high"])],
            "wins": s["wins"], "losses": s["losses"], "votes": s["votes"]})
        matrix = board["matrix"].rename(index=self.label, columns=self.label)
        matrix = (matrix * 100).round(0).astype("Int64").astype(str).replace("<NA>", "–").reset_index(names="row beats column, %")
        p = board["pairs"]
        pairs = pd.DataFrame({
            "model A": p["method_a"].map(self.label), "model B": p["method_b"].map(self.label),
            "votes": p["n_votes"], "sources": p["n_participants"], "A wins": p["a_wins"], "B wins": p["b_wins"],
            "ties": p["ties"], "both bad": p["both_bad"], "A win rate": p["a_win_rate"].round(3),
            "95% interval": [interval(lo, hi) for lo, hi in zip(p["ci_low"], p["ci_high"])]})
        return head, strengths, matrix, pairs


def build_leaderboard_tab(board):
    """Lays out the tab; returns the event listeners' function and outputs, for the tab's select event."""
    gr.Markdown(
        "Blind battle votes only (the Compare tab's votes, with names visible, are kept apart), and of those "
        "only the votes that one client cannot fake in bulk. A vote's **source** is the network address it came "
        "from on one UTC day. Counted: none on two **gallery pictures** (their battle pictures are "
        "recognisable after a few reveals: upload your own photo or painting for your vote to count); none "
        "from **anomalous sources**, whose decisive votes shift a model's wins away from what the other "
        f"sources' votes on the same pairs predict (a score test per model with Bennett's bound, p < {ALPHA}); "
        f"at most **{board.per_day} votes per source**. Strengths: Bradley-Terry, summing to 1, with 95% intervals "
        "from a bootstrap over sources (t interval, small-sample corrected); pair win rates with the interval of a "
        f"sign-flip test over sources; intervals are withheld with fewer than {MIN_PARTICIPANTS} sources. "
        f"Updated every {REFRESH_S:.0f} s.")
    summary = gr.Markdown(elem_id="leaderboard-summary")
    strengths = gr.Dataframe(label="Ranking", interactive=False, elem_id="leaderboard-ranking")
    matrix = gr.Dataframe(label="Win rate of the row model against the column model (decisive votes, %)",
                          interactive=False, elem_id="leaderboard-matrix")
    pairs = gr.Dataframe(label="Votes per pair", interactive=False, elem_id="leaderboard-pairs")

    def show():
        return board.snapshot

    return show, [summary, strengths, matrix, pairs]
