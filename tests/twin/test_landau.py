"""PbTiO3 Landau potential against the docs/physics.md targets (Haun et al. 1987, P along z)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.landau import G110, LocalPotential, PbTiO3Landau, Wall


@pytest.fixture(scope="module")
def pto() -> PbTiO3Landau:
    return PbTiO3Landau(temperature=25.0)


def test_coefficients_are_haun_1987(pto):
    assert pto.a1 == pytest.approx(3.8e5 * (25.0 - 479.0))
    assert pto.a11 == -7.3e7
    assert pto.a111 == 2.6e8


def test_spontaneous_polarization_at_room_temperature(pto):
    assert pto.spontaneous_polarization == pytest.approx(0.757, abs=0.005)
    # It is a minimum of f: zero force, positive curvature, below the paraelectric state.
    Ps = pto.spontaneous_polarization
    assert abs(pto.dfdp(Ps)) < 1e-6 * abs(pto.a1) * Ps
    assert pto.d2fdp2(Ps) > 0
    assert pto.free_energy(Ps) < 0


def test_curie_temperature_and_jump(pto):
    assert pto.curie_temperature == pytest.approx(492.5, abs=1.0)
    assert pto.polarization_jump == pytest.approx(0.375, abs=0.01)
    Tc = pto.curie_temperature
    # First order: a finite Ps just below Tc, none just above.
    assert PbTiO3Landau(Tc - 0.1).spontaneous_polarization == pytest.approx(
        pto.polarization_jump, rel=0.05
    )
    assert PbTiO3Landau(Tc + 0.1).spontaneous_polarization == 0.0
    assert PbTiO3Landau(600.0).spontaneous_polarization == 0.0
    # At Tc the polar minimum is degenerate with P = 0.
    at_tc = PbTiO3Landau(Tc)
    jump = at_tc.polarization_jump
    assert abs(at_tc.free_energy(jump)) < 1e-9 * abs(at_tc.a11) * jump**4
    assert abs(at_tc.dfdp(jump)) < 1e-9 * abs(at_tc.a11) * jump**3


def test_coercive_field(pto):
    assert pto.coercive_field == pytest.approx(1.61e8, rel=0.02)
    # Independent check: brute-force maximum of -df/dP between 0 and Ps.
    P = np.linspace(0.0, pto.spontaneous_polarization, 200_001)
    assert pto.coercive_field == pytest.approx(np.max(-pto.dfdp(P)), rel=1e-8)


def test_paraelectric_has_no_coercive_field_and_no_wall():
    hot = PbTiO3Landau(550.0)
    assert hot.coercive_field == 0.0
    with pytest.raises(ValueError, match="paraelectric"):
        hot.wall()


def test_180_degree_wall(pto):
    wall = pto.wall()
    assert isinstance(wall, Wall)
    assert wall.gradient == pytest.approx(0.6 * G110)
    assert wall.width == pytest.approx(1.2e-9, abs=0.1e-9)
    assert wall.energy == pytest.approx(0.133, abs=0.007)
    with pytest.raises(AttributeError):
        wall.width = 1.0  # frozen


def test_wall_matches_the_tanh_limit_of_a_quartic_potential():
    # For f = a P^2 + b P^4 (a < 0) the wall is exactly tanh with
    # delta = sqrt(-g / a) and sigma = (4/3) sqrt(-g a) Ps^2 under the (g/2) convention;
    # a tiny a111 makes the sextic term negligible.
    a, b = -1.0e8, 1.0e8
    quartic = LocalPotential(a, b, 1e-6)
    g = 0.6 * G110
    Ps = math.sqrt(-a / (2 * b))
    wall = quartic.wall()
    assert wall.width == pytest.approx(2 * math.sqrt(-g / a), rel=1e-6)
    assert wall.energy == pytest.approx(4 / 3 * math.sqrt(-g * a) * Ps**2, rel=1e-6)


def test_derivatives_are_consistent(pto):
    P = np.linspace(-1.0, 1.0, 101)
    h = 1e-6
    numeric_f1 = (pto.free_energy(P + h) - pto.free_energy(P - h)) / (2 * h)
    numeric_f2 = (pto.dfdp(P + h) - pto.dfdp(P - h)) / (2 * h)
    scale_f1 = np.max(np.abs(pto.dfdp(P)))
    scale_f2 = np.max(np.abs(pto.d2fdp2(P)))
    np.testing.assert_allclose(pto.dfdp(P), numeric_f1, atol=1e-6 * scale_f1)
    np.testing.assert_allclose(pto.d2fdp2(P), numeric_f2, atol=1e-6 * scale_f2)


def test_vectorized_and_odd(pto):
    P = np.random.default_rng(0).uniform(-1, 1, size=(3, 5))
    assert pto.free_energy(P).shape == (3, 5)
    np.testing.assert_array_equal(pto.dfdp(-P), -pto.dfdp(P))
    np.testing.assert_array_equal(pto.free_energy(-P), pto.free_energy(P))


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(min_value=0.2, max_value=50.0))
def test_rescaled_keeps_energy_and_widens_wall(scale):
    pto = PbTiO3Landau()
    thick = pto.rescaled(scale)
    assert thick.scale == pytest.approx(scale)
    assert thick.spontaneous_polarization == pytest.approx(pto.spontaneous_polarization)
    assert thick.coercive_field == pytest.approx(pto.coercive_field / scale)
    assert thick.effective_gradient() == pytest.approx(0.6 * G110 * scale)
    assert thick.wall().energy == pytest.approx(pto.wall().energy, rel=0.01)
    assert thick.wall().width == pytest.approx(pto.wall().width * scale, rel=0.01)


def test_rescaling_composes(pto):
    twice = pto.rescaled(2.0).rescaled(3.0)
    assert twice == pto.rescaled(6.0)
    assert twice.wall().width == pytest.approx(6.0 * pto.wall().width, rel=1e-9)


def test_scale_for_width(pto):
    scale = pto.scale_for_width(5e-9)
    assert scale == pytest.approx(5e-9 / 1.27e-9, rel=0.05)
    thick = pto.rescaled(scale)
    assert thick.wall().width == pytest.approx(5e-9, rel=1e-9)
    assert thick.wall().energy == pytest.approx(0.133, abs=0.007)
    # Relative to an already rescaled potential it composes.
    assert thick.scale_for_width(10e-9) == pytest.approx(2.0, rel=1e-9)


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan, math.inf])
def test_rescaled_rejects_bad_scale(pto, scale):
    with pytest.raises(ValueError, match=r"scale=.* must be"):
        pto.rescaled(scale)


def test_rejects_bad_arguments(pto):
    with pytest.raises(ValueError, match="target_width=-1"):
        pto.scale_for_width(-1e-9 * 1e9)
    with pytest.raises(ValueError, match="gradient=0"):
        pto.wall(gradient=0.0)
    with pytest.raises(ValueError, match="temperature=nan"):
        PbTiO3Landau(math.nan)
    with pytest.raises(ValueError, match="a111=-1"):
        LocalPotential(-1.0, 1.0, -1.0)
