"""A dependency-free progress bar on standard error."""

from __future__ import annotations

import sys
import time


class Progress:
    """Redraws ``label [#####.....] 45% 9/20 3.1s`` in place on a terminal; on a pipe or file it
    prints a line at most every 10%, and only once a run has taken 2 s, so logs stay short.
    Silent when ``enabled`` is false."""

    QUIET_SECONDS = 2.0

    def __init__(self, label: str, enabled: bool = True, stream=None):
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self._last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        frac = done / total
        elapsed = time.perf_counter() - self.start
        if self.tty:
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r{self.label} [{bar:<30}] {frac:4.0%} {done}/{total} {elapsed:.1f}s")
            if done == total:
                self.stream.write("\n")
            self.stream.flush()
            return
        decile = int(frac * 10)
        if elapsed >= self.QUIET_SECONDS and decile > self._last_decile:
            self._last_decile = decile
            self.stream.write(f"{self.label}: {frac:.0%} ({done}/{total}, {elapsed:.1f}s)\n")
            self.stream.flush()
