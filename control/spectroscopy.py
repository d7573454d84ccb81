"""Band excitation (BE) and switching spectroscopy (BEPS): the contract's waveform verbs.

In band excitation the tip is driven with a band of frequencies around the cantilever's contact
resonance at once, and the response is read per frequency bin (Jesse et al., Nanotechnology 18,
435503, 2007). Band-excitation piezoresponse spectroscopy (BEPS) steps a DC bias on the tip and
reads such a band at every step, with the DC on ("field on") and after it ("field off"), at every
point of a grid: a local hysteresis loop per point (Jesse, Baddorf and Kalinin, APL 88, 062908,
2006). SI units: Hz, V, s, m; responses are complex cantilever amplitudes in m.

What a backend implements: ``band_excitation(x, y, band)`` -> :class:`BEResult` and
``beps(spec)`` -> :class:`BEPSResult`. ``control.connect`` checks every argument first
(:func:`check_band`, :func:`check_beps`), so a refused read-out never reaches a backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from control.contract import ScanSpec
from control.errors import InvalidArgumentError, LimitError
from control.hardware import HardwareSpec
from control.limits import SafetyLimits, integer, pair, real, shown

#: Most frequency bins of one read-out, and most DC steps and points of one BEPS measurement.
MAX_BINS = 1024
MAX_STEPS = 1024
MAX_POINTS = 65536
#: Shortest and longest read-out, s.
DURATION_RANGE = (1e-4, 1.0)
STATES = ("on", "off")


@dataclass(frozen=True)
class Band:
    """One band-excitation read-out: the drive's frequency band and how long it is read.

    Attributes:
        center: center of the band, Hz (put it on the contact resonance).
        width: width of the band, Hz.
        amplitude: AC drive amplitude on the tip, V.
        duration: how long the band is driven and the response recorded, s.
        bins: frequency bins the response is reported in, spread evenly over the band.
    """

    center: float = 357e3
    width: float = 60e3
    amplitude: float = 1.0
    duration: float = 4e-3
    bins: int = 64

    #: SI unit of each dimensioned field: for session files.
    UNITS = {"center": "Hz", "width": "Hz", "amplitude": "V", "duration": "s"}

    def __post_init__(self) -> None:
        center, width = real("center", self.center, "Hz"), real("width", self.width, "Hz")
        if not 0 < width < 2 * center:
            raise InvalidArgumentError(
                f"width={width!r} Hz must be positive and less than twice center={center!r} Hz "
                "(the band may not reach 0 Hz); narrow the band")
        amplitude = real("amplitude", self.amplitude, "V")
        if amplitude <= 0:
            raise InvalidArgumentError(f"amplitude={amplitude!r} V must be positive (the AC drive's amplitude)")
        duration = real("duration", self.duration, "s")
        lo, hi = DURATION_RANGE
        if not lo <= duration <= hi:
            raise InvalidArgumentError(f"duration={duration!r} s is outside [{lo!r}, {hi!r}] s; choose one in that range")
        bins = integer("bins", self.bins)
        if not 4 <= bins <= MAX_BINS:
            raise InvalidArgumentError(f"bins={bins!r} is outside [4, {MAX_BINS}]; choose a bin count in that range")
        for name, value in (("center", center), ("width", width), ("amplitude", amplitude), ("duration", duration),
                            ("bins", bins)):
            object.__setattr__(self, name, value)

    def frequencies(self) -> np.ndarray:
        """The bins' center frequencies, Hz, shape (bins,)."""
        return self.center - self.width / 2 + (np.arange(self.bins) + 0.5) * (self.width / self.bins)

    def to_dict(self) -> dict:
        return {"center": self.center, "width": self.width, "amplitude": self.amplitude,
                "duration": self.duration, "bins": self.bins}


@dataclass
class BEResult:
    """A band-excitation read-out at one point.

    Attributes:
        x, y: where the tip was, m.
        band: what was driven.
        frequencies: bin frequencies, Hz, shape (bins,).
        response: cantilever response per bin, complex, m (amplitude and phase of the
            deflection at that frequency; the phase in the lock-in's convention, an up domain
            near the instrument's phase offset at low frequency).
        start: instrument time at which the read-out began, s.
    """

    x: float
    y: float
    band: Band
    frequencies: np.ndarray
    response: np.ndarray
    start: float


@dataclass
class BEImage:
    """A band-excitation image: a read-out at every pixel of a raster.

    Attributes:
        spec: the raster (its ``line_rate`` is not used: each pixel takes the band's duration).
        band: what was driven.
        frequencies: bin frequencies, Hz, shape (bins,).
        response: complex response, m, shape (lines, points, bins).
        times: instrument time at which each pixel's read-out began, s, shape (lines, points).
    """

    spec: ScanSpec
    band: Band
    frequencies: np.ndarray
    response: np.ndarray
    times: np.ndarray


@dataclass(frozen=True)
class BEPSSpec:
    """A switching-spectroscopy measurement: a DC bias waveform with a BE read-out at each step.

    At every point, in order, the tip goes there and the DC bias steps through ``dc``; each step
    holds its bias for ``step`` s (a pulse of that bias and width as far as the film is
    concerned), the band is read at the end of the step with the DC on (state "on") and then
    right after it with the DC off ("off").

    Attributes:
        points: (x, y) of each point, m.
        dc: DC bias of each step, V.
        step: how long each DC step holds, s.
        band: the read-out.
    """

    points: tuple[tuple[float, float], ...]
    dc: tuple[float, ...]
    step: float = 1e-3
    band: Band = Band()

    UNITS = {"points": "m", "dc": "V", "step": "s"}

    def __post_init__(self) -> None:
        try:
            points = tuple(pair(f"points[{i}]", p, real, "m", labels=("x", "y")) for i, p in enumerate(self.points))
            dc = tuple(real(f"dc[{i}]", v, "V") for i, v in enumerate(self.dc))
        except TypeError:
            raise InvalidArgumentError(
                f"points={shown(self.points)} and dc={shown(self.dc)} must be sequences: points of (x, y) in m, "
                "dc of biases in V") from None
        if not 1 <= len(points) <= MAX_POINTS:
            raise InvalidArgumentError(f"{len(points)} points; give 1 to {MAX_POINTS}")
        if not 1 <= len(dc) <= MAX_STEPS:
            raise InvalidArgumentError(f"{len(dc)} DC steps; give 1 to {MAX_STEPS}")
        if not isinstance(self.band, Band):
            raise InvalidArgumentError(f"band={shown(self.band)} is a {type(self.band).__name__}; pass a control.spectroscopy.Band")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "dc", dc)
        object.__setattr__(self, "step", real("step", self.step, "s"))

    @classmethod
    def grid(cls, center: tuple[float, float], size: tuple[float, float], pixels: tuple[int, int],
             dc, **kwargs) -> BEPSSpec:
        """Points on a raster grid (``pixels`` = (along x, along y)), row by row, pixel centers."""
        (cx, cy), (w, h) = pair("center", center, real, "m"), pair("size", size, real, "m")
        nx, ny = pair("pixels", pixels, integer)
        xs = cx - w / 2 + (np.arange(nx) + 0.5) * (w / nx)
        ys = cy - h / 2 + (np.arange(ny) + 0.5) * (h / ny)
        return cls(points=tuple((float(x), float(y)) for y in ys for x in xs), dc=tuple(dc), **kwargs)

    @property
    def duration(self) -> float:
        """Instrument time at the points (the moves between them excluded), s."""
        return len(self.points) * len(self.dc) * (self.step + 2 * self.band.duration)

    def to_dict(self) -> dict:
        return {"points": [list(p) for p in self.points], "dc": list(self.dc), "step": self.step,
                "band": self.band.to_dict()}


def triangle(amplitude: float, steps: int = 64, cycles: int = 1) -> tuple[float, ...]:
    """The usual BEPS bias waveform: 0 -> +amplitude -> 0 -> -amplitude -> 0, ``steps`` per cycle.

    With 64 steps and 8.5 V it is the waveform of the PbTiO3 BEPS data set in tests/data.
    """
    amplitude = real("amplitude", amplitude, "V")
    steps = integer("steps", steps)
    if steps < 4 or steps % 4:
        raise InvalidArgumentError(f"steps={steps!r} must be a multiple of 4, at least 4 (four legs of the triangle)")
    quarter = steps // 4
    rise = np.arange(quarter) / quarter
    one = np.concatenate([rise, 1 - rise, -rise, -(1 - rise)]) * amplitude
    return tuple(float(v) for v in np.tile(one, integer("cycles", cycles)))


@dataclass
class BEPSResult:
    """What a BEPS measurement returns.

    Attributes:
        spec: what was measured.
        frequencies: bin frequencies, Hz, shape (bins,).
        response: complex response, m, shape (points, steps, 2, bins): [..., 0, :] with the DC
            on, [..., 1, :] after it.
        times: instrument time at which each step began, s, shape (points, steps).
    """

    spec: BEPSSpec
    frequencies: np.ndarray
    response: np.ndarray
    times: np.ndarray

    @property
    def dc(self) -> np.ndarray:
        return np.asarray(self.spec.dc)

    @property
    def positions(self) -> np.ndarray:
        return np.asarray(self.spec.points)


def check_band(band: object, limits: SafetyLimits, hardware: HardwareSpec, dc: float = 0.0) -> Band:
    """A read-out as the guard checks it: within the ADC's band and, with ``dc``, the bias limit."""
    if not isinstance(band, Band):
        raise InvalidArgumentError(f"band={shown(band)} is a {type(band).__name__}; pass a control.spectroscopy.Band")
    top, nyquist = band.center + band.width / 2, hardware.adc_rate / 2
    if top >= nyquist:
        raise LimitError(
            f"the band reaches {top!r} Hz; the ADC samples at {hardware.adc_rate!r} Hz and reads below {nyquist!r} Hz: "
            "lower center or narrow width")
    if band.amplitude + abs(dc) > limits.bias_max:
        raise LimitError(
            f"the tip would see {band.amplitude!r} V of drive on {abs(dc)!r} V of DC, beyond the bias limit of "
            f"±{limits.bias_max!r} V; lower the drive amplitude or the DC bias")
    return band


def check_be_image(spec: object, band: object, limits: SafetyLimits, hardware: HardwareSpec) -> Band:
    """A BE image as the guard checks it: a raster inside the scanner range, the band, its time."""
    if not isinstance(spec, ScanSpec) or spec.path != "raster":
        raise InvalidArgumentError(f"spec={shown(spec)} must be a control.ScanSpec with path='raster'")
    limits.check_raster(spec)
    band = check_band(band, limits, hardware)
    seconds = spec.pixels[0] * spec.pixels[1] * band.duration
    if seconds > limits.duration_max:
        raise LimitError(f"the image takes {seconds:.1f} s ({spec.pixels[0]} x {spec.pixels[1]} read-outs of "
                         f"{band.duration!r} s); a command may take at most {limits.duration_max!r} s: "
                         "use fewer pixels or a shorter read-out")
    return band


def check_beps(spec: object, limits: SafetyLimits, hardware: HardwareSpec) -> BEPSSpec:
    """A BEPS measurement as the guard checks it: every point, step and read-out, and its time."""
    if not isinstance(spec, BEPSSpec):
        raise InvalidArgumentError(f"spec={shown(spec)} is a {type(spec).__name__}; pass a control.spectroscopy.BEPSSpec")
    for x, y in spec.points:
        limits.check_position(x, y, what="BEPS point")
    if not limits.pulse_width_min <= spec.step <= limits.pulse_width_max:
        raise LimitError(
            f"step={spec.step!r} s is outside the pulse width range [{limits.pulse_width_min!r}, "
            f"{limits.pulse_width_max!r}] s (each DC step is a pulse to the film); choose a step in that range")
    check_band(spec.band, limits, hardware, dc=max(abs(v) for v in spec.dc))
    if spec.duration > limits.duration_max:
        raise LimitError(
            f"the measurement takes {spec.duration:.1f} s at the points ({len(spec.points)} points x {len(spec.dc)} "
            f"steps); a command may take at most {limits.duration_max!r} s: measure fewer points or steps")
    return spec
