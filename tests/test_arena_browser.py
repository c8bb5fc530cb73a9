"""The Battle, Leaderboard and Compare tabs in a real headless Chromium, on one launched app (160 px)
whose database holds planted battle votes; screenshots go to docs/arena/."""
import hashlib
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from bench.server import ROOT, App
from model.methods import METHODS
from study.store import Store

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
DOCS = ROOT / "docs" / "arena"
NAMES = [m.name for m in METHODS.values()] + [m.label for m in METHODS.values()]
# planted: AdaIN beats all-to-all, which beats A2K (not the alphabetical or the default order)
PLANTED = {("adain", "all2all_free"): 0.8, ("adain", "a2k_free"): 0.85, ("all2all_free", "a2k_free"): 0.7}
EXPECTED_RANKING = ["AdaIN", "all-to-all (training-free)", "A2K (training-free)"]


def plant_votes(store):
    for visitor in range(20):
        for (x, y), p in PLANTED.items():
            for content in range(5):
                choice = "left" if (visitor * 5 + content) % 20 < p * 20 else "right"
                store.record_battle(f"planted-{visitor}-{content}-{x}-{y}", f"visitor-{visitor}", f"198.51.100.{visitor}",
                                    f"c{content}", "s", x, y, "o1", "o2", choice)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    data = tmp_path_factory.mktemp("arena")
    with Store(data / "arena.db") as store:
        plant_votes(store)
    app = App(data, "--max-size", "160", env={"WARM_UP": "1"}).start()
    deadline = time.monotonic() + 300
    while "warm-up: " not in app.log.read_text():
        assert time.monotonic() < deadline, app.log.read_text()[-2000:]
        time.sleep(0.5)
    app.data = data
    yield app
    app.stop()


@pytest.fixture
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


# tees every fetch response's body (event streams as they arrive) into window.__received
TEE = """
window.__received = [];
const fetched = window.fetch;
window.fetch = async (...args) => {
  const response = await fetched(...args);
  const reader = response.clone().body?.getReader();
  const decoder = new TextDecoder();
  (async () => {
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      window.__received.push(decoder.decode(value, {stream: true}));
    }
  })().catch(() => {});
  return response;
};
"""


VIEWPORTS = {1400: 900, 390: 844}  # width -> height: a desktop and a phone


def open_page(browser, server, width=1400):
    page = browser.new_page(viewport={"width": width, "height": VIEWPORTS[width]})
    page.add_init_script(TEE)
    page.goto(server.url)
    page.locator("#battle-pairs").wait_for(timeout=60_000)
    return page


def loaded(page, selector):
    """The <img> under selector has finished loading (JavaScript's complete and naturalWidth)."""
    return page.evaluate(f"(() => {{ const i = document.querySelector({json.dumps(selector + ' img')}); "
                         "return !!i && i.complete && i.naturalWidth > 0; })()")


def test_example_pair_shows_both_battle_results_within_a_second(server, browser):
    """Three first visitors (fresh pages) each click an example pair: the median time from the click to
    both pictures loaded must be under a second (the median: other work shares this machine's 2 cores)."""
    times = []
    for pair in range(3):
        page = open_page(browser, server)
        page.wait_for_timeout(1000)  # the page's own load events settle
        start = time.perf_counter()
        page.locator("#battle-pairs tbody tr").nth(pair).click()
        while not (loaded(page, "#battle-a") and loaded(page, "#battle-b")):
            assert time.perf_counter() - start < 10, "no results after 10 s"
            page.wait_for_timeout(10)
        times.append(time.perf_counter() - start)
        page.get_by_text("Which picture is better?").wait_for(timeout=5_000)
        page.close()
    print(f"\nclick on an example pair to both battle pictures loaded: {', '.join(f'{t:.2f}' for t in times)} s")
    assert sorted(times)[1] < 1.0


def bodies_of(requests):
    return [(r.url, r.response().body()) for r in list(requests) if r.response()]


def names_in(text):
    return [n for n in NAMES if n in text]


def outside_viewport(page, selectors):
    """The selectors whose element is not wholly inside the viewport."""
    return page.evaluate("""(selectors) => selectors.filter((s) => {
        const r = document.querySelector(s).getBoundingClientRect();
        return !(r.width > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth);
    })""", selectors)


IN_VIEW = ["#battle-a img", "#battle-b img", *(f"#battle-vote-{c}" for c in ("left", "right", "tie", "both_bad"))]


def battle_on_screen(page):
    """Waits for the battle's vote to open; returns what of it is outside the viewport."""
    page.get_by_text("Which picture is better?").wait_for(timeout=60_000)
    deadline = time.monotonic() + 10
    while not (loaded(page, "#battle-a") and loaded(page, "#battle-b")):
        assert time.monotonic() < deadline, "the two pictures did not load"
        page.wait_for_timeout(50)
    return outside_viewport(page, IN_VIEW)


def revealed_after(page, key):
    """Votes with `key`; the methods the reveal names (Model A's, Model B's)."""
    page.keyboard.press(key)
    reveal = page.locator("#battle-reveal")
    reveal.get_by_text("Model A was").wait_for(timeout=30_000)
    return re.findall(r"Model [AB] was (.+?): (?:run now|precomputed)", reveal.inner_text())


def test_battle_in_view_hidden_names_key_votes_reveal_and_new_round(server, browser, tmp_path):
    """At a desktop's and a phone's viewport: an example click brings both pictures and the vote buttons into
    view and names no method anywhere the browser can read; key A votes for A (and a key after the vote stores
    nothing more), the reveal names the models; New round gives another pair, key B votes for B."""
    DOCS.mkdir(parents=True, exist_ok=True)
    pairs = []
    for width in VIEWPORTS:
        page = open_page(browser, server, width)
        finished = []
        page.on("requestfinished", lambda request, into=finished: into.append(request))
        page.evaluate("window.__received = []")
        page.locator("#battle-pairs tbody tr").nth(0).click()
        assert battle_on_screen(page) == []
        received = page.evaluate("window.__received.join('')")  # everything fetched, event streams included
        assert "Which picture is better?" in received, "the event stream was not collected"
        assert names_in(received) == []
        tab = page.locator("#battle-tab")
        assert names_in(tab.inner_html()) == [] and names_in(tab.inner_text()) == []
        for url, body in bodies_of(finished):
            assert names_in(url) == [] and names_in(body.decode("utf-8", "replace")) == [], url
        for side in ("a", "b"):
            src = page.locator(f"#battle-{side} img").get_attribute("src")
            data = urllib.request.urlopen(src if src.startswith("http") else server.url.rstrip("/") + src).read()
            assert names_in(src) == [] and src.endswith("/image.png")
            assert hashlib.sha256(data).hexdigest() not in src  # not the content-hash name other tabs serve
        page.screenshot(path=DOCS / f"battle-{width}.png")
        first = revealed_after(page, "a")
        assert len(first) == 2, first
        assert names_in(page.locator("#battle-a").inner_text()) and names_in(page.locator("#battle-b").inner_text())
        assert page.get_by_role("button", name="B is better").is_disabled()
        page.keyboard.press("b")  # the vote is closed: the key clicks nothing
        page.screenshot(path=DOCS / f"reveal-{width}.png")
        page.get_by_role("button", name="New round").click()
        assert battle_on_screen(page) == []
        second = revealed_after(page, "b")
        assert set(second) != set(first)
        pairs += [first, second]
        page.close()
    with Store(server.data / "arena.db") as store:
        mine = store.battles().query("not token.str.startswith('planted')")
    assert mine["choice"].tolist() == ["left", "right", "left", "right"]
    labels = {m.name: m.label for m in METHODS.values()}
    assert [[labels[m] for m in row] for row in zip(mine["left_method"], mine["right_method"])] == pairs


def test_leaderboard_ranks_the_planted_battle_votes(server, browser):
    for width in (1400, 390):
        page = open_page(browser, server, width)
        page.get_by_role("tab", name="Leaderboard").click()
        ranking = page.locator("#leaderboard-ranking")
        ranking.get_by_text("AdaIN").first.wait_for(timeout=30_000)
        models = [cell.inner_text() for cell in ranking.locator("tbody td:nth-child(2)").all()]
        assert models == EXPECTED_RANKING
        votes = int(re.match(r"(\d+) battle votes", page.locator("#leaderboard-summary").inner_text()).group(1))
        assert 300 <= votes <= 304  # the planted votes (and this module's battle votes, after a refresh)
        page.screenshot(path=DOCS / f"leaderboard-{width}.png", full_page=True)
        page.close()


def test_changing_any_compare_input_makes_the_stale_vote_impossible(server, browser):
    page = open_page(browser, server)
    page.get_by_role("tab", name="Compare").click()
    tab = page.locator("#compare-tab")
    examples = tab.locator("button.gallery-item")  # 12 photos, then 12 paintings
    vote = tab.get_by_role("button", name="Tie")
    tie_disabled = ("Array.from(document.querySelectorAll('#compare-tab button'))"
                    ".find(b => b.textContent.trim() === 'Tie').disabled")

    def compare():
        tab.locator("#compare-pairs tbody tr").nth(0).click()
        vote.wait_for(state="visible")
        page.wait_for_function("!" + tie_disabled, timeout=60_000)
        deadline = time.monotonic() + 10
        while not (loaded(page, "#compare-first") and loaded(page, "#compare-second")):
            assert time.monotonic() < deadline, "the two results did not load"
            page.wait_for_timeout(50)

    def stale(what):
        page.wait_for_function(tie_disabled, timeout=30_000)
        assert not loaded(page, "#compare-first") and not loaded(page, "#compare-second"), what

    changes = {
        "photo": lambda: examples.nth(4).click(),
        "painting": lambda: examples.nth(12 + 1).click(),
        "first method": lambda: choose(page, "First method", "AdaIN"),
        "second method": lambda: choose(page, "Second method", "A2K (training-free)"),
        "alpha": lambda: set_number(tab, "Style strength (alpha)", "0.5"),
        "preserve colours": lambda: tab.get_by_label("Preserve content colours").check(),
        "size": lambda: set_number(tab, "Output size (long side, px)", "128"),
    }
    for what, change in changes.items():
        compare()
        change()
        stale(what)
        page.wait_for_timeout(1000)  # the change's own events finish before the next comparison starts
    with Store(server.data / "arena.db") as store:
        assert store.comparisons().empty


def choose(page, label, option):
    page.get_by_label(label).click()
    page.get_by_role("option", name=option, exact=True).click()


def set_number(tab, label, value):
    box = tab.get_by_label(f"number input for {label}")
    box.fill(value)
    box.press("Enter")
