"""Malformed and hostile input against the launched app, one table: broken and disguised image
files, oversized uploads, out-of-range settings, forged, replayed and altered vote tickets, injection
attempts in the study link and the admin form, paths outside the app. Each gets a clear refusal,
writes nothing (database rows and stored files counted before and after), and the server answers a
study page request right after."""
import io
import json
import os
import re
import secrets
import struct
import zlib

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from sqlalchemy import func, select

from bench.server import ROOT, App, post_vote
from demo.signing import b64, unb64
from demo.study_page import SCREEN
from demo.study_vote import ANSWERED, BAD_REQUEST
from study.schema import metadata
from study.store import Store

PASSWORD = "hostile-test-password"
CONTENT = ROOT / "examples/contents/photo_chelsea.jpg"
STYLE = ROOT / "examples/styles/gogh_cafe_terrace_night.jpg"
STIMULUS = next((ROOT / "studies/sample/images").glob("*__a2k_free.webp"))
NOT_AN_IMAGE = "Content photo: the upload is not an image PIL can read"
BAD_LINK = "in this link is not valid"
NOT_READ = re.escape(BAD_REQUEST)  # a ticket the server did not issue
ALREADY = re.escape(ANSWERED)  # the pair has a vote: nothing recorded, the next pair shown


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("hostile")
    server = App(data, "--with-study", "--max-size", "512", env={"ADMIN_PASSWORD": PASSWORD, "VOTE_INTERVAL_MS": "0"}).start()
    server.data = data
    server.health = Client(server.url, verbose=False, httpx_kwargs={"params": {"page": "study"}})
    yield server
    server.health.close()
    server.stop()


def written(server):
    """Rows per table and files under images/ and results/: what an input could have written."""
    with Store(server.data / "arena.db") as store, store.engine.connect() as conn:
        rows = {t.name: conn.scalar(select(func.count()).select_from(t)) for t in metadata.sorted_tables}
    files = {d: sum(1 for p in (server.data / d).rglob("*") if p.is_file()) for d in ("images", "results")}
    return rows, files


def refusal(call):
    """The message of the error that `call()` raises; fails if it is accepted (or a check in it fails)."""
    try:
        result = call()
    except AssertionError:
        raise
    except Exception as exc:
        return str(exc)
    pytest.fail(f"accepted: {str(result)[:300]}")


# ---- the attacks: each takes (server, tmp_path), prepares, and returns the call that must be refused ----

def upload(name, data):
    """Stylise with this file as the content photo."""
    def attack(server, tmp_path):
        path = tmp_path / name
        path.write_bytes(data() if callable(data) else data)
        client = Client(server.url, verbose=False)
        return lambda: client.predict(handle_file(path), handle_file(STYLE), "a2k_free", "all2all_free", 192, 1.0,
                                      False, api_name="/stylize")
    return attack


def settings(size=192, alpha=1.0, left="a2k_free", right="all2all_free"):
    def attack(server, tmp_path):
        client = Client(server.url, verbose=False)
        return lambda: client.predict(handle_file(CONTENT), handle_file(STYLE), left, right, size, alpha, False,
                                      api_name="/stylize")
    return attack


def png(width, height, body=b"\0" * 10):
    """A PNG whose header claims width x height (valid CRCs), with little or no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))


def encoded(image, fmt, cut=None, flip=None):
    buf = io.BytesIO()
    image.save(buf, fmt)
    data = bytearray(buf.getvalue()[:cut])
    if flip is not None:
        data[flip] ^= 0xFF
    return bytes(data)


def bomb():
    return encoded(Image.new("1", (10_000, 10_000)), "PNG")  # 100 megapixels in a few kilobytes


def photo():
    return Image.open(CONTENT).convert("RGB").resize((240, 160))


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" onload="alert(1)">'
       b"<script>alert(2)</script></svg>")
HTML = b"<!DOCTYPE html><html><body><script>fetch('/gradio_api/info')</script></body></html>"


def oversized(server, tmp_path):
    """26 MB to the upload route itself (the client library refuses before sending)."""
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(26 * 1024 * 1024)
    def call():
        response = httpx.post(server.url + "gradio_api/upload", files={"files": ("big.png", data, "image/png")},
                              timeout=60)
        response.raise_for_status()
        return response.text
    return call


def study_client(server, **link):
    return Client(server.url, verbose=False, httpx_kwargs={"params": {"page": "study", **link}})


def enrolled(server):
    """A new participant at their first trial: (client, what the browser keeps, the trial's view)."""
    client = study_client(server)
    client.predict({}, None, api_name="/study_open")
    *_, saved = client.predict({}, api_name="/study_agree")
    return client, saved, dict(zip(SCREEN, client.predict(api_name="/study_start")))["trial"]


def answer(server, ticket, choice):
    """Post a vote as the page does; raises VoteRefused with the message the page would show when the vote
    is not recorded (an error, or the next pair with a notice), else returns the answer."""
    status, reply = post_vote(server.url, ticket, choice, 900)
    if status != 200 or reply.get("trial", {}).get("notice"):
        raise VoteRefused(reply.get("error") or reply["trial"]["notice"])
    return reply


class VoteRefused(Exception):
    pass


def vote_with(ticket_of):
    """A participant at their first trial votes with the ticket `ticket_of(server, own ticket)`."""
    def attack(server, tmp_path):
        _, _, view = enrolled(server)
        ticket = ticket_of(server, view["ticket"])
        return lambda: answer(server, ticket, "left")
    return attack


def foreign_trial(server, own):
    """Their own ticket with another participant's first trial token in it, under their own signature."""
    payload, signature = own.split(".")
    fields = json.loads(unb64(payload))
    fields[2] = enrolled(server)[2]["trial"]
    return b64(json.dumps(fields).encode()) + "." + signature


def replayed_in_same_tab(server, tmp_path):
    _, _, view = enrolled(server)
    answer(server, view["ticket"], "left")
    return lambda: answer(server, view["ticket"], "right")


def replayed_in_second_tab(server, tmp_path):
    """Two tabs of one participant show the same trial; the first answers it, then the second."""
    _, saved, view = enrolled(server)
    second = dict(zip(SCREEN, study_client(server).predict(saved, None, api_name="/study_open")))["trial"]
    assert second["trial"] == view["trial"]
    answer(server, view["ticket"], "left")
    return lambda: answer(server, second["ticket"], "right")


def vote_before_consent(server, tmp_path):
    return lambda: answer(server, None, "tie")


def invalid_choice(server, tmp_path):
    _, _, view = enrolled(server)
    return lambda: answer(server, view["ticket"], "'; DROP TABLE votes; --")


def second_comparison_vote(server, tmp_path):
    client = Client(server.url, verbose=False)
    client.predict(handle_file(CONTENT), handle_file(STYLE), "a2k_free", "all2all_free", 128, 1.0, False,
                   api_name="/stylize")
    client.predict(api_name="/vote_left")
    return lambda: client.predict(api_name="/vote_right")


def link(**params):
    """Open /study with these URL parameters. The page answers with a message and nothing else, and
    does not let anyone enrol; the call raises that message as the refusal."""
    def attack(server, tmp_path):
        client = study_client(server, **params)

        def call():
            s = dict(zip(SCREEN, client.predict({}, None, api_name="/study_open")))
            assert not s["consent"] and not s["trial"]
            assert not any(v in s["message"] for v in params.values()), "the raw value is echoed"
            with pytest.raises(Exception, match="Open the study from its link first"):
                client.predict({}, api_name="/study_agree")
            raise ValueError(s["message"])
        return call
    return attack


def results(password, study="sample"):
    def attack(server, tmp_path):
        client = Client(server.url, verbose=False, httpx_kwargs={"params": {"page": "results"}})
        return lambda: client.predict(password, study, 0, api_name="/results")
    return attack


def fetch(path):
    """GET a file by path through Gradio's file route (a path outside its cache must be refused)."""
    def attack(server, tmp_path):
        def call():
            target = path(server) if callable(path) else path
            response = httpx.get(server.url + "gradio_api/file=" + str(target), timeout=30)
            response.raise_for_status()
            return response.text
        return call
    return attack


CASES = [
    # image files
    ("text-as-png", upload("notes.png", b"just some notes, not an image"), NOT_AN_IMAGE),
    ("empty-jpg", upload("empty.jpg", b""), NOT_AN_IMAGE),
    ("truncated-png", upload("cut.png", lambda: encoded(photo(), "PNG", cut=3000)), "damaged or truncated"),
    ("truncated-jpeg", upload("cut.jpg", lambda: encoded(photo(), "JPEG", cut=2000)), "damaged or truncated"),
    ("png-bad-crc", upload("crc.png", lambda: encoded(photo(), "PNG", flip=29)), NOT_AN_IMAGE),
    ("decompression-bomb", upload("bomb.png", bomb), "100 megapixels; the limit is 40"),
    ("huge-header-65000px", upload("huge.png", png(65_000, 65_000)), "too large.*decompression bomb"),
    ("huge-header-1px-high", upload("line.png", png(30_000, 1, b"\0" * 90_001)), "under 32"),
    ("svg-as-png", upload("vector.png", SVG), NOT_AN_IMAGE),
    ("svg", upload("vector.svg", SVG), NOT_AN_IMAGE),
    ("html-as-jpg", upload("page.jpg", HTML), NOT_AN_IMAGE),
    ("html", upload("page.html", HTML), NOT_AN_IMAGE),
    ("gif-header-with-script", upload("poly.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00<script>alert(1)</script>"),
     NOT_AN_IMAGE),
    ("pdf-as-png", upload("doc.png", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF"), NOT_AN_IMAGE),
    ("zip-as-jpg", upload("archive.jpg", b"PK\x03\x04" + os.urandom(200)), NOT_AN_IMAGE),
    ("over-25-mb", oversized, "413|File size exceeded"),
    # settings
    ("size-over-max", settings(size=4096), "greater than maximum value 512"),
    ("size-under-min", settings(size=16), "less than minimum value 128"),
    ("size-not-a-number", settings(size="192; DROP TABLE votes"), "Expected a `float`"),
    ("alpha-negative", settings(alpha=-1), "less than minimum value 0"),
    ("alpha-over-1", settings(alpha=2), "greater than maximum value 1"),
    ("unknown-method", settings(left="stya2k"), "not in the list of choices"),
    ("method-path-traversal", settings(right="../../weights/sanet/decoder_iter_500000.pth"),
     "not in the list of choices"),
    ("method-sql", settings(left="a2k_free' OR '1'='1"), "not in the list of choices"),
    # votes
    ("forged-ticket", vote_with(lambda server, own: secrets.token_urlsafe(16)), NOT_READ),
    ("ticket-sql", vote_with(lambda server, own: "' OR '1'='1' --"), NOT_READ),
    ("ticket-overlong", vote_with(lambda server, own: own + "x" * 100_000), NOT_READ),
    ("ticket-non-ascii", vote_with(lambda server, own: own[:-2] + "\u00e9\u4e2d"), NOT_READ),
    ("trial-of-another-participant", vote_with(foreign_trial), NOT_READ),
    ("replayed-ticket-same-tab", replayed_in_same_tab, ALREADY),
    ("replayed-ticket-second-tab", replayed_in_second_tab, ALREADY),
    ("vote-before-consent", vote_before_consent, NOT_READ),
    ("vote-invalid-choice", invalid_choice, "Choose one of"),
    ("second-comparison-vote", second_comparison_vote, "already has a vote"),
    # the study link
    ("study-sql", link(study="sample' OR '1'='1"), f"study name {BAD_LINK}"),
    ("study-script", link(study="<script>alert(1)</script>"), f"study name {BAD_LINK}"),
    ("study-path-traversal", link(study="../../../etc/passwd"), f"study name {BAD_LINK}"),
    ("study-overlong", link(study="s" * 5000), f"study name {BAD_LINK}"),
    ("study-nul-byte", link(study="sample\x00.png"), f"study name {BAD_LINK}"),
    ("study-unknown", link(study="no_such_study"), "does not run here"),
    ("pid-sql", link(PROLIFIC_PID="'; DROP TABLE votes; --"), f"PROLIFIC_PID {BAD_LINK}"),
    ("pid-overlong", link(PROLIFIC_PID="a" * 5000), f"PROLIFIC_PID {BAD_LINK}"),
    ("study-id-html", link(STUDY_ID='"><img src=x onerror=alert(1)>'), f"STUDY_ID {BAD_LINK}"),
    ("session-id-traversal", link(SESSION_ID="../../data/arena.db"), f"SESSION_ID {BAD_LINK}"),
    # the admin form
    ("results-no-password", results(""), "Wrong password"),
    ("results-wrong-password", results(PASSWORD[:-1]), "Wrong password"),
    ("results-study-sql", results(PASSWORD, "sample' OR 1=1 --"), "Type a study name"),
    # files outside the app's cache
    ("file-method-named-stimulus", fetch(STIMULUS), "403"),
    ("file-database", fetch(lambda server: server.data / "arena.db"), "403"),
    ("file-etc-passwd", fetch("/etc/passwd"), "403"),
    ("file-relative-traversal", fetch("../../../../etc/passwd"), "40[34]"),
]


@pytest.mark.parametrize("attack,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_refused(server, tmp_path, attack, message):
    call = attack(server, tmp_path)
    before = written(server)
    assert re.search(message, refusal(call))
    assert written(server) == before
    assert dict(zip(SCREEN, server.health.predict({}, None, api_name="/study_open")))["consent"]  # still serving


def test_uploads_stay_in_the_cache_and_are_never_served_as_markup(server):
    """A page or script uploaded under an image name comes back as an image or an attachment, never
    as HTML or SVG the browser would run; a path in the file name does not leave the cache."""
    for name, data, mime in (("page.png", HTML, "image/png"), ("page.html", HTML, "text/html"),
                             ("vector.svg", SVG, "image/svg+xml"), ("../../../../tmp/escape.png", HTML, "image/png")):
        response = httpx.post(server.url + "gradio_api/upload", files={"files": (name, data, mime)}, timeout=30)
        stored = response.json()[0]
        assert "/../" not in stored and not os.path.exists("/tmp/escape.png")
        served = httpx.get(server.url + "gradio_api/file=" + stored, timeout=30)
        kind, disposition = served.headers["content-type"], served.headers["content-disposition"]
        assert not kind.startswith(("text/html", "image/svg")), (name, kind)
        assert not name.endswith((".html", ".svg")) or disposition.startswith("attachment"), (name, disposition)
