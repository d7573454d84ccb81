"""The PbTiO3 film: a 2D field of out-of-plane polarization that tip pulses write and relax.

Three pieces of physics act on it:

* the Landau-Ginzburg-Devonshire free energy of PbTiO3 (:class:`PbTiO3Landau`, Haun et al.
  coefficients), with a thick interface: the wall is rescaled to ``wall_pixels`` pixels while
  its energy is kept (sigma ~ sqrt(g |a|): g times s, barrier over s);
* writing by a tip pulse: sphere-plane tip field + creep kinetics (:mod:`twin.kinetics`);
* relaxation after a pulse: semi-implicit spectral TDGL (:mod:`twin.tdgl`) under the quenched
  random field, which rounds freshly written walls, lets sub-critical domains shrink away
  (back-switching) and leaves larger ones pinned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.fft

from twin.kinetics import CreepLaw
from twin.landau import G110, PbTiO3Landau
from twin.tdgl import TDGL
from twin.tipfield import SpherePlaneTip

__all__ = ["Film", "FilmParams", "PbTiO3Landau", "correlated_noise", "power_law_field", "shaped_noise"]

INITS = ("grown", "wall", "up", "down", "random")
#: Rim of a relaxation window kept fixed: it absorbs the mismatch of the window's periodic copy.
_MARGIN = 10


@dataclass(frozen=True)
class FilmParams:
    """Everything that defines a simulated film.

    Attributes:
        grid: pixels per side of the square simulation grid.
        size: side of the simulated area, m (the film is periodic with this period).
        thickness: film thickness, m.
        temperature: deg C (must be below the Curie temperature, 492.5 C).
        disorder: quenched random-field strength, in units of ``random_field_scale``.
        random_field_scale: random-field rms at disorder = 1, V/m.
        correlation: correlation length of the random field, m.
        wall_pixels: thick-interface wall width 2 delta, in pixels.
        depinning_field: net force on the polarization that the disorder holds without motion,
            V/m. Domains with a curvature field sigma / (2 Ps R) above it shrink away (with
            the default, R below about 15 nm).
        relax_steps: maximum TDGL steps of the relaxation after each pulse.
        relax_dt: TDGL step, in units of tau = 1 / (2 Gamma |a1|) of the rescaled potential.
        init: initial domain state: "grown" (as grown: mostly up, with closed down domains of
            tens to hundreds of nm, as real PbTiO3 films on their substrates show), "wall" (two
            domains with a meandering wall through the middle), "up", "down", "random" (a
            relaxed 50/50 maze), or the path of an NSID file whose phase image gives the
            domains (at the image's own scale, from the film's origin, periodically repeated).
        tip: the tip model.
        creep: the creep law.
    """

    grid: int = 672
    size: float = 5.25e-6  # a 5 um scan (and the real 5.02 um one) fits
    thickness: float = 50e-9
    temperature: float = 25.0
    disorder: float = 0.2
    random_field_scale: float = 2e7
    correlation: float = 8e-9
    wall_pixels: float = 2.5
    depinning_field: float = 1e7
    relax_steps: int = 60
    relax_dt: float = 0.5
    init: str = "grown"
    tip: SpherePlaneTip = field(default_factory=SpherePlaneTip)
    creep: CreepLaw = field(default_factory=CreepLaw)

    def __post_init__(self) -> None:
        if not (isinstance(self.grid, int) and 16 <= self.grid <= 2048):
            raise ValueError(f"grid={self.grid!r} must be an int in [16, 2048]")
        for name in ("size", "thickness", "random_field_scale", "correlation", "wall_pixels", "relax_dt"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name}={v!r} must be positive and finite")
        if not (math.isfinite(self.disorder) and 0 <= self.disorder <= 5):
            raise ValueError(f"disorder={self.disorder!r} must be in [0, 5]")
        if self.init not in INITS and not Path(self.init).is_file():
            raise ValueError(f"init={self.init!r} is not one of {INITS} nor an existing NSID file")
        if not -273.15 < self.temperature < 490.0:
            raise ValueError(
                f"temperature={self.temperature!r} C is outside (-273.15, 490) C; PbTiO3 is ferroelectric "
                f"only below its Curie temperature (about 492.5 C)"
            )

    @property
    def spacing(self) -> float:
        """Pixel size, m."""
        return self.size / self.grid


def shaped_noise(rng: np.random.Generator, shape: tuple[int, int], amplitude) -> np.ndarray:
    """Periodic Gaussian random field of unit rms: white noise filtered in Fourier space.

    Args:
        rng: source of the white noise.
        shape: (rows, columns).
        amplitude: function of the spatial frequency |k| (cycles per pixel, an array of the
            ``rfft2`` layout) giving the filter's amplitude, i.e. the square root of the spectrum.
    """
    k = np.hypot(scipy.fft.rfftfreq(shape[1])[None, :], scipy.fft.fftfreq(shape[0])[:, None])
    out = scipy.fft.irfft2(scipy.fft.rfft2(rng.standard_normal(shape)) * amplitude(k), s=shape)
    return out / out.std()


def correlated_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_pixels: float) -> np.ndarray:
    """Periodic Gaussian random field with unit rms and Gaussian correlation of ``sigma_pixels``."""
    return shaped_noise(rng, shape, lambda k: np.exp(-2 * (np.pi * sigma_pixels * k) ** 2))


def power_law_field(rng: np.random.Generator, shape: tuple[int, int], spacing: float,
                    scales: tuple[float, float], exponent: float) -> np.ndarray:
    """Periodic Gaussian random field, unit rms, power spectrum ~ k^-exponent between ``scales`` (m).

    Outside the band the spectrum is flat below the longest wavelength and cut above the
    shortest one, so the field has no structure finer than ``scales[0]``.
    """
    shortest, longest = scales[0] / spacing, scales[1] / spacing  # pixels

    def amplitude(k: np.ndarray) -> np.ndarray:
        a = np.maximum(k, 1.0 / longest) ** (-exponent / 2) * np.exp(-((k * shortest) ** 2))
        a[0, 0] = 0.0
        return a

    return shaped_noise(rng, shape, amplitude)


class Film:
    """The polarization field of a PbTiO3 film and the physics that changes it.

    Args:
        params: film definition.
        rng: source of the quenched disorder and of the initial domain pattern.
    """

    def __init__(self, params: FilmParams, rng: np.random.Generator) -> None:
        self.params = params
        self.landau = PbTiO3Landau(params.temperature)
        self.ps = self.landau.spontaneous_polarization
        n, dx = params.grid, params.spacing
        self.scale = self.landau.scale_for_width(params.wall_pixels * dx, G110)
        self.potential = self.landau.rescaled(self.scale)
        self.gradient = self.potential.effective_gradient(G110)
        self.solver = TDGL(self.potential, self.gradient, (n, n), dx)
        self.random_field = (
            params.disorder * params.random_field_scale * correlated_noise(rng, (n, n), params.correlation / dx)
        )
        self.depinning_field = params.depinning_field
        self._solvers: dict[int, TDGL] = {}
        self.polarization = self.ps * self._initial(rng)
        self.version = 0
        self.relax(4 * params.relax_steps)

    # -- state ------------------------------------------------------------------------------

    @property
    def u(self) -> np.ndarray:
        """Normalized polarization P / Ps, in [-1, 1] (+1: up, towards the tip)."""
        return self.polarization / self.ps

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of pixel centres, m, each of shape (grid, grid); rows are y."""
        c = (np.arange(self.params.grid) + 0.5) * self.params.spacing
        return np.meshgrid(c, c)

    def _initial(self, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        n = p.grid
        if p.init == "up":
            return np.ones((n, n))
        if p.init == "down":
            return -np.ones((n, n))
        if p.init == "random":
            return np.sign(correlated_noise(rng, (n, n), 60e-9 / p.spacing)) + 0.0
        if p.init == "grown":
            return self._as_grown(rng)
        if p.init not in INITS:
            return self._from_image(p.init)
        # "wall": up on the left half, down on the right, with a meandering wall in the middle
        # (and, the film being periodic, a second wall at the edge).
        x, y = self.coordinates()
        k = 2 * np.pi / p.size
        meander = sum(
            a * np.sin(m * k * y + phase)
            for m, a, phase in zip(
                range(1, 6), 60e-9 / np.arange(1, 6) * rng.uniform(0.5, 1.0, 5), rng.uniform(0, 2 * np.pi, 5)
            )
        )
        inside = (x > p.size * 0.02) & (x < p.size / 2 + meander)
        return np.where(inside, 1.0, -1.0)

    def _as_grown(self, rng: np.random.Generator) -> np.ndarray:
        """Mostly up, with closed down domains: a level set of a correlated random field.

        The down fraction (15-19 % before relaxation) and the domain scale (correlation 31-37 nm, giving domains
        of tens to about a hundred nm radius) vary from sample to sample; the initial
        relaxation then rounds the walls and removes domains below the critical size.
        """
        p = self.params
        fraction = rng.uniform(0.15, 0.19)
        scale = rng.uniform(31e-9, 37e-9)
        g = correlated_noise(rng, (p.grid, p.grid), scale / p.spacing)
        return np.where(g > np.quantile(g, 1.0 - fraction), -1.0, 1.0)

    def _from_image(self, path: str) -> np.ndarray:
        """Domains of the NSID phase image at ``path``, at its own scale, from the film's origin."""
        from control.analysis import domains
        from control.nsid import read_scan

        result = read_scan(path)
        sign = domains(result).astype(np.float64)
        x, y = self.coordinates()
        lines, points = sign.shape
        pitch_x, pitch_y = result.spec.size[0] / points, result.spec.size[1] / lines
        j = np.floor(x / pitch_x).astype(int) % points
        i = np.floor(y / pitch_y).astype(int) % lines
        return sign[i, j]

    # -- physics ----------------------------------------------------------------------------

    def tip_field(self, rho: np.ndarray | float, bias: float) -> np.ndarray:
        """Out-of-plane tip field at lateral distance ``rho`` (m) for ``bias`` (V), V/m."""
        return self.params.tip.field(rho, bias, self.params.thickness)

    def reach(self, bias: float, width: float) -> int:
        """Half-size in pixels of the region a pulse of ``bias`` V for ``width`` s can change.

        Beyond it, creep under the strongest field there (tip field plus 4 sigma of the random
        field) moves a wall less than 0.05 pixel in ``width``.
        """
        p = self.params
        rho = np.arange(0, p.grid // 2 + 1) * p.spacing
        strongest = self.tip_field(rho, abs(bias)) + 4 * p.disorder * p.random_field_scale
        reach = p.creep.velocity(strongest) * width
        moving = np.nonzero(reach > 0.05 * p.spacing)[0]
        last = int(moving[-1]) if moving.size else 0
        return min(last + 3, p.grid // 2 - 1)

    def pulse(self, x: float, y: float, bias: float, width: float) -> int:
        """The film's whole answer to one tip pulse: write, then relax what it changed.

        The reach of the pulse is computed once, for both. Back-switching of sub-critical
        domains completes within ~100 ms of a pulse, before any next command of a real
        experiment, so it is applied at once. Returns the pixels the writing switched.
        """
        half = self.reach(bias, width)
        switched = self.write(x, y, bias, width, half=half)
        self.relax(around=(x, y), reach=half)
        return switched

    def blunt_tip(self, factor: float = 2.0) -> None:
        """The tip apex radius grows ``factor``-fold (wear, pick-up): weaker writing field, wider wall dips."""
        self.params = replace(self.params, tip=replace(self.params.tip, radius=self.params.tip.radius * factor))
        self.version += 1

    def write(self, x: float, y: float, bias: float, width: float, half: int | None = None) -> int:
        """Apply a tip pulse of ``bias`` V for ``width`` s at (x, y) m; return pixels switched.

        Positive bias on the tip drives the polarization down (-1) under it: the field points
        from the tip into the film. Negative bias writes up (+1). ``half``: the pulse's
        :meth:`reach` if already known.
        """
        if bias == 0:
            return 0
        p = self.params
        n, dx = p.grid, p.spacing
        target = -1.0 if bias > 0 else 1.0
        half = self.reach(bias, width) if half is None else half
        fi, fj = y / dx - 0.5, x / dx - 0.5  # fractional pixel of the tip (row, col)
        rows = (int(round(fi)) + np.arange(-half, half + 1)) % n
        cols = (int(round(fj)) + np.arange(-half, half + 1)) % n
        di = (np.arange(-half, half + 1) + int(round(fi)) - fi) * dx
        dj = (np.arange(-half, half + 1) + int(round(fj)) - fj) * dx
        rho = np.hypot(di[:, None], dj[None, :])
        window = np.ix_(rows, cols)
        u = self.polarization[window] / self.ps
        drive = self.tip_field(rho, abs(bias)) + target * self.random_field[window]
        favoured = u * target > 0
        apex = np.unravel_index(np.argmin(rho), rho.shape)
        switched = p.creep.switched(drive, favoured, apex, dx, width)
        if switched.any():
            block = self.polarization[window]
            block[switched] = target * self.ps
            self.polarization[window] = block
            self.version += 1
        return int(switched.sum())

    def _solver(self, size: int) -> TDGL:
        """The TDGL solver for a square window of ``size`` pixels (built once per size)."""
        if size not in self._solvers:
            self._solvers[size] = TDGL(self.potential, self.gradient, (size, size), self.params.spacing)
        return self._solvers[size]

    def relax(self, steps: int | None = None, around: tuple[float, float] | None = None, reach: int = 0) -> int:
        """Relax by TDGL with pinning: round fresh walls, let sub-critical domains vanish.

        The quenched disorder pins walls: where the net thermodynamic force |dF/dP| on the
        polarization is below the depinning field, it is held (static friction, applied as a
        reaction field in the semi-implicit step); above it, the excess drives TDGL relaxation.
        A wall whose curvature field sigma / (2 Ps R) exceeds the depinning field, the wall of a
        domain smaller than the critical radius, keeps moving until the domain is gone; larger
        domains stop. Steps end early once nothing moves.

        Args:
            steps: maximum TDGL steps (default ``params.relax_steps``).
            around: (x, y) in m: relax only a window around this point (what a pulse changed),
                or the whole film when the window would hold more than a third of its pixels;
                ``None``: the whole film.
            reach: half-size in pixels of the region that changed around ``around``.

        Returns:
            The number of steps taken.
        """
        p = self.params
        n = p.grid
        steps = p.relax_steps if steps is None else steps
        size = n
        if around is not None:
            size = 16 * math.ceil((2 * (reach + _MARGIN) + 1) / 16)
        # A window's frozen rim keeps its inner edge moving, so its relaxation runs all `steps`
        # steps of four FFTs; the whole film's stops after about two thirds of them with two
        # (nothing frozen): a window is cheaper only when it has under a third of the film's pixels.
        if 3 * size * size > n * n:
            window = (slice(None), slice(None))
            frozen = np.zeros((n, n), dtype=bool)
            size = n
        else:
            ci, cj = int(round(around[1] / p.spacing - 0.5)), int(round(around[0] / p.spacing - 0.5))
            window = np.ix_((ci - size // 2 + np.arange(size)) % n, (cj - size // 2 + np.arange(size)) % n)
            frozen = np.ones((size, size), dtype=bool)
            frozen[_MARGIN:size - _MARGIN, _MARGIN:size - _MARGIN] = False
        solver = self._solver(size)
        dt = p.relax_dt * solver.tau
        P, taken = solver.relax_pinned(self.polarization[window], self.random_field[window], self.depinning_field, dt,
                                       frozen, steps, 1e-4 * self.ps)
        self.polarization[window] = P
        self.version += 1
        return taken
