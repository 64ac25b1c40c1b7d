"""PDQ hash lists as trust-and-safety exchanges hand them out, read and written.

Three formats, told apart by their content:

- HMA / python-threatexchange "signal" lines: `pdq <64 hex digits>`; anything after the hash
  on the line is kept as the note.
- CSV with a header row naming a hash column (`hash`, `pdq`, `signal`, ...) and optionally
  `content_id` (`id`, `content id`), `note` (`notes`, `description`), `quality`, `enabled`.
- Plain lines of 64 hex digits.

Blank lines and lines starting with `#` are skipped. A bad line never stops the others: it is
reported as "line N: why" and the rest are kept.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from modq.detectors.hashing import parse_hex

FORMATS = ("csv", "hma", "hex")
# Imported hashes carry no PDQ quality unless the list gives one: the publisher vetted them.
IMPORTED_QUALITY = 100
CSV_COLUMNS = ("hash", "content_id", "note", "quality", "enabled")
_ALIASES = {
    "hash": ("hash", "pdq", "pdq_hash", "signal", "signal_value", "hash_value"),
    "content_id": ("content_id", "id", "contentid", "content"),
    "note": ("note", "notes", "description", "comment"),
    "quality": ("quality", "pdq_quality"),
    "enabled": ("enabled",),
}
_TRUE, _FALSE = {"1", "true", "yes", "y", "t", ""}, {"0", "false", "no", "n", "f"}


@dataclass(frozen=True)
class ListedHash:
    hash: bytes
    content_id: str | None = None
    note: str | None = None
    quality: int = IMPORTED_QUALITY
    enabled: bool = True


@dataclass
class ParsedList:
    format: str
    entries: list[ListedHash] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "line N: why"
    duplicates: int = 0  # lines repeating a hash already read (the first is kept)
    seen: set[bytes] = field(default_factory=set, repr=False)


def _data_lines(text: str) -> list[tuple[int, str]]:
    return [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def parse_hash_list(text: str) -> ParsedList:
    """Every hash of `text` in any of the three formats, with one error per bad line."""
    text = text.lstrip("\ufeff")
    lines = _data_lines(text)
    if lines and "," in lines[0][1]:
        parsed = ParsedList("csv")
        _parse_csv(text, parsed)
    else:
        hma = any(line.lower().startswith("pdq") for _, line in lines)
        parsed = ParsedList("hma" if hma else "hex")
        for n, line in lines:
            try:
                _add(parsed, _parse_line(line))
            except ValueError as exc:
                parsed.errors.append(f"line {n}: {exc}")
    return parsed


def _add(parsed: ParsedList, entry: ListedHash) -> None:
    if entry.hash in parsed.seen:
        parsed.duplicates += 1
    else:
        parsed.seen.add(entry.hash)
        parsed.entries.append(entry)


def _parse_line(line: str) -> ListedHash:
    tokens = line.split(None, 2)
    if tokens[0].lower() == "pdq":
        if len(tokens) < 2:
            raise ValueError("`pdq` without a hash")
        note = tokens[2].strip() if len(tokens) > 2 else None
        return ListedHash(parse_hex(tokens[1]), note=note or None)
    if len(tokens) > 1:
        kind = tokens[0] if len(tokens[0]) < 20 else tokens[0][:20] + "..."
        raise ValueError(
            f"expected `pdq <hash>` or a bare 64-hex-digit hash, got {kind!r} and more"
            " (only PDQ hashes can be imported)"
        )
    return ListedHash(parse_hex(tokens[0]))


def _parse_csv(text: str, parsed: ParsedList) -> None:
    """CSV read as a whole (quoted fields may hold commas and newlines); rows are reported by
    the line they end on."""
    reader = csv.reader(io.StringIO(text))
    rows = (
        (reader.line_num, row)
        for row in reader
        if any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")
    )
    header_line, header = next(rows)
    names = [h.strip().lower().replace(" ", "_").replace("-", "_") for h in header]
    where = {
        key: next((names.index(a) for a in aliases if a in names), None)
        for key, aliases in _ALIASES.items()
    }
    if where["hash"] is None:
        parsed.errors.append(
            f"line {header_line}: the CSV header names no hash column"
            f" (one of {', '.join(_ALIASES['hash'])}): {','.join(header)[:120]!r}"
        )
        return
    for n, row in rows:

        def cell(key: str, row: list[str] = row) -> str | None:
            i = where[key]
            return row[i].strip() if i is not None and i < len(row) and row[i].strip() else None

        try:
            if cell("hash") is None:
                raise ValueError("no hash in the hash column")
            quality, enabled = cell("quality"), (cell("enabled") or "").lower()
            if enabled not in _TRUE | _FALSE:
                raise ValueError(f"enabled must be true or false, got {enabled!r}")
            entry = ListedHash(
                parse_hex(cell("hash") or ""),
                content_id=cell("content_id"),
                note=cell("note"),
                quality=int(quality) if quality is not None else IMPORTED_QUALITY,
                enabled=enabled in _TRUE,
            )
            if not 0 <= entry.quality <= 100:
                raise ValueError(f"quality must be 0-100, got {entry.quality}")
            _add(parsed, entry)
        except ValueError as exc:
            parsed.errors.append(f"line {n}: {exc}")


def format_hash_list(entries: Iterable[ListedHash], fmt: str) -> str:
    """`entries` as a file: `csv` keeps everything (disabled hashes included, marked), `hma`
    and `hex` list the enabled hashes only."""
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for e in entries:
            row = [
                e.hash.hex(),
                e.content_id or "",
                e.note or "",
                e.quality,
                str(e.enabled).lower(),
            ]
            writer.writerow(row)
        return buf.getvalue()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    prefix = "pdq " if fmt == "hma" else ""
    return "".join(f"{prefix}{e.hash.hex()}\n" for e in entries if e.enabled)
