"""The HTTP server the app runs on: uvicorn with h11 connections that must deliver each request's
headers within HEADER_TIMEOUT_S of being ready for one (just opened, or its last response sent).

uvicorn has no such limit: a client that opens connections and sends their headers slowly, or not
at all, held every one of them (400 of 400 for 40 s in the attack of issue #25). deploy/nginx.py
gives nginx the same limit (client_header_timeout)."""
import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10  # headers are a few hundred bytes: a slow phone sends them in well under a second
SHUTDOWN_S = 3  # on SIGTERM, the seconds requests in flight get to finish (open event streams never do)


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 connection, closed when a request's headers are not complete HEADER_TIMEOUT_S after
    the connection was ready to read them. A request whose headers have arrived is not limited: its body,
    its response and an event stream take as long as they need."""

    def connection_made(self, transport):
        super().connection_made(transport)
        self.deadline = self.loop.call_later(HEADER_TIMEOUT_S, self.expire)

    def handle_events(self):
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a request's headers are complete
            self.deadline.cancel()

    def on_response_complete(self):
        self.deadline.cancel()  # set before the base class reads a request already sent (pipelining)
        self.deadline = self.loop.call_later(HEADER_TIMEOUT_S, self.expire)
        super().on_response_complete()

    def connection_lost(self, exc):
        self.deadline.cancel()
        super().connection_lost(exc)

    def expire(self):
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def serve(app, host, port):
    """Serve the ASGI `app` on host:port until SIGINT or SIGTERM."""
    config = uvicorn.Config(app, host=host, port=port, http=HeaderDeadline, log_level="warning",
                            timeout_graceful_shutdown=SHUTDOWN_S)
    print(f"Running on http://{host}:{port}", flush=True)
    uvicorn.Server(config).run()
