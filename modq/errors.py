"""Exception tree: what to retry and what to record as a permanent failure.

Third-party exceptions are translated at the module boundary (`raise ... from exc`) so the
pipeline only ever reasons about these classes.
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


class EventError(PermanentError):
    """A listing event is malformed or names something modq does not know."""


class BackfillError(PermanentError):
    """A backfill job cannot run as asked: already running, or started with another selection."""


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


class StoreUnavailable(RetryableError):
    """PostgreSQL could not be reached or the transaction failed for a transient reason."""


class ReviewError(PermanentError):
    """A moderator's action cannot be applied: the lease expired or was taken, bad input."""
