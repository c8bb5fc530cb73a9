"""The Leaderboard and the Attention explorer in a real headless Chromium, at a desktop (1400 x 900) and a
phone (390 x 844) viewport, on one launched app (160 px) whose database starts empty: the leaderboard's empty,
provisional and ranked states, a visitor's own vote on it at once, the explorer from a Battle's images, and
no sideways scrolling on the phone. Screenshots go to docs/arena/."""
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from bench.server import ROOT, App
from demo.explorer import MISSED, at_size
from demo.gallery import gallery_paintings
from demo.leaderboard import EMPTY, MIN_VOTES
from demo.upload import read_input
from demo.warmup import pair_paths
from study.store import Store

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
DOCS = ROOT / "docs" / "arena"
VIEWPORTS = {1400: 900, 390: 844}
# planted: AdaIN beats all-to-all, which beats A2K (not the alphabetical or the default order); SANet: 3 votes
PLANTED = {("adain", "all2all_free"): 0.8, ("adain", "a2k_free"): 0.85, ("all2all_free", "a2k_free"): 0.7}
EXPECTED_RANKING = ["AdaIN", "all-to-all (training-free)", "A2K (training-free)"]
# the leaderboard's summary is there, not a progress timer ("0.7s") in its place
SHOWN = "(() => { const t = document.querySelector('#leaderboard-summary').innerText.trim(); " \
        "return t.length > 20 && !/processing|\\d\\.\\ds/.test(t); })()"
# what scrolls sideways (the page, or an element with overflow-x auto or scroll), or shows past the viewport's
# right edge (clipped content): none may on a phone
SIDEWAYS = """() => [document.documentElement, ...document.querySelectorAll('body *')].filter(e => {
  if (e !== document.documentElement && e.offsetParent === null) return false;
  const x = getComputedStyle(e).overflowX, box = e.getBoundingClientRect();
  const scrolls = (e === document.documentElement || x === 'auto' || x === 'scroll') && e.scrollWidth > e.clientWidth + 1;
  return scrolls || (box.width > 0 && box.right > window.innerWidth + 1);
}).map(e => e.id || e.className || e.tagName)"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    data = tmp_path_factory.mktemp("board")
    app = App(data, "--max-size", "160").start()
    app.data = data
    yield app
    app.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def open_page(browser, server, width):
    page = browser.new_page(viewport={"width": width, "height": VIEWPORTS[width]})
    page.goto(server.url)
    page.locator("#battle-pairs").wait_for(timeout=60_000)
    return page


def leaderboard(page):
    """Opens the Leaderboard tab once the server has counted the votes -> (summary, ranking rows as cell texts)."""
    deadline = time.monotonic() + 60
    while True:
        page.get_by_role("tab", name="Battle").click()
        page.get_by_role("tab", name="Leaderboard").click()
        summary = page.locator("#leaderboard-summary")
        page.wait_for_function(SHOWN, timeout=30_000)
        page.wait_for_timeout(300)  # the ranking arrives with the summary
        if "being counted" not in summary.inner_text():
            break
        assert time.monotonic() < deadline, summary.inner_text()
        page.wait_for_timeout(1000)
    rows = [[cell.inner_text() for cell in row.locator("td").all()]
            for row in page.locator("#leaderboard-ranking tbody tr").all()]
    return summary.inner_text(), rows


def shot(page, name):
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=DOCS / name, full_page=True)


def no_sideways_scrolling(page, what):
    assert page.evaluate(SIDEWAYS) == [], what


def plant_votes(store):
    """300 votes of 20 sources on 3 models (some on two gallery paintings with the sources' own photos), and
    3 on SANet: too few to be ranked."""
    paintings = sorted(gallery_paintings(160))
    for source in range(20):
        for (x, y), p in PLANTED.items():
            for content in range(5):
                choice = "left" if (source * 7 + content * 3) % 20 < p * 20 else "right"
                style = paintings[content % 2] if content < 2 else "own-painting"
                store.record_battle(f"planted-{source}-{content}-{x}-{y}", f"visitor-{source}", f"source-{source}",
                                    f"photo-{content}", style, x, y, "o1", "o2", choice)
    for source in range(3):
        store.record_battle(f"sanet-{source}", f"visitor-{source}", f"source-{source}", "photo-9", "own-painting",
                            "sanet", "adain", "o1", "o2", "left")


def test_leaderboard_empty_then_provisional_then_ranked(server, browser):
    """Empty: a message and no table. Votes stored while the server runs show at once, every model
    provisional until the next full count; after it (a restart here), the three models with 100 votes
    each are ranked in the planted order, SANet (3 votes) stays provisional; a painting has its own board."""
    for width in VIEWPORTS:
        page = open_page(browser, server, width)
        summary, rows = leaderboard(page)
        assert summary == EMPTY and rows == [] and page.locator("#leaderboard-ranking table").count() == 0
        shot(page, f"leaderboard-empty-{width}.png")
        page.close()
    with Store(server.data / "arena.db") as store:
        plant_votes(store)
    for width in VIEWPORTS:
        page = open_page(browser, server, width)
        summary, rows = leaderboard(page)
        assert summary.startswith("303 battle votes") and "The ranking counts 303" in summary, summary
        assert "are ranked at the next full count" in summary, summary
        assert [r[0] for r in rows] == ["–"] * 4  # no rank before a full count
        assert [r[4] for r in rows] == ["203", "200", "200", "3"]  # AdaIN also met SANet
        assert "ranked at the next full count" in rows[0][2] and f"provisional: 3 of {MIN_VOTES} votes" in rows[3][2]
        shot(page, f"leaderboard-provisional-{width}.png")
        page.close()
    server.stop()
    server.start()
    for width in VIEWPORTS:
        page = open_page(browser, server, width)
        summary, rows = leaderboard(page)
        assert [r[1] for r in rows] == [*EXPECTED_RANKING, "SANet (official)"], rows
        assert [r[0] for r in rows] == ["1", "2", "3", "–"]
        strengths = [float(r[2].split()[0]) for r in rows[:3]]
        assert strengths == sorted(strengths, reverse=True) and abs(sum(strengths) - 1) < 0.002
        for row in rows[:3]:  # each strength inside its interval, printed as 0.xyz – 0.xyz
            low, high = (float(x) for x in row[2].splitlines()[1].split(" – "))
            assert low <= float(row[2].split()[0]) <= high
        shot(page, f"leaderboard-ranked-{width}.png")
        if width == 390:
            no_sideways_scrolling(page, "leaderboard")
        page.close()
    page = open_page(browser, server, 1400)
    leaderboard(page)
    page.get_by_role("combobox", name="Board").click()
    page.get_by_role("option").nth(1).click()  # the first painting with votes
    page.get_by_text("This board: the 60 counted votes on").wait_for(timeout=30_000)
    rows = [[cell.inner_text() for cell in row.locator("td").all()]
            for row in page.locator("#leaderboard-ranking tbody tr").all()]
    assert [r[1] for r in rows] == EXPECTED_RANKING and [r[4] for r in rows] == ["40", "40", "40"]
    page.close()


def noise_png(path, seed):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(path)
    return path


def test_a_visitors_own_vote_is_on_the_leaderboard_at_once(server, browser, tmp_path):
    """A battle on the visitor's own photo and painting, one vote, then the Leaderboard tab: two more model
    votes (one per side) and "Your votes: 1, of which 1 counted", long before the next full count."""
    page = open_page(browser, server, 1400)
    _, before = leaderboard(page)
    page.get_by_role("tab", name="Battle").click()
    files = page.locator("#battle-tab input[type=file]")
    files.nth(0).set_input_files(noise_png(tmp_path / "photo.png", 1))
    files.nth(1).set_input_files(noise_png(tmp_path / "painting.png", 2))
    page.wait_for_timeout(1000)  # both uploads reach the server
    page.get_by_role("button", name="Start battle").click()
    page.get_by_text("Which picture is better?").wait_for(timeout=120_000)
    page.get_by_role("button", name="A is better").click()
    page.locator("#battle-reveal").get_by_text("Model A was").wait_for(timeout=30_000)
    summary, after = leaderboard(page)
    assert sum(int(r[4]) for r in after) == sum(int(r[4]) for r in before) + 2
    assert "Your votes: 1, of which 1 counted." in summary, summary
    page.close()


def pixels(page, selector):
    src = page.locator(f"{selector} img").get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"), dtype=np.int16)


def test_explorer_from_a_battles_images_with_a_readable_all_to_all_map(server, browser):
    """An example pair before any battle; after a battle on the second example pair, its photo and painting;
    a click beside the photo says so; a click on it gives three maps, the all-to-all one with its few cells
    marked so that they are seen (the old map: a darkened painting with a 1-2 px dot); on a phone the maps
    take the width and nothing scrolls sideways (battle, reveal, explorer)."""
    for width in VIEWPORTS:
        page = open_page(browser, server, width)
        phone = width == 390
        if not phone:
            page.get_by_role("tab", name="Attention explorer").click()
            page.locator("#explorer-content img").wait_for(timeout=30_000)
            assert np.array_equal(pixels(page, "#explorer-content"), np.asarray(at_size(read_input(pair_paths()[0][0]))))
            page.get_by_role("tab", name="Battle").click()
        page.locator("#battle-pairs tbody tr").nth(1).click()
        page.get_by_text("Which picture is better?").wait_for(timeout=120_000)
        if phone:
            assert page.get_by_role("tab").count() == 4 and page.get_by_label("More tabs").count() == 0
            no_sideways_scrolling(page, "battle")
            page.get_by_role("button", name="A is better").click()
            page.locator("#battle-reveal").get_by_text("Model A was").wait_for(timeout=30_000)
            no_sideways_scrolling(page, "reveal")
        page.get_by_role("tab", name="Attention explorer").click()
        photo, painting = (np.asarray(at_size(read_input(path))) for path in pair_paths()[1])
        view = page.locator("#explorer-content")
        deadline = time.monotonic() + 30
        while not np.array_equal(pixels(page, "#explorer-content"), photo):  # the battle's photo arrives
            assert time.monotonic() < deadline, "the explorer does not show the battle's photo"
            page.wait_for_timeout(500)
        box = view.locator("img").bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + 3)  # above the landscape photo: its margin
        page.get_by_text(MISSED).wait_for(timeout=5_000)
        view.locator("img").click(position={"x": box["width"] * 0.4, "y": box["height"] * 0.5})
        page.get_by_text("Position (").wait_for(timeout=120_000)
        assert page.get_by_text(MISSED).count() == 0
        maps = {}
        for key in ("da", "pa", "all2all"):
            page.locator(f"#explorer-{key}").scroll_into_view_if_needed()  # images below the fold load lazily
            page.wait_for_function(f"(() => {{ const i = document.querySelector('#explorer-{key} img'); "
                                   "return !!i && i.complete && i.naturalWidth > 0; })()", timeout=30_000)
            maps[key] = pixels(page, f"#explorer-{key}")
        assert maps["all2all"].shape[:2] == painting.shape[:2]
        bright = maps["all2all"].max(axis=2)
        colourful = (bright - maps["all2all"].min(axis=2)) > 0.5 * bright
        marked = (colourful & (bright > 180)).mean()
        assert marked > 0.002, f"{marked:.2%} of the all-to-all map is marked"
        if phone:
            assert page.locator("#explorer-all2all").bounding_box()["width"] > 0.8 * width
            no_sideways_scrolling(page, "explorer")
        shot(page, f"explorer-{width}.png")
        page.close()
