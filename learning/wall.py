"""Wall-shape features for agents: how bent a wall is.

Where the wall is comes from :func:`control.analysis.trace_wall` (the one wall finder, shared
with scenarios and the realism panel); this module turns its x(y) into the curvature that the
environment rewards.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["CURVATURE_UNIT", "curvature"]

#: Curvatures are reported in units of 1 / (100 nm): 1.0 is a wall bent at a 100 nm radius.
CURVATURE_UNIT = 100e-9


def curvature(y: np.ndarray, x: np.ndarray, smoothing: float) -> np.ndarray:
    """Signed curvature of the wall x(y) after Gaussian smoothing along the wall, 1/m.

    kappa = x'' / (1 + x'^2)^(3/2), the curvature of the contour (docs/physics.md) written for a
    graph x(y); derivatives by central differences. The wall is extended by point reflection
    beyond its ends before smoothing, so a straight wall has zero curvature up to the edges.

    Args:
        y: evenly spaced line positions, m, shape (n,), n >= 3.
        x: wall position on each line, m, shape (n,).
        smoothing: standard deviation of the Gaussian smoothing along y, m (0: none).

    Returns:
        Curvature on each line, 1/m, shape (n,).
    """
    xs = np.ascontiguousarray(x, dtype=np.float64)
    if xs.ndim != 1 or len(xs) < 2:
        raise ValueError(f"x has shape {np.shape(x)!r}: a wall needs one position on each of at least 2 lines")
    dy = float(y[1] - y[0])
    return _curvature(xs, dy, smoothing / dy if smoothing > 0 else 0.0)


@numba.njit(cache=True)
def _curvature(x, dy, sigma):
    """:func:`curvature` compiled: the point reflection, ``scipy.ndimage.gaussian_filter1d`` (mode
    "nearest", truncated at 4 sigma, its symmetric sum in its order), ``np.gradient`` twice. The same
    values to round-off, without the 15 numpy and scipy calls (0.1-0.2 ms a step between other work)."""
    n = x.shape[0]
    xs = x.copy()
    if sigma > 0:
        # Extend the wall by point reflection at both ends (a straight wall stays straight), so
        # the smoothing bends no wall near the window edges.
        pad = min(int(4 * sigma) + 1, n - 1)
        padded = np.empty(n + 2 * pad)
        for k in range(pad):
            padded[k] = 2 * x[0] - x[pad - k]
            padded[pad + n + k] = 2 * x[n - 1] - x[n - 2 - k]
        padded[pad:pad + n] = x
        radius = int(4.0 * sigma + 0.5)
        weights = np.exp(-0.5 / (sigma * sigma) * np.arange(-radius, radius + 1).astype(np.float64) ** 2)
        weights /= weights.sum()
        last = n + 2 * pad - 1
        for i in range(n):
            j = i + pad
            total = padded[j] * weights[radius]
            for k in range(1, radius + 1):
                total += (padded[max(j - k, 0)] + padded[min(j + k, last)]) * weights[radius + k]
            xs[i] = total
    d1 = _gradient(xs, dy)
    d2 = _gradient(d1, dy)
    return d2 / (1.0 + d1**2) ** 1.5


@numba.njit(cache=True)
def _gradient(f, dx):
    """``np.gradient(f, dx)`` of a 1D array (central differences, one-sided at the ends)."""
    n = f.shape[0]
    out = np.empty(n)
    for i in range(1, n - 1):
        out[i] = (f[i + 1] - f[i - 1]) / (2.0 * dx)
    out[0] = (f[1] - f[0]) / dx
    out[n - 1] = (f[n - 1] - f[n - 2]) / dx
    return out
