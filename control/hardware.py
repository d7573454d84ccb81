"""The hardware spec of the PFM controller: one source of truth for clock, rates and ranges.

The twin's FPGA timing model, the emulator, the RTL (through a generated Verilog header) and the
safety limits all read these numbers, so a change here changes every backend at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class HardwareSpec:
    """What the FPGA controller and its analog front end can physically do.

    Attributes:
        clock: FPGA clock frequency, Hz. Pulse widths and pixel periods are whole cycles.
        dac_bits: resolution of the bias and scanner DACs.
        adc_bits: resolution of the deflection ADC.
        dac_rate: update rate of the scanner DACs, Hz.
        adc_rate: sample rate of the deflection ADC, Hz.
        bias_range: largest tip bias magnitude the amplifier can emit, V (symmetric).
        pulse_width_min: shortest bias pulse, s.
        pulse_width_max: longest bias pulse, s.
        pulse_latency_cycles: cycles from the pulse trigger to the bias edge.
        scan_range: closed-loop piezo travel in x and y, m; positions lie in [0, scan_range].
        tip_speed_max: fastest lateral tip motion the scanner follows, m/s.
        line_rate_range: slowest and fastest scan line rate, Hz.
        pixels_range: fewest and most points per scan line (and lines per image).
        drive_frequency: lock-in reference frequency (contact resonance), Hz.
        drive_amplitude: AC drive on the tip during imaging, V.
    """

    clock: float = 100e6
    dac_bits: int = 16
    adc_bits: int = 16
    dac_rate: float = 1e6
    adc_rate: float = 4e6
    bias_range: float = 10.0
    pulse_width_min: float = 1e-6
    pulse_width_max: float = 10.0
    pulse_latency_cycles: int = 4
    scan_range: float = 10e-6
    tip_speed_max: float = 20e-6
    line_rate_range: tuple[float, float] = (0.01, 10.0)
    pixels_range: tuple[int, int] = (8, 1024)
    drive_frequency: float = 350e3
    drive_amplitude: float = 1.0
    registers: dict[str, int] = field(default_factory=lambda: dict(REGISTER_MAP))

    @property
    def quantum(self) -> float:
        """Duration of one FPGA clock cycle, s: the pulse-width and timing quantum."""
        return 1.0 / self.clock

    @property
    def bias_lsb(self) -> float:
        """Bias DAC step, V."""
        return 2.0 * self.bias_range / (2**self.dac_bits - 1)

    def to_dict(self) -> dict:
        """Plain-data copy (for info(), HDF5 attributes and the wire protocol)."""
        return asdict(self)


#: Register map of the FPGA controller (word addresses). The firmware issue generates a
#: Verilog header from this table; the emulator and the RTL answer the same addresses.
REGISTER_MAP: dict[str, int] = {
    "ID": 0x00,
    "VERSION": 0x01,
    "STATUS": 0x02,
    "CONTROL": 0x03,
    "X_SETPOINT": 0x10,
    "Y_SETPOINT": 0x11,
    "PIXELS_PER_LINE": 0x12,
    "LINE_PERIOD_CYCLES": 0x13,
    "BIAS_CODE": 0x20,
    "PULSE_WIDTH_CYCLES": 0x21,
    "PULSE_TRIGGER": 0x22,
    "BIAS_CLAMP_CODE": 0x23,
    "LOCKIN_PHASE_INC": 0x30,
    "LOCKIN_DECIMATION": 0x31,
}

DEFAULT_HARDWARE = HardwareSpec()
