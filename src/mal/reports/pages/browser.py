"""Open a page in headless Chromium over the DevTools protocol (tests, README screenshot).

Needs a Chromium binary (``$MAL_CHROMIUM``, else ``chromium`` / ``chromium-browser`` /
``google-chrome`` on PATH) and the ``websocket-client`` package (the ``dev`` extra).
Console errors, uncaught exceptions, failed loads and every requested URL are recorded,
so a caller can assert that a page is clean and made no network request.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from mal.util.files import atomic_path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--remote-debugging-port=0")


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None."""
    if os.environ.get("MAL_CHROMIUM"):
        return os.environ["MAL_CHROMIUM"]
    return next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None)


def unavailable() -> str | None:
    """Why a headless browser cannot run here, or None when it can."""
    try:
        import websocket  # noqa: F401  (availability probe: websocket-client is in the [dev] extra)
    except ImportError:
        return "the websocket-client package is not installed (pip install -e '.[dev]')"
    if find_chromium() is None:
        return "no Chromium found: apt-get install chromium (or set MAL_CHROMIUM)"
    return None


class Browser:
    """A headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1400, height: int = 1000, timeout: float = 30.0, flags: tuple[str, ...] = ()) -> None:
        self.width, self.height, self.timeout, self.flags = width, height, timeout, tuple(flags)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self._id = 0
        self._events: list[dict] = []

    def __enter__(self) -> Browser:
        import websocket  # optional (websocket-client, [dev] extra): only the headless browser needs it

        executable = find_chromium()
        if executable is None:
            raise RuntimeError(unavailable())
        self._profile = tempfile.mkdtemp(prefix="mal-chromium-")
        self._process = subprocess.Popen(
            [executable, *FLAGS, *self.flags, f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._port()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as reply:
                targets = json.load(reply)
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            self._socket = websocket.create_connection(url, timeout=self.timeout, suppress_origin=True)
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _port(self) -> int:
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self._process.returncode}")
            if marker.exists() and (text := marker.read_text().split()):
                return int(text[0])
            time.sleep(0.05)
        raise RuntimeError("chromium did not open its DevTools port")

    def __exit__(self, *exc) -> None:
        if getattr(self, "_socket", None) is not None:
            self._socket.close()
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result (events meanwhile are recorded)."""
        self._id += 1
        self._socket.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            self._record(message)

    def _record(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        self._events.append(message)
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.errors.append(f"load failed: {params.get('errorText')}")

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}: no load event within {self.timeout} s")
            self._record(json.loads(self._socket.recv()))

    def evaluate(self, expression: str):
        """Value of a JavaScript expression (promises are awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"javascript error: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def press(self, key: str) -> None:
        """Type one printable key (keydown with its text, keyup)."""
        self.call("Input.dispatchKeyEvent", type="keyDown", key=key, text=key)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key)

    def screenshot(self, path: str | os.PathLike, full_page: bool = False) -> Path:
        """Write a PNG of the viewport (or the whole page) atomically."""
        params: dict = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            params["captureBeyondViewport"] = True
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        path = Path(path)
        with atomic_path(path, suffix=".part.png") as tmp:
            tmp.write_bytes(data)
        return path
