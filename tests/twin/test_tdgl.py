"""TDGL solver checks from docs/physics.md: wall velocity, curvature-driven shrinkage, stability.

All runs use a thick-interface (rescaled) PbTiO3 potential so that the wall spans several
pixels; the rescaling keeps Ps and the wall energy, which the targets are written in.
"""

import numpy as np
import pytest
import scipy.fft

from twin.landau import PbTiO3Landau
from twin.tdgl import TDGL

PTO = PbTiO3Landau(temperature=25.0)
PS = 0.757  # C/m^2, docs/physics.md
SIGMA = 0.133  # J/m^2, docs/physics.md 180 degree wall energy (preserved by rescaling)
G_WALL = 0.6 * 1.73e-10  # J m / C^2, docs/physics.md effective g of the 180 degree wall


def thick(width):
    """PbTiO3 rescaled so that its wall is ``width`` (m) wide."""
    return PTO.rescaled(PTO.scale_for_width(width))


def strip_with_two_walls(shape, spacing, width, Ps=PS):
    """P = +Ps between L/4 and 3L/4 along x, -Ps outside, tanh walls of ``width``."""
    ny, nx = shape
    x = (np.arange(nx) + 0.5) * spacing
    length = nx * spacing
    half = width / 2
    profile = -Ps * np.tanh((x - length / 4) / half) * np.tanh((x - 3 * length / 4) / half)
    return np.tile(profile, (ny, 1))


def zero_crossings(P, spacing):
    """Positions (m) where the row-averaged profile changes sign, linearly interpolated."""
    p = P.mean(axis=0)
    i = np.flatnonzero(np.sign(p[:-1]) != np.sign(p[1:]))
    return (i + 0.5 + p[i] / (p[i] - p[i + 1])) * spacing


def test_driven_flat_wall_velocity():
    spacing = 0.5e-9
    potential = thick(8 * spacing)  # wall 8 pixels wide
    g = potential.effective_gradient()
    assert g / potential.scale == pytest.approx(G_WALL)
    solver = TDGL(potential, g, (4, 256), spacing, gamma=1.0, stabilization=0.0)
    E = 0.02 * potential.coercive_field
    dt = 0.02 * solver.tau
    P = strip_with_two_walls(solver.shape, spacing, potential.wall().width)

    P = solver.run(P, 20 * solver.tau, dt, field=E)  # transient: the profile adapts to E
    times, halves = [], []
    for k in range(8):
        P = solver.run(P, 15 * solver.tau, dt, field=E)
        left, right = zero_crossings(P, spacing)
        times.append(k * 15 * solver.tau)
        halves.append((right - left) / 2)  # the +Ps domain grows at both walls
    velocity = np.polyfit(times, halves, 1)[0]

    expected = 2 * solver.gamma * g * PS * E / SIGMA
    # The walls really moved (several pixels), so the fit is not of noise.
    assert halves[-1] - halves[0] > 4 * spacing
    assert velocity == pytest.approx(expected, rel=0.02)


def test_circular_domain_shrinks_at_constant_dR2_dt():
    spacing = 1e-9
    n = 128
    potential = thick(6e-9)
    g = potential.effective_gradient()
    solver = TDGL(potential, g, (n, n), spacing, stabilization=0.0)
    centre = (np.arange(n) + 0.5 - n / 2) * spacing
    r = np.hypot(*np.meshgrid(centre, centre))
    R0 = 40e-9
    P = -PS * np.tanh((r - R0) / (potential.wall().width / 2))

    rate = 2 * solver.gamma * g  # docs/physics.md: dR^2/dt = -2 Gamma g
    chunks = 40
    chunk = R0**2 / rate / chunks
    times, R2 = [], []
    for k in range(chunks):
        P = solver.run(P, chunk, 0.02 * solver.tau)
        area = np.sum((1 + P / PS) / 2) * spacing**2
        times.append((k + 1) * chunk)
        R2.append(area / np.pi)
    times, R2 = np.array(times), np.array(R2)
    middle = (R2 < 0.8 * R0**2) & (R2 > 0.2 * R0**2)
    assert middle.sum() >= 10
    slope = np.polyfit(times[middle], R2[middle], 1)[0]
    assert slope == pytest.approx(-rate, rel=0.05)
    # Straight line: the residuals of R^2(t) are small against the change of R^2.
    fit = np.polyval(np.polyfit(times[middle], R2[middle], 1), times[middle])
    assert np.max(np.abs(R2[middle] - fit)) < 0.02 * R0**2


def relaxed_strip(dt_in_tau, stabilization, duration_in_tau=100.0):
    """A two-wall strip relaxed from walls half as wide as the equilibrium ones."""
    spacing = 0.5e-9
    potential = thick(8 * spacing)
    solver = TDGL(
        potential, potential.effective_gradient(), (4, 256), spacing, stabilization=stabilization
    )
    P0 = strip_with_two_walls(solver.shape, spacing, potential.wall().width / 2)
    P = solver.run(P0, duration_in_tau * solver.tau, dt_in_tau * solver.tau)
    return solver, potential, P0, P


def test_stabilized_large_steps_reach_the_same_equilibrium():
    _, _, P0, accurate = relaxed_strip(0.02, stabilization=0.0)
    solver, _, _, fast = relaxed_strip(2.0, stabilization=None)
    assert solver.stabilization > 0
    assert np.all(np.isfinite(fast))
    assert np.max(np.abs(fast)) < 1.01 * PS
    # The profile changed (the start was twice too steep) and both runs agree.
    assert np.max(np.abs(accurate - P0)) > 0.1 * PS
    np.testing.assert_allclose(fast, accurate, atol=1e-4 * PS)


def test_unstabilized_large_steps_blow_up():
    # The check above would be empty if any scheme survived 2 tau steps.
    with np.errstate(all="ignore"):
        _, _, _, P = relaxed_strip(2.0, stabilization=0.0, duration_in_tau=40.0)
    assert not (np.all(np.isfinite(P)) and np.max(np.abs(P)) < 1.01 * PS)


def test_relaxed_wall_has_the_predicted_width_and_energy():
    solver, potential, _, P = relaxed_strip(1.0, stabilization=None)
    spacing = solver.spacing[1]
    predicted = potential.wall()

    # Width 2 Ps / P'(0), with the slope of the Fourier interpolant at the zero crossing
    # (interpolating a sampled slope would flatten its peak by about 1 %).
    p = P.mean(axis=0)
    k = 2 * np.pi * scipy.fft.fftfreq(p.size, d=spacing)
    left = zero_crossings(P, spacing)[0]
    phase = np.exp(1j * k * (left - 0.5 * spacing))  # pixel i sits at (i + 0.5) spacing
    slope = np.real(np.sum(1j * k * scipy.fft.fft(p) * phase)) / p.size
    width = 2 * PS / slope
    assert width == pytest.approx(predicted.width, rel=0.01)
    assert width / potential.scale == pytest.approx(1.2e-9, abs=0.1e-9)

    # Energy: excess over the uniform state, per wall and per unit wall length.
    uniform = np.full(solver.shape, potential.spontaneous_polarization)
    excess = solver.free_energy(P) - solver.free_energy(uniform)
    wall_length = solver.shape[0] * solver.spacing[0]
    energy = excess / (2 * wall_length)
    assert energy == pytest.approx(predicted.energy, rel=0.01)
    assert energy == pytest.approx(SIGMA, abs=0.007)


def test_run_takes_whole_steps_and_shortens_the_last():
    spacing = 1e-9
    potential = thick(4e-9)
    solver = TDGL(potential, potential.effective_gradient(), (8, 8), spacing)
    P = np.random.default_rng(1).uniform(-0.1, 0.1, solver.shape)
    dt = 0.3 * solver.tau
    by_hand = P
    for step in (dt, dt, dt, 0.1 * solver.tau):  # 1 tau = 3 x 0.3 tau + 0.1 tau
        by_hand = solver.step(by_hand, step)
    np.testing.assert_allclose(solver.run(P, 1.0 * solver.tau, dt), by_hand, rtol=1e-12)
    np.testing.assert_array_equal(solver.run(P, 0.0, dt), P)
    assert solver.run(P, 3 * dt, dt) is not P


def test_uniform_field_accepts_arrays_equal_to_scalars():
    potential = thick(4e-9)
    solver = TDGL(potential, potential.effective_gradient(), (8, 16), 1e-9)
    P = np.full(solver.shape, -PS)
    E = 1e7
    np.testing.assert_allclose(
        solver.step(P, solver.tau, field=np.full(solver.shape, E)),
        solver.step(P, solver.tau, field=E),
        rtol=1e-14,
    )


def test_rejects_bad_arguments():
    potential = thick(4e-9)
    g = potential.effective_gradient()
    solver = TDGL(potential, g, (8, 16), 1e-9)
    with pytest.raises(ValueError, match=r"shape \(16, 8\)"):
        solver.step(np.zeros((16, 8)), solver.tau)
    with pytest.raises(ValueError, match="field has shape"):
        solver.step(np.zeros((8, 16)), solver.tau, field=np.zeros(3))
    with pytest.raises(ValueError, match="dt=-1"):
        solver.step(np.zeros((8, 16)), -1.0)
    with pytest.raises(ValueError, match="duration=-1"):
        solver.run(np.zeros((8, 16)), -1.0, solver.tau)
    with pytest.raises(ValueError, match="gradient=0"):
        TDGL(potential, 0.0, (8, 16), 1e-9)
    with pytest.raises(ValueError, match="spacing="):
        TDGL(potential, g, (8, 16), -1e-9)
    with pytest.raises(ValueError, match="shape="):
        TDGL(potential, g, (8,), 1e-9)
    with pytest.raises(ValueError, match="stabilization=-1"):
        TDGL(potential, g, (8, 16), 1e-9, stabilization=-1.0)


class _Opaque:
    """The same potential without its coefficients: TDGL.relax_pinned takes its Python path."""

    def __init__(self, potential):
        self._p = potential
        self.a1 = potential.a1
        self.spontaneous_polarization = potential.spontaneous_polarization
        self.dfdp, self.d2fdp2, self.free_energy = potential.dfdp, potential.d2fdp2, potential.free_energy


@pytest.mark.parametrize("window", [True, False], ids=["window", "whole-film"])
def test_the_compiled_pinned_relaxation_is_the_python_one_bit_for_bit(window):
    spacing = 7.8e-9
    potential = thick(3 * spacing)
    g = potential.effective_gradient()
    rng = np.random.default_rng(4)
    shape = (48, 48)
    P = strip_with_two_walls(shape, spacing, 3 * spacing, Ps=potential.spontaneous_polarization)
    P[20:28, 5:15] *= -1  # a written island: sub-critical, it shrinks
    field = 0.05 * potential.coercive_field * rng.standard_normal(shape)
    frozen = np.ones(shape, dtype=bool)
    frozen[10:38, 10:38] = False
    if not window:  # nothing frozen: the spectrum is carried from step to step
        frozen[:] = False
    args = (field, 0.02 * potential.coercive_field, 0.5 * TDGL(potential, g, shape, spacing).tau, frozen, 60,
            1e-4 * potential.spontaneous_polarization)
    compiled, taken = TDGL(potential, g, shape, spacing).relax_pinned(P, *args)
    reference, taken_ref = TDGL(_Opaque(potential), g, shape, spacing).relax_pinned(P, *args)
    assert taken == taken_ref and 1 < taken <= 60
    assert compiled.tobytes() == reference.tobytes(), "the same operations in the same order: the same bits"
    assert not np.array_equal(compiled, P) and np.array_equal(compiled[frozen], P[frozen])
