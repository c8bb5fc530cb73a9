"""A planted study through the real store (images made from the example photos, two questions, a practice
trial and attention checks, participants who each have their own preference, careless, inattentive,
fast, incomplete and absent ones, a screened-out and a declining visitor, a Prolific export): the
participant flow and its options, the Prolific approval lists, and the report, read in headless Chromium."""
import hashlib
import html
import random
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter, ImageOps

from study.analysis import Rules, analyze
from study.analyze import main as analyze_main
from study.prepare import output_name, register
from study.prolific import DECISIONS, DECLINED, SCREENED_OUT, read_export
from study.store import CATCH, Store, load_participants, load_votes

ROOT = Path(__file__).parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
METHODS = ("a2k_free", "adain", "all2all_free")
TRUTH = {("a2k_free", "adain"): 0.75, ("a2k_free", "all2all_free"): 0.7, ("adain", "all2all_free"): 0.5}
SPREAD = 0.15
N_TRIALS, CATCH_RATE, ATTENTION_RATE = 12, 1 / 6, 1 / 6  # 2 catch trials, 2 attention checks, 8 method trials
QUESTIONS = [("overall", "Which is better?"), ("style", "Which is more like the painting?")]
# participant kinds, in enrolment order: how many, and how they answer
KINDS = {"good": 24, "careless": 2, "inattentive": 2, "slip": 1, "fast": 2, "quitter": 2, "absent": 1}
UNKNOWN_ID, LEFT_OUT = "5f0000000000000000000000", "PID-good-0"  # in the export only / in the study only
DECLINED_ID = "5f0000000000000000000001"  # in the export; opened the link and declined consent
SCREENED_ID = "5f0000000000000000000002"  # in the export; opened the link, its screen too small


def make_images(root):
    """Two photos x two paintings from examples/, and one 'stylisation' per method made with PIL."""
    contents = sorted((ROOT / "examples" / "contents").glob("*.jpg"))[:2]
    styles = sorted((ROOT / "examples" / "styles").glob("*.jpg"))[:2]
    images = root / "images"
    images.mkdir()
    for c in contents:
        for s in styles:
            with Image.open(c) as photo, Image.open(s) as painting:
                photo = ImageOps.fit(photo.convert("RGB"), (192, 144))
                paint = ImageOps.fit(painting.convert("RGB"), (192, 144))
            looks = {"a2k_free": Image.blend(photo, paint, 0.45),
                     "adain": Image.blend(photo, paint, 0.65).filter(ImageFilter.SMOOTH_MORE),
                     "all2all_free": ImageOps.posterize(Image.blend(photo, paint, 0.5), 3)}
            for method, im in looks.items():
                im.save(images / output_name(c, s, method))
    return contents, styles, images


def answer(kind, rng, left, right, preference, instructed):
    """(choice, response time in ms) of a participant of this kind; careless ones pick catch images but read
    the attention checks, inattentive ones the reverse."""
    fast = kind == "fast"
    rt = int(rng.lognormal(np.log(400 if fast else 1600), 0.3))
    if instructed:
        return ("left" if kind == "inattentive" else instructed), rt
    if CATCH in (left, right):
        broken = "left" if left == CATCH else "right"
        other = "right" if broken == "left" else "left"
        return (broken if kind == "careless" else other), rt
    if kind == "careless":
        return ("left" if rng.random() < 0.5 else "right"), rt
    if rng.random() < 0.05:
        return "tie", rt
    a, b = sorted((left, right))
    a_chosen = rng.random() < preference[a, b]
    return ("left" if a_chosen == (left == a) else "right"), rt


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """(root, database path, {kind: [Prolific ids]}, export path) of the finished planted study."""
    root = tmp_path_factory.mktemp("planted")
    contents, styles, images = make_images(root)
    db = root / "study.db"
    rng = np.random.default_rng(7)
    ids = {}
    with Store(db) as store:
        store.create_study("planted", "I agree.", N_TRIALS, CATCH_RATE, images, questions=QUESTIONS,
                           attention_rate=ATTENTION_RATE, practice_trials=1)
        register(store, "planted", contents, styles, METHODS, images, 192)
        method = {s["output_sha256"]: s["method"] for s in store.stimuli("planted")}
        for kind, n in KINDS.items():
            for i in range(n):
                pid = f"PID-{kind}-{i}"
                ids.setdefault(kind, []).append(pid)
                store.record_arrival("planted", "opened", store.hash_id("PROLIFIC_PID", pid))
                token = store.new_participant("planted", {"PROLIFIC_PID": pid}, rng=random.Random(len(ids) * 100 + i))
                preference = {}
                for pair, mean in TRUTH.items():
                    nu = mean * (1 - mean) / SPREAD**2 - 1
                    preference[pair] = rng.beta(mean * nu, (1 - mean) * nu)
                trials = store.remaining_trials(token)
                if kind == "absent":
                    continue
                if kind == "quitter":
                    trials = [t for t in trials if CATCH not in (method[t["left"]], method[t["right"]])
                              and not t["instructed"]][:3]  # the practice trial and two method trials
                slipped = False
                for trial in trials:
                    left, right = method[trial["left"]], method[trial["right"]]
                    choice, rt = answer(kind, rng, left, right, preference, trial["instructed"])
                    if kind == "slip" and CATCH in (left, right) and not slipped:  # fails exactly one catch trial
                        choice, slipped = ("left" if left == CATCH else "right"), True
                    store.record_vote(trial["token"], token, choice, rt)
        for event in ("opened", "declined"):
            store.record_arrival("planted", event, store.hash_id("PROLIFIC_PID", DECLINED_ID))
        store.record_arrival("planted", "opened")  # someone who left the consent page
        store.record_arrival("planted", "opened", store.hash_id("PROLIFIC_PID", SCREENED_ID))
        store.record_screen_out("planted", {"viewport_width": 320, "viewport_height": 480, "device": "phone"},
                                store.hash_id("PROLIFIC_PID", SCREENED_ID))
    export = root / "prolific_export.csv"
    listed = [pid for pids in ids.values() for pid in pids if pid != LEFT_OUT] + [UNKNOWN_ID, DECLINED_ID, SCREENED_ID]
    pd.DataFrame({"Submission id": [f"sub{i}" for i in range(len(listed))], "Participant id": listed,
                  "Status": "AWAITING REVIEW"}).to_csv(export, index=False)
    return root, db, ids, export


def test_participant_flow_and_exclusion_options(planted):
    _, db, ids, _ = planted
    votes, people = load_votes(db, "planted"), load_participants(db, "planted")
    assert len(people) == sum(KINDS.values()) and people["n_trials"].eq(N_TRIALS).all()
    r = analyze(votes, people, n_boot=300)
    flow = r.flow.set_index("stage")
    # enrolled, -absent, -quitters, -3 failing catch trials, -2 failing attention checks, fast kept
    assert flow["remaining"].tolist() == [34, 33, 31, 28, 26, 26, 26]
    assert flow.loc["failed more than 0 catch trial(s)", "excluded"] == 3
    assert flow.loc["failed more than 0 attention check(s)", "excluded"] == 2
    assert flow.loc["median response time under 1000 ms", "note"] == "2 flagged, kept"
    assert r.flow_sentence.startswith("Of 34 enrolled participants, 33 voted and 31 completed all 12 trials. "
                                      "Excluded: 1 with no vote, 2 incomplete, 3 who failed more than 0 catch "
                                      "trial(s), 2 who failed more than 0 attention check(s)")
    assert r.n_practice_votes == 33 and r.n_attention_votes == 2 * 31 and r.questions == ["overall", "style"]
    assert f"Analysed: 26 participants and {r.n_method_votes} method votes (of {len(votes)} votes stored)" \
        in r.flow_sentence
    table = r.participants.set_index("participant")
    kind_of = dict(zip(people["participant"], [k for k, n in KINDS.items() for _ in range(n)]))
    reasons = {kind_of[p]: row.reason for p, row in table.iterrows()}
    assert reasons["absent"] == "no vote" and reasons["quitter"] == "incomplete (2 of 12 trials)"
    assert reasons["careless"] == "failed 2 of 2 catch trials" and reasons["slip"] == "failed 1 of 2 catch trials"
    assert reasons["inattentive"] == "failed 2 of 2 attention checks"
    assert reasons["good"] == reasons["fast"] == ""
    assert {kind_of[p] for p in table.index[table["fast"]]} == {"fast"}
    assert set(r.excluded) == set(table.index[table["excluded"]]) == set(table.index[table["reason"] != ""])
    assert r.pairs["n_participants"].max() <= 26 and r.position["n_participants"] == 26

    kept = analyze(votes, people, Rules(keep_incomplete=True), n_boot=300)
    assert kept.n_analysed == 28 and kept.flow.loc[2, "note"] == "2 kept (--keep-incomplete)"
    assert "none for being incomplete (2 kept)" in kept.flow_sentence
    quitters = kept.participants[kept.participants["n_votes"] == 2]
    assert (~quitters["excluded"]).all() and (quitters["n_catch"] == 0).all()  # kept, though they saw no catch trial
    strict = analyze(votes, people, Rules(exclude_fast=True, fast_ms=1000), n_boot=300)
    assert strict.n_analysed == 24 and strict.flow["excluded"].tolist()[-2] == 2
    assert strict.participants["reason"].str.match(r"median response time \d+ ms < 1000 ms").sum() == 2


def test_prolific_lists_from_a_planted_export(planted, tmp_path, capsys):
    root, db, ids, export = planted
    out = tmp_path / "report"
    assert analyze_main(["--db", str(db), "--study", "planted", "--out", str(out), "--bootstrap", "300",
                         "--prolific-ids", str(export)]) == 0
    assert "Prolific: 36 ids, 23 approve, 2 reject, 11 review" in capsys.readouterr().out
    lists = {d: pd.read_csv(out / f"prolific_{d}.csv", dtype={"prolific_id": str}) for d in DECISIONS}
    assert set(lists["approve"]["prolific_id"]) == set(ids["good"]) - {LEFT_OUT}
    assert lists["approve"]["reason"].str.startswith(
        "completed 12 trials, failed 0 of 2 attention checks, failed 0 of 2 catch trials").all()
    assert set(lists["reject"]["prolific_id"]) == set(ids["inattentive"])  # attention checks only: Prolific's rule
    assert (lists["reject"]["reason"] == "failed 2 of 2 attention checks").all()
    review = lists["review"].set_index("prolific_id")["reason"]
    assert set(review.index) == {*ids["careless"], *ids["slip"], *ids["fast"], *ids["quitter"], *ids["absent"],
                                 UNKNOWN_ID, DECLINED_ID, SCREENED_ID}
    catch_only = " (a data-quality exclusion, not grounds for a rejection)"
    assert review[ids["careless"][0]] == "failed 2 of 2 catch trials" + catch_only
    assert review[ids["slip"][0]] == "failed 1 of 2 catch trials" + catch_only
    assert review[SCREENED_ID] == SCREENED_OUT
    assert all(re.fullmatch(r"median response time \d+ ms, under 1000 ms", review[p]) for p in ids["fast"])
    assert review[ids["quitter"][0]] == "incomplete: 2 of 12 trials answered"
    assert review[ids["absent"][0]] == "incomplete: 0 of 12 trials answered"
    assert review[UNKNOWN_ID].startswith("no participant of this study has this id")
    assert review[DECLINED_ID] == DECLINED and DECLINED.startswith("declined consent: they should return")
    for name in ("report.md", "report.html", "participants.csv", "votes.csv"):  # raw ids stay in the lists
        assert "PID-" not in (out / name).read_text()
    assert b"PID-" not in db.read_bytes()

    only = tmp_path / "only"
    assert analyze_main(["--db", str(db), "--study", "planted", "--out", str(only), "--bootstrap", "300",
                         "--prolific-ids", str(export), "--only-prolific-ids"]) == 0
    flow = pd.read_csv(only / "flow.csv")
    assert flow["stage"].tolist()[:4] == ["opened the link", "screened out (screen too small)", "declined consent",
                                          "neither declined nor enrolled"]
    assert flow["remaining"].tolist()[:5] == [37, 36, 35, 34, 34]  # 34 enrolled, one screened out, a decliner, a leaver
    assert flow.loc[5, "stage"] == "not in the Prolific export prolific_export.csv" and flow.loc[5, "excluded"] == 1
    assert flow["remaining"].iloc[-1] == 25
    only_md = (only / "report.md").read_text()
    assert "Only participants in the Prolific export prolific_export.csv are analysed." in only_md

    assert analyze_main(["--db", str(db), "--study", "planted", "--out", str(only), "--only-prolific-ids"]) == 2
    assert "needs --prolific-ids" in capsys.readouterr().err


def test_prolific_export_columns(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("session_id,participant_id,status\ns1, abc ,APPROVED\ns2,def,RETURNED\ns3,abc,APPROVED\n")
    assert read_export(old) == ["abc", "def"]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,age\nx,3\n")
    with pytest.raises(ValueError, match="no participant id column.*'name', 'age'"):
        read_export(bad)


@pytest.fixture(scope="module")
def report(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert analyze_main(["--db", str(planted[1]), "--study", "planted", "--out", str(out), "--bootstrap", "500"]) == 0
    return out


def test_report_states_design_provenance_and_power(report):
    md = (report / "report.md").read_text()
    digest = hashlib.sha256((report / "votes.csv").read_bytes()).hexdigest()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    commit = commit.strip()
    assert f"| data fingerprint | sha256 of votes.csv: {digest} |" in md
    assert f"| code version | {commit}" in md and re.search(r"\| generated \| \d{4}-\d\d-\d\d \d\d:\d\d UTC \|", md)
    assert ("| trials per participant | 1 practice (never analysed), then 12: 8 method trials (about 2.67 per pair), "
            "2 catch trials, 2 attention checks |") in md
    assert "| questions | 2, one per trial, spread evenly over each participant's trials: overall: Which is better?; " \
        "style: Which is more like the painting? |" in md
    for heading in ("### Question overall: Which is better?", "### Question style: Which is more like the painting?"):
        assert md.count(heading) == 4  # win rates, strengths, per style, per content
    assert "Practice votes: 33 (stored, never analysed). Attention checks (the question names the button to press): " \
        "62 answered" in md
    assert "| screened out | phone | 1 | 320 |" in md and "| screened out (screen too small) | 1 | 36 |" in md
    assert "| methods | a2k_free, adain, all2all_free |" in md
    assert re.search(r"Minimum detectable effect of the study as run: with 26 analysed participants, a win rate of "
                     r"0\.\d{3} against 0\.5 is detected with 80% power at alpha 0\.05 \(Holm over 3 pairs\)", md)
    for i in (1, 2, 3):
        for side in "ab":
            with Image.open(report / "examples" / f"pair{i}_{side}.jpg") as im:
                assert max(im.size) <= 240
        assert f"](examples/pair{i}_a.jpg)" in md
    pairs = pd.read_csv(report / "pairs.csv")
    assert {"ci_low", "ci_high", "p_value", "p_holm", "wilson_low_per_vote", "wilson_high_per_vote"} \
        <= set(pairs.columns)
    assert (pairs["p_holm"] >= pairs["p_value"]).all()

    raw = (report / "report.html").read_text()
    page = html.unescape(raw)
    assert re.findall(r"^#+ (.*)$", md, flags=re.M) == re.findall(r"<h[123]>(.*?)</h[123]>", page)
    assert md.count("\n|---") == page.count("<table")
    paragraphs = [b for b in md.split("\n\n") if b and b[0] not in "#|!"]
    assert paragraphs and all(f"<p>{p.strip()}</p>" in page for p in paragraphs)
    # every cell of the data tables (the examples table holds images: left out of both)
    md_cells = [c.strip() for block in md.split("\n\n") if block.startswith("|") and "![" not in block
                for line in block.splitlines() if not line.startswith("|---") for c in line[2:-2].split(" | ")]
    data = re.sub(r'<table class="examples">.*?</table>', "", raw, flags=re.S)
    page_cells = [html.unescape(c.replace("<wbr>", "")) for c in re.findall(r"<t[dh](?: class=n)?>(.*?)</t[dh]>", data)]
    assert len(md_cells) > 300 and md_cells == page_cells


def test_report_fits_the_page_in_chromium(report):
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    measure = """() => ({
        page: document.documentElement.scrollWidth, width: window.innerWidth,
        tables: [...document.querySelectorAll('table')].map(t => {
            const box = t.getBoundingClientRect(), holder = t.parentElement.getBoundingClientRect();
            return {right: box.right, limit: holder.right, scroll: t.parentElement.scrollWidth,
                    client: t.parentElement.clientWidth};
        }),
        images: [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth]),
    })"""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto((report / "report.html").as_uri())
        page.wait_for_load_state("load")
        seen = page.evaluate(measure)
        (ROOT / "artifacts").mkdir(exist_ok=True)
        page.screenshot(path=ROOT / "artifacts" / "study-report.png", full_page=True)
        page.add_style_tag(content="td,th{white-space:nowrap}div.wide{overflow:visible}")
        unstyled = page.evaluate(measure)  # without the report's wrapping, the wide tables spill
        browser.close()
    assert seen["page"] <= seen["width"] == 1000
    assert len(seen["tables"]) == 17  # 4 per-question tables twice, screens, agreement and 7 more
    for table in seen["tables"]:
        assert table["right"] <= table["limit"] + 0.5 and table["scroll"] <= table["client"], table
    assert len(seen["images"]) == 3 + 6 and all(width for _, width in seen["images"]), seen["images"]
    assert unstyled["page"] > unstyled["width"]
