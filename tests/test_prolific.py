"""study.prolific on hand-made tables: each decision, its exact reason and its boundary (the export, the
report and the command end to end: test_study_report)."""
from datetime import UTC, datetime

import pandas as pd
import pytest

from study.prolific import DECLINED, SCREENED_OUT, decide, read_export, write_lists
from study.store import Arrivals

COUNTS = ["n_trials", "n_votes", "n_catch", "n_catch_failed", "n_attention", "n_attention_failed", "median_rt_ms"]


def person(participant, completed=True, n_votes=10, n_catch=2, n_catch_failed=0, n_attention=2,
           n_attention_failed=0, median_rt_ms=2500.0):
    return {"participant": participant, "completed": completed, "n_trials": 10, "n_votes": n_votes, "n_catch": n_catch,
            "n_catch_failed": n_catch_failed, "n_attention": n_attention, "n_attention_failed": n_attention_failed,
            "median_rt_ms": median_rt_ms}


PEOPLE = {  # Prolific id -> the participant's record
    "good": person(1),
    "one-lapse": person(2, n_attention_failed=1),
    "two-lapses": person(3, n_attention_failed=2),
    "two-lapses-and-fast": person(4, n_attention_failed=2, median_rt_ms=300.0),
    "catch": person(5, n_catch_failed=1),
    "unfinished": person(6, completed=False, n_votes=4),
    "fast": person(7, median_rt_ms=999.0),
    "just-in-time": person(8, median_rt_ms=1000.0),
}


def decided(ids, **rules):
    participants = pd.DataFrame({"external_key": [f"h:{pid}" for pid in PEOPLE],
                                 "participant": [p["participant"] for p in PEOPLE.values()]})
    people = pd.DataFrame(list(PEOPLE.values()))
    arrivals = Arrivals(5, 1, datetime(2026, 1, 1, tzinfo=UTC), frozenset({"h:declined"}), 1, frozenset({"h:small"}))
    return decide(ids, lambda pid: f"h:{pid}", participants, people, arrivals, **rules).set_index("prolific_id")


def test_each_decision_and_its_reason():
    out = decided([*PEOPLE, "declined", "small", "stranger"])
    reasons = out["reason"].to_dict()
    assert out["decision"].to_dict() == {
        "good": "approve", "one-lapse": "review", "two-lapses": "reject", "two-lapses-and-fast": "reject",
        "catch": "review", "unfinished": "review", "fast": "review", "just-in-time": "approve",
        "declined": "review", "small": "review", "stranger": "review"}
    assert reasons["good"] == ("completed 10 trials, failed 0 of 2 attention checks, failed 0 of 2 catch trials, "
                               "median response time 2500 ms")
    assert reasons["one-lapse"] == "failed 1 of 2 attention checks"
    assert reasons["two-lapses"] == reasons["two-lapses-and-fast"] == "failed 2 of 2 attention checks"
    assert reasons["catch"] == "failed 1 of 2 catch trials (a data-quality exclusion, not grounds for a rejection)"
    assert reasons["unfinished"] == "incomplete: 4 of 10 trials answered"
    assert reasons["fast"] == "median response time 999 ms, under 1000 ms"
    assert (reasons["declined"], reasons["small"]) == (DECLINED, SCREENED_OUT)
    assert reasons["stranger"] == ("no participant of this study has this id (opened without the study link's "
                                   "PROLIFIC_PID, or another database or STUDY_SALT)")
    assert str(out["participant"].dtype) == "Int64" and out["participant"].isna().sum() == 3
    assert out["participant"].dropna().to_dict() == {pid: p["participant"] for pid, p in PEOPLE.items()}
    assert out.loc["unfinished", COUNTS].tolist() == [10, 4, 2, 0, 2, 0, 2500.0]
    assert all(str(out[c].dtype) == "Int64" for c in COUNTS[:-1])


def test_several_reasons_are_joined_and_the_rules_can_be_set():
    PEOPLE["sloppy"] = person(9, completed=False, n_votes=9, n_attention_failed=1, n_catch_failed=2, median_rt_ms=10.0)
    try:
        out = decided(["sloppy", "catch", "two-lapses", "fast"], reject_attention_failures=3, max_catch_failures=1,
                      fast_ms=500.0)
    finally:
        del PEOPLE["sloppy"]
    assert out.loc["sloppy", "reason"] == (
        "incomplete: 9 of 10 trials answered; failed 1 of 2 attention checks; failed 2 of 2 catch trials (a "
        "data-quality exclusion, not grounds for a rejection); median response time 10 ms, under 500 ms")
    assert out["decision"].tolist() == ["review", "approve", "review", "approve"]
    assert out.loc["two-lapses", "reason"] == "failed 2 of 2 attention checks"


def test_the_export_column_and_the_lists(tmp_path):
    export = tmp_path / "export.csv"
    export.write_text("Status,Participant id\nAPPROVED, b \nAWAITING REVIEW,007\nRETURNED,\nAPPROVED,b\n")
    assert read_export(export) == ["b", "007"]
    export.write_text("PROLIFIC_PID\nx\n")
    assert read_export(export) == ["x"]
    export.write_text("Participant id\n007\n0123\n")  # ids that look like numbers stay as written
    assert read_export(export) == ["007", "0123"]
    export.write_text("Status,Started at\nAPPROVED,now\n")
    with pytest.raises(ValueError) as refused:
        read_export(export)
    assert str(refused.value) == (f"{export}: no participant id column (looked for 'Participant id', 'participant_id' "
                                  "or 'PROLIFIC_PID'; found 'Status', 'Started at')")
    export.write_text("")
    with pytest.raises(ValueError) as refused:
        read_export(export)
    assert str(refused.value) == f"{export} is empty: download the submissions' CSV from Prolific again"
    paths = write_lists(decided(["good", "two-lapses", "fast", "stranger"]).reset_index(), tmp_path)
    assert [p.name for p in paths] == ["prolific_approve.csv", "prolific_reject.csv", "prolific_review.csv"]
    assert [pd.read_csv(p, dtype=str)["prolific_id"].tolist() for p in paths] == [["good"], ["two-lapses"],
                                                                                  ["fast", "stranger"]]
    assert all(pd.read_csv(p).columns.tolist() == ["prolific_id", "participant", "decision", "reason", *COUNTS]
               for p in paths)


def test_no_ids_make_an_empty_table_with_every_column():
    out = decided([]).reset_index()
    assert out.empty and out.columns.tolist() == ["prolific_id", "participant", "decision", "reason", *COUNTS]
