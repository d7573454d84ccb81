"""Frame parser RTL against control.wire.Decoder: builds the RTL and runs firmware/tb/frame_parser_tb.py.

The simulator comes from $SIM (icarus by default, see firmware/runner.py); FRAME_PARSER_SEED
changes the random streams (the testbench logs the seed it used).
"""

from __future__ import annotations

import os

from firmware.runner import run

TOPLEVEL = "frame_parser_tb_top"
SOURCES = ["frame_parser_tb_top.v", "frame_parser.v", "pfm_crc.v", "uart_rx.v", "uart_tx.v"]
PARAMETERS = {"MAX_PAYLOAD": 64, "CLKS_PER_BIT": 4}


def test_frame_parser_matches_decoder():
    env = {"FRAME_PARSER_CLKS_PER_BIT": str(PARAMETERS["CLKS_PER_BIT"])}
    for name in ("FRAME_PARSER_SEED", "FRAME_PARSER_STREAMS", "FRAME_PARSER_ITEMS"):
        if name in os.environ:
            env[name] = os.environ[name]
    run(TOPLEVEL, SOURCES, "firmware.tb.frame_parser_tb", parameters=PARAMETERS, extra_env=env)
