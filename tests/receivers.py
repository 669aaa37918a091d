"""Real local servers that stand in for the outside world in tests: an
HTTP webhook receiver (JSON webhooks, SMS gateways, bots) and an SMTP
server (aiosmtpd). Both listen on 127.0.0.1 and record what they get."""
from __future__ import annotations

import json
import socket
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller

# How often a serving thread looks for its stop signal: shutdown() waits up
# to this long (the default half second, paid by every test that serves).
POLL = 0.02


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class WebhookReceiver:
    """Records every POST (path, query, headers, parsed JSON or raw text).
    `status`, `answer` and `delay` set how it replies — to imitate a
    failing channel, a bot that says 200 but rejects, or one that hangs;
    `routes` sets them per path prefix."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        self.answer: dict = {"ok": True}
        self.delay = 0.0
        self.routes: dict[str, tuple[int, dict, float]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = body.decode("utf-8", "replace")
                path, _, query = self.path.partition("?")
                status, answer, delay = next(
                    (r for prefix, r in receiver.routes.items() if path.startswith(prefix)),
                    (receiver.status, receiver.answer, receiver.delay))
                receiver.received.append({"path": path, "query": parse_qs(query), "body": payload,
                                          "headers": dict(self.headers), "status": status, "at": time.time()})
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps(answer).encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(POLL,), daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) keeping each message parsed."""

    def __init__(self):
        self.messages = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def url(self, to: str) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=linli@example.org&to={to}"

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()
