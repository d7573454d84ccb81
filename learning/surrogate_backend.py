"""``surrogate://PATH``: a surrogate model file served as a ``control.Backend``.

:func:`open_surrogate` is registered as the ``surrogate`` scheme under ``pfmtwin.backends``.
:class:`Surrogate`'s state is the wall x(y) on a fine grid over the film height;
``apply_pulse`` adds the model's predicted change; ``scan`` renders phase (the two domains'
phases from the source, with sub-pixel area fractions at the wall, so ``trace_wall`` reads back
the profile it holds), amplitude (a dip at the wall) and a flat height. Time is simulated:
moves at the tip speed, scan lines at the quantized line period, pulses after the trigger
latency for their quantized width. No wall clock, no global RNG: phase noise (``?noise=`` deg)
comes from ``?seed=``.

It implements the verbs the environment uses (``info``, ``scan``, ``apply_pulse``, ``now``,
``close``) and ``move_tip``; it knows nothing of waveforms, drift, the tip's wear or domains
away from the one wall. It depends on the model (:mod:`learning.surrogate_model`) only, not on
Gymnasium or the environment. See docs/decisions/0005-surrogate.md.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import unquote

import numpy as np

import control
from control.contract import InstrumentInfo, LineCallback, PulseRecord, ScanResult, ScanSpec, wrap_phase
from control.errors import InstrumentError, UrlError
from control.fpga import FpgaTiming
from control.hardware import HardwareSpec
from control.limits import SafetyLimits
from control.urls import Option, options, split
from learning.surrogate_model import SurrogateModel, load_model, wall_at

__all__ = ["ACCEPTED", "DIP_WIDTH", "FINE", "Surrogate", "open_surrogate"]

#: Points of the backend's wall profile per film height (fine beside the model's 10 nm points).
FINE = 512
#: Width of the amplitude dip at the wall (Gaussian sigma), m: about the twin's default tip footprint.
DIP_WIDTH = 10e-9


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value!r} is negative")
    return value


def _noise(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 90.0:
        raise ValueError(f"{value!r} is outside [0, 90] deg")
    return value


ACCEPTED = {
    "seed": Option(_nonnegative_int, 0, "int >= 0, seed of the scan noise"),
    "noise": Option(_noise, 0.0, "phase noise rms in deg, 0-90"),
}


class Surrogate:
    """A wall that moves as a trained model says, behind the ``control.Backend`` verbs.

    Reach it through ``control.connect("surrogate:///path/model.pt")``. State: the wall x on
    :data:`FINE` points over the film height (or over the source's profile scan when the film
    is not periodic), the tip position and the simulated time.

    Args:
        model: the loaded model file.
        url: the URL it was opened with.
        path: the model file.
        seed: seed of the scan noise.
        noise: phase noise rms, deg (0: noise-free scans).
    """

    def __init__(self, model: SurrogateModel, *, url: str, path: str, seed: int = 0, noise: float = 0.0) -> None:
        self.model = model
        self.url = url
        self.path = path
        self.seed = seed
        self.noise = noise
        film = model.film
        self.hardware = HardwareSpec.from_dict(model.instrument["hardware"])
        self.limits = SafetyLimits.from_dict(model.instrument["limits"])
        period = model.period
        if period is not None:
            self.y = (np.arange(FINE) + 0.5) * (period / FINE)
        else:
            self.y = np.linspace(film["y"][0], film["y"][-1], FINE)
        self.x = wall_at(self.y, film["y"], film["initial"], period)
        self.rng = np.random.default_rng(seed)
        self.tip = (0.0, 0.0)
        self.time = 0.0

    # -- the Backend verbs ------------------------------------------------------------------

    def info(self) -> InstrumentInfo:
        """Identity, the source's hardware spec and limits, and the options (``field``: film side, m)."""
        p = self.model.provenance
        opts: dict[str, Any] = {"model": self.path, "seed": self.seed, "noise": self.noise, "source": p["source"]}
        if self.model.period is not None:
            opts["field"] = self.model.period
        return InstrumentInfo(
            backend="surrogate",
            url=self.url,
            identity=f"pfmtwin surrogate of {p['source']} ({p['transitions']} transitions, seed {p['seed']})",
            protocol_version=control.PROTOCOL_VERSION,
            software_version=control.__version__,
            hardware=self.hardware,
            limits=self.limits,
            options=opts,
        )

    def now(self) -> float:
        """Simulated instrument time, s."""
        return self.time

    def move_tip(self, x: float, y: float, speed: float) -> None:
        """Move the tip to (x, y) m at ``speed`` m/s (advances the time only)."""
        distance = math.hypot(x - self.tip[0], y - self.tip[1])
        self.time += distance / speed
        self.tip = (x, y)

    def wall(self, y: np.ndarray | float) -> np.ndarray:
        """The wall x (m) the surrogate holds at ``y`` (m)."""
        return wall_at(np.asarray(y, dtype=np.float64), self.y, self.x, self.model.period)

    def _left_fraction(self, x: np.ndarray, y: np.ndarray, pixel: float) -> np.ndarray:
        """Fraction of each pixel (centre x, y; width ``pixel``, m) in the left domain."""
        wall = self.wall(y)
        period, back = self.model.period, self.model.film.get("back")
        if period is None or back is None:
            return np.clip((wall - (x - pixel / 2)) / pixel, 0.0, 1.0)
        # The film is periodic: the left domain is [back, wall) + k * period.
        xc = np.mod(x, period)
        lo, hi = xc - pixel / 2, xc + pixel / 2
        overlap = np.zeros_like(xc)
        for k in (-1.0, 0.0, 1.0):
            overlap += np.clip(np.minimum(hi, wall + k * period) - np.maximum(lo, back + k * period), 0.0, None)
        return np.clip(overlap / pixel, 0.0, 1.0)

    def _render(self, spec: ScanSpec) -> dict[str, np.ndarray]:
        xs, ys = spec.positions()
        f = self._left_fraction(xs, ys, spec.size[0] / spec.pixels[0])
        (phi_l, phi_r), (amp_l, amp_r) = self.model.film["phase"], self.model.film["amplitude"]
        # The domains are drawn 180 deg apart about the bisector of the source's two phases (the
        # twin's background puts them ~165 deg apart), and a wall pixel at the angle whose
        # cos(phase - axis) is 2 f - 1: trace_wall's area measure then reads the held wall back.
        left = phi_l + ((phi_r - phi_l + 180.0) % 360.0 - 180.0) / 2.0 - 90.0
        phase = left + np.rad2deg(np.arccos(np.clip(2.0 * f - 1.0, -1.0, 1.0)))
        distance = np.abs(xs - self.wall(ys))
        if self.model.period is not None:
            distance = np.minimum(distance % self.model.period, self.model.period - distance % self.model.period)
        amplitude = (f * amp_l + (1.0 - f) * amp_r) * (1.0 - np.exp(-0.5 * (distance / DIP_WIDTH) ** 2))
        if self.noise > 0:
            phase = phase + self.noise * self.rng.standard_normal(phase.shape)
        return {
            "height": np.zeros(spec.shape),
            "amplitude": amplitude,
            "phase": wrap_phase(phase),
        }

    def scan(self, spec: ScanSpec, on_line: LineCallback | None = None) -> ScanResult:
        """Render an image of the wall the surrogate holds (channels as the twin's, plus retrace)."""
        xs, ys = spec.positions()
        self.move_tip(float(xs[0, 0]), float(ys[0, 0]), self.limits.tip_speed_max)
        ny, nx = spec.shape
        period = FpgaTiming(self.hardware).line_period(spec.line_rate, nx)  # whole pixel cycles
        per_line = period * (2 if spec.retrace else 1)
        line_times = self.time + np.arange(ny) * per_line
        channels = self._render(spec)
        if spec.retrace:
            channels.update({f"{k}_retrace": v for k, v in self._render(spec).items()})
        if on_line is not None:
            for i in range(ny):
                on_line(i, float(line_times[i]), {k: v[i] for k, v in channels.items()})
        self.time += ny * per_line
        self.tip = (float(xs[-1, -1]), float(ys[-1, -1]))
        return ScanResult(spec=spec, channels=channels, x=xs, y=ys, line_times=line_times)

    def apply_pulse(self, x: float, y: float, amplitude: float, width: float) -> PulseRecord:
        """Move to (x, y), emit the quantized pulse, and move the wall as the model predicts."""
        hw = self.hardware
        fpga = FpgaTiming(hw)
        cycles = fpga.pulse_cycles(width)  # refused as the controller refuses it
        code = fpga.bias_code(amplitude)
        emitted, emitted_width = fpga.bias(code), cycles / hw.clock
        self.move_tip(x, y, self.limits.tip_speed_max)
        self.time += fpga.pulse_latency
        start = self.time
        if code != 0:
            pulse = np.array([[x, y, emitted, emitted_width]])
            change, ys = self.model.predict(self.y, self.x[None, :], pulse)
            d = self.y - y
            if self.model.period is not None:
                d = (d + self.model.period / 2) % self.model.period - self.model.period / 2
            near = np.abs(d) <= self.model.span
            self.x = self.x.copy()
            self.x[near] += np.interp(d[near], ys[0] - y, change[0])
        self.time += emitted_width
        return PulseRecord(x=x, y=y, amplitude=emitted, width=emitted_width, start=start, cycles=cycles,
                           requested_amplitude=amplitude, requested_width=width)

    def apply_waveform(self, *args: Any, **kwargs: Any) -> None:
        """Not modelled: the surrogate learned pulses only."""
        raise InstrumentError(
            "the surrogate backend does not model waveforms (only apply_pulse); run waveforms on the twin "
            f"it was trained from ({self.model.provenance['source']!r})"
        )

    def close(self) -> None:
        """Nothing to release (later calls are refused by ``control.Guarded``)."""


def open_surrogate(url: str) -> Surrogate:
    """Open ``surrogate://PATH[?seed=N&noise=DEG]`` (the ``surrogate`` entry of ``pfmtwin.backends``).

    ``surrogate:///abs/path/model.pt`` for an absolute path, ``surrogate://model.pt`` relative
    to the working directory.

    Raises:
        UrlError: another scheme, no path, or an unknown option or bad value.
        SurrogateFileError: the model file is missing, unreadable or not a surrogate model.
    """
    scheme, address, raw = split(url)
    if scheme != "surrogate":
        raise UrlError(f"{url!r} is not a surrogate:// URL")
    path = unquote(address)
    if path in ("", "/"):
        raise UrlError(
            f"{url!r} names no model file; write surrogate:///abs/path/model.pt (or surrogate://model.pt, "
            "relative to the working directory)"
        )
    opts = options(url, raw, ACCEPTED)
    return Surrogate(load_model(path), url=url, path=path, seed=int(opts["seed"]), noise=float(opts["noise"]))
