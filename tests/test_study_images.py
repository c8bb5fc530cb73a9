"""The study's pictures as served: catch images that simple detectors cannot tell from real outputs,
reference pictures at their own per-participant addresses, files in another format encoded once per
study without their metadata, and the sample study's bytes and waits in a real Chromium at 400 kbit/s."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from scipy.stats import binom
from sqlalchemy import update

from bench.server import ROOT, App
from demo.study_images import StudyImages
from demo.study_page import register_sample
from study import schema
from study.picture_files import REFERENCE_SIDE, is_served_form, reference_path
from study.prepare import sha256_file
from study.store import CATCH, Store

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SLOW = {"offline": False, "latency": 100, "downloadThroughput": 400_000 / 8, "uploadThroughput": 400_000 / 8}
THINK_MS = 3000  # a participant's look at each trial
READY = "#study-trial [data-state=ready]"
DONE = "Your completion code is"


def payload_length(data):
    """Bytes of compressed pixels in a PNG (its IDAT chunks) or a WebP (its VP8/VP8L chunk)."""
    if data.startswith(b"\x89PNG"):
        total, at = 0, 8
        while at < len(data):
            n = int.from_bytes(data[at:at + 4], "big")
            total += n if data[at + 4:at + 8] == b"IDAT" else 0
            at += 12 + n
        return total
    at = 12
    while data[at:at + 4] not in (b"VP8 ", b"VP8L"):
        n = int.from_bytes(data[at + 4:at + 8], "little")
        at += 8 + n + n % 2
    return int.from_bytes(data[at + 4:at + 8], "little")


def detectors(data):
    """{name: score} of simple measures a script could take of one served file (bytes)."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=float)
        saturation = np.asarray(im.convert("HSV"), dtype=float)[..., 1]
    luma = rgb @ [0.299, 0.587, 0.114]
    laplacian = 4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1] - luma[1:-1, :-2] - luma[1:-1, 2:]
    return {"bytes": len(data), "payload": payload_length(data), "laplacian_var": laplacian.var(),
            "luma_mean": luma.mean(), "luma_std": luma.std(), "saturation": saturation.mean(),
            **{f"{c}_mean": rgb[..., i].mean() for i, c in enumerate("rgb")}}


def auc(catch, real):
    """How well one score separates catch from real files, either way round: 0.5 (chance) to 1."""
    c, r = np.asarray(catch)[:, None], np.asarray(real)[None, :]
    a = (c > r).mean() + 0.5 * (c == r).mean()
    return max(a, 1 - a)


def test_catch_images_look_like_real_outputs_to_simple_detectors(tmp_path):
    """Over the sample study's served files (12 catch, 24 real), every detector's AUC is at most 0.65,
    and the bot rule "the smaller file of a catch pair is the catch" is right as often as a coin
    would be (within the central 95% of Binomial(24, 0.5): 7 to 17) over the 24 pairs a catch trial
    can show (the catch with each real output of its cell)."""
    with Store(tmp_path / "db.sqlite") as db:
        register_sample(db)
        stimuli = db.stimuli("sample")
        files = StudyImages(db, tmp_path / "served").files("sample")
    data = {s["output_sha256"]: files[s["output_sha256"]][0].read_bytes() for s in stimuli}
    scores = {sha: detectors(d) for sha, d in data.items()}
    catch = [s for s in stimuli if s["method"] == CATCH]
    real = [s for s in stimuli if s["method"] != CATCH]
    assert len(catch) == 12 and len(real) == 24
    found = {name: auc([scores[s["output_sha256"]][name] for s in catch], [scores[s["output_sha256"]][name] for s in real])
             for name in scores[catch[0]["output_sha256"]]}
    assert max(found.values()) <= 0.65, found
    smaller = [len(data[c["output_sha256"]]) < len(data[r["output_sha256"]]) for c in catch for r in real
               if (r["content_sha256"], r["style_sha256"]) == (c["content_sha256"], c["style_sha256"])]
    low, high = binom.interval(0.95, len(smaller), 0.5)
    assert len(smaller) == 24 and low <= sum(smaller) <= high, sum(smaller)


def test_reference_pictures_have_one_address_per_participant_and_picture(tmp_path):
    """reference_url gives a stimulus's content photo or style painting: the study's kept file
    (images_dir/references/<sha256 of the original>.webp, shorter side 256 px), one address for a
    participant across all stimuli with that picture, another for another participant; a fresh worker
    on the database serves it, and a name changed in any digit is not served."""
    with Store(tmp_path / "db.sqlite") as db:
        register_sample(db)
        stimuli = db.stimuli("sample")
        images = StudyImages(db, tmp_path / "a")
        first = stimuli[0]
        same_content = next(s for s in stimuli if s["content_sha256"] == first["content_sha256"]
                            and s["style_sha256"] != first["style_sha256"])
        for kind in ("content", "style"):
            url, width, height = images.reference_url("sample", "p1", first["id"], kind)
            kept = reference_path(db.study("sample")["images_dir"], first[f"{kind}_sha256"])
            with Image.open(kept) as im:
                assert (width, height) == im.size and min(im.size) == REFERENCE_SIDE and is_served_form(kept)
            name = url.removeprefix("study-image/").removesuffix(".webp")
            assert StudyImages(db, tmp_path / "b").path(name) == kept
            assert StudyImages(db, tmp_path / "b").path(name[:-1] + format(int(name[-1], 16) ^ 1, "x")) is None
            assert images.reference_url("sample", "p2", first["id"], kind)[0] != url
        assert images.reference_url("sample", "p1", same_content["id"], "content")[0] == \
            images.reference_url("sample", "p1", first["id"], "content")[0]
        sources = {sha256_file(p) for p in (ROOT / "examples").glob("*/*.jpg")}
        kept = {p.stem for p in reference_path(db.study("sample")["images_dir"], "x").parent.iterdir()}
        assert kept == {s[f"{k}_sha256"] for s in stimuli for k in ("content", "style")} and kept <= sources


def test_a_study_in_another_format_is_served_encoded_once_without_metadata(tmp_path):
    """A stimulus registered as a PNG (as studies prepared before the served format were) is served as
    WebP without its text chunk, from a file written once: a second worker reuses it."""
    folder = tmp_path / "images"
    folder.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("method", "a2k_free")
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / name, pnginfo=info)
    with Store(tmp_path / "db.sqlite") as db:
        db.create_study("old", "Agree?", n_trials=2, catch_rate=0, images_dir=folder)
        for method, name in (("m1", "a.png"), ("m2", "b.png")):
            db.add_stimulus("old", "c.png", "c" * 64, "s.png", "s" * 64, method, sha256_file(folder / name), name)
        served = StudyImages(db, tmp_path / "served").files("old")
        for path, width, height in served.values():
            assert is_served_form(path) and (width, height) == (64, 48) and b"a2k_free" not in path.read_bytes()
        written = {path: path.stat().st_mtime_ns for path, _, _ in served.values()}
        again = StudyImages(db, tmp_path / "served").files("old")
    assert {path: path.stat().st_mtime_ns for path, _, _ in again.values()} == written


def test_a_sample_study_registered_from_older_images_is_named_at_start(tmp_path, capsys):
    """A database that registered the sample before it was re-rendered (its files are gone) cannot
    show its trials: the app's start says so and what to do."""
    with Store(tmp_path / "db.sqlite") as db:
        register_sample(db)
        with db.engine.begin() as conn:
            rows = schema.stimuli
            conn.execute(update(rows).where(rows.c.method == CATCH).values(path=rows.c.path + ".png"))
        capsys.readouterr()
        register_sample(db)
    err = capsys.readouterr().err
    assert "no longer holds" in err and "new database" in err


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = App(tmp_path_factory.mktemp("light"), "--with-study",
                 env={"VOTE_INTERVAL_MS": "0", "ENROLMENTS_PER_HOUR": "0"}).start()
    yield server
    server.stop()


def test_sample_study_at_400_kbit_s_is_light_and_never_waits_after_the_first_trial(server):
    """The sample study (10 trials, 512 px) in Chromium throttled to 400 kbit/s each way and 100 ms of
    latency from the instructions on, answering each trial 3 s after its pictures are on screen: the
    pictures received (each address once) weigh at most 3 MB, and no trial after the first waits more
    than 1 s from the key press to its pictures on screen (measured in the page)."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        urls, sizes = {}, {}
        cdp.on("Network.requestWillBeSent", lambda e: urls.setdefault(e["requestId"], e["request"]["url"]))
        cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], e["encodedDataLength"]))
        page.goto(server.url + "study?study=sample")
        page.get_by_role("button", name="I agree").click(timeout=60_000)
        page.get_by_role("button", name="Start").wait_for()
        cdp.send("Network.emulateNetworkConditions", SLOW)
        page.evaluate("""() => {
          window.pressed = []; window.ready = [];
          document.addEventListener('click', () => { window.started ??= performance.now(); }, true);
          document.addEventListener('keydown', () => window.pressed.push(performance.now()), true);
          new MutationObserver(() => {
            const trial = document.querySelector('#study-trial [data-state=ready] .trial');
            if (trial && !window.ready.some(r => r.trial === trial.dataset.trial))
              window.ready.push({trial: trial.dataset.trial, at: performance.now()});
          }).observe(document.getElementById('study-trial'), {subtree: true, attributes: true, childList: true});
        }""")
        page.get_by_role("button", name="Start").click()
        for _ in range(10):  # the sample study's trials
            page.locator(READY).wait_for(timeout=60_000)
            page.wait_for_timeout(THINK_MS)
            page.keyboard.press("ArrowLeft")
            page.wait_for_function(f"() => !document.querySelector('{READY}')", timeout=10_000)
        page.get_by_text(DONE).wait_for(timeout=30_000)
        pressed, ready, started = page.evaluate("[window.pressed, window.ready, window.started]")
        browser.close()
    waits = [r["at"] - k for r, k in zip(ready[1:], pressed)]
    fetched = {r: url for r, url in urls.items() if sizes.get(r)}  # over the network, not from the browser's cache
    pictures = [url for url in fetched.values() if "/study-image/" in url]
    picture_bytes = sum(sizes[r] for r, url in fetched.items() if "/study-image/" in url)
    print(f"{len(pictures)} pictures, {picture_bytes} bytes (all requests {sum(sizes.values())}); waits after the first "
          "trial (ms): "
          f"{[round(w) for w in waits]}; first trial {round(ready[0]['at'] - started)} ms after Start")
    assert len(ready) == 10 and len(waits) == 9
    assert len(pictures) == len(set(pictures)) >= 20  # every address fetched once, the rest from the cache
    assert picture_bytes <= 3_000_000
    assert max(waits) <= 1000, waits
