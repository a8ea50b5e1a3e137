"""Real endpoints on loopback for the alert delivery tests: an HTTP hook server."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Hook:
    """What a local webhook server received, and how it should answer next."""

    url: str = ""
    received: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with ``fail_status`` first
    fail_status: int = 503
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextlib.contextmanager
def hook_server() -> Iterator[Hook]:
    hook = Hook()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with hook.lock:
                hook.attempts += 1
                failing = hook.fail_next > 0
                if failing:
                    hook.fail_next -= 1
                else:
                    hook.bodies.append(body)
                    hook.received.append(json.loads(body))
                    hook.headers.append(dict(self.headers))
            self.send_response(hook.fail_status if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
