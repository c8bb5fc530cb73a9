"""Values the server signs so that it can take them back from a browser unaltered: HMAC-SHA256 (128 bits)
under a key derived from the database's salt, so every app worker on the database signs alike and the
signatures survive a restart."""
import base64
import hashlib
import hmac


def b64(data):
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    """The bytes of b64's text."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """`sign(text)` -> "text.signature"; `verify(signed)` -> text, or None for anything this store's
    server did not sign for `purpose` (a different purpose never verifies: keys differ)."""

    def __init__(self, store, purpose):
        self._key = bytes.fromhex(store.hash_id(purpose, "key"))

    def _signature(self, text):
        return b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest()[:16])

    def sign(self, text):
        return f"{text}.{self._signature(text)}"

    def verify(self, signed, max_length=2048):
        """The text of a value signed here (at most max_length characters in all), else None."""
        if not isinstance(signed, str) or len(signed) > max_length or "." not in signed:
            return None
        text, signature = signed.rsplit(".", 1)
        return text if hmac.compare_digest(signature.encode(), self._signature(text).encode()) else None
