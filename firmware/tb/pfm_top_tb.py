"""cocotb testbench of the controller's top level (``pfm_top`` under ``pfm_sim_top``).

Everything goes through the command UART as wire-protocol frames, as the host sends them:

* driver and monitors -- :class:`firmware.tb.host.Host` (frames in, answers out, the clock edge of
  each frame verdict) and :class:`firmware.tb.host.Analog` (ADC samples in; the bias and scanner
  DAC pins and the pixel stream watched);
* models -- the project's cocotb-free Python: :mod:`control.wire` (frames, NAKs),
  :mod:`control.hardware` (register map, bits), :class:`control.fpga.FpgaTiming` (the twin's pulse
  quantization, DAC codes, pixel timing), :mod:`firmware.lockin_model` (bit-accurate lock-in) and
  :func:`firmware.spec.nak_messages` (the NAK texts);
* checkers -- the assertions in each test, against those models.

Randomness is seeded from ``PFM_TB_SEED``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from control import wire
from control.fpga import FpgaTiming
from control.hardware import (
    BE_TABLE_DEPTH,
    CONTROL_BITS,
    DEFAULT_HARDWARE,
    READ_ONLY_REGISTERS,
    REGISTER_ID,
    REGISTER_MAP,
    STATUS_BITS,
    WRITE_ONLY_REGISTERS,
)
from control.wire import Cmd, Nak
from firmware import be_model, lockin_model
from firmware.spec import COMMAND_LATENCY_CYCLES, nak_messages
from firmware.tb.host import Analog, Host, NakError

SEED = int(os.environ.get("PFM_TB_SEED", "20261125"))
TIMING = FpgaTiming(DEFAULT_HARDWARE)
HW = DEFAULT_HARDWARE
FULL_SCALE = 2 ** (HW.dac_bits - 1) - 1
MIN_CYCLES, MAX_CYCLES = TIMING.pulse_cycle_range
MESSAGES = nak_messages(HW)
WIDTH16 = {"X_SETPOINT", "Y_SETPOINT", "PIXELS_PER_LINE", "LINES", "X_STEP", "Y_STEP",
           "BIAS_CLAMP_CODE", "LOCKIN_DECIMATION", "BE_REPEATS"}
#: Registers narrower than 16 bits: the values they take, [low, high).
NARROW = {"BE_TABLE_ADDR": (0, BE_TABLE_DEPTH), "BE_CAPTURE_ADDR": (0, BE_TABLE_DEPTH), "BE_LENGTH": (1, BE_TABLE_DEPTH + 1)}


def status_bit(value: int, name: str) -> bool:
    return bool(value >> STATUS_BITS[name] & 1)


async def expect_nak(host: Host, message: str, coroutine) -> NakError:
    """Await ``coroutine``, which must fail with the NAK named ``message`` (code and exact text)."""
    code, text = MESSAGES[message]
    try:
        await coroutine
    except NakError as exc:
        assert exc.code == code, f"NAK code {exc.code} ({exc}), expected {code.name}"
        assert exc.message == text, f"NAK text {exc.message!r}, expected {text!r}"
        return exc
    raise AssertionError(f"expected NAK {message} ({code.name}), got an ACK")


async def start(dut) -> tuple[Host, Analog]:
    host, analog = Host(dut), Analog(dut)
    await host.reset()
    return host, analog


@cocotb.test()
async def registers_round_trip(dut):
    """ID and VERSION; every writable register reads back what was written; BIAS_CODE sign-extends."""
    host, _ = await start(dut)
    rng = np.random.default_rng(SEED)
    assert await host.read("ID") == REGISTER_ID
    assert await host.read("VERSION") == wire.PROTOCOL_MAJOR << 16 | wire.PROTOCOL_MINOR
    assert await host.read("BIAS_CLAMP_CODE") == FULL_SCALE, "the clamp must reset open (full scale)"
    status = await host.read("STATUS")
    assert status == 0, f"STATUS after reset is {status:#x}, expected 0 (idle, no errors)"
    written = {}
    for name in REGISTER_MAP:
        if name in READ_ONLY_REGISTERS or name in WRITE_ONLY_REGISTERS or name == "CONTROL":
            continue
        if name in NARROW:
            value = int(rng.integers(*NARROW[name]))
        elif name in WIDTH16:
            value = int(rng.integers(1, 2**16))
        elif name == "BIAS_CODE":
            value = int(rng.integers(-FULL_SCALE, FULL_SCALE + 1))
        else:
            value = int(rng.integers(1, 2**32))
        await host.write(name, value)
        written[name] = value
    for name, value in written.items():
        got = await host.read(name)
        want = value & 0xFFFFFFFF  # BIAS_CODE comes back sign-extended to 32 bits
        assert got == want, f"{name}: wrote {value:#x}, read {got:#x}"
    await host.write("CONTROL", 1 << CONTROL_BITS["RETRACE"])
    assert await host.read("CONTROL") == 1 << CONTROL_BITS["RETRACE"]
    c1 = await host.read("CYCLE_COUNT")
    c2 = await host.read("CYCLE_COUNT")
    assert c2 > c1, "CYCLE_COUNT must advance"


@cocotb.test()
async def refusals_answer_nak_and_change_nothing(dut):
    """Bad CRC, unknown command, bad length, bad address, read-only, too-wide values: NAK, no change."""
    host, _ = await start(dut)
    await host.write("X_SETPOINT", 1234)
    await host.write("BIAS_CODE", -77)

    # A frame whose CRC is damaged: NAK BAD_CRC carrying its SEQ and command.
    raw = bytearray(wire.encode(Cmd.WRITE_REG, 4321, wire.pack_register(REGISTER_MAP["X_SETPOINT"], 9)))
    raw[-1] ^= 0x40
    await host.send(bytes(raw))
    frame = await host.answer()
    assert frame.seq == 4321 and frame.cmd == Cmd.NAK
    code, refused, text = wire.unpack_nak(frame.payload)
    assert (code, refused, text) == (Nak.BAD_CRC, Cmd.WRITE_REG, MESSAGES["BAD_CRC"][1])

    # Garbage before a frame is skipped; the frame is still answered.
    await host.send(bytes([0x00, 0xA5, 0x13, 0xFF, 0xA5]))
    assert await host.read("X_SETPOINT") == 1234, "a damaged write must change nothing"

    # Commands the FPGA does not serve, including the emulator's high-level ones.
    for cmd, payload in [(Cmd.NOW, b""), (Cmd.PULSE, bytes(32)), (Cmd.IDENTIFY, wire.pack_identify(b"x" * 16)), (0x3F, b"")]:
        exc = await expect_nak(host, "UNKNOWN", host.check_async(host.request(cmd, payload)))
        assert exc.cmd == cmd
    # Wrong payload lengths.
    await expect_nak(host, "LENGTH", host.check_async(host.request(Cmd.READ_REG, b"\x10")))
    await expect_nak(host, "LENGTH", host.check_async(host.request(Cmd.WRITE_REG, bytes(9))))
    # Addresses: unknown, read-only for a write, write-only for a read, beyond 63.
    await expect_nak(host, "ADDRESS", host.check_async(host.request(Cmd.READ_REG, wire.pack_register(0x3F, 0))))
    await expect_nak(host, "ADDRESS", host.check_async(host.request(Cmd.READ_REG, wire.pack_register(0xC0, 0))))
    await expect_nak(host, "ADDRESS", host.write("ID", 5))
    await expect_nak(host, "ADDRESS", host.write("PIXEL_COUNT", 5))
    await expect_nak(host, "ADDRESS", host.read("PULSE_TRIGGER"))
    # Values wider than the register.
    await expect_nak(host, "VALUE", host.write("X_SETPOINT", 0x10000))
    await expect_nak(host, "VALUE", host.write("BIAS_CODE", 40000))
    await expect_nak(host, "VALUE", host.write("BIAS_CODE", -40000))
    await expect_nak(host, "VALUE", host.write("CONTROL", 1 << 5))
    assert await host.read("X_SETPOINT") == 1234
    assert (await host.read("BIAS_CODE")) - 2**32 == -77
    # Scan settings of zero refuse the start; illegal widths refuse the trigger.
    await expect_nak(host, "SCAN_CONFIG", host.write("CONTROL", 1 << CONTROL_BITS["SCAN_START"]))
    for width in (0, MIN_CYCLES - 1, MAX_CYCLES + 1):
        await host.write("PULSE_WIDTH_CYCLES", width)
        await expect_nak(host, "WIDTH", host.write("PULSE_TRIGGER", 1))
    status = await host.read("STATUS")
    assert not status_bit(status, "PULSE_ACTIVE") and not status_bit(status, "PULSE_ERR_WIDTH"), (
        f"a refused trigger must not reach the pulse generator (STATUS {status:#x})")
    assert await host.read("LAST_PULSE_CYCLES") == 0, "no pulse may have been emitted"


@cocotb.test()
async def pulses_match_the_twin(dut):
    """Random widths and amplitudes through the UART: edge, width and code equal the twin's record."""
    host, analog = await start(dut)
    rng = np.random.default_rng(SEED + 1)
    latency = COMMAND_LATENCY_CYCLES + HW.pulse_latency_cycles
    for i in range(10):
        width = float(rng.uniform(MIN_CYCLES, 4000)) / HW.clock if i else HW.pulse_width_min
        amplitude = float(rng.uniform(-HW.bias_range, HW.bias_range))
        cycles, code = TIMING.pulse_cycles(width), TIMING.bias_code(amplitude)
        x, y = int(rng.integers(0, 2**16)), int(rng.integers(0, 2**16))
        await host.write("X_SETPOINT", x)
        await host.write("Y_SETPOINT", y)
        await host.write("BIAS_CODE", code)
        await host.write("PULSE_WIDTH_CYCLES", cycles)
        await host.write("PULSE_TRIGGER", 1)
        trigger = host.command_cycles[-1]
        await analog.wait_pulse(i + 1, cycles + 1000)
        p = analog.pulses[-1]
        assert p["rise"] - trigger == latency, f"pulse {i}: bias edge {p['rise'] - trigger} cycles after the command, expected {latency}"
        assert p["cycles"] == cycles, f"pulse {i}: {p['cycles']} cycles applied, the twin emits {cycles}"
        assert p["code"] == code, f"pulse {i}: DAC code {p['code']}, the twin emits {code}"
        assert TIMING.bias(p["code"]) == TIMING.bias(code)
        assert (p["x"], p["y"]) == (x, y), "the tip must stay at the setpoint during the pulse"
        assert await host.read("LAST_PULSE_CYCLES") == cycles
        assert (await host.read("LAST_PULSE_CODE") + 2**31) % 2**32 - 2**31 == code

    # The clamp register limits what reaches the DAC, whatever BIAS_CODE says.
    await host.write("BIAS_CLAMP_CODE", 1000)
    for code in (FULL_SCALE, -FULL_SCALE, 999, -1001):
        await host.write("BIAS_CODE", code)
        await host.write("PULSE_WIDTH_CYCLES", MIN_CYCLES)
        emitted = len(analog.pulses)
        await host.write("PULSE_TRIGGER", 1)
        await analog.wait_pulse(emitted + 1, 5000)
        assert len(analog.pulses) == emitted + 1
        got = analog.pulses[-1]["code"]
        assert got == max(-1000, min(1000, code)), f"BIAS_CODE {code} with clamp 1000 put {got} on the DAC"
    await host.write("BIAS_CLAMP_CODE", FULL_SCALE)

    # A trigger or scan start while a pulse runs is refused BUSY; the pulse is untouched.
    long = 60_000
    await host.write("BIAS_CODE", 5000)
    await host.write("PULSE_WIDTH_CYCLES", long)
    emitted = len(analog.pulses)
    await host.write("PULSE_TRIGGER", 1)
    assert status_bit(await host.read("STATUS"), "PULSE_ACTIVE")
    await expect_nak(host, "BUSY", host.write("PULSE_TRIGGER", 1))
    await host.write("PIXELS_PER_LINE", 8)
    await host.write("LINES", 8)
    await host.write("PIXEL_CYCLES", 1000)
    await expect_nak(host, "BUSY", host.write("CONTROL", 1 << CONTROL_BITS["SCAN_START"]))
    await analog.wait_pulse(emitted + 1, long + 1000)
    assert len(analog.pulses) == emitted + 1, "a refused trigger must not emit a pulse"
    assert analog.pulses[-1]["cycles"] == long and analog.pulses[-1]["code"] == 5000
    status = await host.read("STATUS")
    assert status == 0, f"STATUS {status:#x} after the pulse: expected idle without errors"


RASTER = {"x0": 1000, "dx": 37, "y0": 20000, "dy": 411, "points": 5, "lines": 3, "decimation": 40}


async def _raster(host: Host, rng: np.random.Generator) -> tuple[list, np.ndarray, np.ndarray, int]:
    """Set up the registers of a raster with retrace (RASTER); return the pixels in time order,
    their phases (deg), the ADC samples of a random amplitude and phase per pixel, the NCO step."""
    r = RASTER
    increment = lockin_model.phase_increment(HW.drive_frequency)
    for name, value in [("X_SETPOINT", r["x0"]), ("Y_SETPOINT", r["y0"]), ("X_STEP", r["dx"]), ("Y_STEP", r["dy"]),
                        ("PIXELS_PER_LINE", r["points"]), ("LINES", r["lines"]),
                        ("PIXEL_CYCLES", r["decimation"] * TIMING.adc_divider),
                        ("LOCKIN_PHASE_INC", increment), ("LOCKIN_DECIMATION", r["decimation"])]:
        await host.write(name, value)
    # Pixel order in time: per line the trace (ix up), then the retrace (ix down).
    order = [(iy, ix) for iy in range(r["lines"]) for ix in [*range(r["points"]), *reversed(range(r["points"]))]]
    amplitude = rng.uniform(0.05, 0.9, len(order)) * 32767
    phase = rng.uniform(-180, 180, len(order))
    n = np.arange(len(order) * r["decimation"])
    theta = 2 * np.pi * lockin_model.nco_phase(len(n), increment).astype(float) / 2**32
    pixel = n // r["decimation"]
    samples = np.rint(amplitude[pixel] * np.cos(theta + np.deg2rad(phase[pixel]))).astype(np.int64)
    return order, phase, samples, increment


def _check_raster(order: list, positions: np.ndarray, pixels: list, samples: np.ndarray, increment: int) -> None:
    """The DACs on each pixel's ramp position at every ADC sample; the pixels bit-exact to the lock-in model."""
    r = RASTER
    positions = np.asarray(positions).reshape(len(order), r["decimation"], 2)
    for k, (iy, ix) in enumerate(order):
        want = (r["x0"] + ix * r["dx"], r["y0"] + iy * r["dy"])
        assert np.all(positions[k] == want), f"pixel {k} (line {iy}, x {ix}): DACs at {positions[k][0]}, expected {want}"
    want_amp, want_phase = lockin_model.demodulate_codes(samples, increment, r["decimation"])
    got = np.array(pixels)
    assert np.array_equal(got[:, 0], want_amp), "lock-in amplitudes differ from the bit-accurate model"
    assert np.array_equal(got[:, 1], want_phase), "lock-in phases differ from the bit-accurate model"


@cocotb.test()
async def scan_ramps_and_lockin_pixels(dut):
    """A raster with retrace: DAC ramps per ADC sample, pixel timing, lock-in pixels bit-exact."""
    host, analog = await start(dut)
    rng = np.random.default_rng(SEED + 2)
    points, lines, decimation = RASTER["points"], RASTER["lines"], RASTER["decimation"]
    x0, y0, dy = RASTER["x0"], RASTER["y0"], RASTER["dy"]
    div = TIMING.adc_divider
    pixel_cycles = decimation * div
    order, phase, samples, increment = await _raster(host, rng)
    analog.load(samples)

    await host.write("CONTROL", 1 << CONTROL_BITS["SCAN_START"] | 1 << CONTROL_BITS["RETRACE"])
    started = host.command_cycles[-1]
    await analog.wait_pixels(len(order), len(order) * pixel_cycles + 10_000)
    await ClockCycles(dut.clk, 200)

    assert analog.sample_index == len(samples), f"{analog.sample_index} ADC strobes, expected {len(samples)}"
    _check_raster(order, analog.sample_positions, analog.pixels, samples, increment)
    got = np.array(analog.pixels)
    err = np.abs((got[:, 1] * lockin_model.PHASE_LSB_DEG - phase + 180) % 360 - 180)
    assert err.max() < 0.05, f"phase error {err.max():.4f} deg against the synthesized input"

    # Timing: pixel 0 is on the DACs COMMAND_LATENCY_CYCLES edges after the command; pixel k spans
    # [s0 + k P, s0 + (k+1) P) with P = PIXEL_CYCLES, and its ADC samples end in its last cycle.
    s0 = started + COMMAND_LATENCY_CYCLES
    cycles = np.array(analog.sample_cycles).reshape(len(order), decimation)
    want = s0 + np.arange(len(order))[:, None] * pixel_cycles + np.arange(decimation)[None, :] * div + div - 1
    assert np.array_equal(cycles, want), f"ADC strobes at {cycles[0, :3]}..., expected {want[0, :3]}..."
    # That is the twin's line timing: 2 passes of FpgaTiming.line_period per line.
    line_rate = HW.clock / (pixel_cycles * points)
    assert round(TIMING.line_period(line_rate, points) * HW.clock) == points * pixel_cycles
    assert await host.read("PIXEL_COUNT") == len(order)
    status = await host.read("STATUS")
    assert status == 0, f"STATUS {status:#x} after the scan: expected idle without errors"
    # The tip stays at the last pixel (the retrace ends at ix = 0 of the last line).
    assert await host.read("X_SETPOINT") == x0
    assert await host.read("Y_SETPOINT") == y0 + (lines - 1) * dy


@cocotb.test()
async def sample_memory_feeds_the_lockin(dut):
    """The ADC fed from pfm_sim_top's sample memory (as co-simulation feeds it): the same ramps and
    bit-exact pixels as when Python sets adc_data at every strobe, and one DAC record per sample."""
    host, analog = await start(dut)
    rng = np.random.default_rng(SEED + 5)
    order, _, samples, increment = await _raster(host, rng)
    with tempfile.TemporaryDirectory() as folder:
        await analog.load_memory(samples, Path(folder))
        await host.write("CONTROL", 1 << CONTROL_BITS["SCAN_START"] | 1 << CONTROL_BITS["RETRACE"])
        await analog.wait_pixels(len(order), len(order) * RASTER["decimation"] * TIMING.adc_divider + 10_000)
        await ClockCycles(dut.clk, 200)
        positions = await analog.memory_positions()
    assert analog.sample_index == 0, "Python fed the ADC although the memory was on"
    assert len(positions) == len(samples), f"{len(positions)} samples taken from the memory, expected {len(samples)}"
    _check_raster(order, positions, analog.pixels, samples, increment)
    # Back to Python's feed: the next scan takes adc_data again.
    await host.write("X_SETPOINT", RASTER["x0"])  # the tip stayed at the last line's end
    await host.write("Y_SETPOINT", RASTER["y0"])
    analog.load(samples)
    analog.pixels = []
    await host.write("CONTROL", 1 << CONTROL_BITS["SCAN_START"] | 1 << CONTROL_BITS["RETRACE"])
    await analog.wait_pixels(len(order), len(order) * RASTER["decimation"] * TIMING.adc_divider + 10_000)
    assert analog.sample_index == len(samples)
    _check_raster(order, analog.sample_positions, analog.pixels, samples, increment)


@cocotb.test()
async def band_excitation_through_the_uart(dut):
    """The table written word by word, played, the capture read back word by word: every drive
    code at the DAC and every capture word as the engine's model says; refusals change nothing."""
    host, analog = await start(dut)
    rng = np.random.default_rng(SEED + 7)
    length, repeats = 32, 60  # a play of 48,000 cycles: long enough for the refusals below to meet it
    table = rng.integers(-FULL_SCALE, FULL_SCALE + 1, length)
    await host.write("BE_TABLE_ADDR", 0)
    for code in table:
        await host.write("BE_TABLE_DATA", int(code))
    assert await host.read("BE_TABLE_ADDR") == length, "each BE_TABLE_DATA write advances the address"
    await host.write("BE_LENGTH", length)
    await expect_nak(host, "VALUE", host.write("BE_LENGTH", 0))
    await expect_nak(host, "VALUE", host.write("BE_LENGTH", BE_TABLE_DEPTH + 1))
    await host.write("BE_REPEATS", 0)
    await expect_nak(host, "VALUE", host.write("BE_START", 1))
    await host.write("BE_REPEATS", repeats)
    adc = rng.integers(-(2**15), 2**15, length * repeats)
    analog.load(adc)
    await host.write("BE_START", 1)
    assert status_bit(await host.read("STATUS"), "BE_BUSY")
    await expect_nak(host, "BUSY", host.write("BE_START", 1))
    await expect_nak(host, "BUSY", host.write("BE_TABLE_DATA", 5))
    await expect_nak(host, "BUSY", host.write("CONTROL", 1 << CONTROL_BITS["SCAN_START"]))
    while status_bit(await host.read("STATUS"), "BE_BUSY"):
        await ClockCycles(dut.clk, 500)
    assert analog.sample_index == length * repeats
    drive, capture = be_model.play(table, repeats, adc)
    assert np.array_equal(np.array(analog.sample_drive), drive), "drive DAC codes differ from the model"
    await host.write("BE_CAPTURE_ADDR", 0)
    got = [(await host.read("BE_CAPTURE_DATA") + 2**31) % 2**32 - 2**31 for _ in range(length)]
    assert np.array_equal(got, capture), "capture words differ from the model"
    assert await host.read("BE_CAPTURE_ADDR") == length, "each BE_CAPTURE_DATA read advances the address"
    assert await host.read("PIXEL_COUNT") == 0, "the lock-in took none of the engine's samples"
    assert int(dut.drive_dac.value) == 0
