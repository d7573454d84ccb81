"""``pfmtwin/DomainWall-v0``: shape a ferroelectric domain wall with tip bias pulses.

One episode: scan a window, locate the wall that crosses it, then each step applies one bias
pulse next to the wall, rescans and locates the wall again. The agent chooses where along the
wall the pulse goes, how far off the wall, its voltage and its width; it is rewarded for
bending the wall (``goal="curvature"``, the goal of the ORNL talk this project started from:
regions of high curvature at a domain wall) or for bringing it to a target shape
(``goal="shape"``).

The environment reaches the instrument only through ``control.connect(url)``, so the same
policy runs on the twin, the emulator and the real microscope. It uses these verbs and no
others (what a ``surrogate://`` backend has to implement):

* ``info()``: the safety limits and, if the backend reports it, ``options["field"]`` (the
  film side, m) for the default window;
* ``scan(ScanSpec)``: square raster scans without retrace; only ``phase``, ``x``, ``y`` and
  ``spec`` of the result are read;
* ``apply_pulse(x, y, amplitude, width)``;
* ``now()``: instrument time, reported in ``info``;
* ``close()``.

Every pulse and scan is built inside the safety limits (``info().limits``) by construction, so
the guard never has to refuse one.

Resets do not restore the sample: like a real film, it keeps the domains written in earlier
episodes. A reset rescans, and with ``recenter`` moves the window across the wall so that the
new episode starts with the wall in the middle (following it if it was pushed out). Only a
reset with a seed (``reopen="seeded"``, the default) or every reset (``reopen="always"``)
reopens the microscope, and, unless ``reopen="never"``, a reset that finds no usable wall on
the sample in use: a simulated sample comes back fresh, so seeded runs are reproducible; on a
real instrument reopening only reconnects (and a reset without a wall raises ``NoWallError``).
See docs/decisions/0004-domain-wall-env.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces

import control
from control.analysis import NoWallError, Wall, trace_wall
from control.errors import InvalidArgumentError, LimitError, PfmTwinError
from control.limits import SafetyLimits, integer, real
from control.urls import with_options
from learning.wall import CURVATURE_UNIT, curvature

__all__ = [
    "DomainWallConfig",
    "DomainWallEnv",
    "EnvConfigError",
    "EpisodeError",
    "Pulse",
    "PulseMap",
    "Window",
]

GOALS = ("curvature", "shape")
POLARITIES = ("both", "positive", "negative")
REOPEN = ("seeded", "always", "never")
#: Largest default window side, m: 32 points over 0.5 um resolve domains written by one pulse.
DEFAULT_SIZE = 0.5e-6
#: Default window side as a fraction of the film: keeps the film's periodic second wall out.
DEFAULT_FILL = 0.8
#: The curvature measure is clipped to [0, MAX_CURVATURE] (units of 1/(100 nm)).
MAX_CURVATURE = 10.0
#: A reset looks for a wall that left the window by moving the window at most this many half-windows.
SEARCH_MOVES = 4


class EnvConfigError(PfmTwinError, ValueError):
    """A keyword argument of the environment is invalid; nothing was sent to the instrument."""


class EpisodeError(PfmTwinError, RuntimeError):
    """``step()`` was called without a running episode (before ``reset()`` or after it ended)."""


def _pair(name: str, value: object, unit: str) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise InvalidArgumentError(f"{name}={value!r} must be a pair [low, high] in {unit}")
    low, high = (real(f"{name}[{i}]", v, unit) for i, v in enumerate(value))
    if low > high:
        raise EnvConfigError(f"{name}={value!r}: low {low!r} {unit} exceeds high {high!r} {unit}; swap them")
    return low, high


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise EnvConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return str(value)


def _at_least(name: str, value: object, low: int) -> int:
    n = integer(name, value)
    if n < low:
        raise EnvConfigError(f"{name}={n!r} must be at least {low}")
    return n


def _draws(name: str, value: object) -> tuple[int, ...]:
    """A non-empty list of integers >= 0 (film seeds or day numbers)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise InvalidArgumentError(f"{name}={value!r} must be a non-empty list of integers >= 0, or None")
    out = tuple(integer(f"{name}[{i}]", v) for i, v in enumerate(value))
    if min(out) < 0:
        raise EnvConfigError(f"{name}={value!r}: every entry must be >= 0 (a film seed or a day number)")
    return out


@dataclass(frozen=True)
class DomainWallConfig:
    """Keyword arguments of :class:`DomainWallEnv`; all JSON-serializable (pairs as lists).

    Attributes:
        microscope: backend URL passed to ``control.connect``, e.g. ``"twin://?seed=1"``.
        center: (x, y) of the scan window centre, m. Default: the centre of the film
            (``info().options["field"]``) or, without it, of the scanner range.
        size: side of the square scan window, m. Default: 0.8 of the film side (or of the
            scanner range), at most 0.5 um.
        points: points per line and lines per scan.
        line_rate: scan line rate, Hz. Default: the fastest the limits allow.
        profile_length: length of the observation vector (the wall resampled along y).
        max_steps: pulses per episode before it is truncated.
        goal: "curvature" (reward: increase of the wall's mean |curvature| in the target
            window) or "shape" (reward: decrease of the RMS distance to ``target_profile``).
        target_window: (low, high) part of the window along the wall (y) where the goal is
            scored, as fractions of the window side in [0, 1].
        target_profile: goal "shape" only: the wanted wall x offset from the window centre, m,
            at evenly spaced y across the target window (one value: a straight wall).
            Default: [0.0], a straight wall through the centre.
        voltage: (low, high) pulse amplitude magnitude, V, cut to the bias limit.
        polarity: "both" (the sign of the voltage action picks the pulse polarity),
            "positive" or "negative".
        width: (low, high) pulse width, s, mapped logarithmically, cut to the limits.
        offset: (low, high) x offset of the pulse from the wall at its y, m.
        smoothing: standard deviation of the Gaussian smoothing of the wall before its
            curvature is taken, m (features below the tip size are noise).
        lost_penalty: reward (negated) of a step that loses the wall. Keep it on the scale of a
            step's reward (about 0.01-0.3): at 1.0 it drowned the bending rewards and SVPG
            learned nothing (docs/decisions/0004-domain-wall-env.md).
        recenter: at each reset, move the window in x so that it is centred on the wall.
        reopen: when a reset reopens the microscope: "seeded" (a reset with a seed), "always",
            or "never" (only if closed). Except with "never", a reset that finds no usable
            wall on the sample in use also reopens it once before giving up.
        image: also observe the scan as a small image (Dict observation).
        samples: films to draw from at each seeded reset (the backend URL's ``seed=`` option),
            so that training sees several samples; None: the URL's own. ``reset(options=
            {"sample": n})`` picks one explicitly (a held-out film for validation).
        days: instrument days to draw from at each seeded reset (the URL's ``day=`` option);
            None: the URL's own. ``reset(options={"day": d})`` picks one explicitly.
    """

    microscope: str
    center: tuple[float, float] | None = None
    size: float | None = None
    points: int = 32
    line_rate: float | None = None
    profile_length: int = 32
    max_steps: int = 20
    goal: str = "curvature"
    target_window: tuple[float, float] = (0.25, 0.75)
    target_profile: tuple[float, ...] | None = None
    voltage: tuple[float, float] = (4.0, 10.0)
    polarity: str = "both"
    width: tuple[float, float] = (1e-5, 1e-2)
    offset: tuple[float, float] = (-100e-9, 100e-9)
    smoothing: float = 20e-9
    lost_penalty: float = 0.05
    recenter: bool = True
    reopen: str = "seeded"
    image: bool = False
    samples: tuple[int, ...] | None = None
    days: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.microscope, str) or not self.microscope:
            raise InvalidArgumentError(
                f"microscope={self.microscope!r} must be a backend URL string, e.g. 'twin://?seed=1'"
            )
        if self.center is not None:
            if isinstance(self.center, (str, bytes)) or not isinstance(self.center, Sequence) or len(self.center) != 2:
                raise InvalidArgumentError(f"center={self.center!r} must be a pair [x, y] in m, or None")
            put("center", tuple(real(f"center[{i}]", v, "m") for i, v in enumerate(self.center)))
        if self.size is not None:
            put("size", real("size", self.size, "m"))
            if self.size <= 0:
                raise EnvConfigError(f"size={self.size!r} m must be positive")
        put("points", _at_least("points", self.points, 8))
        if self.line_rate is not None:
            put("line_rate", real("line_rate", self.line_rate, "Hz"))
        put("profile_length", _at_least("profile_length", self.profile_length, 2))
        put("max_steps", _at_least("max_steps", self.max_steps, 1))
        _choice("goal", self.goal, GOALS)
        lo, hi = _pair("target_window", self.target_window, "window fractions")
        if not 0.0 <= lo < hi <= 1.0:
            raise EnvConfigError(
                f"target_window={self.target_window!r} must satisfy 0 <= low < high <= 1 (fractions of the window)"
            )
        put("target_window", (lo, hi))
        if self.target_profile is not None:
            if self.goal != "shape":
                raise EnvConfigError(
                    f"target_profile={self.target_profile!r} is only used with goal='shape' (goal={self.goal!r}); "
                    "drop it or set goal='shape'"
                )
            tp = self.target_profile
            if isinstance(tp, (str, bytes)) or not isinstance(tp, Sequence) or len(tp) == 0:
                raise InvalidArgumentError(f"target_profile={tp!r} must be a non-empty list of x offsets in m")
            put("target_profile", tuple(real(f"target_profile[{i}]", v, "m") for i, v in enumerate(tp)))
        elif self.goal == "shape":
            put("target_profile", (0.0,))
        vlo, vhi = _pair("voltage", self.voltage, "V")
        if vlo < 0:
            raise EnvConfigError(
                f"voltage={self.voltage!r}: give magnitudes (>= 0 V); the sign comes from polarity={self.polarity!r}"
            )
        if vhi == 0:
            raise EnvConfigError(f"voltage={self.voltage!r}: a 0 V pulse writes nothing; give a high end above 0 V")
        put("voltage", (vlo, vhi))
        _choice("polarity", self.polarity, POLARITIES)
        wlo, whi = _pair("width", self.width, "s")
        if wlo <= 0:
            raise EnvConfigError(f"width={self.width!r}: pulse widths must be positive (s)")
        put("width", (wlo, whi))
        put("offset", _pair("offset", self.offset, "m"))
        put("smoothing", real("smoothing", self.smoothing, "m"))
        if self.smoothing < 0:
            raise EnvConfigError(f"smoothing={self.smoothing!r} m must be >= 0 (0: none)")
        put("lost_penalty", real("lost_penalty", self.lost_penalty, "reward units"))
        if self.lost_penalty < 0:
            raise EnvConfigError(f"lost_penalty={self.lost_penalty!r} must be >= 0 (it is subtracted)")
        for name in ("recenter", "image"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgumentError(f"{name}={getattr(self, name)!r} must be true or false")
        _choice("reopen", self.reopen, REOPEN)
        for name in ("samples", "days"):
            value = getattr(self, name)
            if value is not None:
                put(name, _draws(name, value))


class Pulse(NamedTuple):
    """A bias pulse command: at (x, y) m, ``amplitude`` V for ``width`` s."""

    x: float
    y: float
    amplitude: float
    width: float


@dataclass(frozen=True)
class Window:
    """The square scan window, inside the scanner limits.

    Attributes:
        center: (x, y) of its centre, m.
        size: its side, m.
        points: points per line and lines.
        line_rate: Hz.
    """

    center: tuple[float, float]
    size: float
    points: int
    line_rate: float

    def spec(self) -> control.ScanSpec:
        """The raster scan of this window."""
        return control.ScanSpec(
            center=self.center, size=(self.size, self.size), pixels=(self.points, self.points), line_rate=self.line_rate
        )

    @property
    def lines(self) -> tuple[float, float]:
        """y of the first and of the last scan line, m."""
        half = self.size / 2 * (1 - 1 / self.points)
        return self.center[1] - half, self.center[1] + half

    def bounds(self, limits: SafetyLimits) -> tuple[tuple[float, float], tuple[float, float]]:
        """(x range, y range) of the window cut to the scanner limits, m: where pulses may go."""
        (cx, cy), h = self.center, self.size / 2
        return (
            (max(cx - h, limits.x_range[0]), min(cx + h, limits.x_range[1])),
            (max(cy - h, limits.y_range[0]), min(cy + h, limits.y_range[1])),
        )

    def moved_to(self, x: float, limits: SafetyLimits) -> Window:
        """This window with its centre at ``x`` (m), held inside the scanner's x range."""
        lo, hi = limits.x_range
        h = self.size / 2
        cx = min(max(x, lo + h), hi - h)
        # Rounding of (lo + h) - h may leave the edge an ulp outside the range: nudge inwards.
        while cx - h < lo:
            cx = math.nextafter(cx, math.inf)
        while cx + h > hi:
            cx = math.nextafter(cx, -math.inf)
        return dataclasses.replace(self, center=(cx, self.center[1]))


@dataclass(frozen=True)
class PulseMap:
    """The affine map from a normalized action in [-1, 1]^4 to a pulse inside the safety limits.

    Action components (each clipped to [-1, 1] first):
        0: position along the wall: y from the first to the last scan line.
        1: offset from the wall: x = wall x at that y + offset in ``offset``.
        2: voltage: ``polarity="both"``: the sign picks the polarity and the magnitude maps
           |a| in [0, 1] onto ``voltage``; otherwise a in [-1, 1] maps onto ``voltage`` with
           the fixed sign.
        3: log10 of the width, mapped onto log10 of ``width``.

    Attributes:
        offset: (low, high) offset from the wall, m.
        voltage: (low, high) amplitude magnitude, V, already within the bias limit.
        width: (low, high) width, s, already within the pulse-width limits.
        polarity: "both", "positive" or "negative".
    """

    offset: tuple[float, float]
    voltage: tuple[float, float]
    width: tuple[float, float]
    polarity: str

    @classmethod
    def within(cls, config: DomainWallConfig, limits: SafetyLimits) -> PulseMap:
        """The map of ``config`` with its voltage and width ranges cut to ``limits``.

        Raises:
            LimitError: a range lies wholly outside the limits.
        """
        vlo, vhi = config.voltage
        if vlo > limits.bias_max:
            raise LimitError(
                f"voltage={list(config.voltage)!r} V lies above the bias limit of {limits.bias_max!r} V; "
                f"choose magnitudes up to {limits.bias_max!r} V"
            )
        wlo, whi = config.width
        if wlo > limits.pulse_width_max or whi < limits.pulse_width_min:
            raise LimitError(
                f"width={list(config.width)!r} s lies outside the pulse-width limits "
                f"[{limits.pulse_width_min!r}, {limits.pulse_width_max!r}] s; choose widths within them"
            )
        return cls(
            offset=config.offset,
            voltage=(vlo, min(vhi, limits.bias_max)),
            width=(max(wlo, limits.pulse_width_min), min(whi, limits.pulse_width_max)),
            polarity=config.polarity,
        )

    def __call__(self, action: np.ndarray, window: Window, wall: Wall, limits: SafetyLimits) -> Pulse:
        """The pulse for ``action`` next to ``wall`` in ``window``; always inside ``limits``.

        Raises:
            InvalidArgumentError: the action is not 4 finite numbers.
        """
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (4,) or not np.all(np.isfinite(a)):
            raise InvalidArgumentError(f"action={action!r} must be 4 finite numbers in [-1, 1]")
        a = np.clip(a, -1.0, 1.0)
        u = (a + 1.0) / 2.0
        (xlo, xhi), (ylo, yhi) = window.bounds(limits)
        first, last = window.lines
        y = min(max(first + u[0] * (last - first), ylo), yhi)
        x = wall.at(y) + self.offset[0] + u[1] * (self.offset[1] - self.offset[0])
        x = min(max(x, xlo), xhi)
        vlo, vhi = self.voltage
        if self.polarity == "both":
            amplitude = math.copysign(min(vlo + abs(a[2]) * (vhi - vlo), vhi), 1.0 if a[2] >= 0 else -1.0)
        else:
            amplitude = min(vlo + u[2] * (vhi - vlo), vhi) * (1.0 if self.polarity == "positive" else -1.0)
        lwlo, lwhi = math.log10(self.width[0]), math.log10(self.width[1])
        width = min(max(10.0 ** (lwlo + u[3] * (lwhi - lwlo)), self.width[0]), self.width[1])
        return Pulse(float(x), float(y), float(amplitude), float(width))


class DomainWallEnv(gymnasium.Env):
    """Bend (or shape) a ferroelectric domain wall with tip bias pulses, on any backend.

    Make it with ``gymnasium.make("pfmtwin/DomainWall-v0", microscope=URL, **kwargs)``; the
    keyword arguments are the fields of :class:`DomainWallConfig`.

    Spaces:
        action: ``Box(-1, 1, (4,), float32)``: [position along the wall, offset from it,
            voltage, log10 width], mapped by :class:`PulseMap`.
        observation: ``Box(-1, 1, (profile_length,), float32)``: the wall x at evenly spaced y
            from the first to the last scan line, relative to the window centre, in units of
            half the window side (-1: left edge, +1: right edge). With ``image=True`` a Dict
            of that ("profile") and "image": ``Box(-1, 1, (points, points), float32)``, the
            polarization state per pixel (+1: the domain left of the wall).

    Reward (dimensionless, per step):
        "curvature": C(after) - C(before), C = mean |curvature| of the smoothed wall over the
        target window in units of 1/(100 nm) (1.0: bent at a 100 nm radius), clipped to
        [0, 10], so the reward lies in [-10, 10]. "shape": E(before) - E(after), E = RMS
        distance of the wall from the target over the target window in units of half the
        window side, in [0, 2], so the reward lies in [-2, 2]. A step that loses the wall
        (it leaves the window, or no wall crosses it any more) earns ``-lost_penalty`` and
        terminates the episode; after ``max_steps`` pulses it is truncated.

    Attributes:
        config: the validated keyword arguments.
        limits: the safety limits of the connected microscope (``info().limits``).
        pulse_map: the action-to-pulse map, its ranges cut to ``limits``.

    Raises:
        EnvConfigError, InvalidArgumentError, LimitError: a bad keyword argument (value,
            limit and fix in the message); nothing is sent to the instrument.
        UrlError, TransportError: from ``control.connect``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, microscope: str, render_mode: str | None = None,
                 connect: Callable[[str], control.Microscope] | None = None, **kwargs: Any) -> None:
        accepted = [f.name for f in dataclasses.fields(DomainWallConfig)]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise EnvConfigError(f"unknown keyword argument(s) {unknown!r}; accepted: {', '.join(accepted)}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise EnvConfigError(f"render_mode={render_mode!r} is not one of {self.metadata['render_modes']!r} or None")
        self.config = DomainWallConfig(microscope=microscope, **kwargs)
        self.render_mode = render_mode
        if connect is not None and not callable(connect):
            raise InvalidArgumentError(f"connect={connect!r} must be a callable URL -> microscope, or None")
        # Where a microscope comes from: control.connect, or the caller's (a scenario records the
        # session by wrapping it). Not part of the config: it is not plain data.
        self._connect = connect if connect is not None else control.connect
        self._sample: int | None = None
        self._day: int | None = None
        c = self.config
        profile = spaces.Box(-1.0, 1.0, shape=(c.profile_length,), dtype=np.float32)
        if c.image:
            self.observation_space = spaces.Dict(
                {"profile": profile, "image": spaces.Box(-1.0, 1.0, shape=(c.points, c.points), dtype=np.float32)}
            )
        else:
            self.observation_space = profile
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self._scope: control.Microscope | None = None
        self._fresh = False
        self._wall: Wall | None = None
        self._curvatures: list[tuple[Wall, float]] = []
        self._heading = 0.0
        self._steps = 0
        self._running = False
        self._open()

    # -- setup -------------------------------------------------------------------------------

    def _open(self) -> None:
        """Connect to the microscope and resolve the window and pulse map against its limits."""
        scope = self._connect(self.url)
        try:
            info = scope.info()
            self.limits = info.limits
            self._window = self._resolve_window(info)
            self.pulse_map = PulseMap.within(self.config, self.limits)
            self._check_targets()
        except BaseException:
            scope.close()
            raise
        self._scope = scope
        self._fresh = True
        self._wall = None
        self._last_scan: control.ScanResult | None = None
        self._heading = 0.0

    def _resolve_window(self, info: control.InstrumentInfo) -> Window:
        c, limits = self.config, info.limits
        (xlo, xhi), (ylo, yhi) = limits.x_range, limits.y_range
        field = info.options.get("field") if isinstance(info.options, dict) else None
        if isinstance(field, (int, float)) and not isinstance(field, bool) and math.isfinite(field) and field > 0:
            center, extent = (field / 2, field / 2), float(field)
        else:
            center, extent = ((xlo + xhi) / 2, (ylo + yhi) / 2), min(xhi - xlo, yhi - ylo)
        size = c.size if c.size is not None else min(DEFAULT_FILL * extent, DEFAULT_SIZE)
        center = c.center if c.center is not None else center
        line_rate = c.line_rate if c.line_rate is not None else limits.line_rate_range[1]
        window = Window(center=center, size=size, points=c.points, line_rate=line_rate)
        limits.check_scan(window.spec())  # LimitError naming the value, the range and the fix
        return window

    def _check_targets(self) -> None:
        c = self.config
        first, last = self._window.lines
        rel = self._relative(np.linspace(first, last, c.points))
        if np.count_nonzero((rel >= c.target_window[0]) & (rel <= c.target_window[1])) < 3:
            raise EnvConfigError(
                f"target_window={list(c.target_window)!r} covers fewer than 3 of the {c.points} scan lines; "
                "widen it or raise points"
            )
        if c.target_profile is not None:
            half = self._window.size / 2
            worst = max(abs(v) for v in c.target_profile)
            if worst > half:
                raise EnvConfigError(
                    f"target_profile reaches {worst!r} m from the window centre, beyond half the window side "
                    f"({half!r} m); keep offsets within +-{half!r} m or enlarge size"
                )

    def _relative(self, y: np.ndarray) -> np.ndarray:
        """Position of ``y`` (m) along the window as a fraction of its side, 0 at the bottom edge."""
        return (y - (self._window.center[1] - self._window.size / 2)) / self._window.size

    # -- measures ----------------------------------------------------------------------------

    def _target_lines(self, wall: Wall) -> np.ndarray:
        lo, hi = self.config.target_window
        rel = self._relative(wall.y)
        return (rel >= lo) & (rel <= hi)

    def curvature_measure(self, wall: Wall) -> float:
        """Mean |curvature| of the smoothed wall over the target window, 1/(100 nm), in [0, 10]."""
        kappa = curvature(wall.y, wall.x, self.config.smoothing)
        value = float(np.mean(np.abs(kappa[self._target_lines(wall)]))) * CURVATURE_UNIT
        return min(value, MAX_CURVATURE)

    def _curvature(self, wall: Wall) -> float:
        """:meth:`curvature_measure`, computed once per wall (a step scores the last two and reports one)."""
        for seen, value in self._curvatures:
            if seen is wall:
                return value
        value = self.curvature_measure(wall)
        self._curvatures = [(wall, value), *self._curvatures[:1]]
        return value

    def shape_error(self, wall: Wall) -> float:
        """RMS distance of the wall from the target profile over the target window, in half-windows, in [0, 2]."""
        c = self.config
        target = c.target_profile if c.target_profile is not None else (0.0,)
        mask = self._target_lines(wall)
        rel = self._relative(wall.y[mask])
        wanted = np.interp(rel, np.linspace(*c.target_window, len(target)), target) if len(target) > 1 else target[0]
        offset = wall.x[mask] - self._window.center[0]
        return min(float(np.sqrt(np.mean((offset - wanted) ** 2))) / (self._window.size / 2), 2.0)

    # -- observation -------------------------------------------------------------------------

    def _observation(self, wall: Wall) -> np.ndarray | dict[str, np.ndarray]:
        c, w = self.config, self._window
        y = np.linspace(wall.y[0], wall.y[-1], c.profile_length)
        if wall.crossing:
            profile = (np.interp(y, wall.y, wall.x) - w.center[0]) / (w.size / 2)
        else:
            profile = np.full(c.profile_length, 1.0 if self._heading >= 0 else -1.0)
        profile = np.clip(profile, -1.0, 1.0).astype(np.float32)
        if not c.image:
            return profile
        return {"profile": profile, "image": np.clip(wall.state, -1.0, 1.0).astype(np.float32)}

    def _info(self, wall: Wall, pulse: control.PulseRecord | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "time": self.microscope.now(),
            "window": [self._window.center[0], self._window.center[1], self._window.size],
            "lost": wall.lost,
        }
        if wall.crossing:
            info["wall_x"] = float(np.mean(wall.x))
            info["curvature"] = self._curvature(wall)
            if self.config.goal == "shape":
                info["shape_error"] = self.shape_error(wall)
        if pulse is not None:
            info["pulse"] = {"x": pulse.x, "y": pulse.y, "amplitude": pulse.amplitude, "width": pulse.width,
                             "start": pulse.start}
        return info

    # -- the Gymnasium API -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The backend URL in use: ``microscope`` with the drawn film (``seed=``) and day (``day=``)."""
        changes = {k: v for k, v in (("seed", self._sample), ("day", self._day)) if v is not None}
        return with_options(self.config.microscope, **changes) if changes else self.config.microscope

    @property
    def sample(self) -> tuple[int | None, int | None]:
        """(film seed, day) drawn for the microscope in use; None where the URL's own holds."""
        return self._sample, self._day

    def _choose_sample(self, seed: int | None, options: dict[str, Any] | None) -> tuple[int | None, int | None]:
        """The (film, day) this reset asks for: from ``options``, else drawn at a seeded reset."""
        c = self.config
        sample, day = self._sample, self._day
        if seed is not None:
            if c.samples is not None:
                sample = int(c.samples[self.np_random.integers(len(c.samples))])
            if c.days is not None:
                day = int(c.days[self.np_random.integers(len(c.days))])
        options = options or {}
        unknown = sorted(set(options) - {"sample", "day"})
        if unknown:
            raise EnvConfigError(f"reset options {unknown!r} are not known; accepted: 'sample' (film seed), 'day'")
        if "sample" in options:
            sample = _draws("options['sample']", [options["sample"]])[0]
        if "day" in options:
            day = _draws("options['day']", [options["day"]])[0]
        return sample, day

    @property
    def window(self) -> Window:
        """The scan window in use (it moves in x at resets with ``recenter``)."""
        return self._window

    @property
    def wall(self) -> Wall | None:
        """The wall in the latest scan (None before the first reset)."""
        return self._wall

    @property
    def last_scan(self) -> control.ScanResult | None:
        """The latest scan of the window, the wall's source (None before the first reset)."""
        return self._last_scan

    @property
    def microscope(self) -> control.Microscope:
        """The connected microscope (opened at construction, reopened as ``reopen`` says)."""
        if self._scope is None:
            self._open()
        assert self._scope is not None
        return self._scope

    def _scan(self) -> Wall:
        self._fresh = False
        self._last_scan = self.microscope.scan(self._window.spec())
        return trace_wall(self._last_scan)

    def _search(self) -> Wall | None:
        """Scan; follow a wall that left the window; centre the window on it (``recenter``).

        Returns:
            The wall, or None if no wall crosses the window clear of its edges (also after
            following the last wall seen, if it left the window).
        """
        wall = self._scan()
        for _ in range(SEARCH_MOVES):
            if wall.crossing or self._heading == 0:
                break
            previous = self._window
            self._window = previous.moved_to(previous.center[0] + self._heading * previous.size / 2, self.limits)
            if self._window == previous:
                break  # at the end of the scanner range: nowhere left to look
            wall = self._scan()
        if not wall.crossing:
            return None
        if self.config.recenter:
            shift = float(np.mean(wall.x)) - self._window.center[0]
            if abs(shift) > wall.pixel:
                previous = self._window
                self._window = previous.moved_to(previous.center[0] + shift, self.limits)
                if self._window != previous:
                    recentred = self._scan()
                    if recentred.crossing:
                        wall = recentred
                    else:  # the wall vanished from the new window: keep the view that showed it
                        self._window = previous
        return None if wall.lost else wall

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode: (re)open as ``reopen`` says, scan and locate the wall.

        Args:
            seed: seeds ``np_random``; with ``reopen="seeded"`` also reopens the microscope
                (a fresh simulated sample), so a seeded reset is reproducible; draws the film and
                day from ``samples`` and ``days`` when they are given.
            options: ``{"sample": n, "day": d}`` (either) opens that film or day (reopening
                the microscope if it changes), e.g. a held-out film for validation.

        Returns:
            (observation, info): info holds "time" (instrument time, s), "window" ([x, y, size]
            in m), "wall_x" (mean wall x, m), "curvature" (1/(100 nm)), "lost", "reopened"
            (this reset reopened the microscope), "url" (the backend URL in use, with the drawn
            film and day) and, for the shape goal, "shape_error".

        Raises:
            NoWallError: no wall crosses the scan window, even after reopening the microscope
                (unless ``reopen="never"``) when the sample in use has lost its wall.
        """
        super().reset(seed=seed)
        c = self.config
        reopened = False
        chosen = self._choose_sample(seed, options)
        changed = chosen != (self._sample, self._day)
        self._sample, self._day = chosen
        if self._scope is None or changed or (
            not self._fresh and (c.reopen == "always" or (c.reopen == "seeded" and seed is not None))
        ):
            self.close()
            self._open()
            reopened = True
        self._running = False
        wall = self._search()
        if wall is None and not self._fresh and c.reopen != "never":
            # Earlier pulses erased the wall or pushed it out of reach: start on a fresh sample
            # (a simulated one is new; a real one is the same, and the check below raises).
            self.close()
            self._open()
            reopened = True
            wall = self._search()
        if wall is None:
            w = self._window
            raise NoWallError(
                f"no domain wall crosses the {w.size!r} m scan window centred at {list(w.center)!r} m on "
                f"{self.url!r} clear of its edges (on some line, or on all, the wall is within a pixel of a side "
                "edge or absent); pass center=[x, y] and size= for a window that a wall crosses from top to "
                "bottom (earlier pulses may have erased the wall or pushed it out of the scanner range)"
            )
        self._wall = wall
        self._heading = float(np.sign(np.mean(wall.x) - self._window.center[0]))
        self._steps = 0
        self._running = True
        info = self._info(wall)
        info["reopened"] = reopened
        info["url"] = self.url
        return self._observation(wall), info

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray | dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """Apply one pulse next to the wall, rescan and score the change.

        Returns:
            (observation, reward, terminated, truncated, info); info as for :meth:`reset`, plus
            "pulse": what the instrument emitted (x, y m; amplitude V; width s; start s).

        Raises:
            EpisodeError: no episode is running (call ``reset()``).
            InvalidArgumentError: the action is not 4 finite numbers.
        """
        if not self._running or self._wall is None:
            raise EpisodeError("no episode is running: call reset() first (and again after terminated or truncated)")
        before = self._wall
        pulse = self.pulse_map(action, self._window, before, self.limits)
        self._fresh = False
        record = self.microscope.apply_pulse(*pulse)
        wall = self._scan()
        self._wall = wall
        self._steps += 1
        if wall.crossing:
            self._heading = float(np.sign(np.mean(wall.x) - self._window.center[0])) or self._heading
        terminated = wall.lost
        if terminated:
            reward = -self.config.lost_penalty
        elif self.config.goal == "curvature":
            reward = self._curvature(wall) - self._curvature(before)
        else:
            reward = self.shape_error(before) - self.shape_error(wall)
        truncated = not terminated and self._steps >= self.config.max_steps
        self._running = not (terminated or truncated)
        return self._observation(wall), float(reward), terminated, truncated, self._info(wall, record)

    def render(self) -> np.ndarray | None:
        """``render_mode="rgb_array"``: the last scan's domains (grey) and the wall (red), (points, points, 3) uint8."""
        if self.render_mode != "rgb_array":
            return None
        n = self.config.points
        if self._wall is None:
            return np.zeros((n, n, 3), dtype=np.uint8)
        grey = np.round((self._wall.state + 1.0) * 0.5 * 200 + 20).astype(np.uint8)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        if self._wall.crossing:
            cols = np.clip(((self._wall.x - self._wall.left) / self._wall.pixel).astype(int), 0, n - 1)
            rgb[np.arange(n), cols] = (220, 30, 30)
        return rgb[::-1].copy()  # first scan line (lowest y) at the bottom of the picture

    def close(self) -> None:
        """Close the microscope (idempotent); a later ``reset()`` reopens it."""
        scope, self._scope = self._scope, None
        self._running = False
        if scope is not None:
            scope.close()
