"""Regenerate the screenshots in docs/, photographed in headless Chromium:

- listening_report.png: a small `mal compare` report on four VoiceBank-DEMAND test pairs of
  ../shared/data (Noisy, CMGAN, MP-SENet, SE-VCAE);
- serve_page.png: the microphone page of `mal serve` (the default model, DeepFilterNet3) with a
  noisy VoiceBank-DEMAND test file as the microphone (Chromium's fake capture), streaming.

    .venv/bin/python docs/make_screenshot.py [listening|serve ...]   # needs chromium and the dev extra
"""

from __future__ import annotations

import sys
import tempfile
import time
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


def save(shot: Path, name: str) -> None:
    """Write docs/NAME as a palette PNG 1100 px wide."""
    image = Image.open(shot).convert("RGB")
    image = image.resize((1100, round(image.height * 1100 / image.width)), Image.LANCZOS)
    target = REPO / "docs" / name
    image.quantize(colors=128).save(target, optimize=True)
    print(f"wrote {target} ({target.stat().st_size // 1000} kB)")


def listening_report() -> None:
    """Build the report and photograph its listening section."""
    with tempfile.TemporaryDirectory() as tmp:
        report = build(Path(tmp))
        with Browser(width=1280, height=880) as browser:
            browser.open((report / "index.html").as_uri())
            browser.evaluate("document.getElementById('listen').scrollIntoView()")
            browser.press("3")  # CMGAN selected, as a listener would
            save(browser.screenshot(Path(tmp) / "shot.png"), "listening_report.png")


def serve_page(seconds: float = 6.0) -> None:
    """Serve the default model, open the microphone page with a noisy file as the microphone, let it
    stream a few seconds (meters and round-trip latency filled in) and photograph it."""
    from mal.inference import load_model
    from mal.serve.server import Background, Server

    mic = DATA / "noisy" / f"{FILES[0]}.wav"
    flags = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}")
    with tempfile.TemporaryDirectory() as tmp, Background(Server({"default": load_model(None).eval()})) as url, \
            Browser(width=1000, height=600, flags=flags) as browser:
        browser.open(f"{url}/?autostart=1")
        deadline = time.monotonic() + 60
        while not browser.evaluate("window.malState.played > 3 && window.malState.rtt !== null"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the page did not stream: {browser.evaluate('JSON.stringify(window.malState)')}")
            time.sleep(0.2)
        time.sleep(seconds)  # meters and latency settle
        if errors := browser.errors + browser.evaluate("window.malState.errors"):
            raise RuntimeError(f"the page reported errors: {errors}")
        save(browser.screenshot(Path(tmp) / "shot.png"), "serve_page.png")


SHOTS = {"listening": listening_report, "serve": serve_page}


def main_screenshot(names: list[str]) -> int:
    """Take the named screenshots (all by default)."""
    if reason := unavailable():
        print(f"cannot take the screenshot: {reason}", file=sys.stderr)
        return 1
    for name in names or list(SHOTS):
        if name not in SHOTS:
            print(f"unknown screenshot {name!r}; choose from {', '.join(SHOTS)}", file=sys.stderr)
            return 2
        SHOTS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main_screenshot(sys.argv[1:]))
