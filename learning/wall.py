"""Wall-shape features for agents: how bent a wall is.

Where the wall is comes from :func:`control.analysis.trace_wall` (the one wall finder, shared
with scenarios and the realism panel); this module turns its x(y) into the curvature that the
environment rewards.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

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
    dy = float(y[1] - y[0])
    xs = np.asarray(x, dtype=np.float64)
    if smoothing > 0:
        # Extend the wall by point reflection at both ends (a straight wall stays straight), so
        # the smoothing bends no wall near the window edges.
        sigma = smoothing / dy
        pad = min(int(4 * sigma) + 1, len(xs) - 1)
        ends = (2 * xs[0] - xs[pad:0:-1], 2 * xs[-1] - xs[-2 : -pad - 2 : -1])
        padded = np.concatenate([ends[0], xs, ends[1]])
        xs = ndimage.gaussian_filter1d(padded, sigma, mode="nearest")[pad : pad + len(xs)]
    d1 = np.gradient(xs, dy)
    d2 = np.gradient(d1, dy)
    return d2 / (1.0 + d1**2) ** 1.5
