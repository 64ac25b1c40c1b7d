"""A batch of listings through the pipeline: photos → model and detectors → image banks →
policy → verdicts, and broker message bodies → verdicts stored in one transaction.

Nothing here knows about Celery or SQL; the runtime brings the model, the policy and the
stores (`modq.pipeline.runtime`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modq.detectors.banks import PhotoKey, PhotoMatches
from modq.domain.envelope import event_of
from modq.domain.envelope import rejected as rejected_body
from modq.domain.events import ListingEvent, latest_versions, parse_event
from modq.domain.verdicts import PhotoResult, RejectedEvent, Source, Verdict
from modq.errors import ConfigError, EventError, PhotoError
from modq.pipeline.photos import Photo, infer_photos
from modq.pipeline.runtime import Runtime


def moderate(events: Sequence[ListingEvent], rt: Runtime, source: Source = "new") -> list[Verdict]:
    """One verdict per event, in order. Unreadable photos become per-photo errors."""
    started = time.perf_counter()
    deadline = time.monotonic() + rt.settings.batch_deadline_s
    refs = [(n, i, ref) for n, event in enumerate(events) for i, ref in enumerate(event.images)]
    outcomes: dict[tuple[int, int], Photo] = {}
    categories = [events[n].declared_category for n, _, _ in refs]
    for pos, outcome in infer_photos([ref for _, _, ref in refs], rt, categories, deadline):
        n, i, _ = refs[pos]
        outcomes[n, i] = outcome
    matches = _check_banks(events, outcomes, rt)
    elapsed_ms = (time.perf_counter() - started) * 1e3

    contract = rt.classifier.contract
    verdicts = []
    for n, event in enumerate(events):
        photos, rows = [], []
        for i, ref in enumerate(event.images):
            out = outcomes[n, i]
            photos.append(_photo_result(i, ref, out, matches.get((n, i)), event, contract.labels))
            if out.probs is not None:
                rows.append(out.probs)
        probs = np.stack(rows) if rows else np.zeros((0, len(contract.labels)), np.float32)
        decided = rt.policy.decide(event, photos, probs, contract.labels)
        cat = decided.category
        verdicts.append(
            Verdict(
                listing_id=event.listing_id,
                listing_version=event.listing_version,
                declared_category=event.declared_category,
                decision=decided.decision,
                reasons=decided.reasons,
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
    events: Sequence[ListingEvent], outcomes: dict[tuple[int, int], Photo], rt: Runtime
) -> dict[tuple[int, int], PhotoMatches]:
    """Image-bank and duplicate-photo matches of the photos that have a PDQ hash, by
    (event, photo); the outcomes are left as they are (the verdict's photo merges both)."""
    if rt.banks is None:
        return {}
    keys, hashes, where = [], [], []
    for (n, i), out in outcomes.items():
        if out.pdq is not None and out.probs is not None:
            event = events[n]
            keys.append(PhotoKey(event.listing_id, event.listing_version, i, event.seller_id))
            hashes.append(out.pdq)
            where.append((n, i))
    if not hashes:
        return {}
    return dict(zip(where, rt.banks.check(keys, hashes), strict=True))


def _photo_result(
    index: int,
    ref: str,
    out: Photo,
    matched: PhotoMatches | None,
    event: ListingEvent,
    labels: Sequence[str],
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
        detectors={**out.detectors, **(matched.scores if matched else {})},
        evidence=dict(matched.evidence) if matched else {},
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
        try:
            events.append(parse_event(event_of(body), labels))
        except EventError as exc:
            rejected.append(rejected_body(body, str(exc)))
    return events, rejected


def handle_messages(bodies: Sequence[dict[str, Any]], rt: Runtime, source: Source) -> BatchOutcome:
    """Parse, moderate and store one batch of broker messages in one transaction."""
    if rt.verdict_store is None:
        raise ConfigError("this runtime has no verdict store: build it with stores")
    events, rejected = parse_messages(bodies, rt.classifier.contract.labels)
    events = latest_versions(events)
    verdicts = moderate(events, rt, source) if events else []
    rt.verdict_store.save_batch(events, verdicts, rejected)
    return BatchOutcome(verdicts, rejected)
