"""The piezo scanner: where the tip really is when the controller says (x, y).

Thermal drift moves the sample under the tip at a slow, steady velocity; after each move the
piezo creeps on towards the commanded position with a logarithmic decay (a few % of the move per
decade of time, PHYSICS.md). Time is the simulation clock's; nothing here reads the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScannerParams:
    """Scanner non-idealities.

    Attributes:
        drift_speed: thermal drift speed, m/s (5 nm/min by default, ambient).
        creep: fraction of a move that creeps in per decade of time after it.
        creep_time: creep onset time constant, s.
        creep_horizon: time after a move when creep has ended, s.
    """

    drift_speed: float = 5e-9 / 60
    creep: float = 0.005
    creep_time: float = 0.01
    creep_horizon: float = 100.0


class Scanner:
    """Commanded and actual tip position as functions of instrument time."""

    def __init__(self, params: ScannerParams, rng: np.random.Generator, start: tuple[float, float] = (0.0, 0.0)):
        self.params = params
        angle = rng.uniform(0, 2 * np.pi)
        self.drift_velocity = params.drift_speed * np.array([np.cos(angle), np.sin(angle)])
        self.commanded = np.array(start, dtype=np.float64)
        self._last_move = (0.0, np.zeros(2))  # (time, displacement) of the last move
        self._bursts: list[tuple[float, float, np.ndarray]] = []  # (start, end, extra velocity)

    def drift_burst(self, start: float, duration: float, factor: float) -> None:
        """Thermal drift ``factor`` times faster from ``start`` for ``duration`` s (a fault)."""
        self._bursts.append((start, start + duration, (factor - 1.0) * self.drift_velocity))

    def move(self, target: tuple[float, float], time: float) -> None:
        """Record that a move to ``target`` ended at ``time``."""
        target = np.asarray(target, dtype=np.float64)
        self._last_move = (time, target - self.commanded)
        self.commanded = target

    def offset(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actual minus commanded position at ``times`` (s), m: drift plus the creep still to come."""
        p = self.params
        t = np.asarray(times, dtype=np.float64)
        t_move, step = self._last_move
        elapsed = np.maximum(t - t_move, 0.0)
        # The piezo has covered (1 - lag) of the step; the lag shrinks by `creep` per decade of time.
        lag = p.creep * np.log10(np.maximum(p.creep_horizon / (p.creep_time + elapsed), 1.0))
        dx = t * self.drift_velocity[0] - lag * step[0]
        dy = t * self.drift_velocity[1] - lag * step[1]
        for begin, end, velocity in self._bursts:
            inside = np.clip(t, begin, end) - begin
            dx = dx + inside * velocity[0]
            dy = dy + inside * velocity[1]
        return dx, dy
