"""Firmware in the loop: the controller's RTL in a simulator, the twin's physics around it.

``pfmtwin cosim`` serves this instrument with the emulator's wire-protocol server, so
``control.connect("socket://...")`` drives the real Verilog:

    client --frames--> server --register writes as UART frames--> pfm_top (RTL)
                                                                    |  DAC codes: tip x/y, bias
                         twin physics  <---- bias pulse at the DAC pins, tip at the DAC codes
                         twin PFM signal ----> ADC samples ----> lock-in ----> pixel stream

Division of labour, as on the instrument:

* The host sequencer (this module, the part a soft-core or the host PC plays on hardware) turns
  MOVE, PULSE and SCAN into register writes, sent as WRITE_REG frames through the RTL's UART and
  answered by the RTL's responder; a NAK from the RTL stops the command.
* The RTL times the pulse, clamps its amplitude, ramps the scanner DACs and demodulates the
  cantilever signal. Its outputs, not the request, go into the physics: the film is written with
  the bias code and the number of cycles seen at the bias DAC pins, at the position of the X/Y
  DAC codes; scan pixels sit where the scan generator put the DACs.
* The twin supplies the physics: the film, the PFM response under the tip (amplitude and phase,
  with its noise, drift and gain), which becomes ADC samples ``A cos(theta_n + phi)`` at the
  lock-in NCO's exact phase, scaled by :attr:`CosimConfig.adc_full_scale`.

Time: the instrument clock is the twin's simpy clock, advanced by what each command takes on
the instrument (moves at their speed, pulses of their emitted width, scan lines at their line
rate). The RTL runs every clock cycle of a pulse, so pulses are exact to the cycle; a scan pixel
runs for :attr:`CosimConfig.pixel_samples` ADC samples (time-compressed: a real 1 Hz line of 8
pixels lasts 12.5 M cycles per pixel, which no simulator runs interactively). Height comes from
the twin directly: the Z feedback loop is not part of this RTL.

This module has no cocotb import: the blocking RTL port (:class:`RtlPort`) is implemented by the
cocotb test ``firmware/tb/cosim_tb.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from control import InstrumentInfo, PulseRecord, ScanResult, ScanSpec, wrap_phase
from control.errors import InvalidArgumentError, LimitError
from control.fpga import FpgaTiming
from control.hardware import BE_TABLE_DEPTH, CONTROL_BITS
from control.spectroscopy import Band, BEPSResult, BEPSSpec, BEResult
from firmware import be_model, lockin_model
from twin.instrument import TwinMicroscope

#: Peak drive DAC code of the band-excitation table (half of full scale: headroom for the multisine).
DRIVE_CODE = 16000
#: RTL sources of the top level, in firmware/rtl.
TOP_SOURCES = ["pfm_crc.v", "uart_rx.v", "uart_tx.v", "frame_parser.v", "bias_clamp.v", "pulse_gen.v",
               "scan_gen.v", "nco.v", "cordic.v", "lockin_div.v", "lockin_sine_rom.v", "lockin_atan_rom.v",
               "lockin.v", "be_engine.v", "pfm_top.v", "pfm_sim_top.v"]


@dataclass(frozen=True)
class CosimConfig:
    """How the co-simulation maps the twin onto the RTL.

    Attributes:
        adc_full_scale: cantilever amplitude at the ADC's full-scale code, m (sensitivity of the
            deflection path). The twin's signals are tens of pm; 1 nm leaves headroom.
        pixel_samples: ADC samples per scan pixel in the RTL (LOCKIN_DECIMATION). 40 samples
            at 4 MHz span 3.5 periods of the 350 kHz drive: a whole number of half periods, where
            the boxcar's nulls sit on the 2f image.
        max_pulse_cycles: longest pulse simulated, clock cycles. Every cycle is simulated; a
            longer pulse is refused before it reaches the RTL.
        be_repeats: periods of the drive table the RTL plays per band-excitation read-out
            (time-compressed: a 4 ms read-out would be 16,000 ADC samples).
    """

    adc_full_scale: float = 1e-9
    pixel_samples: int = 40
    max_pulse_cycles: int = 2_000_000
    be_repeats: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.adc_full_scale < 1e-6:
            raise InvalidArgumentError(f"adc_full_scale={self.adc_full_scale!r} m must be in (0, 1e-6)")
        if not 3 <= self.pixel_samples <= 65535:
            raise InvalidArgumentError(
                f"pixel_samples={self.pixel_samples!r} must be in 3..65535 (the lock-in needs 72 cycles per pixel)")
        if not 1 <= self.be_repeats <= 1000:
            raise InvalidArgumentError(f"be_repeats={self.be_repeats!r} must be in 1..1000 periods")
        if self.max_pulse_cycles < 100:
            raise InvalidArgumentError(f"max_pulse_cycles={self.max_pulse_cycles!r} must be at least 100")


class RtlPort(Protocol):
    """Blocking access to the simulated controller (implemented in firmware/tb/cosim_tb.py)."""

    def write(self, register: str, value: int) -> None:
        """WRITE_REG through the UART; raises on a NAK."""

    def read(self, register: str) -> int:
        """READ_REG through the UART; raises on a NAK."""

    def read_address(self, address: int) -> int:
        """READ_REG of a raw address; raises on a NAK."""

    def pulse(self, cycles: int) -> dict:
        """Write PULSE_TRIGGER and wait for the ``cycles``-cycle pulse to end at the DAC pins.

        Returns what the pins showed: code, cycles, x and y DAC codes, the rise and fall edges.
        """

    def be(self, table: np.ndarray, repeats: int, samples: np.ndarray, write_table: bool) -> np.ndarray:
        """Band excitation: write the drive ``table`` (if ``write_table``), play it ``repeats``
        times with ``samples`` for the ADC, return the capture words (summed periods)."""

    def scan(self, samples: np.ndarray, pixels: int, control: int, on_pixels) -> tuple[np.ndarray, np.ndarray]:
        """Write ``control`` (SCAN_START) with ``samples`` for the ADC; wait for ``pixels`` pixels.

        ``on_pixels(codes)`` is called as pixels arrive, with the (n, 2) codes so far. Returns the (pixels, 2) lock-in
        codes and the (samples, 2) X/Y DAC codes at each ADC sample.
        """

    @property
    def cycles(self) -> int:
        """Clock cycles simulated so far."""


class CosimInstrument:
    """The twin's physics around the RTL controller; served by :class:`emulator.protocol.Emulator`.

    Args:
        twin: the twin whose film, PFM signal, scanner and clock are used.
        rtl: the simulated controller.
        config: mapping between the two.
    """

    def __init__(self, twin: TwinMicroscope, rtl: RtlPort, config: CosimConfig | None = None) -> None:
        self.twin = twin
        self.rtl = rtl
        self.cosim = config or CosimConfig()
        self.hardware = twin.config.hardware
        self.timing = FpgaTiming(twin.config.hardware)
        self.increment = lockin_model.phase_increment(twin.config.hardware.drive_frequency, twin.config.hardware.adc_rate)
        self.stats = {"pulses": 0, "pixels": 0}
        self._tables: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._loaded: tuple | None = None  # the band whose table the RTL holds
        rtl.write("BIAS_CLAMP_CODE", 2 ** (twin.config.hardware.dac_bits - 1) - 1)
        rtl.write("LOCKIN_PHASE_INC", self.increment)
        rtl.write("LOCKIN_DECIMATION", self.cosim.pixel_samples)

    # -- the twin's verbs ------------------------------------------------------------------------

    def info(self) -> InstrumentInfo:
        info = self.twin.info()
        options = dict(info.options, adc_full_scale=self.cosim.adc_full_scale, pixel_samples=self.cosim.pixel_samples,
                       max_pulse_cycles=self.cosim.max_pulse_cycles)
        return InstrumentInfo(backend="cosim", url=info.url, identity="RTL controller + " + info.identity,
                              protocol_version=info.protocol_version, software_version=info.software_version,
                              hardware=info.hardware, limits=info.limits, options=options)

    def now(self) -> float:
        return self.twin.now()

    def drift_burst(self, factor: float = 100.0, duration: float = 60.0) -> None:
        self.twin.drift_burst(factor, duration)

    def blunt_tip(self, factor: float = 2.0) -> None:
        self.twin.blunt_tip(factor)

    def read_register(self, address: int) -> int:
        """READ_REG ``address`` of the RTL (a NAK becomes LimitError with the RTL's text)."""
        try:
            return self.rtl.read_address(address)
        except RuntimeError as exc:
            raise LimitError(f"the controller refused READ_REG 0x{address:02x}: {exc}") from None

    def move_tip(self, x: float, y: float, speed: float) -> None:
        """Set the X/Y DACs, and move the twin's tip at ``speed`` (the twin's clock)."""
        self._setpoint(x, y)
        self.twin.move_tip(x, y, speed)

    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord:
        """Move, then pulse through the RTL; the film takes what the bias DAC pins emitted."""
        cycles = self.timing.pulse_cycles(width)
        if cycles > self.cosim.max_pulse_cycles:
            raise LimitError(
                f"pulse width {width!r} s is {cycles} cycles; co-simulation runs every clock cycle and takes pulses "
                f"up to {self.cosim.max_pulse_cycles} cycles ({self.cosim.max_pulse_cycles * self.timing.hardware.quantum:g} s); "
                "use a shorter width or a larger --max-pulse-cycles")
        code = self.timing.bias_code(amplitude)
        self._setpoint(x, y)
        self.twin.move_tip(x, y, self.hardware.tip_speed_max)
        self.rtl.write("BIAS_CODE", code)
        self.rtl.write("PULSE_WIDTH_CYCLES", cycles)
        pins = self.rtl.pulse(cycles)
        if (pins["x"], pins["y"]) != (self.timing.position_code(x), self.timing.position_code(y)):
            raise RuntimeError(f"the tip was at DAC codes {(pins['x'], pins['y'])} during the pulse, not at the setpoint")
        emitted = (self.rtl.read("LAST_PULSE_CODE") + 2**31) % 2**32 - 2**31, self.rtl.read("LAST_PULSE_CYCLES")
        if emitted != (pins["code"], pins["cycles"]):
            raise RuntimeError(f"LAST_PULSE_CODE/CYCLES {emitted} disagree with the DAC pins {pins}")
        self.stats["pulses"] += 1
        # The twin puts the film's pulse where the DAC codes put the tip (FpgaTiming.quantize).
        return self.twin.emit_pulse(x, y, pins["code"], pins["cycles"], requested_amplitude=amplitude,
                                    requested_width=width)

    def scan(self, spec: ScanSpec, on_line=None) -> ScanResult:
        """Raster scan through the RTL's scan generator and lock-in; the twin supplies the signal."""
        if spec.path != "raster":
            raise InvalidArgumentError(f"path={spec.path!r}: the RTL scan generator runs raster scans only; use 'raster'")
        nx, ny = spec.pixels
        xs, ys = spec.positions()
        x0, dx = self.timing.ramp(xs[0])
        y0, dy = self.timing.ramp(ys[:, 0])
        ix, iy = np.arange(nx), np.arange(ny)
        xq = np.broadcast_to(self.timing.position(x0 + ix * dx), (ny, nx)).astype(float)
        yq = np.broadcast_to(self.timing.position(y0 + iy * dy)[:, None], (ny, nx)).astype(float)

        # The twin's signal at the DAC positions, acquired in instrument time (no line hooks:
        # the lines go out as the RTL produces them).
        truth = self.twin.scan(spec, positions=(xq, yq))
        passes = 2 if spec.retrace else 1
        amp = np.empty((ny, passes, nx))
        phase = np.empty((ny, passes, nx))
        amp[:, 0], phase[:, 0] = truth.channels["amplitude"], truth.channels["phase"]
        if spec.retrace:  # the retrace runs from the last pixel back to the first
            amp[:, 1], phase[:, 1] = truth.channels["amplitude_retrace"][:, ::-1], truth.channels["phase_retrace"][:, ::-1]
        samples = self._adc_samples(amp.ravel(), phase.ravel())

        for name, value in [("X_SETPOINT", x0), ("Y_SETPOINT", y0), ("X_STEP", dx), ("Y_STEP", dy),
                            ("PIXELS_PER_LINE", nx), ("LINES", ny),
                            ("PIXEL_CYCLES", self.cosim.pixel_samples * self.timing.adc_divider)]:
            self.rtl.write(name, int(value))
        per_line = passes * nx
        channels = {k: np.empty((ny, nx)) for k in truth.channels}
        delivered = [0]

        def lines_done(codes: np.ndarray) -> None:
            while (delivered[0] + 1) * per_line <= len(codes):
                i = delivered[0]
                a, p = self._pixels(codes[i * per_line:(i + 1) * per_line])
                line = {"height": truth.channels["height"][i], "amplitude": a[:nx], "phase": p[:nx]}
                if spec.retrace:
                    line.update(height_retrace=truth.channels["height_retrace"][i],
                                amplitude_retrace=a[nx:][::-1], phase_retrace=p[nx:][::-1])
                for k, v in line.items():
                    channels[k][i] = v
                if on_line is not None:
                    on_line(i, float(truth.line_times[i]), line)
                delivered[0] += 1

        codes, positions = self.rtl.scan(samples, ny * per_line, control_word(start=True, retrace=spec.retrace),
                                         lines_done)
        lines_done(codes)
        # The DACs must have been where the physics was evaluated, at every ADC sample.
        want_x = np.repeat(np.tile(np.concatenate([x0 + ix * dx, (x0 + ix * dx)[::-1]][:passes]), ny), self.cosim.pixel_samples)
        want_y = np.repeat(np.repeat(y0 + iy * dy, per_line), self.cosim.pixel_samples)
        if not (np.array_equal(positions[:, 0], want_x) and np.array_equal(positions[:, 1], want_y)):
            raise RuntimeError("the RTL's scanner DAC codes differ from the ramp the physics was evaluated on")
        self.stats["pixels"] += ny * per_line
        return ScanResult(spec=spec, channels=channels, x=xs, y=ys, line_times=truth.line_times)

    def band_excitation(self, x: float, y: float, band: Band) -> BEResult:
        """A BE read-out through the RTL's waveform player and capture buffer (time-compressed).

        The host builds a multisine over the band's bins on the harmonics of a table just long
        enough to tell the bins apart (:mod:`firmware.be_model`), the RTL plays it while the ADC
        takes the twin's cantilever answering it (its response at those harmonics, noise
        included), and the host divides the capture's spectrum by the table's. The twin's clock
        advances by the band's duration; the RTL plays ``be_repeats`` periods of the table.
        """
        self._setpoint(x, y)
        self.twin.move_tip(x, y, self.hardware.tip_speed_max)
        return self._read_band(x, y, band, 0.0)

    def beps(self, spec: BEPSSpec, on_step=None) -> BEPSResult:
        """BEPS through the RTL: each DC step a pulse of the bias DAC (the film takes what the pins
        emitted, as for pulses), then a read-out with the DC on and one with it off."""
        band = spec.band
        k, table = self._table(band)  # refused here (LimitError) before anything moves
        response = np.empty((len(spec.points), len(spec.dc), 2, band.bins), dtype=complex)
        times = np.empty((len(spec.points), len(spec.dc)))
        for i, (x, y) in enumerate(spec.points):
            self._setpoint(x, y)
            self.twin.move_tip(x, y, self.hardware.tip_speed_max)
            for j, dc in enumerate(spec.dc):
                times[i, j] = self.twin.now()
                if self.timing.bias_code(dc) != 0:
                    bias = self.apply_pulse(x, y, dc, spec.step).amplitude  # what the bias DAC emitted
                else:
                    bias = 0.0
                    self.twin.wait(self.timing.seconds(self.timing.pulse_cycles(spec.step)))
                on = self._read_band(x, y, band, bias)
                off = self._read_band(x, y, band, 0.0)
                response[i, j] = on.response, off.response
                if on_step is not None:
                    on_step(i, j, float(times[i, j]), response[i, j])
        return BEPSResult(spec=spec, frequencies=k * self.hardware.adc_rate / len(table), response=response, times=times)

    def close(self) -> None:
        self.twin.close()

    # -- band excitation ------------------------------------------------------------------------------

    def _table(self, band: Band) -> tuple[np.ndarray, np.ndarray]:
        """(harmonics, table) of ``band``: the shortest table whose harmonics tell its bins apart."""
        key = (band.center, band.width, band.bins)
        if key not in self._tables:
            rate = self.hardware.adc_rate
            length = math.ceil(2 * rate * band.bins / band.width)
            if length > BE_TABLE_DEPTH:
                raise LimitError(
                    f"{band.bins} bins over {band.width!r} Hz need a drive table of {length} samples at the ADC's "
                    f"{rate:g} Hz; the RTL holds {BE_TABLE_DEPTH}: use at most "
                    f"{int(BE_TABLE_DEPTH * band.width / (2 * rate))} bins or a wider band")
            k = be_model.harmonics(band.center, band.width, band.bins, length, rate)
            self._tables[key] = (be_model.excitation(k, length, DRIVE_CODE), k)
        table, k = self._tables[key]
        return k, table

    def _read_band(self, x: float, y: float, band: Band, dc: float) -> BEResult:
        k, table = self._table(band)
        length = len(table)
        frequencies = k * self.hardware.adc_rate / length
        start = self.twin.now()
        # The twin's cantilever per volt of drive at the harmonics, in ADC codes per drive code.
        fx, fy = self.twin._parked(x, y, start)
        metres = self.twin.be.spectrum(fx, fy, band, dc, self.twin.noise, frequencies=frequencies) / band.amplitude
        full = 2 ** (self.hardware.adc_bits - 1) - 1
        volts_per_code = self.hardware.bias_range / (2 ** (self.hardware.dac_bits - 1) - 1)
        gain = metres * volts_per_code * full / self.cosim.adc_full_scale
        spectrum = np.zeros(length, dtype=complex)
        spectrum[k] = np.fft.fft(table.astype(float))[k] * gain
        spectrum[length - k] = np.conj(spectrum[k])
        period = np.fft.ifft(spectrum).real
        if np.abs(period).max() > full:
            raise RuntimeError(f"the cantilever's answer reaches {np.abs(period).max():.0f} ADC codes of {full}; "
                               "raise adc_full_scale")
        samples = np.tile(np.rint(period).astype(np.int64), self.cosim.be_repeats)
        fresh = self._loaded != (band.center, band.width, band.bins)
        capture = self.rtl.be(table, self.cosim.be_repeats, samples, fresh)
        self._loaded = (band.center, band.width, band.bins)
        measured = be_model.response(capture, table, k, self.cosim.be_repeats)  # ADC codes per drive code
        self.stats["be"] = self.stats.get("be", 0) + 1
        self.twin.wait(band.duration)
        response = measured / (volts_per_code * full / self.cosim.adc_full_scale) * band.amplitude
        return BEResult(x=float(x), y=float(y), band=band, frequencies=frequencies, response=response, start=start)

    # -- helpers ------------------------------------------------------------------------------------

    def _setpoint(self, x: float, y: float) -> None:
        self.rtl.write("X_SETPOINT", self.timing.position_code(x))
        self.rtl.write("Y_SETPOINT", self.timing.position_code(y))

    def _adc_samples(self, amplitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """ADC codes for pixels of ``amplitude`` (m) and ``phase`` (deg), in time order."""
        full = 2 ** (self.hardware.adc_bits - 1) - 1
        n = self.cosim.pixel_samples
        count = len(amplitude) * n
        theta = 2.0 * np.pi * lockin_model.nco_phase(count, self.increment).astype(np.float64) / 2.0**lockin_model.PHASE_BITS
        a = np.repeat(amplitude / self.cosim.adc_full_scale * full, n)
        if np.any(a > full):
            raise RuntimeError(f"cantilever amplitude {amplitude.max():.3g} m exceeds the ADC full scale "
                               f"{self.cosim.adc_full_scale:g} m; raise adc_full_scale")
        x = a * np.cos(theta + np.deg2rad(np.repeat(phase, n)))
        return np.clip(np.rint(x), -full - 1, full).astype(np.int64)

    def _pixels(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lock-in codes (n, 2) -> amplitude (m) and phase (deg in [-90, 270), as the twin's)."""
        full = 2 ** (self.hardware.adc_bits - 1) - 1
        amplitude = codes[:, 0] * lockin_model.AMP_LSB * (self.cosim.adc_full_scale / full)
        phase = codes[:, 1] * lockin_model.PHASE_LSB_DEG
        return amplitude, wrap_phase(phase)


def control_word(start: bool = False, retrace: bool = False, clear_errors: bool = False) -> int:
    """CONTROL register value."""
    return (start << CONTROL_BITS["SCAN_START"]) | (retrace << CONTROL_BITS["RETRACE"]) | (
        clear_errors << CONTROL_BITS["CLEAR_ERRORS"])
