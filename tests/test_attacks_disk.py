"""Attacks on the server's disk (issue #25, points 2 and 3), reproduced and shown to fail: one client's
30-second write flood (uploads, images sent as data URLs inside the JSON, stylisations of new images)
writes at most its budget while another client's battles run; uploads that send their headers and no
body lock out nobody; stored images are an evicting cache that keeps what votes refer to; an input is
stored only when its stylisation is admitted.

One app serves the module. It trusts X-Forwarded-For from 127.0.0.2 only: requests sent from that
source address play a reverse proxy's clients (each X-Forwarded-For address a client), requests from
127.0.0.1 (gradio_client) another client."""
import base64
import io
import json
import secrets
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from bench.server import HOST, App
from demo.app import parse
from demo.arena import Arena, Settings
from demo.budget import ClientBudgets, Hold, WriteBudget, png_bound
from demo.storage import StorageError
from model.images import open_image
from study.store import Store

PROXY = "127.0.0.2"
CLIENT_WRITE_MB = 16
MAX_UPLOAD_MB = 4
FLOOD_S = 30
SLACK = 2 * 2**20  # what else the server writes during the flood: the other client's battle (its own
# budget: 64 px inputs, two 256 px results and their served copies, under 1 MB), log lines and SQLite pages


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("disk")
    server = App(data, "--max-size", "256", env={
        "TRUSTED_PROXIES": PROXY, "VOTE_INTERVAL_MS": "0", "CLIENT_WRITE_MB": str(CLIENT_WRITE_MB),
        "MAX_UPLOAD_MB": str(MAX_UPLOAD_MB), "UPLOAD_QUOTA_MB": "40", "STORAGE_QUOTA_MB": "1",
        "GRADIO_TEMP_DIR": str(data / "gradio")}).start()
    server.data = data
    server.config = httpx.get(server.url + "config", timeout=30).json()
    yield server
    server.stop()


def noise_png(side, seed):
    """Incompressible pixels: the PNG takes about 3 bytes a pixel."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def client_of(address):
    """An HTTP client that the app sees as `address` (sent through the trusted proxy's source address)."""
    return httpx.Client(base_url=f"http://{HOST}:{CLIENT_PORT[0]}/", transport=httpx.HTTPTransport(local_address=PROXY),
                        headers={"X-Forwarded-For": address}, timeout=60)


CLIENT_PORT = [0]  # the module's app port, set by the `proxied` fixture


@pytest.fixture(scope="module")
def proxied(server):
    CLIENT_PORT[0] = server.port
    return client_of


def upload(client, data):
    """-> (HTTP status, the file's payload for an event or the refusal's detail)."""
    response = client.post("gradio_api/upload", files={"files": ("noise.png", data, "image/png")})
    if response.status_code != 200:
        return response.status_code, response.json()["detail"]
    return 200, {"path": response.json()[0], "orig_name": "noise.png", "meta": {"_type": "gradio.FileData"}}


def data_url(data):
    return {"path": None, "url": "data:image/png;base64," + base64.b64encode(data).decode(),
            "orig_name": "noise.png", "meta": {"_type": "gradio.FileData"}}


def stylise(server, client, content, style, size=128):
    """One Compare stylisation through the queue, as the page sends it -> (success, output or error)."""
    dep = next(d for d in server.config["dependencies"] if d["api_name"] == "stylize")
    return event(client, dep, [content, style, "a2k_free", "all2all_free", size, 1.0, False, None])


def explorer_view(server, client, photo):
    """The explorer's view of a new Compare photo (the event the page sends when the photo changes)."""
    view = next(c["id"] for c in server.config["components"] if c["props"].get("elem_id") == "explorer-content")
    dep = next(d for d in server.config["dependencies"] if d["targets"][0][1] == "change" and view in d["outputs"])
    return event(client, dep, [photo])


def event(client, dep, data, timeout=120):
    """One event of the page through the queue -> (success, output data or error message)."""
    session = secrets.token_hex(8)
    response = client.post("gradio_api/queue/join", json={
        "data": data, "fn_index": dep["id"], "session_hash": session, "event_data": None,
        "trigger_id": dep["targets"][0][0]})
    if response.status_code != 200:
        return False, response.json()["detail"]
    event_id, deadline = response.json()["event_id"], time.monotonic() + timeout
    with client.stream("GET", "gradio_api/queue/data", params={"session_hash": session}, timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                    output = message["output"]
                    return message["success"], output["data"] if message["success"] else output["error"]
            if time.monotonic() > deadline:
                break
    pytest.fail(f"no result for an event within {timeout} s")


def files_under(*folders):
    """{path: size} of every file under the folders."""
    return {p: p.stat().st_size for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()}


def written_bytes(server):
    """Bytes the server process has written to storage (write_bytes of /proc/PID/io)."""
    for line in Path(f"/proc/{server.process.pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/PID/io")


def battle(server, tmp_path, seed):
    """A battle of new 64 px images from 127.0.0.1 (gradio_client) -> the client, to vote with."""
    client = Client(server.url, verbose=False)
    paths = []
    for k in (0, 1):
        paths.append(tmp_path / f"battle-{seed + k}.png")
        paths[-1].write_bytes(noise_png(64, seed + k))
    *_, first, second, status, _, _ = client.predict(*(handle_file(p) for p in paths), api_name="/battle")
    assert all(Path(p["value"]).is_file() for p in (first, second)) and "Which picture is better" in status
    return client


# ---- checks without the launched app ----

def test_a_write_budget_charges_what_was_written_and_frees_the_rest():
    now = [0.0]
    budget = WriteBudget(100, window_s=60, clock=lambda: now[0])
    with Hold.take(80, budget) as hold:  # reserved: nothing else fits while it runs
        assert Hold.take(21, budget) is budget
        hold.add(30)
    assert budget.wait_s() == 60  # 30 charged, the other 50 freed
    assert isinstance(Hold.take(70, budget), Hold) and Hold.take(1, budget) is budget
    now[0] = 61  # the 30 left the window; the 70 still reserved (that hold was never closed)
    assert isinstance(Hold.take(30, budget), Hold)
    headers_only = Hold.take(0, budget)
    headers_only.close()
    headers_only.close()  # closing twice charges once
    assert budget.wait_s() == 0 and not budget.idle()  # reservations of 100 are still open
    shared = WriteBudget(1000, window_s=60)
    assert Hold.take(1, budget, shared) is budget and isinstance(Hold.take(500, shared), Hold)
    assert shared.reserve(500) and not shared.reserve(1)  # the refused take reserved nothing on `shared`


def test_each_address_has_its_own_budget():
    now = [0.0]
    clients = ClientBudgets(100, window_s=60, clock=lambda: now[0])
    with Hold.take(100, clients.of("203.0.113.1")) as hold:
        hold.add(100)
    assert Hold.take(1, clients.of("203.0.113.1")) is clients.of("203.0.113.1")
    assert isinstance(Hold.take(100, clients.of("203.0.113.2")), Hold)
    now[0] = 200  # the charges left the window; an idle budget is forgotten at the next sweep
    clients.of("203.0.113.3")
    assert len(clients._budgets) == 2  # 203.0.113.2 still holds its reservation


@pytest.mark.parametrize("width,height", [(1, 1), (17, 5), (256, 256), (1024, 768)])
def test_png_bound_holds_for_incompressible_pixels(width, height):
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    assert len(buf.getvalue()) <= png_bound(width, height)


def noise_image(side, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def test_the_cache_evicts_the_least_recently_used_and_never_an_image_a_vote_refers_to(tmp_path):
    arena = Arena(Settings(device="cpu", data_dir=str(tmp_path), storage_quota_mb=1))
    own = Hold()
    put = [arena.images.put(noise_image(160, seed), own) for seed in range(4)]  # 77 KB each: 13 fit in 1 MB
    arena.store.record_comparison("vote", put[0], put[1], "a2k_free", "all2all_free", put[2], put[3], "left")
    put += [arena.images.put(noise_image(160, seed), own) for seed in range(4, 20)]
    on_disk = [sha for sha in put if arena.images.path(sha).is_file()]
    assert sum(files_under(tmp_path / "images").values()) <= 2**20 and len(on_disk) <= 13
    assert on_disk[:4] == put[:4] and put[4] not in on_disk  # the voted ones stay; the oldest other went first
    oldest, next_oldest = on_disk[4:6]
    arena.images.get(oldest)  # used again: now the last to go
    for seed in range(20, 40):
        arena.images.put(noise_image(160, seed), own)
        if not arena.images.path(next_oldest).is_file():
            break
    assert not arena.images.path(next_oldest).is_file() and arena.images.path(oldest).is_file()
    big = [arena.images.put(noise_image(300, seed), own) for seed in (40, 41)]  # 270 KB each
    arena.store.record_comparison("vote2", put[0], put[1], "a2k_free", "all2all_free", *big, "left")
    with pytest.raises(StorageError, match="full of pictures that votes refer to"):  # 850 KB voted on
        arena.images.put(noise_image(300, 42), own)
    assert all(arena.images.path(sha).is_file() for sha in [*put[:4], *big])
    assert sum(files_under(tmp_path / "images").values()) <= 2**20


def test_a_stored_image_keeps_no_metadata(tmp_path):
    """A 50 px photo carrying a 200 KB ICC profile: stored as its pixels (Pillow would copy the profile)."""
    arena = Arena(Settings(device="cpu", data_dir=str(tmp_path)))
    buf = io.BytesIO()
    Image.new("RGB", (50, 50)).save(buf, "JPEG", icc_profile=np.random.default_rng(0).bytes(200_000))
    photo = open_image(buf.getvalue())
    assert len(photo.info["icc_profile"]) == 200_000
    with Hold.take(png_bound(50, 50), WriteBudget(png_bound(50, 50), 60)) as hold:
        sha = arena.images.put(photo, hold)
    assert arena.images.path(sha).stat().st_size == hold.written <= png_bound(50, 50)


def test_a_client_budget_that_could_take_every_upload_stops_the_start(capsys):
    assert parse([]).client_write_mb == 512  # the defaults: 512 MB of the 2048 MB upload budget
    with pytest.raises(SystemExit):
        parse(["--client-write-mb", "2040"])  # with 25 MB uploads, 2023 MB at the most
    assert "would let one address take the uploads of all: give at most --upload-quota-mb less --max-upload-mb " \
           "(2023)" in capsys.readouterr().err


# ---- attacks on the launched app ----

def test_uploads_that_send_headers_only_lock_out_nobody(server, proxied):
    """40 uploads from one address that announce 4 MB each and send no body (160 MB claimed: 10 times
    that address's budget, 4 times the server's upload budget), held open 3 s: meanwhile another
    address uploads; once they are closed, the same address uploads too (nothing was charged)."""
    length = MAX_UPLOAD_MB * 2**20
    sockets = []
    try:
        for _ in range(40):
            sock = socket.create_connection((HOST, server.port), timeout=10, source_address=(PROXY, 0))
            sock.sendall((f"POST /gradio_api/upload HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: 198.51.100.7\r\n"
                          "Content-Type: multipart/form-data; boundary=x\r\n"
                          f"Content-Length: {length}\r\n\r\n").encode())
            sockets.append(sock)
        time.sleep(3)
        with proxied("198.51.100.8") as other:
            status, payload = upload(other, noise_png(300, 1))
        assert status == 200, payload
        with proxied("198.51.100.7") as same:  # its own open reservations hold it back meanwhile, no one else
            status, payload = upload(same, noise_png(300, 2))
        assert status == 507 and "your network address" in payload, payload
    finally:
        for sock in sockets:
            sock.close()
    deadline = time.monotonic() + 30
    while True:  # the server notices the closed connections (bounded: 30 s)
        with proxied("198.51.100.7") as same:
            status, payload = upload(same, noise_png(300, 3))
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200, payload


def test_a_write_flood_from_one_client_writes_at_most_its_budget_and_battles_still_run(server, proxied, tmp_path):
    """For 30 s one address sends at once: 1 MB uploads (one a second), stylisations of new 170 px
    images sent as data URLs inside the JSON, stylisations of new uploaded 256 px images, and the
    attention explorer's view of new 240 px photos sent as data URLs. The server
    writes at most that address's budget (16 MB) for it, measured as the bytes the server process
    wrote (/proc/PID/io) and as the new files in the data folder; another client's battle runs during
    the flood and after it; what a vote refers to and the study's stimuli are all still there although
    the flood passed the 1 MB cache cap several times; and a stylisation refused for the budget stores nothing."""
    data = server.data
    folders = (data / "images", data / "results", data / "gradio")
    voter = battle(server, tmp_path, 1000)
    voter.predict(api_name="/battle_vote_left")
    with Store(data / "arena.db") as store:
        voted = store.voted_images()
        stimuli = {p: p.read_bytes() for p in (store.image_path("sample", s["output_sha256"])
                                                for s in store.stimuli("sample"))}
    assert len(voted) == 4 and stimuli
    first_results = list(files_under(data / "results"))  # the voted battle's result records: not kept
    before, written_before = files_under(*folders), written_bytes(server)
    deadline = time.monotonic() + FLOOD_S
    outcomes = {"upload": [], "data_url": [], "uploaded": [], "explorer": []}

    def flood(kind, step, count, first=0):
        with proxied("203.0.113.66") as client:
            for i in range(first, count):
                if time.monotonic() > deadline:
                    return
                outcomes[kind].append(step(client, i))

    def upload_step(client, i):
        status, payload = upload(client, noise_png(590, 2000 + i))
        time.sleep(1)
        return status == 200, payload

    def data_url_step(client, i):
        return stylise(server, client, data_url(noise_png(170, 3000 + 2 * i)), data_url(noise_png(170, 3001 + 2 * i)))

    def uploaded_step(client, i):
        files = [upload(client, noise_png(256, 4000 + 2 * i + k)) for k in (0, 1)]
        if any(status != 200 for status, _ in files):
            return False, next(payload for status, payload in files if status != 200)
        return stylise(server, client, *(payload for _, payload in files))

    def explorer_step(client, i):
        return explorer_view(server, client, data_url(noise_png(240, 6000 + i)))

    ways = (("upload", upload_step, 60), ("data_url", data_url_step, 60), ("uploaded", uploaded_step, 60),
            ("explorer", explorer_step, 60))
    for kind, step, _ in ways:  # each way in once before the flood, so that each writes under any machine load
        flood(kind, step, 1)
    threads = [threading.Thread(target=flood, args=(*way, 1)) for way in ways]
    for thread in threads:
        thread.start()
    time.sleep(5)
    started = time.monotonic()
    battle(server, tmp_path, 1100)  # another client, during the flood
    during = time.monotonic() - started
    for thread in threads:
        thread.join(FLOOD_S + 150)
    written = written_bytes(server) - written_before
    after = files_under(*folders)
    new_bytes = sum(size for path, size in after.items() if before.get(path) != size)
    battle(server, tmp_path, 1200)  # and after it

    budget = CLIENT_WRITE_MB * 2**20
    print(f"flood: {written / 2**20:.2f} MiB written by the server, {new_bytes / 2**20:.2f} MiB in new files; "
          f"the other client's battle took {during:.1f} s; " +
          ", ".join(f"{kind}: {sum(ok for ok, _ in results)} of {len(results)} done" for kind, results in outcomes.items()))
    assert written <= budget + SLACK and new_bytes <= budget + SLACK
    for kind, results in outcomes.items():  # each way in wrote something, then was refused for the budget
        assert any(ok for ok, _ in results), (kind, results)
        assert all("your network address has had the server write 16 MB" in str(why) for ok, why in results if not ok), \
            (kind, [why for ok, why in results if not ok])
        assert not results[-1][0], kind
    assert first_results and not any(path.exists() for path in first_results)  # the cache evicted the oldest
    assert all((data / "images" / sha[:2] / f"{sha}.png").is_file() for sha in voted)
    assert all(path.read_bytes() == content for path, content in stimuli.items())
    assert sum(files_under(data / "images", data / "results").values()) <= 2**20
    images = files_under(data / "images")
    with proxied("203.0.113.66") as client:
        ok, why = stylise(server, client, data_url(noise_png(100, 5000)), data_url(noise_png(100, 5001)))
    assert not ok and "your network address" in why and files_under(data / "images") == images


def test_no_attack_wrote_a_traceback(server):
    log = server.log.read_text()
    assert "Traceback" not in log and "refused POST /gradio_api/upload (507)" in log
