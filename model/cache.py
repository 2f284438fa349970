"""Where derived files are cached, and the digest that keys them.

Kernel costs, sweep points and generated Verilog are cached under :func:`cache_dir`, each under a key
made of its inputs and of the sources that compute it (:func:`source_digest`), so that a change to
either computes it again.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The folder that holds the package's sources (``model/``, ``scheduler/``, ``rtl/``, ...)."""


def cache_dir() -> Path:
    """``$PIMPHONY_CACHE``, else ``~/.cache/pimphony``."""
    return Path(os.environ.get("PIMPHONY_CACHE") or Path.home() / ".cache" / "pimphony")


@cache
def _sources_digest(sources: tuple[str, ...]) -> bytes:
    digest = hashlib.sha256()
    for pattern in sources:
        for path in sorted(ROOT.glob(pattern)):
            digest.update(path.read_bytes())
    return digest.digest()


def source_digest(inputs: object, sources: tuple[str, ...] | list[str]) -> hashlib._Hash:
    """A SHA-256 of ``repr(inputs)`` and of every file in ``sources`` (paths or glob patterns relative
    to :data:`ROOT`, taken in sorted order); more data may be added to it. The sources are read once per
    process (they do not change under a running program)."""
    digest = hashlib.sha256(repr(inputs).encode())
    digest.update(_sources_digest(tuple(sources)))
    return digest
