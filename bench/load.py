"""Load and fault checks of the launched app over HTTP, on 127.0.0.1 only, every loop bounded.

    python -m bench.load [--participants 50] [--database URL] [--kill] [--flood 8] [--out artifacts/load.json]

Starts `python app.py` on a free loopback port with a fresh data folder, then runs simulated
participants through the blind study (gradio_client, one client and one PROLIFIC_PID each, votes as
fast as the server answers). --kill: SIGKILL the server once a third of the votes are in, restart
it on the same data folder and port; participants reconnect and resume. --flood N: N stylisations
at once instead. Prints the figures and merges them into --out. tests/test_load.py runs the same
functions at CI size (LOAD_PARTICIPANTS scales it)."""
import argparse
import hashlib
import io
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from sqlalchemy import func, select

from demo.study_page import SCREEN
from study.schema import CHOICES, participants, stimuli, trials, votes
from study.store import Store

from .server import ROOT, App, wait_until_up

STUDY = "sample"
REQUEST_TIMEOUT_S = 120  # one request, queue wait included
MAX_RECONNECTS = 5  # per participant
CONTENT = ROOT / "examples/contents/photo_chelsea.jpg"
STYLE = ROOT / "examples/styles/gogh_cafe_terrace_night.jpg"


@dataclass
class Participant:
    """One simulated participant: what the server acknowledged, and what went wrong."""

    index: int
    pid: str = field(default_factory=lambda: secrets.token_hex(12))  # a Prolific id: 24 hex digits
    saved: dict = field(default_factory=dict)  # what the browser keeps (BrowserState)
    tokens: set = field(default_factory=set)  # participant tokens seen: one, restarts or not
    acked: list = field(default_factory=list)  # (trial token, choice, latency s) of acknowledged votes
    seen: dict = field(default_factory=dict)  # trial token -> (left, right) pixel digests of the images received
    errors: list = field(default_factory=list)
    reconnects: int = 0
    done: bool = False


def call(client, *args, api_name):
    return client.submit(*args, api_name=api_name).result(timeout=REQUEST_TIMEOUT_S)


def connect(url, params):
    return Client(url, verbose=False, httpx_kwargs={"params": {"page": "study", **params}, "timeout": 60})


def pixels(data):
    """sha256 of an image's decoded RGB pixels and size (files that differ only in ancillary chunks agree)."""
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
        rgb = image.convert("RGB")
        return hashlib.sha256(repr(rgb.size).encode() + rgb.tobytes()).hexdigest()


def download(url, view):
    """Both images of the trial on screen, as a browser would fetch them -> their (left, right) pixel
    digests; raises on a short or failed one."""
    digests = []
    for side in ("left", "right"):
        with urllib.request.urlopen(url + view[side], timeout=60) as response:
            data = response.read()
            if len(data) != int(response.headers["Content-Length"]):
                raise OSError(f"the {side} image arrived cut short")
        digests.append(pixels(data))
    return tuple(digests)


def run_participant(p, url, deadline, resume):
    """Consent, start, vote on every trial (choices cycling through CHOICES). A lost connection
    (the server killed) is survived when `resume`: wait for the server, reconnect, go on with the
    saved token. An error the app raises (gr.Error) ends the participant, recorded in p.errors."""
    while not p.done and time.monotonic() < deadline:
        client = None
        try:
            client = connect(url, {"PROLIFIC_PID": p.pid})
            s = dict(zip(SCREEN, call(client, p.saved, api_name="/study_open")))
            if s["consent"]:
                *_, p.saved = call(client, p.saved, api_name="/study_agree")
                p.tokens.add(p.saved[STUDY]["participant"])
                s = dict(zip(SCREEN, call(client, api_name="/study_start")))
            if s["trial"]:
                p.seen[s["trial"]["trial"]] = download(url, s["trial"])
            while s["trial"] and time.monotonic() < deadline:
                trial, choice = s["trial"]["trial"], CHOICES[(p.index + len(p.acked)) % len(CHOICES)]
                start = time.perf_counter()
                s = dict(zip(SCREEN, call(client, {"trial": trial, "choice": choice}, p.saved, api_name="/study_vote")))
                if s["trial"]:
                    p.seen[s["trial"]["trial"]] = download(url, s["trial"])
                p.acked.append((trial, choice, time.perf_counter() - start))
            p.done = "completion code" in s["done"]
        except AppError as exc:
            p.errors.append(f"app refused: {exc}")
            return p
        except Exception as exc:  # the connection dropped: the server died or did not answer in time
            if not resume or p.reconnects >= MAX_RECONNECTS:
                p.errors.append(f"connection: {exc!r}")
                return p
            p.reconnects += 1
            wait_until_up(url, deadline)
        finally:
            if client is not None:
                client.close()
    if not p.done:
        p.errors.append("ran out of time before the last trial")
    return p


def limits_env(participants):
    """Limits for a load run: the simulated participants answer as fast as the server does (no
    per-participant interval) and all come from 127.0.0.1, so the per-address limit is twice the
    run's votes (10 per participant in the sample study) and the enrolment limit twice the participants:
    on, but out of reach; likewise the simulated visitors of a flood may each have a stylisation queued
    (up to the queue's 64)."""
    return {"VOTE_INTERVAL_MS": "0", "VOTES_PER_MINUTE": str(20 * participants),
            "ENROLMENTS_PER_HOUR": str(2 * participants), "QUEUE_PER_CLIENT": "64"}


def run_participants(app, n, kill_after=None, timeout_s=900):
    """n participants at once against `app`. kill_after: once that many votes are acknowledged,
    SIGKILL the app and start it again (same data folder and port). Returns (participants, figures)."""
    people = [Participant(i) for i in range(n)]
    deadline = time.monotonic() + timeout_s
    acked_at_kill = None
    cpu = app.cpu_seconds()
    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(run_participant, p, app.url, deadline, kill_after is not None) for p in people]
        if kill_after is not None:
            while (sum(len(p.acked) for p in people) < kill_after and time.monotonic() < deadline
                   and not all(f.done() for f in futures)):
                time.sleep(0.02)
            app.kill()
            acked_at_kill = sum(len(p.acked) for p in people)
            in_study_at_kill = [p for p in people if not p.done]
            app.start()
        for f in futures:
            f.result()
    wall = time.perf_counter() - start
    latencies = np.array([latency for p in people for *_, latency in p.acked]) * 1000
    figures = {
        "participants": n, "completed": sum(p.done for p in people), "votes": len(latencies),
        "seconds": round(wall, 1), "votes_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(latencies, 50))) if len(latencies) else None,
        "p99_ms": round(float(np.percentile(latencies, 99))) if len(latencies) else None,
        "errors": sum(len(p.errors) for p in people), "reconnects": sum(p.reconnects for p in people),
    }
    if kill_after is None:  # the server's share of the machine: the rest went to the simulated participants
        figures["server_cpu_ms_per_vote"] = round((app.cpu_seconds() - cpu) * 1000 / max(len(latencies), 1))
    else:
        figures["acked_before_kill"] = acked_at_kill
        figures["in_study_at_kill"] = len(in_study_at_kill)
        figures["reconnected"] = sum(p.reconnects > 0 for p in in_study_at_kill)
    return people, figures


def verify(database, people):
    """What the database holds against what the participants were told and shown: (votes stored,
    problems), problems empty when every acknowledged vote is stored with its choice, every participant
    kept one token and answered every trial, nobody was enrolled twice, and the two images each
    participant received for a trial have the pixels of that trial's stored left and right stimuli."""
    problems = []
    left, right = stimuli.alias("left"), stimuli.alias("right")
    with Store(database) as store:
        images_dir = Path(store.study(STUDY)["images_dir"])
        with store.engine.connect() as conn:
            stored = dict(conn.execute(select(trials.c.token, votes.c.choice)
                                       .join(votes, votes.c.trial_id == trials.c.id)).all())
            shown = {token: (images_dir / a, images_dir / b) for token, a, b in conn.execute(
                select(trials.c.token, left.c.path, right.c.path)
                .join(left, left.c.id == trials.c.left_stimulus_id).join(right, right.c.id == trials.c.right_stimulus_id))}
            n_votes = conn.scalar(select(func.count()).select_from(votes))
            n_participants = conn.scalar(select(func.count()).select_from(participants))
        if n_participants != len(people):
            problems.append(f"{n_participants} participants enrolled for {len(people)} simulated ones")
        digests = {}
        for p in people:
            problems += [f"participant {p.index}: {e}" for e in p.errors]
            for trial, choice, _ in p.acked:
                if stored.get(trial) != choice:
                    problems.append(f"participant {p.index}: acknowledged vote {choice!r} on trial {trial[:8]}... "
                                    f"is stored as {stored.get(trial)!r}")
            for trial, received in p.seen.items():
                files = shown.get(trial)
                expected = files and tuple(digests.setdefault(f, pixels(f)) for f in files)
                if received != expected:
                    problems.append(f"participant {p.index}: the images received for trial {trial[:8]}... are not "
                                    "its stored left and right stimuli")
            if len(p.tokens) != 1:
                problems.append(f"participant {p.index} had {len(p.tokens)} participant tokens, not 1")
                continue
            progress = store.progress(next(iter(p.tokens)))
            if progress["done"] != progress["total"]:
                problems.append(f"participant {p.index} answered {progress['done']} of {progress['total']} trials")
    return n_votes, problems


def flood(app, n, size=128, timeout_s=600):
    """n stylisations of the default pair sent at once (alpha differs, so none is served from the
    cache) while the server's VmRSS is sampled every 0.1 s. One stylisation runs first, so that the
    networks are loaded before the baseline RSS is read. Returns the figures."""
    stop = threading.Event()

    def sample():
        while not stop.wait(0.1):
            rss.append(app.memory_mib())

    def one(alpha):
        client = Client(app.url, verbose=False, download_files=False, httpx_kwargs={"timeout": 60})
        try:
            begun = time.perf_counter()
            client.submit(handle_file(CONTENT), handle_file(STYLE), "a2k_free", "all2all_free", size, alpha,
                          False, api_name="/stylize").result(timeout=timeout_s)
            return time.perf_counter() - begun
        finally:
            client.close()

    one(0.0)
    rss = [app.memory_mib()]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, round(1 - i / (2 * n), 4)) for i in range(n)]
        errors = [repr(f.exception()) for f in futures if f.exception() is not None]
        seconds = [f.result() for f in futures if f.exception() is None]
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    return {
        "requests": n, "size": size, "failed": len(errors), "errors": errors[:3], "seconds": round(wall, 1),
        "slowest_s": round(max(seconds), 1) if seconds else None,
        "rss_before_mib": round(rss[0]), "rss_peak_mib": round(max(rss)), "rss_after_mib": round(app.memory_mib()),
        "hwm_mib": round(app.memory_mib("VmHWM")),
    }


def record(path, name, figures):
    """Print the figures and merge them into the JSON file `path` under `name`."""
    print(f"{name}: {json.dumps(figures)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    everything = json.loads(path.read_text()) if path.exists() else {}
    everything[name] = {**figures, "measured": time.strftime("%Y-%m-%d %H:%M")}
    path.write_text(json.dumps(everything, indent=2) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=int(os.environ.get("LOAD_PARTICIPANTS", "12")),
                        help="simulated participants at once (default: env LOAD_PARTICIPANTS or 12)")
    parser.add_argument("--database", help="SQLAlchemy URL of an empty database (default: SQLite in the data folder)")
    parser.add_argument("--kill", action="store_true", help="SIGKILL and restart the server a third of the way in")
    parser.add_argument("--flood", type=int, metavar="N", help="send N stylisations at once instead")
    parser.add_argument("--size", type=int, default=128, help="output size of the flood's stylisations, px")
    parser.add_argument("--data-dir", help="a new data folder (default: a temporary one)")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "load.json"), help="JSON file the figures are merged into")
    args = parser.parse_args(argv)
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="load-"))
    database = args.database or str(data / "arena.db")
    print(f"data folder: {data}")
    app = App(data, "--database", database, env=limits_env(args.participants)).start()
    try:
        if args.flood:
            figures = flood(app, args.flood, args.size)
            record(args.out, f"flood-{args.flood}", figures)
            return 1 if figures["failed"] else 0
        kill_after = args.participants * 10 // 3 if args.kill else None
        people, figures = run_participants(app, args.participants, kill_after)
    finally:
        app.stop()
    figures["stored"], problems = verify(database, people)
    figures["problems"] = len(problems)
    kind = "postgresql" if database.startswith("postgres") else "sqlite"
    record(args.out, f"{kind}{'-kill' if args.kill else ''}-{args.participants}", figures)
    for problem in problems[:20]:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
