"""Cycle and throughput models of PIM channels, modules and systems."""
