"""Hot loops compiled with numba when it is installed (it is a dependency), plain Python otherwise."""

from __future__ import annotations


def compiled(fn):
    """``fn`` compiled by ``numba.njit`` (cached on disk, releasing the GIL), or ``fn`` itself without
    numba, so every reference loop stays runnable and readable as Python."""
    try:
        import numba
    except ImportError:
        return fn
    return numba.njit(cache=True, nogil=True)(fn)


def array_list(arrays: list):
    """``arrays`` as a list a :func:`compiled` function can index: a ``numba.typed.List`` (all of one
    dtype and dimension), or the list itself without numba."""
    try:
        from numba import typed
    except ImportError:
        return list(arrays)
    return typed.List(arrays)
