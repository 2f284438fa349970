"""``pimphony sweep SPEC.yaml``: a grid of system-model points into one CSV or Parquet table.

A spec is YAML::

    base:                 # fields shared by every point (any PointSpec field)
      system: cent
      capacity: 128GB
    grid:                 # every combination of these values
      model: [llama-3.1-8b, qwen1.5-7b]
      workload: [multifieldqa]
      partition: [hfp, tcp]
      schedule: [static, dcs]
      seed: [0, 1, 2]

Fields: model, system, capacity, workload or context, partition, schedule, alloc, module, timing, seed,
generate, t_max. Points run in parallel on local processes (``--jobs``) or on an existing Dask cluster
(``--scheduler tcp://host:8786``). Every result is cached under a hash of the point, the contents of the
config files it names and the model's sources, so a repeated sweep reads the cache. A point that cannot
run (weights do not fit, a bad preset name) becomes a row with an ``error`` and no numbers.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from pimphony.model.cache import source_digest
from pimphony.model.config import yaml_message
from pimphony.scheduler.costs import cache_dir, cache_load, cache_store, warn

from .points import PointSpec, run_point

FIELDS = {f.name for f in dataclasses.fields(PointSpec)}
FILE_FIELDS = ("model", "system", "workload", "module", "timing")
MAX_POINTS = 100_000
"""The largest grid one sweep runs (a typo such as a 10^9-point grid is refused before any work)."""


class SweepError(ValueError):
    """A spec that cannot be read; the message names the file and the key."""


def load_spec(path: Path) -> list[PointSpec]:
    """The points of a spec file, in grid order (the last grid key varies fastest)."""
    if path.is_dir():
        raise SweepError(f"{path}: is a folder; give a sweep spec (YAML)")
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SweepError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SweepError(f"{path}: not UTF-8 text (byte {exc.start}); save the spec as UTF-8") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: broken YAML{yaml_message(exc)}") from None
    if not isinstance(raw, dict) or set(raw) - {"base", "grid"}:
        raise SweepError(f"{path}: expected a mapping with keys base and grid")
    base, grid = raw.get("base") or {}, raw.get("grid") or {}
    if not isinstance(base, dict) or not isinstance(grid, dict):
        raise SweepError(f"{path}: base and grid must be mappings")
    for where, keys in (("base", base), ("grid", grid)):
        for key in keys:
            if key not in FIELDS:
                raise SweepError(f"{path}: {where}.{key}: unknown field; allowed: {', '.join(sorted(FIELDS))}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: grid.{key}: must be a non-empty list")
    n = 1
    for values in grid.values():
        n *= len(values)
    if n > MAX_POINTS:
        raise SweepError(f"{path}: the grid has {n:,} points; at most {MAX_POINTS:,} per sweep (split the spec)")
    points: list[PointSpec | InvalidPoint] = []
    for combo in itertools.product(*grid.values()):
        fields = {**base, **dict(zip(grid, combo, strict=True))}
        try:
            points.append(PointSpec(**fields))
        except (TypeError, ValueError) as exc:
            points.append(InvalidPoint(fields, str(exc)))
    if all(isinstance(p, InvalidPoint) for p in points):
        raise SweepError(f"{path}: no point of the grid is valid; the first: {points[0].error}")
    return points


SOURCES = ("model/**/*.py", "model/presets/*/*.yaml", "scheduler/*.py", "experiments/points.py")
"""What computes a point: its key covers these files (:func:`~pimphony.model.cache.source_digest`)."""


def point_key(spec: PointSpec) -> str:
    """Hash of the point, the config files it names (by content) and the sources that compute it."""
    files = [Path(str(v)).read_bytes() for v in (getattr(spec, name) for name in FILE_FIELDS)
             if v and Path(str(v)).is_file()]
    return source_digest((spec.key(), files), SOURCES).hexdigest()[:32]


@dataclass(frozen=True)
class InvalidPoint:
    """A grid point whose fields are not a valid :class:`PointSpec`: a row with its error."""

    fields: dict
    error: str


def _valid_row(row: dict) -> bool:
    """A cached row (the file is named by the point's key): an error, or finite, positive results; a
    damaged one is computed again."""
    if not isinstance(row.get("error"), str):
        return False
    if row["error"]:
        return True
    numbers = [row.get(k) for k in ("tokens_per_s", "step_ms", "batch", "mac_utilisation")]
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
               for v in numbers)


def evaluate_spec(spec: PointSpec | InvalidPoint, use_cache: bool = True) -> dict[str, Any]:
    """One row of the table (cached); runs in a worker process or on a Dask worker."""
    if isinstance(spec, InvalidPoint):
        return {**spec.fields, "error": spec.error}
    path = cache_dir() / "perf" / f"{point_key(spec)}.json"
    cached = cache_load(path) if use_cache else None
    if cached is not None:
        if _valid_row(cached):
            return cached
        warn(f"the cached sweep row {path} is damaged; computing it again")
    row: dict[str, Any] = dataclasses.asdict(spec)
    try:
        row.update(run_point(spec).summary())
        row["error"] = ""
    except ValueError as exc:                       # PerfError, ConfigError and bad sizes alike
        row["error"] = str(exc)
    if use_cache:
        cache_store(path, row)
    return row


def run_sweep(points: list[PointSpec | InvalidPoint], jobs: int = 1, scheduler: str | None = None,
              use_cache: bool = True,
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Evaluate ``points`` (in order) locally or on the Dask cluster at ``scheduler``."""
    return map_tasks(partial(evaluate_spec, use_cache=use_cache), points, jobs, scheduler, progress, chunksize=4)


def map_tasks(fn: Callable[[Any], Any], items: list, jobs: int = 1, scheduler: str | None = None,
              progress: Callable[[int, int], None] | None = None, chunksize: int = 1) -> list:
    """``[fn(x) for x in items]``, in order: in this process, on ``jobs`` local processes, or on the Dask
    cluster at ``scheduler`` (``fn`` and the items must pickle)."""
    results: list = [None] * len(items)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, len(items))

    if scheduler:
        from distributed import Client, as_completed

        with Client(scheduler, timeout="10s") as client:
            futures = client.map(fn, items, pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            for future in as_completed(futures):
                results[index[future.key]] = future.result()
                tick()
    elif jobs > 1 and len(items) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for i, result in enumerate(pool.map(fn, items, chunksize=chunksize)):
                results[i] = result
                tick()
    else:
        for i, item in enumerate(items):
            results[i] = fn(item)
            tick()
    return results


def write_table(rows: list[dict[str, Any]], out: Path) -> Path:
    """CSV, or Parquet when ``out`` ends in ``.parquet``; columns in first-seen order."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    return out
