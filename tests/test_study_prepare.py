"""Stimulus preparation: registration of rendered images (made here with PIL), catch images,
idempotency, user errors, and one small real run of python -m model.stylize."""
import re

import numpy as np
import pytest
from PIL import Image

from study.power import main as power_main
from study.prepare import main, output_name, reference_path, register, sha256_file
from study.store import CATCH, Store

METHODS = ("a2k_free", "all2all_free")


def noise_png(path, size=(40, 32), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """Folders of 2 contents and 2 styles, a consent file, and every output already rendered."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    contents = [noise_png(tmp_path / "contents" / f"photo{i}.png", seed=i) for i in range(2)]
    styles = [noise_png(tmp_path / "styles" / f"paint{i}.jpg", seed=10 + i) for i in range(2)]
    images = tmp_path / "images"
    for k, (c, s, m) in enumerate((c, s, m) for c in contents for s in styles for m in METHODS):
        noise_png(images / output_name(c, s, m), seed=100 + k)
    (tmp_path / "consent.txt").write_text("I agree to take part.")
    return tmp_path


def args(root, *extra, methods=",".join(METHODS)):
    return ["--contents", str(root / "contents"), "--styles", str(root / "styles"), "--methods", methods,
            "--study", "pilot", "--consent", str(root / "consent.txt"), "--db", str(root / "study.db"),
            "--images-dir", str(root / "images"), "--size", "64", *extra]


def test_prepare_registers_outputs_and_catch_images_once(inputs, capsys):
    assert main(args(inputs)) == 0
    out = capsys.readouterr().out
    assert "rendering" not in out and "12 stimuli registered (12 new" in out  # 2 x 2 x 2 outputs + 4 catch
    recommended = re.search(r"power: (\d+) participants give 80% power to detect a 60% vs 50% win rate at alpha "
                            r"0\.05, with 20 trials per participant \(2 catch, 2 attention checks\)", out).group(1)
    assert power_main(["--trials", "20", "--catch-rate", "0.1", "--methods", "2"]) == 0  # the same assumptions
    assert f"\n{recommended} participants give 80% power" in capsys.readouterr().out
    with Store(inputs / "study.db") as store:
        stimuli = store.stimuli("pilot")
        assert store.study("pilot")["consent"] == "I agree to take part."
        for s in stimuli:
            path = store.image_path("pilot", s["output_sha256"])
            assert path.is_file() and sha256_file(path) == s["output_sha256"]
            assert s["content_sha256"] == sha256_file(inputs / "contents" / s["content_name"])
        catch = [s for s in stimuli if s["method"] == CATCH]
        assert len(catch) == 4 and all(s["path"].endswith("__catch.webp") for s in catch)
        assert {s["settings"]["made_from"].split("__")[-1] for s in catch} == {f"{m}.webp" for m in METHODS}
        for s in catch:
            source = np.asarray(Image.open(inputs / "images" / s["settings"]["made_from"]), dtype=float)
            broken = np.asarray(Image.open(inputs / "images" / s["path"]), dtype=float)
            assert np.abs(broken - source).mean() > 40  # visibly different, not a near copy
            assert np.abs(broken[::-1, ::-1] - source).mean() < 10  # the same output upside down
        assert len(store.remaining_trials(store.new_participant("pilot"))) == 21  # ready: 1 practice, then 20
        for name in ("contents/photo0.png", "styles/paint1.jpg"):  # the references, by the original's hash
            with Image.open(reference_path(inputs / "images", sha256_file(inputs / name))) as reference:
                assert reference.format == "WEBP"
    assert main(args(inputs)) == 0
    assert "12 stimuli registered (0 new" in capsys.readouterr().out


def test_prepare_prints_links_code_trials_and_time_and_stores_page_settings(inputs, capsys):
    assert main(args(inputs, "--completion-code", "C0DE", "--n-trials", "12", "--catch-rate", "0.25",
                     "--title", "Paintings", "--no-consent-code", "NOPE", "--require-prolific",
                     "--max-participants", "40", "--url", "https://study.example.org/")) == 0
    out = capsys.readouterr().out
    assert "participant link: https://study.example.org/study?study=pilot\n" in out
    assert ("Prolific study URL: https://study.example.org/study?study=pilot&PROLIFIC_PID={{%PROLIFIC_PID%}}"
            "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}") in out
    assert "completion code: C0DE" in out and "no-consent code: NOPE\nscreen-out code: none" in out
    assert "trials per participant: 1 practice, then 12 (8 comparisons, 3 catch, 1 attention checks)" in out
    assert "estimated time per participant: about 3 min" in out
    with Store(inputs / "study.db") as store:
        study = store.study("pilot")
    assert (study["title"], study["no_consent_code"], study["require_prolific"], study["max_participants"]) \
        == ("Paintings", "NOPE", True, 40)
    assert (study["questions"], study["show_references"], study["practice_trials"], study["min_image_px"]) == \
        ([["overall", "Which picture is better overall?"]], True, 1, 256)


def test_prepare_takes_questions_references_practice_checks_and_the_end_texts(inputs, capsys):
    (inputs / "debrief.md").write_text("The programs were A and B.")
    assert main(args(inputs, "--question", "style", "--question", "mood=Which picture feels calmer?",
                     "--no-references", "--practice-trials", "2", "--attention-rate", "0.2", "--min-image-px", "300",
                     "--screen-out-code", "SMALL", "--debrief", str(inputs / "debrief.md"),
                     "--feedback-question", "")) == 0
    assert "questions: Which picture carries the style of the painting better?; Which picture feels calmer?" in \
        capsys.readouterr().out
    with Store(inputs / "study.db") as store:
        study = store.study("pilot")
    assert study["questions"] == [["style", "Which picture carries the style of the painting better?"],
                                  ["mood", "Which picture feels calmer?"]]
    assert (study["show_references"], study["practice_trials"], study["attention_rate"], study["min_image_px"],
            study["screen_out_code"], study["debrief"], study["feedback_question"]) == \
        (False, 2, 0.2, 300, "SMALL", "The programs were A and B.", None)
    for bad, message in ((["--question", "colour"], "unknown question 'colour'"),
                         (["--question", "Mood=x"], "question key 'Mood'"),
                         (["--debrief", str(inputs / "missing.md")], "no debrief file")):
        assert main(args(inputs, *bad)) == 2
        assert message in capsys.readouterr().err


def test_missing_outputs_are_reported_and_left_out(inputs):
    (inputs / "images" / output_name("photo0.png", "paint1.jpg", "all2all_free")).unlink()
    contents = sorted((inputs / "contents").iterdir())
    styles = sorted((inputs / "styles").iterdir())
    with Store(inputs / "study.db") as store:
        store.create_study("pilot", "I agree.", 10)
        new, missing = register(store, "pilot", contents, styles, METHODS, inputs / "images", 64)
        assert missing == ["photo0__paint1__all2all_free.png"] and new == 7 + 4
        assert register(store, "pilot", contents, styles, METHODS, inputs / "images", 64) == (0, missing)


@pytest.mark.parametrize("change, message", [
    ({"methods": "a2k_free"}, "at least two methods"),
    ({"methods": "a2k_free,catch"}, "reserved for catch images"),
    ({"consent": "nope.txt"}, "no consent file"),
    ({"contents": "empty"}, "has no images"),
    ({"study": "bad name"}, "study name"),
])
def test_prepare_user_errors_say_what_to_do(inputs, capsys, change, message):
    (inputs / "empty").mkdir()
    argv = args(inputs, methods=change.get("methods", ",".join(METHODS)))
    for flag in ("consent", "contents", "study"):
        if flag in change:
            i = argv.index(f"--{flag}")
            argv[i + 1] = str(inputs / change[flag]) if flag != "study" else change[flag]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_prepare_refuses_changed_study_settings(inputs, capsys):
    assert main(args(inputs)) == 0
    assert main(args(inputs, "--n-trials", "30")) == 2
    assert "already exists with n_trials=20" in capsys.readouterr().err


def test_prepare_renders_missing_outputs_with_the_model(inputs, capsys):
    """The one real model run: a single missing image (1 content x 1 style x 1 method) at 64 px on the CPU."""
    for path in (inputs / "contents").iterdir():
        if path.name != "photo0.png":
            path.unlink()
    (inputs / "styles" / "paint1.jpg").unlink()
    (inputs / "images" / "photo0__paint0__all2all_free.png").unlink()
    assert main(args(inputs, "--device", "cpu")) == 0
    assert "rendering 1 of 2 images" in capsys.readouterr().out
    with Image.open(inputs / "images" / "photo0__paint0__all2all_free.png") as rendered:
        assert max(rendered.size) == 64
    with Store(inputs / "study.db") as store:
        assert sorted(s["method"] for s in store.stimuli("pilot")) == ["a2k_free", "all2all_free", CATCH]
