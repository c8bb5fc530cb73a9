"""The study page in a real headless Chromium: votes answer the pair on screen even on a slow network
with clicks during every transition (and the pixels shown on each side are that side's method), a vote
that does not get through (no connection, a rate limit, a proxy's error page) shown and sent again, the
layout at desktop and phone sizes, the keyboard shortcuts, a screenshot of every screen (docs/study/),
and the opening and the decline a browser's saved state counts once across reloads."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from bench.server import ROOT, App
from demo.limits import TOO_MANY
from study.prepare import register
from study.schema import stimuli, trials, votes
from study.store import Store, load_arrivals, load_votes

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SHOTS = ROOT / "docs" / "study"
TINY = "tiny"  # 4 trials (one catch) on 96 px stimuli made here
SIZES = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}
THROTTLE = {"offline": False, "latency": 40, "downloadThroughput": 300_000 / 8, "uploadThroughput": 300_000 / 8}
READY = "#study-trial [data-state=ready]"
# what is on screen at every click and key press, recorded in the page before its own handlers run
RECORDER = """() => {
  window.seen = [];
  const note = (kind, what) => {
    const trial = document.querySelector('#study-trial .trial');
    const imgs = trial ? [...trial.querySelectorAll('.pair img')] : [];
    window.seen.push({kind, what, trial: trial ? trial.dataset.trial : null,
      srcs: imgs.map(i => i.getAttribute('src')),
      painted: imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0
                                                && getComputedStyle(i).visibility === 'visible')});
  };
  document.addEventListener('click', e => {
    const b = e.target.closest && e.target.closest('button[data-choice]');
    if (b) note('click', b.dataset.choice);
  }, true);
  document.addEventListener('keydown', e => note('key', e.key), true);
}"""
KEY_CHOICE = {"ArrowLeft": "left", "ArrowRight": "right", "ArrowDown": "tie"}


def pattern(seed, size=96):
    """A distinct, incompressible-ish RGB test image."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    data = tmp_path_factory.mktemp("browser-study")
    images, inputs = data / "tiny-images", data / "inputs"
    images.mkdir()
    inputs.mkdir()
    contents, styles = [inputs / "c1.png", inputs / "c2.png"], [inputs / "s1.png"]
    for i, path in enumerate([*contents, *styles]):
        pattern(100 + i, 32).save(path)
    for i, (c, m) in enumerate((c, m) for c in contents for m in ("m_one", "m_two")):
        pattern(i).save(images / f"{c.stem}__s1__{m}.png")
    with Store(data / "arena.db") as store:
        store.create_study(TINY, "Tiny study: agree to go on.", n_trials=4, catch_rate=0.25, images_dir=images,
                           title="Pictures")
        register(store, TINY, contents, styles, ["m_one", "m_two"], images, 96)
    server = App(data, "--with-study", env={"VOTE_INTERVAL_MS": "0", "ENROLMENTS_PER_HOUR": "0"}).start()
    server.data = data
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def stored_trials(server, study):
    """{trial token: (choice, left file, right file)} for every voted trial of the study."""
    with Store(server.data / "arena.db") as store, store.engine.connect() as conn:
        left, right = stimuli.alias("l"), stimuli.alias("r")
        rows = conn.execute(select(trials.c.token, votes.c.choice, left.c.path, right.c.path)
                            .join(votes, votes.c.trial_id == trials.c.id)
                            .join(left, left.c.id == trials.c.left_stimulus_id)
                            .join(right, right.c.id == trials.c.right_stimulus_id)).all()
        folder = Path(store.study(study)["images_dir"])
    return {token: (choice, folder / lp, folder / rp) for token, choice, lp, rp in rows}


def pixels(data_or_path):
    with Image.open(data_or_path) as im:
        return np.asarray(im.convert("RGB"))


def test_votes_answer_the_pair_on_screen_on_a_slow_network(server, browser):
    """300 kbit/s; the test clicks and presses keys as fast as it can, through every transition (double
    clicks too). Every stored vote must be for the trial whose two images were painted at that click,
    with that click's choice; no vote is extra; and the pixels the browser got for each side are the
    stimulus file of that side's stimulus (swapping the sides in the page code fails here)."""
    context = browser.new_context(viewport=SIZES["desktop"])
    page = context.new_page()
    received = {}
    page.on("response", lambda r: "study-image/" in r.url and received.setdefault(r.url.split("/study-image/")[1],
                                                                                r.body()))
    page.goto(server.url + f"study?study={TINY}")
    page.get_by_role("button", name="I agree").click(timeout=60_000)
    page.get_by_role("button", name="Start").click()
    page.evaluate(RECORDER)
    context.new_cdp_session(page).send("Network.emulateNetworkConditions", THROTTLE)
    done = page.get_by_text("Your completion code is")
    for i in range(4000):  # bounded: about 2 minutes at most
        if done.is_visible():
            break
        left = page.locator("button[data-choice=left]")
        if i % 3 == 0 and left.count():
            box = left.bounding_box()
            if box:
                page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        else:
            page.keyboard.press("ArrowRight" if i % 3 == 1 else "ArrowDown")
        page.wait_for_timeout(20)
    assert done.is_visible(), "the study did not finish"
    seen = page.evaluate("window.seen")
    context.close()
    stored = stored_trials(server, TINY)
    assert len(stored) == 4  # one vote per trial, none extra
    in_transition = [s for s in seen if not s["painted"]]
    assert in_transition, "no click fell into a transition: the test did not test"
    for token, (choice, left_file, right_file) in stored.items():
        matching = [s for s in seen if s["trial"] == token and s["painted"]
                    and (s["what"] if s["kind"] == "click" else KEY_CHOICE.get(s["what"])) == choice]
        assert matching, f"the vote {choice!r} on {token[:8]} matches no click made while its images were painted"
        srcs = {tuple(s["srcs"]) for s in seen if s["trial"] == token}
        assert len(srcs) == 1, "a trial's images changed under its token"
        (left_src, right_src), = srcs
        for src, file in ((left_src, left_file), (right_src, right_file)):
            got = received[src.split("study-image/")[1]]
            assert np.array_equal(pixels(io.BytesIO(got)), pixels(file)), \
                f"the image shown as {src} is not {file.name}"


def shoot(page, name, size):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}-{size}.png")


def answer(page, how):
    """Vote once the trial is ready, by a click on a button or a key; returns the choice."""
    page.locator(READY).wait_for(timeout=60_000)
    if how in KEY_CHOICE:
        page.keyboard.press(how)
        return KEY_CHOICE[how]
    page.locator(f"button[data-choice={how}]").click()
    return how


def inside(inner, outer, slack=1):
    return (inner["x"] >= outer["x"] - slack and inner["y"] >= outer["y"] - slack
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack)


@pytest.mark.parametrize("size", SIZES)
def test_layout_shortcuts_and_screenshots(server, browser, size):
    viewport = SIZES[size]
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.goto(server.url + "study?study=sample")
    page.get_by_role("button", name="I agree").wait_for(timeout=60_000)
    shoot(page, "consent", size)
    page.get_by_role("button", name="I agree").click()
    page.get_by_role("button", name="Start").wait_for()
    shoot(page, "instructions", size)
    page.get_by_role("button", name="Start").click()
    page.locator(READY).wait_for(timeout=60_000)
    shoot(page, "trial", size)
    choices = [answer(page, how) for how in ("left", "ArrowRight", "ArrowDown", "ArrowLeft")]
    page.get_by_text("Trial 5 of").wait_for()
    page.locator(READY).wait_for(timeout=60_000)
    assert page.locator("input:visible, textarea:visible").count() == 0  # no token field, nothing to type in
    assert page.evaluate("window.scrollY") == 0
    sides = page.locator(".pair .side")
    for i, name in enumerate(("left", "right")):
        image = sides.nth(i).locator("img").bounding_box()
        button = page.locator(f"button[data-choice={name}]").bounding_box()
        assert button["y"] >= image["y"] + image["height"] - 1  # under its image
        if size == "desktop":
            assert inside(button, sides.nth(i).bounding_box())  # in its image's column
            assert abs((button["x"] + button["width"] / 2) - (image["x"] + image["width"] / 2)) < 2
        else:
            screen = {"x": 0, "y": 0, **viewport}
            assert inside(image, screen) and inside(button, screen), (image, button)
            assert page.locator(f"button[data-choice={name}]").inner_text().startswith(("Top", "Bottom"))
    if size == "desktop":
        assert page.get_by_text("Keys:").is_visible()
    for _ in range(10):  # the sample study has 10 trials
        page.wait_for_function(f"() => document.querySelector('{READY}') || document.querySelector('.prolific-return')"
                               " || document.body.innerText.includes('Your completion code is')", timeout=60_000)
        if page.get_by_text("Your completion code is").is_visible():
            break
        choices.append(answer(page, "ArrowLeft"))
        page.wait_for_function(f"() => !document.querySelector('{READY}')")
    shoot(page, "done", size)
    assert page.title() == "Picture study" and page.locator("footer:visible").count() == 0
    declined = context.browser.new_page(viewport=viewport)
    declined.goto(server.url + "study?study=sample")
    declined.get_by_role("button", name="I do not agree").click(timeout=60_000)
    declined.get_by_text("You did not agree").wait_for()
    shoot(declined, "declined", size)
    context.close()
    declined.close()
    with Store(server.data / "arena.db") as store:
        stored = load_votes(store, "sample")
    assert stored["choice"].tolist()[-len(choices):] == choices
    assert (stored["response_time_ms"].tail(len(choices)) > 0).all()


def test_a_vote_that_does_not_get_through_is_shown_and_can_be_sent_again(server, browser):
    """The first click's request never reaches the server (no connection), the second's is refused with
    a rate limit's message, the third is answered by a server error page (what a proxy sends while the
    app restarts): each time the trial stays on screen with the reason above it, nothing is stored,
    and the buttons work again; the fourth click is stored and the next trial shown, without the notice."""
    context = browser.new_context(viewport=SIZES["desktop"])
    page = context.new_page()
    page.goto(server.url + f"study?study={TINY}")
    page.get_by_role("button", name="I agree").click(timeout=60_000)
    page.get_by_role("button", name="Start").click()
    page.locator(READY).wait_for(timeout=60_000)
    trial = page.locator("#study-trial .trial").get_attribute("data-trial")
    before = len(stored_trials(server, TINY))
    replies = [lambda route: route.abort("connectionrefused"),
               lambda route: route.fulfill(status=429, json={"error": TOO_MANY}),
               lambda route: route.fulfill(status=502, body="<html>Bad Gateway</html>", content_type="text/html")]
    page.route("**/study-vote", lambda route: replies.pop(0)(route) if replies else route.continue_())
    notice = page.locator("#study-trial .notice")
    for message in ("did not reach the server", TOO_MANY, "could not take your answer (error 502)"):
        page.locator("button[data-choice=right]").click()
        page.get_by_text(message).wait_for(timeout=30_000)
        page.locator(READY).wait_for(timeout=10_000)  # the buttons answer again
        assert page.locator("#study-trial .trial").get_attribute("data-trial") == trial
        assert len(stored_trials(server, TINY)) == before
    page.locator("button[data-choice=right]").click()
    page.get_by_text("Trial 2 of").wait_for(timeout=30_000)
    assert not notice.is_visible()
    context.close()
    stored = stored_trials(server, TINY)
    assert len(stored) == before + 1 and stored[trial][0] == "right"


def test_a_browser_counts_its_opening_and_its_decline_once_across_reloads(server, browser):
    """The page's saved browser state (localStorage) marks the link opened, then declined: reloads add
    nothing, and a reload after the decline shows the declined screen again."""
    with Store(server.data / "arena.db") as store:
        store.create_study("arrivals", "Agree to go on?", n_trials=2, catch_rate=0)
    context = browser.new_context(viewport=SIZES["desktop"])
    page = context.new_page()
    page.goto(server.url + "study?study=arrivals")
    page.get_by_text("Agree to go on?").wait_for(timeout=60_000)
    page.reload()
    page.get_by_role("button", name="I do not agree").click(timeout=60_000)
    page.get_by_text("You did not agree").wait_for()
    page.reload()
    page.get_by_text("You did not agree").wait_for(timeout=60_000)
    assert page.get_by_role("button", name="I agree").is_hidden()
    context.close()
    with Store(server.data / "arena.db") as store:
        arrived = load_arrivals(store, "arrivals")
    assert (arrived.opened, arrived.declined) == (1, 1)
