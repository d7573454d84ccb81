"""Wall-shape features for agents: where the domain wall is in a raster scan, and how bent it is.

The wall is taken to cross the scan window from its first line to its last (roughly along y),
separating a domain on the left (low x) from one on the right, as in the ORNL wall-pulse
experiment and on the twin's films. Its position on each line is measured by area: the wall
sits where a straight cut would leave the same amount of the left domain on that line. For a
clean wall this is the crossing itself, with sub-pixel resolution from the analog phase signal;
a written island or a noisy pixel moves it by its area only, never by a pixel-sized jump, so the
profile is continuous in what the pulses do.

Pure numpy/scipy on a :class:`control.ScanResult` (only its ``phase``, ``x``, ``y`` and
``spec``), so it works the same on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from control.analysis import NoWallError, phase_axis
from control.contract import ScanResult

__all__ = ["CURVATURE_UNIT", "Wall", "curvature", "locate_wall", "trace_wall"]

#: Curvatures are reported in units of 1 / (100 nm): 1.0 is a wall bent at a 100 nm radius.
CURVATURE_UNIT = 100e-9


@dataclass(frozen=True)
class Wall:
    """A domain wall located in a raster scan, as x(y).

    Attributes:
        y: y of each scan line, m, shape (lines,), increasing.
        x: x of the wall on each line, m, shape (lines,); always inside the window.
        state: polarization state per pixel, oriented so the left domain is +1 and the right
            one -1 (median-filtered cos of the phase from the domains' phase axis), shape
            (lines, points), in [-1, 1].
        left: x of the window's left edge, m.
        width: width of the window along x, m.
        crossing: the left and right edges of the window show opposite domains, so a wall
            crosses it (when False, ``x`` and the orientation of ``state`` mean nothing).
    """

    y: np.ndarray
    x: np.ndarray
    state: np.ndarray
    left: float
    width: float
    crossing: bool = True

    @property
    def pixel(self) -> float:
        """Pixel size along x, m."""
        return self.width / self.state.shape[1]

    @property
    def lost(self) -> bool:
        """No wall crosses the window, or on some line it is within one pixel of an edge (leaving)."""
        inside = (self.x - self.left) / self.pixel
        return not self.crossing or bool(np.any(inside < 1.0) or np.any(inside > self.state.shape[1] - 1.0))

    def at(self, y: float) -> float:
        """Wall x at height ``y`` (m), linearly interpolated between lines (held beyond them), m."""
        return float(np.interp(y, self.y, self.x))


def trace_wall(result: ScanResult, smooth: int = 3) -> Wall:
    """Trace the wall that crosses a raster scan from its first line to its last.

    Never raises for a missing wall: check ``Wall.crossing`` (or use :func:`locate_wall`).

    Args:
        result: a raster scan (lines along x).
        smooth: size of the median filter against pixel noise (1: none).

    Returns:
        The wall; ``Wall.lost`` tells whether it is missing or about to leave the window.
    """
    spec = result.spec
    if spec.path != "raster":
        raise ValueError(f"spec.path={spec.path!r}: wall profiles need a 'raster' scan; use path='raster'")
    axis = phase_axis(result.phase)
    state = np.cos(np.deg2rad(np.asarray(result.phase, dtype=np.float64) - axis))
    if smooth > 1:
        state = ndimage.median_filter(state, size=smooth, mode="nearest")
    edge = max(1, state.shape[1] // 16)
    left_side, right_side = float(state[:, :edge].mean()), float(state[:, -edge:].mean())
    oriented = state if left_side >= 0 else -state
    left_edge = spec.center[0] - spec.size[0] / 2
    fraction = ((1.0 + oriented) / 2.0).mean(axis=1)
    return Wall(
        y=np.asarray(result.y[:, 0], dtype=np.float64).copy(),
        x=left_edge + fraction * spec.size[0],
        state=oriented,
        left=left_edge,
        width=spec.size[0],
        crossing=left_side * right_side < 0,
    )


def locate_wall(result: ScanResult, smooth: int = 3) -> Wall:
    """Like :func:`trace_wall`, but a window that no wall crosses is an error.

    Raises:
        NoWallError: the left and right edges of the image show the same domain, so no wall
            crosses the window from top to bottom.
    """
    wall = trace_wall(result, smooth)
    if not wall.crossing:
        spec = result.spec
        raise NoWallError(
            f"no domain wall crosses the {spec.size[0]!r} m x {spec.size[1]!r} m window centred at "
            f"{spec.center!r} m: its left and right edges show the same domain"
        )
    return wall


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
