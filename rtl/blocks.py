"""The RTL blocks and their Verilog top names (plain data, importable without Amaranth)."""

BLOCKS = ("dcs", "dpa", "sequencer", "hub")
TOP_NAMES = {"dcs": "dcs_queue", "dpa": "dpa_controller", "sequencer": "sequencer", "hub": "pim_hub"}
HUB_PARTS = ("sequencer", "dpa", "dcs")
"""The blocks a hub is made of (one DCS queue per channel)."""
