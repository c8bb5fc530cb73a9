"""Two app workers behind nginx on PostgreSQL (deploy/, bench/cluster.py), on 127.0.0.1: the sticky
cookie spreads participants over both workers and keeps each one's requests on its worker (the page's
session state lives in the process that served it); a SIGKILL of one worker a third of
the way in loses no acknowledged vote, and its participants finish through the other worker. Then, in
Chromium, a participant whose worker is killed while a trial is on screen answers it with one click."""
import asyncio
import os
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import sync_playwright

from bench.cluster import Cluster
from bench.load import Participant, acked, limits_env, record, run_study, verify
from bench.server import ROOT
from deploy.nginx import COOKIE, binary, worker_name

from .study_fixtures import postgres_server  # noqa: F401
from .test_study_flow import ARGS, CHROMIUM

PARTICIPANTS = 12
TRIALS = 10  # the sample study's counted trials
VOTES = TRIALS + 1  # per participant: its practice trial too
ARTIFACT = ROOT / "artifacts" / "load.json"
PAGE_EVENT = "POST /gradio_api/run/predict"  # the study page's events (open, consent, start)


@pytest.fixture
def database(postgres_server):  # noqa: F811
    host, port = postgres_server
    name = f"deploy_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@{host}:{port}/{name}"


def wait_for_worker(cluster, index, timeout_s=30):
    """Until nginx sends a request whose cookie names worker `index` to that worker (nginx keeps a worker
    it saw fail out of use for 10 s, its fail_timeout, even once it is back)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = httpx.get(cluster.url, cookies={COOKIE: worker_name(index)}, timeout=10)
        if COOKIE not in response.cookies:  # nginx sets the cookie only when another worker answered
            return
        time.sleep(0.5)
    pytest.fail(f"nginx still sends worker {index}'s requests elsewhere after {timeout_s} s")


def browser_through_a_worker_death(cluster):
    """A participant in Chromium on worker 0 (its cookie says so) answers trial 1 there; worker 0 is
    killed while trial 2, whose ticket worker 0 issued, is on screen; one click answers trial 2 through
    the other worker and shows trial 3. Returns the worker the browser's cookie names then."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    wait_for_worker(cluster, 0)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.add_cookies([{"name": COOKIE, "value": worker_name(0), "url": cluster.url}])
        page = context.new_page()
        page.goto(cluster.url + "study")
        page.get_by_role("button", name="I agree").click(timeout=60_000)
        page.get_by_role("button", name="Start").click()
        page.get_by_text("Practice trial 1 of 1").wait_for(timeout=60_000)
        page.locator("#study-trial [data-state=ready]").wait_for(timeout=60_000)
        page.get_by_role("button", name="Tie").click()
        for number, button in ((1, "Left is better"), (2, "Right is better")):
            page.get_by_text(f"Trial {number} of {TRIALS}").wait_for(timeout=60_000)
            page.locator("#study-trial [data-state=ready]").wait_for(timeout=60_000)
            if number == 2:
                assert {c["name"]: c["value"] for c in context.cookies()}[COOKIE] == worker_name(0)
                cluster.workers[0].kill()
            page.get_by_role("button", name=button).click()
        page.get_by_text(f"Trial 3 of {TRIALS}").wait_for(timeout=60_000)
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        browser.close()
    return cookies[COOKIE]


@pytest.mark.postgres
def test_sigkill_of_one_worker_behind_nginx_loses_no_acknowledged_vote(tmp_path, database):
    if binary() is None:
        message = "nginx not found: apt-get install nginx (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = Cluster(tmp_path, 2, database, env=limits_env(PARTICIPANTS)).start()
    people = [Participant(i) for i in range(PARTICIPANTS)]

    async def study_with_a_kill():
        running = asyncio.ensure_future(run_study(cluster.url, people, think_s=None, timeout_s=240))
        await acked(people, PARTICIPANTS * VOTES // 3)
        killed = sum(len(p.acked) for p in people), time.time()
        cluster.workers[0].kill()
        await running
        return killed

    try:
        acked_at_kill, killed_at = asyncio.run(study_with_a_kill())
        stored, problems = verify(database, people)  # before the browser's participant enrols
        log = cluster.nginx.log()
        cluster.workers[0].start()
        moved = browser_through_a_worker_death(cluster)
    finally:
        cluster.stop()
    before = [entry for entry in log if entry[0] < killed_at]
    after = [entry for entry in log if entry[0] > killed_at + 1]  # requests still in flight at the kill left out
    figures = {"participants": PARTICIPANTS, "completed": sum(p.done for p in people), "stored": stored,
               "acked": sum(len(p.acked) for p in people), "acked_before_kill": acked_at_kill,
               "reconnected": sum(p.reconnects > 0 for p in people),
               "page_events_per_worker_before_kill": {w: sum(e[2] == w and e[4].startswith(PAGE_EVENT) for e in before)
                                                  for w in map(worker_name, range(2))}}
    record(ARTIFACT, f"nginx-2-workers-postgresql-kill-{PARTICIPANTS}", figures)
    assert not problems, "\n".join(problems[:20])
    assert figures["completed"] == PARTICIPANTS and stored == PARTICIPANTS * VOTES
    assert acked_at_kill >= PARTICIPANTS * VOTES // 3
    # stickiness: both workers served participants' page events, and a request naming a worker went to it
    assert all(figures["page_events_per_worker_before_kill"].values()), figures
    assert all(served == named for _, named, served, _, _ in before if named), "a request left its worker"
    # failover: the killed worker's participants went on through the other one: nginx sent requests
    # that named worker 0 to worker 1 (a participant whose request the kill cut also reconnects, but
    # whether one was in flight at that instant is chance)
    assert any(named == worker_name(0) and served == worker_name(1) for stamp, named, served, _, _ in log
               if stamp > killed_at), "no request of worker 0's participants was answered by worker 1"
    assert worker_name(0) not in {served for _, _, served, _, _ in after}  # (the study may be over by then)
    assert moved == worker_name(1)
