"""cocotb testbench of the band-excitation engine (``be_engine``: waveform player, capture buffer).

* model   -- :mod:`firmware.be_model`: the drive code and the clock edge of every ADC sample, the
  capture words, and the host's table and spectral division.
* driver  -- writes the table word by word, ``length``, ``repeats`` and the start strobe, and
  feeds ``adc_data`` at every ``adc_strobe`` from a prepared sequence.
* monitor -- at every strobe, the drive code and the clock edge (``cycle``); after ``done``, the
  capture words, read through ``capture_addr``.
* checker -- every sample against the model, sample for sample; and a cantilever's SHO response,
  synthesized as ADC codes, recovered per bin through the engine.

Randomness is seeded from ``PFM_TB_SEED``.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from firmware import be_model

SEED = int(os.environ.get("PFM_TB_SEED", 20261130))
DEPTH = 256  # be_engine_top's DEPTH
FULL = 2**15 - 1


async def reset(dut) -> None:
    for name in ("table_we", "table_addr", "table_data", "length", "repeats", "start", "adc_data", "capture_addr"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)


async def write_table(dut, table) -> None:
    await FallingEdge(dut.clk)
    for address, code in enumerate(table):
        dut.table_we.value = 1
        dut.table_addr.value = address
        dut.table_data.value = int(code)
        await FallingEdge(dut.clk)
    dut.table_we.value = 0


async def play(dut, table, repeats: int, adc) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Play ``table`` ``repeats`` times feeding ``adc``; return (drive per sample, edges, capture, start edge)."""
    adc = [int(a) for a in adc]
    seen_drive, seen_edges = [], []

    async def feed() -> None:
        for sample in adc:
            await RisingEdge(dut.adc_strobe)
            dut.adc_data.value = sample
            await ReadOnly()
            seen_drive.append(dut.drive.value.to_signed())
            seen_edges.append(int(dut.cycle.value) + 1)  # taken at the next edge

    dut.length.value = len(table)
    dut.repeats.value = repeats
    feeder = cocotb.start_soon(feed())
    await FallingEdge(dut.clk)
    dut.start.value = 1
    await RisingEdge(dut.clk)
    await ReadOnly()
    start_edge = int(dut.cycle.value)
    await FallingEdge(dut.clk)
    dut.start.value = 0
    while not int(dut.done.value):
        await RisingEdge(dut.done)
    await feeder
    capture = []
    for address in range(len(table)):
        await FallingEdge(dut.clk)
        dut.capture_addr.value = address
        await ReadOnly()
        capture.append(dut.capture_data.value.to_signed())
    return np.array(seen_drive), np.array(seen_edges), np.array(capture), start_edge


@cocotb.test()
async def plays_and_captures_sample_for_sample(dut):
    """Random table, length not a power of two, several periods: every drive code, every sample's
    clock edge and every capture word as the model says."""
    await reset(dut)
    rng = np.random.default_rng(SEED)
    for length, repeats in ((200, 3), (DEPTH, 1), (7, 5)):
        table = rng.integers(-FULL, FULL + 1, length)
        adc = rng.integers(-(2**15), 2**15, length * repeats)
        await write_table(dut, table)
        drive, edges, capture, start_edge = await play(dut, table, repeats, adc)
        want_drive, want_capture = be_model.play(table, repeats, adc)
        assert np.array_equal(drive, want_drive), f"length {length}: drive codes differ from the model"
        assert np.array_equal(edges, be_model.sample_edges(start_edge, length, length * repeats)), \
            f"length {length}: ADC samples at {edges[:3]}..., the model says {be_model.sample_edges(start_edge, length, 3)}"
        assert np.array_equal(capture, want_capture), f"length {length}: capture words differ from the model"
        assert int(dut.busy.value) == 0 and int(dut.drive.value) == 0


@cocotb.test()
async def a_full_scale_capture_sums_without_loss(dut):
    """The most negative ADC code on every sample of 300 periods: 32-bit words hold the sum."""
    await reset(dut)
    table = np.full(4, 1000)
    adc = np.full(4 * 300, -(2**15))
    await write_table(dut, table)
    _, _, capture, _ = await play(dut, table, 300, adc)
    assert np.all(capture == -(2**15) * 300)


@cocotb.test()
async def a_cantilever_response_comes_back_per_bin(dut):
    """The host's side end to end: a multisine over the band's bins, the ADC fed with an SHO's
    steady-state response to it (quantized to codes), the response per bin recovered through
    the engine within the quantization (the path co-simulation will take)."""
    await reset(dut)
    length, repeats = DEPTH, 2
    adc_rate = 4e6
    k = be_model.harmonics(357e3, 150e3, 8, length, adc_rate)
    table = be_model.excitation(k, length, 20000)
    f = k * adc_rate / length
    f0, q, gain = 357e3, 30.0, 0.02
    h = gain * f0**2 / (f0**2 - f**2 + 1j * f * f0 / q)  # ADC codes per DAC code at each harmonic
    spectrum = np.zeros(length, dtype=complex)
    spectrum[k] = np.fft.fft(table.astype(float))[k] * h
    spectrum[length - k] = np.conj(spectrum[k])
    period = np.round(np.fft.ifft(spectrum).real).astype(np.int64)
    await write_table(dut, table)
    _, _, capture, _ = await play(dut, table, repeats, np.tile(period, repeats))
    got = be_model.response(capture, table, k, repeats)
    assert np.max(np.abs(got / h - 1)) < 0.02, f"per-bin response off by {np.max(np.abs(got / h - 1)):.3f}"


async def start_play(dut, length: int, repeats: int) -> None:
    """Set ``length`` and ``repeats`` and hold ``start`` for one cycle."""
    dut.length.value = length
    dut.repeats.value = repeats
    await FallingEdge(dut.clk)
    dut.start.value = 1
    await FallingEdge(dut.clk)
    dut.start.value = 0


@cocotb.test()
async def start_is_ignored_while_busy_and_for_an_empty_table(dut):
    await reset(dut)
    await start_play(dut, 0, 1)
    await ClockCycles(dut.clk, 3)
    assert int(dut.busy.value) == 0, "a start with length 0 must not play"
    await write_table(dut, np.arange(1, 9))
    await start_play(dut, 8, 2)
    await ClockCycles(dut.clk, 40)
    dut.table_we.value, dut.table_addr.value, dut.table_data.value = 1, 0, 12345  # ignored: busy
    dut.start.value = 1  # ignored: busy
    await FallingEdge(dut.clk)
    dut.table_we.value, dut.start.value = 0, 0
    await RisingEdge(dut.done)
    await ClockCycles(dut.clk, 2)
    assert int(dut.busy.value) == 0, "a start while busy must not restart the play"
    # The write while busy was dropped: the table still starts with 1.
    await start_play(dut, 1, 1)
    await RisingEdge(dut.adc_strobe)
    await ReadOnly()
    assert dut.drive.value.to_signed() == 1
