"""cocotb verification environment: drivers, monitors, scoreboards, golden-channel BFM."""
