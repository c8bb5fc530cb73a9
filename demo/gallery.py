"""The example gallery shipped in examples/, with the credit and licence of every image."""
import csv
import functools
from pathlib import Path

from .storage import encoded
from .upload import read_input, shrink

EXAMPLES = Path(__file__).parents[1] / "examples"


def sources():
    """Rows of examples/SOURCES.csv (file, title, width, height, origin, license, credit)."""
    with open(EXAMPLES / "SOURCES.csv", newline="") as f:
        return list(csv.DictReader(f))


def example_paths(kind):
    """Sorted paths of the "contents" or "styles" examples."""
    return sorted(str(EXAMPLES / row["file"]) for row in sources() if row["file"].startswith(kind + "/"))


def credits_markdown():
    lines = ["| image | title | licence | credit / origin |", "|---|---|---|---|"]
    for row in sources():
        credit = row["credit"] or row["origin"]
        lines.append(f"| {Path(row['file']).name} | {row['title'] or '—'} | {row['license']} | {credit} |")
    return "\n".join(lines)


@functools.cache  # the gallery's files do not change while the server runs (each picture takes about 0.1 s)
def stored_sha256(path, size_cap):
    """The sha256 under which the Battle and Compare tabs store the gallery picture at `path` (a str; inputs
    larger than `size_cap` px are stored downscaled, as demo.upload.shrink does)."""
    return encoded(shrink(read_input(path), size_cap))[1]


def gallery_sha256s(size_cap):
    """The sha256s of the gallery's pictures as stored (see stored_sha256)."""
    return {stored_sha256(p, size_cap) for kind in ("contents", "styles") for p in example_paths(kind)}


def gallery_paintings(size_cap):
    """{sha256 as stored (see stored_sha256): title} of the gallery's paintings."""
    return {stored_sha256(str(EXAMPLES / row["file"]), size_cap): row["title"] or Path(row["file"]).stem
            for row in sources() if row["file"].startswith("styles/")}
