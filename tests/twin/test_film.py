"""Writing and relaxing domains in the film, against the targets of docs/physics.md ("Kinetics")."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from twin.film import Film, FilmParams
from twin.kinetics import CreepLaw, arrival_times
from twin.tipfield import SpherePlaneTip

CENTER = (0.5e-6, 0.5e-6)


def fresh(**kwargs) -> Film:
    """A 1 um, 128 x 128 film (7.8 nm pixels, as the default 2 um / 256), all polarized up."""
    return Film(FilmParams(grid=128, size=1e-6, init="up", **kwargs), np.random.default_rng(11))


def written_radius(film: Film) -> float:
    """Equivalent radius (m) of the largest down domain, 0 if none."""
    labels, count = ndimage.label(film.u < 0)
    if count == 0:
        return 0.0
    area = np.bincount(labels.ravel())[1:].max() * film.params.spacing**2
    return float(np.sqrt(area / np.pi))


def pulse(film: Film, bias: float, width: float, at=CENTER) -> float:
    film.pulse(*at, bias, width)
    return written_radius(film)


def test_tip_field_matches_the_sphere_plane_example():
    tip = SpherePlaneTip()  # eps11 120, eps33 65, eps_e 81, R0 25 nm (docs/physics.md)
    assert tip.charge_height == pytest.approx(23e-9, rel=0.02)
    # On a thick film the electrode is far: the half-space potential U d / sqrt(rho^2 + d^2).
    rho = np.array([0.0, 10e-9, 23e-9, 60e-9])
    half_space = tip.charge_height / np.sqrt(rho**2 + tip.charge_height**2)
    assert tip.surface_potential(rho, 1.0, 20e-6) == pytest.approx(half_space, rel=2e-3)


def test_the_bottom_electrode_confines_the_writing_field():
    from scipy import integrate, special

    tip, h = SpherePlaneTip(), 50e-9
    d = tip.charge_height

    def direct(rho: float) -> float:  # phi_s / U = d int exp(-k d) T(k) J0(k rho) dk, by quadrature
        f = lambda k: d * np.exp(-k * d) * tip.transfer(k, h) * special.j0(k * rho)  # noqa: E731
        return integrate.quad(f, 0, 60 / d, limit=400)[0]

    for rho in (0.0, 20e-9, 40e-9, 100e-9):
        assert tip.field(rho, 1.0, h) * h == pytest.approx(direct(rho), rel=5e-3, abs=1e-4)
    # Under the apex the electrode takes 15 % of the half-space potential; 6 film thicknesses
    # out it has removed the 1/rho tail: about a tenth of the half-space value.
    assert tip.field(0.0, 1.0, h) == pytest.approx(0.853 * 2e7, rel=0.01)
    far = 6 * h
    assert tip.field(far, 1.0, h) < 0.15 * d / np.hypot(far, d) / h


def test_written_radius_at_the_reference_pulse():
    # docs/physics.md: r(0.25 ms) ~ 40 nm at 7.74 V for a 25 nm tip on a 50 nm film.
    assert pulse(fresh(), 7.74, 0.25e-3) == pytest.approx(40e-9, abs=8e-9)


def test_radius_is_linear_in_log_pulse_time_over_four_decades():
    widths = np.logspace(-4, 0, 5)
    radii = np.array([pulse(fresh(), 7.74, w) for w in widths])
    slope, intercept = np.polyfit(np.log10(widths), radii, 1)
    residual = radii - (slope * np.log10(widths) + intercept)
    # 10-15 nm per decade (docs/physics.md), allowing for the pixel size (7.8 nm).
    assert 8e-9 <= slope <= 16e-9
    assert np.max(np.abs(residual)) < 4e-9, f"not logarithmic: radii {radii}"
    assert np.all(np.diff(radii) > 0)


def test_radius_grows_with_bias_magnitude_and_either_polarity_writes():
    radii = [pulse(fresh(), v, 1e-3) for v in (5.0, 7.74, 10.0)]
    assert radii[0] < radii[1] < radii[2]
    up = Film(FilmParams(grid=128, size=1e-6, init="down"), np.random.default_rng(11))
    up.pulse(*CENTER, -7.74, 1e-3)
    labels, _ = ndimage.label(up.u > 0)
    area = np.bincount(labels.ravel())[1:].max() * up.params.spacing**2
    assert np.sqrt(area / np.pi) == pytest.approx(radii[1], rel=0.15)


def test_nothing_is_written_below_threshold():
    # Nucleation-limited: at 2 V not even a 1 s pulse writes; at 4 V nothing before 0.1 ms.
    assert pulse(fresh(), 2.0, 1.0) == 0.0
    assert pulse(fresh(), 4.0, 1e-4) == 0.0
    assert pulse(fresh(), 4.0, 1.0) > 20e-9


def test_opposite_polarity_erases():
    film = fresh()
    assert pulse(film, 7.74, 1e-3) > 30e-9
    pulse(film, -10.0, 1e-2)
    assert written_radius(film) == 0.0
    assert np.all(film.u > 0.5)


def test_sub_critical_domains_relax_and_larger_ones_stay():
    film = fresh()
    x, y = film.coordinates()
    for radius in (10e-9, 45e-9):
        film.polarization = np.where(np.hypot(x - 0.5e-6, y - 0.5e-6) < radius, -film.ps, film.ps)
        film.relax(steps=200)
        if radius < 15e-9:
            assert written_radius(film) == 0.0, "a 10 nm domain must back-switch"
        else:
            assert written_radius(film) == pytest.approx(radius, rel=0.12), "a 45 nm domain is pinned"


def test_a_pulse_beside_a_wall_pushes_the_wall():
    film = Film(FilmParams(grid=128, size=1e-6, init="wall", disorder=0.0), np.random.default_rng(2))
    down = film.u < 0
    row = 64
    wall_col = int(np.argmax(np.diff(np.sign(film.u[row])) < 0))  # up (left) -> down (right)
    at = ((wall_col + 2.5) * film.params.spacing, (row + 0.5) * film.params.spacing)
    film.write(*at, 6.0, 1e-3)  # on the down side: the favoured state, so no nucleus is needed
    grown = (film.u < 0) & ~down
    assert grown.sum() > 10
    assert grown[row, wall_col - 2], "the wall moved into the up domain, left of where it was"
    labels, count = ndimage.label(film.u < 0)
    assert count == ndimage.label(down)[1], "no new, separate domain: the old wall moved"


def test_arrival_times_follow_the_local_speed():
    # Uniform slowness: the front from a point arrives at distance r after r * slowness
    # (16-neighbour stencil: within 3 % of the Euclidean distance in every direction).
    n = 41
    slowness = np.full((n, n), 2.0)
    start = np.full((n, n), np.inf)
    start[20, 20] = 0.0
    t = arrival_times(slowness, start, spacing=1.0, horizon=1e9)
    i, j = np.mgrid[:n, :n]
    r = np.hypot(i - 20, j - 20)
    ring = (r > 12) & (r < 18)
    assert np.allclose(t[ring], 2.0 * r[ring], rtol=0.03)
    # A horizon stops the sweep.
    assert np.isinf(arrival_times(slowness, start, 1.0, horizon=10.0)[20, 40])


def test_the_compiled_switching_is_the_numpy_steps():
    """CreepLaw.switched (one compiled pass) switches the pixels that velocity, the nucleation delay and
    arrival_times do, for pulses that nucleate, grow a favoured domain, or do nothing."""
    law = CreepLaw()
    rng = np.random.default_rng(8)
    n, spacing = 25, 7.8e-9
    i, j = np.mgrid[:n, :n]
    rho = np.hypot(i - 12.3, j - 11.8) * spacing
    counts = []
    for peak, width, seeded in ((5e8, 2.5e-4, False), (5e8, 2.5e-4, True), (5e7, 1e-5, False), (8e8, 1e-3, False)):
        drive = peak / (1 + (rho / 15e-9) ** 2) ** 1.5 + 2e7 * rng.standard_normal((n, n))
        favoured = rho < 20e-9 if seeded else np.zeros((n, n), dtype=bool)  # a domain under the tip grows
        apex = np.unravel_index(np.argmin(rho), rho.shape)
        velocity = law.velocity(drive)
        with np.errstate(divide="ignore", over="ignore"):  # v -> 0 far out: slowness -> inf
            slowness = np.where(velocity > 0, 1.0 / velocity, np.inf)
        start = np.where(favoured, 0.0, np.inf)
        if not favoured[apex]:
            start[apex] = law.nucleation_delay(float(drive[apex]))
        reference = (arrival_times(slowness, start, spacing, width) <= width) & ~favoured
        ours = law.switched(drive, favoured, apex, spacing, width)
        assert np.array_equal(ours, reference)
        counts.append(int(ours.sum()))
    assert counts[0] > 20 and counts[1] > 0 and counts[2] == 0 and counts[3] > counts[0], counts


def test_creep_law_is_activated():
    law = CreepLaw()
    v = law.velocity(np.array([-1e8, 0.0, 5e7, 1e8, 2e8]))
    assert v[0] == v[1] == 0.0
    assert 0 < v[2] < v[3] < v[4] < law.v0
    # v = v0 exp[-(Ec/E)^mu]: ln(-ln(v / v0)) is linear in ln E with slope -mu, and Ec/E = 1 at E = Ec.
    barrier = -np.log(v[2:] / law.v0)
    slope = (np.log(barrier[2]) - np.log(barrier[1])) / np.log(2.0)
    assert slope == pytest.approx(-law.exponent, rel=1e-9)
    assert law.velocity(law.creep_field) == pytest.approx(law.v0 / np.e, rel=1e-12)
