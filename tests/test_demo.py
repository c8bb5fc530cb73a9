"""The launched demo driven over HTTP with gradio_client: stylise, vote, read the vote back."""
import io
import json
import re

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from bench.server import ROOT, App
from demo.upload import missing_input
from model.methods import METHODS
from study.store import Store

CONTENT = ROOT / "examples/contents/photo_chelsea.jpg"
STYLE = ROOT / "examples/styles/gogh_cafe_terrace_night.jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("arena")
    server = App(data, "--max-size", "512", env={"VOTE_INTERVAL_MS": "0"}).start()  # duplicates, not rate limits
    server.data = data
    yield server
    server.stop()


def stylise(client, content=CONTENT, style=STYLE, size=192, left="a2k_free", right="all2all_free", alpha=1.0):
    return client.predict(handle_file(content), handle_file(style), left, right, size, alpha, False,
                          api_name="/stylize")


def test_stylise_vote_and_read_it_back(server):
    client = Client(server.url, verbose=False)
    left, right, slider, info, prompt = stylise(client)
    out_left, out_right = Image.open(left), Image.open(right)
    assert max(out_left.size) == 192 and out_left.size == out_right.size
    assert out_left.format == "PNG" and [Image.open(p).format for p in slider] == ["PNG", "PNG"]
    assert "A2K (training-free)" in info and "MiB for this call" in info
    assert "Recorded: A2K (training-free) is better" in client.predict(api_name="/vote_left")
    with pytest.raises(Exception, match="already has a vote"):
        client.predict(api_name="/vote_right")
    with Store(server.data / "arena.db") as store:
        votes = store.comparisons()
    assert len(votes) == 1
    row = votes.iloc[0]
    assert (row.left_method, row.right_method, row.choice) == ("a2k_free", "all2all_free", "left")
    assert row.settings["size"] == 192
    for sha in (row.content_sha256, row.style_sha256, row.left_sha256, row.right_sha256):
        assert (server.data / "images" / sha[:2] / f"{sha}.png").is_file()  # every vote traces to its images


def test_a_repeated_comparison_and_a_same_method_comparison_cannot_be_voted_on(server):
    client = Client(server.url, verbose=False)
    stylise(client, left="adain", right="all2all_free", size=224)
    client.predict(api_name="/vote_tie")
    stylise(client, left="all2all_free", right="adain", size=224)  # the same comparison, cached, sides swapped
    with pytest.raises(Exception, match="already has a vote"):
        client.predict(api_name="/vote_left")
    stylise(client, left="adain", right="adain", size=224)
    with pytest.raises(Exception, match="same method"):
        client.predict(api_name="/vote_left")
    other = Client(server.url, verbose=False)  # another visitor may vote on that comparison
    stylise(other, left="adain", right="all2all_free", size=224)
    assert "Recorded" in other.predict(api_name="/vote_right")
    with Store(server.data / "arena.db") as store:
        votes = store.comparisons().query("settings.str['size'] == 224")
    assert votes["choice"].tolist() == ["tie", "right"]


def test_a_battle_names_no_method_before_the_vote_and_takes_one_vote(server):
    client = Client(server.url, verbose=False)
    *_, first, second, status, reveal, _ = client.predict(handle_file(CONTENT), handle_file(STYLE), api_name="/battle")
    names = [m.name for m in METHODS.values()] + [m.label for m in METHODS.values()]
    shown = json.dumps([first, second, status, reveal])
    assert first["label"] == "Model A" and second["label"] == "Model B"
    assert not [n for n in names if n in shown]
    reveal = client.predict(api_name="/battle_vote_left")[3]
    assert "Model A** was" in reveal
    with pytest.raises(Exception, match="Start a battle"):
        client.predict(api_name="/battle_vote_right")
    with Store(server.data / "arena.db") as store:
        battles = store.battles()
    assert len(battles) == 1 and battles["left_method"][0] != battles["right_method"][0]
    assert [n for n in names if n in reveal] and battles["choice"].tolist() == ["left"]


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def revealed_methods(reveal):
    """The method names the reveal gives for Model A and Model B."""
    by_label = {m.label: name for name, m in METHODS.items()}
    return [by_label[label] for label in re.findall(r"\*\*Model [AB]\*\* was \*\*(.+?)\*\*", reveal)]


def test_the_stored_battle_is_the_one_the_visitor_saw_and_chose(server):
    """What the visitor saw: for each side, the picture the client got, which is the model's stored output with
    each channel moved by at most 1 (demo.battle.disguised), and the method the reveal names for that side.
    The stored row must give each side that method and that output (and not the other side's: the two outputs
    differ by more than 1 somewhere), and the choice sent (test_battles.py: the leaderboard follows it). A
    battle dropped by Regenerate, then two voted battles on the same images (the second from New round:
    another pair), one vote for A, one for B."""
    client = Client(server.url, verbose=False)
    photo = server.data / "held-out-photo.png"  # a picture no other test of the module battles on
    Image.open(CONTENT).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo)
    seen, pairs = [], []
    with Store(server.data / "arena.db") as store:
        stored_before = len(store.battles())
    client.predict(handle_file(photo), handle_file(STYLE), api_name="/battle")  # dropped unvoted by Regenerate:
    for choice, event in (("left", "/battle_regenerate"), ("right", "/battle_new_round")):
        *_, a, b, status, _, _ = client.predict(handle_file(photo), handle_file(STYLE), api_name=event)
        assert "Which picture is better?" in status
        reveal = client.predict(api_name=f"/battle_vote_{choice}")[3]
        methods = revealed_methods(reveal)
        assert len(methods) == 2
        seen.append((choice, methods, [pixels(a["value"]), pixels(b["value"])]))
        pairs.append(set(methods))
    assert pairs[0] != pairs[1]  # New round: another pair of models
    with Store(server.data / "arena.db") as store:
        rows = store.battles().iloc[stored_before:]
        assert len(rows) == 2  # none for the battle Regenerate dropped
        for row, (choice, methods, shown) in zip(rows.itertuples(), seen):
            assert (row.left_method, row.right_method, row.choice) == (*methods, choice)
            stored = [pixels(server.data / "images" / sha[:2] / f"{sha}.png") for sha in (row.left_sha256, row.right_sha256)]
            for side in (0, 1):
                assert shown[side].shape == stored[side].shape
                assert np.abs(shown[side] - stored[side]).max() <= 1, "the stored output is not the one shown"
                assert np.abs(shown[side] - stored[1 - side]).max() > 1, "the other side's output matches as well"


def test_metrics_panel_scores_the_current_comparison(server):
    client = Client(server.url, verbose=False)
    stylise(client, left="adain", right="a2k_free", size=160)
    table = client.predict(api_name="/metrics")
    rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}
    assert list(rows) == ["first: AdaIN", "second: A2K (training-free)"]
    for row in rows.values():
        assert row["content_loss"] > 0 and row["style_loss"] > 0 and -1 <= row["ssim"] < 1 and row["seconds"] > 0


def test_repeat_requests_come_from_the_cache(server):
    client = Client(server.url, verbose=False)
    first = stylise(client, size=160)
    again = stylise(client, size=160)
    assert again[3].count("from the cache") == 2
    assert Image.open(first[0]).tobytes() == Image.open(again[0]).tobytes()


def test_voting_without_a_comparison_is_refused(server):
    client = Client(server.url, verbose=False)
    with pytest.raises(Exception, match="Run a comparison before voting"):
        client.predict(api_name="/vote_tie")


@pytest.mark.parametrize("name,data,message", [
    ("notes.png", b"not an image at all", "is not an image"),
    ("empty.jpg", b"", "is not an image"),
    ("cut.png", None, "damaged or truncated"),
])
def test_bad_uploads_get_clear_messages(server, tmp_path, name, data, message):
    if data is None:
        buf = io.BytesIO()
        Image.open(CONTENT).save(buf, "PNG")
        data = buf.getvalue()[:4000]
    (tmp_path / name).write_bytes(data)
    client = Client(server.url, verbose=False)
    with pytest.raises(Exception, match=message):
        stylise(client, content=tmp_path / name)
    assert stylise(client, size=128)[3]  # and the server keeps serving


def image_variants(tmp_path):
    """name -> file of the content photo in a mode or container a user may upload."""
    photo = Image.open(CONTENT).convert("RGB").resize((180, 120))
    files = {}

    def save(name, image, **kwargs):
        files[name] = tmp_path / name
        image.save(files[name], **kwargs)

    save("cmyk.jpg", photo.convert("CMYK"))
    save("gray16.png", photo.convert("L").convert("I;16"))
    save("palette.png", photo.convert("P"))
    save("gray.png", photo.convert("L"))
    save("alpha.png", photo.convert("RGBA"))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    save("rotated.jpg", photo, exif=exif)
    save("animated.gif", photo.convert("P"), save_all=True, append_images=[photo.convert("L").convert("P")])
    return files


def test_image_modes_and_containers_are_converted(server, tmp_path):
    client = Client(server.url, verbose=False)
    for name, path in image_variants(tmp_path).items():
        out = Image.open(stylise(client, content=path, size=128)[0])
        portrait = name == "rotated.jpg"
        assert (out.size[1] > out.size[0]) == portrait, name


def test_decompression_bomb_is_refused(server, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb)  # 100 megapixels in a few kilobytes
    assert bomb.stat().st_size < 100_000
    client = Client(server.url, verbose=False)
    with pytest.raises(Exception, match="100 megapixels; the limit is 40"):
        stylise(client, content=bomb)


def test_out_of_range_settings_are_refused(server):
    client = Client(server.url, verbose=False)
    with pytest.raises(Exception, match="greater than maximum value 512"):
        stylise(client, size=4096)
    with pytest.raises(Exception, match="not in the list of choices|cannot run here"):
        stylise(client, left="stya2k")
    with pytest.raises(Exception, match="less than minimum value 0"):
        stylise(client, alpha=-1)


def test_a_missing_image_is_named_and_an_example_on_its_way_explained(server):
    assert missing_input(Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8))) is None
    assert missing_input(None, None) == ("Add a content photo and a style painting first: upload them or pick "
                                         "examples (a picked example takes a moment to arrive).")
    client = Client(server.url, verbose=False)
    with pytest.raises(Exception, match="Add a style painting first: upload one or pick an example"):
        client.predict(handle_file(CONTENT), None, "a2k_free", "all2all_free", 192, 1.0, False, api_name="/stylize")
