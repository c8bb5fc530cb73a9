"""Battles in process (demo.battle.Battles, which the Battle tab's events drive): the pair drawn, the pictures as
they are painted and served, the vote stored as it was seen. tests/test_demo.py drives the same over HTTP."""
import hashlib
import hmac
import itertools
import re

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from demo.arena import Arena, Result, Settings
from demo.battle import STALE, Battles
from demo.limits import TOO_FAST, VoteLimits
from demo.session import inputs_key
from demo.storage import encoded
from model.methods import METHODS

ADDRESS = "198.51.100.7"
ASK = "Which picture is better? The names appear after your vote."


@pytest.fixture(scope="module")
def battles(tmp_path_factory):
    """Battles at 64 px on the CPU over the methods that run offline, without the per-visitor vote interval."""
    arena = Arena(Settings(device="cpu", data_dir=str(tmp_path_factory.mktemp("data")), max_size=64, vote_interval_ms=0))
    return Battles(arena, tmp_path_factory.mktemp("served"))


def picture(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8))


def pixels(path_or_image):
    return np.asarray(Image.open(path_or_image) if not isinstance(path_or_image, Image.Image) else path_or_image,
                      dtype=np.int16)


def test_a_battle_streams_its_pictures_then_opens_the_vote_on_what_was_shown(battles):
    content, style, state = picture(1), picture(2), {}
    steps = list(battles.fight(content, style, state, ADDRESS))
    token = steps[0][0]
    assert {s[0] for s in steps} == {token}
    assert steps[0][1] == [None, None] and steps[0][2].startswith("Model A is painting")
    a_ready = [text for _, (a, b), text, _ in steps if a is not None and b is None]
    assert a_ready and a_ready[0].startswith("Model B is painting")
    assert steps[-2][2] == "" and None not in steps[-2][1]
    assert [s[3] for s in steps[:-1]] == [None] * (len(steps) - 1)
    served, text, battle = steps[-1][1:]
    assert text == ASK
    assert battle["token"] == token and battle["inputs"] == inputs_key(content, style) == state["battle_inputs"]
    assert (battle["content"], battle["style"]) == (encoded(content)[1], encoded(style)[1])
    low, high = sorted(battle["methods"])
    assert low != high and {low, high} <= set(battles.runnable)
    assert battle["outputs"] == [r.sha256 for r in battle["results"]]
    for side, path, output in zip("AB", served, battle["outputs"]):
        assert path.parent.name == hmac.new(battles.key, f"{token}:{side}".encode(), hashlib.sha256).hexdigest()
        assert path.parent.parent == battles.cache_dir
        stored = battles.arena.images.get(output)
        change = np.abs(pixels(path) - pixels(stored))
        assert change.max() == 1 and path.read_bytes() != battles.arena.images.data(output)  # disguised


def test_the_vote_stores_the_methods_and_pictures_on_their_sides_and_reveals_them(battles):
    state = {}
    *_, (_, _, _, battle) = battles.fight(picture(3), picture(4), state, ADDRESS)
    before = len(battles.arena.store.battles())
    labels, revealed = battles.vote("right", battle, state, ADDRESS)
    row = battles.arena.store.battles().iloc[before:]
    assert len(row) == 1
    row = row.iloc[0]
    assert [row.left_method, row.right_method] == battle["methods"]
    assert [row.left_sha256, row.right_sha256] == battle["outputs"]
    assert (row.token, row.content_sha256, row.style_sha256, row.choice) == \
        (battle["token"], battle["content"], battle["style"], "right")
    assert row.settings == {"size": 64, "alpha": 1.0, "preserve_color": False, "device": "cpu"}
    assert row.source and row.source != ADDRESS and row.voter != state["visitor"]
    assert labels == [METHODS[m].label for m in battle["methods"]]
    assert re.fullmatch(rf"Your vote: \*\*B is better\*\*\. \*\*Model A\*\* was \*\*{re.escape(labels[0])}\*\*: "
                        rf"(run now,|precomputed \(its run:) \d+\.\d s\)?\. \*\*Model B\*\* was "
                        rf"\*\*{re.escape(labels[1])}\*\*: (run now,|precomputed \(its run:) \d+\.\d s\)?\.", revealed)
    with pytest.raises(gr.Error, match="already voted"):
        battles.vote("left", battle, state, ADDRESS)
    with pytest.raises(gr.Error, match="Start a battle before voting"):
        battles.vote("left", None, state, ADDRESS)


def test_new_inputs_while_painting_or_before_the_vote_leave_the_battle_unvotable(battles):
    state = {}
    steps = battles.fight(picture(5), picture(6), state, ADDRESS)
    next(steps)
    state["battle_inputs"] = inputs_key(picture(7), picture(6))  # the visitor changed the photo meanwhile
    *_, (_, pictures, text, battle) = steps
    assert (text, battle) == (STALE, None) and None not in pictures
    *_, (_, _, _, battle) = battles.fight(picture(5), picture(6), state, ADDRESS)
    state["battle_inputs"] = inputs_key(picture(7), picture(6))
    with pytest.raises(gr.Error, match=re.escape(STALE)):
        battles.vote("left", battle, state, ADDRESS)


def test_each_pair_once_per_visitor_and_images_regenerate_draws_another_then_the_pairs_run_out(battles):
    content, style, state = picture(8), picture(9), {}
    pairs = set(itertools.combinations(sorted(battles.runnable), 2))
    seen = set()
    while len(pairs - seen) > 2:
        assert battles.left_to_vote(state.setdefault("visitor", "v-pairs"), content, style)
        *_, (_, _, _, battle) = battles.fight(content, style, state, ADDRESS)
        pair = tuple(sorted(battle["methods"]))
        assert pair not in seen
        seen.add(pair)
        _, revealed = battles.vote("tie", battle, state, ADDRESS)
    assert "precomputed (its run:" in revealed  # five methods: the last pairs reuse stored results
    last_two = sorted(pairs - seen)
    *_, (_, _, _, battle) = battles.fight(content, style, state, ADDRESS, avoid=last_two[0])
    assert tuple(sorted(battle["methods"])) == last_two[1]  # Regenerate: another pair while one is left
    battles.vote("left", battle, state, ADDRESS)
    *_, (_, _, _, battle) = battles.fight(content, style, state, ADDRESS, avoid=last_two[0])
    assert tuple(sorted(battle["methods"])) == last_two[0]  # the one left, even if it was on screen
    battles.vote("left", battle, state, ADDRESS)
    assert not battles.left_to_vote("v-pairs", content, style)
    assert battles.left_to_vote("v-other", content, style)
    with pytest.raises(gr.Error, match="voted on every pair of models for this photo and painting"):
        list(battles.fight(content, style, state, ADDRESS))


def test_the_status_gives_each_models_time_left_once_runs_were_measured(battles):
    list(battles.fight(picture(10), picture(11), {}, ADDRESS))  # at least one run measured at this size
    first = next(battles.fight(picture(12), picture(13), {}, ADDRESS))[2]
    assert re.fullmatch(r"Model A is painting, (under a second left|about \d+ s left)… · Model B: about \d+ s", first)


def test_a_missing_picture_a_full_write_budget_or_a_fast_second_vote_get_a_message(battles, tmp_path, monkeypatch):
    with pytest.raises(gr.Error, match="Add a content photo first"):
        next(battles.fight(None, picture(1), {}, ADDRESS))
    with pytest.raises(gr.Error, match="Add a content photo and a style painting first"):
        next(battles.fight(None, None, {}, ADDRESS))
    full = Battles(Arena(Settings(device="cpu", data_dir=str(tmp_path), max_size=64, client_write_mb=0)), tmp_path)
    with pytest.raises(gr.Error, match="The server cannot run this now: .*"):
        next(full.fight(picture(1), picture(2), {}, ADDRESS))
    assert len(full.arena.store.battles()) == 0
    monkeypatch.setattr(battles, "limits", VoteLimits(60_000, 600))
    state = {}
    *_, (_, _, _, first) = battles.fight(picture(14), picture(15), state, ADDRESS)
    *_, (_, _, _, second) = battles.fight(picture(16), picture(15), state, ADDRESS)
    battles.vote("left", first, {**state, "battle_inputs": first["inputs"]}, ADDRESS)
    with pytest.raises(gr.Error, match=re.escape(TOO_FAST)):
        battles.vote("left", second, state, ADDRESS)


@pytest.mark.parametrize("device, memory", [("cpu", ""), ("cuda", ", 300 MiB GPU peak")])
def test_the_reveal_says_how_each_picture_was_made(tmp_path, device, memory):
    battles = Battles(Arena(Settings(device=device, data_dir=str(tmp_path))), tmp_path)
    assert battles.ran(Result("x", 1.25, 300.4, False)) == f"run now, 1.2 s{memory}"
    assert battles.ran(Result("x", 12.0, 300.4, True)) == f"precomputed (its run: 12.0 s{memory})"
    assert battles.ran(Result("x", 12.0, None, True)) == "precomputed (its run: 12.0 s)"
