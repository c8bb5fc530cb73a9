"""The evaluation command on 2 tiny contents (plus a corrupt file) x 1 style x 2 methods."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from model.contact_sheet import CELL, MARGIN
from model.evaluate import main
from model.metrics import DEFINITIONS

METHODS = ["a2k_free", "all2all_free"]


def write_image(path, height, width, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(rng.uniform(4, 12) * (x + y) * np.pi)], axis=-1)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)


@pytest.fixture
def folders(tmp_path):
    contents, styles = tmp_path / "contents", tmp_path / "styles"
    contents.mkdir()
    styles.mkdir()
    write_image(contents / "wide.png", 48, 64, 0)
    write_image(contents / "tall.png", 64, 48, 1)
    (contents / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    write_image(styles / "paint.png", 64, 64, 2)
    return contents, styles


def test_cli_writes_metrics_tables_and_grid(folders, tmp_path, capsys):
    contents, styles = folders
    out = tmp_path / "out"
    argv = ["--contents", str(contents), "--styles", str(styles), "--methods", ",".join(METHODS),
            "--out", str(out), "--size", "64", "--device", "cpu"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipping" in err and "corrupt.jpg" in err

    summary = pd.read_csv(out / "metrics.csv")
    assert list(summary.columns) == ["method", "label", "pairs", "content_loss", "style_loss", "ssim",
                                     "median_time_s", "peak_rss_mib"]
    assert list(summary["method"]) == METHODS and list(summary["pairs"]) == [2, 2]
    assert (summary[["content_loss", "style_loss", "median_time_s"]] > 0).all().all()
    assert (summary["peak_rss_mib"] >= 0).all()  # growth above the call's entry: 0 when freed memory is reused
    assert summary["ssim"].between(-1, 1).all()

    per_pair = pd.read_csv(out / "metrics_per_pair.csv")
    assert list(per_pair.columns) == ["content", "style", "method", "content_loss", "style_loss", "ssim",
                                      "time_s", "peak_rss_mib"]
    assert sorted(zip(per_pair["content"], per_pair["method"])) == sorted(
        (c, m) for c in ("tall.png", "wide.png") for m in METHODS
    )
    assert (per_pair["style"] == "paint.png").all()

    md = (out / "metrics.md").read_text()
    assert DEFINITIONS in md
    assert sum(line.startswith(f"| {m} |") for m in METHODS for line in md.splitlines()) == 2

    written = sorted(p.name for p in (out / "outputs").iterdir())
    assert written == sorted(f"{c}__paint__{m}.png" for c in ("tall", "wide") for m in METHODS)
    assert all(max(Image.open(out / "outputs" / name).size) == 64 for name in written)  # full size, not thumbnails
    with Image.open(out / "grid.png") as grid:
        assert grid.width == (2 + len(METHODS)) * (CELL + MARGIN) + MARGIN and grid.height > 2 * CELL


def test_unknown_method_exits_2(folders, tmp_path, capsys):
    contents, styles = folders
    argv = ["--contents", str(contents), "--styles", str(styles), "--methods", "a2k_free,nope", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unavailable_method_names_missing_files(folders, tmp_path, capsys):
    contents, styles = folders
    argv = ["--contents", str(contents), "--styles", str(styles), "--methods", "stya2k",
            "--weights-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in ("latest_net_A2K.pth", "latest_net_transform.pth", "latest_net_decoder.pth"))
