#!/usr/bin/env python
"""Render a parity report to HTML and screenshot it with headless Chromium (Debian's ``chromium``).

    # from a report written by `segdeploy check ... --report report.json`
    python scripts/screenshot_report.py --report report.json --out docs/report_screenshot.png

    # or run the check first (same arguments as `segdeploy check`, after --check)
    python scripts/screenshot_report.py --out docs/report_screenshot.png --html report.html \\
        --check --reference examples/shapes_unet.pt2 --candidate out/model.onnx \\
                --data calibration/shapes/val/images --masks calibration/shapes/val/masks --max-miou-drop 0.5

Needs ``chromium`` on PATH (``apt-get install -y chromium``) or ``--browser PATH``. The browser runs with a
throw-away profile, no network services and no sandbox (CI containers run as root). Prints the HTML and PNG
paths and the screenshot size as JSON. Exit 1 with a one-line message when the browser is missing or fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(explicit: str | None) -> str | None:
    if explicit:
        return explicit if Path(explicit).exists() or shutil.which(explicit) else None
    for name in BROWSERS:
        p = shutil.which(name)
        if p:
            return p
    return None


def screenshot(browser: str, html_path: Path, png_path: Path, width: int, height: int, timeout: float = 180) -> None:
    """Headless screenshot of ``html_path`` at ``width`` x ``height`` CSS pixels into ``png_path``."""
    with tempfile.TemporaryDirectory(prefix="segdeploy-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png_path}",
               f"--window-size={width},{height}", html_path.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not png_path.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{browser} exited {proc.returncode}: {tail[0]}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    check_args: list[str] | None = None
    if "--check" in argv:
        i = argv.index("--check")
        argv, check_args = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", help="JSON report from `segdeploy check --report` (omit with --check)")
    p.add_argument("--html", help="where to write the HTML (default: beside --out, .html)")
    p.add_argument("--out", required=True, help="screenshot PNG path")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2000)
    p.add_argument("--browser", help="browser executable (default: chromium on PATH)")
    a = p.parse_args(argv)

    from segdeploy.errors import SegdeployError
    from segdeploy.parity.html_report import write_html_report
    from segdeploy.parity.report_json import read_report

    browser = find_browser(a.browser)
    if browser is None:
        print("error: no chromium found; apt-get install -y chromium, or pass --browser PATH", file=sys.stderr)
        return 1
    out = Path(a.out)
    html_path = Path(a.html) if a.html else out.with_suffix(".html")
    try:
        if check_args is not None:
            from segdeploy.cli import main as cli_main

            report_path = html_path.with_suffix(".json")
            rc = cli_main(["check", *check_args, "--report", str(report_path)])
            if rc not in (0, 3):  # 3 = gate tripped: the report is still written and worth a look
                print(f"error: segdeploy check exited {rc}", file=sys.stderr)
                return 1
        elif a.report:
            report_path = Path(a.report)
        else:
            print("error: give --report REPORT.json or --check <segdeploy check arguments>", file=sys.stderr)
            return 1
        write_html_report(read_report(report_path), html_path)
    except SegdeployError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return e.exit_code
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        screenshot(browser, html_path, out, a.width, a.height)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        print(f"error: screenshot failed: {e}", file=sys.stderr)
        return 1
    from PIL import Image

    with Image.open(out) as im:
        size = im.size
    print(json.dumps({"html": str(html_path), "png": str(out), "size": list(size), "browser": browser}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
