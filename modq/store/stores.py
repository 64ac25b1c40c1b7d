"""The SQL stores a worker process is given (`modq.store.interface.Stores`), on one engine."""

from __future__ import annotations

from modq.store.banks import SqlBankStore
from modq.store.database import make_engine
from modq.store.interface import Stores
from modq.store.verdicts import SqlVerdictStore


def open_stores(url: str) -> Stores:
    """The SQL stores on one engine (pool) for `url`; `close()` releases its connections."""
    engine = make_engine(url)
    return Stores(SqlVerdictStore(engine), SqlBankStore(engine), close=engine.dispose)
