"""The bias pulse generator and its clamp, in the simulator ($SIM, icarus by default), against the twin.

The cocotb tests live in firmware/tb/pulse_gen_tb.py; one module serves both tops and each test
runs only on its own top level.
"""

from __future__ import annotations

from firmware import runner


def test_bias_clamp_holds_for_every_code_and_clamp_register():
    runner.run("bias_clamp_top", ["bias_clamp.v", "bias_clamp_top.v"], "firmware.tb.pulse_gen_tb")


def test_pulse_generator_matches_the_twin_timing():
    runner.run("pulse_gen_top", ["bias_clamp.v", "pulse_gen.v", "pulse_gen_top.v"], "firmware.tb.pulse_gen_tb")
