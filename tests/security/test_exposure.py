"""What the network sees of a worker, and the search's reason filter on its index.

The worker's /metrics and /healthz ask for no credentials, so they listen on loopback unless
configured otherwise, and a failing /healthz names what is down, never how it is reached.
"""

from __future__ import annotations

import inspect
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from modq.settings import Settings
from modq.store.database import make_engine
from modq.store.review_views import SearchQuery
from modq.store.schema import verdicts
from modq.tasks.health import HealthServer, serve
from tests.conftest import database_url


def test_metrics_and_health_listen_on_loopback_by_default() -> None:
    assert Settings().metrics_host == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"


def test_a_failing_healthz_does_not_describe_the_infrastructure(
    make_settings: Callable[..., Settings],
) -> None:
    db = database_url("modq_test_absent_db")
    settings = make_settings(database_url=db, broker_url="redis://127.0.0.1:1/0")
    server = HealthServer(("127.0.0.1", 0), settings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
        try:
            urllib.request.urlopen(url, timeout=30)
            raise AssertionError("/healthz said ok with nothing reachable")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        server.engine.dispose()
    assert status == 503
    assert json.loads(body) == {"broker": "unavailable", "database": "unavailable"}
    for detail in ("127.0.0.1", "5432", ":1", "postgres", "modq_test_absent_db", "redis"):
        assert detail not in body, detail


def test_the_reason_filter_can_use_its_index(pg_url: str) -> None:
    condition = SearchQuery(reason="nudity").conditions()[0]
    query = sa.select(verdicts.c.id).where(condition)
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(r[0] for r in conn.execute(sa.text(f"EXPLAIN {sql}")))
    finally:
        engine.dispose()
    assert "ix_verdicts_reasons_codes" in plan, plan
