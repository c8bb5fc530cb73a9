"""What the server may be made to write: byte budgets over a sliding window, and holds that reserve
bytes on them for one request.

A request that will write first reserves an upper bound of what it may write (an upload: its
Content-Length; a stylisation: `png_bound` of each image it may store); what it really wrote (an
upload: the body bytes read) is charged when it ends, and the rest of the reservation is freed. So
concurrent requests cannot pass a limit together, and a request that sends headers only holds its
reservation while its connection is open and is charged nothing. Each network address has its own
budget (`ClientBudgets`), so one address that has spent its budget holds back no other."""
import hashlib
import secrets
import threading
import time
from collections import deque

MERGE_S = 60  # charges this close together are kept as one entry (it keeps the later time): memory per budget is bounded


def png_bound(width, height):
    """Bytes an RGB PNG of width x height px without metadata takes at the most, as Pillow writes it: its
    raw rows (3 bytes a pixel and a filter byte), deflated under zlib's bound for any settings
    (deflateBound's: + 1/8 + 1/64 + 11 bytes; random pixels take 1/700 more), in IDAT chunks of 64 KB
    (12 bytes each), plus the signature, header and end."""
    raw = height * (3 * width + 1)
    deflated = raw + (raw + 7) // 8 + (raw + 63) // 64 + 11
    return deflated + 12 * (deflated // 65536 + 1) + 1024


class WriteBudget:
    """At most `limit` bytes in any `window_s` seconds: those charged in the window plus those reserved
    by requests in progress."""

    def __init__(self, limit, window_s, clock=time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._lock = threading.Lock()
        self._charged = deque()  # [time, bytes], oldest first
        self._total = 0  # bytes in self._charged
        self._reserved = 0

    def _expire(self, now):
        while self._charged and now - self._charged[0][0] > self.window_s:
            self._total -= self._charged.popleft()[1]

    def reserve(self, size):
        """Reserve `size` bytes; False (nothing reserved) if the budget lacks room for them."""
        with self._lock:
            self._expire(self.clock())
            if self._total + self._reserved + size > self.limit:
                return False
            self._reserved += size
            return True

    def settle(self, reserved, used):
        """Free a reservation of `reserved` bytes and charge the `used` bytes now."""
        now = self.clock()
        with self._lock:
            self._reserved -= reserved
            if used:
                if self._charged and now - self._charged[-1][0] < MERGE_S:
                    self._charged[-1][0] = now
                    self._charged[-1][1] += used
                else:
                    self._charged.append([now, used])
                self._total += used

    def wait_s(self):
        """Seconds until the oldest charge leaves the window (0 when nothing is charged)."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            return self.window_s - (now - self._charged[0][0]) if self._charged else 0.0

    def idle(self):
        """True when nothing is charged in the window and nothing is reserved."""
        with self._lock:
            self._expire(self.clock())
            return not self._charged and not self._reserved


class Hold:
    """Bytes reserved on some budgets for one request (none: the server's own writes, charged nowhere).
    `add` counts what the request wrote; `close` (or leaving the `with` block) charges that to every
    budget and frees the reservation, once."""

    def __init__(self, budgets=(), reserved=0):
        self.budgets, self.reserved, self.written = tuple(budgets), reserved, 0
        self._closed = False

    @classmethod
    def take(cls, size, *budgets):
        """A Hold of `size` bytes on every one of `budgets`, or the first budget without room for them
        (then nothing is reserved anywhere)."""
        for i, budget in enumerate(budgets):
            if not budget.reserve(size):
                for taken in budgets[:i]:
                    taken.settle(size, 0)
                return budget
        return cls(budgets, size)

    def add(self, size):
        self.written += size

    def close(self):
        if not self._closed:
            self._closed = True
            for budget in self.budgets:
                budget.settle(self.reserved, self.written)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ClientBudgets:
    """A WriteBudget of `limit` bytes per `window_s` for each network address, held under a keyed hash
    of the address (a random key per process); a budget with nothing charged or reserved that nobody
    asked for in the last SWEEP_S is forgotten (memory stays bounded by the addresses in use)."""

    SWEEP_S = 60

    def __init__(self, limit, window_s, clock=time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._key = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._budgets = {}  # address hash -> [budget, when it was last handed out]
        self._swept = clock()

    def of(self, address):
        """The address's budget."""
        key = hashlib.blake2b(str(address).encode(), key=self._key, digest_size=16).digest()
        with self._lock:
            now = self.clock()
            if now - self._swept > self.SWEEP_S:
                self._budgets = {k: entry for k, entry in self._budgets.items()
                                 if now - entry[1] < self.SWEEP_S or not entry[0].idle()}
                self._swept = now
            entry = self._budgets.get(key)
            if entry is None:
                entry = self._budgets[key] = [WriteBudget(self.limit, self.window_s, self.clock), now]
            entry[1] = now
            return entry[0]


def over_budget(budget):
    """What a client whose own budget lacks room is told."""
    minutes = max(1, round(budget.wait_s() / 60))
    return (f"your network address has had the server write {budget.limit / 2**20:,.0f} MB in the last "
            f"{budget.window_s / 60:.0f} min (uploads, stored images and results), the most one address may: "
            f"try again in about {minutes} min")
