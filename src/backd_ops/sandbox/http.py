"""A small threaded HTTP/1.1 server with keep-alive that runs the sandbox's WSGI app.

werkzeug's development server closes every connection (it drains unread input by reading past the
request, which would swallow the next one), and Backd's servers keep connections alive, so the client's
pooling would go untested. ``http.server`` handles keep-alive correctly when every response carries a
Content-Length and the request body is read in full, which this bridge guarantees.
"""

from __future__ import annotations

import io
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import unquote_to_bytes, urlsplit

DROPPED = "sandbox.dropped"


class _WSGIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections are closed after a minute
    wbufsize = 64 * 1024  # one write per response (handle_one_request flushes), not headers then body

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle's algorithm meets the client's delayed ACK: +40 ms on every kept-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        counter = getattr(self.server.app, "count_connection", None)  # type: ignore[attr-defined]
        if counter is not None:
            counter()

    def do_GET(self) -> None:
        self._run_app()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the app keeps its own request log

    def _run_app(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        environ = self._environ(body)
        started: dict[str, Any] = {}

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
            started["status"], started["headers"] = status, headers
            return lambda data: None

        chunks = self.server.app(environ, start_response)  # type: ignore[attr-defined]
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        if environ.get(DROPPED):
            self.close_connection = True
            return
        self._respond(started["status"], started["headers"], payload)

    def _respond(self, status: str, headers: list, payload: bytes) -> None:
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _environ(self, body: bytes) -> dict:
        url = urlsplit(self.path)
        host, port = self.server.server_address[:2]
        environ = {
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "werkzeug.socket": self.connection, "REQUEST_METHOD": self.command, "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(url.path).decode("latin-1"), "QUERY_STRING": url.query,
            "SERVER_NAME": str(host), "SERVER_PORT": str(port), "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0], "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
        return environ


class SandboxHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` carrying the WSGI app its handlers run."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: Callable) -> None:
        self.app = app
        super().__init__(address, _WSGIHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (read timeout on a slow request) closes its socket; that is the scenario, not a bug.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
