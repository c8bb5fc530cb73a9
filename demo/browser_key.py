"""A random key per browser, in an HttpOnly cookie, that binds a private file (the admin's vote export)
to the browser it was made for: the file's folder is named after the key's hash (`private_folder`),
and Gradio's file route serves it to a request carrying that key only.

The cookie is set with every page and with /config (a page, or an API client such as gradio_client,
loads one of them first), when the request has none. A file URL that leaks (a log, a shared screen,
history) is then of no use to anyone else: another browser, another client, or the same address
without the cookie is refused. The page's scripts cannot read the key (HttpOnly), and other sites
cannot send it (SameSite=Strict)."""
import hashlib
import posixpath
import re
import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse

from .no_fetch import FILE_ROUTES
from .refusals import log_refusal

COOKIE = "arena_browser"
KEY = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
PRIVATE = "private-"  # the folder of a bound file: private-<sha256 of the key>-<random>
OTHER_BROWSER = ("This file belongs to the browser that asked for it: show the results again there (or in this "
                 "browser, with the password) to download it.")


def browser_key(cookies):
    """The browser's key from a {name: value} of its cookies, or None."""
    value = cookies.get(COOKIE)
    return value if isinstance(value, str) and KEY.fullmatch(value) else None


def digest(key):
    return hashlib.sha256(key.encode()).hexdigest()


def private_folder(key):
    """A new folder name that only the browser with `key` may read files from."""
    return f"{PRIVATE}{digest(key)}-{secrets.token_hex(8)}"


def owners(path):
    """The key digests named by the private folders on the file route's `path` (none for another route)."""
    route = next((route for route in FILE_ROUTES if path.startswith(route)), None)
    if route is None:
        return []
    parts = posixpath.normpath(path[len(route):]).split("/")
    return [part[len(PRIVATE):len(PRIVATE) + 64] for part in parts if part.startswith(PRIVATE)]


class BrowserKey:
    """ASGI middleware: sets the key cookie on pages and /config that came without one; refuses (403) a
    file under a private folder to a request without that folder's key."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        key = browser_key(Request(scope).cookies)
        path = scope["path"]
        if any(key is None or owner != digest(key) for owner in owners(path)):
            log_refusal(f"{scope['method']} {FILE_ROUTES[0]} (403)", OTHER_BROWSER)
            return await JSONResponse({"detail": OTHER_BROWSER}, 403)(scope, receive, send)
        if key is not None or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        cookie = f"{COOKIE}={secrets.token_urlsafe(32)}; Path=/; HttpOnly; SameSite=Strict".encode()

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                page = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                if page or path.rstrip("/") == "/config":
                    message = {**message, "headers": [*headers, (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)
