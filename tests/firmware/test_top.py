"""The controller's top level in the simulator ($SIM, icarus by default): UART, registers, pulse,
scan and lock-in together, driven by wire-protocol frames (firmware/tb/pfm_top_tb.py).

The UART runs at 8 clock cycles per bit here (12.5 Mbaud) instead of the instrument's 100, which
makes the run 10x shorter and changes nothing else: the command timing is counted from the frame
verdict, and tests/firmware/test_frame_parser.py checks the UART's bit timing itself.
"""

from __future__ import annotations

from firmware import runner
from firmware.cosim import TOP_SOURCES

FAST_UART = {"CLKS_PER_BIT": 8}


def test_top_level_through_the_uart():
    runner.run("pfm_sim_top", TOP_SOURCES, "firmware.tb.pfm_top_tb", parameters=FAST_UART)
