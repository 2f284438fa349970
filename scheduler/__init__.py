"""The compiler: partitioning, lowering and command issue policies."""
