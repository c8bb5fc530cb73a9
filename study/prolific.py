"""Approve, reject or review Prolific submissions from the study's records.

Prolific exports a CSV of its submissions with a participant id column ("Participant id" in the
current export, "participant_id" in older ones). The database holds only salted hashes of those ids
(Store.hash_id), so the export's ids are hashed with the same salt and matched to participants;
the raw ids are read from the export and written only to the lists made here.
"""
import re
from pathlib import Path

import pandas as pd

ID_COLUMNS = ("participantid", "prolificpid", "prolificid")  # header names, lower case, letters only
DECISIONS = ("approve", "reject", "review")
DECLINED = "declined consent: they should return this submission on Prolific; ask them to if they have not"
SCREENED_OUT = ("screened out (screen too small) before consent: they should return this submission on Prolific, or "
                "enter the screen-out code; ask them to if they have not")


def read_export(path):
    """The unique participant ids of a Prolific export CSV, in file order, as written (text: "007" stays
    "007"); ValueError naming the columns when none holds the ids, or for an empty file."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty: download the submissions' CSV from Prolific again") from None
    names = {re.sub(r"[^a-z]", "", c.lower()): c for c in table.columns}
    column = next((names[k] for k in ID_COLUMNS if k in names), None)
    if column is None:
        raise ValueError(f"{path}: no participant id column (looked for 'Participant id', 'participant_id' or "
                         f"'PROLIFIC_PID'; found {', '.join(map(repr, table.columns))})")
    ids = table[column].str.strip()
    return list(dict.fromkeys(i for i in ids if i))


def decide(ids, hash_id, participants, people, arrivals, reject_attention_failures=2, max_catch_failures=0,
           fast_ms=1000.0):
    """One decision per Prolific id: DataFrame of prolific_id, participant (None when unmatched),
    decision (approve, reject or review) and reason, with n_trials, n_votes, n_catch, n_catch_failed,
    n_attention, n_attention_failed and median_rt_ms.

    ids: from read_export; hash_id: id -> salted hash (Store.hash_id of PROLIFIC_PID); participants:
    load_participants; people: the analysis' participant_table (its median_rt_ms reads the server's
    time); arrivals: load_arrivals (who declined consent or was screened out). Reject, as Prolific allows:
    at least reject_attention_failures failed attention checks (instructed-response trials), and only
    that. Review: declined consent or screened out (and never enrolled), not in the study, incomplete,
    any failed attention check below the reject count, more than max_catch_failures failed catch
    trials (an image check: a data-quality exclusion, never a rejection), or a median response time under
    fast_ms. Approve: the rest."""
    by_key = dict(zip(participants["external_key"], participants["participant"]))
    stats = people.set_index("participant")
    rows = []
    for pid in ids:
        key = hash_id(pid)
        participant = by_key.get(key)
        if participant is None:
            reason = (DECLINED if key in arrivals.declined_keys else SCREENED_OUT if key in arrivals.screened_keys else
                      "no participant of this study has this id (opened without the study link's PROLIFIC_PID, "
                      "or another database or STUDY_SALT)")
            rows.append({"prolific_id": pid, "participant": None, "decision": "review", "reason": reason})
            continue
        s = stats.loc[participant]
        catch = f"failed {s.n_catch_failed} of {s.n_catch} catch trials"
        attention = f"failed {s.n_attention_failed} of {s.n_attention} attention checks"
        review = []
        if not s.completed:
            review.append(f"incomplete: {s.n_votes} of {s.n_trials} trials answered")
        if 0 < s.n_attention_failed < reject_attention_failures:
            review.append(attention)
        if s.n_catch_failed > max_catch_failures:
            review.append(catch + " (a data-quality exclusion, not grounds for a rejection)")
        if s.median_rt_ms < fast_ms:
            review.append(f"median response time {s.median_rt_ms:.0f} ms, under {fast_ms:g} ms")
        if s.n_attention_failed >= reject_attention_failures:
            decision, reason = "reject", attention
        elif review:
            decision, reason = "review", "; ".join(review)
        else:
            decision = "approve"
            reason = (f"completed {s.n_trials} trials, {attention}, {catch}, median response time "
                      f"{s.median_rt_ms:.0f} ms")
        rows.append({"prolific_id": pid, "participant": int(participant), "decision": decision, "reason": reason})
    out = pd.DataFrame(rows, columns=["prolific_id", "participant", "decision", "reason"])
    out["participant"] = out["participant"].astype("Int64")
    columns = ["n_trials", "n_votes", "n_catch", "n_catch_failed", "n_attention", "n_attention_failed", "median_rt_ms"]
    out = out.merge(people[["participant", *columns]], on="participant", how="left")
    return out.astype({c: "Int64" for c in columns[:-1]})


def write_lists(decisions, out_dir):
    """prolific_approve.csv, prolific_reject.csv and prolific_review.csv in out_dir (each with its
    header, possibly no rows); returns the paths."""
    paths = []
    for decision in DECISIONS:
        path = Path(out_dir) / f"prolific_{decision}.csv"
        decisions[decisions["decision"] == decision].to_csv(path, index=False)
        paths.append(path)
    return paths
