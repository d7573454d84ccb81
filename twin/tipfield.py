"""Electric field under a biased PFM tip on a thin film over a grounded bottom electrode.

The tip is the sphere-plane model of Kalinin, Morozovska et al. reduced to an effective point
charge: a tip of apex radius R0 in a gap medium of permittivity eps_e above an anisotropic
ferroelectric (eps11, eps33) acts as a charge at a height d = eps_e R0 / kappa,
kappa = sqrt(eps11 eps33), whose surface potential on a half-space is U d / sqrt(rho^2 + d^2).

The film is a slab of thickness h on a grounded electrode. Solving Laplace's equation in the
anisotropic slab (decay rate k / gamma, gamma = sqrt(eps33 / eps11)) with continuity of the
potential and of D_z at the surface gives, in 2D Fourier space, the half-space solution times

    T(k) = (eps_e + kappa) tanh(k h / gamma) / (eps_e tanh(k h / gamma) + kappa),

and inside the film phi(k, z) = phi_s(k) sinh(k (h - z) / gamma) / sinh(k h / gamma). Two
consequences the twin uses (docs/physics.md, "Tip field"):

* Writing: the out-of-plane field averaged over the thickness is exactly phi_s(rho) / h. T -> 0
  at small k removes the 1/rho tail that the half-space phi_s / h has: the electrode's image
  charges confine the writing field to a few film thicknesses (a 1/rho^3 dipole tail remains).
* Imaging: the piezoresponse under the tip is the strain d33 E_z of every volume element,
  weighted by how a strain source at distance R from the contact moves the surface under it.
  In the decoupling approximation (Kalinin, Eliseev, Morozovska 2006; Felten et al. 2004) that
  weight falls as 1 / R^2 (the gradient of the Boussinesq Green's function), regularized at the
  contact radius a. The footprint W(rho) = int_0^h E_z(rho, z) / (rho^2 + z^2 + a^2) dz is
  much more compact than the surface field alone: a 25 nm tip images 40 nm domains with full
  phase contrast and walls 20-30 nm wide, as real PFM does (Tian et al. 2008).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.special

EPSILON_0 = 8.8541878128e-12  # F/m

#: Depth samples of the imaging footprint's integral over the film thickness (trapezoid rule).
_DEPTHS = 17


@dataclass(frozen=True)
class SpherePlaneTip:
    """Effective point-charge model of a biased tip in contact with the film.

    Attributes:
        radius: tip apex radius R0, m.
        eps11: in-plane relative permittivity of the film.
        eps33: out-of-plane relative permittivity of the film.
        eps_e: relative permittivity of the tip-surface gap (81: water meniscus).
        load: contact force of the tip on the film, N (sets the Hertz contact radius).
        contact_modulus: reduced Young's modulus E* of the tip-film contact, Pa.
    """

    radius: float = 25e-9
    eps11: float = 120.0
    eps33: float = 65.0
    eps_e: float = 81.0
    load: float = 500e-9
    contact_modulus: float = 100e9

    def __post_init__(self) -> None:
        for name in ("radius", "eps11", "eps33", "eps_e", "load", "contact_modulus"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"SpherePlaneTip.{name}={value!r} must be a positive finite number")

    @property
    def kappa(self) -> float:
        """Effective dielectric constant sqrt(eps11 eps33)."""
        return math.sqrt(self.eps11 * self.eps33)

    @property
    def anisotropy(self) -> float:
        """gamma = sqrt(eps33 / eps11)."""
        return math.sqrt(self.eps33 / self.eps11)

    @property
    def charge_height(self) -> float:
        """Height d of the effective point charge above the surface, m."""
        return self.eps_e * self.radius / self.kappa

    @property
    def contact_radius(self) -> float:
        """Hertz contact radius a = (3 F R0 / 4 E*)^(1/3), m (about 3 nm for the defaults)."""
        return (3 * self.load * self.radius / (4 * self.contact_modulus)) ** (1 / 3)

    def charge(self, bias: float) -> float:
        """Effective charge Q for tip bias ``bias`` (V), C."""
        return 2 * math.pi * EPSILON_0 * self.eps_e * self.radius * bias * (self.kappa + self.eps_e) / self.kappa

    def transfer(self, k: np.ndarray, thickness: float) -> np.ndarray:
        """T(k): surface potential on the electroded slab over that on a half-space (k in rad/m)."""
        t = np.tanh(np.asarray(k, dtype=np.float64) * thickness / self.anisotropy)
        return (self.eps_e + self.kappa) * t / (self.eps_e * t + self.kappa)

    def surface_potential(self, rho: np.ndarray | float, bias: float, thickness: float) -> np.ndarray:
        """Surface potential phi_s(rho) of the film on its electrode, V (rho in m)."""
        r, table = _potential_table(self, thickness)
        return bias * np.interp(np.abs(rho), r, table, right=0.0)

    def field(self, rho: np.ndarray | float, bias: float, thickness: float) -> np.ndarray:
        """Out-of-plane field averaged over the film thickness, phi_s(rho) / h, V/m."""
        return self.surface_potential(rho, bias, thickness) / thickness

    def footprint_hat(self, shape: tuple[int, int], spacing: float, thickness: float) -> np.ndarray:
        """rfft2 of the normalized imaging footprint on a periodic grid (sum 1), see the module doc."""
        return _footprint_hat(self, shape, float(spacing), float(thickness))


@lru_cache(maxsize=16)
def _potential_table(tip: SpherePlaneTip, thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """phi_s(rho) / U on a radial grid out to 60 film thicknesses (beyond: 0).

    phi_s = d / sqrt(rho^2 + d^2) + d int_0^inf exp(-k d) (T(k) - 1) J0(k rho) dk. T - 1 decays
    as exp(-2 k h / gamma), so the correction integral needs k only up to about 20 gamma / h.
    """
    d, g = tip.charge_height, tip.anisotropy
    r_max = 60 * thickness + 10 * d
    r = np.concatenate([[0.0], np.geomspace(1e-3 * d, r_max, 700)])
    k_max = 20 * g / thickness
    n = int(np.ceil(k_max * r_max / 0.2))  # J0 resolved: k steps of at most 0.2 / r_max
    k = (np.arange(n) + 0.5) * (k_max / n)
    weight = d * np.exp(-k * d) * (tip.transfer(k, thickness) - 1.0) * (k_max / n)
    correction = np.array([weight @ scipy.special.j0(k * rho) for rho in r])
    return r, d / np.sqrt(r**2 + d**2) + correction


@lru_cache(maxsize=16)
def _footprint_hat(tip: SpherePlaneTip, shape: tuple[int, int], spacing: float, thickness: float) -> np.ndarray:
    ny, nx = shape
    g, d = tip.anisotropy, tip.charge_height
    ky = 2 * np.pi * scipy.fft.fftfreq(ny, spacing)[:, None]
    kx = 2 * np.pi * scipy.fft.rfftfreq(nx, spacing)[None, :]
    k = np.maximum(np.hypot(kx, ky), 1e-3 / (max(ny, nx) * spacing))
    # E_z(k, z) = phi_s(k) (k / gamma) cosh(k (h - z) / gamma) / sinh(k h / gamma), with the
    # half-space phi(k) ~ exp(-k d) / k; written with decaying exponentials only.
    a = k / g
    surface = np.exp(-k * d) * tip.transfer(k, thickness) / g / -np.expm1(-2 * a * thickness)
    dy = np.minimum(np.arange(ny), ny - np.arange(ny)) * spacing
    dx = np.minimum(np.arange(nx), nx - np.arange(nx)) * spacing
    rho2 = dy[:, None] ** 2 + dx[None, :] ** 2 + tip.contact_radius**2
    kernel = np.zeros(shape)
    depths = np.linspace(0.0, thickness, _DEPTHS)
    for i, z in enumerate(depths):
        ez = scipy.fft.irfft2(surface * (np.exp(-a * z) + np.exp(-a * (2 * thickness - z))), s=shape)
        kernel += (0.5 if i in (0, _DEPTHS - 1) else 1.0) * ez / (rho2 + z**2)
    kernel /= kernel.sum()
    return scipy.fft.rfft2(kernel)
