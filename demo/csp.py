"""The Content-Security-Policy of every response.

An HTML page may run only the scripts the server sent: its own script files ('self') and the inline
scripts of the page as served (each allowed by its sha256, computed on the response; Gradio's pages
inline their configuration). An injected <script>, an inline event handler (onerror=...), a javascript:
link or a script from another host does not run. 'unsafe-eval' stays: Gradio's HTML component builds
its templates and runs its js_on_load code (the study's trial) with Function(). Styles may be inline
(Svelte sets style attributes; the study page's head has a <style>); everything else comes from this
origin only, images and media also from data: and blob: (an upload's preview). No response may be framed."""
import base64
import hashlib
import re

PAGE_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-eval' {hashes}; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data: blob:; media-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
               "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
OTHER_POLICY = "frame-ancestors 'none'"  # a response that is no page: JSON, images, files, scripts
INLINE_SCRIPT = re.compile(rb"<script\b([^>]*)>(.*?)</script", re.S | re.I)


def script_hashes(html):
    """The CSP sources ('sha256-...') of the inline scripts (no src attribute) of the page `html` (bytes)."""
    return [f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
            for attributes, body in INLINE_SCRIPT.findall(html) if not re.search(rb"\bsrc\s*=", attributes)]


class ContentSecurityPolicy:
    """ASGI middleware: PAGE_POLICY on HTML responses (held until complete, to hash their inline scripts),
    OTHER_POLICY on the others."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, body = None, []

        async def send_with_policy(message):
            nonlocal start
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"]
                message = {**message, "headers": headers}
                if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                    start = message  # sent with the whole body, once the policy can be computed
                    return
                message["headers"] = [*headers, (b"content-security-policy", OTHER_POLICY.encode())]
            elif message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                html = b"".join(body)
                policy = PAGE_POLICY.format(hashes=" ".join(script_hashes(html)))
                await send({**start, "headers": [*start["headers"], (b"content-security-policy", policy.encode())]})
                message = {"type": "http.response.body", "body": html}
            await send(message)

        await self.app(scope, receive, send_with_policy)
