"""cocotb testbench of the lock-in demodulator (``firmware/rtl/lockin.v`` under ``lockin_top.v``).

Driver, monitor, model and checker are kept apart:

- driver: writes one ADC code per ``sample_valid`` strobe, which the top generates in HDL every
  ``SAMPLE_DIV`` clocks (4 by default to keep runs short; 25 is the real 4 MHz ADC at 100 MHz;
  the NCO steps per sample, so the phase increment f / adc_rate * 2^32 is the same either way);
- monitor: collects ``(amplitude, phase)`` codes on each ``out_valid``;
- model: ``firmware.lockin_model`` (no cocotb): the bit-accurate ``demodulate_codes``, the float64
  ideal lock-in ``reference`` and the worst-case fixed-point ``error_bound``;
- checker: the RTL equals the bit-accurate model exactly, is within the stated tolerance of the
  float64 reference of the same samples, and within fixed-point + noise + 2f-leakage bounds of
  the true amplitude and phase of the synthesized input.

Stimulus: ``A cos(theta_n + phi)`` + Gaussian noise, quantized to signed 16 bits, ``theta_n`` the
NCO's exact phase; A in 10..90 % of full scale, phi in [-180, 180) deg, f in 350 kHz +- 10 %,
noise rms 0..1.5 % of full scale; half the cases span a whole number of reference periods per
pixel, half an arbitrary number of samples. Seeded by ``LOCKIN_SEED``; ``LOCKIN_CASES`` cases;
``LOCKIN_EXTREMES=0`` skips the 65535-sample decimation test (it is the same at any SAMPLE_DIV).

Tolerance vs the float64 reference (for A >= 10 % FS, any phase, frequency and decimation):
  |amplitude error| <= TOL_AMPLITUDE_LSB = 0.03 % FS (9.8 LSB), and per pixel <= error_bound
  (2 mean|x| (pi / 2^14 + 2^-15.5) + 0.01 LSB: the sine table's phase truncation and rounding);
  |phase error| <= TOL_PHASE_DEG = 0.025 deg, and per pixel <= error_bound (same phasor error
  over A, plus CORDIC residual and output rounding).
A summary with the worst errors lands in ``lockin_summary.json`` in the build folder.
"""

from __future__ import annotations

import json
import math
import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from control.hardware import DEFAULT_HARDWARE
from firmware import lockin_model as model

FULL_SCALE = 2 ** (DEFAULT_HARDWARE.adc_bits - 1) - 1
SEED = int(os.environ.get("LOCKIN_SEED", "350000"))
CASES = int(os.environ.get("LOCKIN_CASES", "60"))
PIXELS = 3  # pixels per case
LATENCY = 75  # clocks from the last sample of a pixel to out_valid (lockin.v)
TOL_AMPLITUDE_LSB = 3e-4 * FULL_SCALE
TOL_PHASE_DEG = 0.025
NOISE_SIGMAS = 6.0  # truth check: noise allowance in standard deviations


def wrap(deg):
    """Angle difference folded into [-180, 180)."""
    return (np.asarray(deg) + 180.0) % 360.0 - 180.0


class Driver:
    """Registers, clear, and ADC samples paced by the HDL's sample strobe."""

    def __init__(self, dut):
        self.dut = dut

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        dut.clear.value = 0
        dut.feed.value = 0
        dut.adc_data.value = 0
        dut.phase_inc.value = 0
        dut.samples_per_pixel.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 2)

    async def configure(self, increment: int, samples_per_pixel: int):
        """Write the registers and clear: the next sample is NCO phase 0, first of a pixel."""
        dut = self.dut
        dut.phase_inc.value = increment
        dut.samples_per_pixel.value = samples_per_pixel
        dut.clear.value = 1
        await RisingEdge(dut.clk)
        dut.clear.value = 0

    async def feed(self, samples):
        """One code per strobe: written on the strobe's rising edge, taken on the next clock."""
        dut = self.dut
        dut.feed.value = 1
        for x in samples:
            await RisingEdge(dut.sample_valid)
            dut.adc_data.value = int(x)
        dut.feed.value = 0  # the strobe in flight still takes the last code


class Monitor:
    """Amplitude and phase codes of every out_valid pulse."""

    def __init__(self, dut):
        self.dut = dut
        self.results: list[tuple[int, int]] = []
        cocotb.start_soon(self._run())

    async def _run(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.out_valid)
            await ReadOnly()
            self.results.append((int(dut.amplitude.value), dut.phase.value.to_signed()))

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        got, self.results = self.results, []
        if not got:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        amp, phase = zip(*got)
        return np.array(amp, dtype=np.int64), np.array(phase, dtype=np.int64)


def random_case(rng: np.random.Generator, index: int) -> dict:
    """One stimulus: frequency, decimation, amplitude, phase and noise."""
    fs = DEFAULT_HARDWARE.adc_rate
    f = DEFAULT_HARDWARE.drive_frequency * rng.uniform(0.9, 1.1)
    if index % 2 == 0:
        # Whole periods per pixel: k periods in N samples, and f set so they fit exactly.
        k = int(rng.integers(2, 30))
        n = round(k * fs / f)
        f = k * fs / n
    else:
        n = int(rng.integers(24, 400))
    return {
        "increment": model.phase_increment(f, fs),
        "samples_per_pixel": n,
        "amplitude": float(rng.uniform(0.1, 0.9) * FULL_SCALE),
        "phase": float(rng.uniform(-180.0, 180.0)),
        "noise": 0.0 if index % 5 == 0 else float(rng.uniform(0.0, 0.015) * FULL_SCALE),
    }


class Checker:
    """Compares the RTL with the model, the float64 reference and the truth; keeps the worst."""

    def __init__(self, log):
        self.log = log
        self.pixels = 0
        self.worst = {"amplitude_lsb": 0.0, "phase_deg": 0.0, "amplitude_vs_bound": 0.0, "phase_vs_bound": 0.0}
        self.worst_truth = {"amplitude_vs_bound": 0.0, "phase_vs_bound": 0.0}

    def check(self, case: dict, samples: np.ndarray, amp_codes: np.ndarray, phase_codes: np.ndarray):
        inc, n = case["increment"], case["samples_per_pixel"]
        want_amp, want_phase = model.demodulate_codes(samples, inc, n)
        assert len(amp_codes) == len(want_amp), f"{case}: {len(amp_codes)} pixels out, expected {len(want_amp)}"
        # 1. Bit-accurate model == RTL.
        assert np.array_equal(amp_codes, want_amp), f"{case}: amplitude codes {amp_codes} != model {want_amp}"
        assert np.array_equal(phase_codes, want_phase), f"{case}: phase codes {phase_codes} != model {want_phase}"
        amp, phase = amp_codes * model.AMP_LSB, phase_codes * model.PHASE_LSB_DEG

        # 2. Float64 reference of the same samples: the fixed-point error alone.
        ref_amp, ref_phase = model.reference(samples, inc, n)
        bound_amp, bound_phase = model.error_bound(samples, n, ref_amp)
        err_amp, err_phase = np.abs(amp - ref_amp), np.abs(wrap(phase - ref_phase))
        assert np.all(err_amp <= bound_amp) and np.all(err_amp <= TOL_AMPLITUDE_LSB), (
            f"{case}: amplitude error {err_amp} LSB > bound {bound_amp} / {TOL_AMPLITUDE_LSB}"
        )
        assert np.all(err_phase <= bound_phase) and np.all(err_phase <= TOL_PHASE_DEG), (
            f"{case}: phase error {err_phase} deg > bound {bound_phase} / {TOL_PHASE_DEG}"
        )
        w = self.worst
        w["amplitude_lsb"] = max(w["amplitude_lsb"], float(err_amp.max()))
        w["phase_deg"] = max(w["phase_deg"], float(err_phase.max()))
        w["amplitude_vs_bound"] = max(w["amplitude_vs_bound"], float((err_amp / bound_amp).max()))
        w["phase_vs_bound"] = max(w["phase_vs_bound"], float((err_phase / bound_phase).max()))

        # 3. Truth: the synthesized amplitude and phase, within fixed point + noise + 2f leakage.
        a = case["amplitude"]
        sigma = math.sqrt(case["noise"] ** 2 + 1.0 / 12.0)  # ADC rounding acts as noise
        noise = NOISE_SIGMAS * sigma * math.sqrt(2.0 / n)
        leak = a * model.image_leakage(inc, n, len(amp))
        truth_amp = bound_amp + noise + leak
        truth_phase = np.rad2deg(np.arcsin(np.minimum((bound_amp + noise + leak) / a, 1.0))) + bound_phase
        t_amp, t_phase = np.abs(amp - a), np.abs(wrap(phase - case["phase"]))
        assert np.all(t_amp <= truth_amp), f"{case}: |amplitude - A| {t_amp} > {truth_amp}"
        assert np.all(t_phase <= truth_phase), f"{case}: |phase - phi| {t_phase} > {truth_phase}"
        wt = self.worst_truth
        wt["amplitude_vs_bound"] = max(wt["amplitude_vs_bound"], float((t_amp / truth_amp).max()))
        wt["phase_vs_bound"] = max(wt["phase_vs_bound"], float((t_phase / truth_phase).max()))
        self.pixels += len(amp)


async def run_case(driver: Driver, monitor: Monitor, case: dict, samples: np.ndarray):
    await driver.configure(case["increment"], case["samples_per_pixel"])
    await driver.feed(samples)
    await ClockCycles(driver.dut.clk, LATENCY + 5)
    return monitor.take()


@cocotb.test()
async def random_sinusoids_with_noise(dut):
    """Random amplitude, phase, frequency near 350 kHz, decimation and noise: RTL vs model, reference, truth."""
    rng = np.random.default_rng(SEED)
    driver, monitor, checker = Driver(dut), Monitor(dut), Checker(dut._log)
    await driver.reset()
    cases = [random_case(rng, i) for i in range(CASES)]
    for case in cases:
        n = case["samples_per_pixel"] * PIXELS
        samples = model.sinusoid(case["amplitude"], case["phase"], case["increment"], n, case["noise"], rng)
        amp, phase = await run_case(driver, monitor, case, samples)
        checker.check(case, samples, amp, phase)
        assert int(dut.overrun.value) == 0, f"{case}: overrun"
    summary = {
        "seed": SEED,
        "cases": CASES,
        "pixels": checker.pixels,
        "samples": int(sum(c["samples_per_pixel"] * PIXELS for c in cases)),
        "tolerance": {"amplitude_lsb": TOL_AMPLITUDE_LSB, "phase_deg": TOL_PHASE_DEG},
        "worst_vs_reference": checker.worst,
        "worst_vs_truth": checker.worst_truth,
    }
    dut._log.info("lock-in summary: %s", json.dumps(summary))
    with open("lockin_summary.json", "w") as f:
        json.dump(summary, f, indent=2)


@cocotb.test()
async def clear_discards_the_partial_pixel(dut):
    """A clear mid-pixel restarts the NCO at phase 0 and the pixel count: only later samples count."""
    rng = np.random.default_rng(SEED + 1)
    driver, monitor = Driver(dut), Monitor(dut)
    await driver.reset()
    case = {"increment": model.phase_increment(350e3), "samples_per_pixel": 80}
    junk = model.sinusoid(20000.0, 45.0, case["increment"], 37, 300.0, rng)
    await driver.configure(case["increment"], case["samples_per_pixel"])
    await driver.feed(junk)
    samples = model.sinusoid(12000.0, -120.0, case["increment"], 160, 100.0, rng)
    amp, phase = await run_case(driver, monitor, case, samples)
    want_amp, want_phase = model.demodulate_codes(samples, case["increment"], case["samples_per_pixel"])
    assert np.array_equal(amp, want_amp) and np.array_equal(phase, want_phase), (amp, phase, want_amp, want_phase)


@cocotb.test(skip=os.environ.get("LOCKIN_EXTREMES", "1") == "0")
async def decimation_extremes_and_overrun(dut):
    """samples_per_pixel 0 acts as 1; pixels shorter than the conversion set the sticky overrun."""
    rng = np.random.default_rng(SEED + 2)
    driver, monitor = Driver(dut), Monitor(dut)
    await driver.reset()
    inc = model.phase_increment(350e3)
    await driver.configure(inc, 0)
    samples = model.sinusoid(30000.0, 10.0, inc, 8, 0.0, rng)
    await driver.feed(samples)
    await ClockCycles(dut.clk, LATENCY + 5)
    amp, phase = monitor.take()
    assert int(dut.overrun.value) == 1, "1-sample pixels every few clocks must overrun the converter"
    assert 1 <= len(amp) < len(samples), f"{len(amp)} pixels out of {len(samples)}"
    # The first pixel is converted: one sample x times the reference of phase 0.
    want_amp, want_phase = model.demodulate_codes(samples[:1], inc, 1)
    assert (amp[0], phase[0]) == (want_amp[0], want_phase[0]), (amp, phase, want_amp, want_phase)
    await driver.configure(inc, 40)
    await ClockCycles(dut.clk, 1)
    assert int(dut.overrun.value) == 0, "clear must clear overrun"
    # The largest decimation the register holds, at full scale, in phase with the reference at
    # fs / 2: the accumulators reach -65535 * 32768 * 32767 ~ -2^46 and must not overflow, and
    # the amplitude (65535.5 LSB) just fits the 24-bit output.
    n = 2**16 - 1
    big = np.full(n, FULL_SCALE, dtype=np.int64)
    big[1::2] = -(FULL_SCALE + 1)
    case = {"increment": 2**31, "samples_per_pixel": n}
    amp, phase = await run_case(driver, monitor, case, big)
    want_amp, want_phase = model.demodulate_codes(big, case["increment"], n)
    assert np.array_equal(amp, want_amp) and np.array_equal(phase, want_phase), (amp, phase, want_amp, want_phase)
    # 2 mean|x cos| / 32767 = 65535 LSB; the half-step table puts sin = 6 at phase 0: -0.011 deg.
    assert len(amp) == 1 and abs(amp[0] * model.AMP_LSB - 65535.0) < 0.01, amp
    assert abs(phase[0] * model.PHASE_LSB_DEG) < 0.02, phase
    assert np.array_equal(amp, want_amp) and np.array_equal(phase, want_phase), (amp, phase, want_amp, want_phase)
