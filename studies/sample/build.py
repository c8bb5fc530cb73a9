"""Re-render the sample study's images (studies/sample/images) from study.json with python -m study.prepare.

    python studies/sample/build.py [--device cpu|cuda]

It renders into a temporary folder and then replaces images/ with the files participants get (the
outputs and catch images as WebP, and references/), leaving the model's PNG renders out. The images are
committed, so the app never renders them: it only registers them at start
(demo.study_page.register_sample). Run this after changing study.json or the model, then commit."""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def main(argv):
    spec = json.loads((HERE / "study.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        # study.prepare takes folders: copy the chosen examples (same file names, same hashes)
        for kind in ("contents", "styles"):
            (Path(tmp) / kind).mkdir()
            for path in spec[kind]:
                shutil.copy(REPO / path, Path(tmp) / kind)
        command = [sys.executable, "-m", "study.prepare", "--contents", f"{tmp}/contents", "--styles", f"{tmp}/styles",
                   "--methods", ",".join(spec["methods"]), "--study", spec["name"],
                   "--consent", str(HERE / "consent.md"), "--n-trials", str(spec["n_trials"]),
                   "--catch-rate", str(spec["catch_rate"]), "--size", str(spec["size"]),
                   "--attention-rate", str(spec["attention_rate"]), "--practice-trials", str(spec["practice_trials"]),
                   *(f"--question={q}" for q in spec["questions"]), "--debrief", str(HERE / "debrief.md"),
                   "--images-dir", f"{tmp}/images", "--db", f"{tmp}/build.db", *argv]
        code = subprocess.run(command, cwd=REPO).returncode
        if code == 0:
            shutil.rmtree(HERE / "images", ignore_errors=True)
            shutil.copytree(Path(tmp) / "images", HERE / "images", ignore=shutil.ignore_patterns("*.png"))
        return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
