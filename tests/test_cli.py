"""The ``pimphony`` command: attention, inputs/save files, presets, bench, and its errors."""

import subprocess
import sys

import numpy as np
import pytest

from pimphony.cli.main import main
from pimphony.model.config import ModelConfig, ModuleOrg, preset_names
from pimphony.model.numerics import to_bf16
from pimphony.scheduler.golden import AttentionInputs, run_golden_attention


def test_attention_prints_error_commands_and_activity(capsys):
    assert main(["attention", "--model", "llama-3.1-8b", "--lengths", "300,17", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "layer 0: max |error|" in out and "-> PASS" in out
    assert "commands per channel" in out and "MAC " in out
    assert "channel activity: QK^T 16/16 (100%)" in out


def test_hfp_batch_one_reports_idle_channels(capsys):
    assert main(["attention", "--model", "llama-3.1-8b", "--context", "600", "--partition", "hfp", "--quiet"]) == 0
    assert "channel activity: QK^T 8/16 (50%)" in capsys.readouterr().out


def test_inputs_and_save_round_trip(tmp_path, capsys):
    m = ModelConfig.load("llama-3.1-8b")
    rng = np.random.default_rng(4)
    q = rng.standard_normal((2, 32, 128)).astype(np.float32)
    k = rng.standard_normal((2, 8, 50, 128)).astype(np.float32)
    v = rng.standard_normal((2, 8, 50, 128)).astype(np.float32)
    lengths = np.array([50, 33])
    src, dst = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(src, q=q, k=k, v=v, lengths=lengths)
    assert main(["attention", "--model", "llama-3.1-8b", "--inputs", str(src), "--save", str(dst), "--quiet"]) == 0
    assert "batch 2, lengths [50, 33]" in capsys.readouterr().out
    with np.load(dst) as f:
        out, ref = f["out"], f["reference"]
    assert out.shape == (2, 32, 128) and out.dtype == np.float32 and ref.dtype == np.float64
    direct = run_golden_attention(m, ModuleOrg.load("aimx-16ch"), AttentionInputs.load(src, m))
    assert np.array_equal(out, direct.out)
    # the reference is computed on the bf16 values the hardware stores
    w = np.exp(to_bf16(k[1, 0, :33]).astype(np.float64) @ to_bf16(q[1, 0]).astype(np.float64) / np.sqrt(128))
    np.testing.assert_allclose(ref[1, 0], (w / w.sum()) @ to_bf16(v[1, 0, :33]), rtol=1e-10)


def test_save_with_layers_adds_a_layer_axis(tmp_path):
    dst = tmp_path / "o.npz"
    assert main(["attention", "--model", "qwen1.5-7b", "--context", "20", "--layers", "2", "--save", str(dst), "--quiet"]) == 0
    with np.load(dst) as f:
        assert f["out"].shape == (2, 1, 32, 128)


BAD_INPUTS = {
    "missing array": (dict(q=np.zeros((1, 32, 128)), k=np.zeros((1, 8, 4, 128)), lengths=np.array([4])),
                      "missing array 'v'; the file needs q, k, v, lengths"),
    "wrong heads": (dict(q=np.zeros((1, 16, 128)), k=np.zeros((1, 8, 4, 128)), v=np.zeros((1, 8, 4, 128)),
                         lengths=np.array([4])), "q has shape (1, 16, 128); llama-3.1-8b needs (B, 32, 128)"),
    "wrong kv heads": (dict(q=np.zeros((1, 32, 128)), k=np.zeros((1, 4, 4, 128)), v=np.zeros((1, 4, 4, 128)),
                            lengths=np.array([4])), "k has shape (1, 4, 4, 128); llama-3.1-8b needs (1, 8, Tmax, 128)"),
    "too long": (dict(q=np.zeros((1, 32, 128)), k=np.zeros((1, 8, 4, 128)), v=np.zeros((1, 8, 4, 128)),
                      lengths=np.array([5])), "lengths must lie in [1, 4]; got 5..5"),
    "nan": (dict(q=np.full((1, 32, 128), np.nan), k=np.zeros((1, 8, 4, 128)), v=np.zeros((1, 8, 4, 128)),
                 lengths=np.array([4])), "q has 4096 values that are NaN or infinite once rounded to bf16 (the first at "
                                         "index (0, 0, 0): nan); bf16 holds magnitudes up to 3.39e+38"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_file_is_one_line_exit_2(tmp_path, capsys, case):
    arrays, message = BAD_INPUTS[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    assert main(["attention", "--inputs", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"pimphony: error: {path}: {message}\n"


def test_not_an_npz_and_missing_inputs(tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_text("hello")
    assert main(["attention", "--inputs", str(junk), "--quiet"]) == 2
    assert "not a readable .npz file" in capsys.readouterr().err
    assert main(["attention", "--inputs", str(tmp_path / "none.npz"), "--quiet"]) == 2
    assert capsys.readouterr().err.endswith("none.npz: file not found\n")


def test_unwritable_save_path(tmp_path, capsys):
    assert main(["attention", "--context", "8", "--save", str(tmp_path / "no" / "dir" / "o.npz"), "--quiet"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_presets_lists_everything_with_provenance(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for kind in ("timing", "modules", "models", "workloads"):
        for name in preset_names(kind):
            assert f"[{kind}] {name}:" in out
    assert "nRCDRDMAC" in out and "public-model" in out and "PIMphony Table II" in out
    assert main(["presets", "nothing"]) == 2


def test_bench_golden_prints_figures(capsys):
    code = main(["bench", "golden", "--context", "2048", "--check", "--repeat", "2"])
    out = capsys.readouterr().out
    assert "median" in out and out.count("of 2 runs") == 2 and "  TCP" in out and "  HFP" in out
    for label in ("simulated MACs", "golden model time", "M MAC/s end to end", "executing", "plain numpy float32",
                  "golden / numpy", "HFP / TCP", "peak RSS", "worst error / bound", "lower", "execute"):
        assert label in out
    verdict = next(line for line in out.splitlines() if line.strip().startswith("targets"))
    assert (code == 0) == verdict.strip().endswith("met") and (code == 0) != ("NOT met" in verdict)


def test_console_script_help_and_usage_errors():
    exe = [sys.executable, "-m", "pimphony.cli.main"]
    assert "token-centric" in subprocess.run([*exe, "attention", "--help"], capture_output=True, text=True).stdout
    bad = subprocess.run([*exe, "attention", "--context", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "must be at least 1" in bad.stderr and "Traceback" not in bad.stderr
