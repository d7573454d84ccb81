"""cocotb testbench of the bias pulse generator (``pulse_gen``) and its clamp (``bias_clamp``).

Layout as in cocotb's examples, each part on its own:

* model   -- :class:`PulseModel`: what the twin would emit, from the project's cocotb-free
  :class:`control.fpga.FpgaTiming` on :data:`control.hardware.DEFAULT_HARDWARE` (a
  :class:`control.PulseRecord` with the quantized start, width and amplitude), plus
  :func:`clamp_model` for the clamp register the twin does not have.
* driver  -- :class:`PulseDriver`: writes the registers and the 1-cycle trigger.
* monitor -- :class:`PulseMonitor`: watches ``trigger``, ``bias_on`` and ``bias_code`` and reads the
  top level's clock-edge counter (``cycle``) at each change, so it counts clock edges without a
  Python wake-up per cycle; it turns what it saw into measured ``PulseRecord``s.
* checker -- :class:`PulseScoreboard`: compares measured records with the model's, field by field.

The same module tests two tops; each test runs only on its own (``COCOTB_TOPLEVEL``):
``pulse_gen_top`` (clock generated in HDL) and ``bias_clamp_top`` (lanes of ``bias_clamp``).
Randomness is seeded from ``PFM_TB_SEED`` (default :data:`DEFAULT_SEED`).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, Timer, ValueChange

from control import PulseRecord
from control.fpga import FpgaTiming
from control.hardware import DEFAULT_HARDWARE

DEFAULT_SEED = 20260604
SEED = int(os.environ.get("PFM_TB_SEED", DEFAULT_SEED))
TOP = os.environ.get("COCOTB_TOPLEVEL", "")

TIMING = FpgaTiming(DEFAULT_HARDWARE)
HW = TIMING.hardware
FULL_SCALE = 2 ** (HW.dac_bits - 1) - 1
MIN_CYCLES = round(HW.pulse_width_min * HW.clock)
MAX_CYCLES = round(HW.pulse_width_max * HW.clock)
CLAMP_OPEN = 2**HW.dac_bits - 1  # clamp register all ones: only the full-scale limit applies

#: Simulated-time limit per test: a DUT that never answers fails instead of hanging the run.
TIMEOUT_US = 5000


# -- model ------------------------------------------------------------------------------------


def clamp_model(code: int, clamp: int) -> int:
    """Code the clamp lets through: |code| limited to min(clamp, full scale), symmetric."""
    limit = min(clamp, FULL_SCALE)
    return max(-limit, min(limit, code))


def clamp_model_array(codes: np.ndarray, clamp: int) -> np.ndarray:
    """:func:`clamp_model` over an array of codes."""
    limit = min(clamp, FULL_SCALE)
    return np.clip(codes.astype(np.int64), -limit, limit)


@dataclass(frozen=True)
class PulseCommand:
    """One pulse as the host asks for it (what the twin's ``apply_pulse`` receives)."""

    amplitude: float  # V
    width: float  # s
    clamp: int = CLAMP_OPEN  # clamp register; the twin has none, so open by default
    code: int | None = None  # raw amplitude code to drive instead of bias_code(amplitude)

    @property
    def amplitude_code(self) -> int:
        return TIMING.bias_code(self.amplitude) if self.code is None else self.code

    @property
    def cycles(self) -> int:
        return TIMING.cycles(self.width)


class PulseModel:
    """The twin's quantized pulse: ``TwinMicroscope._pulse`` without the film and the move."""

    def __init__(self, timing: FpgaTiming = TIMING) -> None:
        self.timing = timing

    def expect(self, command: PulseCommand, trigger_time: float) -> PulseRecord:
        """The record the twin returns for ``command`` triggered at ``trigger_time`` s."""
        t = self.timing
        cycles = t.cycles(command.width)
        code = clamp_model(command.amplitude_code, command.clamp)
        return PulseRecord(
            x=0.0, y=0.0, amplitude=t.bias(code), width=t.seconds(cycles),
            start=trigger_time + t.pulse_latency, cycles=cycles,
            requested_amplitude=command.amplitude, requested_width=command.width,
        )


# -- driver -----------------------------------------------------------------------------------


class PulseDriver:
    """Drives pulse_gen's inputs, one register write or trigger at a time."""

    def __init__(self, dut) -> None:
        self.dut = dut

    async def reset(self) -> None:
        dut = self.dut
        dut.trigger.value = 0
        dut.err_clear.value = 0
        dut.amplitude.value = 0
        dut.clamp.value = CLAMP_OPEN
        dut.width.value = MIN_CYCLES
        dut.rst.value = 1
        for _ in range(2):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    async def idle(self, cycles: int) -> None:
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)

    async def trigger(self, code: int, width_cycles: int, clamp: int = CLAMP_OPEN, sync: bool = True) -> None:
        """Set amplitude, width and clamp and raise trigger for one cycle.

        With ``sync`` the inputs change after the next clock edge; without, in the current time
        step (call it right after an edge or a strobe, e.g. ``done``, to trigger back to back).
        """
        dut = self.dut
        if sync:
            await RisingEdge(dut.clk)
        dut.amplitude.value = code
        dut.width.value = width_cycles
        dut.clamp.value = clamp
        dut.trigger.value = 1
        await RisingEdge(dut.clk)  # the edge that samples the trigger
        dut.trigger.value = 0

    async def set_clamp(self, clamp: int) -> None:
        await RisingEdge(self.dut.clk)
        self.dut.clamp.value = clamp

    async def clear_errors(self) -> None:
        await RisingEdge(self.dut.clk)
        self.dut.err_clear.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.err_clear.value = 0

    async def run(self, command: PulseCommand, sync: bool = True) -> None:
        """Trigger ``command`` and wait for the generator to report done."""
        await self.trigger(command.amplitude_code, command.cycles, command.clamp, sync)
        await RisingEdge(self.dut.done)


# -- monitor ----------------------------------------------------------------------------------


@dataclass
class ObservedPulse:
    """Raw observation: clock-edge counts and sim times (ps) of the trigger and bias edges."""

    trigger_edge: int
    trigger_time: int
    rise_edge: int
    rise_time: int
    fall_edge: int = -1
    fall_time: int = -1
    code: int = 0


class PulseMonitor:
    """Watches the DUT's pins and records every trigger, bias pulse and bias code change.

    Edges are numbered by the top level's ``cycle`` counter (rising clock edges so far), read in
    the ReadOnly phase of the time step where a watched signal changed.
    """

    def __init__(self, dut) -> None:
        self.dut = dut
        self.period = round(1e12 / HW.clock)  # ps
        self.triggers: list[tuple[int, int]] = []  # (sampling edge, its sim time in ps)
        self.pulses: list[ObservedPulse] = []
        self.code_changes: list[tuple[int, int]] = []  # (edge, new code)
        self._tasks = []

    def start(self) -> None:
        self._tasks = [cocotb.start_soon(c) for c in (self._watch_trigger(), self._watch_bias(), self._watch_code())]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _edge(self) -> int:
        return self.dut.cycle.value.to_unsigned()

    async def _watch_trigger(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.trigger)
            await ReadOnly()
            # Raised in the time step of edge k, the trigger is sampled by edge k + 1, one
            # period later.
            self.triggers.append((self._edge() + 1, _now_ps() + self.period))

    async def _watch_bias(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.bias_on)
            await ReadOnly()
            trigger_edge, trigger_time = self.triggers[-1] if self.triggers else (-1, -1)
            pulse = ObservedPulse(trigger_edge, trigger_time, self._edge(), _now_ps(),
                                  code=dut.bias_code.value.to_signed())
            self.pulses.append(pulse)
            await FallingEdge(dut.bias_on)
            await ReadOnly()
            pulse.fall_edge, pulse.fall_time = self._edge(), _now_ps()

    async def _watch_code(self) -> None:
        dut = self.dut
        while True:
            await ValueChange(dut.bias_code)
            await ReadOnly()
            self.code_changes.append((self._edge(), dut.bias_code.value.to_signed()))

    def codes_during(self, pulse: ObservedPulse) -> list[tuple[int, int]]:
        """Bias code changes from the rising edge up to (not including) the falling edge."""
        return [c for c in self.code_changes if pulse.rise_edge <= c[0] < pulse.fall_edge]

    def record(self, pulse: ObservedPulse, command: PulseCommand) -> PulseRecord:
        """The measured pulse as the twin's record type (times in s, width in cycles)."""
        step = 1e-12
        return PulseRecord(
            x=0.0, y=0.0, amplitude=TIMING.bias(pulse.code),
            width=(pulse.fall_time - pulse.rise_time) * step, start=pulse.rise_time * step,
            cycles=pulse.fall_edge - pulse.rise_edge,
            requested_amplitude=command.amplitude, requested_width=command.width,
        )


def _now_ps() -> int:
    """Simulation time, ps."""
    return round(get_sim_time("ps"))


# -- checker ----------------------------------------------------------------------------------


class PulseScoreboard:
    """Compares each observed pulse with the model's record; collects every mismatch."""

    def __init__(self, model: PulseModel, monitor: PulseMonitor) -> None:
        self.model = model
        self.monitor = monitor
        self.errors: list[str] = []
        self.checked = 0

    def check(self, command: PulseCommand, pulse: ObservedPulse) -> None:
        period = self.monitor.period
        expected = self.model.expect(command, pulse.trigger_time * 1e-12)
        measured = self.monitor.record(pulse, command)
        tag = f"pulse {self.checked} ({command})"
        # Cycle counts: by the edge counter, exact integers.
        offset = pulse.rise_edge - pulse.trigger_edge
        if offset != HW.pulse_latency_cycles:
            self.errors.append(f"{tag}: start offset {offset} cycles, model {HW.pulse_latency_cycles}")
        if measured.cycles != expected.cycles:
            self.errors.append(f"{tag}: width {measured.cycles} cycles, model {expected.cycles}")
        # The same in sim time, which must agree with the edge count (one period per edge).
        if pulse.rise_time - pulse.trigger_time != offset * period:
            self.errors.append(f"{tag}: start offset in time disagrees with the edge count")
        if pulse.fall_time - pulse.rise_time != measured.cycles * period:
            self.errors.append(f"{tag}: width in time disagrees with the edge count")
        # The twin's record, field by field (times to well under a cycle).
        tol = 1e-3 / HW.clock
        for name in ("start", "width"):
            if not math.isclose(getattr(measured, name), getattr(expected, name), rel_tol=0, abs_tol=tol):
                self.errors.append(f"{tag}: {name} {getattr(measured, name)!r} s, model {getattr(expected, name)!r} s")
        if measured.amplitude != expected.amplitude:
            self.errors.append(f"{tag}: amplitude {measured.amplitude!r} V, model {expected.amplitude!r} V")
        # The bias code is constant over the pulse: it changes only at the two edges.
        code = clamp_model(command.amplitude_code, command.clamp)
        wanted = [(pulse.rise_edge, code)] if code != 0 else []
        codes = self.monitor.codes_during(pulse)
        if codes != wanted:
            self.errors.append(f"{tag}: bias code changes {codes}, wanted {wanted}")
        if code != 0 and (pulse.fall_edge, 0) not in self.monitor.code_changes:
            self.errors.append(f"{tag}: bias code does not return to 0 at the falling edge")
        if abs(pulse.code) > min(command.clamp, FULL_SCALE):
            self.errors.append(f"{tag}: |code| {abs(pulse.code)} exceeds clamp {command.clamp}")
        self.checked += 1

    def assert_clean(self) -> None:
        assert not self.errors, f"{len(self.errors)} mismatches:\n" + "\n".join(self.errors[:20])


# -- tests ------------------------------------------------------------------------------------


async def _bench(dut) -> tuple[PulseDriver, PulseMonitor, PulseScoreboard]:
    driver = PulseDriver(dut)
    await driver.reset()
    monitor = PulseMonitor(dut)
    monitor.start()
    return driver, monitor, PulseScoreboard(PulseModel(), monitor)


async def _run_and_check(driver, monitor, board, commands, rng) -> None:
    """Run ``commands`` back to back (random idle gaps), then check every pulse in order."""
    gap = 1
    for command in commands:
        # gap 0: the next trigger is raised in the cycle done is high, the earliest accepted.
        await driver.idle(max(0, gap - 1))
        await driver.run(command, sync=gap > 0)
        gap = rng.choice([0, 0, 1, 3])
    # Let the monitors see the last pulse's falling edge first: done rises in the same time step
    # as the bias code returns to 0, and the order in which coroutines resume in one ReadOnly
    # phase is up to the simulator (Verilator resumed the checker first and missed that change).
    await driver.idle(2)
    await ReadOnly()
    assert len(monitor.pulses) == len(commands), f"{len(commands)} commands, {len(monitor.pulses)} pulses"
    for command, pulse in zip(commands, monitor.pulses, strict=True):
        board.check(command, pulse)


@cocotb.test(skip=TOP != "pulse_gen_top", timeout_time=20, timeout_unit="ms")
async def pulse_matches_twin_record(dut):
    """Random widths (1 us .. 300 us) and amplitudes (+-10 V): start, width, amplitude as the twin's."""
    rng = random.Random(SEED)
    commands = [
        PulseCommand(amplitude=10.0, width=HW.pulse_width_min),  # shortest legal, full scale
        PulseCommand(amplitude=-10.0, width=1.005e-6),  # rounds to 100 or 101 as the model says
        PulseCommand(amplitude=0.0, width=2.0049e-6),  # zero bias: timed by bias_on only
        PulseCommand(amplitude=12.5, width=3.3e-6),  # beyond range: the model's code clamp
    ]
    commands += [PulseCommand(amplitude=rng.uniform(-10.0, 10.0), width=rng.uniform(1e-6, 300e-6)) for _ in range(20)]
    driver, monitor, board = await _bench(dut)
    await _run_and_check(driver, monitor, board, commands, rng)
    monitor.stop()
    board.assert_clean()
    assert board.checked == len(commands)
    dut._log.info("seed %d: %d pulses match the twin's PulseRecord", SEED, board.checked)


@cocotb.test(skip=TOP != "pulse_gen_top", timeout_time=TIMEOUT_US, timeout_unit="us")
async def pulse_clamp_register(dut):
    """Random clamp register values and raw amplitude codes (incl. -32768): |bias| <= min(clamp, FS)."""
    rng = random.Random(SEED + 1)
    clamps = [0, 1, 2, FULL_SCALE - 1, FULL_SCALE, FULL_SCALE + 1, CLAMP_OPEN]
    codes = [-(FULL_SCALE + 1), -FULL_SCALE, -1, 0, 1, FULL_SCALE]
    commands = [PulseCommand(0.0, HW.pulse_width_min, clamp=c, code=a) for c in clamps for a in codes]
    commands += [
        PulseCommand(0.0, HW.pulse_width_min, clamp=rng.randrange(2**HW.dac_bits),
                     code=rng.randrange(-(FULL_SCALE + 1), FULL_SCALE + 1))
        for _ in range(30)
    ]
    driver, monitor, board = await _bench(dut)
    await _run_and_check(driver, monitor, board, commands, rng)
    monitor.stop()
    board.assert_clean()
    assert all(abs(code) <= FULL_SCALE for _, code in monitor.code_changes)
    dut._log.info("%d pulses within their clamp", board.checked)


@cocotb.test(skip=TOP != "pulse_gen_top", timeout_time=TIMEOUT_US, timeout_unit="us")
async def clamp_lowered_mid_pulse(dut):
    """A clamp write during a pulse limits the bias from the next edge on; timing is unchanged."""
    driver, monitor, _ = await _bench(dut)
    width = 300
    await driver.trigger(FULL_SCALE, width)
    trigger_edge = monitor.triggers[-1][0]
    await RisingEdge(dut.bias_on)
    await driver.idle(50)
    await driver.set_clamp(1000)  # written after edge k, sampled at edge k + 1
    await ReadOnly()
    write_edge = int(dut.cycle.value)
    await RisingEdge(dut.done)
    await ReadOnly()
    monitor.stop()
    (pulse,) = monitor.pulses
    assert pulse.rise_edge - trigger_edge == HW.pulse_latency_cycles
    assert pulse.fall_edge - pulse.rise_edge == width
    codes = monitor.codes_during(pulse)
    assert codes == [(pulse.rise_edge, FULL_SCALE), (write_edge + 1, 1000)], codes


@cocotb.test(skip=TOP != "pulse_gen_top", timeout_time=TIMEOUT_US, timeout_unit="us")
async def trigger_while_active_is_ignored(dut):
    """Triggers during the latency and the bias phase change nothing and set err_busy."""
    driver, monitor, board = await _bench(dut)
    command = PulseCommand(amplitude=5.0, width=2e-6)
    await driver.trigger(command.amplitude_code, command.cycles)
    await driver.trigger(-FULL_SCALE, 5000)  # during the latency
    await ReadOnly()
    assert dut.err_busy.value == 1
    await RisingEdge(dut.bias_on)
    await driver.idle(10)
    await driver.trigger(-FULL_SCALE, 5000)  # while the bias is on
    await RisingEdge(dut.done)
    await driver.idle(2)  # the monitors record the falling edge first (see _run_and_check)
    await ReadOnly()
    assert len(monitor.pulses) == 1
    pulse = monitor.pulses[0]
    pulse.trigger_edge, pulse.trigger_time = monitor.triggers[0]  # the one that was accepted
    board.check(command, pulse)
    board.assert_clean()
    assert dut.err_busy.value == 1 and dut.err_width.value == 0
    await driver.clear_errors()
    await ReadOnly()
    assert dut.err_busy.value == 0
    monitor.stop()


@cocotb.test(skip=TOP != "pulse_gen_top", timeout_time=TIMEOUT_US, timeout_unit="us")
async def illegal_widths_are_refused(dut):
    """Widths outside [MIN, MAX] cycles emit nothing and set err_width; MIN itself is accepted."""
    driver, monitor, board = await _bench(dut)
    for width in (0, 1, MIN_CYCLES - 1, MAX_CYCLES + 1, 2**32 - 1):
        await driver.trigger(FULL_SCALE, width)
        await driver.idle(HW.pulse_latency_cycles + 4)
        await ReadOnly()
        assert dut.err_width.value == 1, f"width {width} not flagged"
        assert dut.active.value == 0 and not monitor.pulses, f"width {width} started a pulse"
        await driver.clear_errors()
    command = PulseCommand(amplitude=-3.0, width=HW.pulse_width_min)
    await driver.run(command)
    await driver.idle(2)  # the monitors record the falling edge first (see _run_and_check)
    await ReadOnly()
    board.check(command, monitor.pulses[-1])
    board.assert_clean()
    assert dut.err_width.value == 0
    monitor.stop()


@cocotb.test(skip=TOP != "pulse_gen_top", timeout_time=TIMEOUT_US, timeout_unit="us")
async def reset_mid_pulse_drops_the_bias(dut):
    """A synchronous reset during a pulse returns the bias to 0 at the next edge."""
    driver, monitor, _ = await _bench(dut)
    await driver.trigger(FULL_SCALE, 1000)
    await RisingEdge(dut.bias_on)
    await driver.idle(20)
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    await ReadOnly()
    assert dut.bias_code.value.to_signed() == 0 and dut.bias_on.value == 0 and dut.active.value == 0
    monitor.stop()


@cocotb.test(skip=TOP != "bias_clamp_top", timeout_time=TIMEOUT_US, timeout_unit="us")
async def bias_clamp_exhaustive(dut):
    """Every one of the 65536 amplitude codes, for clamp codes 0, 1, FS, above FS and 0xFFFF."""
    width = HW.dac_bits
    all_codes = np.arange(-(2 ** (width - 1)), 2 ** (width - 1), dtype=np.int64)
    clamps = [0, 1, 2, 1000, FULL_SCALE - 1, FULL_SCALE, FULL_SCALE + 1, 40000, CLAMP_OPEN]
    lanes = len(dut.codes_in) // width  # bias_clamp_top's lanes parameter
    checked = 0
    for clamp in clamps:
        dut.clamp.value = clamp
        expected = clamp_model_array(all_codes, clamp)
        got = np.empty_like(all_codes)
        for base in range(0, all_codes.size, lanes):
            chunk = all_codes[base : base + lanes]
            dut.codes_in.value = int.from_bytes(chunk.astype("<i2").tobytes(), "little")
            await Timer(1, unit="ns")
            out = dut.codes_out.value.to_unsigned().to_bytes(lanes * width // 8, "little")
            got[base : base + lanes] = np.frombuffer(out, dtype="<i2")
        bad = np.flatnonzero(got != expected)
        assert bad.size == 0, f"clamp {clamp}: {bad.size} wrong, e.g. code {all_codes[bad[0]]} -> {got[bad[0]]}"
        assert np.abs(got).max() <= min(clamp, FULL_SCALE)
        checked += all_codes.size
    dut._log.info("bias_clamp: %d (code, clamp) pairs checked", checked)
