"""Every bad input a one-line error: a table of bad inputs over every command.

Each case runs ``pimphony ARGS`` in-process and requires the exit code (2 for a bad input, 1 for a
result that failed), exactly one line on standard error, no traceback, and that the line names the
file or flag at fault. ``{d}`` in the arguments is the folder of the fixture files below.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pimphony.cli.main import main

MODEL = "name: small\nvalues: {layers: 1, heads: 2, kv_heads: 1, head_dim: 128, context: 4096}\n"
MODULE = Path(__file__).resolve().parents[1] / "model" / "presets" / "modules" / "aimx-16ch.yaml"
TIMING = Path(__file__).resolve().parents[1] / "model" / "presets" / "timing" / "aim-gddr6.yaml"
SYSTEM = Path(__file__).resolve().parents[1] / "model" / "presets" / "systems" / "cent.yaml"


def _hf(**kw) -> str:
    base = {"num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096, "num_hidden_layers": 32,
            "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 131072}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not None})


def _replace(path: Path, key: str, value) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if line.strip().startswith(f"{key}:"):
            indent = line[:len(line) - len(line.lstrip())]
            line = f"{indent}{key}: {{value: {value}, basis: user, source: test}}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    """The fixture files: one bad thing each."""
    root = tmp_path_factory.mktemp("bad")
    files = {
        "model.yaml": MODEL,
        "broken.yaml": "name: x\nvalues: {layers: 1, heads: [\n",
        "list.yaml": "- 1\n- 2\n",
        "empty.yaml": "",
        "unknown.yaml": MODEL.replace("context: 4096", "context: 4096, colour: 3"),
        "negative.yaml": MODEL.replace("layers: 1", "layers: -1"),
        "string.yaml": MODEL.replace("heads: 2", "heads: two"),
        "float.yaml": MODEL.replace("heads: 2", "heads: 2.5"),
        "bool.yaml": MODEL.replace("heads: 2", "heads: true"),
        "indivisible.yaml": MODEL.replace("heads: 2", "heads: 3").replace("kv_heads: 1", "kv_heads: 2"),
        "hd20.yaml": MODEL.replace("head_dim: 128", "head_dim: 20"),
        "hd512.yaml": MODEL.replace("head_dim: 128", "head_dim: 512"),
        "hd4096.yaml": MODEL.replace("head_dim: 128", "head_dim: 4096"),
        "nofc.yaml": MODEL,
        "kv0.json": _hf(num_key_value_heads=0),
        "heads0.json": _hf(num_attention_heads=0),
        "nolayers.json": _hf(num_hidden_layers=None),
        "broken.json": "{\"num_attention_heads\": 32,",
        "array.json": "[1, 2]",
        "hd512.json": _hf(head_dim=512),
        "hd4096.json": _hf(head_dim=4096),
        "hidden_odd.json": _hf(hidden_size=4097),
        "heads_str.json": _hf(num_attention_heads="32"),
        "module_64ch.yaml": _replace(MODULE, "channels", 64),
        "module_1row.yaml": _replace(MODULE, "rows", 1),
        "module_burst.yaml": _replace(MODULE, "burst_bytes", 48),
        "module_cols.yaml": _replace(MODULE, "columns", 1000),
        "timing_rdhub.yaml": _replace(TIMING, "nRDHUB", 1),
        "timing_ccds0.yaml": _replace(TIMING, "nCCDS", 0),
        "system_zero_energy.yaml": _zero(SYSTEM, root, ("e_act_pj", "e_mac_pj", "e_io_pj", "p_background_mw")),
        "system_fc2.yaml": _replace(SYSTEM, "fc_on_pim", 2),
        "system_span16.yaml": _replace(SYSTEM, "hfp_span", 16),
        "serve_header.csv": "time,prompt,output\n0,10,10\n",
        "serve_row.csv": "arrival_s,prompt_tokens,output_tokens\n0,10,10\n1,0,10\n",
        "system_softmax_text.yaml": _replace(SYSTEM, "softmax_per_ns", "fast"),
        "system_link_nan.yaml": _replace(SYSTEM, "link_gbps", ".nan"),
        "workload_minmax.yaml": "name: w\nvalues: {mean: 10, std: 1, max: 5, min: 1}\n",
        "workload_neg.yaml": "name: w\nvalues: {mean: 10, std: -1, max: 50, min: 1}\n",
        "spec_badtype.yaml": "base: {model: llama-3.1-8b, context: 4096}\ngrid: {seed: [0, x]}\n",
        "spec_unknown.yaml": "base: {model: llama-3.1-8b, context: 4096}\ngrid: {colour: [1]}\n",
        "spec_list.yaml": "- 1\n",
        "spec_emptygrid.yaml": "base: {model: llama-3.1-8b, context: 4096}\ngrid: {seed: []}\n",
        "spec_gridscalar.yaml": "base: {model: llama-3.1-8b, context: 4096}\ngrid: {seed: 3}\n",
        "spec_both.yaml": "base: {model: llama-3.1-8b, context: 4096, workload: qmsum}\ngrid: {seed: [0]}\n",
        "spec_broken.yaml": "base: {model: [\n",
        "spec_badmodel.yaml": "base: {model: nosuchmodel, context: 4096}\ngrid: {seed: [0]}\n",
        "suite_bad.yaml": "name: x\nruns: [{block: nosuch, seeds: [1]}]\n",
        "notes.txt": "not a trace\n",
        "afile": "",
    }
    for name, text in files.items():
        _write(root / name, text)
    (root / "latin1.yaml").write_bytes("name: caf\xe9\nvalues: {layers: 1}\n".encode("latin-1"))
    (root / "spec_latin1.yaml").write_bytes("base: {model: caf\xe9}\n".encode("latin-1"))
    (root / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "folder").mkdir()
    q = np.ones((1, 2, 128), np.float32)
    kv = np.ones((1, 1, 64, 128), np.float32)
    arrays = {
        "good": {"q": q, "k": kv, "v": kv, "lengths": np.array([64])},
        "noq": {"k": kv, "v": kv, "lengths": np.array([64])},
        "nan": {"q": np.full_like(q, np.nan), "k": kv, "v": kv, "lengths": np.array([64])},
        "overflow": {"q": np.full_like(q, 1e39, dtype=np.float64), "k": kv, "v": kv, "lengths": np.array([64])},
        "intq": {"q": q.astype(np.int32), "k": kv, "v": kv, "lengths": np.array([64])},
        "shape": {"q": np.ones((1, 3, 128), np.float32), "k": kv, "v": kv, "lengths": np.array([64])},
        "kvdiff": {"q": q, "k": kv, "v": np.ones((1, 1, 32, 128), np.float32), "lengths": np.array([64])},
        "long": {"q": q, "k": kv, "v": kv, "lengths": np.array([65])},
        "zero": {"q": q, "k": kv, "v": kv, "lengths": np.array([0])},
        "floatlen": {"q": q, "k": kv, "v": kv, "lengths": np.array([64.0])},
        "empty": {"q": q[:0], "k": kv[:0], "v": kv[:0], "lengths": np.zeros(0, int)},
        "huge": {"q": np.full_like(q, 1e19), "k": np.full_like(kv, 1e19), "v": kv, "lengths": np.array([64])},
    }
    for name, a in arrays.items():
        np.savez(root / f"{name}.npz", **a)
    np.save(root / "single.npy", q)
    return root


def _zero(path: Path, root: Path, keys: tuple[str, ...]) -> str:
    for k, key in enumerate(keys):
        path = _write(root / f"zero{k}.yaml", _replace(path, key, 0))
    return path.read_text()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# (id, arguments, exit code, what the line must name)
CASES = [
    # -- argument parsing (argparse, made one line) -----------------------------------------------
    ("no-command", [], 2, "COMMAND"),
    ("unknown-command", ["frobnicate"], 2, "frobnicate"),
    ("attention-context-0", ["attention", "--context", "0"], 2, "--context"),
    ("attention-context-text", ["attention", "--context", "many"], 2, "--context"),
    ("attention-batch-0", ["attention", "--batch", "0"], 2, "--batch"),
    ("attention-lengths-text", ["attention", "--lengths", "a,b"], 2, "--lengths"),
    ("attention-lengths-0", ["attention", "--lengths", "5,0"], 2, "--lengths"),
    ("attention-lengths-empty", ["attention", "--lengths", ","], 2, "--lengths"),
    ("attention-partition", ["attention", "--partition", "diagonal"], 2, "--partition"),
    ("attention-modules-0", ["attention", "--modules", "0"], 2, "--modules"),
    ("attention-obuf-0", ["attention", "--obuf-entries", "0"], 2, "--obuf-entries"),
    ("attention-seed-neg", ["attention", "--seed", "-1"], 2, "--seed"),
    ("attention-alloc", ["attention", "--alloc", "paged"], 2, "--alloc"),
    ("perf-no-model", ["perf", "--context", "1000"], 2, "--model"),
    ("perf-schedule", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--schedule", "fast"], 2, "--schedule"),
    ("regress-sim", ["regress", "--sim", "modelsim"], 2, "--sim"),
    ("synth-block", ["synth", "everything"], 2, "block"),
    ("verilog-block", ["verilog", "cpu"], 2, "block"),
    ("trace-no-action", ["trace"], 2, "ACTION"),
    ("trace-run-policy", ["trace", "run", "{d}/notes.txt", "--policy", "fifo"], 2, "--policy"),
    ("bench-unknown", ["bench", "disk"], 2, "disk"),
    ("reproduce-unknown", ["reproduce", "fig99"], 2, "fig99"),
    ("sweep-jobs-0", ["sweep", "{d}/spec_badtype.yaml", "--jobs", "0"], 2, "--jobs"),
    ("presets-kind", ["presets", "--kind", "colours"], 2, "--kind"),
    # -- model files ------------------------------------------------------------------------------
    ("model-missing", ["attention", "--model", "{d}/missing.yaml"], 2, "missing.yaml"),
    ("model-folder", ["attention", "--model", "{d}/folder"], 2, "folder"),
    ("model-broken", ["attention", "--model", "{d}/broken.yaml"], 2, "broken.yaml"),
    ("model-list", ["attention", "--model", "{d}/list.yaml"], 2, "list.yaml"),
    ("model-empty", ["attention", "--model", "{d}/empty.yaml"], 2, "empty.yaml"),
    ("model-unknown-key", ["attention", "--model", "{d}/unknown.yaml"], 2, "colour"),
    ("model-negative", ["attention", "--model", "{d}/negative.yaml"], 2, "layers"),
    ("model-string", ["attention", "--model", "{d}/string.yaml"], 2, "heads"),
    ("model-float", ["attention", "--model", "{d}/float.yaml"], 2, "heads"),
    ("model-bool", ["attention", "--model", "{d}/bool.yaml"], 2, "heads"),
    ("model-indivisible", ["attention", "--model", "{d}/indivisible.yaml"], 2, "kv_heads"),
    ("model-hd20", ["attention", "--model", "{d}/hd20.yaml"], 2, "head_dim"),
    ("model-hd512", ["attention", "--model", "{d}/hd512.yaml", "--context", "64"], 2, "hd512.yaml: head_dim"),
    ("model-hd4096", ["attention", "--model", "{d}/hd4096.yaml", "--context", "64"], 2, "hd4096.yaml: head_dim"),
    ("model-latin1", ["attention", "--model", "{d}/latin1.yaml"], 2, "latin1.yaml"),
    ("model-preset-unknown", ["attention", "--model", "gpt-9"], 2, "gpt-9"),
    ("hf-kv0", ["attention", "--model", "{d}/kv0.json", "--context", "64"], 2, "num_key_value_heads"),
    ("hf-heads0", ["attention", "--model", "{d}/heads0.json"], 2, "num_attention_heads"),
    ("hf-nolayers", ["attention", "--model", "{d}/nolayers.json"], 2, "num_hidden_layers"),
    ("hf-broken", ["attention", "--model", "{d}/broken.json"], 2, "broken.json"),
    ("hf-array", ["attention", "--model", "{d}/array.json"], 2, "array.json"),
    ("hf-hd512", ["attention", "--model", "{d}/hd512.json", "--context", "64"], 2, "hd512.json: head_dim"),
    ("hf-hidden-odd", ["attention", "--model", "{d}/hidden_odd.json"], 2, "hidden_size"),
    ("hf-heads-str", ["attention", "--model", "{d}/heads_str.json"], 2, "num_attention_heads"),
    ("perf-model-nofc", ["perf", "--model", "{d}/nofc.yaml", "--context", "1000"], 2, "hidden"),
    ("perf-model-hd4096", ["perf", "--model", "{d}/hd4096.json", "--context", "1000"], 2, "hd4096.json: head_dim"),
    ("trace-export-hd4096", ["trace", "export", "--model", "{d}/hd4096.json", "--lengths", "64", "--out",
                             "{d}/t.trace"], 2, "hd4096.json: head_dim"),
    ("run-model-hd512", ["run", "--model", "{d}/hd512.json", "--out", "{d}/runout"], 2, "hd512.json"),
    ("run-model-hd4096", ["run", "--model", "{d}/hd4096.json", "--out", "{d}/runout"], 2, "hd4096.json"),
    ("run-model-missing", ["run", "--model", "{d}/missing.yaml", "--out", "{d}/runout"], 2, "missing.yaml"),
    ("trace-export-model-bad", ["trace", "export", "--model", "{d}/broken.yaml", "--lengths", "64", "--out",
                                "{d}/t.trace"], 2, "broken.yaml"),
    # -- module, timing, system, workload files ---------------------------------------------------
    ("module-burst", ["attention", "--module", "{d}/module_burst.yaml"], 2, "burst_bytes"),
    ("module-cols", ["attention", "--module", "{d}/module_cols.yaml"], 2, "columns"),
    ("module-missing", ["attention", "--module", "{d}/nomodule.yaml"], 2, "nomodule.yaml"),
    ("module-preset-unknown", ["attention", "--module", "hbm3"], 2, "hbm3"),
    ("verilog-all-64ch", ["verilog", "all", "--module", "{d}/module_64ch.yaml", "--out", "{d}/v"], 2, "--module"),
    ("verilog-dpa-1row", ["verilog", "dpa", "--module", "{d}/module_1row.yaml", "--out", "{d}/v"], 2, "--module"),
    ("synth-dpa-1row", ["synth", "dpa", "--module", "{d}/module_1row.yaml", "--out", "{d}/v"], 2, "--module"),
    ("verilog-timing-bad", ["verilog", "dcs", "--timing", "{d}/timing_rdhub.yaml", "--out", "{d}/v"], 2, "nRDHUB"),
    ("timing-ccds0", ["trace", "run", "{d}/t0.trace", "--timing", "{d}/timing_ccds0.yaml"], 2, "nCCDS"),
    ("perf-timing-missing", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--timing", "{d}/none.yaml"], 2,
     "none.yaml"),
    ("perf-system-zero-energy", ["perf", "--model", "llama-3.1-8b", "--context", "1000", "--system",
                                 "{d}/system_zero_energy.yaml", "--module", "cent-32ch"], 0, ""),
    ("perf-system-fc2", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--system", "{d}/system_fc2.yaml"],
     2, "fc_on_pim"),
    ("perf-system-missing", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--system", "tpu"], 2, "tpu"),
    ("perf-system-span16", ["perf", "--model", "llama-3.1-8b", "--context", "1000", "--partition", "hfp", "--system",
                            "{d}/system_span16.yaml", "--module", "cent-32ch"], 2, "hfp_span 16"),
    ("perf-system-softmax-text", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--system",
                                  "{d}/system_softmax_text.yaml"], 2, "softmax_per_ns: must be a number"),
    ("perf-system-link-nan", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--system",
                              "{d}/system_link_nan.yaml"], 2, "link_gbps: must be a number"),
    ("perf-hfp-span-3", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--hfp-span", "3"], 2, "--hfp-span"),
    ("perf-fixed-workload", ["perf", "--model", "llama-3.1-8b", "--workload", "qmsum", "--fixed-context"], 2,
     "fixed"),
    ("perf-fixed-short", ["perf", "--model", "llama-3.1-8b", "--context", "500", "--fixed-context"], 2,
     "512 generated"),
    # -- serve --------------------------------------------------------------------------------------------
    ("serve-no-load", ["serve", "--model", "llama-3.1-8b"], 2, "--rate R, --clients N or --trace FILE"),
    ("serve-rate-zero", ["serve", "--model", "llama-3.1-8b", "--rate", "0"], 2, "--rate"),
    ("serve-rate-text", ["serve", "--model", "llama-3.1-8b", "--rate", "fast"], 2, "--rate"),
    ("serve-rate-and-clients", ["serve", "--model", "llama-3.1-8b", "--rate", "1", "--clients", "2"], 2, "--clients"),
    ("serve-duration-neg", ["serve", "--model", "llama-3.1-8b", "--clients", "2", "--duration", "-5"], 2,
     "--duration"),
    ("serve-trace-missing", ["serve", "--model", "llama-3.1-8b", "--trace", "{d}/none.csv"], 2, "none.csv"),
    ("serve-trace-header", ["serve", "--model", "llama-3.1-8b", "--trace", "{d}/serve_header.csv"], 2,
     "serve_header.csv: the first line must be the header"),
    ("serve-trace-row", ["serve", "--model", "llama-3.1-8b", "--trace", "{d}/serve_row.csv"], 2,
     "serve_row.csv: line 3"),
    ("serve-trace-and-rate", ["serve", "--model", "llama-3.1-8b", "--trace", "{d}/serve_row.csv", "--rate", "1"], 2,
     "--trace"),
    ("serve-preempt", ["serve", "--model", "llama-3.1-8b", "--clients", "1", "--preempt", "evict"], 2, "--preempt"),
    ("serve-model-missing", ["serve", "--model", "gpt-5", "--clients", "1"], 2, "gpt-5"),
    ("serve-capacity", ["serve", "--model", "llama-3.1-8b", "--clients", "1", "--capacity", "lots"], 2, "lots"),
    ("serve-deployment-text", ["serve", "--model", "llama-3.1-8b", "--clients", "1", "--deployment", "8by1"], 2,
     "--deployment"),
    ("serve-deployment-bad", ["serve", "--model", "llama-3.1-8b", "--clients", "1", "--deployment", "3x1"], 2,
     "--deployment: TP 3 x PP 1 is not a deployment of 8 modules"),
    ("perf-system-file-no-module", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--system",
                                    "{d}/system_fc2.yaml"], 2, "fc_on_pim"),
    ("perf-workload-minmax", ["perf", "--model", "llama-3.1-8b", "--workload", "{d}/workload_minmax.yaml"], 2, "mean"),
    ("perf-workload-neg", ["perf", "--model", "llama-3.1-8b", "--workload", "{d}/workload_neg.yaml"], 2, "std"),
    ("perf-workload-unknown", ["perf", "--model", "llama-3.1-8b", "--workload", "wikitext"], 2, "wikitext"),
    ("reproduce-dcs-module", ["reproduce", "dcs", "--module", "{d}/module_burst.yaml", "--out", "{d}/r"], 2,
     "burst_bytes"),
    ("reproduce-dpa-module", ["reproduce", "dpa", "--module", "nosuch", "--out", "{d}/r"], 2, "nosuch"),
    ("presets-name", ["presets", "--kind", "models", "nosuch"], 2, "nosuch"),
    # -- perf flags ----------------------------------------------------------------------------------
    ("perf-capacity-text", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--capacity", "lots"], 2,
     "lots"),
    ("perf-capacity-zero", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--capacity", "0GB"], 2, "0GB"),
    ("perf-capacity-unit", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--capacity", "5PB"], 2, "5PB"),
    ("perf-capacity-small", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--capacity", "8GB"], 2,
     "capacity"),
    ("perf-weights-dont-fit", ["perf", "--model", "llama-3.1-70b", "--context", "100", "--capacity", "64GB"], 2,
     "weights"),
    ("perf-both", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--workload", "qmsum"], 2, "--workload"),
    ("perf-neither", ["perf", "--model", "llama-3.1-8b"], 2, "--workload"),
    ("perf-context-0", ["perf", "--model", "llama-3.1-8b", "--context", "0"], 2, "--context"),
    ("perf-tmax-small", ["perf", "--model", "llama-3.1-8b", "--context", "100", "--t-max", "10"], 2, "T_max"),
    # -- npz inputs --------------------------------------------------------------------------------
    ("npz-missing", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/none.npz"], 2, "none.npz"),
    ("npz-folder", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/folder"], 2, "folder"),
    ("npz-garbage", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/garbage.npz"], 2, "garbage.npz"),
    ("npz-npy", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/single.npy"], 2, "single.npy"),
    ("npz-text", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/notes.txt"], 2, "notes.txt"),
    ("npz-noq", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/noq.npz"], 2, "noq.npz"),
    ("npz-nan", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/nan.npz"], 2, "nan.npz"),
    ("npz-overflow", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/overflow.npz"], 2, "overflow.npz"),
    ("npz-intq", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/intq.npz"], 2, "intq.npz"),
    ("npz-shape", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/shape.npz"], 2, "shape.npz"),
    ("npz-kvdiff", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/kvdiff.npz"], 2, "kvdiff.npz"),
    ("npz-long", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/long.npz"], 2, "long.npz"),
    ("npz-zero", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/zero.npz"], 2, "zero.npz"),
    ("npz-floatlen", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/floatlen.npz"], 2, "floatlen.npz"),
    ("npz-empty", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/empty.npz"], 2, "empty.npz"),
    ("npz-wrong-model", ["attention", "--inputs", "{d}/good.npz"], 2, "good.npz"),
    ("npz-layers", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/good.npz", "--layers", "2"], 2,
     "--inputs"),
    ("npz-huge-result", ["attention", "--model", "{d}/model.yaml", "--inputs", "{d}/huge.npz"], 1, "NaN"),
    ("attention-context-huge", ["attention", "--context", "1000000000000"], 2, "--context"),
    ("attention-lengths-huge", ["attention", "--lengths", "99999999,5"], 2, "--lengths"),
    ("attention-save-folder", ["attention", "--model", "{d}/model.yaml", "--context", "32", "--save", "{d}/folder"], 2,
     "--save"),
    ("attention-save-under-file", ["attention", "--model", "{d}/model.yaml", "--context", "32", "--save",
                                   "{d}/afile/out.npz"], 2, "--save"),
    # -- output locations --------------------------------------------------------------------------
    ("verilog-out-file", ["verilog", "dcs", "--out", "{d}/afile"], 2, "--out"),
    ("verilog-out-under-file", ["verilog", "dcs", "--out", "{d}/afile/rtl"], 2, "--out"),
    ("synth-out-under-file", ["synth", "dcs", "--out", "{d}/afile/rtl"], 2, "--out"),
    ("run-out-under-file", ["run", "--out", "{d}/afile/run"], 2, "--out"),
    ("regress-out-under-file", ["regress", "--out", "{d}/afile/reg"], 2, "--out"),
    ("mutate-out-under-file", ["mutate", "--out", "{d}/afile/mut"], 2, "--out"),
    ("reproduce-out-under-file", ["reproduce", "dcs", "--out", "{d}/afile/r"], 2, "--out"),
    ("reproduce-all-out-file", ["reproduce", "--out", "{d}/afile"], 2, "--out"),
    ("sweep-out-under-file", ["sweep", "{d}/spec_badtype.yaml", "--out", "{d}/afile/t.csv"], 2, "--out"),
    ("sweep-out-folder", ["sweep", "{d}/spec_badtype.yaml", "--out", "{d}/folder"], 2, "--out"),
    ("sweep-out-suffix", ["sweep", "{d}/spec_badtype.yaml", "--out", "{d}/t.xlsx"], 2, "--out"),
    ("trace-export-out-under-file", ["trace", "export", "--gemv", "64x64", "--out", "{d}/afile/t.trace"], 2,
     "--out"),
    ("trace-run-commands-under-file", ["trace", "run", "{d}/t0.trace", "--commands", "{d}/afile/c.csv"], 2,
     "--commands"),
    ("bench-trace-out-under-file", ["bench", "trace", "--out", "{d}/afile/b.trace"], 2, "--out"),
    # -- sweep specs -------------------------------------------------------------------------------
    ("sweep-missing", ["sweep", "{d}/nospec.yaml", "--out", "{d}/t.csv"], 2, "nospec.yaml"),
    ("sweep-folder", ["sweep", "{d}/folder", "--out", "{d}/t.csv"], 2, "folder"),
    ("sweep-latin1", ["sweep", "{d}/spec_latin1.yaml", "--out", "{d}/t.csv"], 2, "spec_latin1.yaml"),
    ("sweep-broken", ["sweep", "{d}/spec_broken.yaml", "--out", "{d}/t.csv"], 2, "spec_broken.yaml"),
    ("sweep-list", ["sweep", "{d}/spec_list.yaml", "--out", "{d}/t.csv"], 2, "spec_list.yaml"),
    ("sweep-unknown", ["sweep", "{d}/spec_unknown.yaml", "--out", "{d}/t.csv"], 2, "colour"),
    ("sweep-emptygrid", ["sweep", "{d}/spec_emptygrid.yaml", "--out", "{d}/t.csv"], 2, "grid.seed"),
    ("sweep-gridscalar", ["sweep", "{d}/spec_gridscalar.yaml", "--out", "{d}/t.csv"], 2, "grid.seed"),
    ("sweep-both", ["sweep", "{d}/spec_both.yaml", "--out", "{d}/t.csv"], 2, "spec_both.yaml"),
    # -- traces ---------------------------------------------------------------------------------------
    ("trace-missing", ["trace", "run", "{d}/none.trace"], 2, "none.trace"),
    ("trace-folder", ["trace", "run", "{d}/folder"], 2, "folder"),
    ("trace-text", ["trace", "run", "{d}/notes.txt"], 2, "notes.txt"),
    ("trace-latin1", ["trace", "run", "{d}/latin1.yaml"], 2, "latin1.yaml"),
    ("trace-binary", ["trace", "run", "{d}/garbage.npz"], 2, "garbage.npz"),
    ("trace-channel-big", ["trace", "run", "{d}/t0.trace", "--channel", "40"], 2, "t0.trace"),
    ("trace-export-neither", ["trace", "export", "--out", "{d}/t.trace"], 2, "--lengths"),
    ("trace-export-gemv-bad", ["trace", "export", "--gemv", "12x7", "--out", "{d}/t.trace"], 2, "n_in"),
    ("trace-export-gemv-text", ["trace", "export", "--gemv", "big", "--out", "{d}/t.trace"], 2, "--gemv"),
    ("trace-export-channel", ["trace", "export", "--lengths", "64", "--channel", "99", "--out", "{d}/t.trace"], 2,
     "--channel"),
    ("trace-channel-absent", ["trace", "run", "{d}/t0.trace", "--channel", "3"], 2, "channel 3"),
    # -- the RTL and simulation commands ------------------------------------------------------------
    ("run-lengths-huge", ["run", "--lengths", "100000000", "--out", "{d}/runout"], 2, "--lengths"),
    ("run-lengths-many", ["run", "--lengths", ",".join(["64"] * 100), "--out", "{d}/runout"], 2, "--lengths"),
    ("run-model-hd20", ["run", "--model", "{d}/hd20.yaml", "--out", "{d}/runout"], 2, "head_dim"),
    ("regress-suite-unknown", ["regress", "--suite", "nightly", "--out", "{d}/reg"], 2, "nightly"),
    ("regress-suite-bad", ["regress", "--suite", "{d}/suite_bad.yaml", "--out", "{d}/reg"], 2, "suite_bad.yaml"),
    ("mutate-unknown", ["mutate", "no-such-mutant", "--out", "{d}/mut"], 2, "no-such-mutant"),
    ("bench-golden-model", ["bench", "golden", "--model", "{d}/broken.yaml"], 2, "broken.yaml"),
    ("bench-golden-context-0", ["bench", "golden", "--context", "0"], 2, "--context"),
    ("bench-golden-huge", ["bench", "golden", "--context", "1000000000"], 2, "--context"),
    ("bench-perf-capacity", ["bench", "perf", "--capacity", "lots"], 2, "lots"),
    ("bench-dpa-requests-0", ["bench", "dpa", "--requests", "0"], 2, "--requests"),
    ("bench-dcs-commands-0", ["bench", "dcs", "--commands", "0"], 2, "--commands"),
]


@pytest.fixture(scope="module")
def trace0(d) -> Path:
    path = d / "t0.trace"
    path.write_text("AiM WR_GB 2 0 0x1\nAiM MAC_ABK 2 0x1 0\nAiM RD_MAC 0 0x1\nAiM EOC\n")
    return path


def test_the_corpus_covers_every_command():
    commands = {args[0] for _, args, _, _ in CASES if args}
    assert {"attention", "perf", "presets", "reproduce", "verilog", "synth", "run", "regress", "mutate", "sweep",
            "trace", "bench", "serve"} <= commands
    assert len(CASES) >= 120
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(case, d, trace0, capsys):
    _, args, code, must = case
    argv = [a.replace("{d}", str(d)) for a in args]
    try:
        got = main(argv)
    except SystemExit as exc:                       # argparse
        got = exc.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert "Traceback" not in err and "Traceback" not in out
    assert got == code, f"exit {got}, expected {code}: {err or out[-500:]}"
    if code == 2:
        assert len(lines) == 1, err
        assert must in lines[0], f"{must!r} not named in: {lines[0]}"
    elif code == 1:
        assert must in out, out[-500:]


def test_a_closed_pipe_ends_quietly():
    for args in (["presets"], ["attention", "--context", "64", "--quiet"]):     # no progress bar on a slow machine
        proc = subprocess.run(f"{sys.executable} -m pimphony.cli.main {' '.join(args)} | head -1", shell=True,
                              capture_output=True, text=True, timeout=300)
        assert proc.stdout.count("\n") == 1 and "Traceback" not in proc.stderr and proc.stderr == "", proc.stderr
