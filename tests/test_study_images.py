"""The study's pictures as served: catch images that simple detectors cannot tell from real outputs,
reference pictures at their own per-participant addresses, files in another format encoded once per
study without their metadata (the sample study's bytes and waits in Chromium at 400 kbit/s: test_study_browser)."""
import io
import json

import numpy as np
from PIL import Image, PngImagePlugin
from scipy.stats import binom
from sqlalchemy import update

from bench.server import ROOT
from demo.study_images import StudyImages
from demo.study_page import register_sample
from study import schema
from study.picture_files import REFERENCE_QUALITY, REFERENCE_SIDE, encode, is_served_form, reference_image, reference_path
from study.prepare import sha256_file
from study.store import CATCH, Store


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
    (images_dir/references/<sha256 of the original>.webp, shorter side 256 px, at REFERENCE_QUALITY), one address for a
    participant across all stimuli with that picture, another for another participant; a fresh worker
    on the database serves it, and a name changed in any digit is not served."""
    with Store(tmp_path / "db.sqlite") as db:
        register_sample(db)
        stimuli = db.stimuli("sample")
        images = StudyImages(db, tmp_path / "a")
        spec = json.loads((ROOT / "studies" / "sample" / "study.json").read_text())
        first = stimuli[0]
        same_content = next(s for s in stimuli if s["content_sha256"] == first["content_sha256"]
                            and s["style_sha256"] != first["style_sha256"])
        for kind in ("content", "style"):
            url, width, height = images.reference_url("sample", "p1", first["output_sha256"], kind)
            kept = reference_path(db.study("sample")["images_dir"], first[f"{kind}_sha256"])
            with Image.open(kept) as im:
                assert (width, height) == im.size and min(im.size) == REFERENCE_SIDE and is_served_form(kept)
            original = ROOT / next(p for p in spec[f"{kind}s"] if sha256_file(ROOT / p) == first[f"{kind}_sha256"])
            assert kept.read_bytes() == encode(reference_image(original), REFERENCE_QUALITY)
            name = url.removeprefix("study-image/").removesuffix(".webp")
            assert StudyImages(db, tmp_path / "b").path(name) == kept
            assert StudyImages(db, tmp_path / "b").path(name[:-1] + format(int(name[-1], 16) ^ 1, "x")) is None
            assert images.reference_url("sample", "p2", first["output_sha256"], kind)[0] != url
        assert images.reference_url("sample", "p1", same_content["output_sha256"], "content")[0] == \
            images.reference_url("sample", "p1", first["output_sha256"], "content")[0]
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
