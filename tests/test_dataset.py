"""model.dataset: training folders from collections, the held-out gallery left out by name or bytes."""
import csv

from PIL import Image

from model.dataset import main


def collection(root, images):
    """A source folder: {relative path: (width, height, colour)} images and their SOURCES.csv."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "SOURCES.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "title", "width", "height", "license"])
        for rel, (w, h, colour) in images.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (w, h), colour).save(root / rel)
            writer.writerow([rel, rel.upper(), w, h, f"licence of {rel}"])


def test_gallery_left_out_by_name_or_bytes_and_images_downscaled(tmp_path):
    source, gallery, out = tmp_path / "images", tmp_path / "examples", tmp_path / "out"
    collection(source, {"contents/a.png": (40, 20, "red"), "contents/b.png": (30, 30, "blue"),
                        "styles/c.png": (10, 12, "green"), "styles/d.png": (50, 60, "white")})
    collection(gallery, {"contents/b.png": (8, 8, "black"), "styles/e.png": (10, 12, "green")})  # e = c's bytes
    assert main(["--source", str(source), "--exclude", str(gallery), "--out", str(out),
                 "--shorter-side", "16", "--quality", "95"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == ["contents/a.jpg", "styles/d.jpg"]
    assert Image.open(out / "contents/a.jpg").size == (32, 16)
    assert Image.open(out / "styles/d.jpg").size == (16, 19)
    with open(out / "SOURCES.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["file"], r["title"], r["width"], r["height"], r["license"], r["source"]) for r in rows] == [
        ("contents/a.jpg", "CONTENTS/A.PNG", "32", "16", "licence of contents/a.png", str(source)),
        ("styles/d.jpg", "STYLES/D.PNG", "16", "19", "licence of styles/d.png", str(source)),
    ]
    assert main(["--source", str(source), "--exclude", str(gallery), "--out", str(out)]) == 2  # not empty


def test_without_shorter_side_files_are_copied(tmp_path):
    source, out = tmp_path / "images", tmp_path / "out"
    collection(source, {"contents/a.png": (40, 20, "red"), "styles/c.png": (10, 12, "green")})
    assert main(["--source", str(source), "--exclude", str(tmp_path / "none"), "--out", str(out)]) == 0
    assert (out / "contents/a.png").read_bytes() == (source / "contents/a.png").read_bytes()


def test_a_bad_source_is_refused_before_anything_is_written(tmp_path, capsys):
    good, bad, out = tmp_path / "good", tmp_path / "bad", tmp_path / "out"
    collection(good, {"contents/a.png": (40, 20, "red")})
    collection(bad, {"styles/c.png": (10, 12, "green")})
    (bad / "styles/c.png").unlink()
    no_csv = tmp_path / "no_csv"
    no_csv.mkdir()
    no_file_column = tmp_path / "no_file_column"
    no_file_column.mkdir()
    (no_file_column / "SOURCES.csv").write_text("path,title\ncontents/a.png,A\n")
    for source, message in [(bad, f"lists 1 file(s) that are not there, e.g. {bad / 'styles/c.png'}"),
                            (no_csv, f"{no_csv / 'SOURCES.csv'} is missing"),
                            (no_file_column, "has no `file` column")]:
        assert main(["--source", str(good), "--source", str(source), "--exclude", str(tmp_path / "none"),
                     "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
