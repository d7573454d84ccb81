"""Band excitation on the twin: the cantilever in contact as a simple harmonic oscillator.

The response to a band of drive frequencies at a tip position is the local piezoresponse of the
film (the same d33 u footprint average and crosstalk that imaging sees, :meth:`PfmSignal.piezo`)
plus the electrostatic background, through the cantilever's contact resonance:

    R(f) = g exp(i theta) [drive P(r) + drive B (1 - V_dc / V_cpd)] H(f; f0(r)) / H(f_d; f0_mean)

with H(f; f0) = f0^2 / (f0^2 - f^2 + i f f0 / Q), the day's gain g and phase offset theta, the
lock-in's reference f_d = the imaging drive frequency, and the mean contact resonance
f0_mean = f_d / (1 + detuning). At f = f_d and V_dc = 0 it is the imaging signal, so BE and
imaging agree where they overlap. The local resonance follows the contact stiffness: the
topography (as in imaging, ``resonance_spread``) and the tip radius (a blunter tip, a stiffer
Hertzian contact, a higher resonance: ``contact_sensitivity``). The background grows with the DC
bias (the capacitive force goes as (V_dc - V_cpd) V_ac), which tilts field-on loops.

Noise: complex white noise per bin of the imaging noise level scaled to the read-out time,
``noise`` d33 drive sqrt(t_ref / duration) with t_ref the dwell of a 256-point line at 1 Hz: a BE
read-out as long as a pixel is as noisy per bin as that pixel.
"""

from __future__ import annotations

import numpy as np

from control.spectroscopy import Band
from twin.pfm import PfmSignal

#: Dwell of one pixel of a 256-point line at 1 Hz, s: the time the imaging noise level refers to.
REFERENCE_DWELL = 1.0 / 256


class BandExcitation:
    """BE spectra of the twin's film through its cantilever.

    Args:
        pfm: the twin's signal chain (its film, topography, d33 map, day).
        drive_frequency: the imaging lock-in's reference frequency, Hz.
    """

    def __init__(self, pfm: PfmSignal, drive_frequency: float) -> None:
        self.pfm = pfm
        self.drive_frequency = float(drive_frequency)
        p = pfm.params
        self.mean_resonance = self.drive_frequency / (1.0 + p.detuning)

    def resonance(self, x: float, y: float) -> float:
        """Local contact resonance at film position (x, y), Hz."""
        p = self.pfm.params
        topo = float(self.pfm._sample(self.pfm.topography, np.array([x]), np.array([y]))[0])
        relative = 1.0 + p.resonance_spread * topo / p.height_rms if p.height_rms > 0 else 1.0
        radius = self.pfm.film.params.tip.radius
        return self.mean_resonance * relative * (radius / p.reference_radius) ** (p.contact_sensitivity / 3.0)

    def _h(self, f, f0: float) -> np.ndarray:
        q = self.pfm.params.quality
        return f0**2 / (f0**2 - np.asarray(f) ** 2 + 1j * np.asarray(f) * f0 / q)

    def spectrum(self, x: float, y: float, band: Band, dc: float, rng: np.random.Generator,
                 frequencies: np.ndarray | None = None) -> np.ndarray:
        """The complex response per bin (m) at film position (x, y) m, with ``dc`` V on the tip.

        ``frequencies``: where to read it, Hz (default ``band.frequencies()``; co-simulation reads
        at its table's harmonics)."""
        p = self.pfm.params
        piezo, background = self.pfm.piezo()
        px, py = np.array([x]), np.array([y])
        local = complex(self.pfm._sample(piezo, px, py)[0])
        electrostatic = background * (1.0 - dc / p.contact_potential)
        f = band.frequencies() if frequencies is None else np.asarray(frequencies, dtype=float)
        transfer = self._h(f, self.resonance(x, y)) / self._h(self.drive_frequency, self.mean_resonance)
        signal = p.gain * np.exp(1j * np.deg2rad(p.phase_offset)) * band.amplitude * (local + electrostatic) * transfer
        sigma = p.noise * p.d33 * band.amplitude * p.gain * np.sqrt(REFERENCE_DWELL / band.duration)
        noise = sigma * (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size))
        return signal + noise
