"""The example gallery shipped in examples/, with the credit and licence of every image."""
import csv
from pathlib import Path

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
