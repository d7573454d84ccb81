"""Safety limits: every command is checked here before anything reaches a backend.

A check either returns the validated, normalized arguments or raises: ``InvalidArgumentError``
(a ``TypeError``) for wrong types, NaN and inf; ``LimitError`` (a ``ValueError``) for values
outside the limits. Messages name the value, the limit and the fix.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

from control.errors import InvalidArgumentError, LimitError
from control.hardware import DEFAULT_HARDWARE, HardwareSpec


def real(name: str, value: object, unit: str) -> float:
    """Return ``value`` as a finite float, or raise naming ``name``.

    Args:
        name: argument name, for the message.
        value: the user's value; ints and floats (numpy ones too) are accepted, bools are not.
        unit: SI unit, for the message.

    Raises:
        InvalidArgumentError: wrong type, NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(
            f"{name}={value!r} is a {type(value).__name__}; pass a finite number in {unit}"
        )
    out = float(value)
    if not math.isfinite(out):
        raise InvalidArgumentError(f"{name}={value!r} is not finite; pass a finite number in {unit}")
    return out


def integer(name: str, value: object) -> int:
    """Return ``value`` as an int, or raise naming ``name`` (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{name}={value!r} is a {type(value).__name__}; pass a whole number")
    return int(value)


@dataclass(frozen=True)
class SafetyLimits:
    """Limits a command must respect; never wider than the hardware.

    Attributes:
        bias_max: largest pulse amplitude magnitude, V.
        pulse_width_min: shortest pulse, s.
        pulse_width_max: longest pulse, s.
        x_range: allowed tip x positions (low, high), m.
        y_range: allowed tip y positions (low, high), m.
        tip_speed_max: fastest tip motion, m/s.
        line_rate_range: allowed scan line rates (low, high), Hz.
        pixels_range: allowed points per line and lines per image (low, high).
    """

    bias_max: float
    pulse_width_min: float
    pulse_width_max: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    tip_speed_max: float
    line_rate_range: tuple[float, float]
    pixels_range: tuple[int, int]

    @classmethod
    def from_hardware(cls, hw: HardwareSpec = DEFAULT_HARDWARE, **tighter) -> SafetyLimits:
        """The widest limits ``hw`` allows, optionally tightened by keyword."""
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

    def check_within(self, hw: HardwareSpec) -> None:
        """Raise ``LimitError`` if any limit is wider than the hardware can do."""
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
        if not 0 < self.tip_speed_max <= hw.tip_speed_max:
            problems.append(f"tip_speed_max={self.tip_speed_max!r} m/s must be in (0, {hw.tip_speed_max}] m/s")
        lo, hi = self.line_rate_range
        if not hw.line_rate_range[0] <= lo <= hi <= hw.line_rate_range[1]:
            problems.append(f"line_rate_range=({lo!r}, {hi!r}) Hz must lie in {hw.line_rate_range} Hz")
        lo, hi = self.pixels_range
        if not hw.pixels_range[0] <= lo <= hi <= hw.pixels_range[1]:
            problems.append(f"pixels_range=({lo!r}, {hi!r}) must lie in {hw.pixels_range}")
        if problems:
            raise LimitError("safety limits wider than the hardware: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """Plain-data copy."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> SafetyLimits:
        """Inverse of :meth:`to_dict`, also after a JSON round trip (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

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
        if not 0 < s <= self.tip_speed_max:
            raise LimitError(
                f"speed={s!r} m/s is outside (0, {self.tip_speed_max!r}] m/s; "
                f"pass a positive speed up to {self.tip_speed_max!r} m/s or None for the maximum"
            )
        return s

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
        """Validate a :class:`control.ScanSpec` against the limits (its types are checked on creation)."""
        lo, hi = self.line_rate_range
        if not lo <= spec.line_rate <= hi:
            raise LimitError(
                f"line_rate={spec.line_rate!r} Hz is outside [{lo!r}, {hi!r}] Hz; choose a line rate in that range"
            )
        plo, phi = self.pixels_range
        for name, n in (("points per line", spec.pixels[0]), ("lines", spec.pixels[1])):
            if not plo <= n <= phi:
                raise LimitError(
                    f"pixels: {name}={n!r} is outside [{plo!r}, {phi!r}]; choose a pixel count in that range"
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
