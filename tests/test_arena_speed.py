"""The demo's comparison path: features shared through the arena's cache, time estimates."""
import statistics

import numpy as np
import pytest
from PIL import Image

from demo.arena import Arena, Settings, Throughput, time_left
from demo.battle import run_text
from demo.budget import Hold
from demo.gallery import example_paths
from demo.upload import read_input, shrink


def test_a_comparison_encodes_each_image_once_and_caches_results(tmp_path):
    arena = Arena(Settings(device="cpu", data_dir=str(tmp_path)))
    rng = np.random.default_rng(0)
    content = arena.images.put(Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)), Hold())
    style = arena.images.put(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), Hold())
    both = ["a2k_free", "all2all_free"]
    assert arena.estimate(both, 96, content, style) is None
    first = arena.stylize(content, style, "a2k_free", 96, 1.0, False, Hold(), style_size=64)
    second = arena.stylize(content, style, "all2all_free", 96, 1.0, False, Hold(), style_size=64)
    assert not first.cached and not second.cached
    assert (arena.features.misses, arena.features.hits) == (2, 4)  # content and style encoded once, used twice
    arena.stylize(content, style, "a2k_free", 96, 0.5, False, Hold(), style_size=64)  # another alpha: no encoding
    assert arena.features.misses == 2
    assert arena.stylize(content, style, "a2k_free", 96, 1.0, False, Hold(), style_size=64).cached
    assert arena.estimate(both, 96, content, style) > 0
    assert arena.progress_text(["all2all_free"], 96, content, style) == \
        f"Running all-to-all (training-free), {time_left(arena.estimate(['all2all_free'], 96, content, style))}"
    stored = [m for m in ("a2k_free", "all2all_free") if arena.stored(content, style, m, 96, 0.5, False, style_size=64)]
    assert stored == ["a2k_free"]
    text = arena.progress_text(both, 96, content, style, stored)  # the estimate: all2all_free's run alone
    assert text == f"Loading A2K (training-free), stored, {time_left(arena.estimate(['all2all_free'], 96, content, style))}"
    assert arena.progress_text(["a2k_free"], 96, content, style, stored) == "Loading A2K (training-free), stored"


def test_estimates_charge_the_encodings_a_run_needs_to_the_first_run_only(tmp_path):
    """New pictures cost their encodings (what made Compare's estimates about 2x short on uploads: they came
    from runs on cached gallery features); the second method of a comparison finds them cached."""
    arena = Arena(Settings(device="cpu", data_dir=str(tmp_path)))
    rng = np.random.default_rng(1)
    content, style, other = (arena.images.put(Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)), Hold())
                             for _ in range(3))
    arena.stylize(content, style, "a2k_free", 96, 1.0, False, Hold())
    assert arena.plan("all2all_free", content, style, 96) == ((96, 72), [])
    assert arena.plan("all2all_free", other, style, 96) == ((96, 72), [(96, 72)])
    seen, new = (arena.estimates(["all2all_free", "a2k_free"], 96, c, style) for c in (content, other))
    assert seen[1] == new[1] and new[0] - seen[0] == pytest.approx(statistics.median(arena.throughput.encoder_rates)
                                                                     * 96 * 72 / 1e6)


def test_time_left_never_says_zero_seconds():
    assert [time_left(s) for s in (0.02, 0.99, 1.0, 4.4, 89, 90, 200)] == [
        "under a second left", "under a second left", "about 1 s left", "about 4 s left", "about 89 s left",
        "about 2 min left", "about 3 min left"]


# 160: the paintings are shrunk on upload; the default (512 px) is the same path with 10x the arithmetic
@pytest.mark.parametrize("max_size", [160, pytest.param(None, marks=pytest.mark.slow)])
def test_the_warm_up_encodes_the_gallery_so_a_gallery_painting_is_not_encoded_again(tmp_path, max_size):
    arena = Arena(Settings(device="cpu", data_dir=str(tmp_path), max_size=max_size))
    size = arena.settings.default_size
    # as the Compare tab receives a gallery painting and a photo
    style, content = (arena.images.put(shrink(read_input(example_paths(kind)[-1]), arena.settings.size_cap), Hold())
                      for kind in ("styles", "contents"))
    assert arena.estimate(["a2k_free"], size, content, style) is None
    assert arena.encode_gallery() == len(example_paths("styles")) == arena.features.misses
    assert arena.estimate(["a2k_free"], size, content, style) > 0  # from the encoder's measured throughput
    assert len(arena.plan("a2k_free", content, style, size)[1]) == 1  # the photo only
    misses = arena.features.misses
    arena.stylize(content, style, "a2k_free", size, 1.0, False, Hold())
    assert arena.features.misses == misses + 1  # the photo only


def test_estimates_come_from_measured_throughput():
    rates = Throughput()
    assert rates.estimate("a", 1000, (1000, 750)) is None
    rates.encoded(1.0, 2.0)  # 2 s per megapixel through the encoder
    assert rates.estimate("a", 1000, (1000, 750)) == pytest.approx(2.0 * 0.75)  # the decoder: as costly as the encoder
    assert rates.estimate("a", 1000, (1000, 750), [(1000, 750), (512, 384)]) == pytest.approx(2.0 * (0.75 + 0.75 + 0.196608))
    rates.ran("a", 500, (500, 250), 0.5)  # 4 s per output megapixel at 500 px
    rates.ran("a", 1000, (1000, 500), 3.0)  # 6 s per output megapixel at 1000 px
    assert rates.estimate("a", 1000, (750, 1000)) == pytest.approx(6.0 * 0.75)  # that method and size: its runs
    assert rates.estimate("a", 500, (500, 500)) == pytest.approx(4.0 * 0.25)
    assert rates.estimate("a", 800, (800, 400)) == pytest.approx(5.0 * 0.32)  # another size: the method's runs
    assert rates.estimate("b", 1000, (1000, 750), [(1000, 750)]) == pytest.approx(5.0 * 0.75 + 2.0 * 0.75)  # a's rate


def test_the_battle_counts_down_each_model_and_says_when_it_runs_over():
    estimates = {"A": 6.0, "B": 2.4}
    assert run_text("A", estimates, 0) == "Model A is painting, about 6 s left… · Model B: about 2 s"
    assert run_text("A", estimates, 5.5) == "Model A is painting, under a second left… · Model B: about 2 s"
    assert run_text("A", estimates, 8.2) == "Model A is painting, longer than estimated (8 s so far)… · Model B: about 2 s"
    assert run_text("B", estimates, 1) == "Model B is painting, about 1 s left…"
    assert run_text("A", {"A": 0.0, "B": 0.0}, 0) == "Model A: precomputed, loading… · Model B: precomputed"
    assert run_text("A", {"A": None, "B": None}, 3) == "Model A is painting…"
