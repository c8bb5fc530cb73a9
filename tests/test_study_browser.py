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
from demo.choices import CHOICE_LABELS
from demo.limits import TOO_MANY
from demo.study_trial import instruction
from study.prepare import reference_path, register
from study.schema import participants, stimuli, trials, votes
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
    const imgs = trial ? [...trial.querySelectorAll('.side img')] : [];
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
    agree = page.get_by_role("button", name="I agree")
    agree.wait_for(timeout=60_000)
    context.new_cdp_session(page).send("Network.emulateNetworkConditions", THROTTLE)  # the instructions' preload too
    agree.click()
    page.get_by_role("button", name="Start").click()
    page.evaluate(RECORDER)
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


def test_the_first_trials_pictures_load_while_the_instructions_are_read(server, browser):
    """After consent, while the instructions are on screen, the page fetches the pictures of the first trial
    (its pair and references) and of the trials after it: Start then shows pictures already fetched."""
    context = browser.new_context(viewport=SIZES["desktop"])
    page = context.new_page()
    requested = []
    page.on("request", lambda r: "study-image/" in r.url and requested.append(r.url.split("/", 3)[3]))
    page.goto(server.url + "study?study=sample")
    page.get_by_role("button", name="I agree").click(timeout=60_000)
    start = page.get_by_role("button", name="Start")
    start.wait_for(timeout=60_000)
    for _ in range(100):
        if len(set(requested)) >= 8:
            break
        page.wait_for_timeout(100)
    before_start = set(requested)
    start.click()
    page.locator(READY).wait_for(timeout=60_000)
    shown = page.eval_on_selector_all("#study-trial img", "images => images.map(i => i.getAttribute('src'))")
    context.close()
    assert len(shown) == 4 and set(shown) <= before_start, (shown, sorted(before_start))


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
    shoot(page, "practice", size)
    choices = [answer(page, "ArrowDown")]
    page.get_by_text("Trial 1 of").wait_for()
    page.locator(READY).wait_for(timeout=60_000)
    shoot(page, "trial", size)
    choices += [answer(page, how) for how in ("left", "ArrowRight", "ArrowDown", "ArrowLeft")]
    page.get_by_text("Trial 5 of").wait_for()
    page.locator(READY).wait_for(timeout=60_000)
    assert page.locator("input:visible, textarea:visible").count() == 0  # no token field, nothing to type in
    assert page.evaluate("window.scrollY") == 0
    assert page.evaluate("document.documentElement.scrollHeight") <= viewport["height"]  # one screen, no scrolling
    widths = [page.locator(f"img[data-side={name}]").bounding_box()["width"] for name in ("left", "right")]
    assert min(widths) >= 256, widths  # the sample study's min_image_px
    assert page.locator("img[data-reference]").count() == 2 and page.get_by_text("Painting", exact=True).is_visible()
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


SLOW = {"offline": False, "latency": 40, "downloadThroughput": 400_000 / 8, "uploadThroughput": 400_000 / 8}
THINK_MS = 3000
MAX_BYTES = 3_000_000  # per participant, everything after the consent page (issue #26)
MAX_WAIT_MS = 1000  # from a vote to the next trial's buttons, after the first trial
# when Start was clicked; per click: the trial on screen, its question, the sources of its pair and references,
# and whether it fits;
# per trial: when its buttons came to work (performance.now()) and whether the next trial's pair (the first
# two addresses of its data-next) had arrived by then (the page's resource timing entries: ENTRIES keeps them all)
ENTRIES = "performance.setResourceTimingBufferSize(100000)"
WATCH = """() => {
  window.clicks = []; window.ready = {}; window.nextIn = {};
  const box = document.querySelector('#study-trial');
  const trial = () => box.querySelector('.trial');
  const arrived = url => performance.getEntriesByName(new URL(url, location.href).href).some(e => e.responseEnd > 0);
  new MutationObserver(() => {
    const t = trial(), state = box.querySelector('[data-state]');
    if (t && state && state.dataset.state === 'ready' && !(t.dataset.trial in window.ready)) {
      window.ready[t.dataset.trial] = performance.now();
      window.nextIn[t.dataset.trial] = t.dataset.next.split(' ').filter(Boolean).slice(0, 2).map(arrived);
    }
  }).observe(box, {subtree: true, childList: true, attributes: true, attributeFilter: ['data-state']});
  document.addEventListener('click', e => {
    const button = e.target.closest && e.target.closest('button'), t = trial();
    if (button && !button.dataset.choice && button.textContent.trim() === 'Start') window.start = performance.now();
    const b = button && button.dataset.choice ? button : null;
    if (!b || !t) return;
    const pair = [...t.querySelectorAll('.side img')], refs = [...t.querySelectorAll('.refs img')];
    window.clicks.push({choice: b.dataset.choice, at: performance.now(), trial: t.dataset.trial,
      question: t.querySelector('.question').textContent, progress: t.querySelector('.progress').textContent,
      pair: pair.map(i => i.getAttribute('src')), refs: refs.map(i => i.getAttribute('src')),
      loaded: [...pair, ...refs].every(i => i.complete && i.naturalWidth > 0),
      widths: pair.map(i => i.getBoundingClientRect().width),
      fits: document.documentElement.scrollHeight <= window.innerHeight
            && [...t.querySelectorAll('button')].every(x => x.getBoundingClientRect().bottom <= window.innerHeight)});
  }, true);
}"""


def served_pixels(received, src):
    return pixels(io.BytesIO(received[src]))


@pytest.mark.parametrize("size", SIZES)
def test_the_sample_study_at_400_kbits_on_phone_and_desktop(server, browser, size):
    """The issue's "done when": a participant on a 400 kbit/s link takes the sample study (a practice trial,
    two questions, an attention check, the references beside every pair), thinking 3 s per trial. Every
    stored vote is the click made on the pair, references and question on screen (the served pixels are
    the stored stimuli's and references' files); at 390 x 844 and 1400 x 900 each trial fits the screen
    with each image at least the study's min_image_px wide. Then the figures of the issue: no wait over
    1 s after the first trial, at most 3 MB transferred after the consent page. The participant clicks Start
    at once (no time to fetch pictures while reading the instructions): the first trial turns ready only once
    the next trial's pair has arrived too, else the link stays behind by a trial's pictures."""
    context = browser.new_context(viewport=SIZES[size])
    context.add_init_script(ENTRIES)
    page = context.new_page()
    received, sizes = {}, []
    page.on("response", lambda r: ("study-image/" in r.url or "study-reference/" in r.url)
            and received.setdefault(r.url.split("/", 3)[3], r.body()))
    page.goto(server.url + "study?study=sample")
    page.get_by_role("button", name="I agree").wait_for(timeout=60_000)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.on("Network.loadingFinished", lambda event: sizes.append(event["encodedDataLength"]))
    cdp.send("Network.emulateNetworkConditions", SLOW)
    page.evaluate(WATCH)
    page.get_by_role("button", name="I agree").click()
    page.get_by_role("button", name="Start").click(timeout=60_000)
    done = page.get_by_text("Your completion code is")
    for _ in range(12):  # 11 trials, then the completion code
        page.wait_for_function("() => document.querySelector('#study-trial [data-state=ready]')"
                               " || document.body.innerText.includes('Your completion code is')", timeout=180_000)
        if done.is_visible():
            break
        page.wait_for_timeout(THINK_MS)
        question = page.locator("#study-trial .question").inner_text()
        named = [c for c, label in CHOICE_LABELS.items() if question.endswith(f"click the {label} button.")]
        choice = named[0] if named else ("left", "right")[len(page.evaluate("window.clicks")) % 2]
        page.locator(f"#study-trial button[data-choice={choice}]").click()
        page.wait_for_function("() => !document.querySelector('#study-trial [data-state=ready]')")
    assert done.is_visible(), "the study did not finish"
    clicks, ready, next_in, start = (page.evaluate(f"window.{name}") for name in ("clicks", "ready", "nextIn", "start"))
    context.close()
    # the first trial waits for the next trial's pair: the link is never behind the participant from the start
    assert next_in[clicks[0]["trial"]] == [True, True], next_in

    with Store(server.data / "arena.db") as store, store.engine.connect() as conn:
        settings = store.study("sample")
        left, right = stimuli.alias("l"), stimuli.alias("r")
        rows = {r.token: r for r in conn.execute(
            select(trials.c.token, trials.c.question, trials.c.practice, trials.c.instructed, votes.c.choice,
                   left.c.path.label("left_path"), right.c.path.label("right_path"), left.c.content_sha256,
                   left.c.style_sha256)
            .join(votes, votes.c.trial_id == trials.c.id).join(left, left.c.id == trials.c.left_stimulus_id)
            .join(right, right.c.id == trials.c.right_stimulus_id)
            .where(trials.c.token.in_([c["trial"] for c in clicks])))}
        screen = conn.execute(select(participants.c.viewport_width, participants.c.viewport_height,
                                     participants.c.pixel_ratio, participants.c.browser, participants.c.device)
                              .join(trials, trials.c.participant_id == participants.c.id)
                              .where(trials.c.token == clicks[0]["trial"])).one()
    assert screen[:3] == (SIZES[size]["width"], SIZES[size]["height"], 1.0)  # the screen check's record
    assert screen.browser.startswith("Chrome ") and screen.device == "desktop"  # headless Chromium's User-Agent
    folder = Path(settings["images_dir"])
    wording = dict(settings["questions"])
    assert len(clicks) == len(rows) == 11  # one vote per trial, each the click on screen
    assert sum(r.practice for r in rows.values()) == 1 and clicks[0]["progress"].startswith("Practice trial 1 of 1")
    assert sum(bool(r.instructed) for r in rows.values()) == 1
    assert {r.question for r in rows.values() if not r.instructed} == {"overall", "style"}
    for click in clicks:
        row = rows[click["trial"]]
        assert row.choice == click["choice"]
        assert click["question"] == (instruction(row.instructed) if row.instructed else wording[row.question])
        assert click["loaded"] and len(click["refs"]) == 2, click
        for src, file in zip(click["pair"], (row.left_path, row.right_path)):
            assert np.array_equal(served_pixels(received, src), pixels(folder / file)), f"{src} is not {file}"
        for src, sha in zip(click["refs"], (row.content_sha256, row.style_sha256)):
            assert np.array_equal(served_pixels(received, src), pixels(reference_path(folder, sha)))
        assert click["fits"], f"the trial overflows the {size} screen"
        assert min(click["widths"]) >= settings["min_image_px"] - 1, click["widths"]
    waits = [ready[b["trial"]] - a["at"] for a, b in zip(clicks, clicks[1:])]
    figures = (f"{size}: {sum(sizes) / 1e6:.2f} MB transferred, the first trial {ready[clicks[0]['trial']] - start:.0f} ms"
               f" after Start, longest wait after it {max(waits):.0f} ms")
    (ROOT / "artifacts").mkdir(exist_ok=True)
    with open(ROOT / "artifacts" / "study-400kbits.txt", "a") as log:
        log.write(figures + f"; waits (ms) {[round(w) for w in waits]}\n")
    assert max(waits) <= MAX_WAIT_MS, figures
    assert sum(sizes) <= MAX_BYTES, figures
