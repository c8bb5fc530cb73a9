"""What the Battle and Compare tabs share per browser: the visitor's id, and keys of what is on screen.

The visitor id is a random token the server makes; the browser keeps it signed by the server
(demo.signing, gr.BrowserState), so that a reload is the same visitor and no client can choose its id
(a value the server did not sign gets a new visitor). Votes are limited per visitor and per network
address (demo.limits), and the leaderboard counts per address (study.counting).
Each page session has one server-side dict (gr.State, mutated in place, so that concurrent events of
the session see each other's writes): {"visitor": id, "<tab>_inputs": key of the inputs on screen}."""
import hashlib
import secrets

import gradio as gr

from .security import PAGE_EVENT
from .signing import Signer

# the BrowserState secret travels to the page, so it only obfuscates (the signature is what protects the
# id); fixed, so a restart keeps visitors
BROWSER_KEY = "stya2k-visitor"


def visitor(session):
    """The session's visitor id, made on first use (API clients, which load no page, get one per session)."""
    return session.setdefault("visitor", secrets.token_urlsafe(24))


def inputs_key(*values):
    """A key of what a result was computed from: images by their pixels, the rest by value."""
    digest = hashlib.sha256()
    for v in values:
        if hasattr(v, "tobytes"):
            digest.update(f"{v.mode}{v.size}".encode() + v.tobytes())
        else:
            digest.update(repr(v).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def session_state(app, store):
    """The session dict (gr.State) and, on page load, the visitor id restored from the browser if the
    server signed it (this store's key: every worker on the database), else made anew and saved there."""
    session = gr.State({})
    saved = gr.BrowserState("", storage_key=BROWSER_KEY, secret=BROWSER_KEY)
    signer = Signer(store, "visitor")

    def restore(browser, state):
        who = signer.verify(browser)
        if who:
            state["visitor"] = who
        return signer.sign(visitor(state))

    app.load(restore, [saved, session], [saved], api_name="visitor", **PAGE_EVENT)
    return session
