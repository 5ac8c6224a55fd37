"""The terminal table: one row per executed robustness check."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

THRESHOLD_SIGNS = {
    "min_acc": ">=",
    "max_success": "<=",
    "max_drop": "<=",
    "max_confidence": "<=",
    "max_zero_frac": "<=",
    "min_median": ">=",
}


def _threshold(record: Mapping[str, Any]) -> str:
    parts = [f"{k}{THRESHOLD_SIGNS[k]}{v:g}" for k, v in record["thresholds"].items()]
    return " ".join(parts) or "-"


def _short_names(nodeids: Sequence[str]) -> list[str]:
    """'file.py::test' without directories, unless two directories hold the same file name."""
    paths = {nodeid.partition("::")[0] for nodeid in nodeids}
    basenames = [path.rsplit("/", 1)[-1] for path in paths]
    unique = {b for b in basenames if basenames.count(b) == 1}
    names = []
    for nodeid in nodeids:
        path, sep, rest = nodeid.partition("::")
        base = path.rsplit("/", 1)[-1]
        names.append(f"{base}{sep}{rest}" if base in unique else nodeid)
    return names


def _params(record: Mapping[str, Any]) -> str:
    items = [
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in record["params"].items()
    ]
    norm = [record["norm"]] if record["eps"] is not None else []  # no ball, no norm
    return " ".join([*norm, *items])


def _n(record: Mapping[str, Any]) -> str:
    """n, or 'n/N early' when decide_early stopped after the first n of N samples."""
    decided = record.get("details", {}).get("decided_early")
    return f"{record['n']}/{decided['of']} early" if decided else str(record["n"])


def format_table(records: Sequence[Mapping[str, Any]], detailed: bool = False) -> list[str]:
    """Rows aligned in columns; `detailed` adds the attack parameters and the time."""
    header = ["test", "attack", "eps", "n", "clean", "robust [95% CI]", "threshold", "status"]
    if detailed:
        header[2:2] = ["params"]
        header.append("time")
    rows = []
    names = _short_names([r["nodeid"] for r in records])
    for r, name in zip(records, names, strict=True):
        lo, hi = r["ci95"]
        row = [
            name,
            r["attack"] + (" (targeted)" if r["targeted"] else ""),
            f"{r['eps']:g}" if r["eps"] is not None else "-",
            _n(r),
            f"{r['clean_acc']:.3f}",
            f"{r['robust_acc']:.3f} [{lo:.3f}, {hi:.3f}]",
            _threshold(r),
            r["row_status"] + (" (cached)" if r.get("details", {}).get("cached") else ""),
        ]
        if detailed:
            row[2:2] = [_params(r)]
            row.append(f"{r['duration_s']:.2f}s")
        rows.append(row)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    numeric = {"eps", "n", "clean", "time"}

    def fmt(line: list[str]) -> str:
        cells = [
            cell.rjust(w) if name in numeric else cell.ljust(w)
            for cell, w, name in zip(line, widths, header, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [fmt(header), *[fmt(row) for row in rows]]


def format_totals(records: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["row_status"]] = counts.get(r["row_status"], 0) + 1
    parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    noun = "check" if len(records) == 1 else "checks"
    return f"{len(records)} robustness {noun}: {parts}"
