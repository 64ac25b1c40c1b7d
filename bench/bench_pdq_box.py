"""PDQ hashes of per-category decodes (issue 14) against the old hashes, and across decode sizes.

    .venv/bin/python bench/bench_pdq_box.py [--upscale 4]

For every listings-v1 val photo, upscaled `--upscale` times and re-encoded as a JPEG (the
shared photos are at most 600 px, far below the camera photos a marketplace receives, where
the decode size matters), it prints the Hamming distance distribution between:
- the hash of a decode at 256 px (nudity's need, longer side kept >= 512 px for PDQ) and of
  one at 736 px (OCR's need): what the per-category decode size changes;
- that hash and the old one (`pdq_hash` of the 736-px decode, capped at 512 px), which is
  what hashes stored before this change were made with;
- for scale, the old hash against hashes of the same photo in a 256-px box;
and the hashing time. Matching tolerates distance 31.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from modq.detectors.hashing import hamming, pdq_hash
from modq.domain.preprocess import PreprocessSpec
from modq.pipeline.decode import decode_image, photo_hash
from modq.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upscale", type=int, default=4)
    args = parser.parse_args()
    settings = get_settings()
    paths = sorted((settings.datasets_dir / "listings-v1" / "val").glob("*/*.jpg"))
    sizes: list[int] = []
    old_new: list[int] = []
    box256: list[int] = []
    t_old = t_new = 0.0
    for path in paths:
        img = Image.open(path).convert("RGB")
        img = img.resize((img.width * args.upscale, img.height * args.upscale))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        data = buf.getvalue()
        small = decode_image(data, PreprocessSpec(resize=256), settings.max_image_pixels, 512)
        large = decode_image(data, PreprocessSpec(resize=736), settings.max_image_pixels)
        t0 = time.perf_counter()
        old = pdq_hash(large)
        t1 = time.perf_counter()
        new_large = photo_hash(large, data, settings.max_image_pixels)
        t2 = time.perf_counter()
        new_small = photo_hash(small, data, settings.max_image_pixels)
        t_old, t_new = t_old + t1 - t0, t_new + time.perf_counter() - t2
        sizes.append(hamming(new_small.bytes, new_large.bytes))
        old_new.append(hamming(old.bytes, new_small.bytes))
        box = small.copy()
        box.thumbnail((256, 256), Image.Resampling.BILINEAR)
        box256.append(hamming(old.bytes, pdq_hash(box).bytes))
    for name, d in (
        ("256-px vs 736-px decode", sizes),
        ("new vs old hash", old_new),
        ("old hash vs a 256-px box", box256),
    ):
        a = np.array(d)
        print(
            f"{name}: {len(a)} photos, distance mean {a.mean():.2f}, p99 "
            f"{np.quantile(a, 0.99):.0f}, max {a.max()}, over 31: {(a > 31).sum()}"
        )
    n = len(paths)
    print(
        f"hash time: old {1e3 * t_old / n:.2f} ms/photo, fixed box {1e3 * t_new / n:.2f} ms/photo"
    )


if __name__ == "__main__":
    main()
