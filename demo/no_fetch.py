"""The server fetches nothing from an address a client names. Gradio would: `/gradio_api/file=<URL>`
streams a URL's content back, `/gradio_api/proxy=<URL>` forwards to a loaded Space, and an event input
whose file `path` is a URL is downloaded before the event runs. Gradio checks that the host resolves to
a public address, but fetches hf.co and huggingface.co wherever they resolve, and asks dns.google about
a name that resolves to no public address: the server makes requests for anyone, from its own network
position. NoFetch refuses the two routes for any address; demo.security.Blocks refuses an event input
that names one (`remote_files`)."""
import urllib.parse

from starlette.responses import JSONResponse

from .refusals import log_refusal

NO_FETCH = "This server fetches no file from an address: upload the file itself."
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")
PROXY_ROUTE = "/gradio_api/proxy="


def is_address(text):
    """Whether `text` is an address with a scheme (http://..., file:..., data:...) or a network path
    (//host/...) rather than a path on this server."""
    return isinstance(text, str) and (bool(urllib.parse.urlsplit(text).scheme) or text.startswith("//"))


def remote_files(data):
    """The addresses given as a file's `path` anywhere in an event's input `data` (JSON values)."""
    if isinstance(data, dict):
        own = [data["path"]] if is_address(data.get("path")) else []
        return own + [a for value in data.values() for a in remote_files(value)]
    if isinstance(data, list):
        return [a for value in data for a in remote_files(value)]
    return []


class NoFetch:
    """ASGI middleware: 403 for Gradio's proxy route, and for its file route given an address."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        named = next((path[len(route):] for route in FILE_ROUTES if path.startswith(route)), "")
        if path.startswith(PROXY_ROUTE) or is_address(named):
            log_refusal(f"{scope['method']} {path.split('=', 1)[0]}=", NO_FETCH)
            return await JSONResponse({"detail": NO_FETCH}, 403)(scope, receive, send)
        await self.app(scope, receive, send)
