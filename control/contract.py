"""The instrument contract: what control code and agents write against, whatever the backend.

SI units everywhere (m, s, V, Hz; phase in degrees, the one unit microscopists read).
Results are plain dataclasses of numpy arrays; no backend object leaks out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from control.errors import InvalidArgumentError
from control.hardware import HardwareSpec
from control.limits import SafetyLimits, integer, pair, real, shown

PROTOCOL_VERSION = "1.2"  # = control.wire.PROTOCOL_MAJOR.PROTOCOL_MINOR (tests/control/test_wire.py)
CHANNELS = ("height", "amplitude", "phase")


def wrap_phase(phase):
    """Phase in degrees wrapped into the instrument's range [-90, 270) (a float or an array)."""
    return (phase + 90.0) % 360.0 - 90.0


@dataclass(frozen=True)
class ScanSpec:
    """An image to acquire.

    Attributes:
        center: (x, y) of the image center, m.
        size: (width along x, height along y), m.
        pixels: (points per line, lines). Result arrays have shape (lines, points per line).
        line_rate: trace lines per second, Hz. With ``retrace`` each line also runs back, so a
            line takes twice as long.
        path: "raster" (lines along x, stepping in y) or "spiral" (Archimedean spiral from the
            center outwards, sampled at constant angular rate; one "line" per turn).
        retrace: also acquire the return pass of each line.
    """

    center: tuple[float, float]
    size: tuple[float, float]
    pixels: tuple[int, int] = (256, 256)
    line_rate: float = 1.0
    path: Literal["raster", "spiral"] = "raster"
    retrace: bool = False

    #: SI unit of each dimensioned field: for session files.
    UNITS = {"center": "m", "size": "m", "line_rate": "Hz"}

    def __post_init__(self) -> None:
        # numpy arrays, scalars and bools are accepted and stored as plain Python values, so a
        # spec made from numpy compares, records and serializes as one made from Python literals.
        object.__setattr__(self, "center", pair("center", self.center, real, "m"))
        size = pair("size", self.size, real, "m")
        if min(size) <= 0:
            raise InvalidArgumentError(f"size={size!r} must be positive in both axes (m)")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "pixels", pair("pixels", self.pixels, integer))
        object.__setattr__(self, "line_rate", real("line_rate", self.line_rate, "Hz"))
        if not isinstance(self.path, str) or self.path not in ("raster", "spiral"):
            raise InvalidArgumentError(f"path={shown(self.path)} is not a scan path; use 'raster' or 'spiral'")
        object.__setattr__(self, "path", str(self.path))
        if not isinstance(self.retrace, (bool, np.bool_)):
            raise InvalidArgumentError(f"retrace={shown(self.retrace)} must be True or False")
        object.__setattr__(self, "retrace", bool(self.retrace))

    @property
    def shape(self) -> tuple[int, int]:
        """Result array shape (lines, points per line)."""
        return (self.pixels[1], self.pixels[0])

    @property
    def duration(self) -> float:
        """Instrument time the scan takes, s (excluding the approach move)."""
        return self.pixels[1] / self.line_rate * (2 if self.retrace else 1)

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Commanded (x, y) of every pixel, m, each of shape ``self.shape``."""
        nx, ny = self.pixels
        (cx, cy), (w, h) = self.center, self.size
        if self.path == "raster":
            xs = cx - w / 2 + (np.arange(nx) + 0.5) * (w / nx)
            ys = cy - h / 2 + (np.arange(ny) + 0.5) * (h / ny)
            return np.broadcast_to(xs, (ny, nx)).copy(), np.broadcast_to(ys[:, None], (ny, nx)).copy()
        # Archimedean spiral r = r_max * s, s in (0, 1], constant angular speed, ny turns.
        s = (np.arange(nx * ny) + 0.5) / (nx * ny)
        theta = 2 * np.pi * ny * s
        x = cx + (w / 2) * s * np.cos(theta)
        y = cy + (h / 2) * s * np.sin(theta)
        return x.reshape(ny, nx), y.reshape(ny, nx)

    def to_dict(self) -> dict:
        """Plain-data copy."""
        return {
            "center": list(self.center),
            "size": list(self.size),
            "pixels": list(self.pixels),
            "line_rate": self.line_rate,
            "path": self.path,
            "retrace": self.retrace,
        }


@dataclass
class ScanResult:
    """An acquired image.

    Attributes:
        spec: the spec it was acquired with.
        channels: name -> array of shape ``spec.shape``: "height" (m), "amplitude" (m, the
            piezoresponse amplitude), "phase" (deg); with retrace also "height_retrace",
            "amplitude_retrace", "phase_retrace".
        x: commanded x of every pixel, m.
        y: commanded y of every pixel, m.
        line_times: instrument time at the start of each line, s.
    """

    spec: ScanSpec
    channels: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    line_times: np.ndarray

    @property
    def height(self) -> np.ndarray:
        """Topography, m."""
        return self.channels["height"]

    @property
    def amplitude(self) -> np.ndarray:
        """Piezoresponse amplitude, m."""
        return self.channels["amplitude"]

    @property
    def phase(self) -> np.ndarray:
        """Piezoresponse phase, deg."""
        return self.channels["phase"]

    @property
    def piezoresponse(self) -> np.ndarray:
        """Mixed signal A cos(phase), m: the sign shows the polarization direction."""
        return self.amplitude * np.cos(np.deg2rad(self.phase))


@dataclass(frozen=True)
class PulseRecord:
    """What the controller actually emitted for a bias pulse.

    Attributes:
        x: tip x during the pulse, m.
        y: tip y during the pulse, m.
        amplitude: emitted amplitude after DAC quantization, V.
        width: emitted width, a whole number of FPGA cycles, s.
        start: instrument time of the rising edge, s.
        cycles: emitted width in FPGA clock cycles.
        requested_amplitude: amplitude asked for, V.
        requested_width: width asked for, s.
    """

    x: float
    y: float
    amplitude: float
    width: float
    start: float
    cycles: int
    requested_amplitude: float
    requested_width: float

    #: SI unit of each dimensioned field (``cycles`` is a count): for session files.
    UNITS = {"x": "m", "y": "m", "amplitude": "V", "width": "s", "start": "s", "requested_amplitude": "V",
             "requested_width": "s"}

    @property
    def end(self) -> float:
        """Instrument time of the falling edge, s."""
        return self.start + self.width


@dataclass(frozen=True)
class InstrumentInfo:
    """Identity and capabilities of a connected instrument.

    Attributes:
        backend: backend kind ("twin", "serial", ...).
        url: the URL it was opened with.
        identity: instrument identity string.
        protocol_version: version of the contract / wire protocol.
        software_version: pfmtwin version (or firmware version).
        hardware: the hardware spec.
        limits: the safety limits in force.
        options: backend options in force (e.g. the twin's seed and film parameters).
        option_units: SI unit of each dimensioned option (e.g. the twin's ``field``: "m").
    """

    backend: str
    url: str
    identity: str
    protocol_version: str
    software_version: str
    hardware: HardwareSpec
    limits: SafetyLimits
    options: dict = field(default_factory=dict)
    option_units: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain-data copy."""
        return {
            "backend": self.backend,
            "url": self.url,
            "identity": self.identity,
            "protocol_version": self.protocol_version,
            "software_version": self.software_version,
            "hardware": self.hardware.to_dict(),
            "limits": self.limits.to_dict(),
            "options": dict(self.options),
            "option_units": dict(self.option_units),
        }


#: Called as each scan line arrives: (line index, line start time s, that line of each channel).
LineCallback = Callable[[int, float, dict[str, np.ndarray]], None]


@runtime_checkable
class Backend(Protocol):
    """What a backend implements. Arguments arrive validated against the safety limits."""

    def info(self) -> InstrumentInfo: ...
    def move_tip(self, x: float, y: float, speed: float) -> None: ...
    def scan(self, spec: ScanSpec, on_line: LineCallback | None = None) -> ScanResult: ...
    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord: ...
    def now(self) -> float: ...
    def close(self) -> None: ...


@runtime_checkable
class Microscope(Protocol):
    """The instrument as control code sees it (``control.connect(url)`` returns one)."""

    def info(self) -> InstrumentInfo: ...
    def move_tip(self, x: float, y: float, *, speed: float | None = None) -> None: ...
    def scan(self, spec: ScanSpec, *, on_line: LineCallback | None = None) -> ScanResult: ...
    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord: ...
    def now(self) -> float: ...
    def close(self) -> None: ...
    def __enter__(self) -> Microscope: ...
    def __exit__(self, *exc) -> None: ...
