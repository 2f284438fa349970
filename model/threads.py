"""Threads for the golden model's compiled loops, which release the GIL: as many as this process may
use cores, the caller's own thread included."""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")


@functools.cache
def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


@functools.cache
def pool() -> ThreadPoolExecutor:
    """The threads beside the caller's own (:func:`cores` - 1, at least one); a process forked from one
    that had them makes its own (a fork copies the pool but not its threads)."""
    return ThreadPoolExecutor(max_workers=max(1, cores() - 1), thread_name_prefix="pimphony")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=pool.cache_clear)


def lanes(channels: int) -> list[int]:
    """Channel masks of the threads that execute one module's instructions side by side: the channels
    dealt round robin over :func:`cores` threads (at most one per channel)."""
    threads = max(1, min(channels, cores()))
    return [sum(1 << c for c in range(t, channels, threads)) for t in range(threads)]


def side_by_side(calls: list[Callable[[], T]]) -> list[T]:
    """The results of ``calls``, the first made on the caller's thread, the others on :func:`pool` at the
    same time."""
    others = [pool().submit(call) for call in calls[1:]]
    return [calls[0](), *(f.result() for f in others)]


def split_rows(fill: Callable[[np.ndarray, int], None], out: np.ndarray, row0: int = 0) -> None:
    """``fill(part, first)`` on consecutive parts of ``out``'s first axis, one per core, side by side:
    ``part`` is ``out[a:b]``, ``first`` is ``row0 + a``."""
    edges = np.linspace(0, len(out), max(1, min(cores(), len(out))) + 1).astype(int).tolist()
    side_by_side([functools.partial(fill, out[a:b], row0 + a) for a, b in itertools.pairwise(edges)])
