"""The page in a real headless Chromium: pick gallery examples, compare, vote; a screenshot is kept."""
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from bench.server import ROOT, App
from study.store import Store

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture
def page(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    server = App(tmp_path).start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server.url)
        page.data_dir = tmp_path
        yield page
        browser.close()
    server.stop()


def test_compare_from_gallery_and_vote(page):
    page.get_by_role("tab", name="Compare").click()
    page.get_by_text("Example photos", exact=True).wait_for(timeout=60_000)
    examples = page.locator("#compare-tab button.gallery-item")  # 12 photos, then 12 paintings, sorted by file name
    examples.nth(3).click()
    page.locator("img[src*='animal_red_panda']").nth(1).wait_for()  # the example is loaded into the input
    examples.nth(12 + 5).click()
    page.locator("img[src*='gogh_harvest']").nth(1).wait_for()
    size = page.get_by_label("number input for Output size (long side, px)")
    size.fill("256")
    size.press("Enter")
    page.get_by_role("button", name="Stylise").click()
    page.get_by_text("Which result is better?").wait_for(timeout=180_000)
    assert page.get_by_text("A2K (training-free)").count() >= 1
    page.get_by_role("button", name="A2K (training-free) is better").click()
    page.get_by_text("Recorded: A2K (training-free) is better").wait_for(timeout=30_000)
    assert page.get_by_role("button", name="all-to-all (training-free) is better").is_disabled()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "browser-compare.png", full_page=True)
    with Store(page.data_dir / "arena.db") as store:
        votes = store.comparisons()
    assert votes["choice"].tolist() == ["left"] and votes["settings"][0]["size"] == 256


def explore(page, clicks):
    """Pick the cat and the Great Wave in Compare, open the explorer and click at each (fx, fy) fraction of the
    photo in turn; returns the last click's position text and its three maps as pixel arrays."""
    page.get_by_role("tab", name="Compare").click()
    page.get_by_text("Example photos", exact=True).wait_for(timeout=60_000)
    examples = page.locator("#compare-tab button.gallery-item")
    examples.nth(5).click()
    page.locator("img[src*='photo_chelsea']").nth(1).wait_for()
    examples.nth(12 + 9).click()
    page.locator("img[src*='hokusai_great_wave']").nth(1).wait_for()
    page.get_by_role("tab", name="Attention explorer").click()
    content = page.locator("#explorer-content img")
    content.wait_for()
    page.wait_for_function("(() => { const i = document.querySelector('#explorer-painting img'); "  # the wave, not
                           "return !!i && i.naturalWidth > i.naturalHeight; })()")  # the example's upright painting
    position = re.compile(r"Position \(\d+, \d+\) px")
    shown = None
    for fx, fy in clicks:
        box = content.bounding_box()
        content.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
        page.wait_for_function("([pattern, before]) => { const m = [...document.body.innerText.matchAll("
                               "new RegExp(pattern, 'g'))].map(x => x[0]); return m.length && m.at(-1) !== before; }",
                               arg=[position.pattern, shown], timeout=120_000)
        shown = position.findall(page.locator("body").inner_text())[-1]
    maps = {}
    for key in ("da", "pa", "all2all"):
        src = page.locator(f"#explorer-{key} img").get_attribute("src")
        maps[key] = np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"), dtype=np.int16)
    return shown, maps


def test_attention_explorer_second_click_sees_the_clean_photo(page):
    """The view carries the first click's marker; the second click's maps must be those of a first
    click at the same point on a fresh page, i.e. computed on the unmarked photo."""
    second, after_two = explore(page, [(0.3, 0.45), (0.36, 0.5)])
    page.reload()
    fresh, after_one = explore(page, [(0.36, 0.5)])
    assert second == fresh
    for key, shown in after_two.items():
        assert shown.shape == after_one[key].shape and np.abs(shown - after_one[key]).max() <= 1, key
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "browser-explorer.png", full_page=True)
