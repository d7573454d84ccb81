"""Image analysis every user of the contract needs: domains, walls and a statistics panel.

Pure numpy/scipy on a :class:`control.ScanResult`, so scenarios, agents and the realism check
share one implementation and it works the same on every backend and on real scans. Arrays are
(lines, points per line): a scan line runs along axis 1.

Domains and walls all start from one per-pixel state, :func:`polarization` (cos of the phase from
the domains' phase axis), read out two ways for two questions:

- :func:`domains` (its amplitude-weighted sign) and :func:`wall_mask` / :func:`wall_points`:
  which pixels lie on the longest wall, of any shape (a labyrinth, a written island); used to
  choose where to pulse and by the panel's domain and wall statistics. :func:`boundary_points`
  gives every wall as points between pixels (how far two scans' walls are apart: replay).
- :func:`trace_wall` / :func:`locate_wall`: a wall that crosses a raster window from its first
  line to its last, as x(y) measured by area (the wall sits where a straight cut would leave the
  same amount of the left domain on that line). For a clean wall this is the crossing itself,
  with sub-pixel resolution from the analog phase; a written island or a noisy pixel moves it by
  its area only, never by a pixel-sized jump, so the profile is continuous in what pulses do
  (the agents' observation and reward, ``learning.wall.curvature``).

The panel (:data:`STATISTICS`, :func:`image_statistics`) describes a PFM image by numbers that
can be compared between a real instrument and the twin: noise, line-to-line offsets, spatial
correlation, the phase states, and the domain and wall geometry. Every statistic is a function
of the same name taking a ``ScanResult`` and returning a float; NaN means "not defined for this
image" (no wall, too small, all pixels NaN), never an exception.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from control.contract import ScanResult, wrap_phase
from control.errors import PfmTwinError

#: Gaussian smoothing of the projected piezoresponse before its sign is taken, pixels. One pixel
#: averages the phase noise of low-amplitude regions away without moving a wall by more than a
#: fraction of a pixel.
DOMAIN_SIGMA = 1.0
#: Smallest domain kept, pixels. After the 1-pixel smoothing the real PbTiO3 scans still show
#: islands of 1-8 pixels in low-amplitude regions (phase noise, not domains); anything smaller
#: than 3 x 3 pixels is merged into its surroundings.
MIN_DOMAIN_AREA = 9
#: Domain interiors, pixels from the nearest wall: the phase scatter takes pixels at least
#: PHASE_INTERIOR away (beyond the phase's transition at the wall), the wall contrast and width
#: compare with pixels at least WALL_INTERIOR away (beyond most of the amplitude dip).
PHASE_INTERIOR, WALL_INTERIOR = 3.0, 5.0
#: Half-width of the mean wall profile (pixels) and how far from the wall its dip is searched:
#: in real scans the phase boundary can sit a few pixels off the amplitude minimum (an
#: electrostatic background rotates the phase where the piezoresponse is small).
PROFILE_HALF_WIDTH, DIP_SEARCH = 25, 8
#: Fit band of ``psd_slope``: from 8 cycles per image (four times the 2-bin half-width of the
#: Hann window's main lobe, so the window and the image mean do not leak into the fit) to a quarter of the Nyquist frequency
#: (0.125 cycles per pixel, below the white pixel-noise floor that takes over the real scans'
#: spectra at 0.16-0.4 cycles per pixel).
PSD_LOW_CYCLES, PSD_HIGH_CYCLES_PER_PIXEL = 8, 0.125
#: Box size of the local mean removed before ``stripe_share``, pixels.
STRIPE_BOX = 31

#: name -> (unit, definition) of every statistic of the panel, in the panel's order.
STATISTICS: dict[str, tuple[str, str]] = {
    "median_amplitude": ("m", "median of the amplitude image"),
    "pixel_noise": ("1", "1.4826 x median absolute deviation of the differences of adjacent pixels along a "
                         "line, / sqrt(2), / median_amplitude"),
    "line_cv": ("1", "standard deviation / mean of the per-line medians of the amplitude"),
    "pixel_correlation": ("1", "Pearson correlation of the amplitudes of adjacent pixels along a line"),
    "line_correlation": ("1", "Pearson correlation of the amplitudes of the same pixel on adjacent lines"),
    "stripe_share": ("1", f"residual = amplitude - its {STRIPE_BOX}-pixel box mean (mode nearest); standard "
                          "deviation of the per-line medians of the residual / standard deviation of the residual"),
    "psd_slope": ("1", f"least-squares slope of log power vs log frequency of the radially averaged (1/N-wide "
                       f"bins, N the shorter side) power spectrum of the mean-subtracted, Hann-windowed amplitude, "
                       f"from {PSD_LOW_CYCLES}/N to {PSD_HIGH_CYCLES_PER_PIXEL} cycles per pixel (NaN if < 5 bins)"),
    "phase_up": ("deg", "circular mean phase of the +1 domains (the state near phase_axis), in [-90, 270)"),
    "phase_down": ("deg", "circular mean phase of the -1 domains, in [-90, 270)"),
    "phase_separation": ("deg", "|phase_down - phase_up| on the circle, in [0, 180]"),
    "phase_scatter": ("deg", f"circular standard deviation sqrt(-2 ln R) of the phase of each state's pixels at "
                             f"least {PHASE_INTERIOR:g} pixels from any wall; the pixel-count-weighted median over "
                             f"the two states (the value of the larger one)"),
    "wall_contrast": ("1", f"median amplitude on wall pixels (a 4-neighbour in the other state) / median amplitude "
                           f"of pixels at least {WALL_INTERIOR:g} pixels from any wall"),
    "wall_width": ("m", f"FWHM of the dip of the mean amplitude vs signed distance to the nearest wall (1-pixel "
                        f"bins to +-{PROFILE_HALF_WIDTH} pixels; minimum within +-{DIP_SEARCH} pixels; on each side "
                        f"the half level is half-way to the median amplitude of that state's pixels at least "
                        f"{WALL_INTERIOR:g} pixels from any wall), x the pixel pitch along x"),
    "minority_fraction": ("1", "area share of the smaller of the two domain states"),
    "domain_radius": ("m", "median equivalent-disc radius sqrt(area / pi) of the connected (4-neighbour) domains "
                           "of the minority state, x the pixel pitch along x"),
    "wall_density": ("m/m^2", "wall length per scanned area: the boundaries between 4-neighbours in different "
                              "states, each as long as the pixel pitch across it, / (pixels x pitch_x x pitch_y)"),
}


class NoWallError(PfmTwinError, LookupError):
    """The image shows no domain wall (a single domain, or noise only)."""


class UnknownStatisticError(PfmTwinError, ValueError):
    """A statistic name that the panel does not define."""


def _nan_safe(fn: Callable[[ScanResult], float]) -> Callable[[ScanResult], float]:
    """Run a statistic with numpy's NaN and division warnings off: NaN is its answer for them."""

    @functools.wraps(fn)
    def quiet(result: ScanResult) -> float:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(fn(result))

    return quiet


# --- domains and walls ----------------------------------------------------------------------


def median_filter(image: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.median_filter(image, size=size, mode="nearest")``, the same values.

    Size 3 (every wall and domain read-out here) runs compiled: scipy's generic rank filter
    costs 150-250 us on a 32 x 32 image called once between other work (the agents' step),
    this about a tenth of that. Other sizes go to scipy.
    """
    image = np.asarray(image)
    if size != 3 or image.ndim != 2 or image.size == 0:
        return ndimage.median_filter(image, size=size, mode="nearest")
    return _median3(image)


@numba.njit(cache=True)
def _median3(image):
    ny, nx = image.shape
    out = np.empty_like(image)
    window = np.empty(9, dtype=image.dtype)
    for i in range(ny):
        for j in range(nx):
            k = 0
            for di in range(-1, 2):
                r = min(max(i + di, 0), ny - 1)
                for dj in range(-1, 2):
                    c = min(max(j + dj, 0), nx - 1)
                    v = image[r, c]
                    m = k  # insertion sort of the nine values
                    while m > 0 and window[m - 1] > v:
                        window[m] = window[m - 1]
                        m -= 1
                    window[m] = v
                    k += 1
            out[i, j] = window[4]
    return out


def phase_axis(phase: np.ndarray) -> float:
    """The phase (deg, in [-90, 90)) of the "up" state: the axis of the two phase states.

    The states differ by 180 deg, so the doubled-angle mean finds their common axis whatever
    the offset of the lock-in. NaN pixels are ignored.
    """
    return float(_axis(np.ascontiguousarray(phase, dtype=np.float64).reshape(-1)))


@numba.njit(cache=True)
def _axis(phase):
    """:func:`phase_axis` of a flat array, compiled: the mean of exp(2i phase) over finite pixels."""
    re = 0.0
    im = 0.0
    count = 0
    for v in phase:
        if np.isfinite(v):
            doubled = 2.0 * np.deg2rad(v)
            re += np.cos(doubled)
            im += np.sin(doubled)
            count += 1
    if count == 0:
        return np.nan
    return (np.rad2deg(np.arctan2(im / count, re / count)) / 2 + 90.0) % 180.0 - 90.0


@numba.njit(cache=True)
def _state(phase, axis):
    """:func:`polarization` of a flat array, compiled: cos(phase - axis), 0 where not finite."""
    out = np.empty(phase.shape[0])
    for k in range(phase.shape[0]):
        v = np.cos(np.deg2rad(phase[k] - axis))
        out[k] = v if np.isfinite(v) else 0.0
    return out


def _drop_small(sign: np.ndarray, min_area: int) -> np.ndarray:
    """Merge connected (4-neighbour) regions smaller than ``min_area`` pixels into the other state."""
    sign = sign.copy()
    for state in (1, -1):  # islands of +1 first, then of -1 (which may have grown from merged ones)
        labels, count = ndimage.label(sign == state)
        if count == 0 or not (sign == -state).any():
            continue
        small = np.bincount(labels.ravel()) < min_area
        small[0] = False
        sign[small[labels]] = -state
    return sign


def polarization(result: ScanResult, axis: float | None = None) -> np.ndarray:
    """The polarization state of every pixel as cos(phase - axis), in [-1, 1]: +1 on the phase
    axis, -1 opposite, analog in between (at walls, and where noise rotates a weak pixel's phase).

    This is the one per-pixel state that every domain and wall read-out here starts from:
    :func:`domains` weights it by the amplitude and takes its sign, :func:`trace_wall` measures
    the wall by its area. NaN pixels count as 0 (no vote either way).

    Args:
        result: a scan.
        axis: phase of the +1 state, deg; default :func:`phase_axis` of this scan. Pass one
            scan's axis to another to compare their states (two scans' own axes can differ by
            180 deg when the doubled-angle mean falls near +-90 deg).
    """
    phase = np.ascontiguousarray(result.phase, dtype=np.float64)
    flat = phase.reshape(-1)
    return _state(flat, _axis(flat) if axis is None else float(axis)).reshape(phase.shape)


def domains(result: ScanResult, smooth: int = 3, *, sigma: float = DOMAIN_SIGMA,
            min_area: int = MIN_DOMAIN_AREA, axis: float | None = None) -> np.ndarray:
    """Polarization sign per pixel (+1 phase near :func:`phase_axis`, -1 opposite), int8.

    The piezoresponse projected on the phase axis, A :func:`polarization`, is smoothed by a
    Gaussian of ``sigma`` pixels and its sign taken (weighting by the amplitude lets strong
    pixels outvote the random phase of weak ones); then a median filter of ``smooth`` pixels
    and the merging of domains smaller than ``min_area`` pixels remove the remaining phase noise.
    NaN pixels count as zero response.

    Args:
        result: a scan.
        smooth: size of the median filter on the signs, pixels (1: none).
        sigma: standard deviation of the Gaussian smoothing, pixels (0: none).
        min_area: smallest domain kept, pixels (1: all).
        axis: phase of the +1 state, deg (default: this scan's :func:`phase_axis`).
    """
    amplitude = np.nan_to_num(np.asarray(result.amplitude, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    projected = amplitude * polarization(result, axis)
    if sigma > 0:
        projected = ndimage.gaussian_filter(projected, sigma, mode="nearest")
    sign = np.where(projected >= 0, 1, -1).astype(np.int8)
    if smooth > 1:
        sign = median_filter(sign, smooth)
    return _drop_small(sign, min_area) if min_area > 1 else sign


def wall_distance(result: ScanResult) -> np.ndarray:
    """Signed distance of every pixel centre to the nearest domain wall, pixels.

    A wall lies half-way between two 4-neighbours in different states, so the distance is the
    Euclidean distance to the nearest pixel of the other state minus half a pixel: +-0.5 next to
    a wall. Positive in +1 domains, negative in -1 domains; +-inf when the image has one domain.
    """
    up = domains(result) > 0
    if up.all() or not up.any():
        return np.where(up, np.inf, -np.inf)
    return np.where(up, ndimage.distance_transform_edt(up) - 0.5, 0.5 - ndimage.distance_transform_edt(~up))


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


def boundary_points(result: ScanResult, state: np.ndarray | None = None) -> np.ndarray:
    """(x, y) of every wall point of a scan, m, shape (n, 2): all walls, of any shape.

    A wall lies half-way between two 4-neighbour pixels in different states (as
    :func:`wall_distance` puts it), so each such pair is one point: the midpoint of their
    commanded positions. Neighbours along a line and between lines are both used; for a spiral
    these are neighbours along a turn and on the next turn at the same angle.

    Args:
        result: the scan, for its pixel positions.
        state: its domain state per pixel, shape of the scan (default: :func:`domains`).
    """
    state = domains(result) if state is None else state
    x, y = np.asarray(result.x, np.float64), np.asarray(result.y, np.float64)
    along = state[:, 1:] != state[:, :-1]
    across = state[1:, :] != state[:-1, :]
    mx = np.concatenate([((x[:, 1:] + x[:, :-1]) / 2)[along], ((x[1:, :] + x[:-1, :]) / 2)[across]])
    my = np.concatenate([((y[:, 1:] + y[:, :-1]) / 2)[along], ((y[1:, :] + y[:-1, :]) / 2)[across]])
    return np.column_stack([mx, my])


def wall_points(result: ScanResult, smooth: int = 3) -> np.ndarray:
    """(x, y) in m of the pixels on the longest wall, shape (n, 2), in row order."""
    mask = wall_mask(result, smooth)
    return np.column_stack([result.x[mask], result.y[mask]])


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
    phase = np.asarray(result.phase, dtype=np.float64)
    if smooth in (1, 3) and phase.ndim == 2 and phase.size > 0:
        # The steps below in one compiled pass: about 40 us instead of 300-400 us called between
        # other work (the agents' step scans and traces every pulse); the same values to round-off.
        oriented, fraction, left_side, right_side = _trace(phase, smooth == 3)
    else:
        state = polarization(result)
        if smooth > 1:
            state = median_filter(state, smooth)
        edge = max(1, state.shape[1] // 16)
        left_side, right_side = float(state[:, :edge].mean()), float(state[:, -edge:].mean())
        oriented = state if left_side >= 0 else -state
        fraction = ((1.0 + oriented) / 2.0).mean(axis=1)
    left_edge = spec.center[0] - spec.size[0] / 2
    return Wall(
        y=np.asarray(result.y[:, 0], dtype=np.float64).copy(),
        x=left_edge + fraction * spec.size[0],
        state=oriented,
        left=left_edge,
        width=spec.size[0],
        crossing=left_side * right_side < 0,
    )


@numba.njit(cache=True)
def _trace(phase, smooth):
    """:func:`trace_wall`'s state in one compiled pass: :func:`polarization` (its :func:`phase_axis`),
    the 3 x 3 median if ``smooth``, the edge means and orientation, each line's up fraction.

    Returns (oriented state, fraction per line, left edge mean, right edge mean)."""
    ny, nx = phase.shape
    flat = phase.copy().reshape(-1)
    state = _state(flat, _axis(flat)).reshape((ny, nx))
    if smooth:
        state = _median3(state)
    edge = max(1, nx // 16)
    left = 0.0
    right = 0.0
    for i in range(ny):
        for j in range(edge):
            left += state[i, j]
            right += state[i, nx - edge + j]
    left /= ny * edge
    right /= ny * edge
    sign = 1.0 if left >= 0 else -1.0
    fraction = np.empty(ny)
    for i in range(ny):
        total = 0.0
        for j in range(nx):
            state[i, j] *= sign
            total += (1.0 + state[i, j]) / 2.0
        fraction[i] = total / nx
    return state, fraction, left, right


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


def pixel_pitch(result: ScanResult) -> tuple[float, float]:
    """(along x, along y) pixel spacing, m: median step of ``result.x`` along a line, of ``result.y``
    between lines (the x spacing for a single line)."""
    x, y = np.asarray(result.x, np.float64), np.asarray(result.y, np.float64)
    dx = float(np.median(np.abs(np.diff(x, axis=1)))) if x.shape[1] > 1 else float("nan")
    dy = float(np.median(np.abs(np.diff(y, axis=0)))) if y.shape[0] > 1 else dx
    return dx, dy


# --- noise and texture of the amplitude ------------------------------------------------------


def _amplitude(result: ScanResult) -> np.ndarray:
    return np.asarray(result.amplitude, dtype=np.float64)


def _pixel_noise(a: np.ndarray) -> float:
    diff = np.diff(a, axis=1).ravel()
    robust_rms = 1.4826 * np.nanmedian(np.abs(diff - np.nanmedian(diff))) / np.sqrt(2.0)
    return float(robust_rms / np.nanmedian(a))


def _line_cv(a: np.ndarray) -> float:
    lines = np.nanmedian(a, axis=1)
    return float(np.nanstd(lines) / np.nanmean(lines))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@_nan_safe
def median_amplitude(result: ScanResult) -> float:
    """Median of the amplitude image, m (NaN pixels ignored)."""
    return np.nanmedian(_amplitude(result))


@_nan_safe
def pixel_noise(result: ScanResult) -> float:
    """Robust rms of the pixel noise relative to the median amplitude.

    1.4826 x the median absolute deviation of the differences of adjacent pixels along a line
    (a robust standard deviation that ignores the jumps at walls), / sqrt(2) because a
    difference holds the noise of two pixels, / :func:`median_amplitude`.
    """
    return _pixel_noise(_amplitude(result))


@_nan_safe
def line_cv(result: ScanResult) -> float:
    """Coefficient of variation (standard deviation / mean) of the per-line medians of the amplitude."""
    return _line_cv(_amplitude(result))


@_nan_safe
def pixel_correlation(result: ScanResult) -> float:
    """Pearson correlation of the amplitudes of horizontally adjacent pixels (along a line)."""
    a = _amplitude(result)
    return _pearson(a[:, :-1], a[:, 1:])


@_nan_safe
def line_correlation(result: ScanResult) -> float:
    """Pearson correlation of the amplitudes of vertically adjacent pixels (adjacent lines)."""
    a = _amplitude(result)
    return _pearson(a[:-1, :], a[1:, :])


@_nan_safe
def stripe_share(result: ScanResult) -> float:
    """Share of the small-scale amplitude variation that is line-to-line offsets (about 0 to 1).

    The residual is the amplitude minus its ``STRIPE_BOX``-pixel box mean (mode nearest, NaN
    pixels filled with the median first and left out after); the statistic is the standard
    deviation of the per-line medians of the residual over the standard deviation of the
    residual: 1 for pure per-line offsets, about 1.25 / sqrt(points per line) for white noise.
    """
    a = _amplitude(result)
    bad = ~np.isfinite(a)
    filled = np.where(bad, np.nanmedian(a), a)
    residual = filled - ndimage.uniform_filter(filled, size=STRIPE_BOX, mode="nearest")
    residual[bad] = np.nan
    return np.nanstd(np.nanmedian(residual, axis=1)) / np.nanstd(residual)


def power_spectrum(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of the mean-subtracted, Hann-windowed image.

    NaN pixels are set to the mean. Bins are 1/N cycles per pixel wide (N the shorter side),
    centred on multiples of 1/N; pixels are taken as square.

    Returns:
        (frequency of each bin, cycles per pixel; mean power in the bin, image units^2),
        from 0 to the Nyquist frequency.
    """
    a = np.asarray(image, dtype=np.float64)
    a = np.where(np.isfinite(a), a - np.nanmean(a), 0.0)
    ny, nx = a.shape
    n = min(ny, nx)
    power = np.abs(np.fft.fft2(a * np.outer(np.hanning(ny), np.hanning(nx)))) ** 2
    radius = np.hypot(np.fft.fftfreq(nx)[None, :], np.fft.fftfreq(ny)[:, None])
    k = np.rint(radius * n).astype(int).ravel()
    count = np.bincount(k)
    mean = np.bincount(k, weights=power.ravel()) / np.maximum(count, 1)
    top = n // 2 + 1
    return np.arange(top) / n, mean[:top]


@_nan_safe
def psd_slope(result: ScanResult) -> float:
    """Log-log slope of the amplitude's radially averaged power spectrum over the fit band.

    Least squares of log10 power against log10 frequency over the bins of :func:`power_spectrum`
    from ``PSD_LOW_CYCLES`` cycles per image to ``PSD_HIGH_CYCLES_PER_PIXEL`` cycles per pixel
    (8 to 32 cycles on 256 pixels): about -beta for a field with power ~ f^-beta, 0 for white
    noise. NaN for images whose band holds fewer than 5 bins (shorter side < 96 pixels).
    """
    a = _amplitude(result)
    f, power = power_spectrum(a)
    n = min(a.shape)
    band = (f >= PSD_LOW_CYCLES / n - 1e-12) & (f <= PSD_HIGH_CYCLES_PER_PIXEL + 1e-12) & (power > 0)
    if band.sum() < 5:
        return float("nan")
    return np.polyfit(np.log10(f[band]), np.log10(power[band]), 1)[0]


# --- phase states ----------------------------------------------------------------------------


def _circular_mean(phase: np.ndarray) -> float:
    """Circular mean, deg in [-90, 270) (the phase range of the instrument); NaN if empty."""
    phase = phase[np.isfinite(phase)]
    if phase.size == 0:
        return float("nan")
    mean = np.rad2deg(np.angle(np.exp(1j * np.deg2rad(phase)).mean()))
    return float(wrap_phase(mean))


def _circular_std(phase: np.ndarray) -> float:
    """Circular standard deviation sqrt(-2 ln R), deg, R the mean resultant length; NaN if empty."""
    phase = phase[np.isfinite(phase)]
    if phase.size == 0:
        return float("nan")
    resultant = np.abs(np.exp(1j * np.deg2rad(phase)).mean())
    return float(np.rad2deg(np.sqrt(-2.0 * np.log(max(resultant, 1e-300)))))


def phase_states(result: ScanResult) -> tuple[float, float]:
    """(up, down): circular mean phase of the +1 and of the -1 domains of :func:`domains`, deg.

    Means are over every pixel of the state, in [-90, 270) (NaN for a state with no pixel).
    """
    d, phase = domains(result), np.asarray(result.phase, dtype=np.float64)
    return _circular_mean(phase[d > 0]), _circular_mean(phase[d < 0])


@_nan_safe
def phase_up(result: ScanResult) -> float:
    """Circular mean phase of the +1 domains (the state near :func:`phase_axis`), deg in [-90, 270)."""
    return phase_states(result)[0]


@_nan_safe
def phase_down(result: ScanResult) -> float:
    """Circular mean phase of the -1 domains, deg in [-90, 270); NaN with no -1 domain."""
    return phase_states(result)[1]


@_nan_safe
def phase_separation(result: ScanResult) -> float:
    """Angle between the two states' mean phases on the circle, deg in [0, 180]; 180 ideally."""
    up, down = phase_states(result)
    return abs((down - up + 180.0) % 360.0 - 180.0)


@_nan_safe
def phase_scatter(result: ScanResult) -> float:
    """Phase noise inside domains: circular standard deviation, deg.

    For each state, sqrt(-2 ln R) of the phase of its pixels at least ``PHASE_INTERIOR`` pixels
    from any wall (R the mean resultant length; the plain angle, not the doubled one, as each
    state is one mode); then the median over the two states weighted by their pixel counts,
    which for two states is the value of the larger one (their mean if equal).
    """
    distance, phase = wall_distance(result), np.asarray(result.phase, dtype=np.float64)
    values, weights = [], []
    for inside in (distance >= PHASE_INTERIOR, distance <= -PHASE_INTERIOR):
        if inside.any():
            values.append(_circular_std(phase[inside]))
            weights.append(int(inside.sum()))
    if not values:
        return float("nan")
    if len(values) == 2 and weights[0] == weights[1]:
        return (values[0] + values[1]) / 2
    return values[int(np.argmax(weights))]


# --- walls and domains -----------------------------------------------------------------------


@_nan_safe
def wall_contrast(result: ScanResult) -> float:
    """Median amplitude on wall pixels / median amplitude of pixels at least ``WALL_INTERIOR``
    pixels from any wall. Wall pixels have a 4-neighbour in the other state (distance 0.5).
    NaN without a wall."""
    distance, a = np.abs(wall_distance(result)), _amplitude(result)
    wall = distance <= 0.5
    if not wall.any():
        return float("nan")
    return np.nanmedian(a[wall]) / np.nanmedian(a[distance >= WALL_INTERIOR])


def wall_amplitude_profile(result: ScanResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean amplitude against signed distance to the nearest wall, in 1-pixel bins.

    Bins [k, k + 1) pixels for k from -``PROFILE_HALF_WIDTH`` to ``PROFILE_HALF_WIDTH`` - 1.

    Returns:
        (mean signed distance of the pixels in each bin, pixels; their mean amplitude, m;
        their count). Empty bins have NaN distance and amplitude.
    """
    distance, a = wall_distance(result), _amplitude(result)
    half = PROFILE_HALF_WIDTH
    use = (np.abs(distance) < half) & np.isfinite(a)
    k = (np.floor(distance[use]) + half).astype(int)
    count = np.bincount(k, minlength=2 * half).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        where = np.bincount(k, weights=distance[use], minlength=2 * half) / count
        mean = np.bincount(k, weights=a[use], minlength=2 * half) / count
    return where, mean, count


def _crossing(s: np.ndarray, p: np.ndarray, start: int, step: int, level: float) -> float:
    """Distance where ``p`` first rises to ``level`` walking from bin ``start`` by ``step``."""
    i = start
    while 0 <= i + step < len(p):
        if p[i + step] >= level:
            return float(s[i] + (level - p[i]) / (p[i + step] - p[i]) * (s[i + step] - s[i]))
        i += step
    return float("nan")


@_nan_safe
def wall_width(result: ScanResult) -> float:
    """Full width at half depth of the amplitude dip at the walls, m.

    The profile of :func:`wall_amplitude_profile` (bins holding fewer than 10 pixels left out)
    has its minimum within ``DIP_SEARCH`` pixels of the wall. On each side the half level lies
    half-way between that minimum and the side's plateau: the median amplitude of that state's
    pixels at least ``WALL_INTERIOR`` pixels from any wall (of all such pixels if the state has
    fewer than 10; the two states' amplitudes differ when a background adds to the signal). The
    width is the distance between the two half-level crossings around the minimum (linearly
    interpolated) times the pixel pitch along x. NaN without a wall, without a dip below both
    plateaus, or when the profile does not climb back to the half level on both sides.
    """
    s, p, count = wall_amplitude_profile(result)
    keep = count >= 10
    s, p = s[keep], p[keep]
    search = np.abs(s) <= DIP_SEARCH
    if not search.any():
        return float("nan")
    low = int(np.flatnonzero(search)[np.argmin(p[search])])
    distance, a = wall_distance(result), _amplitude(result)
    interior = np.abs(distance) >= WALL_INTERIOR
    plateaus = []
    for side in (distance <= -WALL_INTERIOR, distance >= WALL_INTERIOR):
        plateaus.append(np.nanmedian(a[side if side.sum() >= 10 else interior]))
    if not p[low] < min(plateaus):
        return float("nan")
    left = _crossing(s, p, low, -1, (p[low] + plateaus[0]) / 2)
    right = _crossing(s, p, low, 1, (p[low] + plateaus[1]) / 2)
    return (right - left) * pixel_pitch(result)[0]


@_nan_safe
def minority_fraction(result: ScanResult) -> float:
    """Area share of the smaller of the two domain states, in [0, 0.5] (0: a single domain)."""
    up = float((domains(result) > 0).mean())
    return min(up, 1.0 - up)


@_nan_safe
def domain_radius(result: ScanResult) -> float:
    """Median equivalent-disc radius sqrt(area / pi) of the minority state's domains, m.

    Domains are the connected (4-neighbour) regions of :func:`domains` in the state with the
    smaller area; one cut by the image edge counts with its visible area. The area is in
    pixels, the radius scaled by the pixel pitch along x. NaN with a single domain.
    """
    d = domains(result)
    minority = 1 if (d > 0).sum() < (d < 0).sum() else -1
    labels, count = ndimage.label(d == minority)
    if count == 0:
        return float("nan")
    areas = np.bincount(labels.ravel())[1:]
    return np.median(np.sqrt(areas / np.pi)) * pixel_pitch(result)[0]


@_nan_safe
def wall_density(result: ScanResult) -> float:
    """Wall length per scanned area, m per m^2 (0 for a single domain).

    Every pair of 4-neighbours in different states is a wall segment as long as the pixel pitch
    across the pair: a pair along a line (x) adds pitch_y, a pair across lines adds pitch_x. The
    area is pixels x pitch_x x pitch_y. Exact for walls along x or y; a staircase overestimates
    an oblique wall by up to sqrt(2) (4 / pi on average over directions).
    """
    d = domains(result)
    dx, dy = pixel_pitch(result)
    along = int((d[:, 1:] != d[:, :-1]).sum())
    across = int((d[1:, :] != d[:-1, :]).sum())
    return (along * dy + across * dx) / (d.size * dx * dy)


# --- the panel -------------------------------------------------------------------------------


def statistic(name: str) -> Callable[[ScanResult], float]:
    """The function computing statistic ``name`` of :data:`STATISTICS`.

    Raises:
        UnknownStatisticError: ``name`` is not in the panel.
    """
    if name not in STATISTICS:
        raise UnknownStatisticError(f"statistic {name!r} is not in the panel; use one of: {', '.join(STATISTICS)}")
    return globals()[name]


def image_statistics(result: ScanResult, names: Iterable[str] | None = None) -> dict[str, float]:
    """The statistics panel of one scan: name -> value in the unit of :data:`STATISTICS`.

    Args:
        result: a raster scan (lines along axis 1).
        names: statistics to compute (default: all, in the panel's order).

    Raises:
        UnknownStatisticError: a name is not in the panel.
    """
    functions = [(name, statistic(name)) for name in (STATISTICS if names is None else names)]
    return {name: fn(result) for name, fn in functions}


def amplitude_statistics(amplitude: np.ndarray) -> dict[str, float]:
    """Noise statistics of an amplitude image (lines along axis 1), as docs/physics.md quotes them.

    Returns:
        ``median`` (m); ``pixel_noise`` and ``line_cv`` as :func:`pixel_noise` and
        :func:`line_cv` define them.
    """
    a = np.asarray(amplitude, dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"median": float(np.nanmedian(a)), "pixel_noise": _pixel_noise(a), "line_cv": _line_cv(a)}

