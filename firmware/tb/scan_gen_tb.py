"""cocotb testbench of the raster scan generator (``scan_gen``, through ``scan_gen_top``).

Layout as in cocotb's examples, each part on its own:

* model   -- :class:`ScanModel`: the twin's scan timing (``TwinMicroscope._scan``) from the
  project's cocotb-free :class:`control.fpga.FpgaTiming` on :data:`control.hardware.DEFAULT_HARDWARE`:
  pixel period, line period, line start times, pixel sample times, and the X/Y code ramps.
* driver  -- :class:`ScanDriver`: writes the settings and the 1-cycle start.
* monitor -- :class:`ScanMonitor`: wakes on the DUT's strobes (line_start, pixel, done), not on
  every clock, and reads the top level's clock-edge counter (``cycle``) and the DAC codes there.
* checker -- :class:`ScanScoreboard`: compares what the monitor saw with the model.

Line and pixel periods are kept short (tens of cycles per pixel, 8-32 points) so that a whole
image is a few thousand cycles; the line rates this implies are far above the instrument's
range, but the quantization rule (``FpgaTiming.pixel_cycles``) is the same.
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
from cocotb.triggers import ReadOnly, RisingEdge

from control.fpga import FpgaTiming
from control.hardware import DEFAULT_HARDWARE

DEFAULT_SEED = 20260604
SEED = int(os.environ.get("PFM_TB_SEED", DEFAULT_SEED))

TIMING = FpgaTiming(DEFAULT_HARDWARE)
HW = TIMING.hardware
DAC_MASK = 2**HW.dac_bits - 1
PERIOD_PS = round(1e12 / HW.clock)


@dataclass(frozen=True)
class ScanSettings:
    """What the host programs for one image."""

    points: int
    lines: int
    pixel_cycles: int
    retrace: bool = False
    x_origin: int = 1000
    x_step: int = 100
    y_origin: int = 2000
    y_step: int = 300

    @classmethod
    def for_rate(cls, line_rate: float, points: int, lines: int, **kwargs) -> ScanSettings:
        """Settings the host derives from a line rate: the twin's pixel quantization."""
        return cls(points, lines, TIMING.pixel_cycles(line_rate, points), **kwargs)

#: Simulated-time limit per test: a DUT that never answers fails instead of hanging the run.
TIMEOUT_US = 5000


# -- model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedScan:
    """The model's image: cycle offsets from the first line start, and the codes at each pixel."""

    line_cycles: int  # one line incl. retrace, cycles
    line_starts: list[int]  # cycles after line 0's start
    pixels: list[tuple[int, int, int, int, bool]]  # (end cycle, ix, x code, y code, reverse)
    done: int  # cycles from line 0's start to done
    line_times: np.ndarray  # the twin's line start times, s after the scan starts
    sample_times: np.ndarray  # the twin's pixel sample times, s after the scan starts, per pass


class ScanModel:
    """The twin's raster timing, ``TwinMicroscope._scan`` without the physics."""

    def __init__(self, timing: FpgaTiming = TIMING) -> None:
        self.timing = timing

    def line_period(self, line_rate: float, points: int) -> float:
        """The twin's trace pass duration, s."""
        return self.timing.line_period(line_rate, points)

    def expect(self, s: ScanSettings) -> ExpectedScan:
        t = self.timing
        passes = 2 if s.retrace else 1
        period = t.seconds(s.pixel_cycles * s.points)  # = FpgaTiming.line_period at this rate
        per_line = period * passes
        line_times = np.arange(s.lines) * per_line  # twin: start + k * per_line
        fraction = (np.arange(s.points) + 0.5) / s.points
        trace = line_times[:, None] + fraction[None, :] * period
        back = line_times[:, None] + period + (1.0 - fraction[None, :]) * period
        samples = np.concatenate([trace, back[:, ::-1]], axis=1) if s.retrace else trace
        line_cycles = s.pixel_cycles * s.points * passes
        pixels = []
        for k in range(s.lines):
            y = (s.y_origin + k * s.y_step) & DAC_MASK
            order = [(ix, False) for ix in range(s.points)]
            if s.retrace:
                order += [(ix, True) for ix in reversed(range(s.points))]
            for j, (ix, reverse) in enumerate(order):
                end = k * line_cycles + (j + 1) * s.pixel_cycles - 1
                pixels.append((end, ix, (s.x_origin + ix * s.x_step) & DAC_MASK, y, reverse))
        return ExpectedScan(
            line_cycles=line_cycles,
            line_starts=[k * line_cycles for k in range(s.lines)],
            pixels=pixels,
            done=s.lines * line_cycles,
            line_times=line_times,
            sample_times=samples,
        )


# -- driver -----------------------------------------------------------------------------------


class ScanDriver:
    """Drives scan_gen's settings and start."""

    def __init__(self, dut) -> None:
        self.dut = dut

    async def reset(self) -> None:
        dut = self.dut
        dut.start.value = 0
        self.program(ScanSettings(points=8, lines=1, pixel_cycles=1))
        dut.rst.value = 1
        for _ in range(2):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    def program(self, s: ScanSettings) -> None:
        dut = self.dut
        dut.points.value = s.points
        dut.lines.value = s.lines
        dut.pixel_cycles.value = s.pixel_cycles
        dut.retrace.value = int(s.retrace)
        dut.x_origin.value = s.x_origin
        dut.x_step.value = s.x_step
        dut.y_origin.value = s.y_origin
        dut.y_step.value = s.y_step

    async def start(self, s: ScanSettings) -> None:
        """Program ``s`` and pulse start for one cycle (sampled at the next edge)."""
        dut = self.dut
        await RisingEdge(dut.clk)
        self.program(s)
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0

    async def run(self, s: ScanSettings) -> None:
        await self.start(s)
        await RisingEdge(self.dut.done)
        await ReadOnly()


# -- monitor ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineStart:
    edge: int
    time_ps: int
    iy: int
    x_code: int
    y_code: int


class ScanMonitor:
    """Records line starts, pixel strobes and done, numbered by the top's clock-edge counter.

    It wakes on each strobe's rising edge; only while ``pixel`` stays high (one cycle per pixel
    period, every cycle when a pixel is one cycle long) does it follow the clock.
    """

    def __init__(self, dut) -> None:
        self.dut = dut
        self.lines: list[LineStart] = []
        self.pixels: list[tuple[int, int, int, int, bool]] = []  # (edge, ix, x, y, reverse)
        self.done: list[int] = []
        self.busy_after_done: list[int] = []
        self._tasks = []

    def start(self) -> None:
        self._tasks = [cocotb.start_soon(c) for c in (self._watch_lines(), self._watch_pixels(), self._watch_done())]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def clear(self) -> None:
        self.lines.clear()
        self.pixels.clear()
        self.done.clear()
        self.busy_after_done.clear()

    def _edge(self) -> int:
        return self.dut.cycle.value.to_unsigned()

    async def _watch_lines(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.line_start)
            await ReadOnly()
            self.lines.append(LineStart(self._edge(), round(get_sim_time("ps")), dut.iy.value.to_unsigned(),
                                        dut.x_code.value.to_unsigned(), dut.y_code.value.to_unsigned()))

    async def _watch_pixels(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.pixel)
            await ReadOnly()
            while dut.pixel.value == 1:
                self.pixels.append((self._edge(), dut.ix.value.to_unsigned(), dut.x_code.value.to_unsigned(),
                                    dut.y_code.value.to_unsigned(), bool(dut.reverse.value)))
                await RisingEdge(dut.clk)
                await ReadOnly()

    async def _watch_done(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.done)
            await ReadOnly()
            self.done.append(self._edge())
            self.busy_after_done.append(int(dut.busy.value))


# -- checker ----------------------------------------------------------------------------------


class ScanScoreboard:
    """Compares one observed image with the model; collects mismatches."""

    def __init__(self, model: ScanModel) -> None:
        self.model = model
        self.errors: list[str] = []
        self.images = 0
        self.line_periods = 0
        self.pixels = 0

    def check(self, s: ScanSettings, monitor: ScanMonitor, line_rate: float | None = None) -> None:
        exp = self.model.expect(s)
        tag = f"{s}"
        if line_rate is not None:
            # The twin's line timing: FpgaTiming.line_period in cycles.
            twin_cycles = round(self.model.line_period(line_rate, s.points) * HW.clock) * (2 if s.retrace else 1)
            if exp.line_cycles != twin_cycles:
                self.errors.append(f"{tag}: model line {exp.line_cycles} cycles, FpgaTiming.line_period {twin_cycles}")
        if len(monitor.lines) != s.lines:
            self.errors.append(f"{tag}: {len(monitor.lines)} line starts, expected {s.lines}")
            return
        first = monitor.lines[0]
        starts = [ls.edge - first.edge for ls in monitor.lines]
        if starts != exp.line_starts:
            self.errors.append(f"{tag}: line starts {starts}, model {exp.line_starts}")
        for k, ls in enumerate(monitor.lines):
            # In sim time too, against the twin's float line times.
            measured = (ls.time_ps - first.time_ps) * 1e-12
            if not math.isclose(measured, exp.line_times[k], rel_tol=0, abs_tol=1e-3 / HW.clock):
                self.errors.append(f"{tag}: line {k} at {measured!r} s, twin {exp.line_times[k]!r} s")
            if (ls.iy, ls.x_code, ls.y_code) != (k, s.x_origin, (s.y_origin + k * s.y_step) & DAC_MASK):
                self.errors.append(f"{tag}: line {k} starts at iy/x/y {(ls.iy, ls.x_code, ls.y_code)}")
        self.line_periods += len(starts) - 1
        pixels = [(edge - first.edge, *rest) for edge, *rest in monitor.pixels]
        if pixels != exp.pixels:
            bad = next((i for i, (a, b) in enumerate(zip(pixels, exp.pixels)) if a != b), min(len(pixels), len(exp.pixels)))
            self.errors.append(f"{tag}: {len(pixels)} pixels vs {len(exp.pixels)}; first difference at {bad}: "
                               f"{pixels[bad:bad + 1]} vs model {exp.pixels[bad:bad + 1]}")
        # The twin samples each pixel at its center time: that must lie inside the RTL's pixel.
        quantum = 1.0 / HW.clock
        for (end, *_), when in zip(exp.pixels, exp.sample_times.ravel()):
            begin = end + 1 - s.pixel_cycles
            if not (begin * quantum <= when < (end + 1) * quantum):
                self.errors.append(f"{tag}: twin sample at {when!r} s outside pixel cycles [{begin}, {end}]")
                break
        self.pixels += len(pixels)
        if [d - first.edge for d in monitor.done] != [exp.done]:
            self.errors.append(f"{tag}: done at {[d - first.edge for d in monitor.done]}, model {exp.done}")
        if monitor.busy_after_done != [0]:
            self.errors.append(f"{tag}: busy after done {monitor.busy_after_done}")
        self.images += 1

    def assert_clean(self) -> None:
        assert not self.errors, f"{len(self.errors)} mismatches:\n" + "\n".join(self.errors[:20])


# -- tests ------------------------------------------------------------------------------------


async def _bench(dut) -> tuple[ScanDriver, ScanMonitor, ScanScoreboard]:
    driver = ScanDriver(dut)
    await driver.reset()
    monitor = ScanMonitor(dut)
    monitor.start()
    return driver, monitor, ScanScoreboard(ScanModel())


#: (line rate Hz, points per line): small images with short, partly non-integral pixel periods.
RATE_POINTS = [
    (250e3, 8),  # 50 cycles per pixel, exact
    (30e3, 24),  # 138.9 -> 139: the line is 3336 cycles, not 3333
    (1e5, 32),  # 31.25 -> 31
    (7e5, 16),  # 8.93 -> 9
    (5e6, 20),  # 1 cycle per pixel: the pixel strobe stays high
    (41e3, 13),  # 187.6 -> 188
]


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def line_period_matches_twin(dut):
    """For (line rate, points) pairs, line periods equal FpgaTiming.line_period; x/y ramps and done."""
    driver, monitor, board = await _bench(dut)
    cases = [ScanSettings.for_rate(rate, points, lines=3) for rate, points in RATE_POINTS]
    cases += [ScanSettings.for_rate(250e3, 8, lines=3, retrace=True), ScanSettings.for_rate(5e6, 20, lines=2, retrace=True)]
    rates = [rate for rate, _ in RATE_POINTS] + [250e3, 5e6]
    for s, rate in zip(cases, rates, strict=True):
        monitor.clear()
        await driver.run(s)
        board.check(s, monitor, line_rate=rate)
    monitor.stop()
    board.assert_clean()
    dut._log.info("%d images, %d line periods, %d pixels match the twin's line timing",
                  board.images, board.line_periods, board.pixels)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def random_scans(dut):
    """Seeded random point counts, pixel periods, line counts, retrace and ramp codes."""
    rng = random.Random(SEED)
    driver, monitor, board = await _bench(dut)
    for _ in range(8):
        points = rng.randint(8, 32)
        x_step = rng.randint(0, DAC_MASK // points)
        y_lines = rng.randint(1, 4)
        y_step = rng.randint(0, DAC_MASK // y_lines)
        s = ScanSettings(
            points=points, lines=y_lines, pixel_cycles=rng.randint(1, 40), retrace=rng.random() < 0.5,
            x_origin=rng.randint(0, DAC_MASK - x_step * (points - 1)), x_step=x_step,
            y_origin=rng.randint(0, DAC_MASK - y_step * (y_lines - 1)), y_step=y_step,
        )
        monitor.clear()
        await driver.run(s)
        board.check(s, monitor)
    monitor.stop()
    board.assert_clean()
    dut._log.info("seed %d: %d random images, %d pixels as modelled", SEED, board.images, board.pixels)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def bad_starts_are_refused(dut):
    """Zero settings are refused (err_config); a start while busy is ignored (err_busy)."""
    driver, monitor, board = await _bench(dut)
    for bad in (ScanSettings(0, 2, 5), ScanSettings(8, 0, 5), ScanSettings(8, 2, 0)):
        await driver.start(bad)
        await ReadOnly()
        assert dut.err_config.value == 1 and dut.busy.value == 0, f"{bad} was not refused"
        await RisingEdge(dut.clk)
    assert not monitor.lines and not monitor.pixels
    good = ScanSettings(points=8, lines=2, pixel_cycles=5)
    await driver.start(good)
    await ReadOnly()
    assert dut.err_config.value == 0 and dut.busy.value == 1
    await RisingEdge(dut.clk)
    await driver.start(ScanSettings(points=16, lines=4, pixel_cycles=7))  # while busy
    await ReadOnly()
    assert dut.err_busy.value == 1
    await RisingEdge(dut.done)
    await ReadOnly()
    board.check(good, monitor)  # the running scan was not disturbed by the second start
    monitor.stop()
    board.assert_clean()
