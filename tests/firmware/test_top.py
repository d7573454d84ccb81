"""The controller's top level in the simulator ($SIM, icarus by default): UART, registers, pulse,
scan and lock-in together, driven by wire-protocol frames (firmware/tb/pfm_top_tb.py).

The UART runs at 8 clock cycles per bit here (12.5 Mbaud) instead of the instrument's 100, which
makes the run 10x shorter and changes nothing else: the command timing is counted from the frame
verdict, and tests/firmware/test_frame_parser.py checks the UART's bit timing itself.
"""

from __future__ import annotations

from firmware import runner

TOP_SOURCES = ["pfm_crc.v", "uart_rx.v", "uart_tx.v", "frame_parser.v", "bias_clamp.v", "pulse_gen.v",
               "scan_gen.v", "nco.v", "cordic.v", "lockin_div.v", "lockin_sine_rom.v", "lockin_atan_rom.v",
               "lockin.v", "pfm_top.v", "pfm_sim_top.v"]
FAST_UART = {"CLKS_PER_BIT": 8}


def test_top_level_through_the_uart():
    runner.run("pfm_sim_top", TOP_SOURCES, "firmware.tb.pfm_top_tb", parameters=FAST_UART)
