"""FPGA timing model: the clock, quantization and latencies that the controller's RTL has.

Plain Python with no simulator import: the twin uses it to time pulses and scan lines, and the
firmware testbenches use it as their reference model. All numbers come from
:class:`control.HardwareSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass

from control.hardware import DEFAULT_HARDWARE, HardwareSpec


@dataclass(frozen=True)
class FpgaTiming:
    """Quantization and latency of the controller, from a hardware spec."""

    hardware: HardwareSpec = DEFAULT_HARDWARE

    def cycles(self, duration: float) -> int:
        """Whole clock cycles nearest to ``duration`` s (at least one)."""
        return max(1, int(round(duration * self.hardware.clock)))

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

    def pixel_cycles(self, line_rate: float, points: int) -> int:
        """Clock cycles per pixel of a scan line of ``points`` at ``line_rate`` Hz."""
        return self.cycles(1.0 / (line_rate * points))

    def line_period(self, line_rate: float, points: int) -> float:
        """Duration of one scan pass of ``points`` pixels, s (a whole number of pixel periods)."""
        return self.seconds(self.pixel_cycles(line_rate, points) * points)
