"""What keeps one client from steering or stopping the app: HTTP headers and request-size limits on
every route, a queue in which stylisations wait apart from everything else (the study never waits
behind them) with a cap per client, budgets for uploads (per address and in all), the admin
password's lockout, and one log line per refused request.

Client addresses are the connection's peer, or what X-Forwarded-For says when the peer is one of the
operator's trusted proxies (uvicorn's ProxyHeadersMiddleware, given --trusted-proxies). They are never
logged, and the lockout keeps them as keyed hashes only."""
import hashlib
import ipaddress
import secrets
import threading
import time

import gradio as gr
from gradio import queueing, route_utils
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from .budget import Hold, over_budget
from .no_fetch import NO_FETCH, remote_files
from .refusals import log_refusal

HEADERS = (  # on every response: no framing (clickjacking), no content sniffing, no referrer sent out (the
    # Content-Security-Policy: demo.csp)
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
BODY_LIMIT = 256 * 1024  # bytes of any request other than an upload: the app's own requests take a few KB
MULTIPART_SLACK = 64 * 1024  # an upload's boundaries and part headers, on top of its files
CACHE_CLEANUP = (600, 3600)  # Gradio deletes its uploads and served files every 10 min once an hour old
BUDGET_WINDOW_S = sum(CACHE_CLEANUP)  # write budgets count the last 70 min: older uploads are deleted by then
# the keywords of an event the pages call that is no part of the public API: named, callable by the page (through
# the queue unless it says queue=False), and left out of /gradio_api/info
PAGE_EVENT = {"api_visibility": "undocumented"}
OTHER_EVENTS_WAITING = 1024  # events of every other kind waiting at once (each takes milliseconds)
# how often Gradio's queue looks for new events when it has none, and for progress to send, in seconds (its
# own 0.001 and 0.01 kept an idle server at 9% of a core, most of the CPU per vote of a study in progress);
# 20 ms of waiting falls on the demo tabs' events only: the study's events and votes skip the queue
POLL_S = 0.02
PROGRESS_POLL_S = 0.05


def trusted_proxies(value):
    """The comma-separated addresses or networks of the operator's reverse proxies, checked, as
    uvicorn's FORWARDED_ALLOW_IPS wants them ('' trusts no one: the peer address is used)."""
    items = [item.strip() for item in (value or "").split(",") if item.strip()]
    for item in items:
        ipaddress.ip_network(item, strict=False)  # ValueError names the bad item
    return ",".join(items)


class HttpGuard:
    """ASGI middleware: security headers on every response; a request body must state its length
    (no chunked bodies) and stay under the limit for its route. An upload reserves its length on the
    server's upload budget `uploads` (a WriteBudget: what Gradio's cache holds) and on its address's
    budget in `clients` (a ClientBudgets); both are charged the body bytes actually read, once the
    request ends, so an upload whose body never comes is charged nothing."""

    def __init__(self, app, upload_limit, uploads, clients, upload_path="/gradio_api/upload"):
        self.app = app
        self.upload_limit = upload_limit
        self.uploads = uploads
        self.clients = clients
        self.upload_path = upload_path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((name, value) for name, value in HEADERS if name not in present)]
            await send(message)

        refused = self.refusal(scope)
        hold = None
        if not refused and self.is_upload(scope):
            hold, refused = self.reserve(scope)
        if refused:
            status, reason = refused
            log_refusal(f"{scope['method']} {scope['path']} ({status})", reason)
            return await JSONResponse({"detail": reason}, status)(scope, receive, send_with_headers)
        if hold is None:
            return await self.app(scope, receive, send_with_headers)

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                hold.add(len(message.get("body", b"")))
            return message

        with hold:
            try:
                await self.app(scope, counted_receive, send_with_headers)
            except ClientDisconnect:  # the body stopped coming: nobody is left to answer (and no traceback)
                pass

    def is_upload(self, scope):
        return scope["path"].rstrip("/") == self.upload_path

    def refusal(self, scope):
        """(status, message) for a request that must not reach the app, else None."""
        headers = dict(scope["headers"])
        if b"transfer-encoding" in headers:
            return 411, "Send the request with a Content-Length header (chunked bodies are not accepted)."
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            return 400, "The Content-Length header is not a number."
        upload = self.is_upload(scope)
        limit = self.upload_limit + MULTIPART_SLACK if upload else BODY_LIMIT
        if length > limit:
            what = f"{self.upload_limit // 2**20} MB of files" if upload else f"{BODY_LIMIT // 1024} KB"
            return 413, f"The request is too large: one request may carry at most {what}."
        return None

    def reserve(self, scope):
        """(a Hold of the upload's Content-Length on its address's budget and the upload budget, None),
        or (None, (507, message)) when one of them lacks room (nothing reserved)."""
        length = int(dict(scope["headers"]).get(b"content-length", b"0"))
        client = self.clients.of(scope["client"][0] if scope.get("client") else "")
        taken = Hold.take(length, client, self.uploads)
        if taken is client:
            return None, (507, f"Your upload was refused: {over_budget(client)}.")
        if taken is self.uploads:
            minutes = max(1, round(self.uploads.wait_s() / 60))
            return None, (507, f"The server has taken all the uploads it can for now: try again in about {minutes} min.")
        return taken, None


class Admission:
    """How many stylisations (events of the concurrency group `group`) may be queued or running: `total`
    in all and `per_client` from one address. Other events queue in their own groups and never count here."""

    def __init__(self, group, total, per_client):
        self.group, self.total, self.per_client = group, total, per_client

    def refusal(self, in_all, from_client):
        """The message if one more may not join, given how many there are in all and from this client."""
        if from_client >= self.per_client:
            return (f"You already have {from_client} stylisations queued or running: wait for them to "
                    "finish, then try again.")
        if in_all >= self.total:
            return "The server has too many stylisations queued: try again in a minute."
        return None


def peer(request):
    """The network address of a request's client (a gr.Request or a Starlette Request): the connection's peer,
    "" when the server does not know it (no request, or a transport without one); the limits charge it."""
    return request.client.host if request is not None and request.client else ""


class AdmissionQueue(queueing.Queue):
    """Gradio's queue with no global size: the stylisation group is capped by `admission` (in all and
    per client), the other events together by OTHER_EVENTS_WAITING, so stylisations cannot crowd out
    the study's votes, its new participants or the admin page. A refused event is answered as Gradio
    answers its own refusals: (False, message, "error" or "queue_full"). Gradio's per-event monitoring
    summary is not computed."""

    def __init__(self, admission, **kwargs):
        super().__init__(**kwargs)
        self.admission = admission
        self._joining = []  # clients of stylisations being admitted (push awaits before queueing them)

    def compute_analytics_summary(self, records):
        """Kept as it is. Gradio rebuilds a pandas summary of the last 10,000 events after every event
        for its monitoring page (off here): the largest part of a study vote's server time, and it
        grows with the events served."""
        return self.cached_event_analytics_summary

    async def push(self, body, request, username):
        fn = route_utils.get_fn(self.blocks, None, body) if body.fn_index is not None else None
        if fn is None or fn.concurrency_id != self.admission.group:
            others = sum(len(q.queue) for cid, q in self.event_queue_per_concurrency_id.items()
                         if cid != self.admission.group)
            if others >= OTHER_EVENTS_WAITING:
                log_refusal("queue/join", "too many events waiting")
                return False, "The server is too busy: try again in a minute.", "queue_full"
            return await super().push(body, request, username)
        group = self.event_queue_per_concurrency_id.get(fn.concurrency_id)
        running = [event for events in self.active_jobs if events for event in events]
        clients = [peer(event.request) for event in [*(group.queue if group else []), *running]
                   if event.concurrency_id == fn.concurrency_id] + self._joining
        client = peer(request)
        refused = self.admission.refusal(len(clients), clients.count(client))
        if refused:  # 400 with the message, which the page shows (a 503 shows only "busy")
            log_refusal(f"queue/join {fn.api_name or fn.name}", refused)
            return False, refused, "error"
        self._joining.append(client)
        try:
            return await super().push(body, request, username)
        finally:
            self._joining.remove(client)


class UnknownEvent(HTTPException, KeyError):
    """An event number the page does not have: the client's error (400 with what to do), not a server
    error with a traceback in the log. A KeyError too, for Gradio's own lookups that expect one."""

    def __init__(self, number):
        super().__init__(400, f"This page has no event number {number!r}: reload the page.")


class Events(dict):
    """A page's table of events (Gradio's BlocksConfig.fns, by number), refusing numbers it lacks with
    UnknownEvent: queue/join and run/predict look a client's fn_index up here."""

    def __missing__(self, number):
        log_refusal("event", f"no event number {str(number)[:20]!r}")
        raise UnknownEvent(number)


class Blocks(gr.Blocks):
    """gr.Blocks whose refusals (gr.Error: bad input, wrong password, a limit reached) log one line
    instead of Gradio's full traceback (any other exception is a bug and keeps its traceback), whose
    queued events are reached through the queue only, which fetches no file an event's input names by
    its address (demo.no_fetch), and which answers an event number it lacks with 400 (Events)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_config.fns = Events(self.default_config.fns)

    async def process_api(self, block_fn, *args, **kwargs):
        try:
            return await super().process_api(block_fn, *args, **kwargs)
        except gr.Error as exc:
            exc.print_exception = False
            fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
            log_refusal(fn.api_name or fn.name, exc.message)
            raise

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        if any(remote_files(value) for value in inputs):  # Gradio would download it while preprocessing
            raise gr.Error(NO_FETCH)
        return await super().preprocess_data(block_fn, inputs, state, explicit_call)

    def check_named(self):
        """ValueError unless every event with a server function is named: nothing a client can call is
        reached by its number only (PAGE_EVENT keeps a page's own events out of the public API)."""
        unnamed = [fn.name for fn in self.fns.values() if fn.fn is not None and fn.api_visibility == "private"]
        if unnamed:
            raise ValueError(f"events without an api_name: {', '.join(unnamed)}")
        return self

    def queue_with(self, admission):
        """Enable the queue as AdmissionQueue (Blocks.queue with no size limit, its queue replaced); a queued
        event is reached through it only (api_open=False: `run/predict` refuses it, so no client skips
        the admission and the concurrency limits)."""
        self.queue(max_size=None, api_open=False)
        q = self._queue
        self._queue = AdmissionQueue(admission, live_updates=q.live_updates, concurrency_count=q.max_thread_count,
                                     update_intervals=q.update_intervals, max_size=None, blocks=self,
                                     default_concurrency_limit=q.default_concurrency_limit)
        self._queue.sleep_when_free, self._queue.progress_update_sleep_when_free = POLL_S, PROGRESS_POLL_S
        return self


class Lockout:
    """Wrong admin passwords per address: after `attempts` in a row, every password from that address
    is refused for `lock_s` seconds. Addresses are held as keyed hashes (a random key per process)."""

    def __init__(self, attempts=5, lock_s=900, clock=time.monotonic):
        self.attempts, self.lock_s, self.clock = attempts, lock_s, clock
        self._key = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._state = {}  # address hash -> (wrong passwords in a row, locked until)

    def _hash(self, address):
        return hashlib.blake2b(str(address).encode(), key=self._key, digest_size=16).digest()

    def wait_s(self, address):
        """Seconds this address must still wait before trying a password (0: it may try now)."""
        with self._lock:
            _, until = self._state.get(self._hash(address), (0, 0))
            return max(0.0, until - self.clock())

    def failed(self, address):
        now = self.clock()
        with self._lock:
            if len(self._state) > 10_000:  # forget addresses that are not locked (keeps memory bounded)
                self._state = {k: v for k, v in self._state.items() if v[1] > now}
            key = self._hash(address)
            wrong, _ = self._state.get(key, (0, 0))
            wrong += 1
            self._state[key] = (0, now + self.lock_s) if wrong >= self.attempts else (wrong, 0)

    def succeeded(self, address):
        with self._lock:
            self._state.pop(self._hash(address), None)
