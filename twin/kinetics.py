"""Creep kinetics of domain walls under a tip: from a pulse of width 1 us - 10 s to switched pixels.

Intrinsic TDGL times are picoseconds, so a 0.25 ms pulse cannot be integrated in TDGL time
(docs/physics.md). Instead the wall moves by thermally activated creep, v(E) = v0 exp[-(Ec/E)^mu]
(Tybell et al. 2002: mu about 1), with E the local field driving the switch (tip field plus the
quenched random field). Because the tip field falls off with distance, the front slows down
exponentially as it expands and the written radius grows about logarithmically in time.

We compute, for every pixel near the tip, the time at which the switching front arrives: the
first-arrival (eikonal) time from the sources of the favoured polarization (a nucleus under the
apex, formed after an activated nucleation time, and every pixel already polarized the favoured
way), with local slowness 1/v. A pixel switches if the front arrives before the pulse ends.
That is an event-driven (Dijkstra) sweep: time jumps from front position to front position, so a
1 s pulse costs no more than a 1 us one.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numba
import numpy as np

# 16-neighbour stencil (8 nearest + 8 knight moves): the front of a Dijkstra sweep on it is a
# 16-gon, within about 2.6 % of a circle, instead of the 8 % octagon of the 8-neighbour stencil.
_STENCIL = np.array(
    [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1),
     (1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1)],
    dtype=np.int64,
)
_STEP = np.sqrt((_STENCIL.astype(np.float64) ** 2).sum(axis=1))


@dataclass(frozen=True)
class CreepLaw:
    """Wall velocity and nucleation time under a driving field.

    Defaults are calibrated (docs/physics.md, "Writing under a tip") so that a 7.74 V pulse from
    a 25 nm tip on a 50 nm PbTiO3 film over its bottom electrode writes r(0.25 ms) = 40 nm,
    growing about 11 nm per decade of pulse time, and a 4 V pulse writes nothing before 0.1 ms.
    The creep exponent 0.85 lies between pristine PZT's 0.62-0.69 and Tybell et al.'s ~1: with
    the electrode-confined tip field, mu = 1 would make r(log t) bend over (8 nm per decade
    above 10 ms), mu = 0.85 keeps it straight over four decades.

    Attributes:
        v0: attempt velocity, m/s.
        creep_field: Ec, the creep field scale (U/kT)^(1/mu) E0, V/m.
        exponent: creep exponent mu.
        nucleation_time: attempt time tau0 of nucleation under the apex, s.
        nucleation_field: En, activation field of nucleation: t_n = tau0 exp(En / E), V/m.
    """

    v0: float = 0.164
    creep_field: float = 6.5e8
    exponent: float = 0.85
    nucleation_time: float = 6.5e-11
    nucleation_field: float = 0.9e9

    def velocity(self, field: np.ndarray | float) -> np.ndarray:
        """Creep velocity, m/s, for a driving field (V/m); 0 where the field opposes the switch."""
        e = np.asarray(field, dtype=np.float64)
        return _velocities(e.ravel(), self.v0, self.creep_field, self.exponent).reshape(e.shape)

    def nucleation_delay(self, field: float) -> float:
        """Time for a reversed nucleus to form under a field ``field`` (V/m), s (inf if <= 0)."""
        return float(_nucleation_delay(float(field), self.nucleation_time, self.nucleation_field))

    def reach(self, field: float, duration: float) -> float:
        """Distance a wall moves in ``duration`` s at constant ``field`` V/m: a bound for windows, m."""
        return float(self.velocity(field)) * duration

    def switched(self, drive: np.ndarray, favoured: np.ndarray, apex: tuple[int, int], spacing: float,
                 duration: float) -> np.ndarray:
        """Pixels a pulse of ``duration`` s switches: the front from the favoured pixels (and, when the
        apex pixel is not favoured, from a nucleus there after :meth:`nucleation_delay`) crossing each
        pixel at :meth:`velocity` of its ``drive`` (V/m) arrives within the pulse (:func:`arrival_times`).

        One compiled pass over the pulse's block, with the compiled functions behind :meth:`velocity`
        and :meth:`nucleation_delay` (numpy's 15 calls for these steps were a tenth of the agents' step).

        Returns:
            bool, the shape of ``drive``; favoured pixels are never switched.
        """
        return _switched(np.ascontiguousarray(drive, dtype=np.float64), np.ascontiguousarray(favoured, dtype=np.bool_),
                         int(apex[0]), int(apex[1]), self.v0, self.creep_field, self.exponent, self.nucleation_time,
                         self.nucleation_field, float(spacing), float(duration), _STENCIL, _STEP)


@numba.njit(cache=True)
def _velocity(e, v0, creep_field, exponent):
    """v0 exp[-(Ec/E)^mu] for E > 0, else 0 (a vanishing E overflows the power to inf: v = 0)."""
    return v0 * np.exp(-np.power(creep_field / e, exponent)) if e > 0 else 0.0


@numba.njit(cache=True)
def _velocities(e, v0, creep_field, exponent):
    out = np.empty(e.shape)
    for k in range(e.shape[0]):
        out[k] = _velocity(e[k], v0, creep_field, exponent)
    return out


@numba.njit(cache=True)
def _nucleation_delay(field, nucleation_time, nucleation_field):
    """tau0 exp(En / E); inf for E <= 0 or an exponent above 700."""
    if field <= 0 or nucleation_field / field > 700:
        return np.inf
    return nucleation_time * math.exp(nucleation_field / field)


@numba.njit(cache=True)
def _switched(drive, favoured, apex_i, apex_j, v0, creep_field, exponent, nucleation_time, nucleation_field, spacing,
              duration, stencil, steps):
    ny, nx = drive.shape
    slowness = np.empty((ny, nx))
    start = np.empty((ny, nx))
    for i in range(ny):
        for j in range(nx):
            v = _velocity(drive[i, j], v0, creep_field, exponent)
            slowness[i, j] = 1.0 / v if v > 0 else np.inf
            start[i, j] = 0.0 if favoured[i, j] else np.inf
    if not favoured[apex_i, apex_j]:
        start[apex_i, apex_j] = _nucleation_delay(drive[apex_i, apex_j], nucleation_time, nucleation_field)
    arrival = _arrival(slowness, start, spacing, duration, stencil, steps)
    switched = np.zeros((ny, nx), dtype=np.bool_)
    for i in range(ny):
        for j in range(nx):
            switched[i, j] = arrival[i, j] <= duration and not favoured[i, j]
    return switched


@numba.njit(cache=True)
def _arrival(slowness, start, spacing, horizon, stencil, steps):
    ny, nx = slowness.shape
    t = start.copy()
    done = np.zeros((ny, nx), dtype=np.bool_)
    heap = [(0.0, 0, 0)]
    heap.pop()
    for i in range(ny):
        for j in range(nx):
            if t[i, j] <= horizon:
                heap.append((t[i, j], i, j))
    heapq.heapify(heap)
    while len(heap) > 0:
        ti, i, j = heapq.heappop(heap)
        if done[i, j] or ti > t[i, j]:
            continue
        done[i, j] = True
        si = slowness[i, j]
        for k in range(stencil.shape[0]):
            a = i + stencil[k, 0]
            b = j + stencil[k, 1]
            if a < 0 or a >= ny or b < 0 or b >= nx or done[a, b]:
                continue
            sj = slowness[a, b]
            if not np.isfinite(sj):
                continue
            tn = ti + 0.5 * (si + sj) * steps[k] * spacing
            if tn < t[a, b] and tn <= horizon:
                t[a, b] = tn
                heapq.heappush(heap, (tn, a, b))
    return t


def arrival_times(slowness: np.ndarray, start: np.ndarray, spacing: float, horizon: float) -> np.ndarray:
    """First-arrival time of a front that leaves ``start`` and crosses pixels at 1/``slowness``.

    Args:
        slowness: s/m per pixel; inf where the front cannot enter.
        start: time at which each pixel is a source, s; inf if it is not.
        spacing: pixel size, m.
        horizon: stop after this time, s; later pixels stay inf.

    Returns:
        Arrival time per pixel, s (inf where not reached by ``horizon``).
    """
    if slowness.shape != start.shape:
        raise ValueError(f"slowness shape {slowness.shape} != start shape {start.shape}")
    return _arrival(
        np.ascontiguousarray(slowness, dtype=np.float64),
        np.ascontiguousarray(start, dtype=np.float64),
        float(spacing), float(horizon), _STENCIL, _STEP,
    )
