"""The Leaderboard tab: Bradley-Terry strengths from the Battle tab's blind votes only.

The tables are computed once at start, then by a background thread every REFRESH_S seconds
(bootstrap over visitors); page views only read the latest copy."""
import sys
import threading
import time
from datetime import UTC, datetime

import gradio as gr
import pandas as pd

from study.analysis import MIN_PARTICIPANTS, AnalysisError, leaderboard

REFRESH_S = 60.0
N_BOOT = 1000


def interval(low, high):
    """An interval as the tab shows it, or why there is none (study.analysis withholds it below MIN_PARTICIPANTS)."""
    return f"withheld: under {MIN_PARTICIPANTS} visitors" if pd.isna(low) else f"{low:.3f} – {high:.3f}"


class Leaderboard:
    """The latest tables (`snapshot`): computed now, then by a daemon thread every `interval_s` seconds."""

    def __init__(self, store, label, interval_s=REFRESH_S, n_boot=N_BOOT):
        self.store, self.label, self.n_boot = store, label, n_boot
        self.snapshot = self.compute()
        threading.Thread(target=self._loop, args=(interval_s,), name="leaderboard", daemon=True).start()

    def _loop(self, interval_s):
        while True:
            time.sleep(interval_s)
            try:
                self.snapshot = self.compute()
            except Exception as exc:  # a database hiccup: keep the last tables and try again later
                print(f"leaderboard: {exc!r}", file=sys.stderr, flush=True)

    def compute(self):
        """(summary, strengths, win-rate matrix, pair counts) as shown; tables None without enough votes."""
        battles = self.store.battles()
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        head = f"{len(battles)} battle votes from {battles['voter'].nunique()} visitors, as of {stamp}."
        try:
            board = leaderboard(battles, self.n_boot)
        except AnalysisError:
            return head + " Not enough votes yet: the ranking needs decisive votes (A or B) linking the models.", \
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
            "votes": p["n_votes"], "visitors": p["n_participants"], "A wins": p["a_wins"], "B wins": p["b_wins"],
            "ties": p["ties"], "both bad": p["both_bad"], "A win rate": p["a_win_rate"].round(3),
            "95% interval": [interval(lo, hi) for lo, hi in zip(p["ci_low"], p["ci_high"])]})
        return head, strengths, matrix, pairs


def build_leaderboard_tab(board):
    """Lays out the tab; returns the event listeners' function and outputs, for the tab's select event."""
    gr.Markdown("Blind battle votes only (the Compare tab's votes, with names visible, are kept apart). "
                "Strengths: Bradley-Terry, summing to 1, with 95% intervals from a bootstrap over visitors (t "
                "interval, small-sample corrected); pair win rates with the interval of a sign-flip test over "
                f"visitors; intervals are withheld with fewer than {MIN_PARTICIPANTS} visitors. "
                f"Updated every {REFRESH_S:.0f} s.")
    summary = gr.Markdown(elem_id="leaderboard-summary")
    strengths = gr.Dataframe(label="Ranking", interactive=False, elem_id="leaderboard-ranking")
    matrix = gr.Dataframe(label="Win rate of the row model against the column model (decisive votes, %)",
                          interactive=False, elem_id="leaderboard-matrix")
    pairs = gr.Dataframe(label="Votes per pair", interactive=False, elem_id="leaderboard-pairs")

    def show():
        return board.snapshot

    return show, [summary, strengths, matrix, pairs]
