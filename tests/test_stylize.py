"""stylize() on PIL images of any kind, and the batch command line."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.contact_sheet import CELL, MARGIN
from model.images import ImageError, open_image
from model.pipeline import stylize
from model.stylize import main as stylize_main

ROOT = Path(__file__).parents[1]
CONTENT = ROOT / "examples/contents/animal_red_panda.jpg"
STYLE = ROOT / "examples/styles/kandinsky_composition_viii.jpg"


def test_output_keeps_the_content_aspect_ratio():
    out = stylize(Image.open(CONTENT), Image.open(STYLE), "a2k_free", size=160)
    w, h = Image.open(CONTENT).size
    assert max(out.size) == 160 and abs(out.size[0] / out.size[1] - w / h) < 0.02
    assert out.mode == "RGB"


def test_exif_orientation_and_alpha_and_modes_are_handled():
    content = Image.open(CONTENT).convert("RGB").resize((120, 80))
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    content.save(buf, "JPEG", exif=exif)
    rotated = open_image(buf.getvalue())
    assert rotated.size == (80, 120)
    style = Image.open(STYLE).convert("RGBA")
    for variant in (rotated, content.convert("CMYK"), content.convert("P"), content.convert("LA"), content.convert("I;16")):
        out = stylize(variant, style, "adain", size=96)
        assert out.mode == "RGB"
        assert (out.size[0] > out.size[1]) == (variant.size[0] > variant.size[1])


def test_preserve_color_keeps_the_content_chrominance():
    plain = stylize(CONTENT, STYLE, "adain", size=128)
    kept = stylize(CONTENT, STYLE, "adain", size=128, preserve_color=True)
    content = Image.open(CONTENT).resize(kept.size)

    def chroma_diff(a, b):
        chroma = [np.asarray(im.convert("YCbCr"), dtype=float)[..., 1:] for im in (a, b)]
        return np.abs(chroma[0] - chroma[1]).mean()

    assert chroma_diff(kept, content) < 2 < chroma_diff(plain, content)


def test_bad_inputs_raise_image_errors(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    good = io.BytesIO()
    Image.open(CONTENT).save(good, "PNG")
    (tmp_path / "cut.png").write_bytes(good.getvalue()[:5000])
    for name in ("empty.jpg", "text.png", "cut.png", "absent.png"):
        with pytest.raises(ImageError):
            stylize(tmp_path / name, STYLE, "adain", size=64)
    with pytest.raises(ImageError, match="short side"):
        stylize(Image.new("RGB", (1000, 10)), STYLE, "adain", size=512)
    with pytest.raises(ValueError, match="alpha"):
        stylize(CONTENT, STYLE, "adain", size=64, alpha=1.5)


def test_batch_command_skips_unreadable_files_and_resumes(tmp_path):
    contents = tmp_path / "contents"
    contents.mkdir()
    Image.open(CONTENT).resize((96, 64)).save(contents / "panda.png")
    (contents / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    cmd = [sys.executable, "-m", "model.stylize", "--content", str(contents), "--style", str(STYLE),
           "--method", "a2k_free", "--method", "all2all_free", "--size", "64", "--out", str(tmp_path / "out")]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert "skipping" in first.stdout + first.stderr and "broken.jpg" in first.stdout + first.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["panda__kandinsky_composition_viii__a2k_free.png", "panda__kandinsky_composition_viii__all2all_free.png"]
    second = subprocess.run(cmd + ["--grid"], capture_output=True, text=True, cwd=ROOT)
    assert "0 written, 2 already there" in second.stdout
    with Image.open(tmp_path / "out" / "grid.png") as grid:  # one readable pair: content, style, 2 methods
        assert grid.width == 4 * (CELL + MARGIN) + MARGIN and CELL < grid.height < 2 * CELL


def test_batch_command_reports_missing_weights(tmp_path):
    cmd = [sys.executable, "-m", "model.stylize", "--content", str(CONTENT), "--style", str(STYLE),
           "--method", "stya2k", "--weights-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "latest_net_A2K.pth is missing" in run.stderr


@pytest.mark.parametrize("flags,message", [
    (["--size", "-5"], "--size must be at least 32 pixels, not -5"),
    (["--size", "16"], "--size must be at least 32 pixels, not 16"),
    (["--style-size", "-1"], "--style-size must be 0 (same as --size) or at least 32 pixels, not -1"),
    (["--alpha", "1.5"], "--alpha must be in [0, 1], not 1.5"),
])
def test_batch_command_refuses_settings_out_of_range_before_writing(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        stylize_main(["--content", str(CONTENT), "--style", str(STYLE), "--method", "a2k_free", "--out", str(out),
                      *flags])
    assert stopped.value.code == 2 and message in capsys.readouterr().err and not out.exists()
