"""Test-session set-up shared by every test module."""

import fcntl
import os
import pickle
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _kernel_cost_cache(tmp_path_factory, monkeypatch):
    """One kernel-cost cache for the whole run, away from the user's: every xdist worker of a run shares
    it (writes are atomic), so each (module, timing, head_dim, group) is measured about once per run.
    Tests of the cache itself set their own."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    monkeypatch.setenv("PIMPHONY_CACHE", str(shared / "pimphony-cache"))


@pytest.fixture(scope="session")
def once(tmp_path_factory) -> Callable[[str, Callable[[], Any]], Any]:
    """``once(key, compute)``: ``compute()`` computed by one xdist worker of the run and read back by the
    others (pickled beside the run's temporary folders; a worker that finds another computing it waits).
    For a result several tests on different workers need, that would otherwise be computed per worker."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-results"
    shared.mkdir(exist_ok=True)

    def get(key: str, compute: Callable[[], Any]) -> Any:
        path = shared / f"{key}.pickle"
        with open(shared / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.is_file():
                return pickle.loads(path.read_bytes())
            value = compute()
            path.write_bytes(pickle.dumps(value))
            return value

    return get


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (make test-all): long RTL simulations whose checks "
                          "make test gets from a shorter test and the regression suites run on both simulators")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``long(seconds)`` run first, longest first: started last, one of them would keep a
    worker busy while the other has nothing left to do. Tests marked ``slow`` are skipped, and say so,
    unless ``--slow`` is given."""
    if not config.getoption("--slow"):
        skip = pytest.mark.skip(reason="slow: run with make test-all (pytest --slow)")
        for item in items:
            if item.get_closest_marker("slow") is not None:
                item.add_marker(skip)

    def seconds(item) -> float:
        mark = item.get_closest_marker("long")
        return mark.args[0] if mark is not None else 0.0

    items.sort(key=seconds, reverse=True)
