"""Formal verification of the DCS queue and the DPA controller with SymbiYosys.

Each harness wraps one shipped block, unchanged, with ``Assume`` statements on its inputs (the stream
protocol) and an independent monitor whose ``Assert`` statements state the block's promises
(:mod:`.dcs`, :mod:`.dpa`). The monitors keep their own state from the block's ports; they read the
specification (the timing rule table, the latencies, the golden expansion), never the block's counters.
:mod:`.configs` gives the reduced sizes the proofs run at and why they stand for the shipped ones;
:mod:`.sby` runs the tasks and reads their results.
"""
