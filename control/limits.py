"""Safety limits: every command is checked here before anything reaches a backend.

A check either returns the validated, normalized arguments or raises: ``InvalidArgumentError``
(a ``TypeError``) for wrong types, numbers too large for a float, NaN and inf; ``LimitError`` (a
``ValueError``) for values outside the limits, including a tip speed below 1 nm/s and a scan
longer than a day. Messages name the value, the limit and the fix.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from control.errors import InvalidArgumentError, LimitError
from control.hardware import DEFAULT_HARDWARE, HardwareSpec

#: Slowest tip motion the limits allow, m/s. 1 nm/s is about ten times the thermal drift of a
#: PFM scanner (the twin's day draws ~0.1 nm/s): slower motion is lost in the drift. At this speed a
#: move across the 10 um scanner's diagonal takes 3.9 h; a speed of 1e-30 m/s would take 1e22 s.
TIP_SPEED_MIN = 1e-9
#: Longest instrument time one command may take, s (1 day). No verb can be aborted, so a command
#: longer than this is a mistake (a line rate or speed off by orders of magnitude), not an
#: experiment; it would also push the instrument clock where float64 loses the 10 ns FPGA quantum.
DURATION_MAX = 86400.0


def shown(value: object) -> str:
    """``repr(value)`` for a message; a whole number too large for a float is shown by its length."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(int(value)) >= 2**1024:
        n = abs(int(value))
        digits = int((n.bit_length() - 1) * math.log10(2)) + 1
        digits += n >= 10**digits
        return f"(an int of {digits} digits)"
    try:
        return repr(value)
    except ValueError:  # an object whose repr refuses (e.g. a number too long to print)
        return f"(a {type(value).__name__} too large to print)"


def real(name: str, value: object, unit: str) -> float:
    """Return ``value`` as a finite float, or raise naming ``name``.

    Args:
        name: argument name, for the message.
        value: the user's value; ints and floats (numpy ones too) are accepted, bools are not.
        unit: SI unit, for the message.

    Raises:
        InvalidArgumentError: wrong type, too large for a float, NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(
            f"{name}={shown(value)} is a {type(value).__name__}; pass a finite number in {unit}"
        )
    try:
        out = float(value)
    except OverflowError:  # an int (or Fraction) beyond 1.8e308
        raise InvalidArgumentError(
            f"{name}={shown(value)} is too large for a float; pass a finite number in {unit}"
        ) from None
    if not math.isfinite(out):
        raise InvalidArgumentError(f"{name}={shown(value)} is not finite; pass a finite number in {unit}")
    return out


def integer(name: str, value: object) -> int:
    """Return ``value`` as an int, or raise naming ``name`` (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{name}={shown(value)} is a {type(value).__name__}; pass a whole number")
    return int(value)


def pair(name: str, value: object, convert, unit: str = "", labels: tuple[str, str] | None = None) -> tuple:
    """Return ``value`` as a tuple of two converted items, or raise naming ``name``.

    Args:
        name: argument name, for the message.
        value: a tuple, list or numpy array of shape (2,).
        convert: :func:`real` or :func:`integer`, applied to each item (numpy scalars become
            Python floats or ints).
        unit: SI unit of the items ("" for counts), for the message.
        labels: what the two items are, for the message; default ``{name}_x``, ``{name}_y``.

    Raises:
        InvalidArgumentError: not a pair, or an item of the wrong type.
    """
    low, high = labels or (f"{name}_x", f"{name}_y")
    expected = f"a pair ({low}, {high})" + (f" in {unit}" if unit else "")
    if isinstance(value, np.ndarray):
        if value.shape != (2,):
            raise InvalidArgumentError(f"{name}={shown(value)} has shape {value.shape}; pass {expected}")
        value = list(value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidArgumentError(f"{name}={shown(value)} must be {expected}")
    if convert is real:
        return tuple(real(f"{name}[{i}]", v, unit) for i, v in enumerate(value))
    return tuple(convert(f"{name}[{i}]", v) for i, v in enumerate(value))


@dataclass(frozen=True)
class SafetyLimits:
    """Limits a command must respect; never wider than the hardware.

    Values are checked and normalized on construction (numpy numbers and arrays become Python
    floats, ints and tuples), so limits of the wrong type are refused where they are made.

    Attributes:
        bias_max: largest pulse amplitude magnitude, V.
        pulse_width_min: shortest pulse, s.
        pulse_width_max: longest pulse, s.
        x_range: allowed tip x positions (low, high), m.
        y_range: allowed tip y positions (low, high), m.
        tip_speed_max: fastest tip motion, m/s.
        line_rate_range: allowed scan line rates (low, high), Hz.
        pixels_range: allowed points per line and lines per image (low, high).
        tip_speed_min: slowest tip motion, m/s; at least :data:`TIP_SPEED_MIN` (1 nm/s).
        duration_max: longest instrument time one command may take, s; at most
            :data:`DURATION_MAX` (1 day). Scans are checked against it; moves are bounded by it
            through ``tip_speed_min`` (checked in :meth:`check_within`).
    """

    bias_max: float
    pulse_width_min: float
    pulse_width_max: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    tip_speed_max: float
    line_rate_range: tuple[float, float]
    pixels_range: tuple[int, int]
    tip_speed_min: float = TIP_SPEED_MIN
    duration_max: float = DURATION_MAX

    #: SI unit of each limit ("" for counts): for messages and for the units written to session files.
    UNITS = {
        "bias_max": "V",
        "pulse_width_min": "s",
        "pulse_width_max": "s",
        "x_range": "m",
        "y_range": "m",
        "tip_speed_max": "m/s",
        "line_rate_range": "Hz",
        "pixels_range": "",
        "tip_speed_min": "m/s",
        "duration_max": "s",
    }

    def __post_init__(self) -> None:
        for f in fields(self):
            value, unit = getattr(self, f.name), self.UNITS[f.name]
            if f.name == "pixels_range":
                value = pair(f.name, value, integer, labels=("low", "high"))
            elif f.name.endswith("_range"):
                value = pair(f.name, value, real, unit, labels=("low", "high"))
            else:
                value = real(f.name, value, unit)
            object.__setattr__(self, f.name, value)

    @classmethod
    def _known(cls, keys, where: str) -> None:
        names = [f.name for f in fields(cls)]
        unknown = [k for k in keys if k not in names]
        if unknown:
            raise InvalidArgumentError(
                f"unknown safety limit(s) {', '.join(map(repr, unknown))} in {where}; accepted: {', '.join(names)}"
            )

    @classmethod
    def from_hardware(cls, hw: HardwareSpec = DEFAULT_HARDWARE, **tighter) -> SafetyLimits:
        """The widest limits ``hw`` allows, optionally tightened by keyword.

        Pass the connected instrument's hardware (``scope.info().hardware``) to tighten the limits
        of an instrument whose hardware differs from the default (a twin's scanner spans its film).

        Raises:
            InvalidArgumentError: ``hw`` is not a HardwareSpec, an unknown keyword, a value of the
                wrong type.
            LimitError: a limit wider than the hardware.
        """
        if not isinstance(hw, HardwareSpec):
            raise InvalidArgumentError(
                f"hw={shown(hw)} is a {type(hw).__name__}; pass a control.HardwareSpec (e.g. scope.info().hardware)"
            )
        cls._known(tighter, "SafetyLimits.from_hardware()")
        base = cls(
            bias_max=hw.bias_range,
            pulse_width_min=hw.pulse_width_min,
            pulse_width_max=hw.pulse_width_max,
            x_range=(0.0, hw.scan_range),
            y_range=(0.0, hw.scan_range),
            tip_speed_max=hw.tip_speed_max,
            line_rate_range=tuple(hw.line_rate_range),
            pixels_range=tuple(hw.pixels_range),
        )
        limits = cls(**{**asdict(base), **tighter}) if tighter else base
        limits.check_within(hw)
        return limits

    def tightened(self, **changes) -> SafetyLimits:
        """A copy with some limits tightened, never widened (a scenario's or an experiment's own).

        A scalar maximum may only go down (``bias_max``, ``pulse_width_max``, ``tip_speed_max``,
        ``duration_max``), a minimum only up, and a range only shrink inside this one.

        Raises:
            InvalidArgumentError: an unknown limit or a value of the wrong type.
            LimitError: a value that would widen a limit; the message names the limit in force.
        """
        self._known(changes, "SafetyLimits.tightened()")
        new = replace(self, **changes)
        wider = []
        for name in changes:
            old, value = getattr(self, name), getattr(new, name)
            if name.endswith("_range"):
                if value[0] < old[0] or value[1] > old[1]:
                    wider.append(f"{name}={shown(value)} leaves {shown(old)}")
            elif name in ("pulse_width_min", "tip_speed_min"):
                if value < old:
                    wider.append(f"{name}={shown(value)} is below {shown(old)}")
            elif value > old:
                wider.append(f"{name}={shown(value)} is above {shown(old)}")
        if wider:
            raise LimitError(
                "limits may only be tightened: " + "; ".join(wider)
                + " (the instrument's limits in force); give values inside them"
            )
        return new

    def check_within(self, hw: HardwareSpec) -> None:
        """Raise ``LimitError`` if any limit is wider than the hardware can do (or than is safe)."""
        problems = []
        if not 0 < self.bias_max <= hw.bias_range:
            problems.append(f"bias_max={self.bias_max!r} V must be in (0, {hw.bias_range}] V")
        if not hw.pulse_width_min <= self.pulse_width_min <= self.pulse_width_max <= hw.pulse_width_max:
            problems.append(
                f"pulse widths [{self.pulse_width_min!r}, {self.pulse_width_max!r}] s must lie in "
                f"[{hw.pulse_width_min}, {hw.pulse_width_max}] s"
            )
        for name in ("x_range", "y_range"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo < hi <= hw.scan_range:
                problems.append(f"{name}=({lo!r}, {hi!r}) m must lie in [0, {hw.scan_range}] m")
        if not TIP_SPEED_MIN <= self.tip_speed_min <= self.tip_speed_max <= hw.tip_speed_max:
            problems.append(
                f"tip speeds [{self.tip_speed_min!r}, {self.tip_speed_max!r}] m/s must lie in "
                f"[{TIP_SPEED_MIN!r}, {hw.tip_speed_max}] m/s"
            )
        if not 0 < self.duration_max <= DURATION_MAX:
            problems.append(f"duration_max={self.duration_max!r} s must be in (0, {DURATION_MAX!r}] s")
        else:
            # Moves are not timed before they run (the guard does not know where the tip is), so
            # the slowest move across the whole scanner must fit in duration_max.
            diagonal = math.hypot(hw.scan_range, hw.scan_range)
            longest = diagonal / self.tip_speed_min if self.tip_speed_min > 0 else math.inf
            if longest > self.duration_max:
                problems.append(
                    f"a move across the {hw.scan_range!r} m scanner at tip_speed_min={self.tip_speed_min!r} m/s "
                    f"takes {longest:.1f} s, longer than duration_max={self.duration_max!r} s; raise "
                    f"tip_speed_min to at least {diagonal / self.duration_max:.3g} m/s or duration_max"
                )
            if self.pulse_width_max > self.duration_max:
                problems.append(
                    f"pulse_width_max={self.pulse_width_max!r} s is longer than duration_max={self.duration_max!r} s"
                )
        lo, hi = self.line_rate_range
        if not hw.line_rate_range[0] <= lo <= hi <= hw.line_rate_range[1]:
            problems.append(f"line_rate_range=({lo!r}, {hi!r}) Hz must lie in {hw.line_rate_range} Hz")
        lo, hi = self.pixels_range
        if not hw.pixels_range[0] <= lo <= hi <= hw.pixels_range[1]:
            problems.append(f"pixels_range=({shown(lo)}, {shown(hi)}) must lie in {hw.pixels_range}")
        if problems:
            raise LimitError(
                "safety limits wider than the hardware: " + "; ".join(problems)
                + "; build them from the instrument's hardware: SafetyLimits.from_hardware(info().hardware, ...)"
            )

    def to_dict(self) -> dict:
        """Plain-data copy."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> SafetyLimits:
        """Inverse of :meth:`to_dict`, also after a JSON round trip, and of a dict written before
        ``tip_speed_min`` and ``duration_max`` existed (they take their defaults)."""
        cls._known(d, "SafetyLimits.from_dict()")
        return cls(**d)

    # -- checks -----------------------------------------------------------------------------

    def check_position(self, x: object, y: object, what: str = "tip position") -> tuple[float, float]:
        """Validate a lateral position (m) and return it as floats."""
        xf, yf = real("x", x, "m"), real("y", y, "m")
        for name, v, (lo, hi) in (("x", xf, self.x_range), ("y", yf, self.y_range)):
            if not lo <= v <= hi:
                raise LimitError(
                    f"{what}: {name}={v!r} m is outside the scanner range [{lo!r}, {hi!r}] m; "
                    f"choose {name} within that range"
                )
        return xf, yf

    def check_speed(self, speed: object | None) -> float:
        """Validate a tip speed (m/s); ``None`` means the fastest allowed."""
        if speed is None:
            return self.tip_speed_max
        s = real("speed", speed, "m/s")
        if not self.tip_speed_min <= s <= self.tip_speed_max:
            raise LimitError(
                f"speed={s!r} m/s is outside [{self.tip_speed_min!r}, {self.tip_speed_max!r}] m/s; "
                f"pass a speed in that range or None for the maximum"
            )
        return s

    def check_move(self, x: object, y: object, speed: object | None) -> tuple[float, float, float]:
        """A tip move as the guard and every server check it: (x, y, speed) in m, m/s."""
        xf, yf = self.check_position(x, y)
        return xf, yf, self.check_speed(speed)

    def check_pulse_at(self, x: object, y: object, amplitude: object, width: object
                       ) -> tuple[float, float, float, float]:
        """A pulse as the guard and every server check it: (x, y, amplitude, width) in m, V, s."""
        xf, yf = self.check_position(x, y, what="pulse position")
        return (xf, yf, *self.check_pulse(amplitude, width))

    def check_pulse(self, amplitude: object, width: object) -> tuple[float, float]:
        """Validate a bias pulse (V, s) and return it as floats."""
        a = real("amplitude", amplitude, "V")
        w = real("width", width, "s")
        if abs(a) > self.bias_max:
            raise LimitError(
                f"amplitude={a!r} V exceeds the bias limit of ±{self.bias_max!r} V; "
                f"use |amplitude| <= {self.bias_max!r} V"
            )
        if not self.pulse_width_min <= w <= self.pulse_width_max:
            raise LimitError(
                f"width={w!r} s is outside the pulse width range "
                f"[{self.pulse_width_min!r}, {self.pulse_width_max!r}] s; choose a width in that range"
            )
        return a, w

    def check_scan(self, spec) -> None:
        """Validate a :class:`control.ScanSpec` against the limits, its time against ``duration_max``
        (its types are checked on creation)."""
        lo, hi = self.line_rate_range
        if not lo <= spec.line_rate <= hi:
            raise LimitError(
                f"line_rate={spec.line_rate!r} Hz is outside [{lo!r}, {hi!r}] Hz; choose a line rate in that range"
            )
        self.check_raster(spec)
        if spec.duration > self.duration_max:
            retrace = ", with retrace" if spec.retrace else ""
            raise LimitError(
                f"the scan takes {spec.duration:.1f} s of instrument time ({spec.pixels[1]} lines at "
                f"{spec.line_rate!r} Hz{retrace}); a command may take at most {self.duration_max!r} s; "
                f"raise line_rate or scan fewer lines"
            )

    def check_raster(self, spec) -> None:
        """The pixel counts and the extent of a :class:`control.ScanSpec` (not its timing: a
        band-excitation image takes the band's time per pixel)."""
        plo, phi = self.pixels_range
        for name, n in (("points per line", spec.pixels[0]), ("lines", spec.pixels[1])):
            if not plo <= n <= phi:
                raise LimitError(
                    f"pixels: {name}={shown(n)} is outside [{plo!r}, {phi!r}]; choose a pixel count in that range"
                )
        (cx, cy), (w, h) = spec.center, spec.size
        for name, c, half, (rlo, rhi) in (
            ("x", cx, w / 2, self.x_range),
            ("y", cy, h / 2, self.y_range),
        ):
            if c - half < rlo or c + half > rhi:
                raise LimitError(
                    f"scan {name} extent [{c - half!r}, {c + half!r}] m leaves the scanner range "
                    f"[{rlo!r}, {rhi!r}] m; move the center or shrink the size"
                )
