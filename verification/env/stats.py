"""Counters of a long random run, written where the regression asks (``PIMPHONY_STATS``) and summed
over a suite by :mod:`pimphony.verification.regress`."""

from __future__ import annotations

import json
import os
from pathlib import Path

FIELDS = ("cycles", "commands", "responses", "resets", "lost", "duplicated", "illegal", "leaked")
"""What a run counts: clock cycles simulated, channel commands issued, management responses, resets
applied, and the failures by kind (commands lost or duplicated, commands that broke a timing rule or
a hazard, chunks leaked)."""


def record(**counts: int) -> None:
    """Add ``counts`` (keys from :data:`FIELDS`) to the run's statistics file, if one was asked for."""
    unknown = set(counts) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}")
    where = os.environ.get("PIMPHONY_STATS")
    if not where:
        return
    path = Path(where)
    total = read(path)
    for key, value in counts.items():
        total[key] += int(value)
    path.write_text(json.dumps(total))


def read(path: Path) -> dict[str, int]:
    """The counters in ``path`` (zeros when it does not exist)."""
    total = dict.fromkeys(FIELDS, 0)
    if path.is_file():
        total.update({k: int(v) for k, v in json.loads(path.read_text()).items() if k in total})
    return total


def cycles_target() -> int:
    """Clock cycles a stress test must simulate (``PIMPHONY_CYCLES``; 0: not a stress run)."""
    return int(os.environ.get("PIMPHONY_CYCLES", "0"))


RESET_INTERVAL = 50_000
"""A stress run resets at random points, at least once per this many cycles."""
