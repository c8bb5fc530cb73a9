"""Battles in process: demo.battle.Battles (the pair drawn, the pictures as they are painted and served, the vote
stored as it was seen), and the Battle tab's event functions called as Gradio calls them (what each puts on
screen). tests/test_demo.py and tests/test_arena_browser.py drive the same over HTTP and in a browser."""
import hashlib
import hmac
import itertools
import re
import time

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from demo import battle as battle_module
from demo.arena import Arena, Result, Settings
from demo.battle import STALE, Battles, build_battle_tab, corrected, run_text
from demo.choices import BATTLE_LABELS
from demo.gallery import example_paths
from demo.limits import TOO_FAST, TOO_MANY, VoteLimits
from demo.session import inputs_key
from demo.storage import encoded
from demo.upload import read_input, shrink
from demo.warmup import pair_paths
from model.methods import METHODS

ADDRESS = "198.51.100.7"
EVERY_PAIR = ("You have voted on every pair of models for this photo and painting: choose another photo or "
              "painting.")
ASK = "Which picture is better? The names appear after your vote."


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    """An arena at 64 px on the CPU over the methods that run offline, without the per-visitor vote interval."""
    return Arena(Settings(device="cpu", data_dir=str(tmp_path_factory.mktemp("data")), max_size=64, vote_interval_ms=0))


@pytest.fixture(scope="module")
def battles(arena, tmp_path_factory):
    return Battles(arena, tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def events(arena):
    """The Battle tab's event functions by their API name, as a page's events call them."""
    with gr.Blocks() as blocks:
        build_battle_tab(arena, gr.State({}))
    return {fn.api_name: fn.fn for fn in blocks.fns.values()}


class FirstChoice:
    """A draw that always takes the first: pick_pair then gives the first pair left, in sorted order."""

    def random(self):
        return 1.0

    def choice(self, seq):
        return seq[0]

    def shuffle(self, seq):
        pass


def refusal(call, *args):
    """The message of the gr.Error that call(*args) raises."""
    with pytest.raises(gr.Error) as refused:
        call(*args)
    return refused.value.message


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
        moved = pixels(path) - pixels(stored)
        assert {-1, 0, 1} <= set(np.unique(moved[(pixels(stored) > 0) & (pixels(stored) < 255)]))


def test_the_vote_stores_the_methods_and_pictures_on_their_sides_and_reveals_them(battles):
    state = {}
    *_, (_, _, _, battle) = battles.fight(picture(3), picture(4), state, ADDRESS)
    before = len(battles.arena.store.battles())
    time.sleep(0.05)  # looked at for 50 ms
    labels, revealed = battles.vote("right", battle, state, ADDRESS)
    row = battles.arena.store.battles().iloc[before:]
    assert len(row) == 1
    row = row.iloc[0]
    assert [row.left_method, row.right_method] == battle["methods"]
    assert [row.left_sha256, row.right_sha256] == battle["outputs"]
    assert (row.token, row.content_sha256, row.style_sha256, row.choice) == \
        (battle["token"], battle["content"], battle["style"], "right")
    assert row.settings == {"size": 64, "alpha": 1.0, "preserve_color": False, "device": "cpu"}
    assert row.source == battles.sources.of(ADDRESS) != ADDRESS and row.voter != state["visitor"]
    assert 50 <= row.response_time_ms < 5000
    assert labels == [METHODS[m].label for m in battle["methods"]]
    assert re.fullmatch(rf"Your vote: \*\*B is better\*\*\. \*\*Model A\*\* was \*\*{re.escape(labels[0])}\*\*: "
                        rf"(run now,|precomputed \(its run:) \d+\.\d s\)?\. \*\*Model B\*\* was "
                        rf"\*\*{re.escape(labels[1])}\*\*: (run now,|precomputed \(its run:) \d+\.\d s\)?\.", revealed)
    with pytest.raises(gr.Error, match="already voted"):
        battles.vote("left", battle, state, ADDRESS)
    assert refusal(battles.vote, "left", None, state, ADDRESS) == "Start a battle before voting."


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
    assert refusal(lambda: list(battles.fight(content, style, state, ADDRESS))) == EVERY_PAIR


def test_the_status_gives_each_models_time_left_once_runs_were_measured(battles):
    list(battles.fight(picture(10), picture(11), {}, ADDRESS))  # at least one run measured at this size
    first = next(battles.fight(picture(12), picture(13), {}, ADDRESS))[2]
    assert re.fullmatch(r"Model A is painting, (under a second left|about \d+ s left)… · Model B: about \d+ s", first)


def test_a_missing_picture_or_a_full_write_budget_get_a_message_and_a_battle_charges_its_address(battles, tmp_path):
    with pytest.raises(gr.Error, match="Add a content photo first"):
        next(battles.fight(None, picture(1), {}, ADDRESS))
    with pytest.raises(gr.Error, match="Add a content photo and a style painting first"):
        next(battles.fight(None, None, {}, ADDRESS))
    full = Battles(Arena(Settings(device="cpu", data_dir=str(tmp_path), max_size=64, client_write_mb=0)), tmp_path)
    with pytest.raises(gr.Error, match="The server cannot run this now: .*"):
        next(full.fight(picture(1), picture(2), {}, ADDRESS))
    assert len(full.arena.store.battles()) == 0
    elongated = Image.new("RGB", (200, 10), "gray")
    assert refusal(lambda: list(battles.fight(elongated, picture(2), {}, ADDRESS))).startswith(
        "the image is 200x10: at 64 px on the long side its short side is 3 px, under 32.")
    address = "198.51.100.99"
    list(battles.fight(picture(17), picture(18), {}, address))
    assert not battles.arena.writes.of(address).idle() and battles.arena.writes.of("198.51.100.98").idle()


def test_the_settings_give_the_votes_per_minute_of_an_address(arena, tmp_path):
    limited = Battles(Arena(Settings(device="cpu", data_dir=str(tmp_path), max_size=64, vote_interval_ms=0,
                                     votes_per_minute=1)), tmp_path)
    first, second = {}, {}
    *_, (_, _, _, mine) = limited.fight(picture(19), picture(20), first, ADDRESS)
    *_, (_, _, _, yours) = limited.fight(picture(19), picture(20), second, ADDRESS)
    limited.vote("left", mine, first, ADDRESS)
    assert refusal(limited.vote, "left", yours, second, ADDRESS) == TOO_MANY


def test_votes_pass_the_limits_per_visitor_and_per_address(battles, monkeypatch):
    """One vote per visitor per interval; `per_minute` votes per address (another visitor or address is not
    refused by what a visitor or an address did)."""
    monkeypatch.setattr(battles, "limits", VoteLimits(60_000, 2))
    me, other, third = {}, {}, {}
    *_, (_, _, _, first) = battles.fight(picture(14), picture(15), me, ADDRESS)
    *_, (_, _, _, second) = battles.fight(picture(16), picture(15), me, ADDRESS)
    *_, (_, _, _, others) = battles.fight(picture(14), picture(15), other, ADDRESS)
    *_, (_, _, _, thirds) = battles.fight(picture(14), picture(15), third, ADDRESS)
    battles.vote("left", first, {**me, "battle_inputs": first["inputs"]}, ADDRESS)
    with pytest.raises(gr.Error, match=re.escape(TOO_FAST)):
        battles.vote("left", second, me, ADDRESS)
    battles.vote("left", others, other, ADDRESS)  # another visitor on the address: its second vote this minute
    with pytest.raises(gr.Error, match=re.escape(TOO_MANY)):
        battles.vote("left", thirds, third, ADDRESS)
    battles.vote("left", thirds, third, "198.51.100.8")  # the same visitor from another address


def test_the_status_while_painting(battles, monkeypatch):
    """It ticks while a model paints (every TICK_S), and says precomputed for a stored result."""
    monkeypatch.setattr(battle_module, "TICK_S", 0.001)
    monkeypatch.setattr(battles, "rng", FirstChoice())
    steps = list(battles.fight(picture(60), picture(61), {}, ADDRESS))
    painting = [text for _, _, text, _ in steps[:-2]]
    assert len(painting) > 3 and all(re.fullmatch(
        r"Model ([AB]) is painting(, (under a second left|about \d s left|longer than estimated \(\d s so far\)))?…"
        r"( · Model B: about \d s)?", text) for text in painting), painting
    again = next(battles.fight(picture(60), picture(61), {}, ADDRESS))  # another visitor, the same pair: stored
    assert again[2] == "Model A: precomputed, loading… · Model B: precomputed"
    steps = list(battles.fight(picture(62), picture(61), {}, ADDRESS))  # both methods measured now
    a_ready = next(text for _, (a, b), text, _ in steps if a is not None and b is None)
    assert re.fullmatch(r"Model B is painting, (under a second left|about \d s left)…", a_ready)


def test_the_status_text():
    assert run_text("A", {"A": 10.0, "B": 0.0}, 4) == "Model A is painting, about 6 s left… · Model B: precomputed"
    assert run_text("A", {"A": 10.0, "B": 2.6}, 12.4) == \
        "Model A is painting, longer than estimated (12 s so far)… · Model B: about 3 s"
    assert run_text("A", {"A": 10.0, "B": 0.3}, 10) == "Model A is painting, under a second left… · Model B: about 1 s"
    assert run_text("A", {"A": 0.0, "B": None}, 0) == "Model A: precomputed, loading…"
    assert run_text("B", {"A": 5.0, "B": None}, 3) == "Model B is painting…"
    assert run_text("B", {"A": 5.0, "B": 1.0}, 0) == "Model B is painting, about 1 s left…"


def test_the_next_models_estimate_is_scaled_by_how_far_the_first_was_off():
    assert corrected({"A": 2.0, "B": 4.0}, "A", 3.0) == {"A": 2.0, "B": 6.0}
    assert corrected({"A": 2.0, "B": 0.0}, "A", 3.0) == {"A": 2.0, "B": 0.0}  # stored: no time
    assert corrected({"A": 2.0, "B": None}, "A", 3.0) == {"A": 2.0, "B": None}
    assert corrected({"A": None, "B": 4.0}, "A", 3.0) == {"A": None, "B": 4.0}
    assert corrected({"A": 2.0, "B": 4.0}, "B", 1.0) == {"A": 2.0, "B": 4.0}


@pytest.mark.parametrize("device, memory", [("cpu", ""), ("cuda", ", 300 MiB GPU peak")])
def test_the_reveal_says_how_each_picture_was_made(tmp_path, device, memory):
    battles = Battles(Arena(Settings(device=device, data_dir=str(tmp_path))), tmp_path)
    assert battles.ran(Result("x", 1.25, 300.4, False)) == f"run now, 1.2 s{memory}"
    assert battles.ran(Result("x", 12.0, 300.4, True)) == f"precomputed (its run: 12.0 s{memory})"
    assert battles.ran(Result("x", 12.0, None, True)) == "precomputed (its run: 12.0 s)"


def screen(update):
    """One update of the tab's outputs [photo, painting, picture A, picture B, status, reveal, battle, the vote
    buttons, Regenerate, New round, the scroll trigger] as {what: value}; a button as whether it is enabled."""
    photo, painting, a, b, status, reveal, battle, *buttons, regenerate, new_round, focus = update
    return {"inputs": [photo, painting], "pictures": [a, b], "status": status, "reveal": reveal, "battle": battle,
            "votes": [v.interactive for v in buttons], "regenerate": regenerate.interactive,
            "new_round": new_round.interactive, "focus": focus}


SKIP = gr.skip()


def test_the_tab_hides_the_names_until_the_vote_then_stores_the_choice_it_revealed(events, arena):
    request, state = gr.Request(client={"host": ADDRESS}), {}
    for n, choice in enumerate(BATTLE_LABELS):
        updates = [screen(u) for u in events["battle"](picture(30 + n), picture(40), state, request)]
        first, last = updates[0], updates[-1]
        battle = last["battle"]
        assert first["inputs"] == [SKIP, SKIP] and first["focus"] == battle["token"]
        assert all(u["focus"] == SKIP for u in updates[1:])
        assert all(not any(u["votes"]) and not u["regenerate"] for u in updates[:-1])
        assert last["votes"] == [True] * 4 and last["regenerate"] and not last["new_round"]
        assert last["status"] == ASK and last["reveal"] == ""
        assert [p.label for p in last["pictures"]] == ["Model A", "Model B"]  # no name before the vote
        for picture_, output in zip(last["pictures"], battle["outputs"]):
            assert np.abs(pixels(picture_.value["path"]) - pixels(arena.images.get(output))).max() == 1
        before = len(arena.store.battles())
        voted = screen((SKIP, SKIP, *events[f"battle_vote_{choice}"](battle, state, request)))
        row = arena.store.battles().iloc[before:].iloc[0]
        labels = [METHODS[m].label for m in (row.left_method, row.right_method)]
        assert row.choice == choice and [row.left_sha256, row.right_sha256] == battle["outputs"]
        assert row.source == events["battle"].__self__.battles.sources.of(ADDRESS)  # the request's address
        assert [p.label for p in voted["pictures"]] == [f"Model A: {labels[0]}", f"Model B: {labels[1]}"]
        assert [p.value for p in voted["pictures"]] == [None, None]  # the pictures on screen stay
        assert voted["reveal"].startswith(f"Your vote: **{BATTLE_LABELS[choice]}**. **Model A** was **{labels[0]}**")
        assert voted["status"] == "Thank you! **New round**: another pair of models."
        assert voted["battle"] is None and voted["votes"] == [False] * 4 and voted["new_round"]
        assert not voted["regenerate"] and voted["focus"] == SKIP


def test_regenerate_new_round_examples_and_new_inputs_on_the_tab(events, arena, monkeypatch):
    tab = events["battle"].__self__
    monkeypatch.setattr(tab.battles, "rng", FirstChoice())
    request, state = gr.Request(client={"host": ADDRESS}), {}
    photo, painting = picture(50), picture(51)
    pairs = list(itertools.combinations(sorted(tab.battles.runnable), 2))
    *_, shown = events["battle"](photo, painting, state, request)
    assert tuple(screen(shown)["battle"]["methods"]) == pairs[0]
    *_, again = events["battle_regenerate"](photo, painting, screen(shown)["battle"], state, request)
    battle = screen(again)["battle"]
    assert tuple(battle["methods"]) == pairs[1]  # another pair than the one on screen
    voted = []
    for _ in pairs:  # New round after each vote: another pair on the same pictures while one is left
        events["battle_vote_left"](battle, state, request)
        voted.append(tuple(battle["methods"]))
        first, *_, last = (screen(u) for u in events["battle_new_round"](photo, painting, state, request))
        battle = last["battle"]
        if len(voted) < len(pairs):
            assert first["inputs"] == [SKIP, SKIP] and battle["inputs"] == inputs_key(photo, painting)
            assert tuple(battle["methods"]) == next(p for p in pairs if p not in voted)
    assert sorted(voted) == pairs  # then the gallery's first photo and painting
    contents, styles = example_paths("contents"), example_paths("styles")
    assert first["inputs"] == [contents[0], styles[0]]
    assert (battle["content"], battle["style"]) == tuple(encoded(shrink_to(p, arena))[1] for p in first["inputs"])
    first, *_, last = (screen(u) for u in events["battle_new_round"](None, painting, state, request))
    assert first["inputs"] == [contents[0], styles[0]]
    first, *_, last = (screen(u) for u in events["battle_example"](1, state, request))
    assert first["inputs"] == list(pair_paths()[1]) and last["status"] == ASK
    example = [read_input(p) for p in pair_paths()[1]]
    assert list(events["battle_inputs_changed"](*example, state)) == [SKIP] * 12  # the battle's own inputs arriving
    cleared = screen((SKIP, SKIP, *events["battle_inputs_changed"](picture(52), painting, state)))
    assert cleared["battle"] is None and cleared["pictures"][0].value is None and not any(cleared["votes"])
    assert cleared["status"] == "" and cleared["focus"] == SKIP
    assert list(events["battle_inputs_changed"](picture(52), painting, state)) == [SKIP] * 12  # nothing new


def test_each_event_of_the_tab_charges_its_requests_address(events, arena):
    """What a battle stores is charged to the address of the request that started it; a request without a
    client (no address) votes as the address ""."""
    photo, painting, state = picture(70), picture(71), {}
    calls = {"battle": (photo, painting, state), "battle_regenerate": (photo, painting, None, state),
             "battle_new_round": (photo, painting, state), "battle_example": (2, state)}
    for n, (event, args) in enumerate(calls.items()):
        address = f"192.0.2.{10 + n}"
        *_, last = events[event](*args, gr.Request(client={"host": address}))
        assert screen(last)["status"] == ASK and not arena.writes.of(address).idle(), event
    before = len(arena.store.battles())
    events["battle_vote_tie"](screen(last)["battle"], state, gr.Request(client=None))
    assert arena.store.battles().iloc[before:]["source"].tolist() == [events["battle"].__self__.battles.sources.of("")]


def shrink_to(path, arena):
    return shrink(read_input(path), arena.settings.size_cap)
