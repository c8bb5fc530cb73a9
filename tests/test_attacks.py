"""Attacks on the launched app that would steer, unblind or stop a study, each reproduced and shown to
fail: a stylisation flood in front of the study's votes, guessing the admin password,
X-Forwarded-For from a peer that is no trusted proxy, oversize request bodies, framing, a direct call
to the explorer with a bad click, and refusals that flood the log.

One app serves the module. It trusts X-Forwarded-For from 127.0.0.2 only: requests sent from that
source address play a reverse proxy's clients, requests from 127.0.0.1 an untrusted peer."""
import io
import json
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio.utils import get_upload_folder
from PIL import Image

from bench.server import ROOT, App, post_vote
from demo.limits import TOO_MANY
from demo.security import Lockout
from demo.study_page import SCREEN

PASSWORD = "attack-test-password"
PROXY = "127.0.0.2"  # the trusted proxy's address; the tests' own connections come from 127.0.0.1
SECURITY_HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("attacks")
    server = App(data, "--with-study", env={"ADMIN_PASSWORD": PASSWORD, "VOTE_INTERVAL_MS": "0", "VOTES_PER_MINUTE": "4",
                                            "TRUSTED_PROXIES": PROXY}).start()
    server.data = data
    server.config = httpx.get(server.url + "config", timeout=30).json()
    yield server
    server.stop()


def http(server, forwarded_for=None, proxy=False):
    """An HTTP client of the app from 127.0.0.1, or from the trusted proxy's address."""
    transport = httpx.HTTPTransport(local_address=PROXY) if proxy else None
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return httpx.Client(base_url=server.url, transport=transport, headers=headers, timeout=60)


def log_lines(server):
    return server.log.read_text().splitlines()


def png_bytes(image):
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def noise(side, seed):
    """Incompressible pixels: the PNG takes about 3 bytes a pixel."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def upload(client, name, data):
    response = client.post("gradio_api/upload", files={"files": (name, data, "image/png")})
    response.raise_for_status()
    return {"path": response.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def dependency(server, match):
    return next(d for d in server.config["dependencies"] if match(d))


def component_id(server, elem_id):
    return next(c["id"] for c in server.config["components"] if c["props"].get("elem_id") == elem_id)


def join(client, dep, data, session, event_data=None):
    return client.post("gradio_api/queue/join", json={
        "data": data, "fn_index": dep["id"], "session_hash": session, "event_data": event_data,
        "trigger_id": dep["targets"][0][0]})


def completed(client, session, event_id, timeout=60):
    """The process_completed message of one event, read from the session's event stream."""
    deadline = time.monotonic() + timeout
    with client.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                    return message
            if time.monotonic() > deadline:
                break
    pytest.fail(f"no result for event {event_id} within {timeout} s")


def call(client, api_name, data, timeout=60):
    """('complete' or 'error', payload) of one call through /gradio_api/call/<api_name>."""
    event_id = client.post(f"gradio_api/call/{api_name}", json={"data": data}).raise_for_status().json()["event_id"]
    kind = None
    with client.stream("GET", f"gradio_api/call/{api_name}/{event_id}", timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                return kind, json.loads(line[5:])
    pytest.fail(f"/{api_name} gave no result")


class Refused(Exception):
    pass


class Participant:
    """A study participant from 127.0.0.1 over raw HTTP (gradio_client adds about 0.4 s of its own to
    every call): each step returns the screen's fields and the seconds from sending it to having the
    answer, or raises Refused with the app's message."""

    def __init__(self, server, forwarded_for=None):
        self.deps = {d["api_name"]: d for d in server.config["dependencies"]}
        self.url, self.forwarded_for = server.url, forwarded_for
        self.client = http(server, forwarded_for)
        self.client.params = {"page": "study"}
        self.session = secrets.token_hex(8)

    def step(self, api_name, data):
        """One event of the study page, sent as the page sends it (one POST: the study's events are not queued)."""
        start = time.monotonic()
        dep = self.deps[api_name]
        response = self.client.post("gradio_api/run/predict", json={
            "data": data, "fn_index": dep["id"], "session_hash": self.session, "event_data": None,
            "trigger_id": dep["targets"][0][0]})
        if response.status_code != 200:
            raise Refused(response.json()["error"])
        return dict(zip(SCREEN, response.json()["data"])), time.monotonic() - start

    def first_trial(self):
        """The view of the first trial, after consent."""
        self.step("study_open", [{}, None])
        self.step("study_agree", [None, {}])
        return self.step("study_start", [None])[0]["trial"]

    def vote(self, view, choice="left"):
        """Answer the trial `view` as the page's script does -> (the answer, {"trial"} or {"error"}, and the
        seconds from sending it to having it)."""
        start = time.monotonic()
        _, answer = post_vote(self.url, view["ticket"], choice, 1500,
                              {"X-Forwarded-For": self.forwarded_for} if self.forwarded_for else {})
        return answer, time.monotonic() - start


# ---- checks without the launched app ----

def test_lockout_locks_an_address_after_five_wrong_passwords_and_lets_it_go():
    now = [0.0]
    lockout = Lockout(attempts=5, lock_s=900, clock=lambda: now[0])
    for _ in range(4):
        lockout.failed("203.0.113.1")
    assert lockout.wait_s("203.0.113.1") == 0
    lockout.succeeded("203.0.113.1")  # a right password starts the count again
    for _ in range(5):
        lockout.failed("203.0.113.1")
    assert lockout.wait_s("203.0.113.1") == 900 and lockout.wait_s("203.0.113.2") == 0
    now[0] = 901
    assert lockout.wait_s("203.0.113.1") == 0


def test_a_short_admin_password_stops_the_start(tmp_path):
    env = App(tmp_path).env | {"ADMIN_PASSWORD": "x" * 11}
    run = subprocess.run([sys.executable, "app.py", "--data-dir", str(tmp_path), "--port", "9"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "ADMIN_PASSWORD has 11 characters; use at least 12" in run.stderr
    assert "Running on" not in run.stdout


# ---- attacks on the launched app ----

def test_security_headers_on_the_page_the_api_and_files(server):
    with http(server) as client:
        stored = upload(client, "tiny.png", png_bytes(Image.new("RGB", (40, 40))))["path"]
        for path in ("", "study", "results", "config", "gradio_api/info", f"gradio_api/file={stored}",
                     "gradio_api/file=/etc/passwd", "no-such-route"):
            response = client.get(path)
            for name, value in SECURITY_HEADERS.items():
                assert response.headers.get(name) == value, (path, name)
            assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", ""), path


def test_oversize_bodies_are_refused_before_they_are_read(server):
    lines = len(log_lines(server))
    with http(server) as client:
        two_files = [("files", (f"{n}.png", b"\x89PNG" + bytes(13 * 2**20), "image/png")) for n in "ab"]
        response = client.post("gradio_api/upload", files=two_files)  # 26 MB: each file is under 25 MB
        assert response.status_code == 413 and "at most 25 MB" in response.json()["detail"]
        big = "x" * (50 * 2**20)
        for data in ([big, "sample", 0], [{"sample": {"participant": big, "who": ""}}]):  # password, BrowserState
            response = client.post("gradio_api/queue/join", json={"data": data, "fn_index": 0, "session_hash": "s"})
            assert response.status_code == 413 and "at most 256 KB" in response.json()["detail"]
        chunked = client.post("gradio_api/upload", content=iter([b"--x\r\n"] * 3),
                              headers={"content-type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 411
    new = log_lines(server)[lines:]
    assert len(new) == 4 and all(line.startswith("refused POST /gradio_api/") for line in new), new


def test_explorer_called_directly_with_a_bad_click_is_refused_cleanly(server):
    view = component_id(server, "explorer-content")
    show = dependency(server, lambda d: d["targets"][0][1] == "change" and view in d["outputs"])
    explore = dependency(server, lambda d: d["targets"][0] == [view, "select"])
    session = secrets.token_hex(8)
    with http(server) as client:
        content = upload(client, "content.png", png_bytes(noise(64, 1)))
        style = upload(client, "style.png", png_bytes(noise(64, 2)))
        event_id = join(client, show, [content], session).raise_for_status().json()["event_id"]
        assert completed(client, session, event_id)["success"]
        for index, message in (([5000, -3], "Click inside the content photo: it is 384x384 px"),
                               (["0", "0"], "Click a point of the content photo"),
                               ([1, 2, 3], "Click a point of the content photo")):
            event_id = join(client, explore, [None, style], session, {"index": index, "value": None}).json()["event_id"]
            result = completed(client, session, event_id)
            assert not result["success"] and message in result["output"]["error"], result
        event_id = join(client, explore, [None, style], session, {"index": [100, 200], "value": None}).json()["event_id"]
        result = completed(client, session, event_id, timeout=120)
        assert result["success"] and "Position (100, 200) px" in result["output"]["data"][-1]


def test_a_refused_request_logs_one_line(server):
    with http(server) as client:
        for data in (["wrong-password", "sample", 0], [PASSWORD, "no such study!", 0]):
            before = log_lines(server)
            kind, _ = call(client, "results", data)
            new = log_lines(server)[len(before):]
            assert kind == "error" and len(new) == 1 and new[0].startswith("refused results: "), new


def test_a_stylisation_flood_leaves_the_study_answering(server):
    """74 stylisations, never cached, from one untrusted peer that rotates X-Forwarded-For and from 17
    clients of the trusted proxy: each client gets 4 in, the queue 64 (plus any that finished
    meanwhile), the rest are refused; then a participant enrols and votes, the vote answered in
    under a second, and the queue is still full after the vote."""
    stylize = dependency(server, lambda d: d["api_name"] == "stylize")
    participant = Participant(server)
    participant.step("study_open", [{}, None])
    with http(server) as client:
        content = upload(client, "c.png", png_bytes(noise(48, 3)))
        style = upload(client, "s.png", png_bytes(noise(48, 4)))
    settings = iter([(size, alpha / 20, keep) for size in (384, 416) for keep in (False, True) for alpha in range(21)])
    accepted, refusals = [], []

    def flood(client):
        session = secrets.token_hex(8)
        response = join(client, stylize, [content, style, "a2k_free", "all2all_free", *next(settings), None], session)
        if response.status_code == 200:
            accepted.append((session, response.json()["event_id"]))
        else:
            refusals.append(response.json()["detail"])

    for i in range(6):  # one peer: its X-Forwarded-For is ignored
        with http(server, f"198.51.100.{i}") as client:
            flood(client)
    assert len(accepted) == 4 and all("You already have 4 stylisations" in r for r in refusals), refusals
    for i in range(68):  # the proxy's clients: 4 each, until the queue is full
        with http(server, f"203.0.113.{i // 4}", proxy=True) as client:
            flood(client)
    full = "too many stylisations queued"
    assert full in refusals[-1] and 64 <= len(accepted) < 70, (len(accepted), refusals)
    try:
        _, agreed = participant.step("study_agree", [None, {}])
        trial, started = participant.step("study_start", [None])
        after, voted = participant.vote(trial["trial"])
        # the vote within a second; consent and the first trial (which writes the participant's keyed
        # image copies while the flood holds the cores) within a few
        assert after["trial"]["trial"] != trial["trial"]["trial"] and voted < 1 and max(agreed, started) < 5, \
            (agreed, started, voted)
        for i in range(3):  # the queue was still full while the participant voted (a job may have ended)
            with http(server, f"192.0.2.{i}", proxy=True) as client:
                flood(client)
        assert full in refusals[-1]
    finally:
        with http(server) as client:  # cancel the flood: what is still queued leaves the queue
            for session, event_id in accepted:
                client.post("gradio_api/cancel", json={"session_hash": session, "fn_index": stylize["id"],
                                                       "event_id": event_id})
            session = secrets.token_hex(8)  # one more, queued last: when it is done, the flood is over
            event_id = join(client, stylize, [content, style, "a2k_free", "all2all_free", 128, 1.0, False, None],
                            session).raise_for_status().json()["event_id"]
            assert completed(client, session, event_id, timeout=180)["success"]


def test_forwarded_for_from_an_untrusted_peer_does_not_open_more_votes(server):
    """VOTES_PER_MINUTE is 4 and every participant here claims another address: the claims are
    ignored (the peer is 127.0.0.1, no trusted proxy), so past the address's fourth vote in the minute
    the vote is refused with the limit's message (other tests' votes from 127.0.0.1 in the same minute
    count too)."""
    notices = []
    for i in range(6):
        participant = Participant(server, forwarded_for=f"198.51.100.{100 + i}")
        answer, _ = participant.vote(participant.first_trial())
        notices.append(answer.get("error"))
    refused = [n for n in notices if n]
    assert len(refused) >= 2 and all(n == TOO_MANY for n in refused), notices


def test_admin_lockout_after_five_wrong_passwords_per_address_and_a_private_export(server):
    with http(server, "203.0.113.200", proxy=True) as guesser, http(server, "203.0.113.201", proxy=True) as admin:
        for i in range(5):
            kind, payload = call(guesser, "results", [f"guess-{i}", "sample", 0])
            assert kind == "error" and "Wrong password" in payload["error"]
        kind, payload = call(guesser, "results", [PASSWORD, "sample", 0])  # even the right one, now
        assert kind == "error" and "Too many wrong passwords from your network: try again in 15 min" in payload["error"]
        admin.get("results")  # the page gives the browser the key its export is bound to (demo.browser_key)
        kind, outputs = call(admin, "results", [PASSWORD, "sample", 0])  # another address is not locked out
        assert kind == "complete"
    csv = Path(outputs[-1]["path"])  # the vote export: private, in Gradio's cache (which its cleanup empties)
    assert csv.name == "sample-votes.csv" and csv.is_relative_to(get_upload_folder())
    assert stat.S_IMODE(csv.stat().st_mode) == 0o600 and stat.S_IMODE(csv.parent.stat().st_mode) == 0o700


def test_no_refusal_wrote_a_traceback(server):
    log = server.log.read_text()
    assert "Traceback" not in log and log.count("refused ") >= 20
