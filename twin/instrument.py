"""The twin instrument: a simpy discrete-event model of the PFM that implements ``control.Backend``.

Every verb is a simpy process on the instrument's ``Environment``: the tip moves at finite
speed, scans run line by line in instrument time, pulses are quantized to the FPGA clock. In
process the environment runs as fast as it can (virtual time); the emulator runs the same
processes on ``simpy.rt.RealtimeEnvironment``. Randomness comes only from the seed: the same
seed and the same sequence of commands give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace

import numpy as np
import simpy

import control
from control import InstrumentInfo, LineCallback, PulseRecord, SafetyLimits, ScanResult, ScanSpec
from control.fpga import FpgaTiming
from control.hardware import DEFAULT_HARDWARE, HardwareSpec
from control.spectroscopy import Band, BEPSResult, BEPSSpec, BEResult
from twin.be import BandExcitation
from twin.film import Film, FilmParams
from twin.pfm import PfmParams, PfmSignal
from twin.scanner import Scanner, ScannerParams


@dataclass(frozen=True)
class TwinConfig:
    """Everything that defines a twin instrument; ``twin://`` URL options map onto it.

    Attributes:
        seed: the sample.
        day: the instrument's state that day.
        film: the simulated film; it is periodic with period ``film.size``.
        scanner: the piezo scanner's imperfections.
        pfm: the signal chain.
        hardware: the controller. Default: the standard controller with its scanner range cut to
            the film (``min(scan_range, film.size)``). Its scanner may not reach past the film:
            the film is periodic, so a scan there would show a copy of it.
        origin: scanner position (x, y) of the film's corner, m; each at most 0.
    """

    seed: int = 0
    day: int = 0
    film: FilmParams = field(default_factory=FilmParams)
    scanner: ScannerParams = field(default_factory=ScannerParams)
    pfm: PfmParams = field(default_factory=PfmParams)
    hardware: HardwareSpec | None = None
    origin: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        reach = self.film.size + min(self.origin)  # where the film ends first, in scanner coordinates
        if self.hardware is None:
            hardware = replace(DEFAULT_HARDWARE, scan_range=min(DEFAULT_HARDWARE.scan_range, reach))
            object.__setattr__(self, "hardware", hardware)
        if max(self.origin) > 0 or self.hardware.scan_range > reach:
            raise ValueError(
                f"the scanner reaches [0, {self.hardware.scan_range!r}] m but the film covers "
                f"[{max(self.origin)!r}, {reach!r}] m of it: the film is periodic, so the scanner would image "
                f"a copy of it; give hardware=None (the scanner spans the film), a smaller scan_range or a larger film"
            )


class TwinMicroscope:
    """The digital twin of the PFM (a ``control.Backend``; reach it through ``control.connect``).

    Args:
        config: the instrument and sample definition.
        url: the URL it was opened with (reported by ``info()``).
        options: the URL options in force (reported by ``info()``).
        option_units: SI unit of each dimensioned option (reported by ``info()``).
        env: the simpy environment to run on; default: a new virtual-time one.
    """

    def __init__(
        self,
        config: TwinConfig,
        *,
        url: str = "twin://",
        options: dict | None = None,
        option_units: dict | None = None,
        env: simpy.Environment | None = None,
    ) -> None:
        self.config = config
        self.url = url
        self.options = dict(options or {"seed": config.seed})
        self.option_units = dict(option_units or {})
        self.env = env if env is not None else simpy.Environment()
        # The sample's streams depend on the seed only; the instrument's on the seed and the day,
        # so another day images the same domains through a different-looking instrument.
        film_seed, sample_seed = np.random.SeedSequence(config.seed).spawn(2)
        scanner_seed, noise_seed = np.random.SeedSequence([config.seed, config.day]).spawn(2)
        self.film = Film(config.film, np.random.default_rng(film_seed))
        self.pfm = PfmSignal(config.pfm, self.film, np.random.default_rng(sample_seed))
        self.scanner = Scanner(config.scanner, np.random.default_rng(scanner_seed))
        self.noise = np.random.default_rng(noise_seed)
        self.timing = FpgaTiming(config.hardware)
        self.be = BandExcitation(self.pfm, config.hardware.drive_frequency)
        self._closed = False

    # -- the Backend verbs ----------------------------------------------------------------

    def info(self) -> InstrumentInfo:
        """Identity, hardware spec, limits and options of the twin."""
        f = self.config.film
        return InstrumentInfo(
            backend="twin",
            url=self.url,
            identity=f"pfmtwin digital twin: PbTiO3 film {f.thickness * 1e9:g} nm, {f.grid}x{f.grid} over "
            f"{f.size * 1e6:g} um, seed {self.config.seed}, day {self.config.day}",
            protocol_version=control.PROTOCOL_VERSION,
            software_version=control.__version__,
            hardware=self.config.hardware,
            limits=SafetyLimits.from_hardware(self.config.hardware),
            options=dict(self.options),
            option_units=dict(self.option_units),
        )

    def now(self) -> float:
        """Instrument time, s."""
        return float(self.env.now)

    def move_tip(self, x: float, y: float, speed: float) -> None:
        """Move the tip to (x, y) m at ``speed`` m/s."""
        self._run(self._move(x, y, speed))

    def scan(self, spec: ScanSpec, on_line: LineCallback | None = None, *,
             positions: tuple[np.ndarray, np.ndarray] | None = None) -> ScanResult:
        """Acquire an image; each line is handed to ``on_line`` when acquired.

        Args:
            spec: what to scan.
            on_line: called with each line as it is acquired.
            positions: tip positions (x, y), m, each of shape ``spec.shape``, to evaluate the
                signal at (firmware co-simulation passes the RTL's scanner DAC positions); default:
                where the scan generator's DAC ramp puts the tip (``FpgaTiming.raster_positions``)
                for a raster, the commanded positions for a spiral.
        """
        return self._run(self._scan(spec, on_line, positions))

    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord:
        """Move to (x, y) and emit a bias pulse; return what the FPGA emitted."""
        return self._run(self._pulse(x, y, amplitude, width))

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of instrument time pass (co-simulation: a time-compressed read-out)."""
        self._run(self._wait(seconds))

    def _wait(self, seconds: float) -> Generator:
        yield self.env.timeout(seconds)

    def band_excitation(self, x: float, y: float, band: Band) -> BEResult:
        """Move to (x, y) and read the response to the band (``control.spectroscopy``)."""
        return self._run(self._band(x, y, band))

    def beps(self, spec: BEPSSpec, on_step: Callable[[int, int, float, np.ndarray], None] | None = None) -> BEPSResult:
        """Switching spectroscopy at each point: the DC steps write the film as pulses do.

        ``on_step(point, step, start, response)`` is called as each step's read-outs are done
        (``response``: (2, bins), DC on and off); the emulator streams them.
        """
        return self._run(self._beps(spec, on_step))

    # -- instrument faults (for the emulator's fault injection) -------------------------------

    def blunt_tip(self, factor: float = 2.0) -> None:
        """The tip apex radius grows ``factor``-fold (wear, pick-up): wider wall dips, weaker field."""
        self.film.blunt_tip(factor)

    def drift_burst(self, factor: float = 100.0, duration: float = 60.0) -> None:
        """Thermal drift ``factor`` times faster for the next ``duration`` s of instrument time."""
        self.scanner.drift_burst(self.now(), duration, factor)

    def close(self) -> None:
        """Release the twin (nothing to free; later calls are refused by ``control.Guarded``)."""
        self._closed = True

    # -- processes ---------------------------------------------------------------------------

    def _run(self, generator: Generator) -> object:
        process = self.env.process(generator)
        self.env.run(until=process)
        return process.value

    def _move(self, x: float, y: float, speed: float) -> Generator:
        start = self.scanner.commanded
        distance = float(np.hypot(x - start[0], y - start[1]))
        if distance > 0:
            yield self.env.timeout(distance / speed)
            self.scanner.move((x, y), self.env.now, duration=distance / speed)

    def _film(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Film coordinates (m) of actual tip positions (m)."""
        return x - self.config.origin[0], y - self.config.origin[1]

    def _parked(self, x: float, y: float, t: float) -> tuple[float, float]:
        """Film coordinates (m) of the tip parked at commanded (x, y) at time ``t``.

        The tip sits where the scanner DACs put it (the commanded position to the nearest code),
        displaced as the parked scanner is then (hysteresis, creep, drift).
        """
        dx, dy = np.subtract(self.scanner.position(t), self.scanner.commanded)
        ax, ay = self._film(float(self.timing.quantize(x)) + dx, float(self.timing.quantize(y)) + dy)
        return float(ax), float(ay)

    def _scan(self, spec: ScanSpec, on_line: LineCallback | None = None,
              positions: tuple[np.ndarray, np.ndarray] | None = None) -> Generator:
        xs, ys = spec.positions()
        if positions is None:
            positions = self.timing.raster_positions(xs, ys) if spec.path == "raster" else (xs, ys)
        tx, ty = positions
        if tx.shape != spec.shape or ty.shape != spec.shape:
            raise ValueError(f"positions have shapes {tx.shape}, {ty.shape}; the scan needs {spec.shape}")
        ny, nx = spec.shape
        yield from self._move(xs[0, 0], ys[0, 0], self.config.hardware.tip_speed_max)
        period = self.timing.line_period(spec.line_rate, nx)
        per_line = period * (2 if spec.retrace else 1)
        line_times = self.env.now + np.arange(ny) * per_line
        fraction = (np.arange(nx) + 0.5) / nx
        times = line_times[:, None] + fraction[None, :] * period
        # Where the tip really is along the commanded path (hysteresis, creep, drift): one
        # time-ordered path, each line's trace then its retrace right to left, or, without
        # retrace, the flyback as the jump from one line to the next.
        if spec.retrace:
            back = line_times[:, None] + period + (1.0 - fraction[None, :]) * period
            ax, ay = self.scanner.follow(np.hstack([tx, tx[:, ::-1]]), np.hstack([ty, ty[:, ::-1]]),
                                         np.hstack([times, back[:, ::-1]]))
            trace = ax[:, :nx], ay[:, :nx]
            retrace = ax[:, nx:][:, ::-1], ay[:, nx:][:, ::-1]  # back in pixel order
        else:
            trace = self.scanner.follow(tx, ty, times)
        speed = spec.size[0] / period  # along the fast axis (a spiral's mean is about as fast)
        channels = self.pfm.acquire(*self._film(*trace), self.noise, speed=speed)
        if spec.retrace:
            for name, values in self.pfm.acquire(*self._film(*retrace), self.noise, reverse=True, speed=speed).items():
                channels[f"{name}_retrace"] = values
        if on_line is None:
            yield from self._wait_lines(ny, per_line)
        else:
            for i in range(ny):
                yield self.env.timeout(per_line)
                on_line(i, float(line_times[i]), {k: v[i] for k, v in channels.items()})
        return ScanResult(spec=spec, channels=channels, x=xs, y=ys, line_times=line_times)

    def _wait_lines(self, lines: int, per_line: float) -> Generator:
        """Let ``lines`` line periods pass, to the same instant (to the bit) as one timeout per line.

        With nobody to hand lines to, one event instead of one per line (a tenth of a 32-line scan
        of the agents' window). The clock adds one period at a time; the end time is summed the
        same way and reached in one step where ``now + (end - now)`` is exactly ``end`` (always
        but at the first few scans of a session), else line by line as before.
        """
        now = self.env.now
        end = now
        for _ in range(lines):
            end += per_line
        if now + (end - now) == end:
            yield self.env.timeout(end - now)
        else:
            for _ in range(lines):
                yield self.env.timeout(per_line)

    def _band(self, x: float, y: float, band: Band) -> Generator:
        yield from self._move(x, y, self.config.hardware.tip_speed_max)
        start = float(self.env.now)
        response = self.be.spectrum(*self._parked(x, y, start), band, 0.0, self.noise)
        yield self.env.timeout(band.duration)
        return BEResult(x=float(x), y=float(y), band=band, frequencies=band.frequencies(), response=response,
                        start=start)

    def _beps(self, spec: BEPSSpec, on_step=None) -> Generator:
        band = spec.band
        cycles = self.timing.pulse_cycles(spec.step)  # refused before anything moves
        step = self.timing.seconds(cycles)
        response = np.empty((len(spec.points), len(spec.dc), 2, band.bins), dtype=complex)
        times = np.empty((len(spec.points), len(spec.dc)))
        codes = [self.timing.bias_code(v) for v in spec.dc]
        for i, (x, y) in enumerate(spec.points):
            yield from self._move(x, y, self.config.hardware.tip_speed_max)
            for k, code in enumerate(codes):
                times[i, k] = self.env.now
                bias = self.timing.bias(code)
                if code != 0:  # the step writes as a pulse of its bias and length would
                    self.film.pulse(*self._parked(x, y, float(self.env.now)), bias, step)
                yield self.env.timeout(step)
                # Read with the DC still on at the end of the step, then with it off.
                response[i, k, 0] = self.be.spectrum(*self._parked(x, y, float(self.env.now)), band, bias, self.noise)
                yield self.env.timeout(band.duration)
                response[i, k, 1] = self.be.spectrum(*self._parked(x, y, float(self.env.now)), band, 0.0, self.noise)
                yield self.env.timeout(band.duration)
                if on_step is not None:
                    on_step(i, k, float(times[i, k]), response[i, k])
        return BEPSResult(spec=spec, frequencies=band.frequencies(), response=response, times=times)

    def _pulse(self, x: float, y: float, amplitude: float, width: float) -> Generator:
        cycles = self.timing.pulse_cycles(width)  # refused before anything moves
        yield from self._move(x, y, self.config.hardware.tip_speed_max)
        code = self.timing.bias_code(amplitude)
        return (yield from self._emit(x, y, code, cycles, amplitude, width))

    def emit_pulse(self, x: float, y: float, code: int, cycles: int, *, requested_amplitude: float,
                   requested_width: float) -> PulseRecord:
        """Apply the pulse the controller emitted: bias DAC ``code`` for ``cycles`` clock cycles.

        The tip must already be at (x, y) (commanded, m). The pulse starts after the trigger
        latency. Firmware co-simulation calls this with what the RTL put on the bias DAC, so the
        film's physics consumes the RTL's outputs; :meth:`apply_pulse` calls it with the twin's
        own quantization.
        """
        return self._run(self._emit(x, y, code, cycles, requested_amplitude, requested_width))

    def _emit(self, x: float, y: float, code: int, cycles: int, amplitude: float, width: float) -> Generator:
        emitted_width = self.timing.seconds(cycles)
        emitted = self.timing.bias(code)
        yield self.env.timeout(self.timing.pulse_latency)
        start = float(self.env.now)
        ax, ay = self._parked(x, y, start)
        self.film.pulse(float(ax), float(ay), emitted, emitted_width)
        yield self.env.timeout(emitted_width)
        return PulseRecord(
            x=x, y=y, amplitude=emitted, width=emitted_width, start=start, cycles=cycles,
            requested_amplitude=amplitude, requested_width=width,
        )
