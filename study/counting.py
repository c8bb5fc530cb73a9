"""Which Battle votes the leaderboard counts, so that no single client can move it.

A vote's source is the network address it came from, as a pseudonym of the day (demo.pseudonyms; for
votes stored before sources were kept, the visitor). Visitor ids cost nothing (every API session is a new
one); addresses do. In order:

1. Votes on two gallery pictures (content and style both from examples/) are left out: the battle
   pictures of those inputs are known after a few reveals, so their votes need not be blind.
2. Anomalous sources are left out: a source whose decisive votes (all of them, so that a flood gives
   itself away) shift one method's wins away from what the other sources' votes on the same pairs
   predict (`anomalous_sources`).
3. Of the rest, a source's first `per_day` votes of each UTC day count; the others are kept, not counted.

The anomaly test is the score test of "this source moves method m's Bradley-Terry strength", the effect
rigging is after. For each pair (m, o) the source voted on, q = P(m wins) from the other sources' decisive
votes on that pair (Laplace-smoothed, (S + 1) / (N + 2)); over the source's k votes on it, W wins of m:
    U_m = sum over pairs of (W - k q),   V_m = sum over pairs of k q (1 - q) (1 + k / (N + 2))
(V_m: the binomial variance, widened by the uncertainty of q estimated from N votes). Bennett's
inequality for a sum of independent terms at most 1 above their means bounds P(U_m >= u) by
exp(-V_m h(u / V_m)), h(x) = (1 + x) log(1 + x) - x, at any number of votes (a normal approximation is
not valid for a few votes against a lopsided pair); doubled (either direction) and times the number of
methods (Bonferroni), it is the source's p-value.
Sources are flagged one at a time, the most anomalous first, each time against the history without the
sources already flagged, while a p-value is below ALPHA. Chatbot Arena's alternative, a p-value per vote
under the pair's history combined per voter, sees nothing in votes that always favour the model the crowd
already prefers (each vote is then a likely one), which still moves that model's strength."""
import numpy as np
import pandas as pd

ALPHA = 0.01  # a source's p-value below this leaves its votes out (simulated honest sources: README)
DECISIVE = ("left", "right")


def sources(battles):
    """Each vote's source (Series): its address's pseudonym, else "visitor:" + its visitor hash."""
    return battles["source"].where(battles["source"].notna(), "visitor:" + battles["voter"])


def p_values(decisive, flagged=()):
    """Each source's p-value (Series, index: source) against the decisive votes of the sources not in
    `flagged`. decisive: columns source, low, high (the pair, alphabetical), low_won (0 or 1)."""
    g = decisive.groupby(["source", "low", "high"])["low_won"].agg(k="size", w="sum").reset_index()
    own = ~g["source"].isin(list(flagged))
    totals = g[own].groupby(["low", "high"], as_index=False)[["k", "w"]].sum()
    g = g.merge(totals, on=["low", "high"], how="left", suffixes=("", "_all")).fillna({"k_all": 0, "w_all": 0})
    n = g["k_all"] - g["k"] * own  # the pair's votes from the other counted sources
    q = (g["w_all"] - g["w"] * own + 1) / (n + 2)
    g["d"] = g["w"] - g["k"] * q
    g["v"] = g["k"] * q * (1 - q) * (1 + g["k"] / (n + 2))
    per_method = pd.concat([
        g[["source", "low", "d", "v"]].rename(columns={"low": "method"}),
        g[["source", "high", "v"]].assign(d=-g["d"]).rename(columns={"high": "method"}),
    ]).groupby(["source", "method"])[["d", "v"]].sum()
    x = per_method["d"].abs() / per_method["v"]
    methods = len(set(g["low"]) | set(g["high"]))
    bound = 2 * methods * np.exp(-per_method["v"] * ((1 + x) * np.log1p(x) - x))
    return bound.clip(upper=1.0).groupby(level="source").min()


def anomalous_sources(decisive, alpha=ALPHA):
    """{source: p-value} of the sources flagged as anomalous (see the module), most anomalous first."""
    flagged = {}
    while True:
        p = p_values(decisive, flagged).drop(list(flagged))
        p = p[p < alpha]
        if p.empty:
            return flagged
        flagged[p.idxmin()] = float(p.min())


def counted(battles, gallery, per_day, alpha=ALPHA):
    """(the votes of `battles` (Store.battles()) the leaderboard counts, with `voter` replaced by the source
    so that intervals resample sources; the tally {"stored", "sources", "gallery", "anomalous",
    "anomalous_sources", "over_cap", "counted"}). gallery: the sha256s of the gallery's pictures as stored."""
    b = battles.assign(source=sources(battles))
    tally = {"stored": len(b), "sources": b["source"].nunique()}
    on_gallery = b["content_sha256"].isin(gallery) & b["style_sha256"].isin(gallery)
    tally["gallery"] = int(on_gallery.sum())
    b = b[~on_gallery]
    decisive = b[b["choice"].isin(DECISIVE)]
    winner = np.where(decisive["choice"] == "left", decisive["left_method"], decisive["right_method"])
    flagged = anomalous_sources(pd.DataFrame({
        "source": decisive["source"], "low": decisive["method_low"], "high": decisive["method_high"],
        "low_won": (winner == decisive["method_low"]).astype(int)}), alpha) if len(decisive) else {}
    anomalous = b["source"].isin(list(flagged))
    tally.update(anomalous=int(anomalous.sum()), anomalous_sources=len(flagged))
    b = b[~anomalous].sort_values("id")
    within = b.groupby([b["source"], b["created_at"].dt.floor("D")]).cumcount() < per_day
    tally.update(over_cap=int((~within).sum()), counted=int(within.sum()))
    return b[within].assign(voter=lambda d: d["source"]).drop(columns="source"), tally
