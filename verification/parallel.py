"""Run independent checks a few at a time, reporting progress as each finishes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_with_progress(fn: Callable[[T], R], items: Sequence[T], jobs: int,
                      progress: Callable[[int, int], None] | None = None) -> list[R]:
    """``[fn(x) for x in items]`` with ``jobs`` threads (each ``fn`` runs a subprocess); ``progress(done,
    total)`` after each; results in the order of ``items``."""
    done = []

    def one(item: T) -> R:
        result = fn(item)
        done.append(result)
        if progress is not None:
            progress(len(done), len(items))
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, items))
