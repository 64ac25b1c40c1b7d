"""The moderation pipeline as plain functions: photos → model → policy → verdicts.

Nothing here knows about Celery. Dependencies arrive in a `Runtime`, so the same code runs
in the worker, in `modq classify` and directly in tests. Photo loading runs on a thread
pool (Pillow and httpx release the GIL) and inference starts on the first ready chunk while
the rest still decode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modq.detectors import build_detectors
from modq.detectors.banks import BankMatcher, PhotoKey
from modq.detectors.base import Detector
from modq.detectors.hashing import PhotoHash
from modq.domain.events import ListingEvent, parse_event, raw_text
from modq.domain.verdicts import PhotoResult, RejectedEvent, Source, Verdict
from modq.errors import EventError, PhotoError
from modq.pipeline.fetch import PhotoFetcher
from modq.pipeline.infer import Classifier, FloatArray, choose_providers, session_threads
from modq.pipeline.sized import Loaded, load_photo, score_chunk
from modq.policy.policy import Policy, worst
from modq.settings import Settings
from modq.store import verdicts as store

log = logging.getLogger(__name__)

Reader = Callable[[str], bytes]


@dataclass
class Runtime:
    """Everything the pipeline needs, built once per worker process."""

    settings: Settings
    classifier: Classifier
    policy: Policy
    read: Reader
    pool: ThreadPoolExecutor
    engine: Any = None  # sqlalchemy Engine; None where nothing is stored (modq classify)
    detectors: Sequence[Detector] = ()
    banks: BankMatcher | None = None  # PDQ image banks + duplicate photos; needs the store
    # Runs the image detectors' models while the classifier runs (issue 14, pipeline/sized.py).
    infer_pool: ThreadPoolExecutor | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def build(
        cls, settings: Settings, *, with_store: bool = True, read: Reader | None = None
    ) -> Runtime:
        """`read` replaces the fetcher's policy-checked reader (modq classify reads the
        files its user named)."""
        # issue 14: the detectors' models run beside the classifier (pipeline/sized.py); the
        # classifier, the longest, may use every core, each detector half of them.
        threads = session_threads(settings.intra_op_threads, 2)
        classifier = Classifier.from_path(
            settings.model_path,
            settings.model_copy(
                update={"intra_op_threads": session_threads(settings.intra_op_threads, 1)}
            ),
        )
        engine = store.make_engine(settings.database_url) if with_store else None
        closers: list[Callable[[], None]] = []
        if read is None:
            fetcher = PhotoFetcher(settings)
            read = fetcher.fetch
            closers.append(fetcher.close)
        policy = Policy.load(settings.policy_path)
        providers = choose_providers(settings.providers, settings.gpu)
        banks = None
        if engine is not None and "banks" in settings.detectors:
            banks = BankMatcher(engine, policy.detector_rules.banks.config(settings.bank_refresh_s))
        rt = cls(
            settings=settings,
            classifier=classifier,
            policy=policy,
            read=read,
            pool=ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="modq-load"),
            engine=engine,
            detectors=build_detectors(
                settings.detectors, providers, threads, settings.nudity_precision
            ),
            banks=banks,
        )
        rt._closers += [*closers, rt.pool.shutdown]
        if rt.detectors:  # issue 14: detector models run next to the classifier
            rt.infer_pool = ThreadPoolExecutor(len(rt.detectors), thread_name_prefix="modq-infer")
            rt._closers.append(rt.infer_pool.shutdown)
        if engine is not None:
            rt._closers.append(engine.dispose)
        return rt

    @property
    def min_side(self) -> int:
        """Shorter side the decoder must keep: the model input or what a detector needs."""
        return max(
            [self.classifier.contract.preprocess.resize, *(d.min_side for d in self.detectors)]
        )

    def close(self) -> None:
        for close in self._closers:
            close()


@dataclass
class PhotoOutcome:
    """One photo after loading and inference; `probs` is None when it could not be read."""

    ref: str
    probs: FloatArray | None = None
    detectors: dict[str, float] = field(default_factory=dict)
    error: PhotoError | None = None
    fetch_ms: float = 0.0
    decode_ms: float = 0.0
    pdq: PhotoHash | None = None


_Loaded = Loaded  # issue 14: loading moved to pipeline/sized.py (sized per category)


def infer_photos(
    refs: Sequence[str], rt: Runtime, categories: Sequence[str] | None = None
) -> Iterator[tuple[int, PhotoOutcome]]:
    """Load every photo on the pool and run the model on chunks as they become ready.

    `categories` (the declared category of each ref) lets the policy switch detectors off per
    category; without it every detector runs. Yields (position in `refs`, outcome) in
    completion order.
    """
    futures: list[Future[_Loaded]] = [
        rt.pool.submit(load_photo, i, ref, rt, categories[i] if categories else None)
        for i, ref in enumerate(refs)
    ]
    ready: list[_Loaded] = []
    for fut in as_completed(futures):
        loaded = fut.result()
        if loaded.error is not None:
            yield (
                loaded.key,
                PhotoOutcome(loaded.ref, None, {}, loaded.error, loaded.fetch_ms, loaded.decode_ms),
            )
            continue
        ready.append(loaded)
        if len(ready) >= rt.settings.infer_batch:
            yield from _run_chunk(ready, rt, categories)
            ready = []
    if ready:
        yield from _run_chunk(ready, rt, categories)


def _run_chunk(
    chunk: list[_Loaded], rt: Runtime, categories: Sequence[str] | None = None
) -> Iterator[tuple[int, PhotoOutcome]]:
    # issue 14: classifier and detectors run concurrently (pipeline/sized.py).
    prediction, detector_rows = score_chunk(chunk, rt, categories)
    scores: list[dict[str, float]] = [{} for _ in chunk]
    for name, head in prediction.heads.items():
        labels = rt.classifier.contract.detectors[name].labels
        for row, photo_scores in zip(head, scores, strict=True):
            photo_scores.update(
                {f"{name}.{lbl}": round(float(s), 6) for lbl, s in zip(labels, row, strict=True)}
            )
    errors: list[PhotoError | None] = [None] * len(chunk)
    for rows in detector_rows:
        for detector, i, result in rows:
            if isinstance(result, Exception):
                err = result if isinstance(result, PhotoError) else None
                errors[i] = errors[i] or err or PhotoError(f"{detector.name}: {result}")
            else:
                scores[i].update({f"{detector.name}.{k}": round(v, 6) for k, v in result.items()})
    for item, probs, photo_scores, error in zip(
        chunk, prediction.probs, scores, errors, strict=True
    ):
        yield (
            item.key,
            PhotoOutcome(
                item.ref,
                probs if error is None else None,
                photo_scores,
                error,
                item.fetch_ms,
                item.decode_ms,
                item.pdq,
            ),
        )


def moderate(events: Sequence[ListingEvent], rt: Runtime, source: Source = "new") -> list[Verdict]:
    """One verdict per event, in order. Unreadable photos become per-photo errors."""
    started = time.perf_counter()
    refs = [(n, i, ref) for n, event in enumerate(events) for i, ref in enumerate(event.images)]
    outcomes: dict[tuple[int, int], PhotoOutcome] = {}
    categories = [events[n].declared_category for n, _, _ in refs]
    for pos, outcome in infer_photos([ref for _, _, ref in refs], rt, categories):
        n, i, _ = refs[pos]
        outcomes[n, i] = outcome
    _check_banks(events, outcomes, rt)
    elapsed_ms = (time.perf_counter() - started) * 1e3

    contract = rt.classifier.contract
    verdicts = []
    for n, event in enumerate(events):
        photos, rows = [], []
        for i, ref in enumerate(event.images):
            out = outcomes[n, i]
            photos.append(_photo_result(i, ref, out, event, contract.labels))
            if out.probs is not None:
                rows.append(out.probs)
        probs = np.stack(rows) if rows else np.zeros((0, len(contract.labels)), np.float32)
        cat = rt.policy.decide_category(event, photos, probs, contract.labels)
        found, found_reasons = rt.policy.detector_rules.decide(event.declared_category, photos)
        verdicts.append(
            Verdict(
                listing_id=event.listing_id,
                listing_version=event.listing_version,
                declared_category=event.declared_category,
                decision=worst(cat.decision, found),
                reasons=[*cat.reasons, *found_reasons],
                suggested=cat.suggested,
                best_photo=cat.best_photo,
                scores=cat.scores,
                photos=photos,
                model_version=contract.model_version,
                policy_version=rt.policy.version,
                timings={
                    "batch_ms": round(elapsed_ms, 2),
                    "batch_listings": len(events),
                    "fetch_ms": round(sum(p.fetch_ms for p in photos), 2),
                    "decode_ms": round(sum(p.decode_ms for p in photos), 2),
                },
                source=source,
            )
        )
    return verdicts


def _check_banks(
    events: Sequence[ListingEvent], outcomes: dict[tuple[int, int], PhotoOutcome], rt: Runtime
) -> None:
    """Add image-bank and duplicate-photo scores to the photos that have a PDQ hash."""
    if rt.banks is None:
        return
    keys, hashes, where = [], [], []
    for (n, i), out in outcomes.items():
        if out.pdq is not None and out.probs is not None:
            event = events[n]
            keys.append(PhotoKey(event.listing_id, event.listing_version, i, event.seller_id))
            hashes.append(out.pdq)
            where.append(out)
    if not hashes:
        return
    for out, scores in zip(where, rt.banks.check(keys, hashes), strict=True):
        out.detectors.update(scores)


def _photo_result(
    index: int, ref: str, out: PhotoOutcome, event: ListingEvent, labels: Sequence[str]
) -> PhotoResult:
    timing = {"fetch_ms": round(out.fetch_ms, 2), "decode_ms": round(out.decode_ms, 2)}
    if out.probs is None:
        error = out.error or PhotoError("unknown failure")
        return PhotoResult(index=index, ref=ref, error_code=error.code, error=str(error), **timing)
    order = np.argsort(-out.probs)[:5]
    return PhotoResult(
        index=index,
        ref=ref,
        top=[(labels[k], round(float(out.probs[k]), 6)) for k in order],
        declared_prob=round(float(out.probs[list(labels).index(event.declared_category)]), 6),
        detectors=out.detectors,
        **timing,
    )


@dataclass
class BatchOutcome:
    verdicts: list[Verdict]
    rejected: list[RejectedEvent]


def parse_messages(
    bodies: Sequence[dict[str, Any]], labels: Sequence[str]
) -> tuple[list[ListingEvent], list[RejectedEvent]]:
    """Validate message bodies again on receipt; bad ones become `RejectedEvent`s."""
    events, rejected = [], []
    for body in bodies:
        raw = body.get("event", body)
        try:
            events.append(parse_event(raw, labels))
        except EventError as exc:
            listing_id = raw.get("listing_id") if isinstance(raw, dict) else None
            rejected.append(
                RejectedEvent(
                    stage="worker",
                    reason=str(exc),
                    payload=raw_text(raw),
                    listing_id=str(listing_id) if listing_id is not None else None,
                )
            )
    return events, rejected


def latest_versions(events: Sequence[ListingEvent]) -> list[ListingEvent]:
    """One event per listing (the highest version): a batch may hold redeliveries."""
    newest: dict[str, ListingEvent] = {}
    for event in events:
        kept = newest.get(event.listing_id)
        if kept is None or event.listing_version >= kept.listing_version:
            newest[event.listing_id] = event
    return list(newest.values())


def handle_messages(bodies: Sequence[dict[str, Any]], rt: Runtime, source: Source) -> BatchOutcome:
    """Parse, moderate and store one batch of broker messages in one transaction."""
    events, rejected = parse_messages(bodies, rt.classifier.contract.labels)
    events = latest_versions(events)
    verdicts = moderate(events, rt, source) if events else []
    store.save_batch(rt.engine, events, verdicts, rejected)
    return BatchOutcome(verdicts, rejected)
