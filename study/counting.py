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

`counted` applies the rules to all votes (the leaderboard does so every minute); `counted_since` applies
them at once to the votes stored since, with the sources flagged then (a vote shows on the board at once).

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
from dataclasses import dataclass

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


STATUSES = ("counted", "gallery", "anomalous", "over_cap")  # what the counting made of a vote


@dataclass(frozen=True)
class Counted:
    """The counting of the battle votes up to id `last_id`: votes (those counted, with `voter` replaced by the
    source so that intervals resample sources), status (Series, index: battle id, values: STATUSES), flagged
    (the anomalous sources), sources and visitors (all seen)."""

    votes: pd.DataFrame
    status: pd.Series
    flagged: frozenset
    sources: frozenset
    visitors: frozenset
    last_id: int

    @property
    def tally(self):
        """{"stored", "sources", "gallery", "anomalous", "anomalous_sources", "over_cap", "counted"}: counts."""
        n = self.status.value_counts()
        return {"stored": len(self.status), "sources": len(self.sources), "gallery": int(n.get("gallery", 0)),
                "anomalous": int(n.get("anomalous", 0)), "anomalous_sources": len(self.flagged),
                "over_cap": int(n.get("over_cap", 0)), "counted": int(n.get("counted", 0))}


def _capped(b, on_gallery, anomalous, per_day, already=None):
    """(the votes of `b` the cap lets through, each vote's status): a source's first `per_day` votes of each
    UTC day count, after `already` (Series, index: (source, day)) counted before `b`."""
    rest = b[~on_gallery & ~anomalous].sort_values("id")
    keys = [rest["source"], rest["created_at"].dt.floor("D")]
    position = rest.groupby(keys).cumcount()
    if already is not None and len(rest):
        position += already.reindex(pd.MultiIndex.from_arrays(keys)).fillna(0).astype(int).to_numpy()
    within = position < per_day
    status = pd.Series(np.select([on_gallery, anomalous], ["gallery", "anomalous"], "counted"), index=b["id"])
    status.loc[rest.loc[~within, "id"].to_numpy()] = "over_cap"
    return rest[within], status


def counted(battles, gallery, per_day, alpha=ALPHA):
    """The Counted votes of `battles` (Store.battles()): every rule of the module. gallery: the sha256s of
    the gallery's pictures as stored."""
    b = battles.assign(source=sources(battles))
    on_gallery = b["content_sha256"].isin(gallery) & b["style_sha256"].isin(gallery)
    decisive = b[~on_gallery & b["choice"].isin(DECISIVE)]
    winner = np.where(decisive["choice"] == "left", decisive["left_method"], decisive["right_method"])
    flagged = anomalous_sources(pd.DataFrame({
        "source": decisive["source"], "low": decisive["method_low"], "high": decisive["method_high"],
        "low_won": (winner == decisive["method_low"]).astype(int)}), alpha) if len(decisive) else {}
    anomalous = b["source"].isin(list(flagged)) & ~on_gallery
    votes, status = _capped(b, on_gallery, anomalous, per_day)
    return Counted(votes.assign(voter=votes["source"]).drop(columns="source"), status, frozenset(flagged),
                   frozenset(b["source"]), frozenset(b["voter"]), int(b["id"].max()) if len(b) else 0)


def counted_since(previous, new, gallery, per_day):
    """`previous` (Counted) with the votes `new` (Store.battles(after=previous.last_id)) counted at once by the
    same rules, with the sources `previous` flagged as anomalous: a new flood is tested by the next `counted`
    (until then, the cap bounds what one source adds)."""
    b = new.assign(source=sources(new))
    on_gallery = b["content_sha256"].isin(gallery) & b["style_sha256"].isin(gallery)
    anomalous = b["source"].isin(list(previous.flagged)) & ~on_gallery
    old = previous.votes[previous.votes["voter"].isin(set(b["source"]))]
    already = old.groupby([old["voter"], old["created_at"].dt.floor("D")]).size()
    votes, status = _capped(b, on_gallery, anomalous, per_day, already)
    votes = votes.assign(voter=votes["source"]).drop(columns="source")
    return Counted(pd.concat([previous.votes, votes]) if len(votes) else previous.votes,
                   pd.concat([previous.status, status]) if len(status) else previous.status, previous.flagged,
                   previous.sources | frozenset(b["source"]), previous.visitors | frozenset(b["voter"]),
                   int(b["id"].max()) if len(b) else previous.last_id)
