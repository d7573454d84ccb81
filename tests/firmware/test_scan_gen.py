"""The raster scan generator in the simulator ($SIM, icarus by default), against the twin's line timing.

The cocotb tests live in firmware/tb/scan_gen_tb.py.
"""

from __future__ import annotations

from firmware import runner


def test_scan_generator_matches_the_twin_line_timing():
    runner.run("scan_gen_top", ["scan_gen.v", "scan_gen_top.v"], "firmware.tb.scan_gen_tb")
