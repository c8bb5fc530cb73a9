"""`python -m model.speed` run for real at tiny sizes: the CSVs it writes, their plots, and a clear
message with exit code 2 (never a traceback) for every user error."""
import csv
import math
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from bench.server import ROOT
from model.speed import FIELDS, PAIR_FIELDS, main


def speed(*args):
    """Run `python -m model.speed ARGS` in a process of its own; (exit code, stdout, stderr)."""
    run = subprocess.run([sys.executable, "-m", "model.speed", *map(str, args)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    return run.returncode, run.stdout, run.stderr


def read(path):
    with open(path, newline="") as f:
        return next(csv.reader(f)), list(csv.DictReader(open(path, newline="")))


def assert_png(path):
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and min(image.size) >= 300


@pytest.fixture(scope="module")
def pair_csv(tmp_path_factory):
    out = tmp_path_factory.mktemp("pair")
    code, stdout, stderr = speed("--pair", "--sizes", 64, "--style-size", 64, "--repeats", 1, "--out", out)
    assert code == 0, stderr
    assert f"wrote {out / 'pair.csv'}" in stdout
    return out / "pair.csv"


@pytest.fixture(scope="module")
def bench_csv(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code, stdout, stderr = speed("--only", "attention:a2k", "--sizes", 32, "--out", out)
    assert code == 0, stderr
    assert f"wrote {out / 'bench.csv'}" in stdout
    return out / "bench.csv"


def test_pair_times_each_layout_and_cache_state(pair_csv):
    header, rows = read(pair_csv)
    assert header == PAIR_FIELDS
    variants = {(r["layout"], r["compiled"], r["cache"]) for r in rows}
    assert variants == {(layout, "False", cache) for layout in ("contiguous", "channels_last")
                        for cache in ("cold", "style_cached", "warm")}
    assert len(rows) == 6
    for r in rows:
        assert (r["device"], r["size"], r["style_size"], r["runs"]) == ("cpu", "64", "64", "1")
        assert 0 < float(r["seconds"]) < 60
    assert_png(pair_csv.with_suffix(".png"))


def test_bench_measures_the_cases_asked_for(bench_csv):
    header, rows = read(bench_csv)
    assert header == FIELDS
    [row] = rows
    assert {k: row[k] for k in FIELDS if k not in ("seconds", "peak_mib")} == dict(
        device="cpu", scope="attention", case="a2k", size="32", style_size="32", pixels="1024", status="ok")
    assert 0 < float(row["seconds"]) < 60
    assert math.isfinite(float(row["peak_mib"])) and float(row["peak_mib"]) >= 0


def test_plot_draws_both_kinds_of_csv_whatever_their_names(bench_csv, pair_csv, tmp_path, capsys):
    for source, name in ((bench_csv, "bench-cpu.csv"), (pair_csv, "pair-cpu.csv")):  # as docs/ names them
        target = tmp_path / name
        shutil.copy(source, target)
        assert main(["--plot", str(target)]) == 0
        assert capsys.readouterr().out.strip() == str(target.with_suffix(".png"))
        assert_png(target.with_suffix(".png"))


def test_plot_refuses_what_it_cannot_draw(tmp_path, capsys):
    other = tmp_path / "metrics.csv"
    other.write_text("method,content_loss\nadain,1.0\n")
    failed = tmp_path / "bench.csv"
    failed.write_text(",".join(FIELDS) + "\ncpu,attention,a2k,64,64,4096,,,failed: out of memory\n")
    for path, message in [(tmp_path / "missing.csv", "missing.csv does not exist"),
                          (other, "is neither a bench.csv"), (failed, "has no row with status ok")]:
        assert main(["--plot", str(path)]) == 2
        assert message in capsys.readouterr().err
        assert not path.with_suffix(".png").exists()


@pytest.mark.parametrize("args,message", [
    (["--only", "attention:a2k,attention:nope"], "--only: unknown case(s) attention:nope; choose from attention:a2k,"),
    (["--sizes", "64,big"], "give sides in pixels"),
    (["--sizes", "8"], "at least 16"),
    (["--device", "cuda:7"], "CUDA GPU"),
    (["--pair", "--weights-dir", "no/such/folder"], "--weights-dir no/such/folder is not a folder"),
    (["--pair", "--repeats", "0"], "--repeats must be at least 1"),
    (["--pair", "--sizes", "32"], "at 32 px on the long side its short side is 21 px"),
    (["--precision", "--device", "cpu"], "--precision measures CUDA autocast"),
], ids=["only", "sizes", "small-size", "device", "weights-dir", "repeats", "pair-size", "precision-cpu"])
def test_bad_arguments_are_refused_with_a_message(args, message, tmp_path, capsys):
    try:
        code = main([*args, "--out", str(tmp_path / "out")])
    except SystemExit as exit_:  # argparse's usage error
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pair_with_an_unreadable_weight_file_stops_before_timing(tmp_path, capsys):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "decoder.pth").write_text("<html>not a weight file</html>")
    assert main(["--pair", "--sizes", "64", "--weights-dir", str(weights), "--out", str(tmp_path / "out")]) == 2
    assert f"{weights / 'decoder.pth'} could not be read as a PyTorch weight file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
