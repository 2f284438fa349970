"""The RTL blocks and their Verilog top names (plain data, importable without Amaranth)."""

BLOCKS = ("dcs", "dpa")
TOP_NAMES = {"dcs": "dcs_queue", "dpa": "dpa_controller"}
