"""Everything the pipeline needs, built once per worker process: the model, the policy,
the detectors, the photo reader, the thread pool and the stores.

Nothing here knows about Celery or SQL: stores arrive through the Protocols of
`modq.store.interface`, so the same runtime serves the worker, `modq classify` and tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from modq.detectors import build_detectors
from modq.detectors.banks import BankConfig, BankMatcher
from modq.detectors.base import Detector
from modq.domain.provenance import classifier_path
from modq.pipeline.fetch import PhotoFetcher
from modq.pipeline.infer import Classifier, choose_providers, session_threads
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.interface import Stores, VerdictStore

Reader = Callable[[str], bytes]


@dataclass
class Runtime:
    """Everything the pipeline needs, built once per worker process."""

    settings: Settings
    classifier: Classifier
    policy: Policy
    read: Reader
    pool: ThreadPoolExecutor
    # Where verdicts go; None where nothing is stored (modq classify).
    verdict_store: VerdictStore | None = None
    detectors: Sequence[Detector] = ()
    banks: BankMatcher | None = None  # PDQ image banks + duplicate photos; needs a store
    # Runs the image detectors' models while the classifier runs (pipeline/photos.py).
    infer_pool: ThreadPoolExecutor | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        stores: Stores | None = None,
        read: Reader | None = None,
        detectors: Sequence[str] | None = None,
    ) -> Runtime:
        """A runtime for `settings`. `stores` (closed with the runtime) are where verdicts
        and photo hashes go; without them nothing is stored and image banks are off. `read`
        replaces the fetcher's policy-checked reader (modq classify reads the files its user
        named); `detectors` overrides the `detectors` setting."""
        # The detectors' models run beside the classifier (pipeline/photos.py): the classifier
        # may use every core; each detector half of them while the fp32 classifier is the
        # longest, every core once the int8 one is shorter than open_nsfw (docs/performance.md).
        int8 = settings.classifier_precision == "int8"
        threads = session_threads(settings.intra_op_threads, 1 if int8 else 2)
        classifier = Classifier.from_path(
            classifier_path(settings),
            settings.model_copy(
                update={"intra_op_threads": session_threads(settings.intra_op_threads, 1)}
            ),
        )
        names = settings.detectors if detectors is None else detectors
        closers: list[Callable[[], None]] = []
        if read is None:
            fetcher = PhotoFetcher(settings)
            read = fetcher.fetch
            closers.append(fetcher.close)
        policy = Policy.load(settings.policy_path)
        providers = choose_providers(settings.providers, settings.gpu)
        banks = None
        if stores is not None and "banks" in names:
            rules = policy.banks
            config = BankConfig(
                rules.max_distance,
                rules.min_quality,
                rules.duplicate_window_days,
                settings.bank_refresh_s,
                settings.photo_index_layout,
            )
            # One photo index per host: every process with this data_dir maps the same files.
            banks = BankMatcher(stores.banks, config, settings.data_dir / "indexes")
        rt = cls(
            settings=settings,
            classifier=classifier,
            policy=policy,
            read=read,
            pool=ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="modq-load"),
            verdict_store=stores.verdicts if stores is not None else None,
            detectors=build_detectors(names, providers, threads, settings.nudity_precision),
            banks=banks,
        )
        rt._closers += [*closers, rt.pool.shutdown]
        if rt.detectors:
            rt.infer_pool = ThreadPoolExecutor(len(rt.detectors), thread_name_prefix="modq-infer")
            rt._closers.append(rt.infer_pool.shutdown)
        if banks is not None:
            rt._closers.append(banks.close)
        if stores is not None:
            rt._closers.append(stores.close)
        return rt

    def close(self) -> None:
        for close in self._closers:
            close()
