"""`modq worker`: run a Celery worker that consumes listing events and writes verdicts."""

from __future__ import annotations

import os

import click


@click.command()
@click.option(
    "--queues",
    type=click.Choice(["all", "new", "backfill"]),
    default="all",
    show_default=True,
    help="'all' drains new listings before backfill; 'backfill' makes a dedicated pool.",
)
@click.option("--gpu", type=int, default=None, help="Pin this process to one GPU (one per GPU).")
@click.option(
    "--concurrency",
    "-c",
    type=int,
    default=2,
    show_default=True,
    help="Batches in flight at once (threads sharing one ONNX session); with 2 one batch "
    "computes while the previous one is stored (docs/performance.md).",
)
@click.option("--loglevel", default=None, help="Celery log level (default MODQ_LOG_LEVEL).")
@click.option(
    "--nice",
    type=click.IntRange(0, 19),
    default=0,
    show_default=True,
    help="Lower this worker's CPU priority by N (os.nice), e.g. 19 for a backfill pool that "
    "must never slow the new-listing pool on the same machine.",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus /metrics and /healthz on this port (default MODQ_METRICS_PORT; "
    "off when neither is set).",
)
@click.option(
    "--task-events",
    is_flag=True,
    help="Send Celery task events (one per listing) so Flower shows the batches' tasks.",
)
def worker(
    queues: str,
    gpu: int | None,
    concurrency: int,
    loglevel: str | None,
    nice: int,
    metrics_port: int | None,
    task_events: bool,
) -> None:
    """Run a Celery worker: consume listing events, write verdicts."""
    if nice:
        # First thing, before any thread exists: on Linux the nice value is per thread and new
        # threads (Celery's pool, ONNX Runtime's) inherit it from the one that starts them.
        os.nice(nice)
    if gpu is not None:
        # Must happen before onnxruntime initialises CUDA; the process then sees one GPU as 0.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    from modq.pipeline.runtime import check_model_files
    from modq.tasks.app import app, settings

    check_model_files(settings)
    port = metrics_port if metrics_port is not None else settings.metrics_port
    if port is not None:
        from modq.tasks.health import serve

        serve(settings, port, settings.metrics_host)
    extra = []
    if task_events:
        app.conf.worker_send_task_events = True
        extra.append("--task-events")

    names = {"new": [settings.queue_new], "backfill": [settings.queue_backfill]}
    order = names.get(queues, [settings.queue_new, settings.queue_backfill])
    app.worker_main(
        [
            "worker",
            "--queues", ",".join(order),
            # Threads, not prefork: the ONNX session lives in this process and is never forked.
            "--pool", "threads",
            "--concurrency", str(concurrency),
            "--loglevel", loglevel or settings.log_level,
            "--without-gossip", "--without-mingle",
            *extra,
        ]
    )  # fmt: skip
