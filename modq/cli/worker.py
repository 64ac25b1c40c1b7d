"""`modq worker`: run Celery worker processes that consume listing events and write verdicts."""

from __future__ import annotations

import logging
import os
import sys

import click

from modq.cli.context import cli_settings
from modq.settings import Settings
from modq.tasks.supervisor import Supervisor, cores


def process_count(_ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    """`auto` (None) or a whole number of processes, at least 1."""
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"{value!r} is neither 'auto' nor a number >= 1", param=param)
    return int(value)


def uses_gpu(settings: Settings) -> bool:
    """Whether this worker's models would run on a GPU (the providers it would choose)."""
    from modq.pipeline.infer import choose_providers

    first = choose_providers(settings.providers, settings.gpu)[0]
    return bool(first != "CPUExecutionProvider")


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
    "--processes",
    "-p",
    default="auto",
    callback=process_count,
    show_default=True,
    help="Worker processes: 'auto' is one per CPU core on a CPU machine (each with one ONNX "
    "thread unless MODQ_INTRA_OP_THREADS is set) and 1 on a GPU (with --gpu N, N > 1 puts "
    "that many on the GPU); N > 1 supervises N children, restarting any that dies "
    "(docs/deployment.md).",
)
@click.option("--name", default=None, hidden=True, help="Celery node name (set for children).")
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
    processes: int | None,
    name: str | None,
    concurrency: int,
    loglevel: str | None,
    nice: int,
    metrics_port: int | None,
    task_events: bool,
) -> None:
    """Run Celery worker processes: consume listing events, write verdicts."""
    settings = cli_settings()
    if processes is None:
        processes = 1 if gpu is not None or uses_gpu(settings) else cores()
    if processes > 1:
        sys.exit(_supervise(processes, settings, gpu, queues, concurrency, loglevel, nice,
                            metrics_port, task_events))  # fmt: skip
    if nice:
        # First thing, before any thread exists: on Linux the nice value is per thread and new
        # threads (Celery's pool, ONNX Runtime's) inherit it from the one that starts them.
        os.nice(nice)
    if gpu is not None:
        # Must happen before onnxruntime initialises CUDA; the process then sees one GPU as 0.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    from modq.domain.provenance import check_model_files
    from modq.tasks.app import app

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
            *(["--hostname", name] if name else []),
            "--without-gossip", "--without-mingle",
            *extra,
        ]
    )  # fmt: skip


def _supervise(
    processes: int,
    settings: Settings,
    gpu: int | None,
    queues: str,
    concurrency: int,
    loglevel: str | None,
    nice: int,
    metrics_port: int | None,
    task_events: bool,
) -> int:
    """Run `processes` single-process workers under a `Supervisor`; returns the exit status."""
    from modq.domain.provenance import check_model_files

    logging.basicConfig(
        level=(loglevel or settings.log_level).upper(),
        format="[%(asctime)s: %(levelname)s/supervisor] %(message)s",
    )
    check_model_files(settings)  # one clear error here, not one per child restarting forever
    port = metrics_port if metrics_port is not None else settings.metrics_port
    commands = []
    for index in range(processes):
        command = [
            sys.executable, "-m", "modq", "worker", "--processes", "1",
            "--name", f"modq-{index}@%h", "--queues", queues, "-c", str(concurrency),
            "--nice", str(nice),
        ]  # fmt: skip
        if gpu is not None:
            command += ["--gpu", str(gpu)]
        if loglevel:
            command += ["--loglevel", loglevel]
        if port is not None:
            command += ["--metrics-port", str(port + index if port else 0)]
        if task_events:
            command.append("--task-events")
        commands.append(command)
    if settings.intra_op_threads == 0 and gpu is None:
        # One core's worth of ONNX threads each: per-process pools sized to the machine would
        # put N x cores threads on the cores.
        settings = settings.model_copy(update={"intra_op_threads": 1})
    logging.getLogger("modq.worker").info(
        "%d worker processes on %d cores, %d ONNX thread(s) each",
        processes, cores(), settings.intra_op_threads,
    )  # fmt: skip
    return Supervisor(commands, {**os.environ, **settings.to_env()}).run()
