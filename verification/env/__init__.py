"""cocotb components: driver, back-pressure, monitor, golden-channel BFM, scoreboard."""
