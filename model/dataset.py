"""Assemble training folders from image collections, leaving out a held-out gallery:

    python -m model.dataset --source DIR [--source DIR ...] --exclude DIR --out DIR [--shorter-side N] [--quality 90]

A source is a folder with contents/ and styles/ (images) and a SOURCES.csv whose `file` column names
each image relative to the source (e.g. ../shared/images, or the app's examples/). Every image of a
source goes to OUT/contents or OUT/styles under its own name, except those whose file name or bytes
(sha256) match a file under --exclude (e.g. examples/, so the gallery is never trained on). With
--shorter-side, images whose shorter side is longer are downscaled to it (Lanczos) and every image is
re-encoded as JPEG at --quality. OUT/SOURCES.csv has the sources' rows for the kept images (file
relative to OUT, width and height of the written file) plus a `source` column.
"""
import argparse
import csv
import shutil
import sys
from pathlib import Path

from PIL import Image

from .files import sha256_file
from .images import open_image

FOLDERS = ("contents", "styles")


def fingerprints(folder):
    """(file names, sha256 digests) of every file under `folder`, recursive."""
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    return {p.name for p in files}, {sha256_file(p) for p in files}


def read_sources(source):
    """{path relative to the source: its SOURCES.csv row}, and the csv's columns. ValueError saying
    what is wrong when SOURCES.csv is missing, has no `file` column or lists a file that is not there."""
    path = Path(source) / "SOURCES.csv"
    if not path.is_file():
        raise ValueError(f"{path} is missing: a source is a folder with contents/, styles/ and a SOURCES.csv "
                         "whose `file` column names its images")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if "file" not in (reader.fieldnames or []):
            raise ValueError(f"{path} has no `file` column naming the source's images")
        listed = {row["file"]: row for row in reader}
    missing = [rel for rel in listed if not (Path(source) / rel).is_file()]
    if missing:
        raise ValueError(f"{path} lists {len(missing)} file(s) that are not there, e.g. {Path(source) / missing[0]}")
    return listed, reader.fieldnames


def write_image(src, dst, shorter_side, quality):
    """Copy src to dst, or downscale and re-encode it as JPEG; returns the (width, height) written."""
    if shorter_side is None:
        shutil.copyfile(src, dst)
        with Image.open(dst) as img:
            return img.size
    img = open_image(src)
    scale = shorter_side / min(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    img.save(dst, "JPEG", quality=quality)
    return img.size


def assemble(sources, exclude, out, shorter_side=None, quality=90):
    """Write OUT/contents, OUT/styles and OUT/SOURCES.csv; returns {folder: number of images written}."""
    names, digests = fingerprints(exclude)
    rows, columns, counts = [], ["file"], dict.fromkeys(FOLDERS, 0)
    for source in map(Path, sources):
        listed, fields = read_sources(source)
        columns += [c for c in fields if c not in columns]
        for rel, row in listed.items():
            folder, path = Path(rel).parts[0], source / rel
            if folder not in FOLDERS or path.name in names or sha256_file(path) in digests:
                continue
            name = path.name if shorter_side is None else path.with_suffix(".jpg").name
            dst = Path(out) / folder / name
            if dst.exists():
                raise SystemExit(f"{dst} would be written twice (two sources hold {name})")
            dst.parent.mkdir(parents=True, exist_ok=True)
            width, height = write_image(path, dst, shorter_side, quality)
            rows.append({**row, "file": f"{folder}/{name}", "width": width, "height": height, "source": str(source)})
            counts[folder] += 1
    with open(Path(out) / "SOURCES.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns + ["source"], restval="")
        writer.writeheader()
        writer.writerows(rows)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", action="append", required=True, type=Path, help="a collection (repeatable)")
    parser.add_argument("--exclude", required=True, type=Path, help="held-out images, matched by name or bytes")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--shorter-side", type=int, help="downscale to this shorter side and re-encode as JPEG")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality with --shorter-side (default 90)")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        print(f"{args.out} is not empty", file=sys.stderr)
        return 2
    try:
        for source in args.source:  # every source checked before anything is written
            read_sources(source)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = assemble(args.source, args.exclude, args.out, args.shorter_side, args.quality)
    print(f"{counts['contents']} contents, {counts['styles']} styles in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
