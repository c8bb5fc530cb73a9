"""One trial of the study as a single HTML block: both images, the trial's token and the choice buttons,
which the browser swaps together (the study page's gr.HTML renders trial_html and runs TRIAL_JS).

In the browser a trial is `loading` (its images hidden, buttons disabled) until both images have loaded;
then `shown`, and `ready` one painted frame later: only then do the buttons (and the keys: left and right
arrows, down for tie) vote, and the response time is counted from that moment. The first vote turns the
trial `sent` and posts it to the study's vote route (demo.study_vote): nothing more is sent for it,
double clicks included, until the reply brings the next trial or the completion code. A refused vote
(a rate limit) or one that did not reach the server (no connection, a server restarting) shows why
above the pictures and lets the same trial be answered again. While a trial's pictures load, its
status line counts them ("Loading the pictures... 1 of 2"); once its pair is on screen, the pictures
of the next trials (the view's `next`, demo.study_images.preload) are fetched two at a time in the
order they are needed. Every new trial starts scrolled to the top.
Wide screens show the images side by side; a phone held upright shows them top and bottom, with the
buttons named to match."""
import html
import json

from .choices import CHOICE_LABELS, STACKED_LABELS

ROUTE = "study-vote"  # where TRIAL_JS posts a vote: demo.study_vote serves it


def trial_html(view):
    """The HTML of the trial `view` (see demo.study_page: trial, number, total, left, right, width,
    height, next, notice). Buttons start disabled: TRIAL_JS enables them."""
    e = html.escape

    def side(name):
        return (f'<div class="side"><img src="{e(view[name])}" width="{view["width"]}" height="{view["height"]}" '
                f'alt="" draggable="false" data-side="{name}">'
                f'<button type="button" class="choice main" data-choice="{name}" disabled>'
                f'<span class="wide">{CHOICE_LABELS[name]}</span><span class="tall">{STACKED_LABELS[name]}</span></button></div>')

    others = "".join(f'<button type="button" class="choice" data-choice="{c}" disabled>{CHOICE_LABELS[c]}</button>'
                     for c in ("tie", "both_bad"))
    notice = f'<p class="notice" role="alert"{"" if view["notice"] else " hidden"}>{e(view["notice"])}</p>'
    return (f'<div class="trial" data-trial="{e(view["trial"])}" data-next="{e(" ".join(view["next"]))}">'
            f'<div class="progress"><progress value="{view["number"] - 1}" max="{view["total"]}"></progress>'
            f'<span>{e(view["progress"])}</span><span class="status">Loading the pictures&hellip;</span></div>'
            f'{notice}<div class="pair">{side("left")}{side("right")}</div>'
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
.notice { margin: 0.3rem 0; padding: 0.4rem 0.6rem; border-radius: 6px; background: #fff4e5; color: #7a4100; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin-top: 0.4rem; }
.side { display: flex; flex-direction: column; align-items: center; gap: 0.5rem; min-width: 0; }
.side img { display: block; width: 100%; height: auto; max-height: calc(100dvh - 13rem); object-fit: contain;
            visibility: hidden; }
&[data-state=shown] .side img, &[data-state=ready] .side img, &[data-state=sent] .side img { visibility: visible; }
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
.keys kbd { border: 1px solid #bbb; border-radius: 4px; padding: 0 0.3rem; font-family: inherit; }
.tall { display: none; }
@media (orientation: portrait) and (max-width: 640px) {
  .pair { grid-template-columns: 1fr; gap: 0.5rem; }
  .side { gap: 0.3rem; }
  .side img { max-height: calc((100dvh - 15rem) / 2); }
  .choice { padding: 0.45rem 0.8rem; }
  .others { margin-top: 0.5rem; }
  .wide, .keys { display: none; }
  .tall { display: inline; }
}
"""

TRIAL_JS = f"const VOTE_URL = {json.dumps(ROUTE)};" + """
const KEYS = {ArrowLeft: 'left', ArrowRight: 'right', ArrowDown: 'tie'};
let cur = {token: null};
const root = () => element.querySelector('.trial');

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
  const imgs = [...r.querySelectorAll('.pair img')];
  if (imgs.length !== 2 || !imgs.every(i => i.complete && i.naturalWidth > 0)) return;
  const token = cur.token;
  cur.shown = true;
  apply();
  fetchAhead(r.dataset.next || '');
  requestAnimationFrame(() => requestAnimationFrame(() => {  // both images painted
    if (cur.token !== token) return;
    cur.ready = true;
    cur.t0 = performance.now();
    apply();
  }));
}

function sync() {
  const r = root();
  if (!r) { cur = {token: null}; apply(); return; }
  if (r.dataset.trial !== cur.token) {
    cur = {token: r.dataset.trial, shown: false, ready: false, sent: false};
    if (document.activeElement && element.contains(document.activeElement)) document.activeElement.blur();
    window.scrollTo(0, 0);
  }
  apply();
  check();
}

// ---- pictures ahead: the next trials' pictures (data-next, in the order they are needed), fetched
// AHEAD_PARALLEL at a time once this trial's pair is on screen, so that they never slow it down ----
const AHEAD_PARALLEL = 2;
const ahead = {queue: [], loading: 0, kept: new Map()};  // kept: url -> its Image, for the latest list

function fetchAhead(list) {
  const urls = list.split(' ').filter(Boolean);
  for (const url of [...ahead.kept.keys()]) if (!urls.includes(url)) ahead.kept.delete(url);
  ahead.queue = urls.filter(url => !ahead.kept.has(url));
  pumpAhead();
}

function pumpAhead() {
  while (ahead.loading < AHEAD_PARALLEL && ahead.queue.length) {
    const url = ahead.queue.shift(), im = new Image();
    ahead.kept.set(url, im);
    ahead.loading++;
    im.onload = () => { ahead.loading--; pumpAhead(); };
    im.onerror = () => { ahead.loading--; ahead.kept.delete(url); pumpAhead(); };
    im.src = url;
  }
}

function noteLoading(r) {  // the status line while a trial's pictures come in: "Loading the pictures... 1 of 2"
  const status = r && r.querySelector('.status');
  if (!status) return;
  const imgs = [...r.querySelectorAll('img')];
  const text = `Loading the pictures\u2026 ${imgs.filter(i => i.complete && i.naturalWidth > 0).length} of ${imgs.length}`;
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

element.addEventListener('load', check, true);
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
