"""Semi-implicit Fourier-spectral TDGL solver for a 2D periodic polarization field.

Solves the time-dependent Ginzburg-Landau (Landau-Khalatnikov) equation for the
out-of-plane polarization P(x, y) in C/m^2 on a periodic grid,

    dP/dt = -Gamma (df/dP - g lap P - E),

with the gradient energy (g/2)|grad P|^2 of :mod:`twin.landau`. The scheme is that of
Chen & Shen (1998): the stiff gradient term is implicit in Fourier space, the local
term explicit, and a stabilizing constant S is added implicitly and subtracted
explicitly (a linear stabilization):

    P^(n+1)_k = [P^n_k - dt Gamma FFT(df/dP(P^n) - E - S P^n)_k]
                / (1 + dt Gamma (g k^2 + S))

Equilibria do not depend on S, but S slows all dynamics by about 1 / (1 + dt Gamma S):
use ``stabilization=0`` and dt <= 0.02 tau for kinetics (wall velocities, coarsening),
and the stabilized default for large steps towards an equilibrium.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numba
import numpy as np
import scipy.fft

__all__ = ["Potential", "TDGL"]


class Potential(Protocol):
    """What the solver needs from a local potential (e.g. a ``twin.landau.LocalPotential``)."""

    @property
    def a1(self) -> float:
        """Quadratic coefficient in J m / C^2; sets the time scale tau."""
        ...

    @property
    def spontaneous_polarization(self) -> float:
        """Polarization of the uniform ground state in C/m^2."""
        ...

    def dfdp(self, P: np.ndarray) -> np.ndarray:
        """df/dP in V/m."""
        ...

    def d2fdp2(self, P: np.ndarray | float) -> np.ndarray | float:
        """d^2f/dP^2 in V m / C."""
        ...

    def free_energy(self, P: np.ndarray) -> np.ndarray:
        """Local free energy density f(P) in J/m^3 (only for ``TDGL.free_energy``)."""
        ...


class TDGL:
    """Time-dependent Ginzburg-Landau solver on a periodic 2D grid.

    The solver holds only the grid and the coefficients; fields are passed in and new
    arrays are returned, so one solver serves any number of states.

    Args:
        potential: The local potential (``dfdp``, ``d2fdp2``, ``a1``,
            ``spontaneous_polarization``), rescaled already for a thick interface if
            wanted.
        gradient: Effective gradient coefficient g in J m / C^2, paired with the
            potential (``potential.effective_gradient()`` for a
            ``twin.landau.LocalPotential``).
        shape: Grid shape (ny, nx); the last axis is x.
        spacing: Pixel size in m, one number or (dy, dx).
        gamma: Kinetic coefficient Gamma in S/m (C / (V m s)).
        stabilization: Stabilizing constant S in V m / C. ``None`` chooses the
            curvature of the potential at its minimum, d^2f/dP^2(Ps) (about ten times
            |a1| for PbTiO3 at room temperature): any step then relaxes small deviations
            from the domain states monotonically. Use 0 for accurate kinetics.

    Raises:
        ValueError: If an argument is out of range.

    Attributes:
        shape: Grid shape (ny, nx).
        spacing: Pixel size (dy, dx) in m.
        gradient: g in J m / C^2.
        gamma: Gamma in S/m.
        stabilization: S in V m / C.
        tau: Landau time 1 / (2 Gamma |a1|) in s.
    """

    def __init__(
        self,
        potential: Potential,
        gradient: float,
        shape: tuple[int, int],
        spacing: float | Sequence[float],
        gamma: float = 1.0,
        stabilization: float | None = None,
    ) -> None:
        if not (math.isfinite(gradient) and gradient > 0):
            raise ValueError(f"gradient={gradient!r} must be a positive finite number (J m/C^2)")
        if not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"gamma={gamma!r} must be a positive finite number (S/m)")
        if len(shape) != 2 or any(int(n) != n or n < 1 for n in shape):
            raise ValueError(f"shape={shape!r} must be two positive integers (ny, nx)")
        if np.ndim(spacing) == 0:
            spacing = (spacing, spacing)
        if len(spacing) != 2 or not all(math.isfinite(d) and d > 0 for d in spacing):
            raise ValueError(f"spacing={spacing!r} must be one or two positive lengths in m")
        if potential.a1 == 0:
            raise ValueError(f"potential={potential!r} has a1 = 0: the time scale is undefined")
        if stabilization is None:
            stabilization = float(potential.d2fdp2(potential.spontaneous_polarization))
        if not (math.isfinite(stabilization) and stabilization >= 0):
            raise ValueError(f"stabilization={stabilization!r} must be finite and >= 0 (V m/C)")

        self.potential = potential
        self.gradient = float(gradient)
        self.shape = (int(shape[0]), int(shape[1]))
        self.spacing = (float(spacing[0]), float(spacing[1]))
        self.gamma = float(gamma)
        self.stabilization = float(stabilization)
        self.tau = 1.0 / (2.0 * self.gamma * abs(potential.a1))

        ny, nx = self.shape
        dy, dx = self.spacing
        ky = 2.0 * np.pi * scipy.fft.fftfreq(ny, d=dy)
        kx = 2.0 * np.pi * scipy.fft.rfftfreq(nx, d=dx)
        # Threads only pay off on large grids; on small ones they cost more than the FFT.
        self._workers = -1 if ny * nx >= 1 << 16 else None
        self._k2 = ky[:, None] ** 2 + kx[None, :] ** 2
        # First derivatives drop the Nyquist modes, whose i k has no real counterpart.
        if ny % 2 == 0:
            ky[ny // 2] = 0.0
        if nx % 2 == 0:
            kx[-1] = 0.0
        self._ky = ky[:, None]
        self._kx = kx[None, :]

    def _check_field(self, P: np.ndarray, name: str = "P") -> np.ndarray:
        P = np.asarray(P, dtype=np.float64)
        if P.shape != self.shape:
            raise ValueError(f"{name} has shape {P.shape!r}; the solver grid is {self.shape!r}")
        return P

    def _check_dt(self, dt: float) -> float:
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt={dt!r} must be a positive finite time in s")
        return float(dt)

    def _field(self, field: float | np.ndarray) -> float | np.ndarray:
        if np.ndim(field) == 0:
            return float(field)
        return self._check_field(field, "field")

    def _inverse_denominator(self, dt: float) -> np.ndarray:
        return 1.0 / (1.0 + dt * self.gamma * (self.gradient * self._k2 + self.stabilization))

    def _advance(
        self, P: np.ndarray, dt: float, field: float | np.ndarray, inverse: np.ndarray
    ) -> np.ndarray:
        explicit = self.potential.dfdp(P) - field - self.stabilization * P
        rhs = scipy.fft.rfft2(P - dt * self.gamma * explicit, workers=self._workers)
        return scipy.fft.irfft2(rhs * inverse, s=self.shape, workers=self._workers)

    def step(self, P: np.ndarray, dt: float, field: float | np.ndarray = 0.0) -> np.ndarray:
        """Advance P by one time step.

        Args:
            P: Polarization in C/m^2, shape ``self.shape``. Not modified.
            dt: Time step in s.
            field: Applied field E_z in V/m, a scalar or an array of ``self.shape``,
                held constant over the step.

        Returns:
            The new polarization (a new array).

        Raises:
            ValueError: If a shape or ``dt`` is invalid.
        """
        P = self._check_field(P)
        dt = self._check_dt(dt)
        return self._advance(P, dt, self._field(field), self._inverse_denominator(dt))

    def force(self, P: np.ndarray, field: float | np.ndarray = 0.0) -> np.ndarray:
        """Net thermodynamic force dF/dP - E = df/dP - g lap P - E, in V/m.

        Zero in equilibrium; at a wall of curvature kappa it is of order the curvature field
        sigma kappa / (2 Ps). Used to apply pinning (static friction) in relaxation.

        Args:
            P: Polarization in C/m^2, shape ``self.shape``.
            field: Applied field E_z in V/m (scalar or array).

        Returns:
            The force per pixel, V/m.
        """
        P = self._check_field(P)
        laplacian = scipy.fft.irfft2(
            -self._k2 * scipy.fft.rfft2(P, workers=self._workers), s=self.shape, workers=self._workers
        )
        return self.potential.dfdp(P) - self.gradient * laplacian - self._field(field)

    def relax_pinned(self, P: np.ndarray, field: np.ndarray, depinning: float, dt: float, frozen: np.ndarray,
                     steps: int, tolerance: float) -> tuple[np.ndarray, int]:
        """Relax P under pinning (static friction): the relaxation of :meth:`twin.film.Film.relax`.

        Each step takes the net force F = dF/dP - E (:meth:`force`), holds the part of it below
        ``depinning`` as a reaction field, and advances by one semi-implicit step (:meth:`step`)
        under E + clip(F, -depinning, depinning); pixels in ``frozen`` keep their value (the
        edge of a window cut from a larger film). Stops after ``steps`` steps or once no pixel
        moves by ``tolerance``. With no pixel frozen, the force's g lap P after a step comes from
        the step's own implicit equation, (1 + dt Gamma S - dt Gamma g lap) P_new = rhs, pointwise as
        ((1 + dt Gamma S) P_new - rhs) / (dt Gamma) (the same as :meth:`force`'s transforms up to
        round-off, 3e-14 of Ps after a relaxation): two FFTs a step instead of four. The loop runs
        compiled (numba, with rocket-fft's pocketfft, the FFT scipy uses): the same operations in
        the same order as its Python path, so the same bits, without Python's overhead of 8 calls
        per step.

        Args:
            P: Polarization in C/m^2, shape ``self.shape``. Not modified.
            field: Applied field in V/m, shape ``self.shape`` (the quenched random field).
            depinning: Depinning field in V/m.
            dt: Time step in s.
            frozen: Pixels held fixed, bool, shape ``self.shape``.
            steps: Most steps to take, >= 1.
            tolerance: Stop once max |P_new - P| is below this, C/m^2.

        Returns:
            (the relaxed polarization, the number of steps taken).
        """
        P = self._check_field(P)
        field = self._check_field(field, "field")
        dt = self._check_dt(dt)
        coefficients = _sextic(self.potential)
        if coefficients is None:  # another potential: the same steps through the Python methods
            inverse, taken = self._inverse_denominator(dt), 0
            dt_gamma, carry, curvature = dt * self.gamma, not np.any(frozen), None
            for taken in range(1, steps + 1):
                if curvature is None:
                    laplacian = scipy.fft.irfft2(-self._k2 * scipy.fft.rfft2(P, workers=self._workers), s=self.shape,
                                                 workers=self._workers)
                    curvature = self.gradient * laplacian
                held = np.clip(self.potential.dfdp(P) - curvature - field, -depinning, depinning)
                explicit = self.potential.dfdp(P) - (field + held) - self.stabilization * P
                rhs = P - dt_gamma * explicit
                new = scipy.fft.irfft2(scipy.fft.rfft2(rhs, workers=self._workers) * inverse, s=self.shape,
                                       workers=self._workers)
                new[frozen] = P[frozen]
                moved = float(np.max(np.abs(new - P)))
                # The implicit step solved (1 + dt Gamma S - dt Gamma g lap) new = rhs, so g lap new is
                # ((1 + dt Gamma S) new - rhs) / (dt Gamma): the next force without a transform.
                curvature = ((1.0 + dt_gamma * self.stabilization) * new - rhs) / dt_gamma if carry else None
                P = new
                if moved < tolerance:
                    break
            return P, taken
        return _relax_pinned(P, field, np.asarray(frozen, dtype=np.bool_), -self._k2, self._inverse_denominator(dt),
                             *coefficients, self.gradient, self.stabilization, dt * self.gamma, float(depinning),
                             int(steps), float(tolerance))

    def run(
        self, P: np.ndarray, duration: float, dt: float, field: float | np.ndarray = 0.0
    ) -> np.ndarray:
        """Advance P by ``duration`` in steps of ``dt``, the last one shortened to fit.

        Args:
            P: Polarization in C/m^2, shape ``self.shape``. Not modified.
            duration: Time to integrate in s, >= 0.
            dt: Time step in s.
            field: Applied field E_z in V/m (scalar or array), constant over the run.

        Returns:
            The polarization at the end (a new array).

        Raises:
            ValueError: If a shape, ``duration`` or ``dt`` is invalid.
        """
        P = self._check_field(P).copy()
        dt = self._check_dt(dt)
        if not (math.isfinite(duration) and duration >= 0):
            raise ValueError(f"duration={duration!r} must be a finite time >= 0 in s")
        field = self._field(field)
        # The relative tolerance keeps round-off in duration / dt from adding a sliver step.
        n_steps = math.ceil(duration / dt * (1.0 - 1e-12))
        if n_steps == 0:
            return P
        inverse = self._inverse_denominator(dt)
        for _ in range(n_steps - 1):
            P = self._advance(P, dt, field, inverse)
        last = duration - (n_steps - 1) * dt
        if last != dt:
            inverse = self._inverse_denominator(last)
        return self._advance(P, last, field, inverse)

    def free_energy(self, P: np.ndarray, field: float | np.ndarray = 0.0) -> float:
        """Total free energy per unit film thickness, in J/m.

        F = sum over the grid of [f(P) + (g/2)|grad P|^2 - E P] dx dy, with a spectral
        gradient. This is the only method that needs ``potential.free_energy``.

        Args:
            P: Polarization in C/m^2, shape ``self.shape``.
            field: Applied field E_z in V/m (scalar or array).

        Returns:
            F in J/m.

        Raises:
            ValueError: If a shape is invalid.
        """
        P = self._check_field(P)
        field = self._field(field)
        P_hat = scipy.fft.rfft2(P, workers=self._workers)
        grad_y = scipy.fft.irfft2(1j * self._ky * P_hat, s=self.shape, workers=self._workers)
        grad_x = scipy.fft.irfft2(1j * self._kx * P_hat, s=self.shape, workers=self._workers)
        density = (
            self.potential.free_energy(P)
            + 0.5 * self.gradient * (grad_x**2 + grad_y**2)
            - field * P
        )
        return float(np.sum(density) * self.spacing[0] * self.spacing[1])


def _sextic(potential: Potential) -> tuple[float, float, float] | None:
    """(2 a1, 4 a11, 6 a111) of a sextic Landau potential (``twin.landau.LocalPotential``), else None."""
    try:
        return 2.0 * float(potential.a1), 4.0 * float(potential.a11), 6.0 * float(potential.a111)
    except AttributeError:
        return None


@numba.njit(cache=True)
def _relax_pinned(P, field, frozen, minus_k2, inverse, c1, c2, c3, gradient, stabilization, dt_gamma, depinning,
                  steps, tolerance):
    """The loop of :meth:`TDGL.relax_pinned`, operation for operation as its Python path."""
    shape = P.shape
    ny, nx = shape
    P = P.copy()
    rhs = np.empty(shape)
    curvature = np.empty(shape)  # g lap P
    # With nothing frozen, the implicit step's own equation gives the next step's g lap P
    # pointwise: two FFTs a step instead of three (see TDGL.relax_pinned).
    carry = not frozen.any()
    known = False
    implicit = 1.0 + dt_gamma * stabilization
    taken = 0
    for taken in range(1, steps + 1):
        if not known:
            laplacian = scipy.fft.irfft2(minus_k2 * scipy.fft.rfft2(P), s=shape)
            for i in range(ny):
                for j in range(nx):
                    curvature[i, j] = gradient * laplacian[i, j]
        for i in range(ny):
            for j in range(nx):
                p = P[i, j]
                p2 = p * p
                d = p * (c1 + p2 * (c2 + c3 * p2))
                force = d - curvature[i, j] - field[i, j]
                held = min(max(force, -depinning), depinning)
                explicit = d - (field[i, j] + held) - stabilization * p
                rhs[i, j] = p - dt_gamma * explicit
        new = scipy.fft.irfft2(scipy.fft.rfft2(rhs) * inverse, s=shape)
        moved = 0.0
        for i in range(ny):
            for j in range(nx):
                if frozen[i, j]:
                    new[i, j] = P[i, j]
                change = abs(new[i, j] - P[i, j])
                if change > moved:
                    moved = change
                if carry:
                    curvature[i, j] = (implicit * new[i, j] - rhs[i, j]) / dt_gamma
        known = carry
        P = new
        if moved < tolerance:
            break
    return P, taken
