"""Rate limits on the study, kept in memory only (never in the database).

A participant may not answer faster than one trial per `interval_ms` (no human does), one network
address may cast at most `per_minute` votes in any 60 seconds, and enrol at most `per_hour`
participants in one study in any hour. The study page records the first ARRIVALS_PER_HOUR openings
of its link (and as many declines) from one address in one study in any hour one by one, and only
counts the rest (Store.count_arrival), so that a flood cannot fill the database. Addresses are held
as keyed hashes (a random key per process), so not even the server's memory keeps a raw address."""
import hashlib
import secrets
import threading
import time
from collections import deque

TOO_FAST = "You answered too quickly to have looked at both pictures: look at them, then choose again."
TOO_MANY = "Too many answers came from your network in the last minute: wait a minute, then choose again."
TOO_MANY_ENROLMENTS = ("Too many people have started this study from your network in the last hour, so it cannot "
                       "start here now. Try again in an hour, or from another network.")
ARRIVALS_PER_HOUR = 30


class VoteLimits:
    """interval_ms: least time between two votes of one participant (0: no limit);
    per_minute: most votes from one address in any window_s (a minute; 0: no limit)."""

    def __init__(self, interval_ms, per_minute, window_s=60.0):
        self.interval_s = interval_ms / 1000
        self.per_minute = per_minute
        self.window_s = window_s
        self._key = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._last = {}  # participant token -> time of their last vote let through
        self._recent = {}  # address hash -> times of the votes let through in the last window
        self._swept = time.monotonic()

    def check(self, participant, address):
        """None if the vote may go ahead (it is then counted), else the message to show."""
        now = time.monotonic()
        key = hashlib.blake2b(str(address).encode(), key=self._key, digest_size=16).digest()
        with self._lock:
            if now - self._swept > self.window_s:
                self._sweep(now)
            last = self._last.get(participant)
            if self.interval_s and last is not None and now - last < self.interval_s:
                return TOO_FAST
            recent = self._recent.setdefault(key, deque())
            while recent and now - recent[0] > self.window_s:
                recent.popleft()
            if self.per_minute and len(recent) >= self.per_minute:
                return TOO_MANY
            self._last[participant] = now
            recent.append(now)
            return None

    def _sweep(self, now):
        """Forget participants and addresses with no vote in the last window (keeps memory bounded)."""
        self._last = {p: t for p, t in self._last.items() if now - t <= max(self.window_s, self.interval_s)}
        self._recent = {k: q for k, q in self._recent.items() if q and now - q[-1] <= self.window_s}
        self._swept = now


class HourlyLimit:
    """per_hour: most events of one address in one scope (a study; a study and event) in any window_s
    (an hour; 0: no limit)."""

    def __init__(self, per_hour, window_s=3600.0):
        self.per_hour = per_hour
        self.window_s = window_s
        self._key = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._recent = {}  # hash of (scope, address) -> times of the events let through in the window
        self._swept = time.monotonic()

    def allow(self, scope, address):
        """True if one more event of this address in this scope is within the limit (it is then counted)."""
        if not self.per_hour:
            return True
        now = time.monotonic()
        key = hashlib.blake2b(f"{scope}\0{address}".encode(), key=self._key, digest_size=16).digest()
        with self._lock:
            if now - self._swept > min(self.window_s, 60.0):  # forget idle addresses: memory stays bounded
                self._recent = {k: q for k, q in self._recent.items() if q and now - q[-1] <= self.window_s}
                self._swept = now
            recent = self._recent.setdefault(key, deque())
            while recent and now - recent[0] > self.window_s:
                recent.popleft()
            if len(recent) >= self.per_hour:
                return False
            recent.append(now)
            return True


class EnrolLimits(HourlyLimit):
    """per_hour: most participants one address may enrol in one study in any window_s (an hour; 0: no limit)."""

    def check(self, study, address):
        """None if the enrolment may go ahead (it is then counted), else the message to show."""
        return None if self.allow(study, address) else TOO_MANY_ENROLMENTS
