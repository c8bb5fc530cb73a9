"""Pseudonyms of network addresses for the battle votes' sources (study.counting), which no one can link
back to an address, not even with the whole database: an HMAC under a random key that lives in this
process's memory only and is replaced at every UTC midnight (the old one forgotten). An address has one
pseudonym per UTC day and app process; a restart, or another worker behind the same nginx, gives it
another."""
import hashlib
import hmac
import secrets
import threading
from datetime import UTC, datetime


class DailyPseudonyms:
    """`of(address)` -> 32 hex digits, the same for one address all of a UTC day in this process."""

    def __init__(self, today=lambda: datetime.now(UTC).date()):
        self._today = today
        self._lock = threading.Lock()
        self._day, self._key = None, None

    def of(self, address):
        with self._lock:
            day = self._today()
            if day != self._day:
                self._day, self._key = day, secrets.token_bytes(32)
            key = self._key
        return hmac.new(key, str(address).encode(), hashlib.sha256).hexdigest()[:32]
