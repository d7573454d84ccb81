"""FPGA timing model: the clock, quantization and latencies that the controller's RTL has.

Plain Python with no simulator import, in ``control`` beside the hardware spec it is computed
from: the twin uses it to time pulses and scan lines, the firmware testbenches use it as their
reference model, and the surrogate backend (``learning.surrogate_backend``) quantizes its pulses with
it. All numbers come from :class:`control.HardwareSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from control.errors import LimitError
from control.hardware import DEFAULT_HARDWARE, HardwareSpec


@dataclass(frozen=True)
class FpgaTiming:
    """Quantization and latency of the controller, from a hardware spec."""

    hardware: HardwareSpec = DEFAULT_HARDWARE

    def cycles(self, duration: float) -> int:
        """Whole clock cycles nearest to ``duration`` s (at least one)."""
        return max(1, int(round(duration * self.hardware.clock)))

    @property
    def pulse_cycle_range(self) -> tuple[int, int]:
        """Shortest and longest pulse the pulse generator accepts, clock cycles."""
        hw = self.hardware
        return round(hw.pulse_width_min * hw.clock), round(hw.pulse_width_max * hw.clock)

    def pulse_cycles(self, width: float) -> int:
        """Clock cycles of a ``width`` s pulse, refused as the RTL refuses it (``pulse_gen.v``).

        Raises:
            LimitError: the quantized width lies outside :attr:`pulse_cycle_range`. The RTL does
                not stretch a short pulse to the minimum either: that would write a larger domain
                than the host asked for.
        """
        cycles = self.cycles(width)
        lo, hi = self.pulse_cycle_range
        if not lo <= cycles <= hi:
            raise LimitError(
                f"pulse width {width!r} s is {cycles} clock cycles; the pulse generator takes "
                f"{lo}..{hi} cycles ({lo / self.hardware.clock:g}..{hi / self.hardware.clock:g} s); "
                "use a width in that range")
        return cycles

    def seconds(self, cycles: int) -> float:
        """Duration of ``cycles`` clock cycles, s."""
        return cycles / self.hardware.clock

    def bias_code(self, amplitude: float) -> int:
        """Signed DAC code for ``amplitude`` V, clamped to the bias range (the hardware clamp)."""
        hw = self.hardware
        full = 2 ** (hw.dac_bits - 1) - 1
        code = int(round(amplitude / hw.bias_range * full))
        return max(-full, min(full, code))

    def bias(self, code: int) -> float:
        """Voltage the DAC emits for ``code``, V."""
        hw = self.hardware
        return code * hw.bias_range / (2 ** (hw.dac_bits - 1) - 1)

    @property
    def pulse_latency(self) -> float:
        """Time from the pulse trigger to the bias edge, s."""
        return self.seconds(self.hardware.pulse_latency_cycles)

    @property
    def position_full_scale(self) -> int:
        """Largest scanner DAC code (unsigned): the code of ``scan_range``."""
        return 2**self.hardware.dac_bits - 1

    def position_code(self, position: float) -> int:
        """Unsigned scanner DAC code nearest to ``position`` m, clamped to [0, scan_range]."""
        full = self.position_full_scale
        return max(0, min(full, int(round(position / self.hardware.scan_range * full))))

    def position(self, code):
        """Position, m, of scanner DAC ``code`` (int or integer array)."""
        return code * (self.hardware.scan_range / self.position_full_scale)

    def quantize(self, position):
        """Where the scanner DAC puts the tip for a commanded ``position`` (m, float or array)."""
        full = self.position_full_scale
        codes = np.clip(np.rint(np.asarray(position) / self.hardware.scan_range * full), 0, full)
        return self.position(codes)

    def ramp(self, positions) -> tuple[int, int]:
        """Origin code and whole-code step of the scan generator's ramp through ``positions`` (m).

        The RTL (scan_gen.v) steps the DAC by a whole number of codes per pixel; the ramp is
        centred on the requested positions, so the error is at most (n - 1)/2 times half a code.
        """
        positions = np.asarray(positions, dtype=float)
        lsb = float(self.position(1))
        n = len(positions)
        step = int(round((positions[-1] - positions[0]) / (n - 1) / lsb)) if n > 1 else 0
        origin = int(round((positions[0] + positions[-1]) / 2 / lsb - step * (n - 1) / 2))
        origin = max(0, min(origin, self.position_full_scale - step * (n - 1)))
        if step < 0 or step >= 2**self.hardware.dac_bits:
            raise LimitError(f"a scan step of {step} DAC codes is outside 0..{2**self.hardware.dac_bits - 1}; "
                             "scan a smaller field or with more points")
        return origin, step

    def raster_positions(self, xs, ys) -> tuple[np.ndarray, np.ndarray]:
        """Tip positions (m) of a raster whose commanded positions are ``xs``, ``ys`` (lines, points)."""
        x0, dx = self.ramp(xs[0])
        y0, dy = self.ramp(ys[:, 0])
        ny, nx = xs.shape
        x = self.position(x0 + dx * np.arange(nx))
        y = self.position(y0 + dy * np.arange(ny))
        return np.broadcast_to(x, (ny, nx)).copy(), np.broadcast_to(y[:, None], (ny, nx)).copy()

    @property
    def adc_divider(self) -> int:
        """Clock cycles per ADC sample (the ADC strobe divider)."""
        return int(round(self.hardware.clock / self.hardware.adc_rate))

    @property
    def uart_cycles_per_bit(self) -> int:
        """Clock cycles per bit of the command UART."""
        return int(round(self.hardware.clock / self.hardware.uart_baud))

    def pixel_cycles(self, line_rate: float, points: int) -> int:
        """Clock cycles per pixel of a scan line of ``points`` at ``line_rate`` Hz."""
        return self.cycles(1.0 / (line_rate * points))

    def line_period(self, line_rate: float, points: int) -> float:
        """Duration of one scan pass of ``points`` pixels, s (a whole number of pixel periods)."""
        return self.seconds(self.pixel_cycles(line_rate, points) * points)
