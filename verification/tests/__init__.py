"""cocotb test modules (run through pimphony.verification.runner)."""
