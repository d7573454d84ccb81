"""Band excitation and BEPS on the twin, through ``control.connect`` (docs/physics.md, section 15).

Targets: the SHO fit recovers the twin's contact resonance and Q within 1 % on noiseless data
(here to 1e-6: the twin's cantilever is an exact SHO); the resonance follows the tip (a blunter
tip, a stiffer contact, a higher resonance); BEPS switching comes from the same film physics as
pulses: a point does not switch below the bias whose apex field nucleates a domain within one
step (t_n = tau0 exp(En / E), Section 5), longer steps switch at lower bias (creep), and what a
BEPS measurement wrote stays written, as a scan shows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import control
from control.analysis import domains
from control.sho import fit_sho, loop_metrics, projected_loops
from control.spectroscopy import Band, BEPSSpec, triangle

#: A 1 um film on a 128 grid, all up, uniform, an ideal instrument (no noise, drift or texture).
IDEAL = "twin://?seed=11&init=up&grid=128&field=1e-6&noise=0&texture=0&drift=0&scanner=closed"
POINT = (0.5e-6, 0.5e-6)


def test_the_fit_recovers_the_twins_resonance_and_q_on_noiseless_data():
    with control.connect(IDEAL + "&tip_radius=2.5e-8") as scope:
        twin = scope._backend
        for x, y in [POINT, (0.3e-6, 0.7e-6), (0.8e-6, 0.2e-6)]:
            r = scope.band_excitation(x, y, Band(bins=32))
            fit = fit_sho(r.frequencies, r.response)
            fx, fy = twin._parked(x, y, r.start)
            assert fit.frequency == pytest.approx(twin.be.resonance(fx, fy), rel=1e-6)
            assert fit.quality == pytest.approx(twin.config.pfm.quality, rel=1e-6)
            assert fit.r2 > 1 - 1e-9


def test_a_blunter_tip_raises_the_contact_resonance():
    """Hertz: k* ~ R^(1/3); f0 ~ k*^s with s = contact_sensitivity, so f0 ~ R^(s/3)."""
    f0 = {}
    for radius in (25e-9, 50e-9):
        with control.connect(IDEAL + f"&tip_radius={radius}") as scope:
            r = scope.band_excitation(*POINT)
            f0[radius] = float(fit_sho(r.frequencies, r.response).frequency)
            s = scope._backend.config.pfm.contact_sensitivity
    assert f0[50e-9] / f0[25e-9] == pytest.approx(2 ** (s / 3), rel=1e-6)
    assert f0[50e-9] > f0[25e-9] * 1.02


def test_the_noisy_twin_gives_errors_that_cover_the_truth():
    with control.connect("twin://?seed=11&init=up&grid=128&field=1e-6&texture=0&drift=0&scanner=closed") as scope:
        twin = scope._backend
        results = [scope.band_excitation(x, 0.5e-6, Band(duration=1e-3)) for x in np.linspace(0.2e-6, 0.8e-6, 40)]
        fit = fit_sho(results[0].frequencies, np.array([r.response for r in results]))
        truth = np.array([twin.be.resonance(*twin._parked(r.x, r.y, r.start)) for r in results])
    z = (fit.frequency - truth) / fit.frequency_error
    assert np.all(np.abs(fit.frequency / truth - 1) < 0.01)
    assert 0.5 < np.std(z) < 1.6 and abs(np.mean(z)) < 0.6


def _nucleation_bias(scope, step: float) -> float:
    """The bias whose apex field nucleates a domain within ``step``: tau0 exp(En / E) = step."""
    film = scope._backend.film
    creep = film.params.creep
    field = creep.nucleation_field / math.log(step / creep.nucleation_time)
    lo, hi = 0.01, 10.0
    for _ in range(60):  # the apex field grows with the bias
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(film.tip_field(0.0, mid)) < field else (lo, mid)
    return hi


def _loops(scope, step: float, points: int = 3):
    spec = BEPSSpec.grid(POINT, (0.3e-6, 0.3e-6), (points, 1), triangle(9.0, 72), step=step,
                         band=Band(bins=16, duration=1e-3))
    result = scope.beps(spec)
    fit = fit_sho(result.frequencies, result.response[:, :, 1])  # field off
    return spec, loop_metrics(spec.dc, projected_loops(fit))


def test_beps_loops_switch_where_the_film_nucleates_and_lower_for_longer_steps():
    coercive = {}
    for step in (1e-4, 1e-2):
        with control.connect(IDEAL) as scope:
            threshold = _nucleation_bias(scope, step)
            _, metrics = _loops(scope, step)
        assert np.all(metrics.switched), f"step {step} s: not every point switched"
        # Nothing is written below the nucleation bias; the footprint flips soon above it. The way
        # back needs no nucleus (the written domain's wall is there to move), so it may come sooner.
        assert np.all(metrics.coercive_positive >= threshold - 0.25)
        assert np.all(metrics.coercive_positive <= threshold + 2.5)
        assert np.all(metrics.coercive_negative < 0)
        coercive[step] = float(np.median(metrics.coercive_width))
    assert coercive[1e-2] < coercive[1e-4] - 0.3


def test_what_beps_writes_stays_written():
    """A half cycle (0 -> +9 V -> 0) at a point of the up film leaves a down domain there."""
    with control.connect(IDEAL) as scope:
        spec = BEPSSpec(points=(POINT,), dc=tuple(np.concatenate([np.linspace(0, 9, 19), np.linspace(9, 0, 19)[1:]])),
                        step=1e-3, band=Band(bins=16, duration=1e-3))
        scope.beps(spec)
        image = scope.scan(control.ScanSpec(center=POINT, size=(0.4e-6, 0.4e-6), pixels=(64, 64), line_rate=4.0))
    state = domains(image)
    centre, corner = state[28:36, 28:36], state[:8, :8]
    assert np.all(centre == -np.sign(np.median(corner))), "no domain of the other sign under the BEPS point"
    assert np.mean(state == np.sign(np.median(corner))) > 0.8, "the domain spread over the window"


def test_beps_time_runs_on_the_instrument_clock():
    with control.connect(IDEAL) as scope:
        spec = BEPSSpec(points=(POINT, (0.6e-6, 0.5e-6)), dc=(1.0, -1.0, 0.0), step=2e-3, band=Band(duration=1e-3))
        t0 = scope.now()
        result = scope.beps(spec)
        assert scope.now() - t0 >= spec.duration
    assert np.all(np.diff(result.times.ravel()) >= 2e-3 + 2e-3 - 1e-12)
    assert result.response.shape == (2, 3, 2, 64)


@pytest.mark.parametrize("call, says", [
    (lambda s: s.band_excitation(*POINT, Band(center=1.99e6, width=60e3)), "ADC"),
    (lambda s: s.band_excitation(*POINT, Band(amplitude=11.0)), "bias limit"),
    (lambda s: s.band_excitation(2e-6, 0.5e-6), "outside the scanner range"),
    (lambda s: s.beps(BEPSSpec(points=(POINT,), dc=(9.5,), band=Band(amplitude=1.0))), "bias limit"),
    (lambda s: s.beps(BEPSSpec(points=(POINT,), dc=(1.0,), step=1e-8)), "pulse width range"),
    (lambda s: s.beps(BEPSSpec(points=((0.5e-6, 5e-6),), dc=(1.0,))), "BEPS point"),
    (lambda s: s.beps("all of it"), "BEPSSpec"),
])
def test_the_guard_refuses_before_the_instrument_moves(call, says):
    with control.connect(IDEAL) as scope:
        t0 = scope.now()
        version = scope._backend.film.version
        with pytest.raises((control.LimitError, control.InvalidArgumentError), match=says):
            call(scope)
        assert scope.now() == t0 and scope._backend.film.version == version


@pytest.mark.parametrize("kwargs, says", [
    ({"width": 0.0}, "width"), ({"bins": 2}, "bins"), ({"duration": 5.0}, "duration"), ({"amplitude": -1.0}, "amplitude"),
])
def test_a_band_that_makes_no_sense_is_refused_where_it_is_made(kwargs, says):
    with pytest.raises(control.InvalidArgumentError, match=says):
        Band(**kwargs)


def test_a_be_image_shows_the_domains_a_scan_shows():
    """Walls and domains show in BE images: the fitted phase map has the scan's two states."""
    url = "twin://?seed=11&init=up&grid=128&field=1e-6&texture=0&drift=0&scanner=closed"
    spec = control.ScanSpec(center=POINT, size=(0.4e-6, 0.4e-6), pixels=(32, 32), line_rate=1.0)
    lines = []
    with control.connect(url) as scope:
        scope.apply_pulse(*POINT, 8.0, 1e-3)  # a down domain in the up film
        image = scope.be_image(spec, Band(bins=16, duration=1e-3), on_line=lambda i, t, r: lines.append((i, r.shape)))
        scan = scope.scan(spec)
    assert lines == [(i, (32, 16)) for i in range(32)]
    fit = fit_sho(image.frequencies, image.response)
    axis = 0.5 * np.angle(np.mean(np.exp(2j * fit.phase)))
    state = np.sign(np.cos(fit.phase - axis))
    agree = np.mean(state == domains(scan))
    assert max(agree, 1 - agree) > 0.95
    # Both states are there, the written one in the middle.
    assert 0.05 < np.mean(state == state[16, 16]) < 0.6
    assert np.all(np.diff(image.times.ravel()) >= 1e-3 - 1e-12)


def test_a_be_image_is_refused_whole_before_the_first_pixel():
    with control.connect(IDEAL) as scope:
        t0 = scope.now()
        with pytest.raises(control.LimitError, match="a command may take at most"):
            scope.be_image(control.ScanSpec(center=POINT, size=(0.4e-6, 0.4e-6), pixels=(1024, 1024)),
                           Band(duration=1.0))
        with pytest.raises(control.LimitError, match="leaves the scanner range"):
            scope.be_image(control.ScanSpec(center=(0.1e-6, 0.5e-6), size=(0.4e-6, 0.4e-6), pixels=(8, 8)))
        assert scope.now() == t0
