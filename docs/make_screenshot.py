"""Regenerate docs/listening_report.png: a small `mal compare` report on four VoiceBank-DEMAND
test pairs of ../shared/data (Noisy, CMGAN, MP-SENet, SE-VCAE), photographed in headless Chromium.

    .venv/bin/python docs/make_screenshot.py      # needs chromium and the dev extra
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image

from mal.cli import main
from mal.reports.pages.browser import Browser, unavailable

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "vbd-test"
FILES = ["p232_005", "p232_006", "p232_011", "p232_012"]
SYSTEMS = {"Noisy": "noisy", "CMGAN": "CMGAN", "MP-SENet": "MP-SENet", "SE-VCAE": "SE-VCAE"}


def build(work: Path) -> Path:
    """Symlink the subset and run `mal compare` (WB-PESQ, ESTOI, SI-SDR) on it; the report folder."""
    for folder in ("clean", *SYSTEMS.values()):
        (work / folder).mkdir()
        for name in FILES:
            if (DATA / folder / f"{name}.wav").exists():
                (work / folder / f"{name}.wav").symlink_to(DATA / folder / f"{name}.wav")
    out = work / "report"
    main(["compare", "--clean", str(work / "clean"), "--systems", *[f"{k}={work / v}" for k, v in SYSTEMS.items()],
          "--metrics", "pesq,estoi,sisdr", "--title", "VoiceBank-DEMAND test, 4 pairs", "-o", str(out), "--quiet"])
    return out


def main_screenshot() -> int:
    """Build the report and write docs/listening_report.png (palette PNG, 1100 px wide)."""
    if reason := unavailable():
        print(f"cannot take the screenshot: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        report = build(Path(tmp))
        with Browser(width=1280, height=880) as browser:
            browser.open((report / "index.html").as_uri())
            browser.evaluate("document.getElementById('listen').scrollIntoView()")
            browser.press("3")  # CMGAN selected, as a listener would
            shot = browser.screenshot(Path(tmp) / "shot.png")
        image = Image.open(shot).convert("RGB")
        image = image.resize((1100, round(image.height * 1100 / image.width)), Image.LANCZOS)
        target = REPO / "docs" / "listening_report.png"
        image.quantize(colors=128).save(target, optimize=True)
        print(f"wrote {target} ({target.stat().st_size // 1000} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main_screenshot())
