"""The band-excitation engine (waveform player and capture buffer) in the simulator ($SIM, icarus
by default), against its bit-exact model (firmware/be_model.py). Tests: firmware/tb/be_engine_tb.py."""

from __future__ import annotations

from firmware import runner


def test_the_be_engine_plays_and_captures_as_its_model():
    runner.run("be_engine_top", ["be_engine.v", "be_engine_top.v"], "firmware.tb.be_engine_tb")
