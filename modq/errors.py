"""The one exception tree: what to retry, what to record as a permanent failure, and what
belongs to a single photo.

    ModqError
    ├── RetryableError            the same work may succeed later
    │   ├── StoreUnavailable       PostgreSQL unreachable, transaction failed transiently
    │   ├── BrokerUnavailable      Redis (the broker) unreachable
    │   └── PhotoFetchRetryable    timeouts, connection errors, HTTP 5xx   (also a PhotoError)
    ├── PermanentError            retrying cannot help: record the reason and move on
    │   ├── ConfigError            settings, model or policy file missing or inconsistent
    │   │   └── ModelContractError the ONNX file's metadata is missing or contradictory
    │   ├── InferenceError         ONNX Runtime failed on a batch
    │   ├── EventError             a malformed listing event
    │   ├── NotFoundError          a named thing (bank, job, listing) does not exist
    │   ├── UsageError             a request that cannot be answered as asked
    │   ├── BackfillError          a backfill job cannot run as asked
    │   ├── ReviewError            a moderator's action cannot be applied (lease lost, bad input)
    │   └── TrainingError          modq-train cannot go on (missing data, bad export)
    └── PhotoError                one photo is unusable; `code` is the machine-readable reason
        ├── PhotoFetchError        ├── PhotoFetchRetryable, PhotoForbiddenError
        ├── PhotoTooLargeError     ├── PhotoDecodeError, PhotoBlankError
        └── DetectorError

Third-party exceptions (SQLAlchemy, kombu, ONNX Runtime, httpx, Pillow) are translated where
modq calls them, with `raise ... from exc`, so the rest of the code reasons only about these.
"""

from __future__ import annotations


class ModqError(Exception):
    """Base of every error modq raises on purpose."""


class RetryableError(ModqError):
    """Transient: the same work may succeed later (database down, HTTP 5xx, timeouts)."""


class PermanentError(ModqError):
    """Retrying cannot help: record the failure with its reason and move on."""


class ConfigError(PermanentError):
    """Settings, model or policy file are missing or inconsistent."""


class ModelContractError(ConfigError):
    """The ONNX file lacks, or contradicts, the metadata the worker relies on."""


class InferenceError(PermanentError):
    """ONNX Runtime failed to run the model on a batch."""


class EventError(PermanentError):
    """A listing event is malformed or names something modq does not know."""


class NotFoundError(PermanentError):
    """A named thing (an image bank, a backfill job, a listing) does not exist."""


class UsageError(PermanentError):
    """A request that cannot be answered as asked (an unknown decision, an empty comparison)."""


class BackfillError(PermanentError):
    """A backfill job cannot run as asked: already running, or started with another selection."""


class ReviewError(PermanentError):
    """A moderator's action cannot be applied: the lease expired or was taken, bad input."""


class TrainingError(PermanentError):
    """`modq-train` cannot go on: missing data, an export that fails its parity check."""


class StoreUnavailable(RetryableError):
    """PostgreSQL could not be reached or the transaction failed for a transient reason."""


class BrokerUnavailable(RetryableError):
    """The broker (Redis) could not be reached to publish or to count a queue."""


class PhotoError(ModqError):
    """A single photo could not be used. `code` is the machine-readable reason."""

    code = "image_unreadable"


class PhotoFetchError(PhotoError):
    """The photo bytes could not be obtained (missing file, HTTP error, timeout)."""


class PhotoFetchRetryable(PhotoFetchError, RetryableError):
    """A fetch failure that may pass: timeouts, connection errors, HTTP 5xx."""


class PhotoForbiddenError(PhotoFetchError, PermanentError):
    """The reference points somewhere modq may not read (outside image roots, private host)."""


class PhotoTooLargeError(PhotoError, PermanentError):
    """Over the byte cap or the pixel cap (decompression bomb)."""


class PhotoDecodeError(PhotoError, PermanentError):
    """Bytes that are not a decodable image: truncated, empty, another format."""


class PhotoBlankError(PhotoError, PermanentError):
    """A photo that shows nothing: (almost) uniformly black or white."""

    code = "image_blank"


class DetectorError(PhotoError):
    """A detector could not score one photo; the listing is still moderated."""

    code = "detector_error"
