"""The PFM signal chain: from the polarization field to height, amplitude and phase.

The lock-in sees the local piezoresponse d33 * u averaged over the tip footprint (the field of
the effective point charge, K(rho) ~ d / (rho^2 + d^2)^(3/2)), so opposite domains cancel at a
wall and the amplitude dips there, over a width that grows with the tip radius. On top: an
electrostatic background (a fixed complex offset: it makes the two phase states not exactly
180 deg apart and their amplitudes unequal), a phase offset of the lock-in, white noise on both
quadratures, and line-to-line gain changes with a 1/f (random-walk) part, as real scans show
(PHYSICS.md: pixel noise 6-23 % of the median amplitude, per-line median CV 0.17-0.39).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.ndimage import map_coordinates

from twin.film import Film, correlated_noise


@dataclass(frozen=True)
class PfmParams:
    """Signal-chain parameters.

    Attributes:
        d33: effective clamped-film piezo coefficient, m/V.
        drive: AC drive amplitude on the tip, V.
        phase_offset: lock-in phase of an up domain, deg.
        background: electrostatic background amplitude, in units of d33 * drive.
        background_phase: phase of the background, deg.
        noise: white noise rms per quadrature and pixel, in units of d33 * drive.
        line_gain: rms of the per-line log-gain (contact and setpoint changes line to line).
        flicker: rms step of the per-line log-gain random walk (1/f-like drift of the gain).
        height_rms: topography rms, m.
        height_correlation: topography correlation length, m.
        height_noise: height white noise, m.
        height_line_offset: rms of per-line height offsets, m.
    """

    d33: float = 50e-12
    drive: float = 1.0
    phase_offset: float = 20.0
    background: float = 0.12
    background_phase: float = 70.0
    noise: float = 0.13
    line_gain: float = 0.24
    flicker: float = 0.02
    height_rms: float = 1e-9
    height_correlation: float = 60e-9
    height_noise: float = 50e-12
    height_line_offset: float = 0.3e-9


def footprint(shape: tuple[int, int], spacing: float, height: float) -> np.ndarray:
    """Normalized periodic tip footprint K(rho) ~ d / (rho^2 + d^2)^(3/2) on the film grid."""
    ny, nx = shape
    dy = np.minimum(np.arange(ny), ny - np.arange(ny)) * spacing
    dx = np.minimum(np.arange(nx), nx - np.arange(nx)) * spacing
    rho2 = dy[:, None] ** 2 + dx[None, :] ** 2
    k = height / (rho2 + height**2) ** 1.5
    return k / k.sum()


class PfmSignal:
    """Turns the film's polarization into lock-in channels at arbitrary tip positions.

    Args:
        params: signal-chain parameters.
        film: the film being imaged.
        rng: source of the topography (drawn once) and of the measurement noise (per scan).
    """

    def __init__(self, params: PfmParams, film: Film, rng: np.random.Generator) -> None:
        self.params = params
        self.film = film
        n = film.params.grid
        self._kernel: tuple[float, np.ndarray] | None = None
        self.topography = params.height_rms * correlated_noise(
            rng, (n, n), params.height_correlation / film.params.spacing
        )
        self._cache: tuple[int, np.ndarray] | None = None

    def _kernel_hat(self) -> np.ndarray:
        """Fourier transform of the footprint of the film's current tip (rebuilt if the tip changes)."""
        height = self.film.params.tip.charge_height
        if self._kernel is None or self._kernel[0] != height:
            n = self.film.params.grid
            self._kernel = (height, scipy.fft.rfft2(footprint((n, n), self.film.params.spacing, height)))
            self._cache = None
        return self._kernel[1]

    def response(self) -> np.ndarray:
        """Noise-free piezoresponse d33 * drive * (K * u) on the film grid, m (cached per film version)."""
        kernel_hat = self._kernel_hat()
        if self._cache is None or self._cache[0] != self.film.version:
            u = self.film.u
            smoothed = scipy.fft.irfft2(scipy.fft.rfft2(u) * kernel_hat, s=u.shape)
            self._cache = (self.film.version, self.params.d33 * self.params.drive * smoothed)
        return self._cache[1]

    def _sample(self, grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx = self.film.params.spacing
        coords = np.stack([y.ravel() / dx - 0.5, x.ravel() / dx - 0.5])
        return map_coordinates(grid, coords, order=1, mode="grid-wrap").reshape(x.shape)

    def acquire(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Channels at actual tip positions ``x``, ``y`` (m, shape (lines, points)).

        Returns:
            "height" (m), "amplitude" (m), "phase" (deg in [-90, 270)), each of the input shape.
        """
        p = self.params
        lines = x.shape[0]
        unit = p.d33 * p.drive
        background = p.background * unit * np.exp(1j * np.deg2rad(p.background_phase))
        log_gain = p.line_gain * rng.standard_normal(lines) + np.cumsum(p.flicker * rng.standard_normal(lines))
        gain = np.exp(log_gain - log_gain.mean())[:, None]
        noise = p.noise * unit * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))
        signal = gain * (self._sample(self.response(), x, y) + background) + noise
        phase = np.rad2deg(np.angle(signal)) + p.phase_offset
        height = (
            self._sample(self.topography, x, y)
            + p.height_line_offset * rng.standard_normal(lines)[:, None]
            + p.height_noise * rng.standard_normal(x.shape)
        )
        return {
            "height": height,
            "amplitude": np.abs(signal),
            "phase": (phase + 90.0) % 360.0 - 90.0,
        }
