"""The ship gate's report (training/compare.py) as markdown: the tables the model card shows."""

from __future__ import annotations

from typing import Any


def _ci(v: float, ci: list[float] | tuple[float, float]) -> str:
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _diff(r: dict[str, Any]) -> str:
    lo, hi = r["diff_ci"]
    return f"{r['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _rate_row(r: dict[str, Any], extra: str = "") -> str:
    return (
        f"| {r['name']} | {r['n']} | {_ci(r['shipped'], r['shipped_ci'])} | "
        f"{_ci(r['candidate'], r['candidate_ci'])} | {_diff(r)} |{extra}"
    )


def _flip(f: dict[str, int]) -> str:
    return f" {f['shipped_only']} | {f['candidate_only']} |"


def markdown(report: dict[str, Any]) -> str:
    a, b = report["shipped"], report["candidate"]
    lines = [
        f"# Ship gate: {b['version']} against {a['version']}",
        "",
        f"- shipped: `{a['path']}` (sha256 {a['sha256'][:12]}…)",
        f"- candidate: `{b['path']}` (sha256 {b['sha256'][:12]}…)",
        f"- photos ({report['split']}): "
        + ", ".join(f"{k} {v}" for k, v in report["photos"].items())
        + f"; unreadable: shipped {report['unreadable']['shipped']}, "
        f"candidate {report['unreadable']['candidate']}",
        f"- policy `{report['policy']}` (shipped, version {report['policy_versions'][0]}), "
        f"`{report['candidate_policy']}` (candidate, version {report['policy_versions'][1]}); "
        f"95% intervals from {report['resamples']} bootstrap resamples, paired for the change",
        *([f"- out-of-fold: {report['out_of_fold']}"] if report["out_of_fold"] else []),
        f"- **verdict: {report['verdict']}**",
        "",
    ]
    for reason in report["refusals"]:
        lines.append(f"  - refused: {reason}")
    head = "| | n | shipped [95%] | candidate [95%] | change [paired 95%] |"
    flips_head = " shipped right, candidate wrong | candidate right, shipped wrong |"
    cat = report["category"]
    lines += [
        "",
        "## Category recall per class (listings-v1 photos)",
        "",
        head + flips_head,
        "|---|---|---|---|---|---|---|",
        _rate_row(cat["top1"], _flip(cat["flips"])),
    ]
    lines += [_rate_row(c["recall"], _flip(c["flips"])) for c in cat["per_class"]]
    lines += ["", "## Category precision per class", "", head, "|---|---|---|---|---|"]
    lines += [_rate_row(c["precision"]) for c in cat["per_class"]]
    pro = report["prohibited"]
    lines += [
        "",
        "## Prohibited photos flagged by their own label (prohibited-v2, policy thresholds)",
        "",
        head + flips_head,
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_rate_row(r, _flip(r["flips"])) for r in pro["own_label"]]
    lines += [
        "",
        "## Benign photos flagged by any detector rule",
        "",
        head,
        "|---|---|---|---|---|",
    ]
    lines += [_rate_row(r) for r in pro["benign_flagged"]]
    li = report["listings"]
    lines += [
        "",
        f"## Listings ({li['listings']}, {li['photos_per_listing']}; "
        f"{li['mis_declared_share']:.0%} mis-declared, half inside the macro category)",
        "",
        head,
        "|---|---|---|---|---|",
    ]
    lines += [_rate_row(r) for r in li["rows"]]
    return "\n".join(lines) + "\n"
