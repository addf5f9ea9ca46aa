"""report.html in a real browser: headless Chromium loads it with no console errors, every image
decodes (the page's own load handler sets data-images-ok), and a screenshot is written."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from cnnsweep.analysis.run import analyze_target

pytestmark = pytest.mark.slow
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    try:  # Debian's package; needs root and the network to the Debian mirror
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=600, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"chromium is not installed and `apt-get install -y chromium` failed ({err})")
    return shutil.which("chromium") or pytest.skip("chromium not found after installing it")


def test_report_renders_without_console_errors(digits_checkpoint, tmp_path):
    browser = _chromium()
    out = tmp_path / "report"
    analyze_target(digits_checkpoint, split="valid", output=out, class_image_steps=5)
    url = (out / "report.html").resolve().as_uri()
    common = FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *common, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-images-ok="yes"' in dom.stdout, dom.stdout[:500]
    for bad in ("Uncaught", "ERROR:CONSOLE", "console(" ):
        assert bad not in dom.stderr, dom.stderr[-2000:]
    shot = tmp_path / "report.png"
    subprocess.run([browser, *common, f"--screenshot={shot}", "--window-size=1280,4000", url],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
