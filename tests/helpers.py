"""Small builders shared by the tests."""

from pimphony.model.config import ModelConfig


def model(heads: int, kv_heads: int, head_dim: int, name: str = "test-model") -> ModelConfig:
    """A validated one-layer model of the given attention shape."""
    return ModelConfig.from_mapping(
        {"name": name, "values": {"layers": 1, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
                                  "context": 1 << 20}}, "tests")
