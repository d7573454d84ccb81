"""Image analysis every user of the contract needs: domains and walls from a PFM scan.

Pure numpy/scipy on a :class:`control.ScanResult`, so scenarios and agents share one
implementation and it works the same on every backend.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from control.contract import ScanResult
from control.errors import PfmTwinError


class NoWallError(PfmTwinError, LookupError):
    """The image shows no domain wall (a single domain, or noise only)."""


def phase_axis(phase: np.ndarray) -> float:
    """The phase (deg, in [-90, 90)) of the "up" state: the axis of the two phase states.

    The states differ by 180 deg, so the doubled-angle mean finds their common axis whatever
    the offset of the lock-in.
    """
    doubled = np.exp(2j * np.deg2rad(phase)).mean()
    return float((np.rad2deg(np.angle(doubled)) / 2 + 90.0) % 180.0 - 90.0)


def domains(result: ScanResult, smooth: int = 3) -> np.ndarray:
    """Polarization sign per pixel (+1 phase near :func:`phase_axis`, -1 opposite), int8.

    Args:
        result: a scan.
        smooth: size of the median filter against pixel noise (1: none).
    """
    axis = phase_axis(result.phase)
    sign = np.where(np.cos(np.deg2rad(result.phase - axis)) >= 0, 1, -1).astype(np.int8)
    return ndimage.median_filter(sign, size=smooth, mode="nearest") if smooth > 1 else sign


def wall_mask(result: ScanResult, smooth: int = 3) -> np.ndarray:
    """Boolean mask of pixels on the longest domain wall in the image.

    Raises:
        NoWallError: the image holds a single domain.
    """
    d = domains(result, smooth)
    edge = np.zeros(d.shape, dtype=bool)
    edge[:, 1:] |= d[:, 1:] != d[:, :-1]
    edge[1:, :] |= d[1:, :] != d[:-1, :]
    labels, count = ndimage.label(edge, structure=np.ones((3, 3)))
    if count == 0:
        raise NoWallError("no domain wall in this image: every pixel shows the same phase state")
    sizes = ndimage.sum_labels(edge, labels, index=np.arange(1, count + 1))
    return labels == 1 + int(np.argmax(sizes))


def wall_points(result: ScanResult, smooth: int = 3) -> np.ndarray:
    """(x, y) in m of the pixels on the longest wall, shape (n, 2), in row order."""
    mask = wall_mask(result, smooth)
    return np.column_stack([result.x[mask], result.y[mask]])


def wall_profile(result: ScanResult, smooth: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The longest wall as x(y) for a raster scan: mean wall x per line, m (NaN where none).

    Returns:
        (y of each line, x of the wall on that line), both m, shape (lines,).
    """
    mask = wall_mask(result, smooth)
    count = mask.sum(axis=1)
    with np.errstate(invalid="ignore"):
        x = np.where(count > 0, (result.x * mask).sum(axis=1) / np.maximum(count, 1), np.nan)
    return result.y[:, 0].copy(), x


def amplitude_statistics(amplitude: np.ndarray) -> dict[str, float]:
    """Noise statistics of an amplitude image (lines along axis 1), as PHYSICS.md quotes them.

    Returns:
        ``median`` (m); ``pixel_noise``: robust rms of the pixel-to-pixel difference along the
        line over sqrt 2, relative to the median amplitude; ``line_cv``: coefficient of
        variation of the per-line medians.
    """
    a = np.asarray(amplitude, dtype=np.float64)
    median = float(np.median(a))
    diff = np.diff(a, axis=1).ravel()
    robust_rms = 1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0)
    lines = np.median(a, axis=1)
    return {
        "median": median,
        "pixel_noise": float(robust_rms / median),
        "line_cv": float(lines.std() / lines.mean()),
    }
