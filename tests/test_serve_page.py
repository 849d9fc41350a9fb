"""The microphone page of mal serve in headless Chromium, with a wav file as the microphone:
it connects, enhanced audio comes back and plays, no console errors, no request off the server."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf
import torch

from mal.models import build_model
from mal.reports.pages.browser import Browser, unavailable
from mal.serve.server import Background, Server


def noisy_wav(path, seconds: float = 4.0, rate: int = 48000):
    """A vowel-like tone in noise: the fake microphone (Chromium loops it)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, (0.1 * voice + 0.03 * rng.standard_normal(len(t))).astype(np.float32), rate, subtype="PCM_16")
    return path


def wait_for(browser, expression: str, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = browser.evaluate(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true within {seconds} s: {expression}; state {browser.evaluate('JSON.stringify(window.malState)')}")


def test_page_streams_the_microphone_through_the_model(tmp_path):
    reason = unavailable()
    if reason:
        pytest.skip(f"headless Chromium test skipped: {reason}")
    torch.manual_seed(0)
    model = build_model({"preset": "deepfilternet_16k", "conv_ch": 8, "emb_hidden": 32, "df_hidden": 32}).eval()
    mic = noisy_wav(tmp_path / "mic.wav")
    flags = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}")
    with Background(Server({"tiny": model})) as url, Browser(width=900, height=700, flags=flags) as browser:
        browser.open(f"{url}/?autostart=1")
        wait_for(browser, "window.malState.ready !== null")
        wait_for(browser, "window.malState.received > window.malState.ready.rate")  # over a second back
        wait_for(browser, "window.malState.played > 3 && window.malState.rtt !== null")
        state = browser.evaluate("window.malState")
        assert state["errors"] == [] and browser.errors == []
        assert state["ready"]["model"] == "tiny" and state["sent"] > 0
        assert 0 < state["rtt"] < 2000  # ms: send to matching output, latency excluded
        assert browser.evaluate("document.getElementById('latency').textContent").endswith("ms")
        assert all(u.startswith(url) or u.startswith("ws://127.0.0.1") or u.startswith("data:") for u in browser.requests), browser.requests
