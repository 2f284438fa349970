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
