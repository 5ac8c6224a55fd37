"""Re-take the HTML report's screenshots in docs/images from a real run of the digits example.

    python docs/report_screenshots.py                 # runs pytest examples/digits first
    python docs/report_screenshots.py --html r.html   # or screenshots an existing report

Needs the `report` extra and Chromium (Debian's `chromium`, or CHROMIUM=/path/to/it). Writes
report-digits-top.png (the top of the page: totals, run details, the overview table) and
report-digits-curve.png (the card of test_pgd_curve: its table, the eps curve with its
thresholds and the first fooled samples). A card is shot alone by hiding the rest of the
page (a copy of the report with one more style rule), since headless Chromium's screenshot
always starts at the top of the page.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
WIDTH = 1280


def chromium() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not found:
        sys.exit("Chromium not found: install it (apt-get install chromium) or set CHROMIUM")
    return found


def run_digits(html: Path) -> None:
    command = [sys.executable, "-m", "pytest", "examples/digits", "-q", "-p", "no:cacheprovider"]
    # The thread count the docs' numbers were made with (docs/outputs-machine.json): the
    # digits CNN trains other weights with another count, and the page would then show
    # numbers the README's table does not.
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    subprocess.run([*command, f"--robust-report=html:{html}"], cwd=ROOT, check=True, env=env)


def shoot(page: Path, out: Path, height: int) -> None:
    subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",  # every picture decoded before the shot
            f"--screenshot={out}",
            # Taller than kept: the bottom tiles are sometimes left unpainted.
            f"--window-size={WIDTH},{height + 300}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
    )
    # A 256-colour palette: a third of the bytes, the same look (a page has few colours).
    from PIL import Image

    shot = Image.open(out).convert("RGB").crop((0, 0, WIDTH, height))
    shot.quantize(256).save(out, optimize=True)
    print(f"wrote {out}")


def only_card(html: str, test: str) -> str:
    """The report with every part of the page but the card of `test` hidden."""
    card = re.search(rf'<section class="card" id="([\w-]+)">\s*<h2>{re.escape(test)}</h2>', html)
    if card is None:
        sys.exit(f"no card for {test} in the report")
    rule = f"<style>main > :not(#{card[1]}) {{ display: none !important; }}</style>"
    return html.replace("</head>", rule + "</head>", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, help="an existing report of the digits example")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        html = args.html or Path(tmp) / "robust.html"
        if args.html is None:
            run_digits(html)
        shoot(html.resolve(), IMAGES / "report-digits-top.png", 1560)
        card = Path(tmp) / "card.html"
        card.write_text(only_card(html.read_text(), "test_robustness.py::test_pgd_curve"))
        shoot(card, IMAGES / "report-digits-curve.png", 1500)


if __name__ == "__main__":
    main()
