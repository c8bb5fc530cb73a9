"""The weight files every method needs, and a check of a weights folder:

    python -m model.check_weights            list the known files and where to get them
    python -m model.check_weights DIR        check every file found in DIR (exit 1 if one is bad)
"""
import argparse
import sys
from pathlib import Path

from .methods import layouts
from .weights import KNOWN, verify


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.check_weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, nargs="?", help="a weights folder to check (default: list the files)")
    args = parser.parse_args(argv)
    if args.dir is None:
        for wf in KNOWN:
            print(f"{wf.path}\n    {wf.purpose}\n    from {wf.source}\n    sha256 {wf.sha256 or 'not published'}")
        return 0
    if not args.dir.is_dir():
        print(f"{args.dir} is not a folder", file=sys.stderr)
        return 2
    report = verify(args.dir, layouts())
    for wf, status in report:
        print(f"{wf.path}: {status}")
    return 1 if any(not (s == "missing" or s.startswith("ok")) for _, s in report) else 0


if __name__ == "__main__":
    sys.exit(main())
