"""Progress for long commands: a tqdm bar on a terminal, plain lines in a log file or a pipe.

tqdm redraws its bar with carriage returns, which a log file keeps as one ever-growing line;
and with ``disable=None`` it prints nothing at all off a terminal. Off a terminal we print a
plain ``desc: done/total unit, rate, ETA`` line every ``every_seconds`` instead.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


class Progress:
    """Counts finished items; ``update()``, ``write()`` and ``close()`` like a tqdm bar."""

    def __init__(self, total: int, desc: str, unit: str = "file", initial: int = 0, quiet: bool = False,
                 stream: TextIO | None = None, every_seconds: float = 10.0) -> None:
        self.total, self.desc, self.unit, self.done = total, desc, unit, initial
        self.stream = stream or sys.stderr
        self.quiet, self.every_seconds = quiet, every_seconds
        self._start = self._last = time.monotonic()
        self._start_count = initial
        self._bar = None
        if not quiet and _is_terminal(self.stream):
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more finished items."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if not self.quiet and (now - self._last >= self.every_seconds or self.done == self.total):
            self._last = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        """``desc: done/total unit (percent), rate, ETA``."""
        elapsed = (now or time.monotonic()) - self._start
        counted = self.done - self._start_count
        rate = counted / elapsed if elapsed > 0 else 0.0
        percent = 100 * self.done / self.total if self.total else 100.0
        plural = self.unit + ("es" if self.unit.endswith(("s", "sh", "ch", "x")) else "s")
        text = f"{self.desc}: {self.done}/{self.total} {plural} ({percent:.0f}%)"
        if rate > 0:
            eta = (self.total - self.done) / rate
            text += f", {rate:.2f} {self.unit}/s, ETA {_clock(eta)}"
        return text

    def write(self, message: str) -> None:
        """Print ``message`` without breaking the bar."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar (a terminal) or do nothing (plain lines are already out)."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
