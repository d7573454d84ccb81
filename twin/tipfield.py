"""Electric field under a biased PFM tip: sphere-plane model reduced to an effective point charge.

Kalinin, Morozovska et al.: a tip of apex radius R0 in a medium of permittivity eps_e above an
anisotropic ferroelectric (eps11, eps33) acts as a point charge Q = 2 pi eps0 eps_e R0 U
(kappa + eps_e) / kappa at a height d = eps_e R0 / kappa, kappa = sqrt(eps11 eps33). The surface
potential is phi(rho) = U d / sqrt(rho^2 + d^2). For a film of thickness h on a bottom electrode
the out-of-plane field is reduced to E_z(rho) = phi(rho) / h (PHYSICS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPSILON_0 = 8.8541878128e-12  # F/m


@dataclass(frozen=True)
class SpherePlaneTip:
    """Effective point-charge model of a biased tip.

    Attributes:
        radius: tip apex radius R0, m.
        eps11: in-plane relative permittivity of the film.
        eps33: out-of-plane relative permittivity of the film.
        eps_e: relative permittivity of the tip-surface gap (81: water meniscus).
    """

    radius: float = 25e-9
    eps11: float = 120.0
    eps33: float = 65.0
    eps_e: float = 81.0

    def __post_init__(self) -> None:
        for name in ("radius", "eps11", "eps33", "eps_e"):
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

    def charge(self, bias: float) -> float:
        """Effective charge Q for tip bias ``bias`` (V), C."""
        return 2 * math.pi * EPSILON_0 * self.eps_e * self.radius * bias * (self.kappa + self.eps_e) / self.kappa

    def potential(self, rho: np.ndarray | float, bias: float, depth: np.ndarray | float = 0.0) -> np.ndarray:
        """Potential phi(rho, z) inside the film, V (z >= 0 is depth below the surface), m."""
        d = self.charge_height
        return bias * d / np.sqrt(np.square(rho) + np.square(np.asarray(depth) / self.anisotropy + d))

    def field(self, rho: np.ndarray | float, bias: float, thickness: float) -> np.ndarray:
        """Out-of-plane field E_z(rho) = phi_s(rho) / h in a film of ``thickness`` h on an electrode, V/m."""
        return self.potential(rho, bias) / thickness
