"""Review console latency on a large table: queue page, claim, search by seller, concurrency.

    .venv/bin/python bench/bench_console.py                 # 1,000,000 verdicts, 50,000 pending
    .venv/bin/python bench/bench_console.py --listings 50000 --requests 50   # quick

Creates a throw-away database `modq_bench_<hex>` on the server of MODQ_DATABASE_URL (or
--server), applies the migrations and fills it with SQL `generate_series`: `--listings`
listings with two verdicts each (an older model's and the current one); a tenth of the
current verdicts are pending reviews spread over the four queues, another tenth were decided
by moderators (reviews + final decisions). It then starts `modq console` in a subprocess and
times, over HTTP with a logged-in session, the queue page, the home page (queue counts), a
claim ("start reviewing"), a search by seller, a search by reason code and the job view;
then 20 moderators claim concurrently (store calls from 20 threads) and every job must be
distinct; last, the store's search by reason with and without its GIN index.

The shift pages (issue 26) are timed too: the queue page filtered (reason, category, model
version, age) and sorted, the seller view, the policy and metrics pages, an undo, and a
photo at full size (`?size=full`) and as a thumbnail, from a synthetic 4000x3000 JPEG (a
12-megapixel phone photo) through the confined loader.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_store import CATEGORIES, fresh_database
from modq.console.auth import add_user
from modq.settings import Settings, get_settings
from modq.store.database import make_engine, migrate
from modq.store.review_views import SearchQuery, search
from modq.store.reviews import claim_next

PASSWORD = "bench-password"
# Reasons as the policy stores them (JSON objects, docs/storage.md).
QUEUES = [
    ("banned", 100, '{"code": "prohibited_item", "photo": 0, "label": "prohibited.knife", '
     '"score": 0.61, "threshold": 0.35, "action": "review"}'),
    ("category", 30, '{"code": "category_mismatch", "label": "electronics.phone", '
     '"score": 0.93, "action": "review", "detail": "declared fashion.dress (0.01)"}'),
    ("unreadable", 10, '{"code": "image_unreadable", "photo": 1, "detail": "no such file"}'),
    ("duplicates", 40, '{"code": "duplicate_photo", "photo": 0, '
     '"label": "duplicate.other_seller", "score": 0.98, "threshold": 0.5, "action": "review"}'),
]  # fmt: skip
# The search's reason filter: the four codes the fill uses, and one no verdict has.
REASONS = ["prohibited_item", "category_mismatch", "image_unreadable", "duplicate_photo", "nudity"]
CATS = "ARRAY[" + ",".join(f"'{c}'" for c in CATEGORIES) + "]"


def fill(url: str, n: int, sellers: int) -> None:
    """Listings, 2 verdicts each, pending jobs and past decisions, all in SQL."""
    reasons = "ARRAY[" + ",".join(f"'{r}'::jsonb" for _, _, r in QUEUES) + "]"
    queues = "ARRAY[" + ",".join(f"'{q}'" for q, _, _ in QUEUES) + "]"
    sev = "ARRAY[" + ",".join(str(s) for _, s, _ in QUEUES) + "]"
    decision = (
        "CASE WHEN i % 10 IN (0, 2) THEN 'review' WHEN i % 10 = 1 THEN 'reject' ELSE 'approve' END"
    )
    steps = [
        f"""INSERT INTO listings (listing_id, listing_version, declared_category, seller_id, title,
            images, created_at, first_seen_at, updated_at)
            SELECT 'L' || lpad(i::text, 8, '0'), 1, ({CATS})[1 + i % 15],
                   'seller-' || (i % {sellers}), 'listing ' || i, '["/photos/x.jpg"]'::jsonb,
                   now() - make_interval(secs => {n} - i), now() - make_interval(secs => {n} - i),
                   now() - make_interval(secs => {n} - i)
            FROM generate_series(1, {n}) i""",
        f"""INSERT INTO verdicts (listing_id, listing_version, model_version, policy_version,
            declared_category, decision, reasons, suggested, best_photo, scores, photos, timings,
            source, created_at)
            SELECT 'L' || lpad(i::text, 8, '0'), 1, m.model, 'p1', ({CATS})[1 + i % 15],
                   CASE WHEN m.model = 'm1' THEN 'approve' ELSE {decision} END,
                   CASE WHEN m.model = 'm2' AND i % 10 IN (0, 2)
                        THEN jsonb_build_array(({reasons})[1 + (i / 10) % 4]) ELSE '[]'::jsonb END,
                   '[["electronics.phone", 0.9], ["fashion.dress", 0.05], ["food.fruit", 0.01]]',
                   0, '{{"electronics.phone": 0.9}}', '[]', '{{}}', 'new',
                   now() - make_interval(secs => {n} - i) - CASE WHEN m.model = 'm1'
                        THEN interval '30 days' ELSE interval '0' END
            FROM generate_series(1, {n}) i CROSS JOIN (VALUES ('m1'), ('m2')) AS m(model)""",
        """UPDATE listings l SET current_verdict_id = v.id FROM verdicts v
            WHERE v.listing_id = l.listing_id AND v.model_version = 'm2'""",
        f"""INSERT INTO review_jobs
            (listing_id, verdict_id, queue, severity, enqueued_at, decided_at)
            SELECT v.listing_id, v.id, ({queues})[1 + (i / 10) % 4], ({sev})[1 + (i / 10) % 4],
                   v.created_at, CASE WHEN i % 10 = 2 THEN v.created_at + interval '20 minutes' END
            FROM verdicts v CROSS JOIN LATERAL (SELECT substr(v.listing_id, 2)::int AS i) x
            WHERE v.model_version = 'm2' AND v.decision = 'review'""",
        """INSERT INTO reviews (listing_id, verdict_id, moderator, decision, reason_code,
            model_version, policy_version, created_at)
            SELECT j.listing_id, j.verdict_id, 'mod-' || (hashtext(j.listing_id) & 15),
                   CASE WHEN hashtext(j.listing_id) % 3 = 0 THEN 'approve' ELSE 'reject' END,
                   NULL, 'm2', 'p1', j.decided_at
            FROM review_jobs j WHERE j.decided_at IS NOT NULL""",
        """INSERT INTO listing_decisions (listing_id, review_id, final_decision, final_category,
            reason_code, decided_by, decided_at)
            SELECT r.listing_id, r.id, r.decision, l.declared_category, NULL, r.moderator,
                   r.created_at
            FROM reviews r JOIN listings l USING (listing_id)""",
        "VACUUM ANALYZE",  # as autovacuum would have: index-only scans need it
    ]
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for sql in steps:
            started = time.perf_counter()
            conn.execute(sa.text(sql))
            what = " ".join(sql.split()[:3]) if sql.startswith("INSERT") else sql.split()[0]
            print(f"  {what}: {time.perf_counter() - started:.1f} s", flush=True)
        counts = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM verdicts), "
            "(SELECT count(*) FROM review_jobs WHERE decided_at IS NULL)"
        )).one()  # fmt: skip
    engine.dispose()
    print(f"  {counts[0]:,} verdicts, {counts[1]:,} pending reviews")


def timed(fn: Callable[[int], httpx.Response], n: int, expect: int = 200) -> dict[str, float]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        response = fn(i)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == expect, (response.status_code, response.text[:300])
    times.sort()
    return {
        "p50": statistics.median(times),
        "p95": times[max(0, round(0.95 * len(times)) - 1)],
        "max": times[-1],
    }


def serve(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings.to_env(), "MODQ_CONSOLE_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modq", "console"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the console did not start")


def login(base: str, name: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, timeout=30)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert csrf
    r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": csrf.group(1)})
    assert r.status_code == 303, r.text[:300]
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
    assert token
    return client, token.group(1)


_ENGINES: dict[str, sa.engine.Engine] = {}


def claimed(url: str, moderator: str) -> httpx.Response:
    """One real claim (a new moderator name each time, so a new job), as a fake response."""
    engine = _ENGINES.setdefault(url, make_engine(url))
    claim = claim_next(engine, moderator, "banned")
    return httpx.Response(200 if claim is not None else 404)


def decide_and_next(client: httpx.Client, csrf: str) -> httpx.Response:
    """Approve the job the console gave us; the answer redirects to the next one (claimed)."""
    location = client.post("/queues/category/start", data={"csrf": csrf}).headers["location"]
    listing = location.rsplit("/", 1)[-1]
    return client.post(f"/jobs/{listing}/decide", data={"csrf": csrf, "decision": "approve"})


def concurrent_claims(url: str, moderators: int, each: int) -> tuple[int, int, float, float]:
    engine = make_engine(url)
    engine.dispose()
    engine = sa.create_engine(url, pool_size=moderators, max_overflow=0)
    got: list[str] = []
    times: list[float] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for _ in range(each):
            started = time.perf_counter()
            claim = claim_next(engine, f"conc-{k}-{len(got)}", "category")
            spent = (time.perf_counter() - started) * 1000
            assert claim is not None
            with lock:
                got.append(claim.listing_id)
                times.append(spent)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(moderators)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    engine.dispose()
    times.sort()
    return len(got), len(set(got)), wall, times[round(0.95 * len(times)) - 1]


def reason_filter_ab(url: str, runs: int = 20) -> None:
    """The store's search by reason with and without its GIN index (dropped here: the
    database is a throw-away one)."""
    engine = make_engine(url)

    def timings(label: str) -> None:
        for code in ("prohibited_item", "nudity"):
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                search(engine, SearchQuery(reason=code))
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            p95 = times[max(0, round(0.95 * runs) - 1)]
            print(f"store search reason={code:16s} {label:14s} "
                  f"p50 {statistics.median(times):6.1f} ms  p95 {p95:6.1f} ms")  # fmt: skip

    timings("with index")
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_verdicts_reasons_codes"))
    timings("without index")
    engine.dispose()


def snapshot_times(url: str, n: int) -> dict[str, float]:
    """What the console computes in the background once a minute for the metrics page."""
    from modq.console.metrics_cache import compute

    engine = make_engine(url)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        compute(engine)
        times.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    times.sort()
    return {"p50": statistics.median(times), "p95": times[-1], "max": times[-1]}


def big_photo(folder: Path, width: int = 4000, height: int = 3000) -> Path:
    """A 12-megapixel JPEG with detail (noise over a gradient), like a phone's."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"big-{width}x{height}.jpg"
    if not path.exists():
        noise = Image.effect_noise((width, height), 64).convert("RGB")
        gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        Image.blend(noise, gradient, 0.5).save(path, quality=90)
    return path


def shift_pages(
    client: httpx.Client, csrf: str, url: str, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """The pages and actions issue 26 added, on the same database."""
    n = args.requests
    photo = big_photo(Path("/tmp/modq-bench-photos"))
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE listings SET images = CAST(:images AS jsonb) WHERE listing_id = :id"),
            {"images": f'["{photo}"]', "id": "L00000010"},
        )
        undoable = conn.execute(sa.text(
            "SELECT id FROM reviews WHERE moderator = 'bench' ORDER BY id DESC LIMIT :n"
        ), {"n": n}).scalars().all()  # fmt: skip
    engine.dispose()
    filters = [
        {"reason": "prohibited_item"},
        {"category": CATEGORIES[3]},
        {"model_version": "m2", "sort": "newest"},
        {"older_than_h": "24", "sort": "oldest"},
    ]
    return {
        **{
            f"queue page, {' '.join(f'{k}={v}' for k, v in f.items())}": timed(
                lambda i, f=f: client.get("/queues/banned", params=f), n
            )
            for f in filters
        },
        "seller view (GET /sellers/ID)": timed(
            lambda i: client.get(f"/sellers/seller-{(i * 7919) % args.sellers}"), n
        ),
        "policy page": timed(lambda i: client.get("/policy"), n),
        # A snapshot of the heavy aggregates serves it (computed once a minute, timed below).
        "metrics page": timed(lambda i: client.get("/metrics"), n),
        "metrics snapshot (background, once a minute)": snapshot_times(url, 3),
        "undo (POST /reviews/ID/undo)": timed(
            lambda i: client.post(f"/reviews/{undoable[i]}/undo", data={"csrf": csrf}),
            len(undoable),
            303,
        ),
        "photo full size, 4000x3000 source": timed(
            lambda i: client.get("/listings/L00000010/photos/0", params={"size": "full"}), n
        ),
        "photo thumbnail, 4000x3000 source": timed(
            lambda i: client.get("/listings/L00000010/photos/0", params={"size": "thumb"}), n
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listings", type=int, default=500_000, help="2 verdicts each")
    parser.add_argument("--sellers", type=int, default=25_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--port", type=int, default=18_765)
    parser.add_argument("--server", default=get_settings().database_url)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with fresh_database(args.server, None, args.keep) as url:
        migrate(url)
        print(f"filling {url.rsplit('/', 1)[-1]}", flush=True)
        fill(url, args.listings, args.sellers)
        settings = Settings(
            database_url=url,
            console_secret="bench-" + "s" * 32,
            data_dir=Path("/tmp/mq"),
            image_roots=["/tmp/modq-bench-photos"],
        )
        add_user(make_engine(url), "bench", "lead", PASSWORD)
        proc = serve(settings, args.port)
        try:
            client, csrf = login(f"http://127.0.0.1:{args.port}", "bench")
            n = args.requests
            results = {
                "queue page (GET /queues/banned)": timed(lambda i: client.get("/queues/banned"), n),
                "home (queue counts)": timed(lambda i: client.get("/"), n),
                "claim (store claim_next, new job each)": timed(
                    lambda i: claimed(url, f"solo-{i}"), n
                ),
                "decide + claim next (POST decide)": timed(
                    lambda i: decide_and_next(client, csrf), n, 303
                ),
                "search by seller": timed(
                    lambda i: client.get(f"/search?seller_id=seller-{(i * 7919) % args.sellers}"),
                    n,
                ),
                "search by reason (4 present, 1 absent)": timed(
                    lambda i: client.get("/search", params={"go": 1, "reason": REASONS[i % 5]}),
                    n,
                ),
                "search by a reason no verdict has": timed(
                    lambda i: client.get("/search", params={"go": 1, "reason": "nudity"}), n
                ),
                "job view (GET /jobs/ID)": timed(
                    lambda i: client.get(f"/jobs/L{(i * 10 * 97 + 10) % args.listings:08d}"), n
                ),
            }
            results |= shift_pages(client, csrf, url, args)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        for name, r in results.items():
            print(
                f"{name:40s} p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  max {r['max']:6.1f} ms"
            )
        total, distinct, wall, p95 = concurrent_claims(url, 20, 10)
        print(f"20 concurrent claimers: {total} claims, {distinct} distinct jobs, "
              f"{wall:.2f} s wall, claim p95 {p95:.1f} ms")  # fmt: skip
        assert total == distinct, "two moderators got the same job"
        reason_filter_ab(url)


if __name__ == "__main__":
    main()
