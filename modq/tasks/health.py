"""The worker's HTTP endpoint (`modq worker --metrics-port N`): `/metrics` for Prometheus and
`/healthz`, which checks that the broker and the database answer now.

`/healthz` answers 200 with `{"broker": "ok", "database": "ok"}`, or 503 naming what failed
("unavailable"), never how it is reached: host, port, role and the driver's message go to the
worker's log, not to whoever can reach the port. Each check is bounded (Redis socket timeout,
PostgreSQL connect timeout), so a probe never hangs. Served on a daemon thread of the worker
process, beside Celery; on 127.0.0.1 unless `MODQ_METRICS_HOST` says otherwise, since neither
path asks for credentials.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from modq.errors import ModqError
from modq.ingest.probe import broker_ping
from modq.settings import Settings
from modq.store.database import make_engine
from modq.store.intake import open_count, ping
from modq.tasks.metrics import QueueCollector

log = logging.getLogger(__name__)


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], settings: Settings) -> None:
        super().__init__(address, _Handler)
        self.settings = settings
        self.engine = make_engine(settings.database_url)

    def checks(self) -> dict[str, str]:
        result = {"broker": "ok", "database": "ok"}
        try:
            broker_ping(self.settings)
        except ModqError as exc:
            log.warning("/healthz: %s", exc)
            result["broker"] = "unavailable"
        try:
            ping(self.engine)
        except ModqError as exc:
            log.warning("/healthz: %s", exc)
            result["database"] = "unavailable"
        return result


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            checks = self.server.checks()
            status = 200 if all(v == "ok" for v in checks.values()) else 503
            self._send(status, json.dumps(checks).encode(), "application/json")
        else:
            self._send(404, b"not found: /metrics or /healthz\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # scrapes every few seconds: not worth a log line each


def serve(settings: Settings, port: int, host: str = "127.0.0.1") -> HealthServer:
    """Start serving /metrics and /healthz on `host:port` (port 0: any free port)."""
    server = HealthServer((host, port), settings)
    REGISTRY.register(QueueCollector(settings, lambda: open_count(server.engine)))
    thread = threading.Thread(target=server.serve_forever, name="modq-metrics", daemon=True)
    thread.start()
    log.info("metrics and /healthz on http://%s:%d", host, server.server_address[1])
    return server
