"""Test-session set-up shared by every test module."""

import os

import pytest


@pytest.fixture(autouse=True)
def _kernel_cost_cache(tmp_path_factory, monkeypatch):
    """One kernel-cost cache for the whole run, away from the user's: every xdist worker of a run shares
    it (writes are atomic), so each (module, timing, head_dim, group) is measured about once per run.
    Tests of the cache itself set their own."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    monkeypatch.setenv("PIMPHONY_CACHE", str(shared / "pimphony-cache"))


def pytest_collection_modifyitems(items):
    """Tests marked ``long(seconds)`` run first, longest first: started last, one of them would keep a
    worker busy while the other has nothing left to do."""

    def seconds(item) -> float:
        mark = item.get_closest_marker("long")
        return mark.args[0] if mark is not None else 0.0

    items.sort(key=seconds, reverse=True)
