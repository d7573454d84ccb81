"""The vectorized SHO fit and the loop read-out (control/sho.py)."""

from __future__ import annotations

import numpy as np
import pytest

from control import InvalidArgumentError
from control.sho import fit_sho, loop_metrics, projected_loops, sho
from control.spectroscopy import Band, triangle

BAND = Band()  # 64 bins over 327-387 kHz


def _population(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return (rng.uniform(1e-12, 50e-12, n), rng.uniform(345e3, 369e3, n), rng.uniform(40, 250, n),
            rng.uniform(-np.pi, np.pi, n))


def test_the_model_has_pycroscopys_convention():
    """|R| is A at f -> 0 and A Q at f0; the phase runs from phi + pi below resonance to phi above it."""
    a, f0, q, phi = 2e-12, 350e3, 80.0, 0.3
    low, res, high = sho(np.array([1.0, f0, 1e9]), a, f0, q, phi)
    assert abs(low) == pytest.approx(a, rel=1e-6) and abs(res) == pytest.approx(a * q, rel=1e-9)
    assert np.angle(low * np.exp(-1j * (phi + np.pi))) == pytest.approx(0.0, abs=1e-4)
    assert np.angle(high * np.exp(-1j * phi)) == pytest.approx(0.0, abs=1e-3)


def test_noiseless_spectra_are_recovered_to_1_percent_and_better():
    amp, f0, q, phi = _population(500, 1)
    fit = fit_sho(BAND.frequencies(), sho(BAND.frequencies(), amp, f0, q, phi))
    assert np.max(np.abs(fit.frequency / f0 - 1)) < 1e-9
    assert np.max(np.abs(fit.quality / q - 1)) < 1e-7
    assert np.max(np.abs(fit.amplitude / amp - 1)) < 1e-7
    assert np.max(np.abs(np.angle(np.exp(1j * (fit.phase - phi))))) < 1e-7
    assert np.min(fit.r2) > 1 - 1e-12


def test_the_reported_errors_are_the_scatter_on_noisy_spectra():
    """With 5 % noise per bin, (fit - truth) / error is a unit normal for f0, Q and A."""
    amp, f0, q, phi = _population(2000, 2)
    clean = sho(BAND.frequencies(), amp, f0, q, phi)
    rng = np.random.default_rng(3)
    sigma = 0.05 * np.abs(clean).max(axis=1, keepdims=True) / np.sqrt(2)
    fit = fit_sho(BAND.frequencies(), clean + sigma * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape)))
    for got, true, err in ((fit.frequency, f0, fit.frequency_error), (fit.quality, q, fit.quality_error),
                           (fit.amplitude, amp, fit.amplitude_error)):
        z = (got - true) / err
        assert abs(np.mean(z)) < 0.1 and 0.9 < np.std(z) < 1.1
    assert np.median(np.abs(fit.frequency / f0 - 1)) < 1e-3
    assert 0.8 < np.median(fit.r2) < 1.0


def test_shapes_are_kept_and_empty_spectra_give_nan():
    f = BAND.frequencies()
    spectra = sho(f, np.full((2, 3), 1e-12), np.full((2, 3), 357e3), np.full((2, 3), 100.0), np.zeros((2, 3)))
    spectra[1, 2] = 0
    fit = fit_sho(f, spectra)
    assert fit.frequency.shape == (2, 3)
    assert np.isnan(fit.frequency[1, 2]) and np.isfinite(fit.frequency[0, 0])


@pytest.mark.parametrize("frequencies, response, says", [
    (np.arange(3.0), np.ones(3, complex), "at least 4"),
    (np.arange(8.0), np.ones(7, complex), "last axis"),
    (np.arange(8.0), np.ones(8), "complex"),
])
def test_bad_input_is_named(frequencies, response, says):
    with pytest.raises(InvalidArgumentError, match=says):
        fit_sho(frequencies, response)


def _square_loops(dc, up_at, down_at):
    """Ideal switching: +1 once the bias passed ``up_at``, -1 once it passed ``down_at``."""
    out = np.empty((len(up_at), len(dc)))
    for p, (u, d) in enumerate(zip(up_at, down_at)):
        state = -1.0
        for k, v in enumerate(dc):
            state = 1.0 if v >= u else (-1.0 if v <= d else state)
            out[p, k] = state
    return out


def test_coercive_biases_imprint_and_area_of_known_loops():
    dc = np.array(triangle(8.0, 64))  # steps of 0.5 V
    loops = _square_loops(dc, up_at=[3.0, 5.0], down_at=[-2.0, -4.0])
    m = loop_metrics(dc, loops)
    # The crossing lies between the last step below and the first at the coercive bias.
    np.testing.assert_allclose(m.coercive_positive, [2.75, 4.75])
    np.testing.assert_allclose(m.coercive_negative, [-1.75, -3.75])
    np.testing.assert_allclose(m.imprint, [0.5, 0.5])
    assert np.all(m.switched) and np.all(m.remanent_positive == 1) and np.all(m.remanent_negative == -1)
    # A parallelogram of height 2 whose slanted sides cross zero at the coercive biases.
    np.testing.assert_allclose(m.area, 2 * m.coercive_width, rtol=1e-12)
    assert m.summary()["switched_fraction"] == 1.0


def test_a_point_that_never_switches_is_not_counted():
    dc = np.array(triangle(8.0, 64))
    m = loop_metrics(dc, np.full((1, 64), -1.0) + 0.01 * np.sin(np.arange(64)))
    assert not m.switched[0] and abs(m.area[0]) < 0.5


def test_projected_loops_take_the_phase_axis_whatever_the_offset():
    dc = np.array(triangle(8.0, 64))
    states = _square_loops(dc, [3.0], [-3.0])[0]
    offset = 2.2  # rad: the lock-in's phase of the positive state
    f = BAND.frequencies()
    spectra = sho(f, np.full(64, 1e-12), np.full(64, 357e3), np.full(64, 100.0), offset + np.where(states > 0, 0, np.pi))
    loops = projected_loops(fit_sho(f, spectra))
    assert np.all(np.abs(np.abs(loops) - 1e-12) < 1e-15)
    assert loop_metrics(dc, loops).switched
