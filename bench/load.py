"""Load and fault checks of the launched app over HTTP, every loop bounded.

    python -m bench.load [--participants 50,100,300] [--think 2,6 | --think 0] [--database URL] [--out runs/load]
    python -m bench.load --kill [--participants 50]
    python -m bench.load --flood 8 [--size 128]

Starts `python app.py` on a free loopback port with a fresh data folder (one per participant count), then
runs simulated participants through the blind study. They are asyncio tasks in this one process, each
with its own connections and cookies like a browser, speaking the study page's own HTTP API: the
page's HTML, its events (open, consent, start: one POST each to gradio_api/run/predict) and the
heartbeat stream a page keeps open, then a POST to the study's vote route per trial
(demo.study_vote); each downloads both images of every trial and checks their pixels
against the stored stimuli afterwards. --think LO,HI: a participant looks at each trial for a uniform LO..HI
seconds before voting (realistic mode, default 2,6); --think 0: votes as soon as the trial is on screen
(stress mode). Reports the server's CPU per vote, vote latency percentiles (from sending a vote to
having the next trial and both its images) and votes/s, into OUT/load.csv and a plot OUT/load.png of
latency against participants.
--kill: SIGKILL the server once a third of the votes are in and restart it on the same data folder and
port; a participant whose vote did not get through sends it again once the server answers (as the page
lets them), one whose page did not load reloads it with the token its browser state saved. --flood N: N stylisations at
once instead, each timed by the server's event stream (one at a time under --max-jobs 1).
tests/test_load.py runs the same functions at CI size.

Against a server of your own (say a load balancer): `asyncio.run(run_study(url, people, think_s))` with
`people = [Participant(i) for i in range(n)]`, then `verify(database, people)`."""
import argparse
import asyncio
import csv
import hashlib
import io
import json
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import func, select

from demo.study_page import SCREEN
from demo.study_trial import ROUTE
from study.schema import CHOICES, participants, stimuli, trials, votes
from study.store import Store

from .cluster import Cluster
from .server import ROOT, App

STUDY = "sample"
TRIALS = 11  # per participant in the sample study: a practice trial, then 10 counted ones
REQUEST_TIMEOUT_S = 120  # one request, queue wait included
MAX_RECONNECTS = 5  # per participant
REALISTIC_THINK_S = (2.0, 6.0)  # how long a participant looks at a trial before voting (uniform)
RELOAD = "reload the page"  # the study's errors that ask for a reload: the server lost the page or the participant
CSV_COLUMNS = ("mode", "participants", "load_average", "completed", "votes", "seconds", "votes_per_s", "p50_ms", "p90_ms",
               "p99_ms", "max_ms", "server_cpu_ms_per_vote", "errors", "reconnects", "stored", "problems")
CONTENT = ROOT / "examples/contents/photo_chelsea.jpg"
STYLE = ROOT / "examples/styles/gogh_cafe_terrace_night.jpg"


class Dropped(Exception):
    """The connection or the event stream ended without the event's result (the server went away)."""


class Refused(Exception):
    """The app answered the event or the vote with an error; the message is the page's."""


@dataclass
class Participant:
    """One simulated participant: what the server acknowledged, and what went wrong."""

    index: int
    pid: str = field(default_factory=lambda: secrets.token_hex(12))  # a Prolific id: 24 hex digits
    saved: dict = field(default_factory=dict)  # what the browser keeps (BrowserState)
    tokens: set = field(default_factory=set)  # participant tokens seen: one, restarts or not
    acked: list = field(default_factory=list)  # (trial token, choice, latency s) of votes the server said it stored
    seen: dict = field(default_factory=dict)  # trial token -> (left, right) pixel digests of the images received
    errors: list = field(default_factory=list)
    lost: list = field(default_factory=list)  # why each reconnection was needed
    reconnects: int = 0
    done: bool = False


def pixels(data):
    """sha256 of an image's decoded RGB pixels and size (files that differ only in ancillary chunks agree)."""
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
        rgb = image.convert("RGB")
        return hashlib.sha256(repr(rgb.size).encode() + rgb.tobytes()).hexdigest()


class Page:
    """The study page's events as a browser sends them: ids from the app's /config, one session hash
    per page load, every request with the page's URL parameters."""

    def __init__(self, config):
        self.events = {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}
        self.queued = {d["api_name"] for d in config["dependencies"] if d.get("api_name") and d.get("queue") is not False}
        self._digests = {}  # sha256 of a file's bytes -> pixels() of it: each distinct file is decoded once

    @classmethod
    async def read(cls, url):
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
            response = await http.get("config")
            response.raise_for_status()
            return cls(response.json())

    async def event(self, http, session, params, name, *data, times=None):
        """Run the event `name` with inputs `data` (None for a gr.State) -> its outputs: one POST for an
        event outside the queue (the study page's), else through the queue; `times`, a list, gets
        (started, ended) of a queued event: time.monotonic() when the server said it started and ended.
        Raises Refused for a gr.Error, Dropped when the server goes away."""
        body = {"data": list(data), "fn_index": self.events[name], "trigger_id": None, "session_hash": session,
                "event_data": None}
        if name not in self.queued:
            status, answer = await post_json(http, "gradio_api/run/predict", body, params)
            if status == 200:
                return answer["data"]
            raise Refused(answer.get("error") or f"the app refused the event ({status})")
        started = None
        try:
            joined = await http.post("gradio_api/queue/join", params=params, json=body)
            if joined.status_code != 200:
                raise Dropped(f"queue/join answered {joined.status_code}: {joined.text[:200]}")
            event_id = joined.json()["event_id"]
            async with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
                if stream.status_code != 200:
                    raise Dropped(f"queue/data answered {stream.status_code}")
                async for line in stream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    if message.get("event_id") != event_id:
                        continue
                    if message.get("msg") == "process_starts":
                        started = time.monotonic()
                    if message.get("msg") != "process_completed":
                        continue
                    if times is not None and started is not None:
                        times.append((started, time.monotonic()))
                    if message.get("success"):
                        return message["output"]["data"]
                    raise Refused(message["output"].get("error") or "the app refused the event")
        except httpx.HTTPError as exc:
            raise Dropped(repr(exc)) from exc
        raise Dropped("the event stream ended without the event's result")

    async def images(self, http, view):
        """Both images of the trial `view`, fetched as the page does -> their (left, right) pixel digests."""
        digests = []
        for side in ("left", "right"):
            try:
                response = await http.get(view[side])
            except httpx.HTTPError as exc:
                raise Dropped(repr(exc)) from exc
            if response.status_code != 200 or len(response.content) != int(response.headers["content-length"]):
                raise Dropped(f"the {side} image: {response.status_code}, {len(response.content)} bytes")
            key = hashlib.sha256(response.content).digest()
            if key not in self._digests:
                self._digests[key] = pixels(response.content)
            digests.append(self._digests[key])
        return tuple(digests)


async def post_json(http, path, body, params=None):
    """POST `body` as JSON -> (HTTP status, the JSON answer); Dropped when the server cannot be reached
    or answers no JSON (a proxy's error page, a server going away)."""
    try:
        response = await http.post(path, params=params, json=body)
        return response.status_code, response.json()
    except httpx.HTTPError as exc:
        raise Dropped(repr(exc)) from exc
    except ValueError:
        raise Dropped(f"{path} answered {response.status_code}: {response.text[:200]}") from None


async def vote(http, ticket, choice):
    """A vote posted as the study page's script posts it -> the answer: {"trial": view} or {"done": html}.
    Raises Refused for an error answer, Dropped when the server cannot be reached or answers no JSON."""
    _, answer = await post_json(http, ROUTE, {"ticket": ticket, "choice": choice, "client_ms": 1000})
    if "error" in answer:
        raise Refused(answer["error"])
    return answer


async def heartbeat(http, session):
    """The stream a Gradio page keeps open while it is loaded (the server forgets its session after it closes)."""
    try:
        async with http.stream("GET", f"gradio_api/heartbeat/{session}") as stream:
            async for _ in stream.aiter_raw():
                pass
    except httpx.HTTPError:
        pass


async def wait_until_up(http, deadline):
    """Poll the app every 0.25 s until it answers or the monotonic `deadline` passes."""
    while time.monotonic() < deadline:
        try:
            if (await http.get("", timeout=2)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.25)


async def participate(p, page, url, think_s, deadline, resume):
    """Load the page, consent, start, then vote on every trial (choices cycling through CHOICES), each
    after `think_s` (lo, hi) seconds, or at once for None. When `resume`, a lost connection is survived:
    wait for the server, then send the vote again (the trial stays on screen) or, if the page itself was
    not loaded or the server asks for it, reload the page, which resumes from the browser's saved state.
    Another refusal ends the participant, recorded in p.errors."""
    params = {"page": "study", "PROLIFIC_PID": p.pid}
    # idle connections are closed after 4 s, before uvicorn's 5 s keep-alive closes them: a request sent on
    # a connection the server is closing fails (ReadError), where a browser would send it again
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=4)
    view, done, beating = None, "", None
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        try:
            while not p.done and time.monotonic() < deadline:
                try:
                    if view is None:  # a page load: a new Gradio session, kept open by its heartbeat stream
                        if beating:
                            beating.cancel()
                        session = secrets.token_hex(6)
                        beating = asyncio.create_task(heartbeat(http, session))
                        view, done = await load_page(p, page, http, session, params)
                    elif view["trial"] not in p.seen:  # its images were cut off with the connection
                        p.seen[view["trial"]] = await page.images(http, view)
                    while view and time.monotonic() < deadline:
                        if think_s:
                            await asyncio.sleep(random.uniform(*think_s))
                        trial, choice = view["trial"], CHOICES[(p.index + len(p.acked)) % len(CHOICES)]
                        start = time.perf_counter()
                        answer = await vote(http, view["ticket"], choice)
                        view, done = answer.get("trial"), answer.get("done", "")
                        if view:
                            p.seen[view["trial"]] = await page.images(http, view)
                        if not (view and view["notice"]):  # a notice: an earlier send of this vote was stored
                            p.acked.append((trial, choice, time.perf_counter() - start))
                    p.done = "completion code" in done
                except (Dropped, Refused) as exc:
                    lost = isinstance(exc, Dropped) or RELOAD in str(exc)
                    if not (resume and lost) or p.reconnects >= MAX_RECONNECTS:
                        p.errors.append(f"{type(exc).__name__.lower()}: {exc}")
                        return p
                    p.reconnects += 1
                    p.lost.append(f"{type(exc).__name__.lower()}: {exc}")
                    if isinstance(exc, Refused):
                        view = None
                    await wait_until_up(http, deadline)
        finally:
            if beating:
                beating.cancel()
    if not p.done:
        p.errors.append("ran out of time before the last trial")
    return p


async def load_page(p, page, http, session, params):
    """Load the study page (its HTML, then its events in the Gradio `session`: consent and start for a new
    participant) -> (the trial on screen or None, the completion screen's HTML or "")."""
    try:
        document = await http.get("study", params={k: v for k, v in params.items() if k != "page"})
    except httpx.HTTPError as exc:
        raise Dropped(repr(exc)) from exc
    if document.status_code != 200:
        raise Dropped(f"the page answered {document.status_code}")
    *shown, p.saved = await page.event(http, session, params, "study_open", p.saved, None)  # opened; no screen measure
    s = dict(zip(SCREEN, shown))
    if s["consent"]:
        *_, p.saved = await page.event(http, session, params, "study_agree", None, p.saved)
        p.tokens.add(p.saved[STUDY]["participant"])
        s = dict(zip(SCREEN, await page.event(http, session, params, "study_start", None)))
    if s["trial"]:
        p.seen[s["trial"]["trial"]] = await page.images(http, s["trial"])
    return s["trial"], s["done"]


async def run_study(url, people, think_s=REALISTIC_THINK_S, resume=True, timeout_s=900):
    """Every Participant in `people` through the study at `url` (the app's base URL, ending in /) at once,
    as asyncio tasks; returns when each has finished or given up (see participate). think_s: (lo, hi)
    seconds per trial, or None for none."""
    page = await Page.read(url)
    deadline = time.monotonic() + timeout_s
    await asyncio.gather(*(participate(p, page, url, think_s, deadline, resume) for p in people))
    return people


async def acked(people, n):
    """Return once `people` have n acknowledged votes in all (or all have stopped voting)."""
    while sum(len(p.acked) for p in people) < n and not all(p.done or p.errors for p in people):
        await asyncio.sleep(0.02)


def summary(people, seconds):
    """The run's figures: participants, completed, votes, seconds, votes/s, latency percentiles (ms),
    errors and reconnects."""
    latencies = np.array([latency for p in people for *_, latency in p.acked]) * 1000
    percentile = {f"p{q}_ms": round(float(np.percentile(latencies, q))) if len(latencies) else None
                  for q in (50, 90, 99)}
    return {"participants": len(people), "completed": sum(p.done for p in people), "votes": len(latencies),
            "seconds": round(seconds, 1), "votes_per_s": round(len(latencies) / seconds, 2), **percentile,
            "max_ms": round(float(latencies.max())) if len(latencies) else None,
            "errors": sum(len(p.errors) for p in people), "reconnects": sum(p.reconnects for p in people)}


def limits_env(participants):
    """Settings for a load run: the simulated participants may answer as fast as the server does (no
    per-participant interval) and all come from 127.0.0.1, so the per-address limit is twice the
    run's votes and the enrolment limit twice the participants: on, but out of reach; likewise the
    simulated visitors of a flood may each have a stylisation queued (up to the queue's 64). The app
    serves the study beside the demo (WITH_STUDY), whose links open the sample study."""
    return {"VOTE_INTERVAL_MS": "0", "VOTES_PER_MINUTE": str(2 * TRIALS * participants),
            "ENROLMENTS_PER_HOUR": str(2 * participants), "QUEUE_PER_CLIENT": "64", "WITH_STUDY": "1"}


def run_participants(app, n, think_s=None, kill_after=None, timeout_s=900):
    """n participants at once against the launched `app`. kill_after: once that many votes are
    acknowledged, SIGKILL the app and start it again (same data folder and port). Returns (participants,
    figures): summary() plus the server's CPU ms per vote, or, with a kill, the votes acknowledged
    before it, the participants still in the study then and how many of them reconnected."""
    people = [Participant(i) for i in range(n)]

    async def kill():
        await acked(people, kill_after)
        app.kill()
        killed = (sum(len(p.acked) for p in people), [p for p in people if not p.done])
        await asyncio.to_thread(app.start)
        return killed

    async def both():
        study = run_study(app.url, people, think_s, resume=kill_after is not None, timeout_s=timeout_s)
        if kill_after is None:
            await study
            return None
        _, killed = await asyncio.gather(study, kill())
        return killed

    cpu = app.cpu_seconds()
    start = time.perf_counter()
    killed = asyncio.run(both())
    figures = summary(people, time.perf_counter() - start)
    if killed is None:
        figures["server_cpu_ms_per_vote"] = round((app.cpu_seconds() - cpu) * 1000 / max(figures["votes"], 1), 1)
    else:
        figures["acked_before_kill"], in_study = killed[0], killed[1]
        figures["in_study_at_kill"] = len(in_study)
        figures["reconnected"] = sum(p.reconnects > 0 for p in in_study)
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
    """n stylisations of the default pair (a Compare event each) sent at once by n visitors, while the
    server's VmRSS is sampled every 0.1 s; alpha differs, so none is served from the cache. One
    stylisation runs first, so that the networks are loaded before the baseline RSS is read.
    Returns the figures: slowest_s from sending to the result; `overlap_s`, the longest time two of
    the `timed` events ran at once, as the server's event streams said (about 0 under --max-jobs 1)."""
    stop = threading.Event()

    def sample():
        while not stop.wait(0.1):
            rss.append(app.memory_mib())

    async def one(page, alpha, times):
        async with httpx.AsyncClient(base_url=app.url, timeout=timeout_s) as http:
            uploaded = (await http.post("gradio_api/upload", files=[
                ("files", (path.name, path.read_bytes(), "image/jpeg")) for path in (CONTENT, STYLE)])).json()
            images = [{"path": path, "orig_name": name.name, "meta": {"_type": "gradio.FileData"}}
                      for path, name in zip(uploaded, (CONTENT, STYLE))]
            sent = time.monotonic()
            await page.event(http, secrets.token_hex(6), {}, "stylize", *images, "a2k_free", "all2all_free", size,
                             alpha, False, None, times=times)
            return time.monotonic() - sent

    async def visitors(alphas):
        page = await Page.read(app.url)
        times = []
        outcomes = await asyncio.gather(*(one(page, alpha, times) for alpha in alphas), return_exceptions=True)
        return [o for o in outcomes if isinstance(o, float)], [repr(o) for o in outcomes if isinstance(o, Exception)], times

    asyncio.run(visitors([0.0]))
    rss = [app.memory_mib()]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    seconds, errors, times = asyncio.run(visitors([round(1 - i / (2 * n), 4) for i in range(n)]))
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    times.sort()
    overlap = max([min(end, times[k + 1][1]) - times[k + 1][0] for k, (_, end) in enumerate(times[:-1])], default=0)
    return {
        "requests": n, "size": size, "failed": len(errors), "errors": errors[:3], "seconds": round(wall, 1),
        "slowest_s": round(max(seconds), 1) if seconds else None, "timed": len(times), "overlap_s": round(max(overlap, 0), 3),
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


def plot(csv_path):
    """load.png beside the CSV: vote latency p50 and p99 against participants, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(csv_path)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode and r["p50_ms"]]
        x = [int(r["participants"]) for r in mine]
        for q, style in (("p50", "o-"), ("p99", "s--")):
            ax.plot(x, [float(r[f"{q}_ms"]) / 1000 for r in mine], style, label=f"{mode} {q}")
    ax.set_xlabel("participants at once")
    ax.set_ylabel("vote -> next trial and its images (s)")
    ax.set_yscale("log")  # tens of milliseconds to seconds
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    target = Path(csv_path).with_suffix(".png")
    fig.savefig(target, dpi=110)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", default="12", help="comma-separated participant counts (default 12)")
    parser.add_argument("--think", default="2,6", help="LO,HI seconds per trial (default 2,6); 0: none (stress)")
    parser.add_argument("--database", help="SQLAlchemy URL of an empty database (default: SQLite in the data folder)")
    parser.add_argument("--workers", type=int, default=1,
                        help="app workers; more than 1: behind nginx (deploy/), sharing --database (default 1)")
    parser.add_argument("--kill", action="store_true", help="SIGKILL and restart the server a third of the way in")
    parser.add_argument("--flood", type=int, metavar="N", help="send N stylisations at once instead")
    parser.add_argument("--size", type=int, default=128, help="output size of the flood's stylisations, px")
    parser.add_argument("--out", default=str(ROOT / "runs" / "load"), help="folder for load.csv and load.png")
    args = parser.parse_args(argv)
    think_s = None if args.think == "0" else tuple(float(x) for x in args.think.split(","))
    counts = [int(n) for n in args.participants.split(",")]
    if args.database and len(counts) > 1:
        parser.error("--database takes one participant count: each run needs an empty database")
    if args.workers > 1 and (args.kill or args.flood):
        parser.error("--workers runs the study only (tests/test_deploy.py kills a worker behind nginx)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.flood:
        app = App(tempfile.mkdtemp(prefix="load-"), env=limits_env(args.flood)).start()
        try:
            figures = flood(app, args.flood, args.size)
        finally:
            app.stop()
        record(out / "load.json", f"flood-{args.flood}", figures)
        return 1 if figures["failed"] else 0
    mode = ("kill-" if args.kill else "") + ("stress" if think_s is None else f"think {args.think} s")
    if args.workers > 1:
        mode += f", {args.workers} workers behind nginx"
    rows, failed = [], False
    for n in counts:
        data = Path(tempfile.mkdtemp(prefix="load-"))
        database = args.database or str(data / "arena.db")
        if args.workers > 1:
            app = Cluster(data, args.workers, database, env=limits_env(n)).start()
        else:
            app = App(data, "--database", database, env=limits_env(n)).start()
        try:
            people, figures = run_participants(app, n, think_s, kill_after=TRIALS * n // 3 if args.kill else None)
        finally:
            app.stop()
        figures["stored"], problems = verify(database, people)
        figures["problems"] = len(problems)
        print(f"{mode}, {n} participants: {json.dumps(figures)}", flush=True)
        for problem in problems[:20]:
            print("PROBLEM:", problem, file=sys.stderr)
        for reason in sorted({reason for p in people for reason in p.lost})[:5]:
            print("reconnected after:", reason[:300], file=sys.stderr)
        failed |= bool(problems)
        rows.append({"mode": mode, "load_average": round(os.getloadavg()[0], 2), **figures})
    csv_path = out / "load.csv"
    fresh = not csv_path.exists()
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        if fresh:
            writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {csv_path} and {plot(csv_path)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
