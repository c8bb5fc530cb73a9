"""One trial of the study as a single HTML block: its question, both images, the content photo and style
painting they were made from (when the study shows them), the trial's token and the choice buttons, which
the browser swaps together (the study page's gr.HTML renders trial_html and runs TRIAL_JS).

In the browser a trial is `loading` (its images hidden, buttons disabled) until both images have loaded
(the first trial a page shows also until the next trial's pair has: a slow link then waits once, before
the first trial, rather than between trials while the participant is voting); then `shown`, and `ready`
one painted frame later: only then do the buttons (and the keys: left and right arrows, down for tie)
vote, and the response time is counted from that moment. The first vote turns the trial `sent` and posts
it to the study's vote route (demo.study_vote): nothing more is sent for it, double clicks included,
until the reply brings the next trial or the completion code. A refused vote (a rate limit) or one that
did not reach the server (no connection, a server restarting) shows why above the pictures and lets the
same trial be answered again. While a trial's pictures load, its status line counts them ("Loading the
pictures... 1 of 4", the first trial's counting the next pair too); once its pair has loaded, the
pictures of the next trials (the view's `next`, demo.study_images.preload) are fetched two at a time in
the order they are needed; so are the first trials' pictures while the instructions are read (ahead_html).
Every new trial starts scrolled to the top.
Wide screens show the references in a narrow column left of the pair, side by side; a phone held upright
stacks the pair (the buttons named Top and Bottom) with the references in a narrow column on its right,
so that the whole trial fits one screen (`image_px` gives the width each image of the pair gets there).
The completion screen's feedback form (demo.study_vote) is sent by TRIAL_JS too."""
import html
import json

from .choices import CHOICE_LABELS, STACKED_LABELS

ROUTE = "study-vote"  # where TRIAL_JS posts a vote: demo.study_vote serves it
FEEDBACK_ROUTE = "study-feedback"  # where TRIAL_JS posts the completion screen's feedback
# the layout's sizes in CSS px, shared by TRIAL_CSS and image_px (the screen check's figure)
PAGE_PAD = 16  # the page's left and right margins together (narrow screens; wider ones have more room anyway)
GAP = 8  # between the columns of the pair
TALL_WIDTH = 640  # at most this wide and held upright: the stacked layout
TALL_REFS = 104  # the references column beside the stacked pair
TALL_CHROME = 320  # a stacked trial's height without its two images: progress, question, buttons, margins
WIDE_REFS = 0.5  # the references column's width, in images' widths
WIDE_CHROME = 250  # a side-by-side trial's height without its image
PRACTICE_HINT = ("Practice, not counted: answer the question with the button under the better picture"
                 '<span class="wide"> (or <kbd>&larr;</kbd> / <kbd>&rarr;</kbd>)</span>, <b>Tie</b>'
                 '<span class="wide"> (<kbd>&darr;</kbd>)</span> if you cannot choose, <b>Both bad</b> if neither is '
                 "acceptable.")


def stacked(width, height):
    """Whether a viewport of width x height CSS px gets the stacked layout (as TRIAL_CSS's media query)."""
    return width <= TALL_WIDTH and height >= width


def image_px(width, height, references):
    """The width in CSS px that each image of the pair gets (at most; square images) in a viewport of
    width x height CSS px, with or without the references column."""
    if stacked(width, height):
        return min(width - PAGE_PAD - (TALL_REFS + GAP if references else 0), (height - TALL_CHROME) / 2)
    columns, gaps = (2 + WIDE_REFS, 2) if references else (2, 1)
    return min((width - PAGE_PAD - GAP * gaps) / columns, height - WIDE_CHROME)


def instruction(choice):
    """An attention check's question: which button to press, by its label (the same in every layout)."""
    return f"Attention check: whatever the pictures, click the {CHOICE_LABELS[choice]} button."


def ahead_html(urls):
    """What the trial field holds while the instructions are read: the addresses of the first trials' pictures
    (demo.study_vote.StudyVotes.ahead), which TRIAL_JS fetches as it fetches a trial's `next`."""
    return f'<div class="ahead" data-next="{html.escape(" ".join(urls))}" hidden></div>'


def trial_html(view):
    """The HTML of the trial `view` (see demo.study_vote: trial, progress, question, practice, left, right,
    width, height, content and style (None without references), next, notice). Buttons start disabled:
    TRIAL_JS enables them."""
    e = html.escape

    def side(name):
        return (f'<div class="side" data-area="{name}"><img src="{e(view[name])}" width="{view["width"]}" '
                f'height="{view["height"]}" alt="" draggable="false" data-side="{name}">'
                f'<button type="button" class="choice main" data-choice="{name}" disabled>'
                f'<span class="wide">{CHOICE_LABELS[name]}</span><span class="tall">{STACKED_LABELS[name]}</span></button></div>')

    def reference(kind, label):
        url, width, height = view[kind]
        return (f'<figure><img class="reference" src="{e(url)}" width="{width}" height="{height}" alt="{label}" '
                f'draggable="false" data-reference="{kind}"><figcaption>{label}</figcaption></figure>')

    references = (f'<div class="refs" data-area="refs">{reference("content", "Photo")}{reference("style", "Painting")}</div>'
                  if view["content"] else "")
    others = "".join(f'<button type="button" class="choice" data-choice="{c}" disabled>{CHOICE_LABELS[c]}</button>'
                     for c in ("tie", "both_bad"))
    notice = f'<p class="notice" role="alert"{"" if view["notice"] else " hidden"}>{e(view["notice"])}</p>'
    hint = f'<p class="hint">{PRACTICE_HINT}</p>' if view["practice"] else ""
    return (f'<div class="trial" data-trial="{e(view["trial"])}" data-next="{e(" ".join(view["next"]))}">'
            f'<div class="progress"><progress value="{view["number"] - 1}" max="{view["total"]}"></progress>'
            f'<span>{e(view["progress"])}</span><span class="status">Loading the pictures&hellip;</span></div>'
            f'{hint}<p class="question">{e(view["question"])}</p>{notice}'
            f'<div class="pair{" with-refs" if references else ""}">{references}{side("left")}{side("right")}</div>'
            f'<div class="others">{others}</div>'
            '<p class="keys">Keys: <kbd>&larr;</kbd> left is better, <kbd>&rarr;</kbd> right is better, '
            '<kbd>&darr;</kbd> tie</p></div>')


TRIAL_CSS = """
.trial { margin: 0 auto; }
.progress { display: flex; align-items: center; gap: 0.6rem; font-size: 0.95rem; min-height: 1.6rem; }
.progress progress { flex: 0 1 12rem; min-width: 4rem; }
.progress span { white-space: nowrap; }
.status { color: var(--body-text-color-subdued, #666); visibility: hidden; }
&[data-state=loading] .status { visibility: visible; }
.hint { margin: 0.2rem 0; padding: 0.3rem 0.6rem; border-radius: 6px; background: #eef3fb; font-size: 0.85rem; }
.hint kbd, .keys kbd { border: 1px solid #bbb; border-radius: 4px; padding: 0 0.3rem; font-family: inherit; }
.question { margin: 0.2rem 0 0; font-weight: 600; font-size: 1.05rem; line-height: 1.3; text-align: center; }
.notice { margin: 0.3rem 0; padding: 0.4rem 0.6rem; border-radius: 6px; background: #fff4e5; color: #7a4100; }
.pair { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); grid-template-areas: "left right";
        gap: 0.5rem @GAP@px; margin-top: 0.4rem; align-items: start; }
.pair.with-refs { grid-template-columns: minmax(0, @WIDE_REFS@fr) minmax(0, 1fr) minmax(0, 1fr);
                  grid-template-areas: "refs left right"; }
[data-area=left] { grid-area: left; }
[data-area=right] { grid-area: right; }
[data-area=refs] { grid-area: refs; }
.side { display: flex; flex-direction: column; align-items: center; gap: 0.5rem; min-width: 0; }
.side img { display: block; width: 100%; height: auto; max-height: calc(100dvh - @WIDE_CHROME@px); object-fit: contain;
            visibility: hidden; }
&[data-state=shown] .side img, &[data-state=ready] .side img, &[data-state=sent] .side img { visibility: visible; }
.refs { display: flex; flex-direction: column; gap: 0.4rem; min-width: 0; }
.refs figure { margin: 0; display: flex; flex-direction: column; align-items: center; gap: 0.1rem; }
.refs img { display: block; width: 100%; height: auto; max-height: calc((100dvh - @WIDE_CHROME@px) / 2 - 1.2rem);
            object-fit: contain; }
.refs figcaption { font-size: 0.8rem; color: var(--body-text-color-subdued, #666); }
.choice { font: inherit; font-weight: 600; font-size: 1rem; padding: 0.55rem 1.2rem; min-width: 9rem;
          border-radius: var(--button-large-radius, 8px); cursor: pointer; transition: none;
          border: 1px solid var(--button-secondary-border-color, #d0d0d5);
          background: var(--button-secondary-background-fill, #f4f4f5);
          color: var(--button-secondary-text-color, #27272a); }
.choice.main { background: var(--button-primary-background-fill, #f97316);
               border-color: var(--button-primary-border-color, #f97316);
               color: var(--button-primary-text-color, #fff); }
.choice:disabled { opacity: 0.45; cursor: default; }
.choice:focus { outline: none; }
.choice:focus-visible { outline: 2px solid var(--color-accent, #f97316); outline-offset: 2px; }
.others { display: flex; justify-content: center; gap: 1rem; margin-top: 0.8rem; }
.keys { text-align: center; margin: 0.6rem 0 0; font-size: 0.85rem; color: var(--body-text-color-subdued, #666); }
.tall { display: none; }
.feedback textarea { width: 100%; min-height: 5rem; font: inherit; }
.feedback button { margin-top: 0.4rem; }
@media (orientation: portrait) and (max-width: @TALL_WIDTH@px) {
  .pair { grid-template-columns: minmax(0, 1fr); grid-template-areas: "left" "right"; gap: 0.3rem; }
  .pair.with-refs { grid-template-columns: minmax(0, 1fr) @TALL_REFS@px; grid-template-areas: "left refs" "right refs";
                    column-gap: @GAP@px; }
  .side { gap: 0.3rem; }
  .side img { max-height: calc((100dvh - @TALL_CHROME@px) / 2); }
  .refs img { max-height: none; }
  .question { font-size: 1rem; }
  .choice { padding: 0.45rem 0.8rem; min-width: 8rem; }
  .others { margin-top: 0.4rem; }
  .wide, .keys { display: none; }
  .tall { display: inline; }
}
"""
for name, value in {"GAP": GAP, "WIDE_REFS": WIDE_REFS, "WIDE_CHROME": WIDE_CHROME, "TALL_WIDTH": TALL_WIDTH,
                    "TALL_REFS": TALL_REFS, "TALL_CHROME": TALL_CHROME}.items():
    TRIAL_CSS = TRIAL_CSS.replace(f"@{name}@", str(value))

TRIAL_JS = f"const VOTE_URL = {json.dumps(ROUTE)}, FEEDBACK_URL = {json.dumps(FEEDBACK_ROUTE)};" + """
const KEYS = {ArrowLeft: 'left', ArrowRight: 'right', ArrowDown: 'tie'};
let cur = {token: null};
let firstOnPage = true;  // no trial shown on this page yet: the first one also waits for the next trial's pair
const root = () => element.querySelector('.trial');
const loaded = i => i.complete && i.naturalWidth > 0;
const addresses = list => (list || '').split(' ').filter(Boolean);  // a data-next value, in order

function apply() {  // only what differs: a re-render of the template runs sync (and so this) again
  const state = !cur.token ? '' : cur.sent ? 'sent' : cur.ready ? 'ready' : cur.shown ? 'shown' : 'loading';
  if (element.dataset.state !== state) element.dataset.state = state;
  for (const b of element.querySelectorAll('button[data-choice]')) {
    if (b.disabled !== (state !== 'ready')) b.disabled = state !== 'ready';
  }
}

function check() {
  const r = root();
  noteLoading(r);
  if (!r || cur.shown) return;
  const imgs = [...r.querySelectorAll('.side img')];
  if (imgs.length !== 2 || !imgs.every(loaded)) return;
  if (!cur.ahead) {
    cur.ahead = true;
    fetchAhead(r.dataset.next);
  }
  if (!cur.hold.every(settledAhead)) return;
  const token = cur.token;
  cur.shown = true;
  apply();
  requestAnimationFrame(() => requestAnimationFrame(() => {  // both images painted
    if (cur.token !== token) return;
    cur.ready = true;
    cur.t0 = performance.now();
    apply();
  }));
}

function sync() {
  const r = root();
  if (!r) {
    cur = {token: null};
    apply();
    const first = element.querySelector('.ahead');
    if (first) fetchAhead(first.dataset.next);
    return;
  }
  if (r.dataset.trial !== cur.token) {
    // data-next starts with the next trial's left and right picture (demo.study_images.preload)
    const hold = firstOnPage ? addresses(r.dataset.next).slice(0, 2) : [];
    cur = {token: r.dataset.trial, shown: false, ready: false, sent: false, ahead: false, hold: hold};
    firstOnPage = false;
    if (document.activeElement && element.contains(document.activeElement)) document.activeElement.blur();
    window.scrollTo(0, 0);
  }
  apply();
  check();
}

// ---- pictures ahead: the next trials' pictures (data-next, in the order they are needed), fetched
// AHEAD_PARALLEL at a time once this trial's pair has loaded, so that they never slow it down ----
const AHEAD_PARALLEL = 2;
const ahead = {queue: [], loading: 0, kept: new Map()};  // kept: url -> its Image, for the latest list

function fetchAhead(list) {
  const urls = addresses(list);
  for (const url of [...ahead.kept.keys()]) if (!urls.includes(url)) ahead.kept.delete(url);
  ahead.queue = urls.filter(url => !ahead.kept.has(url));
  pumpAhead();
}

function pumpAhead() {
  while (ahead.loading < AHEAD_PARALLEL && ahead.queue.length) {
    const url = ahead.queue.shift(), im = new Image();
    ahead.kept.set(url, im);
    ahead.loading++;
    im.onload = () => { ahead.loading--; pumpAhead(); check(); };
    im.onerror = () => { ahead.loading--; ahead.kept.delete(url); pumpAhead(); check(); };
    im.src = url;
  }
}

function settledAhead(url) {  // fetched ahead, or failed (the trial that shows it loads it again)
  const im = ahead.kept.get(url);
  return !ahead.queue.includes(url) && (!im || im.complete);
}

function noteLoading(r) {  // the status line while a trial's pictures come in: "Loading the pictures... 1 of 4"
  const status = r && r.querySelector('.status');
  if (!status) return;
  const imgs = [...r.querySelectorAll('img')], hold = r.dataset.trial === cur.token ? cur.hold : [];
  const done = imgs.filter(loaded).length + (cur.ahead ? hold.filter(settledAhead).length : 0);
  const text = `Loading the pictures\u2026 ${done} of ${imgs.length + hold.length}`;
  if (status.textContent !== text) status.textContent = text;
}

function refused(message) {  // the same trial may be answered again
  const notice = element.querySelector('.notice');
  if (notice) { notice.textContent = message; notice.hidden = false; }
  cur.sent = false;
  apply();
}

async function vote(choice) {
  if (!cur.ready || cur.sent) return;
  cur.sent = true;
  apply();
  const token = cur.token;
  const body = {ticket: props.value.ticket, choice: choice, client_ms: Math.max(0, Math.round(performance.now() - cur.t0))};
  // an answer that is not JSON keeps only its status; no answer at all (no connection) gives {}
  const reply = await fetch(VOTE_URL, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                       body: JSON.stringify(body), cache: 'no-store'})
    .then(response => response.json().then(answer => answer, () => ({status: response.status})), () => ({}));
  if (cur.token !== token) return;
  if (reply.trial) props.value = reply.trial;
  else if (reply.done) props.value = {html: reply.done};
  else if (reply.error) refused(reply.error);
  else refused(reply.status ? `The server could not take your answer (error ${reply.status}). Wait a moment, then choose again.`
                            : 'Your answer did not reach the server. Check your connection, then choose again.');
}

async function sendFeedback(form) {  // the completion screen's comment: sent again as often as asked
  const button = form.querySelector('button'), said = form.querySelector('.sent');
  button.disabled = true;
  const reply = await fetch(FEEDBACK_URL, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                           body: JSON.stringify({ticket: form.dataset.ticket,
                                                                 text: form.querySelector('textarea').value}),
                                           cache: 'no-store'})
    .then(response => response.json().then(answer => answer, () => ({})), () => ({}));
  said.textContent = reply.ok || reply.error
    || 'Your comment did not reach the server: check your connection, then send it again.';
  said.hidden = false;
  button.disabled = false;
}

element.addEventListener('load', check, true);
document.addEventListener('submit', e => {
  const form = e.target.closest && e.target.closest('form.feedback');
  if (!form || !element.isConnected) return;
  e.preventDefault();
  sendFeedback(form);
});
element.addEventListener('click', e => {
  const b = e.target.closest('button[data-choice]');
  if (b && element.contains(b)) vote(b.dataset.choice);
});
document.addEventListener('keydown', e => {
  if (!element.isConnected || e.altKey || e.ctrlKey || e.metaKey || !(e.key in KEYS) || !root()) return;
  e.preventDefault();
  vote(KEYS[e.key]);
});
// the template is re-rendered (its attributes reset) on every change of the value, ours included
new MutationObserver(sync).observe(element, {subtree: true, childList: true, attributes: true,
                                             attributeFilter: ['disabled', 'data-trial', 'src']});
sync();
"""
