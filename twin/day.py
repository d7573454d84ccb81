"""Instrument days: the same sample imaged on another day looks different.

A microscopist who comes back to a sample the next day finds it unchanged, but not the
instrument: the tip has been changed or has worn, the cantilever is recalibrated, the lock-in's
phase offset, the noise floor, the line-to-line offsets and the thermal drift are those of
that day. ``twin://?seed=S&day=D`` draws these from their own random stream (seeded by the
sample seed and the day), so the same seed and day give the same bytes, and another day gives
the same domains seen through a different-looking instrument.

The ranges are those seen across real PbTiO3 scans and instruments (docs/physics.md,
"Instrument days"): median amplitudes of 40-150 pm (the gain), tips of 18-35 nm radius (new to
worn), phase offsets of 0-45 deg, drift of 1-10 nm/min in ambient air, noise levels within a
factor of 1.5 either way of the typical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Day:
    """The instrument's state on one day (multipliers are relative to the twin's defaults).

    Attributes:
        day: the day's number.
        gain: response gain (cantilever sensitivity and contact), multiplies d33 * drive.
        phase_offset: lock-in phase of an up domain, deg.
        tip_radius: tip apex radius, m (a fresh tip is sharp; a worn one blunter).
        drift_speed: thermal drift speed, m/s.
        drift_angle: thermal drift direction, rad.
        noise: multiplier of the white noise.
        line_offset: multiplier of the per-line offsets and gains.
    """

    day: int
    gain: float
    phase_offset: float
    tip_radius: float
    drift_speed: float
    drift_angle: float
    noise: float
    line_offset: float

    @classmethod
    def draw(cls, seed: int, day: int) -> Day:
        """The instrument on ``day`` for the sample of ``seed`` (deterministic)."""
        if not (isinstance(day, int) and day >= 0):
            raise ValueError(f"day={day!r} must be an integer >= 0")
        rng = np.random.default_rng(np.random.SeedSequence([seed, day, 0xDA7]))

        def lognormal(median: float, sigma: float, lo: float, hi: float) -> float:
            return float(np.clip(median * math.exp(sigma * rng.standard_normal()), lo, hi))

        return cls(
            day=day,
            gain=lognormal(1.6, 0.3, 1.0, 2.6),
            phase_offset=float(rng.uniform(0.0, 25.0)),
            tip_radius=lognormal(32e-9, 0.12, 22e-9, 42e-9),
            drift_speed=float(10 ** rng.uniform(math.log10(1e-9 / 60), math.log10(10e-9 / 60))),
            drift_angle=float(rng.uniform(0.0, 2 * math.pi)),
            noise=lognormal(1.0, 0.15, 0.8, 1.3),
            line_offset=lognormal(1.0, 0.25, 0.6, 1.6),
        )
