"""The page in a real headless Chromium: pick gallery examples, compare, vote; a screenshot is kept."""
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from bench.server import ROOT, App
from demo.explorer import PANELS, SIZE, overlay
from model.explain import attention_maps
from model.images import open_image, resize_long_side
from model.methods import load_method
from model.pipeline import to_tensor
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
    page.get_by_text("Example photos").wait_for(timeout=60_000)
    examples = page.locator("button.gallery-item")  # 12 photos, then 12 paintings, sorted by file name
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
    page.get_by_role("button", name="Left is better").click()
    page.get_by_text("Recorded: left is better").wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Right is better").is_disabled()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "browser-compare.png", full_page=True)
    with Store(page.data_dir / "arena.db") as store:
        votes = store.comparisons()
    assert votes["choice"].tolist() == ["left"] and votes["settings"][0]["size"] == 256


def test_attention_explorer_maps_are_computed_on_the_clean_photo_at_every_click(page):
    """Two clicks: the maps shown after the second equal the maps computed here on the unmarked photo
    (the view carries the first click's marker, which must not leak into the attention)."""
    page.get_by_text("Example photos").wait_for(timeout=60_000)
    examples = page.locator("button.gallery-item")
    examples.nth(5).click()
    page.locator("img[src*='photo_chelsea']").nth(1).wait_for()
    examples.nth(12 + 9).click()
    page.locator("img[src*='hokusai_great_wave']").nth(1).wait_for()
    page.get_by_role("tab", name="Attention explorer").click()
    content = page.locator("#explorer-content img")
    content.wait_for()
    for i, (fx, fy) in enumerate(((0.3, 0.45), (0.36, 0.5))):
        box = content.bounding_box()
        content.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
        note = page.get_by_text(re.compile(r"Position \(\d+, \d+\) px"))
        note.wait_for(timeout=120_000)
        if i == 0:
            first = note.inner_text()
            page.wait_for_function("t => !document.body.innerText.includes(t)", arg=first, timeout=120_000)
    x, y = map(int, re.search(r"Position \((\d+), (\d+)\) px", page.get_by_text(
        re.compile(r"Position \(\d+, \d+\) px")).inner_text()).groups())
    photo = resize_long_side(open_image(ROOT / "examples/contents/photo_chelsea.jpg"), SIZE)
    painting = resize_long_side(open_image(ROOT / "examples/styles/hokusai_great_wave_off_kanagawa.jpg"), SIZE)
    net = load_method("a2k_free", None, "cpu")
    expected = attention_maps(net, to_tensor(photo, "cpu"), to_tensor(painting, "cpu"), (x, y))
    for key, _ in PANELS:
        src = page.locator(f"#explorer-{key} img").get_attribute("src")
        shown = np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"), dtype=np.int16)
        want = np.asarray(overlay(painting, expected[key]), dtype=np.int16)
        assert shown.shape == want.shape and np.abs(shown - want).max() <= 1, key
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "browser-explorer.png", full_page=True)
