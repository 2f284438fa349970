"""Amaranth RTL of the DCS command queue and the DPA controller (depends on pimphony.model only)."""
