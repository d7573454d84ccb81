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
        uart_baud: serial line rate of the controller's command UART (8N1), baud; a whole
            number of clock cycles per bit (1 Mbaud: 100 cycles, a USB-UART bridge's rate).
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
    uart_baud: float = 1e6
    registers: dict[str, int] = field(default_factory=lambda: dict(REGISTER_MAP))

    #: SI unit of each dimensioned field (counts, bits and cycles have none): for session files.
    UNITS = {
        "clock": "Hz",
        "dac_rate": "Hz",
        "adc_rate": "Hz",
        "bias_range": "V",
        "pulse_width_min": "s",
        "pulse_width_max": "s",
        "scan_range": "m",
        "tip_speed_max": "m/s",
        "line_rate_range": "Hz",
        "drive_frequency": "Hz",
        "drive_amplitude": "V",
        "uart_baud": "Bd",
    }

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

    @classmethod
    def from_dict(cls, d: dict) -> HardwareSpec:
        """Inverse of :meth:`to_dict`, also after a JSON round trip (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


#: Register map of the FPGA controller (32-bit words at byte addresses, READ_REG / WRITE_REG).
#: ``firmware/spec.py`` generates the Verilog header from this table, so the RTL answers exactly
#: these addresses. Codes: positions are unsigned scanner-DAC codes over [0, scan_range]; the bias
#: is a signed DAC code (+-full scale = +-bias_range); widths and periods are clock cycles.
REGISTER_MAP: dict[str, int] = {
    "ID": 0x00,                   # RO  REGISTER_ID
    "VERSION": 0x01,              # RO  protocol major << 16 | minor
    "STATUS": 0x02,               # RO  STATUS_BITS
    "CONTROL": 0x03,              # RW  CONTROL_BITS (SCAN_START, CLEAR_ERRORS read as 0)
    "CYCLE_COUNT": 0x04,          # RO  free-running clock-cycle counter, low 32 bits
    "X_SETPOINT": 0x10,           # RW  x DAC code when idle; the scan origin (pixel 0)
    "Y_SETPOINT": 0x11,           # RW  y DAC code when idle; the scan origin (line 0)
    "PIXELS_PER_LINE": 0x12,      # RW  points per scan line
    "PIXEL_CYCLES": 0x13,         # RW  clock cycles per pixel (FpgaTiming.pixel_cycles)
    "LINES": 0x14,                # RW  lines per image
    "X_STEP": 0x15,               # RW  x DAC code increment per pixel
    "Y_STEP": 0x16,               # RW  y DAC code increment per line
    "BIAS_CODE": 0x20,            # RW  signed bias amplitude code of the next pulse
    "PULSE_WIDTH_CYCLES": 0x21,   # RW  width of the next pulse, cycles
    "PULSE_TRIGGER": 0x22,        # WO  any write starts the pulse
    "BIAS_CLAMP_CODE": 0x23,      # RW  |bias code| limit; the DAC full scale caps it anyway
    "LAST_PULSE_CODE": 0x24,      # RO  code the bias DAC took at the last pulse's rising edge
    "LAST_PULSE_CYCLES": 0x25,    # RO  cycles the last pulse was applied, counted at the DAC
    "LOCKIN_PHASE_INC": 0x30,     # RW  NCO step per ADC sample (f / adc_rate * 2^32)
    "LOCKIN_DECIMATION": 0x31,    # RW  ADC samples per pixel
    "PIXEL_COUNT": 0x32,          # RO  lock-in pixels delivered since the scan started
    "BE_TABLE_ADDR": 0x38,        # RW  band excitation: table word the next BE_TABLE_DATA writes
    "BE_TABLE_DATA": 0x39,        # WO  signed drive code into the table at BE_TABLE_ADDR, which then advances
    "BE_LENGTH": 0x3A,            # RW  table words per period, 1..BE_TABLE_DEPTH
    "BE_REPEATS": 0x3B,           # RW  periods played, their captures summed, >= 1
    "BE_START": 0x3C,             # WO  any write plays the table (firmware/rtl/be_engine.v)
    "BE_CAPTURE_ADDR": 0x3D,      # RW  capture word the next BE_CAPTURE_DATA reads
    "BE_CAPTURE_DATA": 0x3E,      # RO  signed sum of the ADC samples at BE_CAPTURE_ADDR, which then advances
}

#: Words of the band-excitation table and capture buffer (be_engine's DEPTH in pfm_top).
BE_TABLE_DEPTH = 4096

#: Registers a WRITE_REG may not address (answered NAK OUT_OF_RANGE), and the write-only one.
READ_ONLY_REGISTERS = frozenset({"ID", "VERSION", "STATUS", "CYCLE_COUNT", "LAST_PULSE_CODE",
                                 "LAST_PULSE_CYCLES", "PIXEL_COUNT", "BE_CAPTURE_DATA"})
WRITE_ONLY_REGISTERS = frozenset({"PULSE_TRIGGER", "BE_TABLE_DATA", "BE_START"})

#: Value of the ID register: "PFM1" in ASCII.
REGISTER_ID = 0x50464D31

#: Bits of STATUS. Error bits are sticky until a CONTROL write with CLEAR_ERRORS.
STATUS_BITS: dict[str, int] = {
    "PULSE_ACTIVE": 0,      # a pulse is pending (latency) or applied
    "SCAN_BUSY": 1,         # the scan generator is running
    "PULSE_ERR_WIDTH": 2,   # the pulse generator refused an illegal width
    "PULSE_ERR_BUSY": 3,    # a trigger came while a pulse was running
    "SCAN_ERR_CONFIG": 4,   # a scan start with a zero setting
    "SCAN_ERR_BUSY": 5,     # a scan start while scanning
    "LOCKIN_OVERRUN": 6,    # a pixel ended before the previous one was converted
    "UART_FRAMING": 7,      # a byte with a bad stop bit arrived
    "ANSWER_DROPPED": 8,    # a request completed while the previous answer was being sent
    "BE_BUSY": 9,           # the band-excitation engine is playing
}

#: Bits of CONTROL. SCAN_START and CLEAR_ERRORS act once per write; RETRACE is kept.
CONTROL_BITS: dict[str, int] = {"SCAN_START": 0, "CLEAR_ERRORS": 1, "RETRACE": 2}

DEFAULT_HARDWARE = HardwareSpec()
