"""Configs: presets with provenance, Hugging Face configs, and every class of config error."""

import json
import re

import pytest

from pimphony.cli.main import main
from pimphony.model.config import (
    BASES,
    ConfigError,
    ModelConfig,
    ModuleOrg,
    SystemConfig,
    TimingPreset,
    WorkloadConfig,
    preset_names,
)

KINDS = {"timing": TimingPreset, "modules": ModuleOrg, "models": ModelConfig, "workloads": WorkloadConfig,
         "systems": SystemConfig}


@pytest.mark.parametrize("kind", KINDS)
def test_every_preset_value_has_source_and_basis(kind):
    names = preset_names(kind)
    assert names
    for name in names:
        cfg = KINDS[kind].load(name)
        for key, _value, basis, source in cfg.describe():
            assert basis in BASES and basis != "user", (name, key)
            assert source.strip(), (name, key)


def test_default_module_is_16_by_16_with_aim_geometry():
    org = ModuleOrg.load("aimx-16ch")
    assert (org.channels, org.banks, org.rows, org.columns) == (16, 16, 16384, 1024)
    assert org.burst_elements == 16 and org.bursts_per_row == 64
    assert org.bytes == 8 << 30                       # 8 GB per module
    assert org.gbuf_entries == 64 and org.outreg_entries == 2 and org.obuf_entries == 16


def test_paper_models_table_one():
    shapes = {n: (m.layers, m.heads, m.kv_heads, m.head_dim, m.group)
              for n in preset_names("models") for m in [ModelConfig.load(n)]}
    assert shapes["qwen1.5-7b"] == (32, 32, 32, 128, 1)
    assert shapes["llama-3.1-8b"] == (32, 32, 8, 128, 4)
    assert shapes["qwen1.5-72b"] == (80, 64, 64, 128, 1)
    assert shapes["llama-3.1-70b"] == (80, 64, 8, 128, 8)


def test_timing_preset_states_tck():
    t = TimingPreset.load("aim-gddr6")
    assert t.tck_ps == 500 and t.nCCDS == 2 and t.nRCDRDMAC == 56
    assert TimingPreset.load("aim-gddr6-1ns").tck_ps == 1000


def test_hugging_face_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"_name_or_path": "org/my-model", "num_attention_heads": 28, "num_key_value_heads": 4,
                                "hidden_size": 3584, "num_hidden_layers": 28, "max_position_embeddings": 32768}))
    m = ModelConfig.load(str(path))
    assert (m.name, m.heads, m.kv_heads, m.head_dim, m.layers, m.context) == ("my-model", 28, 4, 128, 28, 32768)
    assert m.provenance["heads"].basis == "user"


def test_hugging_face_explicit_head_dim_and_default_kv(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"num_attention_heads": 8, "head_dim": 256, "hidden_size": 3072, "num_hidden_layers": 2}))
    m = ModelConfig.load(str(path))
    assert (m.head_dim, m.kv_heads, m.context) == (256, 8, 4096)


def test_user_yaml_with_plain_values(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nvalues:\n  layers: 2\n  heads: 4\n  kv_heads: 2\n  head_dim: 64\n  context: 1024\n")
    m = ModelConfig.load(str(path))
    assert m.group == 2 and m.provenance["layers"].source == str(path)


BAD_YAML = {
    "unknown key": ("values:\n  layers: 2\n  heads: 4\n  kv_heads: 2\n  head_dim: 64\n  context: 9\n  colour: 3\n",
                    "values.colour: unknown key; allowed: layers, heads, kv_heads, head_dim, context"),
    "wrong type": ("values:\n  layers: two\n  heads: 4\n  kv_heads: 2\n  head_dim: 64\n  context: 9\n",
                   "values.layers: must be an integer in [1, 1024]; got str 'two'"),
    "out of range": ("values:\n  layers: 2\n  heads: 4\n  kv_heads: 2\n  head_dim: 8\n  context: 9\n",
                     "values.head_dim: 8 is out of range; allowed [16, 4096]"),
    "not divisible": ("values:\n  layers: 2\n  heads: 6\n  kv_heads: 4\n  head_dim: 64\n  context: 9\n",
                      "values.kv_heads: heads (6) must be divisible by kv_heads (4)"),
    "missing key": ("values:\n  layers: 2\n  heads: 4\n  kv_heads: 2\n  head_dim: 64\n",
                    "values.context: missing; required keys: layers, heads, kv_heads, head_dim, context"),
    "broken yaml": ("values: [layers: 2\n", "broken YAML at line 2"),
    "bad basis": ("values:\n  layers: {value: 2, basis: guess}\n  heads: 4\n  kv_heads: 2\n  head_dim: 64\n  context: 9\n",
                  "values.layers.basis: 'guess' is not one of paper, public-model, derived, assumed, user"),
}


@pytest.mark.parametrize("case", BAD_YAML)
def test_config_errors_name_file_key_and_rule(tmp_path, case):
    text, expected = BAD_YAML[case]
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        ModelConfig.load(str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_missing_file_and_unknown_preset():
    with pytest.raises(ConfigError, match=r"^/nonexistent/m.yaml: file not found$"):
        ModelConfig.load("/nonexistent/m.yaml")
    with pytest.raises(ConfigError, match=r"no such models preset; available: llama-3.1-70b, llama-3.1-8b"):
        ModelConfig.load("gpt-9")


def test_broken_json_and_missing_hf_key(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{\"num_attention_heads\": 8,")
    with pytest.raises(ConfigError, match=r"config.json: broken JSON at line 1"):
        ModelConfig.load(str(bad))
    bad.write_text(json.dumps({"num_attention_heads": 8, "hidden_size": 512}))
    with pytest.raises(ConfigError, match=r"config.json: num_hidden_layers: missing"):
        ModelConfig.load(str(bad))
    bad.write_text(json.dumps({"num_attention_heads": 6, "num_key_value_heads": 4, "hidden_size": 768,
                               "num_hidden_layers": 2}))
    with pytest.raises(ConfigError, match=r"num_key_value_heads: heads \(6\) must be divisible by kv_heads \(4\)"):
        ModelConfig.load(str(bad))


def test_module_cross_field_rules(tmp_path):
    path = tmp_path / "org.yaml"
    base = ModuleOrg.load("aimx-16ch")
    values = {k: v for k, v, _, _ in base.describe()}
    values["burst_bytes"] = 64
    path.write_text("values:\n" + "".join(f"  {k}: {v}\n" for k, v in values.items()))
    with pytest.raises(ConfigError, match=r"values.burst_bytes: a burst must hold one element per bank"):
        ModuleOrg.load(str(path))


@pytest.mark.parametrize("case", ["unknown key", "wrong type", "broken yaml"])
def test_cli_reports_config_errors_in_one_line_exit_2(tmp_path, capsys, case):
    path = tmp_path / "m.yaml"
    path.write_text(BAD_YAML[case][0])
    assert main(["attention", "--model", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pimphony: error: ") and "Traceback" not in err
    assert BAD_YAML[case][1] in err


def test_blocking_read_cannot_beat_the_output_register(tmp_path):
    path = tmp_path / "t.yaml"
    values = {k: v for k, v, _, _ in TimingPreset.load("aim-gddr6").describe()}
    assert values["nRDHUB"] == 75                      # CENT's RD_MAC 37.5 ns at tCK 0.5 ns (docs/sources.md §timing)
    values["nRDHUB"] = 1
    path.write_text("values:\n" + "".join(f"  {k}: {v}\n" for k, v in values.items()))
    with pytest.raises(ConfigError, match=r"values.nRDHUB: 1 must be at least nCLREG \+ nBL \(2\): the data leaves "
                                          r"the OBuf first"):
        TimingPreset.load(str(path))


def test_timing_presets_share_their_values_and_convert_times(tmp_path):
    """The 1 ns preset is the 0.5 ns one with another clock: cycle values stay, a time given in ns (CENT's
    37.5 ns RD_MAC) becomes ceil(ns / tCK) cycles; a file can extend a preset the same way, and a
    minimum in cycles ('ck') goes with a time as in LiteDRAM's (ck, ns) pairs."""
    base, slow = TimingPreset.load("aim-gddr6"), TimingPreset.load("aim-gddr6-1ns")
    assert (base.tck_ps, base.nRDHUB, slow.tck_ps, slow.nRDHUB) == (500, 75, 1000, 38)
    same = [k for k in TimingPreset.value_fields() if k not in ("tck_ps", "nRDHUB")]
    assert all(getattr(base, k) == getattr(slow, k) for k in same)
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nextends: aim-gddr6\nvalues:\n  tck_ps: 2000\n  nRP: {ns: 1, ck: 5}\n")
    t = TimingPreset.load(path)
    assert (t.nRDHUB, t.nRP, t.nRC) == (19, 5, base.nRC)
    assert t.provenance["nRC"] == base.provenance["nRC"]


@pytest.mark.parametrize(("text", "message"), [
    ("name: t\nextends: aim-gddr6\nvalues:\n  nRP: {value: 3, ns: 2}\n",
     "values.nRP: give 'value' (in cycles) or 'ns' (a time), one of them"),
    ("name: t\nextends: aim-gddr6\nvalues:\n  nRP: {value: 3, ck: 2}\n", "values.nRP.ck: a minimum in cycles goes with 'ns'"),
    ("name: t\nextends: aim-gddr6\nvalues:\n  nRP: {ns: -1}\n",
     "values.nRP.ns: must be a positive number of nanoseconds; got -1"),
    ("name: t\nextends: nothing-like-it\nvalues: {}\n", "no such timing preset"),
    ("name: t\nextends: {f}\nvalues: {{}}\n", "extends: more than 8 levels of extends (a preset extending itself?)"),
])
def test_extends_and_time_errors(tmp_path, text, message):
    path = tmp_path / "t.yaml"
    path.write_text(text.replace("{f}", str(path)).replace("{{}}", "{}"))
    with pytest.raises(ConfigError, match=re.escape(message)):
        TimingPreset.load(path)


def test_a_time_needs_a_clock(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nextends: aimx-16ch\nvalues:\n  channels: {ns: 3}\n")
    with pytest.raises(ConfigError, match=r"values\.channels\.ns: a time needs the clock"):
        ModuleOrg.load(path)
