"""The PFM signal chain: from the polarization field to height, amplitude and phase.

What the lock-in sees, from the sample up (docs/physics.md, "PFM imaging"):

* the film's local piezoresponse d33(r) u(r): u is the normalized polarization, d33(r) the
  clamped-film coefficient times the local out-of-plane (c) domain fraction of a polydomain
  film, a smooth random field over tens to hundreds of nm (in-plane a-domain bands give no
  vertical response): the texture of real amplitude images, dark patches with noisy phase;
* averaged over the tip footprint (:meth:`twin.tipfield.SpherePlaneTip.footprint_hat`), so
  opposite domains cancel at a wall and the amplitude dips there;
* plus an electrostatic/cantilever background, a fixed complex offset: where the piezoresponse
  is weak (walls, the weaker parts of the film) the phase is pulled towards the background's,
  and the two polarization states show unequal amplitudes, as real scans do;
* through the cantilever in contact, a simple harmonic oscillator driven a little below its
  contact resonance: the resonance follows the local contact stiffness, which varies with the
  topography, so amplitude and phase vary with it (the reason band excitation exists; Jesse et
  al. 2007);
* times the day's gain (contact, cantilever calibration), which drifts as a random walk over
  the frame, plus small per-line complex offsets and gain changes (contact and setpoint changes
  between lines), plus white noise on both
  quadratures, all filtered along the line by the lock-in's output filter (one pole, time
  constant ``lockin_tau`` of a pixel time).

Everything that belongs to the sample (d33 map, topography) comes from the sample's random
stream; everything that belongs to the instrument's day (gain, phase offset, noise levels)
arrives in :class:`PfmParams` (:mod:`twin.day`); the per-scan noise comes from the noise stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft

from control.contract import wrap_phase
from twin.film import Film, correlated_noise, power_law_field


@dataclass(frozen=True)
class PfmParams:
    """Signal-chain parameters.

    Attributes:
        d33: median effective clamped-film piezo coefficient of the sample, m/V.
        gain: the day's overall response gain (tip contact, cantilever calibration).
        drive: AC drive amplitude on the tip, V.
        phase_offset: lock-in phase of an up domain, deg.
        background: electrostatic background amplitude, in units of d33 * drive.
        background_phase: phase of the background relative to an up domain, deg.
        texture: steepness of the local c-domain fraction's logistic in the texture field.
        texture_amount: how much of that non-uniformity the film has: 0 is a uniform film of
            c-domains (no dark patches, no crosstalk), 1 the polydomain film.
        texture_bias: offset of that logistic (positive: mostly c-domains, bright).
        texture_scales: (shortest, longest) wavelength of the d33 map's power-law spectrum, m.
        texture_exponent: beta of its spectrum P(k) ~ k^-beta between those wavelengths.
        crosstalk: in-plane response of the a-domains that the cantilever's buckling mixes into
            the vertical signal, in units of d33 where the film is all a-domains; its sign
            follows the a1/a2 orientation, which alternates in bands of ``crosstalk_scale``.
        crosstalk_phase: phase of that signal relative to an up domain, deg.
        crosstalk_scale: correlation length of the a1/a2 orientation, m.
        noise: white noise rms per quadrature and pixel, in units of d33 * drive.
        line_offset: rms of the per-line complex offset, in units of d33 * drive, at the
            reference tip speed.
        line_gain: rms of the per-line log-gain at the reference tip speed. Both grow with the
            tip speed (as its ``line_speed_exponent`` power): the faster the tip, the larger the
            topography feedback error and the contact changes from one line to the next.
        line_speed_exponent: how line artefacts scale with the tip speed.
        reference_speed: tip speed at which ``line_offset`` and ``line_gain`` apply, m/s.
        gain_drift: rms over a frame of the slow drift of the log-gain (the tip-sample contact
            and the cantilever's response change over the minutes a frame takes): a smooth
            curve of the frame's ``gain_drift_modes`` slowest modes with 1/f amplitudes and
            random phases.
        gain_drift_modes: how many of the frame's slowest modes the drift has.
        lockin_tau: time constant of the lock-in output filter, in pixel times.
        quality: quality factor Q of the contact resonance.
        detuning: drive frequency over the mean contact resonance, minus 1.
        resonance_spread: rms of the local contact resonance, relative; it follows the
            topography (stiffer contact on the grains' tops and slopes alike).
        height_rms: topography rms, m.
        height_correlation: topography correlation length, m.
        height_noise: height white noise, m.
        height_line_offset: rms of per-line height offsets, m.
        contact_potential: tip-sample contact potential difference, V. The electrostatic
            background is proportional to the DC bias minus it (the capacitive force goes as
            (V_dc - V_cpd) V_ac), so ``background`` is its value at 0 V DC and it grows with
            the DC bias of a field-on BEPS read-out.
        contact_sensitivity: d ln(f0) / d ln(k*) of the contact resonance for the contact
            stiffness k* (0.5 for a soft contact, smaller for the stiff contact of a PFM tip).
            A Hertzian contact's k* grows as the tip radius to the 1/3, so a tip of radius R
            moves the resonance by (R / reference_radius)^(contact_sensitivity / 3).
        reference_radius: tip radius at which the mean contact resonance is the drive
            frequency / (1 + detuning), m.
    """

    d33: float = 76e-12
    gain: float = 1.0
    drive: float = 1.0
    phase_offset: float = 20.0
    background: float = 0.2
    background_phase: float = 35.0
    texture: float = 2.2
    texture_bias: float = 0.74
    texture_amount: float = 1.0
    texture_scales: tuple[float, float] = (20e-9, 2000e-9)
    texture_exponent: float = 3.2
    crosstalk: float = 0.35
    crosstalk_phase: float = 90.0
    crosstalk_scale: float = 60e-9
    noise: float = 0.095
    line_offset: float = 0.01
    line_gain: float = 0.02
    gain_drift: float = 0.36
    gain_drift_modes: int = 2
    reference_speed: float = 1e-6
    line_speed_exponent: float = 0.3
    lockin_tau: float = 0.8
    quality: float = 100.0
    detuning: float = -0.0195
    resonance_spread: float = 0.0022
    height_rms: float = 1e-9
    height_correlation: float = 60e-9
    height_noise: float = 50e-12
    height_line_offset: float = 0.3e-9
    contact_potential: float = -2.0
    contact_sensitivity: float = 0.12
    reference_radius: float = 25e-9


class PfmSignal:
    """Turns the film's polarization into lock-in channels at arbitrary tip positions.

    Args:
        params: signal-chain parameters.
        film: the film being imaged.
        rng: the sample's random stream: topography and d33 map (drawn once).
    """

    def __init__(self, params: PfmParams, film: Film, rng: np.random.Generator) -> None:
        self.params = params
        self.film = film
        n, dx = film.params.grid, film.params.spacing
        self.topography = params.height_rms * correlated_noise(rng, (n, n), params.height_correlation / dx)
        texture = power_law_field(rng, (n, n), dx, params.texture_scales, params.texture_exponent)
        # The vertical response is that of the out-of-plane (c) domains; the in-plane (a) domains
        # of a polydomain PbTiO3 film give none. Their local volume fraction varies smoothly.
        c_map = 1.0 / (1.0 + np.exp(-(params.texture * texture + params.texture_bias)))
        c_fraction = 1.0 - params.texture_amount * (1.0 - c_map)
        self.d33 = params.d33 * c_fraction
        # Where the film is a-domains, the vertical signal carries their in-plane response
        # (buckling crosstalk), with the sign of the local a1/a2 orientation: a polarization-
        # independent, spatially varying background that scrambles the phase of dark regions.
        orientation = np.sign(correlated_noise(rng, (n, n), params.crosstalk_scale / dx))
        self.crosstalk = params.crosstalk * params.d33 * (1.0 - c_fraction) * orientation
        self._transfer = self.cantilever()
        self._cache: tuple[object, int, np.ndarray] | None = None
        self._fixed_cache: tuple[object, tuple[np.ndarray | None, complex]] | None = None
        self._piezo: tuple[object, int, np.ndarray, complex] | None = None

    def cantilever(self) -> np.ndarray:
        """Complex transfer of the cantilever in contact on the film grid, 1 at the mean resonance.

        H = f0^2 / (f0^2 - f^2 + i f f0 / Q) at the drive frequency f = (1 + detuning) * mean f0,
        for the local resonance f0(r) = mean f0 * (1 + spread * topography / rms), divided by H
        at the mean resonance, so the day's phase offset stays that of an up domain.
        """
        p = self.params
        f0 = 1.0 + p.resonance_spread * self.topography / p.height_rms if p.height_rms > 0 else 1.0
        f = 1.0 + p.detuning

        def sho(f0):
            return f0**2 / (f0**2 - f**2 + 1j * f * f0 / p.quality)

        return sho(f0) / sho(1.0)

    def response(self) -> np.ndarray:
        """Noise-free complex signal on the film grid, m (cached per tip and film version).

        d33(r) u(r) averaged over the footprint, times the drive, plus the background, through
        the cantilever, at the phase of an up domain (0); gain, offsets, noise and the phase
        offset are added by :meth:`acquire`.
        """
        key = (self.film.params.tip, self.film.version)
        if self._cache is None or self._cache[:2] != key:
            piezo, background = self.piezo()
            self._cache = (*key, self._transfer * self.params.drive * (piezo + background))
        return self._cache[2]

    def piezo(self) -> tuple[np.ndarray, complex]:
        """(piezoresponse, electrostatic background) on the film grid per unit of ``drive``, m (cached).

        The piezoresponse is d33(r) u(r) averaged over the tip's footprint plus the a-domains'
        crosstalk, at the phase of an up domain; the background is that of the contact
        potential at zero DC bias (``background`` of d33 at ``background_phase``). Band
        excitation scales the first by its drive and the second by its drive and DC bias.
        """
        f = self.film
        key = (f.params.tip, f.version)
        if self._piezo is None or self._piezo[:2] != key:
            kernel = f.params.tip.footprint_hat(f.u.shape, f.params.spacing, f.params.thickness)
            local = self.d33 * f.u
            smoothed = _convolve(local, kernel)
            lateral, background = self._fixed(kernel)
            if lateral is not None:
                smoothed = smoothed + lateral
            self._piezo = (*key, smoothed, background)
        return self._piezo[2], self._piezo[3]

    def _fixed(self, kernel: np.ndarray) -> tuple[np.ndarray | None, complex]:
        """The terms of :meth:`response` that pulses do not change: (crosstalk or None, background), cached per tip."""
        tip = self.film.params.tip
        if self._fixed_cache is None or self._fixed_cache[0] != tip:
            p = self.params
            lateral = None
            if p.crosstalk:
                lateral = scipy.fft.irfft2(scipy.fft.rfft2(self.crosstalk) * kernel, s=self.crosstalk.shape)
                lateral = lateral * np.exp(1j * np.deg2rad(p.crosstalk_phase))
            background = p.background * p.d33 * np.exp(1j * np.deg2rad(p.background_phase))
            self._fixed_cache = (tip, (lateral, background))
        return self._fixed_cache[1]

    def _sample(self, grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``grid`` (on the film's pixels, periodic) bilinearly interpolated at film positions (m)."""
        dx = self.film.params.spacing
        return _bilinear_wrap(grid, np.asarray(y, dtype=float) / dx - 0.5, np.asarray(x, dtype=float) / dx - 0.5)

    def acquire(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                reverse: bool = False, speed: float | None = None) -> dict[str, np.ndarray]:
        """Channels at actual tip positions ``x``, ``y`` (m, shape (lines, points)).

        Args:
            x, y: where the tip is at each pixel, m.
            rng: the per-scan noise stream.
            reverse: the pixels of each line are visited right to left (a retrace), so the
                lock-in filter runs the other way.
            speed: the tip's speed along the lines, m/s (default: the reference speed).

        Returns:
            "height" (m), "amplitude" (m), "phase" (deg in [-90, 270)), each of the input shape.
        """
        p = self.params
        lines = x.shape[0]
        unit = p.d33 * p.drive
        lines_scale = ((p.reference_speed if speed is None else speed) / p.reference_speed) ** p.line_speed_exponent
        # The per-scan noise, drawn in this order: the gain drift's mode phases, the per-line
        # log-gain, offset (real, imaginary), the pixels' noise (real, imaginary), the per-line
        # height offset and the height noise.
        phases = rng.uniform(0.0, 2 * np.pi, p.gain_drift_modes)
        line_gain, offset_re, offset_im = (rng.standard_normal(lines) for _ in range(3))
        noise_re, noise_im = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
        height_line, height_pixel = rng.standard_normal(lines), rng.standard_normal(x.shape)
        dx = self.film.params.spacing
        rows = np.asarray(y, dtype=float) / dx - 0.5
        cols = np.asarray(x, dtype=float) / dx - 0.5
        height, amplitude, phase = _chain(
            self.response(), self.topography, rows, cols, phases, line_gain, offset_re, offset_im, noise_re, noise_im,
            height_line, height_pixel, p.gain, p.gain_drift, lines_scale * p.line_gain,
            lines_scale * p.line_offset * unit, p.noise * unit, np.exp(-1.0 / p.lockin_tau) if p.lockin_tau > 0 else 0.0,
            p.lockin_tau > 0, reverse, p.phase_offset, p.height_line_offset, p.height_noise)
        return {"height": height, "amplitude": amplitude, "phase": wrap_phase(phase)}


@numba.njit(cache=True)
def _chain(response, topography, rows, cols, phases, line_gain, offset_re, offset_im, noise_re, noise_im, height_line,
           height_pixel, gain, gain_drift, line_gain_rms, line_offset_rms, noise_rms, pole, filtered, reverse,
           phase_offset, height_line_offset, height_noise):
    """:meth:`PfmSignal.acquire` after its draws, compiled: the gain drift and per-line gain and offset,
    the response sampled at the tip, the noise, the lock-in's one-pole filter in the order the pixels
    were visited (``lfilter([1 - pole], [1, -pole], zi=pole * first)``), amplitude, phase (before
    :func:`control.contract.wrap_phase`) and height. The same arithmetic as the numpy expressions it replaced, to round-off (about 30 numpy
    calls that cost 0.3-0.5 ms per scan between other work)."""
    lines, points = rows.shape
    modes = phases.shape[0]
    curve = np.zeros(lines)
    for i in range(lines):
        for m in range(1, modes + 1):
            curve[i] += np.sin(2 * np.pi * m * (i + 0.5) / lines + phases[m - 1]) / m
    mean = curve.mean()
    spread = max(np.sqrt(((curve - mean) ** 2).mean()), 1e-12)
    signal = _bilinear_wrap(response, rows, cols)
    height = _bilinear_wrap(topography, rows, cols)
    amplitude = np.empty((lines, points))
    phase = np.empty((lines, points))
    b0 = 1.0 - pole
    for i in range(lines):
        g = gain * np.exp(line_gain_rms * line_gain[i] + gain_drift * (curve[i] - mean) / spread)
        offset = line_offset_rms * (offset_re[i] + 1j * offset_im[i])
        for j in range(points):
            signal[i, j] = g * (signal[i, j] + offset) + gain * (noise_rms * (noise_re[i, j] + 1j * noise_im[i, j]))
        if filtered:
            first = points - 1 if reverse else 0
            state = pole * signal[i, first]
            for k in range(points):
                j = points - 1 - k if reverse else k
                out = b0 * signal[i, j] + state
                state = pole * out
                signal[i, j] = out
        for j in range(points):
            v = signal[i, j]
            amplitude[i, j] = abs(v)
            phase[i, j] = np.rad2deg(np.arctan2(v.imag, v.real)) + phase_offset
            height[i, j] = height[i, j] + height_line_offset * height_line[i] + height_noise * height_pixel[i, j]
    return height, amplitude, phase


@numba.njit(cache=True)
def _convolve(image, kernel_hat):
    """``irfft2(rfft2(image) * kernel_hat)``, compiled (rocket-fft's pocketfft, scipy's FFT; equal
    to scipy's to 2e-15 of the values), without the Python calls that cost a fresh image after
    each pulse (the agents' step) 100-150 us."""
    return scipy.fft.irfft2(scipy.fft.rfft2(image) * kernel_hat, s=image.shape)


@numba.njit(cache=True)
def _bilinear_wrap(grid, rows, cols):
    """``grid`` at fractional pixel (row, col) pairs, bilinear, periodic: ``scipy.ndimage.map_coordinates``
    with ``order=1, mode="grid-wrap"`` to the last bit or two, one call for a complex grid, 7x faster
    on a 32 x 32 scan (12 against 85 us)."""
    ny, nx = grid.shape
    out = np.empty(rows.shape, dtype=grid.dtype)
    for k in range(rows.size):
        r, c = rows.flat[k], cols.flat[k]
        fr, fc = np.floor(r), np.floor(c)
        wr, wc = r - fr, c - fc
        i0, j0 = int(fr) % ny, int(fc) % nx
        i1, j1 = (i0 + 1) % ny, (j0 + 1) % nx
        out.flat[k] = ((1.0 - wr) * ((1.0 - wc) * grid[i0, j0] + wc * grid[i0, j1])
                       + wr * ((1.0 - wc) * grid[i1, j0] + wc * grid[i1, j1]))
    return out
