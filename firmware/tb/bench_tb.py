"""Speed of the controller's top level in the simulator: clock cycles per wall second.

Three figures, written as JSON to ``$PFM_BENCH_OUT``: the top level idle (the clock and the UART
receivers only), and while it scans with the lock-in converting, the ADC fed from the
simulator's sample memory (as in co-simulation) or by Python at every sample. Python waits on
one long timer in the idle case, so that figure is the simulator's own speed on this design.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import cocotb
import numpy as np

from control.fpga import FpgaTiming
from control.hardware import DEFAULT_HARDWARE
from firmware import lockin_model
from firmware.cosim import control_word
from firmware.tb.host import Analog, Host, after_cycles

IDLE_CYCLES = 200_000
PIXELS = 64


@cocotb.test()
async def cycles_per_second(dut):
    """Idle and scanning cycles per wall second of pfm_sim_top."""
    host, analog = Host(dut), Analog(dut)
    await host.reset()
    t0 = time.perf_counter()
    await after_cycles(IDLE_CYCLES)
    idle = IDLE_CYCLES / (time.perf_counter() - t0)

    samples_per_pixel = 40
    pixel_cycles = samples_per_pixel * FpgaTiming(DEFAULT_HARDWARE).adc_divider
    increment = lockin_model.phase_increment(DEFAULT_HARDWARE.drive_frequency)
    for name, value in [("PIXELS_PER_LINE", 8), ("LINES", PIXELS // 8), ("PIXEL_CYCLES", pixel_cycles),
                        ("X_STEP", 10), ("Y_STEP", 10), ("LOCKIN_PHASE_INC", increment),
                        ("LOCKIN_DECIMATION", samples_per_pixel)]:
        await host.write(name, value)
    samples = lockin_model.sinusoid(10000.0, 30.0, increment, PIXELS * samples_per_pixel)
    result = {"idle_cycles_per_s": round(idle)}
    pixels = {}
    with tempfile.TemporaryDirectory() as folder:
        for feed in ("memory", "python"):
            if feed == "memory":
                await analog.load_memory(samples, Path(folder))
            else:
                analog.load(samples)
            analog.pixels = []
            start = int(dut.cycle.value)
            t0 = time.perf_counter()
            await host.write("CONTROL", control_word(start=True))
            await analog.wait_pixels(PIXELS, PIXELS * pixel_cycles + 100_000)
            wall = time.perf_counter() - t0
            assert len(analog.pixels) == PIXELS and np.all(np.array(analog.pixels)[:, 0] > 0)
            pixels[feed] = list(analog.pixels)
            name = "scanning" if feed == "memory" else "scanning_python_fed"
            result[f"{name}_cycles_per_s"] = round((int(dut.cycle.value) - start) / wall)
            result[f"{name}_wall_s_per_pixel"] = round(wall / PIXELS, 6)
            await after_cycles(pixel_cycles)  # the scan generator back to idle
    assert pixels["memory"] == pixels["python"], "the two ADC feeds gave different pixels"
    dut._log.info("%s", result)
    out = os.environ.get("PFM_BENCH_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(result, f)
