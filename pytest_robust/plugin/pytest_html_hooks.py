"""The robustness numbers in pytest-html's report (`pytest --html=report.html`).

Registered by hooks.py only when pytest-html is loaded, since its hooks exist only then;
pytest_html itself is imported only inside the hook that builds the extras. Through its
documented hooks (pytest-html 4.x): six columns in the results table (attack, eps, clean,
robust with its 95% interval, threshold, sanity flags), and per check a detail block and
the picture of the most confidently fooled samples as the row's extras.
"""

from __future__ import annotations

import html
from collections.abc import Generator
from collections.abc import Mapping
from typing import Any

import pytest

from pytest_robust.plugin.keys import RECORD_KEY
from pytest_robust.plugin.keys import REPORT_KEY
from pytest_robust.plugin.keys import RESULT_KEY

# (column type, header): the type names the cells' class (`col-<type>`), which pytest-html
# sorts by.
COLUMNS = (
    ("robustAttack", "Attack"),
    ("robustEps", "eps"),
    ("robustClean", "Clean"),
    ("robustAcc", "Robust [95% CI]"),
    ("robustThreshold", "Threshold"),
    ("robustFlags", "Flags"),
)
# After pytest-html's Result and Test columns.
AT = 2


def pytest_html_results_table_header(cells: list[str]) -> None:
    for offset, (kind, title) in enumerate(COLUMNS):
        cells.insert(AT + offset, f'<th class="sortable" data-column-type="{kind}">{title}</th>')


def pytest_html_results_table_row(report: pytest.TestReport, cells: list[str]) -> None:
    """Every row gets the cells (the table stays rectangular); empty without a check."""
    record = getattr(report, REPORT_KEY, None)
    values = cell_values(record) if record is not None else ("",) * len(COLUMNS)
    for offset, ((kind, _), value) in enumerate(zip(COLUMNS, values, strict=True)):
        cells.insert(AT + offset, f'<td class="col-{kind}">{html.escape(value)}</td>')


def cell_values(record: Mapping[str, Any]) -> tuple[str, ...]:
    from pytest_robust.report.terminal import threshold_text

    lo, hi = record["ci95"]
    flags = [str(f.get("name")) for f in (record.get("details") or {}).get("flags") or []]
    return (
        str(record["attack"]) + (" (targeted)" if record["targeted"] else ""),
        f"{record['eps']:g}" if record["eps"] is not None else "-",
        f"{record['clean_acc']:.3f}",
        f"{record['robust_acc']:.3f} [{lo:.3f}, {hi:.3f}]",
        threshold_text(record),
        ", ".join(flags) or "-",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """The call report's extras, made where the check ran (on an xdist worker they travel
    with the report): the detail block, then the fooled samples' picture."""
    report = yield
    record = item.stash.get(RECORD_KEY, None)
    result = item.stash.get(RESULT_KEY, None)
    if report.when != "call" or record is None or result is None:
        return report
    from pytest_html import extras

    added = [extras.html(detail_block(record))]
    # The picture only for a page pytest-html writes: examples are also kept for our own
    # HTML report, and a picture nobody shows costs a second or more to draw.
    writes_page = bool(item.config.getoption("htmlpath", None))
    if writes_page and result.examples and result.check is None:  # fooled some samples
        from pytest_robust.report.html import install_hint
        from pytest_robust.report.html import missing_packages

        missing = missing_packages()
        if missing:
            added.append(extras.html(f"<p>{html.escape(install_hint(missing))}</p>"))
        else:
            picture = examples_picture(result)
            added.append(extras.png(picture, name="fooled samples"))
    # pytest-html reads the attribute (not a declared field of TestReport).
    setattr(report, "extras", [*getattr(report, "extras", []), *added])  # noqa: B010
    return report


def detail_block(record: Mapping[str, Any]) -> str:
    """The full attack and every number of the check, and each sanity flag with its fix."""
    from pytest_robust.report.terminal import params_text
    from pytest_robust.report.terminal import threshold_text

    lo, hi = record["ci95"]
    eps = f" eps={record['eps']:g}" if record["eps"] is not None else ""
    parts = [
        f"{record['attack']}{eps} {params_text(record)}".strip(),
        f"n={record['n']}",
        f"clean_acc {record['clean_acc']:.3f}",
        f"robust_acc {record['robust_acc']:.3f} [95% CI {lo:.3f}, {hi:.3f}]",
        f"success_rate {record['success_rate']:.3f}",
        f"threshold {threshold_text(record)}",
        f"status {record['status']}",
    ]
    text = f"<p><strong>robustness</strong>: {html.escape('; '.join(parts))}</p>"
    flags = (record.get("details") or {}).get("flags") or []
    items = [
        f"<li>{html.escape(str(f.get('severity')))} {html.escape(str(f.get('name')))}: "
        f"{html.escape(str(f.get('message')))}. Fix: {html.escape(str(f.get('fix')))}</li>"
        for f in flags
    ]
    if items:
        text += f"<p>sanity flags:</p><ul>{''.join(items)}</ul>"
    return f'<div class="robust-detail">{text}</div>'


def examples_picture(result: Any) -> str:
    """The fooled samples as base64 PNG (what pytest-html's png extra takes)."""
    from pytest_robust.engine.examples import encode
    from pytest_robust.report.pictures import examples_figure

    uri = examples_figure(encode(list(result.examples), result.bounds))
    return (uri or "").partition("base64,")[2]
