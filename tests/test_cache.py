"""Caches that cannot poison results: damaged entries are recomputed with one warning line, and an
unusable cache location means running without a cache."""

from __future__ import annotations

import json
import math

import pytest

from pimphony.cli.main import main
from pimphony.experiments.points import PointSpec
from pimphony.experiments.sweep import evaluate_spec, point_key
from pimphony.model.config import ModuleOrg, TimingPreset
from pimphony.scheduler import costs as C

ORG, AIM = ModuleOrg.load("cent-32ch"), TimingPreset.load("aim-gddr6")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIMPHONY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def small_grid(monkeypatch):
    """Kernel costs on a short grid: the cache logic is the same, the measurement takes a fraction."""
    monkeypatch.setattr(C, "ATTENTION_GRID", {p: (16, 64, 256) for p in C.ATTENTION_GRID})
    monkeypatch.setattr(C, "GEMV_SHAPE", (256, 256))


def _poison(raw: dict, how: str) -> dict:
    curve = raw["attention"][0]
    if how == "nan":
        curve["qk"][1] = math.nan
    elif how == "negative":
        curve["sv"] = [-v for v in curve["sv"]]
    elif how == "unordered":
        curve["lengths"] = list(reversed(curve["lengths"]))
    elif how == "missing":
        raw["attention"] = raw["attention"][1:]
    elif how == "other-module":
        raw["channels"] = 8
    return raw


@pytest.mark.parametrize("how", ["nan", "negative", "unordered", "missing", "other-module"])
def test_damaged_kernel_costs_are_measured_again(cache, small_grid, capsys, how):
    good = C.kernel_costs(ORG, AIM, 128, 8)
    path = C.cache_path(ORG, AIM, 128, 8)
    path.write_text(json.dumps(_poison(json.loads(path.read_text()), how), allow_nan=True))
    again = C.kernel_costs(ORG, AIM, 128, 8)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pimphony: warning: the cached kernel costs") and str(path) in err[0]
    assert again.to_json() == good.to_json()
    assert json.loads(path.read_text()) == good.to_json()          # the damaged file is replaced


SPEC = PointSpec(model="llama-3.1-8b", context=4096)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture
def sweep_cache(shared, monkeypatch):
    """One cache for the sweep-row tests: the kernel costs are measured once for all of them."""
    monkeypatch.setenv("PIMPHONY_CACHE", str(shared))
    return shared


@pytest.mark.parametrize("content", ["[]", "\"x\"", "{}", "{\"error\": \"\", \"tokens_per_s\": NaN}",
                                     "{\"error\": \"\", \"tokens_per_s\": -1}", "not json"])
def test_damaged_sweep_rows_are_computed_again(sweep_cache, capsys, content):
    good = evaluate_spec(SPEC)
    path = sweep_cache / "perf" / f"{point_key(SPEC)}.json"
    path.write_text(content)
    assert evaluate_spec(SPEC) == good
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") <= 1


def test_a_cache_location_that_is_a_file_means_no_cache(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("PIMPHONY_CACHE", str(blocker))
    assert main(["perf", "--model", "llama-3.1-8b", "--context", "4096", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["tokens_per_s"] > 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot write the cache" in lines[0] and str(blocker) in lines[0]


def test_testbench_verilog_is_converted_once_per_revision(tmp_path, monkeypatch):
    """Generated Verilog is cached by block, options and sources: a second folder gets a copy without a
    conversion, a simulator's build of an unchanged copy stays valid, and a cache that cannot be
    written only means converting every time."""
    import pimphony.rtl.build as build

    monkeypatch.setenv("PIMPHONY_CACHE", str(tmp_path / "cache"))
    first = build.write_block_verilog("dcs", tmp_path / "a")
    converted = []
    real = build.to_verilog
    monkeypatch.setattr(build, "to_verilog", lambda *a: converted.append(a) or real(*a))
    second = build.write_block_verilog("dcs", tmp_path / "b")
    assert second.read_text() == first.read_text() and not converted
    stamp = first.stat().st_mtime_ns
    assert build.write_block_verilog("dcs", tmp_path / "a").stat().st_mtime_ns == stamp
    build.write_block_verilog("dcs", tmp_path / "c", timing="aim-gddr6-1ns")     # other options: another key
    assert len(converted) == 1
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("PIMPHONY_CACHE", str(blocker))
    assert build.write_block_verilog("dcs", tmp_path / "d").read_text() == first.read_text()
