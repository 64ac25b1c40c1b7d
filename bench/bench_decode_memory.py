"""Peak memory of one batch of huge photos through the pipeline's fetch + decode + model path.

    .venv/bin/python bench/bench_decode_memory.py [--listings 2] [--photos 10] [--side 7000]

Writes `--photos` distinct PNGs of side x side pixels (two flat colours: about 140 KB each on
disk, 49 megapixels each decoded) into a temporary image root, without ever holding one in
memory, then runs `modq.pipeline.moderate.moderate` (no broker, no database) on `--listings`
listings that each show all of them. Prints the process's resident set size after the runtime
is built and warmed up, its peak (ru_maxrss) after the batch, and the decisions.

`--stage load` runs only the loading half (`modq.pipeline.photos._load` on the runtime's
thread pool: fetch, decode, preprocess, every result kept as `infer_photos` keeps it until its
chunk is full), which separates decode memory from ONNX Runtime's activations (these grow with
the photos per ONNX call, `MODQ_INFER_BATCH`).

To measure the code before a change, run the same file against the older tree:

    git archive <commit> | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before .venv/bin/python bench/bench_decode_memory.py
"""

from __future__ import annotations

import argparse
import resource
import struct
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

from modq.domain.events import ListingEvent
from modq.pipeline.moderate import moderate
from modq.pipeline.photos import _load
from modq.pipeline.runtime import Runtime
from modq.settings import Settings


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, side: int, left: bytes, right: bytes) -> None:
    """An 8-bit RGB PNG, left half one colour and right half another, streamed row by row."""
    half = side // 2
    row = b"\x00" + left * half + right * (side - half)  # filter byte 0, then the pixels
    packer = zlib.compressobj(6)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
    path.write_bytes(png + _chunk(b"IEND", b""))


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=2)
    parser.add_argument("--photos", type=int, default=10, help="photos per listing (<= 10)")
    parser.add_argument("--side", type=int, default=7000)
    parser.add_argument("--detectors", default="", help="MODQ_DETECTORS for the run; '' = none")
    parser.add_argument("--stage", choices=["moderate", "load"], default="moderate")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="modq-bench-mem-") as tmp:
        root = Path(tmp)
        refs = []
        for i in range(args.photos):
            path = root / f"huge-{i}.png"
            write_png(path, args.side, bytes((30 + 20 * i, 60, 90)), bytes((200, 180 - 10 * i, 40)))
            refs.append(str(path))
        size_kb = sum(Path(r).stat().st_size for r in refs) / len(refs) / 1024
        small = root / "small.png"
        write_png(small, 400, b"\x50\x60\x70", b"\xc0\xa0\x30")

        settings = Settings(image_roots=[str(root)], detectors=[d for d in [args.detectors] if d])
        rt = Runtime.build(settings)  # no stores: nothing is written
        try:
            category = rt.classifier.contract.labels[0]
            moderate([ListingEvent(listing_id="warm", declared_category=category,
                                   images=[str(small)])], rt)  # fmt: skip
            before, peak_before = rss_mb(), peak_rss_mb()
            events = [
                ListingEvent(listing_id=f"huge-{n}", declared_category=category, images=refs)
                for n in range(args.listings)
            ]
            started = time.perf_counter()
            if args.stage == "moderate":
                verdicts = moderate(events, rt)
                decisions = dict(Counter(v.decision for v in verdicts))
                errors = Counter(p.error_code for v in verdicts for p in v.photos if p.error_code)
            else:
                every = [ref for event in events for ref in event.images]
                loaded = list(rt.pool.map(lambda ir: _load(ir[0], ir[1], rt), enumerate(every)))
                decisions = {}
                errors = Counter(item.error.code for item in loaded if item.error is not None)
            seconds = time.perf_counter() - started
            after, peak = rss_mb(), peak_rss_mb()
        finally:
            rt.close()

    photos = args.listings * args.photos
    print(
        f"{args.listings} listings x {args.photos} PNGs of {args.side}x{args.side} "
        f"({size_kb:.0f} KB each on disk), decode_threads={settings.decode_threads}, "
        f"detectors={settings.detectors or 'none'}, infer_batch={settings.infer_batch}"
    )
    print(f"RSS after warm-up:   {before:8.0f} MB (peak so far {peak_before:.0f} MB)")
    print(f"peak RSS (batch):    {peak:8.0f} MB  (+{peak - peak_before:.0f} MB)")
    print(f"RSS after the batch: {after:8.0f} MB")
    print(f"{photos} photos in {seconds:.1f} s ({args.stage}); decisions {decisions or '-'}")
    print(f"photo errors: {dict(errors) or 'none'}")


if __name__ == "__main__":
    main()
