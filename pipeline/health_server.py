"""The metrics HTTP server of ``pipeline.run``: Prometheus ``/metrics`` and health endpoints.

- ``/metrics``: the run's registry (text format; OpenMetrics when the scraper asks for it).
- ``/livez``: 200 while the process loop is alive (it answers during start-up and graceful
  shutdown too), 503 when the loop stalled or a worker thread died: restart the process.
- ``/readyz``: 200 when the cameras were started, at least one has not failed for good, and
  output can be accepted (Redis reachable, or the spool below its limits); else 503.
- ``/status``: JSON snapshot: per camera state, decoded and analysed fps, drops, last event
  time; publisher and spool state.

Probe bodies are JSON ``{"ok": bool, "reason": str}``. The server runs in daemon threads and
never calls into the pipeline's locks for long: probes read snapshots.

``python -m pipeline.health_server --probe URL`` is the container HEALTHCHECK: exit 0 when
URL answers 200 within the timeout, 1 otherwise (no curl needed in the image).
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of a liveness or readiness check; ``reason`` says why, for people."""

    ok: bool
    reason: str


class HealthProbes(Protocol):
    """What the server asks the run (``LiveRunner`` implements it)."""

    def liveness(self) -> ProbeResult: ...

    def readiness(self) -> ProbeResult: ...

    def status(self) -> dict[str, Any]: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _handler(registry: CollectorRegistry,
             probes: HealthProbes | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "cctv-pipeline"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._respond(head=False)

        def do_HEAD(self) -> None:
            self._respond(head=True)

        def _respond(self, head: bool) -> None:
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            try:
                status, content_type, body = self._route(path)
            except Exception as err:  # a broken probe must not kill the server thread
                log.exception("health server: %s failed", path)
                status, content_type, body = 500, "text/plain; charset=utf-8", \
                    f"internal error: {type(err).__name__}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _route(self, path: str) -> tuple[int, str, bytes]:
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                return 200, content_type, encoder(registry)
            if probes is not None and path in ("/livez", "/readyz"):
                result = probes.liveness() if path == "/livez" else probes.readiness()
                return (200 if result.ok else 503), "application/json", _json(
                    {"ok": result.ok, "reason": result.reason})
            if probes is not None and path == "/status":
                return 200, "application/json", _json(probes.status())
            if path == "/":
                links = ["/metrics"] + (["/livez", "/readyz", "/status"] if probes else [])
                return 200, "text/plain; charset=utf-8", ("\n".join(links) + "\n").encode()
            return 404, "text/plain; charset=utf-8", b"not found\n"

        def log_message(self, format: str, *args: object) -> None:
            log.debug("health server: " + format, *args)

    return Handler


def _json(payload: object) -> bytes:
    return (json.dumps(payload, sort_keys=True, allow_nan=False) + "\n").encode()


class HealthServer:
    """Serves the endpoints above on ``host:port`` from daemon threads."""

    def __init__(self, registry: CollectorRegistry, probes: HealthProbes | None, *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self._registry = registry
        self._probes = probes
        self._host = host
        self._requested_port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the chosen one when 0 was asked for); 0 before start()."""
        return int(self._httpd.server_address[1]) if self._httpd is not None else 0

    def start(self) -> None:
        """Bind and serve. Raises PipelineError when the address cannot be bound (port in
        use, unknown host)."""
        server_class = type("_BoundServer", (_Server,), {
            "address_family": socket.AF_INET6 if ":" in self._host else socket.AF_INET})
        try:
            self._httpd = server_class((self._host, self._requested_port),
                                       _handler(self._registry, self._probes))
        except OSError as err:
            raise PipelineError(f"metrics: cannot listen on {self._host}:"
                                f"{self._requested_port}: {err.strerror or err}") from err
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.5},
                                        name="metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics and health endpoints on http://%s:%d/ (/metrics%s)", self._host,
                 self.port, ", /livez, /readyz, /status" if self._probes else "")

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def probe(url: str, timeout_s: float = 3.0,
          opener: Callable[..., Any] = urllib.request.urlopen) -> int:
    """0 when ``url`` answers 200 within ``timeout_s`` seconds, else 1 (for HEALTHCHECK).
    Only http:// and https:// URLs are fetched (anything else: 1)."""
    if not url.startswith(("http://", "https://")):
        return 1
    try:
        with opener(url, timeout=timeout_s) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError):
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.health_server",
                                     description="Container health check: GET a health "
                                     "endpoint; exit 0 on 200, 1 otherwise.")
    parser.add_argument("--probe", required=True, metavar="URL",
                        help="e.g. http://127.0.0.1:9108/livez")
    parser.add_argument("--timeout-s", type=float, default=3.0)
    args = parser.parse_args(argv)
    return probe(args.probe, args.timeout_s)


if __name__ == "__main__":
    sys.exit(main())
