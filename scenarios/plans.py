"""Experiment plans on any microscope: the talk's wall-pulse loop.

Scan, locate the domain wall (:func:`control.analysis.wall_points`: the longest wall, of any
shape), apply a bias pulse at a random point on it with a random (or fixed) bias and width,
re-scan every few pulses to re-locate the wall, and scan once more at the end. The loop of
the ORNL talk this project started from (Vasudevan, OLCF 2023), used by ``pfmtwin demo`` and
by ``[plan] kind = "wall-pulse"`` scenarios.

A pulse the safety guard refuses (a scenario's limits tighter than its plan's biases, say) is a
safety event: it is counted, nothing reaches the instrument, and the plan goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import control
from control.analysis import NoWallError, wall_points
from control.errors import LimitError
from scenarios.scenario import ScanPlan, WallPulsePlan

__all__ = ["WallPulseResult", "scan_spec", "wall_pulse"]


@dataclass
class WallPulseResult:
    """What a wall-pulse plan did.

    Attributes:
        before: the first scan.
        after: the last scan.
        pulses: what the instrument emitted, in order.
        scans: scans taken (before, between and after).
        refused: pulses the safety guard refused, each as {"x", "y", "amplitude", "width", "error"}.
        no_wall: re-locations that found no wall (the plan stops pulsing then).
    """

    before: control.ScanResult
    after: control.ScanResult
    pulses: list[control.PulseRecord] = field(default_factory=list)
    scans: int = 1
    refused: list[dict] = field(default_factory=list)
    no_wall: int = 0


def scan_spec(scope: control.Microscope, plan: ScanPlan) -> control.ScanSpec:
    """The plan's image on this instrument: by default centred in its scanner range, half of it wide
    (at most 1 um)."""
    reach = scope.info().hardware.scan_range
    size = plan.size if plan.size is not None else min(1e-6, reach / 2)
    center = plan.center if plan.center is not None else (reach / 2, reach / 2)
    return control.ScanSpec(center=center, size=(size, size), pixels=(plan.pixels, plan.pixels),
                            line_rate=plan.line_rate)


def _draw(rng: np.random.Generator, plan: WallPulsePlan) -> tuple[float, float]:
    """(signed bias V, width s) for one pulse."""
    magnitude = float(rng.uniform(*plan.bias)) if plan.bias[0] < plan.bias[1] else plan.bias[0]
    sign = {"positive": 1.0, "negative": -1.0}.get(plan.polarity) or float(rng.choice([-1.0, 1.0]))
    lo, hi = plan.width
    width = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if lo < hi else lo
    return sign * magnitude, width


def wall_pulse(scope: control.Microscope, plan: WallPulsePlan, rng: np.random.Generator,
               tick: Callable[[str], None] | None = None) -> WallPulseResult:
    """Run the wall-pulse loop on ``scope``.

    Args:
        scope: the microscope (a :class:`control.recording.Recorder` to record the session).
        plan: pulses, re-scan period, bias and width ranges, and the image.
        rng: the plan's only randomness (pulse sites, biases, widths).
        tick: called after every scan and pulse with a short description (a progress bar).

    Returns:
        The scans, the emitted pulses and the safety events.
    """
    tick = tick or (lambda _: None)
    spec = scan_spec(scope, plan.scan)
    before = current = scope.scan(spec)
    result = WallPulseResult(before=before, after=before)
    tick("scan")
    wall: np.ndarray | None = None
    fresh = False  # the latest scan was taken after the latest pulse (always true of a new image)
    for k in range(plan.pulses):
        if wall is None:
            try:
                wall = wall_points(current)
            except NoWallError:
                result.no_wall += 1
                break
        x, y = wall[rng.integers(len(wall))]
        volts, width = _draw(rng, plan)
        try:
            result.pulses.append(scope.apply_pulse(float(x), float(y), volts, width))
        except LimitError as exc:  # refused by the guard: nothing reached the instrument
            result.refused.append({"x": float(x), "y": float(y), "amplitude": volts, "width": width,
                                   "error": str(exc)})
        tick(f"{volts:+.1f} V {width * 1e3:.3g} ms")
        fresh = False
        if (k + 1) % plan.rescan_every == 0:
            current = scope.scan(spec)
            result.scans += 1
            wall, fresh = None, True
            tick("scan")
    if not fresh:  # the image after the last pulse (or a second image when nothing was pulsed)
        current = scope.scan(spec)
        result.scans += 1
        tick("scan")
    result.after = current
    return result
