"""Fuzzing the readers of user input: whatever they are given, they answer with a value or with the
project's own one-line error, never with another exception."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimphony.model import aimtrace
from pimphony.model.config import ConfigError, ModelConfig, ModuleOrg, SystemConfig, TimingPreset, WorkloadConfig
from pimphony.model.isa import Format, IsaError
from pimphony.scheduler.golden import AttentionInputs, InputError

FMT = Format.for_org(ModuleOrg.load("aimx-16ch"))
MODEL = ModelConfig.load("llama-3.1-8b")
SMALL = ModelConfig.from_mapping({"name": "s", "values": {"layers": 1, "heads": 2, "kv_heads": 1, "head_dim": 16,
                                                          "context": 64}}, "s")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=True),
                    st.text(max_size=8), st.lists(st.integers(), max_size=3))
entries = st.one_of(scalars, st.fixed_dictionaries({"value": scalars},
                                                   optional={"source": scalars, "basis": scalars, "extra": scalars}))


def _keys(cls) -> list[str]:
    return [*cls.value_fields(), "colour"]


@FUZZ
@given(st.sampled_from([ModelConfig, ModuleOrg, TimingPreset, SystemConfig, WorkloadConfig]), st.data())
def test_config_loaders_answer_with_config_errors(cls, data):
    values = data.draw(st.dictionaries(st.sampled_from(_keys(cls)), entries, max_size=12))
    raw = data.draw(st.one_of(st.fixed_dictionaries({"name": st.one_of(st.text(max_size=5), scalars),
                                                     "values": st.just(values)}),
                              st.just(values), scalars))
    try:
        cls.from_mapping(raw, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)


@FUZZ
@given(st.dictionaries(st.sampled_from(["num_attention_heads", "num_key_value_heads", "head_dim", "hidden_size",
                                        "num_hidden_layers", "max_position_embeddings", "text_config"]),
                       scalars, max_size=7))
def test_hugging_face_loader_answers_with_config_errors(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("hf") / "config.json"
    path.write_text(json.dumps(raw))
    try:
        ModelConfig.load(path)
    except ConfigError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)


arrays = st.one_of(
    st.builds(lambda shape, fill: np.full(shape, fill, dtype=np.float32),
              st.lists(st.integers(0, 3), min_size=0, max_size=5).map(tuple),
              st.floats(allow_nan=True, allow_infinity=True, width=32)),
    st.builds(lambda shape: np.zeros(shape, dtype=np.int16), st.lists(st.integers(0, 3), max_size=4).map(tuple)),
    st.just(np.array(["x"])))


@FUZZ
@given(st.dictionaries(st.sampled_from(["q", "k", "v", "lengths", "other"]), arrays, max_size=5),
       st.booleans())
def test_npz_loader_answers_with_input_errors(tmp_path_factory, named, good_shapes):
    if good_shapes:
        named = {"q": np.ones((1, 2, 16), np.float32), "k": np.ones((1, 1, 8, 16), np.float32),
                 "v": np.ones((1, 1, 8, 16), np.float32), "lengths": np.array([8]), **named}
    path = tmp_path_factory.mktemp("npz") / "in.npz"
    np.savez(path, **named)
    try:
        inputs = AttentionInputs.load(path, SMALL)
    except InputError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert np.isfinite(inputs.q.astype(np.float32)).all() and inputs.lengths.min() >= 1


@FUZZ
@given(st.one_of(st.integers(-(1 << 80), 1 << 80), st.floats(allow_nan=True), st.text(max_size=4), st.none(),
                 st.booleans(), st.just(np.int64(7)), st.just(np.float64(7.0))))
def test_isa_decoders_answer_with_isa_errors(word):
    for decode in (FMT.decode_command, FMT.decode_instruction):
        try:
            decode(word)
        except IsaError as exc:
            assert "\n" not in str(exc)


tokens = st.sampled_from(["AiM", "WR_GB", "WR_BIAS", "MAC_ABK", "RD_MAC", "EOC", "ISR_EOC", "EWMUL", "#", "R", "W",
                          "0x1", "0x80000000", "0xffffffff", "0x0", "1", "64", "-3", "x", "0x", "1e3", ""])


@FUZZ
@given(st.lists(st.lists(tokens, max_size=6).map(" ".join), max_size=12), st.one_of(st.none(), st.integers(-2, 40)))
def test_trace_reader_answers_with_trace_errors(lines, channel):
    try:
        trace = aimtrace.parse("\n".join(lines), "fuzz.trace", channel)
    except aimtrace.AimTraceError as exc:
        assert str(exc).startswith("fuzz.trace") and "\n" not in str(exc)
    else:
        assert trace.kind[-1] == aimtrace.Isr.EOC and (trace.opsize >= 1).all()
