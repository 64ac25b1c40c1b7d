"""What `modq-train compare --ship-to` does after a pass: the candidate file replaces the
shipped one and its policy (the thresholds it was judged under) replaces the shipped policy,
each written to a temporary file first so a worker never reads half a file. A refusal raises
before this runs, so a refused candidate is never copied."""

from __future__ import annotations

import shutil
from pathlib import Path

import tomlkit

from modq.policy.policy import Policy
from training import TrainingError


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def ship_candidate(
    candidate: Path, ship_to: Path, candidate_policy: Path | None, policy: Path
) -> list[str]:
    lines = []
    if candidate.resolve() != ship_to.resolve():
        _copy(candidate, ship_to)
        lines.append(f"shipped {candidate} -> {ship_to}")
    if candidate_policy is not None and candidate_policy.resolve() != policy.resolve():
        old, new = Policy.load(policy).version, Policy.load(candidate_policy).version
        if new == old:
            raise TrainingError(
                f"{candidate_policy} has the shipped policy's version {old}: bump it, verdicts "
                "record it"
            )
        _copy(candidate_policy, policy)
        lines.append(f"policy {candidate_policy} -> {policy} (version {old} -> {new})")
    return lines


def bump_version(version: str, today: str) -> str:
    """`YYYY-MM-DD.N`: today's date, N one more than the current one when it is today's."""
    day, _, n = version.partition(".")
    return f"{today}.{int(n) + 1 if day == today and n.isdigit() else 1}"


def write_candidate_policy(
    policy: Path,
    out: Path,
    today: str,
    prohibited: dict[str, dict[str, float]] | None = None,
    match_threshold: float | None = None,
) -> Path:
    """A copy of `policy` with the thresholds chosen for a candidate and a bumped version,
    every other line as it is."""
    doc = tomlkit.parse(policy.read_text())
    doc["version"] = bump_version(str(doc["version"]), today)
    if match_threshold is not None:
        doc["category"]["match_threshold"] = round(float(match_threshold), 6)
    labels = doc.get("labels")
    for label, t in (prohibited or {}).items():
        key = f"prohibited.{label}"
        if labels is None or key not in labels:
            raise TrainingError(f'{policy} has no [labels."{key}"] table to update')
        labels[key]["review"] = t["review"]
        labels[key]["reject"] = t["reject"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(tomlkit.dumps(doc))
    Policy.load(out)  # still a valid policy
    return out
