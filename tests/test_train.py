"""The trainer: CPU smoke runs of both recipes on tiny synthetic folders, exact resume, loss pieces."""
import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from model.a2k import REGION_SIZE
from model.function import shallow_keys
from model.methods import load_method
from model.train import (
    COLOUR_JITTER,
    PairDataset,
    a2k0,
    a2k_loss,
    change_colour,
    learning_rate,
    main,
    parse_args,
    stat_loss,
    to_chw,
)
from model.weights import OFFICIAL


def write_image(path, height, width, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(rng.uniform(4, 12) * (x + y) * np.pi)], axis=-1)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    contents, styles = root / "contents", root / "styles" / "nested"
    contents.mkdir()
    styles.mkdir(parents=True)
    write_image(contents / "wide.png", 48, 72, 0)
    write_image(contents / "tall.jpg", 70, 50, 1)
    (contents / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    write_image(styles / "paint.png", 64, 64, 2)
    write_image(styles / "sketch.png", 90, 60, 3)
    return contents, root / "styles"


def train(folders, out, method="stya2k", steps=2, crop=64, *extra):
    contents, styles = folders
    argv = ["--method", method, "--contents", str(contents), "--styles", str(styles), "--out", str(out),
            "--steps", str(steps), "--batch", "2", "--crop", str(crop), "--load-size", str(crop + crop // 4),
            "--device", "cpu", *extra]
    return main(argv)


def read_log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("method,half", [("stya2k", True), ("sanet", False)])
def test_smoke_run_writes_log_samples_and_official_weights(folders, tmp_path, capsys, method, half):
    out = tmp_path / "run"
    assert train(folders, out, method, 2, 64, "--sample-every", "1", *(["--half"] if half else [])) == 0
    assert "skipped 1 of 3 image files" in capsys.readouterr().out

    rows = read_log(out / "losses.csv")
    assert [r["step"] for r in rows] == ["1", "2"]
    terms = {"stya2k": ["global", "a2k"], "sanet": ["content", "style", "id1", "id2"]}[method]
    assert list(rows[0]) == ["step", "lr", *terms, "total", "seconds"]
    assert all(math.isfinite(float(r[k])) and float(r[k]) > 0 for r in rows for k in terms + ["total"])

    grid = Image.open(out / "samples" / "step_000002.png")
    assert grid.size == (3 * 64 + 4 * 2, 2 * 64 + 3 * 2)  # 2 pairs (the larger folder), 3 columns, 2 px padding
    assert (out / "samples" / "step_000001.png").is_file()

    net = load_method(method, out / "weights", "cpu")
    trained = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    for attr, wf in OFFICIAL[method].items():
        saved = torch.load(out / "weights" / wf.path, weights_only=True)
        assert {v.dtype for v in saved.values()} == {torch.float16 if half else torch.float32}
        for key, value in net.get_submodule(attr).state_dict().items():
            assert value.dtype == torch.float32
            assert torch.equal(value, trained[attr][key].to(saved[key].dtype).float()), key

    assert train(folders, out, method, 2, 64) == 2  # an existing run is not overwritten without --resume


def test_resume_continues_exactly(folders, tmp_path):
    schedule = ["--decay-every", "1", "--save-every", "1", "--sample-every", "100"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(folders, straight, "stya2k", 4, 32, *schedule) == 0
    assert train(folders, resumed, "stya2k", 2, 32, *schedule) == 0
    with open(resumed / "losses.csv", "a") as f:
        f.write("3,0,0,0,0,0\n")  # a row logged after the checkpoint, by a run that then died
    assert train(folders, resumed, "stya2k", 4, 32, *schedule, "--batch", "1", "--resume") == 2
    assert train(folders, resumed, "stya2k", 4, 32, *schedule, "--resume") == 0

    def without_seconds(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(path)]

    assert without_seconds(resumed / "losses.csv") == without_seconds(straight / "losses.csv")
    assert [r["lr"] for r in read_log(straight / "losses.csv")] == ["0.0002", "0.0002", "6e-05", "1.8e-05"]
    for wf in OFFICIAL["stya2k"].values():
        a = torch.load(straight / "weights" / wf.path, weights_only=True)
        b = torch.load(resumed / "weights" / wf.path, weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), wf.path


def test_init_starts_from_a_weights_folder(folders, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert train(folders, first, "sanet", 1, 32) == 0
    assert train(folders, second, "sanet", 1, 32, "--init", str(first / "weights"), "--lr", "0") == 0
    for wf in OFFICIAL["sanet"].values():
        a = torch.load(first / "weights" / wf.path, weights_only=True)
        b = torch.load(second / "weights" / wf.path, weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), wf.path
    assert train(folders, tmp_path / "third", "sanet", 1, 32, "--init", str(tmp_path / "none")) == 1
    with pytest.raises(SystemExit):
        parse_args(["--method", "sanet", "--contents", "c", "--styles", "s", "--out", "o", "--steps", "1",
                    "--resume", "--init", "w"])


def test_items_depend_only_on_seed_and_sample_number(folders):
    contents, styles = ([p for p in sorted(f.rglob("*")) if p.is_file() and p.name != "corrupt.jpg"] for f in folders)
    a, b = PairDataset(contents, styles, 80, 40, seed=3), PairDataset(contents, styles, 80, 40, seed=3)
    later = [b[k] for k in (7, 2, 5)]
    for k, item in zip((7, 2, 5), later):
        assert all(torch.equal(x, y) for x, y in zip(a[k], item))
    assert all(x.shape == (3, 40, 40) and 0 <= x.min() and x.max() <= 1 for x in a[5])
    assert not torch.equal(a[5][1], PairDataset(contents, styles, 80, 40, seed=4)[5][1])


def test_scales_crops_flips_and_style_colours(tmp_path):
    """With load-size = crop, a 32 x 32 content comes back whole, as itself or its mirror (its colours
    untouched), while the colours of the style crops vary; with a larger load-size it is rescaled."""
    write_image(tmp_path / "c.png", 32, 32, 0)
    write_image(tmp_path / "s.png", 32, 48, 1)
    original = to_chw(Image.open(tmp_path / "c.png").convert("RGB"))
    items = [PairDataset([tmp_path / "c.png"], [tmp_path / "s.png"], 32, 32, seed=0)[k] for k in range(40)]
    mirrors = [torch.equal(c, original.flip(-1)) for c, _ in items]
    assert all(m or torch.equal(c, original) for m, (c, _) in zip(mirrors, items)) and 0 < sum(mirrors) < 40
    means = torch.stack([s.mean((1, 2)) for _, s in items])
    assert means.std(0).min() > 0.01  # brightness, contrast, saturation and hue vary per sample
    scaled = [PairDataset([tmp_path / "c.png"], [tmp_path / "s.png"], 64, 32, seed=0)[k][0] for k in range(10)]
    assert sum(torch.equal(c, original) or torch.equal(c, original.flip(-1)) for c in scaled) < 5


def test_change_colour_matches_its_factors():
    """With saturation and hue left alone (a grey image), the change is brightness then contrast."""
    grey = torch.linspace(0.1, 0.6, 50).repeat(3, 50, 1)
    rng, same = np.random.default_rng(0), np.random.default_rng(0)
    out = change_colour(grey, rng)
    brightness, contrast, _ = same.uniform(1 - COLOUR_JITTER, 1 + COLOUR_JITTER, size=3)
    bright = (grey * brightness).clamp(0, 1)
    gray_mean = (0.299 * bright[0] + 0.587 * bright[1] + 0.114 * bright[2]).mean()
    expected = (contrast * bright + (1 - contrast) * gray_mean).clamp(0, 1)
    assert torch.allclose(out, expected, atol=2e-3)


def features(height, width, seed):
    """Random relu1_1..relu5_1-shaped features of an image of height x width (VGG rounds sizes up)."""
    gen = torch.Generator().manual_seed(seed)
    feats = []
    for channels in (64, 128, 256, 512, 512):
        feats.append(torch.randn(1, channels, height, width, generator=gen).relu())
        height, width = -(-height // 2), -(-width // 2)
    return feats


def test_a2k0_keeps_odd_sizes_and_targets_carry_no_gradient():
    c, s = features(74, 46, 0), features(50, 64, 1)  # relu2_1 of the content is 37 x 23
    for i in range(1, 5):
        out = a2k0(shallow_keys(c, i), shallow_keys(s, i), s[i], REGION_SIZE[i + 1])
        assert out.shape == c[i].shape and torch.isfinite(out).all()
    o = [f.clone().requires_grad_() for f in features(74, 46, 2)]
    c = [f.requires_grad_() for f in c]
    loss = a2k_loss(o, c, s)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 0
    assert all(f.grad is not None for f in o[1:]) and all(f.grad is None for f in c)


def test_a2k0_of_a_map_with_itself_in_one_region():
    """One (padded) region, style = content: PA attends to each position itself (sharp softmax,
    no 1/sqrt(d)), DA to the region's one aggregated key, so DA + PA - value is the same everywhere."""
    gen = torch.Generator().manual_seed(0)
    key, value = torch.randn(1, 64, 3, 4, generator=gen), torch.randn(1, 8, 3, 4, generator=gen)
    out = a2k0(key, key, value, 4)
    assert out.shape == value.shape
    rest = (out - value).flatten(2)
    assert torch.allclose(rest, rest[..., :1].expand_as(rest), atol=1e-5)


def test_stat_loss_is_zero_only_for_equal_statistics():
    feats = features(32, 32, 0)
    assert stat_loss(feats[:4], [f.clone() for f in feats[:4]]).item() == 0.0
    assert stat_loss(feats[:4], [2 * f for f in feats[:4]]).item() > 0


def test_learning_rate_schedules():
    base = ["--contents", "c", "--styles", "s", "--out", "o", "--steps", "50"]
    stya2k = parse_args(["--method", "stya2k", *base])  # default: 5 periods of 10 steps
    assert [learning_rate(stya2k, s) / 2e-4 for s in (0, 19, 20, 30, 49)] == pytest.approx([1, 1, 0.3, 0.09, 0.027])
    sanet = parse_args(["--method", "sanet", *base])
    assert sanet.batch == 5 and learning_rate(sanet, 20000) == pytest.approx(1e-4 / 2)


def test_warm_start_lowers_the_loss_in_a_few_steps_and_resumes(folders, tmp_path):
    """A one-crop bank gives every step the same pair: a few steps from the warm start lower its losses.
    The run then continues with --resume (optimiser state kept) and plots its loss curve."""
    out = tmp_path / "warm"
    warm = ["--warm-start", "--bank", "1", "--save-every", "100", "--sample-every", "100"]
    assert train(folders, out, "stya2k", 4, 64, *warm) == 0
    rows = read_log(out / "losses.csv")
    assert list(rows[0]) == ["step", "lr", "content", "style", "total", "seconds"]
    totals = [float(r["total"]) for r in rows]
    assert totals[-1] < 0.9 * totals[0], totals
    assert train(folders, out, "stya2k", 6, 64, *warm, "--resume") == 0
    assert [r["step"] for r in read_log(out / "losses.csv")] == [str(s) for s in range(1, 7)]
    assert Image.open(out / "loss_curve.png").size[0] > 0
    assert load_method("stya2k", out / "weights", "cpu") is not None
