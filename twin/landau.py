"""Landau-Ginzburg-Devonshire free energy of PbTiO3 reduced to polarization along z.

The coefficients are those of Haun et al. (1987), the set MOOSE Ferret uses (see
``docs/physics.md``). With P1 = P2 = 0 only three survive:

    f(P) = a1 P^2 + a11 P^4 + a111 P^6,    a1 = 3.8e5 (T - 479 degC)

Gradient energy convention: the free energy density of a non-uniform state is

    f(P) + (g / 2) |grad P|^2

with the effective coefficient g = 0.6 * G110 for the 180 degree wall (G11 / G110 = 0.6).
The factor 1/2 is the convention that reproduces the ``docs/physics.md`` targets (wall width
2 delta = 1.27 nm, energy 133 mJ/m^2); without it the wall would be sqrt(2) wider and
more energetic. The same convention fixes the TDGL equation in :mod:`twin.tdgl`:
dP/dt = -Gamma (df/dP - g lap P - E).

Thick interface: a wall 1.3 nm wide cannot be resolved on 2-5 nm pixels. Dividing the
local potential by ``scale`` and multiplying g by ``scale`` widens the wall by ``scale``
(width ~ sqrt(g / |a|)) while keeping the wall energy (sigma ~ sqrt(g |a|)) and Ps.
The intrinsic coercive field and the inverse time scale 2 Gamma |a1| drop by ``scale``.

Units are SI throughout: P in C/m^2, f in J/m^3, fields in V/m, lengths in m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.integrate import quad

__all__ = [
    "A1_SLOPE",
    "A11",
    "A111",
    "CURIE_WEISS_TEMPERATURE",
    "G110",
    "WALL_GRADIENT_RATIO",
    "LocalPotential",
    "PbTiO3Landau",
    "Wall",
]

A1_SLOPE = 3.8e5
"""d a1 / dT of PbTiO3 (Haun et al. 1987), in J m / (C^2 K)."""
CURIE_WEISS_TEMPERATURE = 479.0
"""Temperature where a1 changes sign, in degC."""
A11 = -7.3e7
"""Quartic coefficient of PbTiO3, in J m^5 / C^4."""
A111 = 2.6e8
"""Sextic coefficient of PbTiO3, in J m^9 / C^6."""
G110 = 1.73e-10
"""Gradient coefficient G110 of PbTiO3, in J m / C^2."""
WALL_GRADIENT_RATIO = 0.6
"""Effective g of the 180 degree wall as a fraction of G110 (G11 / G110)."""


def _larger_root(a: float, b: float, c: float) -> float | None:
    """Larger real root of a x^2 + b x + c = 0 (a > 0), or None if there is none.

    Uses the form without cancellation: when b > 0 the textbook (-b + sqrt(D)) / 2a
    loses all its digits if a c is small (a nearly quartic potential).
    """
    discriminant = b * b - 4.0 * a * c
    if discriminant < 0:
        return None
    root = math.sqrt(discriminant)
    if b <= 0:
        return (-b + root) / (2.0 * a)
    return -2.0 * c / (b + root)


@dataclass(frozen=True)
class Wall:
    """A flat 180 degree wall of the gradient-plus-local free energy.

    Attributes:
        width: Width 2 delta in m, with delta = Ps / P'(0): the width of the tanh
            profile that has the same slope at the wall centre.
        energy: Excess free energy per unit wall area, in J/m^2.
        gradient: The effective gradient coefficient g used, in J m / C^2 (already
            multiplied by the wall ratio 0.6 and by the potential's scale).
    """

    width: float
    energy: float
    gradient: float


class LocalPotential:
    """Sextic single-component Landau potential f(P) = a1 P^2 + a11 P^4 + a111 P^6.

    Instances are immutable. ``scale`` records the thick-interface rescaling that
    produced this potential: its gradient coefficient must be multiplied by ``scale``
    (:meth:`effective_gradient` does it) so that the wall energy is preserved.

    Args:
        a1: Quadratic coefficient in J m / C^2.
        a11: Quartic coefficient in J m^5 / C^4.
        a111: Sextic coefficient in J m^9 / C^6; must be > 0 for f to be bounded below.
        scale: Thick-interface factor this potential was divided by (1 for the
            physical potential); must be > 0.

    Raises:
        ValueError: If a coefficient is not finite, ``a111 <= 0`` or ``scale <= 0``.
    """

    __slots__ = ("_a1", "_a11", "_a111", "_scale")

    def __init__(self, a1: float, a11: float, a111: float, scale: float = 1.0) -> None:
        for name, value in (("a1", a1), ("a11", a11), ("a111", a111), ("scale", scale)):
            if not math.isfinite(value):
                raise ValueError(f"{name}={value!r} must be a finite number")
        if a111 <= 0:
            raise ValueError(f"a111={a111!r} must be > 0 so that f(P) is bounded below")
        if scale <= 0:
            raise ValueError(f"scale={scale!r} must be > 0")
        self._a1 = float(a1)
        self._a11 = float(a11)
        self._a111 = float(a111)
        self._scale = float(scale)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(a1={self._a1!r}, a11={self._a11!r}, "
            f"a111={self._a111!r}, scale={self._scale!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalPotential):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[float, float, float, float]:
        return (self._a1, self._a11, self._a111, self._scale)

    @property
    def a1(self) -> float:
        """Quadratic coefficient in J m / C^2."""
        return self._a1

    @property
    def a11(self) -> float:
        """Quartic coefficient in J m^5 / C^4."""
        return self._a11

    @property
    def a111(self) -> float:
        """Sextic coefficient in J m^9 / C^6."""
        return self._a111

    @property
    def scale(self) -> float:
        """Thick-interface factor: local terms divided by it, gradient multiplied."""
        return self._scale

    def free_energy(self, P: np.ndarray | float) -> np.ndarray | float:
        """Local free energy density f(P) in J/m^3 (zero for P = 0)."""
        P2 = np.square(P)
        return P2 * (self._a1 + P2 * (self._a11 + P2 * self._a111))

    def dfdp(self, P: np.ndarray | float) -> np.ndarray | float:
        """df/dP in V/m: the field that holds a uniform state at P."""
        P2 = np.square(P)
        return P * (2.0 * self._a1 + P2 * (4.0 * self._a11 + 6.0 * self._a111 * P2))

    def d2fdp2(self, P: np.ndarray | float) -> np.ndarray | float:
        """d^2f/dP^2 in V m / C (inverse susceptibility over the vacuum permittivity)."""
        P2 = np.square(P)
        return 2.0 * self._a1 + P2 * (12.0 * self._a11 + 30.0 * self._a111 * P2)

    @property
    def spontaneous_polarization(self) -> float:
        """Polarization of the stable uniform state, in C/m^2 (0 if paraelectric).

        df/dP = 0 is a quadratic in x = P^2: 3 a111 x^2 + 2 a11 x + a1 = 0. The larger
        root is the polar minimum; it is the stable state only if f there is <= f(0) = 0
        (above a first-order transition it is at best metastable, and 0 is returned).
        """
        x = _larger_root(3.0 * self._a111, 2.0 * self._a11, self._a1)
        if x is None or x <= 0:
            return 0.0
        Ps = math.sqrt(x)
        return Ps if self.free_energy(Ps) <= 0.0 else 0.0

    @property
    def coercive_field(self) -> float:
        """Intrinsic (Landau) coercive field in V/m: max of -df/dP on 0 < P < Ps.

        The maximum sits at the inflection point d^2f/dP^2 = 0, again a quadratic in
        x = P^2: 30 a111 x^2 + 12 a11 x + 2 a1 = 0. Returns 0 in the paraelectric phase.
        """
        if self.spontaneous_polarization == 0.0:
            return 0.0
        # a1 < 0 here (or a1 >= 0 in the narrow first-order polar range); the larger
        # root lies between the local maximum of f at 0 and the minimum at Ps.
        x = _larger_root(30.0 * self._a111, 12.0 * self._a11, 2.0 * self._a1)
        if x is None or x <= 0:
            return 0.0
        return float(max(-self.dfdp(math.sqrt(x)), 0.0))

    def effective_gradient(self, gradient: float = G110) -> float:
        """The g to pair with this potential for a 180 degree wall, in J m / C^2.

        Args:
            gradient: The material's G110 in J m / C^2.

        Returns:
            ``0.6 * gradient * scale``: the wall ratio G11 / G110 and the
            thick-interface factor applied.

        Raises:
            ValueError: If ``gradient`` is not a positive finite number.
        """
        if not (math.isfinite(gradient) and gradient > 0):
            raise ValueError(f"gradient={gradient!r} must be a positive finite number (J m/C^2)")
        return WALL_GRADIENT_RATIO * gradient * self._scale

    def wall(self, gradient: float = G110) -> Wall:
        """Width and energy of the flat 180 degree wall, with (g/2)|grad P|^2.

        With the first integral (g/2) P'^2 = f(P) - f(Ps) of the Euler-Lagrange
        equation, the slope at the centre is P'(0) = sqrt(2 (f(0) - f(Ps)) / g) and the
        energy is sigma = integral over -Ps..Ps of sqrt(2 g (f(P) - f(Ps))) dP.

        Args:
            gradient: The material's G110 in J m / C^2; the ratio 0.6 and this
                potential's ``scale`` are applied (see :meth:`effective_gradient`).

        Returns:
            The :class:`Wall`.

        Raises:
            ValueError: If ``gradient`` is invalid or the potential is paraelectric
                (no wall exists).
        """
        g = self.effective_gradient(gradient)
        Ps = self.spontaneous_polarization
        if Ps == 0.0:
            raise ValueError(f"{self!r} is paraelectric (Ps = 0): there is no domain wall")
        f_min = self.free_energy(Ps)

        def line_tension(P: float) -> float:
            # Rounding can make f(P) - f(Ps) a hair negative next to Ps.
            return math.sqrt(2.0 * g * max(self.free_energy(P) - f_min, 0.0))

        # The integrand is even in P; integrate one half and double.
        half, _ = quad(line_tension, 0.0, Ps, epsabs=0.0, epsrel=1e-10)
        slope = math.sqrt(2.0 * (0.0 - f_min) / g)
        return Wall(width=2.0 * Ps / slope, energy=2.0 * half, gradient=g)

    def rescaled(self, scale: float) -> LocalPotential:
        """Thick-interface version: local coefficients / ``scale``, gradient x ``scale``.

        The wall becomes ``scale`` times wider with the same energy and the same Ps.

        Args:
            scale: Widening factor, > 0. Rescaling composes: the result's ``scale`` is
                ``self.scale * scale``.

        Returns:
            A new :class:`LocalPotential`.

        Raises:
            ValueError: If ``scale`` is not a positive finite number.
        """
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale={scale!r} must be a positive finite number")
        return LocalPotential(
            self._a1 / scale, self._a11 / scale, self._a111 / scale, self._scale * scale
        )

    def scale_for_width(self, target_width: float, gradient: float = G110) -> float:
        """The factor for :meth:`rescaled` that makes the wall ``target_width`` wide.

        Args:
            target_width: Desired wall width 2 delta in m, > 0.
            gradient: The material's G110 in J m / C^2.

        Returns:
            The scale, relative to this potential (so
            ``p.rescaled(p.scale_for_width(w)).wall().width == w``).

        Raises:
            ValueError: If ``target_width`` is not a positive finite number.
        """
        if not (math.isfinite(target_width) and target_width > 0):
            raise ValueError(f"target_width={target_width!r} must be a positive length in m")
        return target_width / self.wall(gradient).width


class PbTiO3Landau(LocalPotential):
    """Haun et al. (1987) LGD potential of PbTiO3 with P along z, at a temperature.

    Args:
        temperature: Temperature in degC.

    Raises:
        ValueError: If ``temperature`` is not finite or below absolute zero.
    """

    __slots__ = ("_temperature",)

    def __init__(self, temperature: float = 25.0) -> None:
        if not (math.isfinite(temperature) and temperature >= -273.15):
            raise ValueError(
                f"temperature={temperature!r} degC must be finite and >= -273.15 degC"
            )
        super().__init__(A1_SLOPE * (temperature - CURIE_WEISS_TEMPERATURE), A11, A111)
        self._temperature = float(temperature)

    def __repr__(self) -> str:
        return f"PbTiO3Landau(temperature={self._temperature!r})"

    @property
    def temperature(self) -> float:
        """Temperature in degC."""
        return self._temperature

    @property
    def curie_temperature(self) -> float:
        """First-order transition temperature in degC.

        The polar minimum is degenerate with P = 0 when f = a1 + a11 x + a111 x^2 and
        its derivative vanish together (x = P^2): 4 a1 a111 = a11^2.
        """
        return CURIE_WEISS_TEMPERATURE + self.a11**2 / (4.0 * self.a111 * A1_SLOPE)

    @property
    def polarization_jump(self) -> float:
        """Polarization that appears at the first-order transition, in C/m^2.

        At the transition x = P^2 = -a11 / (2 a111) (double root of f / P^2).
        """
        return math.sqrt(-self.a11 / (2.0 * self.a111))
