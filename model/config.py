"""Typed, validated configurations: module organisation, timing preset, LLM and workload.

Every preset is a YAML file under ``presets/<kind>/<name>.yaml`` of the form::

    name: aimx-16ch
    description: ...
    values:
      channels: {value: 16, basis: paper, source: "PIMphony Sec IV-C ..."}

Each value carries its provenance (``source`` and a ``basis`` of ``paper``, ``public-model``,
``derived`` or ``assumed``). A user's own YAML file may give plain values (``channels: 16``); they
are then tagged ``basis: user`` with the file as the source. LLMs may also be given as a Hugging Face
``config.json``.

Validation is strict and happens on load: an unknown key, a wrong type, a value out of range, a
missing file or broken YAML/JSON raise :class:`ConfigError`, whose message names the file, the key
and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

BASES = ("paper", "public-model", "derived", "assumed", "user")


def yaml_message(exc: yaml.YAMLError) -> str:
    """A YAML parser error as one line: `` at line N: what is wrong``."""
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}" if mark is not None else ""
    return f"{at}: {' '.join(str(getattr(exc, 'problem', None) or exc).split())}"


class InputError(ValueError):
    """An input data file (an ``.npz`` of queries, keys and values) is malformed or does not match the
    model; ``str()`` is one line naming the file."""


class ConfigError(ValueError):
    """A configuration could not be loaded; ``str()`` is one line naming file, key and rule."""

    def __init__(self, where: str, key: str | None, message: str):
        self.where = where
        self.key = key
        self.message = message
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        super().__init__(text)


@dataclass(frozen=True)
class Provenance:
    """Where one configuration value comes from."""

    source: str
    basis: str


def _spec(lo: int, hi: int, doc: str) -> Any:
    """A required integer field with an inclusive range and a one-line meaning."""
    return field(metadata={"range": (lo, hi), "doc": doc})


def _real(lo: float, hi: float, doc: str) -> Any:
    """A required real-valued field (an integer is accepted too) with an inclusive range."""
    return field(metadata={"range": (lo, hi), "doc": doc, "real": True})


def _optional(lo: int, hi: int, doc: str) -> Any:
    """An optional integer field; 0 means "not given" (a consumer that needs it says so)."""
    return field(default=0, metadata={"range": (lo, hi), "doc": doc, "optional": True})


T = TypeVar("T", bound="_Config")


@dataclass(frozen=True)
class _Config:
    """Common loading and validation for the four config kinds."""

    KIND: ClassVar[str] = ""
    name: str = field(metadata={"doc": "preset name"})
    description: str = field(default="", metadata={"doc": "free text"})
    provenance: dict[str, Provenance] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def value_fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls) if "range" in f.metadata}

    @classmethod
    def from_mapping(cls: type[T], raw: Any, where: str) -> T:
        """Validate a parsed YAML/JSON mapping (``name``, ``description``, ``values``)."""
        if not isinstance(raw, dict):
            raise ConfigError(where, None,
                              f"expected a mapping with keys name, description, values; got {type(raw).__name__}")
        allowed_top = {"name", "description", "extends", "values"}
        for key in raw:
            if key not in allowed_top:
                raise ConfigError(where, str(key), f"unknown key; allowed: {', '.join(sorted(allowed_top))}")
        name = raw.get("name", Path(where).stem)
        if not isinstance(name, str) or not name:
            raise ConfigError(where, "name", "must be a non-empty string")
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(where, "description", "must be a string")
        values = _inherited_values(cls, raw, where)
        specs = cls.value_fields()
        parsed: dict[str, int | float] = {}
        prov: dict[str, Provenance] = {}
        times: dict[str, tuple[Fraction, int]] = {}
        for key, entry in values.items():
            if key not in specs:
                raise ConfigError(where, f"values.{key}", f"unknown key; allowed: {', '.join(specs)}")
            if isinstance(entry, dict):
                value, basis, source, time = _entry(entry, where, f"values.{key}")
                if time is not None:
                    times[key] = time
                    prov[key] = Provenance(source=source, basis=basis)
                    continue
            else:
                value, basis, source = entry, "user", where
            parsed[key] = _check_value(value, specs[key], where, f"values.{key}")
            prov[key] = Provenance(source=source, basis=basis)
        for key, (ns, ck) in times.items():
            if "tck_ps" not in specs or "tck_ps" not in parsed:
                raise ConfigError(where, f"values.{key}.ns", "a time needs the clock: only a timing preset with "
                                                              "tck_ps can give one")
            parsed[key] = _check_value(max(ck, math.ceil(ns * 1000 / parsed["tck_ps"])), specs[key], where,
                                       f"values.{key}")
        required = [k for k, f in specs.items() if not f.metadata.get("optional")]
        missing = [k for k in required if k not in parsed]
        if missing:
            raise ConfigError(where, f"values.{missing[0]}", f"missing; required keys: {', '.join(required)}")
        config = cls(name=name, description=description, provenance=prov, **parsed)
        config._check(where)
        return config

    def _check(self, where: str) -> None:
        """Cross-field rules; subclasses extend."""

    @classmethod
    def load(cls: type[T], name_or_path: str | Path) -> T:
        """Load a preset by name, or a YAML file by path (a file is read on every call; the same text is
        parsed once)."""
        text, where = _read(cls.KIND, name_or_path)
        return _parse(cls, text, where)

    def describe(self) -> list[tuple[str, int, str, str]]:
        """Rows (key, value, basis, source) for printing."""
        rows = []
        for key in self.value_fields():
            prov = self.provenance.get(key, Provenance("", ""))
            if key in self.provenance or getattr(self, key):
                rows.append((key, getattr(self, key), prov.basis, prov.source))
        return rows


@functools.lru_cache(maxsize=256)
def _parse(cls: type[T], text: str, where: str) -> T:
    """Parse and validate one config text (configs are frozen, so one object serves every caller)."""
    return cls.from_mapping(_yaml(text, where), where)


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(where, None, f"broken YAML{yaml_message(exc)}") from None


def _inherited_values(cls: type, raw: dict, where: str, depth: int = 0) -> dict:
    """``raw``'s values over those of the preset it ``extends`` (of the same kind, by name or path),
    recursively."""
    values = raw.get("values")
    if not isinstance(values, dict):
        raise ConfigError(where, "values", "missing or not a mapping of key -> value")
    base = raw.get("extends")
    if base is None:
        return values
    if not isinstance(base, str) or not base:
        raise ConfigError(where, "extends", f"must name a {cls.KIND} preset or file")
    if depth >= 8:
        raise ConfigError(where, "extends", "more than 8 levels of extends (a preset extending itself?)")
    text, base_where = _read(cls.KIND, base)
    base_raw = _yaml(text, base_where)
    if not isinstance(base_raw, dict):
        raise ConfigError(base_where, None, "expected a mapping with keys name, description, values")
    return {**_inherited_values(cls, base_raw, base_where, depth + 1), **values}


def _entry(entry: dict, where: str, key: str) -> tuple[Any, str, str, tuple[Fraction, int] | None]:
    """(value, basis, source, time) of a ``{value | ns [ck], source, basis}`` entry; ``time`` is
    (nanoseconds, minimum cycles) when the entry gives a time, as LiteDRAM's (ck, ns) pairs: the cycles
    are then max(ck, ceil(ns / tCK))."""
    extra = set(entry) - {"value", "ns", "ck", "source", "basis"}
    if extra:
        raise ConfigError(where, key, f"unknown field {sorted(extra)[0]!r}; allowed: value, ns, ck, source, basis")
    if ("value" in entry) == ("ns" in entry):
        raise ConfigError(where, key, "give 'value' (in cycles) or 'ns' (a time), one of them")
    if "ck" in entry and "ns" not in entry:
        raise ConfigError(where, f"{key}.ck", "a minimum in cycles goes with 'ns'")
    basis = entry.get("basis", "user")
    if basis not in BASES:
        raise ConfigError(where, f"{key}.basis", f"{basis!r} is not one of {', '.join(BASES)}")
    source = entry.get("source", where)
    if not isinstance(source, str) or not source:
        raise ConfigError(where, f"{key}.source", "must be a non-empty string")
    if "value" in entry:
        return entry["value"], basis, source, None
    ns, ck = entry["ns"], entry.get("ck", 0)
    if isinstance(ns, bool) or not isinstance(ns, int | float) or not math.isfinite(ns) or ns <= 0:
        raise ConfigError(where, f"{key}.ns", f"must be a positive number of nanoseconds; got {ns!r}")
    if isinstance(ck, bool) or not isinstance(ck, int) or ck < 0:
        raise ConfigError(where, f"{key}.ck", f"must be a whole number of cycles; got {ck!r}")
    return None, basis, source, (Fraction(str(ns)), ck)


def _check_value(value: Any, spec: dataclasses.Field, where: str, key: str) -> int | float:
    lo, hi = spec.metadata["range"]
    if spec.metadata.get("real"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(where, key, f"must be a number in [{lo}, {hi}]; got {type(value).__name__} {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(where, key, f"{value} is out of range; allowed [{lo}, {hi}]")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, key, f"must be an integer in [{lo}, {hi}]; got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(where, key, f"{value} is out of range; allowed [{lo}, {hi}]")
    return value


def _preset_dir(kind: str):
    return resources.files("pimphony.model").joinpath("presets", kind)


def preset_names(kind: str) -> list[str]:
    """Names of the shipped presets of one kind (``timing``, ``modules``, ``models``, ``workloads``)."""
    return sorted(p.name.removesuffix(".yaml") for p in _preset_dir(kind).iterdir() if p.name.endswith(".yaml"))


def _read(kind: str, name_or_path: str | Path) -> tuple[str, str]:
    text_arg = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text_arg or text_arg.endswith((".yaml", ".yml", ".json"))
    if not looks_like_path:
        if text_arg not in preset_names(kind):
            names = ", ".join(preset_names(kind))
            raise ConfigError(text_arg, None, f"no such {kind} preset; available: {names} (or give a file path)")
        return _preset_dir(kind).joinpath(f"{text_arg}.yaml").read_text(), f"preset {kind}/{text_arg}"
    path = Path(text_arg)
    if path.is_dir():
        raise ConfigError(text_arg, None, "is a folder; give a YAML file")
    if not path.is_file():
        raise ConfigError(text_arg, None, "file not found")
    try:
        return path.read_text(), text_arg
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(text_arg, None, f"cannot read: {exc}") from None


DEFAULT_MODULE = "aimx-16ch"
"""The module preset every command and block uses unless told otherwise (the paper's 16 x 16 AiMX)."""
DEFAULT_TIMING = "aim-gddr6"
"""The timing preset every command and block uses unless told otherwise (aim_simulator's GDDR6-AiM)."""
DEFAULT_GENERATE = 512
"""Tokens each request generates in the system and capacity models unless told otherwise (the static
baseline reserves them on top of the context)."""


@dataclass(frozen=True, kw_only=True)
class TimingPreset(_Config):
    """DRAM/PIM command timing in command-clock cycles of ``tck_ps`` (docs/sources.md §timing)."""

    KIND: ClassVar[str] = "timing"
    tck_ps: int = _spec(1, 100_000, "command clock period in picoseconds")
    nBL: int = _spec(0, 100_000, "burst length on the data bus")
    nCL: int = _spec(0, 100_000, "read latency")
    nRCDRD: int = _spec(0, 100_000, "ACT to RD")
    nRCDRDMAC: int = _spec(0, 100_000, "ACT to MAC")
    nRCDWR: int = _spec(0, 100_000, "ACT to WR")
    nRP: int = _spec(0, 100_000, "PRE to ACT")
    nRAS: int = _spec(0, 100_000, "ACT to PRE")
    nRC: int = _spec(0, 100_000, "ACT to ACT, same bank")
    nWR: int = _spec(0, 100_000, "write recovery")
    nRTP: int = _spec(0, 100_000, "MAC/RD to PRE")
    nCWL: int = _spec(0, 100_000, "write latency")
    nCCDS: int = _spec(1, 100_000, "column command to column command (MAC cadence)")
    nCCDL: int = _spec(0, 100_000, "all-bank column command to column command")
    nRRDS: int = _spec(0, 100_000, "ACT to ACT, different bank group")
    nRRDL: int = _spec(0, 100_000, "ACT to ACT, same bank group")
    nWTRS: int = _spec(0, 100_000, "write to read turnaround")
    nWTRL: int = _spec(0, 100_000, "write to read turnaround, same bank group")
    nRFC: int = _spec(0, 100_000, "refresh cycle time (all banks)")
    nREFI: int = _spec(1, 10_000_000, "refresh interval")
    nCLREG: int = _spec(0, 100_000, "MAC register read latency")
    nCLGB: int = _spec(0, 100_000, "GBuf read latency")
    nCWLREG: int = _spec(0, 100_000, "MAC register write latency")
    nCWLGB: int = _spec(0, 100_000, "GBuf write latency")
    nWPRE: int = _spec(0, 100_000, "write preamble")
    nRDHUB: int = _spec(0, 100_000, "RD-OUT until its data is at the HUB: what a blocking in-order controller waits")
    nMODCH: int = _spec(0, 100_000, "after a mode switch (TMOD) between register and bank commands, nothing issues")

    def _check(self, where: str) -> None:
        if self.nRDHUB < self.nCLREG + self.nBL:
            raise ConfigError(where, "values.nRDHUB", f"{self.nRDHUB} must be at least nCLREG + nBL "
                                                      f"({self.nCLREG + self.nBL}): the data leaves the OBuf first")


@dataclass(frozen=True, kw_only=True)
class ModuleOrg(_Config):
    """Organisation of one PIM module: channels x banks x rows x columns, buffers (docs/sources.md §channel)."""

    KIND: ClassVar[str] = "modules"
    channels: int = _spec(1, 64, "PIM channels per module (one controller each)")
    banks: int = _spec(1, 64, "banks per channel, each with a MAC unit")
    rows: int = _spec(1, 1 << 20, "rows per bank")
    columns: int = _spec(16, 1 << 16, "elements per row")
    element_bytes: int = _spec(2, 2, "bytes per element (bf16)")
    burst_bytes: int = _spec(2, 1024, "bytes per column burst / GBuf entry")
    gbuf_entries: int = _spec(1, 4096, "global buffer entries per channel")
    outreg_entries: int = _spec(1, 4096, "baseline output registers per bank")
    obuf_entries: int = _spec(1, 4096, "output buffer entries per bank with DCS")
    gpr_bytes: int = _spec(1024, 1 << 30, "HUB general-purpose register file bytes")

    def _check(self, where: str) -> None:
        if self.burst_bytes % self.element_bytes:
            raise ConfigError(where, "values.burst_bytes",
                              f"must be a multiple of element_bytes ({self.element_bytes})")
        if self.burst_bytes // self.element_bytes != self.banks:
            raise ConfigError(
                where, "values.burst_bytes",
                f"a burst must hold one element per bank (RD-OUT returns one element from each bank): "
                f"burst_bytes / element_bytes = {self.burst_bytes // self.element_bytes}, banks = {self.banks}",
            )
        if self.columns % self.burst_elements:
            raise ConfigError(where, "values.columns",
                              f"must be a multiple of the burst ({self.burst_elements} elements)")
        if self.gpr_bytes % self.burst_bytes:
            raise ConfigError(where, "values.gpr_bytes", f"must be a multiple of burst_bytes ({self.burst_bytes})")

    @property
    def burst_elements(self) -> int:
        """Elements per 32 B burst = per GBuf entry = MACs per bank per MAC command (16)."""
        return self.burst_bytes // self.element_bytes

    @property
    def bursts_per_row(self) -> int:
        return self.columns // self.burst_elements

    @property
    def gpr_entries(self) -> int:
        return self.gpr_bytes // self.burst_bytes

    @property
    def lanes(self) -> int:
        """Banks in the module (channels x banks): the unit of token parallelism under TCP."""
        return self.channels * self.banks

    @property
    def bytes(self) -> int:
        return self.channels * self.banks * self.rows * self.columns * self.element_bytes


@dataclass(frozen=True, kw_only=True)
class ModelConfig(_Config):
    """The attention shape of an LLM (docs/sources.md §models)."""

    KIND: ClassVar[str] = "models"
    layers: int = _spec(1, 1024, "decoder layers")
    heads: int = _spec(1, 1024, "query heads")
    kv_heads: int = _spec(1, 1024, "key/value heads (GQA when fewer than heads)")
    head_dim: int = _spec(16, 4096, "elements per head; a multiple of 16")
    context: int = _spec(1, 1 << 24, "maximum context length in tokens")
    hidden: int = _optional(16, 1 << 20, "model width d_model (FC layers; the system model needs it)")
    intermediate: int = _optional(16, 1 << 22, "FFN width of the gated MLP (the system model needs it)")
    vocab: int = _optional(1, 1 << 24, "vocabulary size of the LM head (the system model needs it)")

    def _check(self, where: str) -> None:
        if self.heads % self.kv_heads:
            raise ConfigError(
                where, "values.kv_heads",
                f"heads ({self.heads}) must be divisible by kv_heads ({self.kv_heads})",
            )
        if self.head_dim % 16:
            raise ConfigError(where, "values.head_dim", f"{self.head_dim} must be a multiple of 16 (one 32 B burst)")

    @property
    def group(self) -> int:
        """GQA group size g: query heads per KV head (1 = MHA)."""
        return self.heads // self.kv_heads

    FC_FIELDS: ClassVar[tuple[str, ...]] = ("hidden", "intermediate", "vocab")

    def require_fc(self) -> None:
        """Raise :class:`ConfigError` unless the FC shape (hidden, intermediate, vocab) is given."""
        missing = [k for k in self.FC_FIELDS if not getattr(self, k)]
        if missing:
            raise ConfigError(f"model {self.name}", f"values.{missing[0]}",
                              f"missing; the system model needs {', '.join(self.FC_FIELDS)} "
                              "(Hugging Face: hidden_size, intermediate_size, vocab_size)")

    @property
    def layer_params(self) -> int:
        """Weights of one decoder layer: Q, K, V, O projections and a gated MLP (gate, up, down)."""
        self.require_fc()
        qkv = self.hidden * (self.heads + 2 * self.kv_heads) * self.head_dim
        return qkv + self.heads * self.head_dim * self.hidden + 3 * self.hidden * self.intermediate

    @property
    def head_params(self) -> int:
        """Weights of the LM head (run once per decode step; the embedding lookup reads one row)."""
        self.require_fc()
        return self.hidden * self.vocab

    @classmethod
    def load(cls, name_or_path: str | Path) -> ModelConfig:
        """A preset name, a YAML file, or a Hugging Face ``config.json``."""
        if str(name_or_path).endswith(".json"):
            return cls.from_hf_json(name_or_path)
        return super().load(name_or_path)

    @classmethod
    def from_hf_json(cls, path: str | Path) -> ModelConfig:
        """Read the attention shape from a Hugging Face ``config.json``.

        Uses ``num_attention_heads``, ``num_key_value_heads`` (default: the head count),
        ``head_dim`` (default ``hidden_size / num_attention_heads``), ``num_hidden_layers``,
        ``max_position_embeddings`` (default 4096) and, when present, ``hidden_size``,
        ``intermediate_size`` and ``vocab_size``. Nested ``text_config`` is followed.
        """
        text, where = _read("models", path)
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(where, None, f"broken JSON at line {exc.lineno}: {exc.msg}") from None
        if not isinstance(raw, dict):
            raise ConfigError(where, None, "expected a JSON object")
        if "num_attention_heads" not in raw and isinstance(raw.get("text_config"), dict):
            raw = raw["text_config"]

        def need(key: str) -> Any:
            if key not in raw:
                raise ConfigError(where, key, "missing; a Hugging Face config needs num_attention_heads, "
                                              "num_hidden_layers and head_dim or hidden_size")
            return raw[key]

        heads = need("num_attention_heads")
        layers = need("num_hidden_layers")
        kv_heads = raw.get("num_key_value_heads")
        if kv_heads is None:
            kv_heads = heads
        head_dim = raw.get("head_dim")
        if head_dim is None:
            hidden = need("hidden_size")
            if not isinstance(hidden, int) or not isinstance(heads, int) or heads <= 0 or hidden % heads:
                raise ConfigError(where, "hidden_size",
                                  f"must be an integer divisible by num_attention_heads ({heads!r})")
            head_dim = hidden // heads
        context = raw.get("max_position_embeddings", 4096)
        name = raw.get("_name_or_path") or Path(where).parent.name or Path(where).stem
        mapping = {
            "name": str(name).split("/")[-1] or "hf-model",
            "description": f"from Hugging Face config {where}",
            "values": {
                "layers": {"value": layers, "basis": "user", "source": f"{where} num_hidden_layers"},
                "heads": {"value": heads, "basis": "user", "source": f"{where} num_attention_heads"},
                "kv_heads": {"value": kv_heads, "basis": "user", "source": f"{where} num_key_value_heads"},
                "head_dim": {"value": head_dim, "basis": "user", "source": f"{where} head_dim"},
                "context": {"value": context, "basis": "user", "source": f"{where} max_position_embeddings"},
            },
        }
        keymap = {"layers": "num_hidden_layers", "heads": "num_attention_heads", "kv_heads": "num_key_value_heads",
                  "head_dim": "head_dim", "context": "max_position_embeddings", "hidden": "hidden_size",
                  "intermediate": "intermediate_size", "vocab": "vocab_size"}
        for ours in cls.FC_FIELDS:
            if keymap[ours] in raw:
                mapping["values"][ours] = {"value": raw[keymap[ours]], "basis": "user",
                                           "source": f"{where} {keymap[ours]}"}
        try:
            return cls.from_mapping(mapping, where)
        except ConfigError as exc:
            key = (exc.key or "").removeprefix("values.")
            raise ConfigError(where, keymap.get(key, exc.key), exc.message) from None


@dataclass(frozen=True, kw_only=True)
class WorkloadConfig(_Config):
    """Context-length statistics of a dataset (docs/sources.md §workloads): a clipped normal."""

    KIND: ClassVar[str] = "workloads"
    mean: int = _spec(1, 1 << 24, "mean context length")
    std: int = _spec(0, 1 << 24, "standard deviation")
    max: int = _spec(1, 1 << 24, "largest context length")
    min: int = _spec(1, 1 << 24, "smallest context length")

    def _check(self, where: str) -> None:
        if not self.min <= self.mean <= self.max:
            raise ConfigError(where, "values.mean", f"{self.mean} must lie in [min, max] = [{self.min}, {self.max}]")


@dataclass(frozen=True, kw_only=True)
class SystemConfig(_Config):
    """A multi-module PIM system (docs/sources.md §systems): what runs the FC layers and how modules talk.

    ``fc_on_pim`` = 1 is the PIM-only system (CENT): FC layers run as GEMVs on the PIM channels and the
    module's processing units (PNM) do softmax; 0 is xPU+PIM (NeuPIMs): FC layers run on the xPU's
    matrix units, attention on PIM. The module organisation is a separate preset.
    """

    KIND: ClassVar[str] = "systems"
    fc_on_pim: int = _spec(0, 1, "1: FC layers on PIM (PIM-only); 0: on the xPU (xPU+PIM)")
    xpu_gflops: int = _spec(1, 1 << 30, "xPU / PNM compute per module, GFLOPS")
    xpu_mem_gbps: float = _real(0.001, 1e9, "bandwidth at which the xPU reads weights from its module, GB/s")
    softmax_per_ns: float = _real(0.001, 1e6, "softmax throughput of a module's EPU/PNM, score elements per ns")
    link_gbps: float = _real(0.001, 1e9, "module-to-module link bandwidth (payload), GB/s")
    link_ns: float = _real(0, 1e9, "module-to-module transfer latency, ns")
    pim_tck_ps: int = _spec(1, 100_000, "PIM command clock of this system (cycle counts from the timing preset)")
    interleave_batch: int = _spec(0, 1 << 20, "smallest batch that overlaps FC and attention by sub-batch "
                                              "interleaving (0: never)")
    hfp_span: int = _spec(1, 1 << 10, "channels a head-first (request, KV head) pair's keys span in the baseline "
                                      "(its V takes the d_h/16-channel slice that holds them)")
    e_act_pj: float = _real(0, 1e9, "energy of a row opening and closing in every bank of a channel, pJ")
    e_mac_pj: float = _real(0, 1e9, "energy of one all-bank MAC command (column reads and MACs), pJ")
    e_io_pj: float = _real(0, 1e9, "energy of one 32 B transfer between the HUB and a channel, pJ")
    p_background_mw: float = _real(0, 1e9, "background power of one idle (precharged) channel, mW")
    p_active_mw: float = _real(0, 1e9, "background power of one channel while it works on attention (rows "
                                       "open), mW")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def index_bits(count: int) -> int:
    """Bits needed to index ``count`` items (at least 1)."""
    return max(1, math.ceil(math.log2(count)))
