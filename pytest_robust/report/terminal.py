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


def threshold_text(record: Mapping[str, Any]) -> str:
    parts = [f"{k}{THRESHOLD_SIGNS[k]}{v:g}" for k, v in record["thresholds"].items()]
    return " ".join(parts) or "-"


def short_names(nodeids: Sequence[str]) -> list[str]:
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


def params_text(record: Mapping[str, Any]) -> str:
    items = [
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in record["params"].items()
    ]
    norm = [record["norm"]] if record["eps"] is not None else []  # no ball, no norm
    return " ".join([*norm, *items])


def status_text(record: Mapping[str, Any]) -> str:
    """The row's status, marked when the result came from --robust-cache."""
    cached = record.get("details", {}).get("cached")
    return str(record["row_status"]) + (" (cached)" if cached else "")


def n_text(record: Mapping[str, Any]) -> str:
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
    names = short_names([r["nodeid"] for r in records])
    for r, name in zip(records, names, strict=True):
        lo, hi = r["ci95"]
        row = [
            name,
            r["attack"] + (" (targeted)" if r["targeted"] else ""),
            f"{r['eps']:g}" if r["eps"] is not None else "-",
            n_text(r),
            f"{r['clean_acc']:.3f}",
            f"{r['robust_acc']:.3f} [{lo:.3f}, {hi:.3f}]",
            threshold_text(r),
            status_text(r),
        ]
        if detailed:
            row[2:2] = [params_text(r)]
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


def split_nodeid(nodeid: str) -> tuple[str, str]:
    """('file.py::test', '[case-id]'): the test function and its case (or '')."""
    function, bracket, case = nodeid.partition("[")
    return function, bracket + case


def delta(record: Mapping[str, Any]) -> str:
    """The change of robust_acc against the baseline, when a baseline entry was compared."""
    baseline = record.get("baseline") or {}
    value = baseline.get("delta") if isinstance(baseline, Mapping) else None
    return f"{value:+.3f}" if isinstance(value, (int, float)) else "-"


def flag_note(flag: Mapping[str, Any]) -> str:
    """One line under a row: '! masking: softmax_saturation: <message> — fix: <fix>'."""
    return (
        f"! {flag.get('severity', 'flag')}: {flag.get('name', '?')}: {flag.get('message', '')}"
        f" — fix: {flag.get('fix', '')}"
    )


def format_full(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The full table (--robust-report): grouped by test function, a header line per
    function, one row per case, a note line under a row per sanity flag.

    Returns (line, kind) pairs; kind is 'header', 'function', 'pass', 'fail', 'note' or ''
    so the caller can colour them."""
    header = [
        "case",
        "attack",
        "params",
        "eps",
        "n",
        "clean",
        "robust [95% CI]",
        "threshold",
        "delta",
        "status",
        "time",
    ]
    functions = short_names([split_nodeid(r["nodeid"])[0] for r in records])
    cells: list[list[str]] = []
    for r in records:
        lo, hi = r["ci95"]
        case = split_nodeid(r["nodeid"])[1] or "-"
        cells.append(
            [
                case,
                r["attack"] + (" (targeted)" if r["targeted"] else ""),
                params_text(r),
                f"{r['eps']:g}" if r["eps"] is not None else "-",
                n_text(r),
                f"{r['clean_acc']:.3f}",
                f"{r['robust_acc']:.3f} [{lo:.3f}, {hi:.3f}]",
                threshold_text(r),
                delta(r),
                status_text(r),
                f"{r['duration_s']:.2f}s",
            ]
        )
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    numeric = {"eps", "n", "clean", "delta", "time"}

    def fmt(line: list[str]) -> str:
        aligned = [
            cell.rjust(w) if name in numeric else cell.ljust(w)
            for cell, w, name in zip(line, widths, header, strict=True)
        ]
        return ("  " + "  ".join(aligned)).rstrip()

    out = [(fmt(header), "header")]
    previous = None
    for r, function, row in zip(records, functions, cells, strict=True):
        if function != previous:
            out.append((function, "function"))
            previous = function
        status = r["row_status"]
        out.append((fmt(row), status if status in ("pass", "fail") else ""))
        for flag in (r.get("details") or {}).get("flags") or []:
            out.append(("      " + flag_note(flag), "note"))
        for name, why in ((r.get("details") or {}).get("left_out") or {}).items():
            out.append((f"      {name}: {why}", "note"))
    return out


def format_intervals(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Under the table: robust accuracy in [certified, attacked] wherever a certificate and
    an attack measured the same model, data, norm and eps (report/intervals.py), and a
    note per contradiction. (line, kind) pairs as in format_full; [] when nothing pairs."""
    from pytest_robust.report.intervals import contradiction_text
    from pytest_robust.report.intervals import intervals
    from pytest_robust.report.intervals import model_text

    found = intervals(records)
    if not found:
        return []
    nodeids = [str(r.get("nodeid", "")) for r in records]
    names = dict(zip(nodeids, short_names(nodeids), strict=True))
    header = ["model", "eps", "n", "robust acc in [certified, attacked]", "width", "by"]
    rows = [
        [
            model_text(i),
            f"{i['eps']:g} {i['norm']}",
            str(i["n"]),
            f"[{i['certified']:.3f}, {i['attacked']:.3f}]",
            f"{i['width']:.3f}",
            interval_sources(i),
        ]
        for i in found
    ]
    widths = [max(len(line[k]) for line in [header, *rows]) for k in range(len(header))]
    numeric = {"n", "width"}

    def fmt(line: list[str]) -> str:
        cells = [
            cell.rjust(w) if name in numeric else cell.ljust(w)
            for cell, w, name in zip(line, widths, header, strict=True)
        ]
        return ("  " + "  ".join(cells)).rstrip()

    out = [
        ("robust accuracy intervals (the width is what the evaluation leaves open):", "title"),
        (fmt(header), "header"),
    ]
    for interval, row in zip(found, rows, strict=True):
        out.append((fmt(row), ""))
        for item in interval["contradictions"]:
            out.append(("      ! " + contradiction_text(item, interval["eps"], names), "fail"))
    return out


def interval_sources(interval: Mapping[str, Any]) -> str:
    """'certify-ibp <= pgd, square': what proved the lower end and what set the upper."""
    certified = dict.fromkeys(c["attack"] for c in interval["certificates"])
    attacked = dict.fromkeys(a["attack"] for a in interval["attacks"])
    return f"{', '.join(certified)} <= {', '.join(attacked)}"
