"""The contract, checked the same way on every backend: the twin in process, the emulator, the surrogate,
and the twin as an INTERSECT service on a Mosquitto broker."""

from __future__ import annotations

import math

import numpy as np
import pytest

import control
from control import InvalidArgumentError, LimitError, ScanSpec

from ..conftest import SMALL_TWIN

OPTIONS = "seed=5&grid=64&field=5e-7&init=wall&scanner=closed"

SPEC = ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.4e-6, 0.4e-6), pixels=(32, 16), line_rate=2.0)

BAD_COMMANDS = [
    ("apply_pulse", (0.2e-6, 0.2e-6, 10.5, 1e-3), LimitError, r"amplitude=10\.5 V exceeds"),
    ("apply_pulse", (0.2e-6, 0.2e-6, 5.0, 0.0), LimitError, r"width=0\.0 s is outside"),
    ("apply_pulse", (0.2e-6, 0.2e-6, math.nan, 1e-3), InvalidArgumentError, r"amplitude=nan"),
    ("apply_pulse", (-1e-6, 0.2e-6, 5.0, 1e-3), LimitError, r"pulse position: x=-1e-06 m"),
    ("apply_pulse", (0.2e-6, 0.2e-6, "5", 1e-3), InvalidArgumentError, r"amplitude='5' is a str"),
    ("move_tip", (0.2e-6, math.inf), InvalidArgumentError, r"y=inf is not finite"),
    ("move_tip", (20e-6, 0.0), LimitError, r"x=2e-05 m is outside the scanner range"),
    ("scan", (ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.4e-6, 0.4e-6), line_rate=100.0),), LimitError, "line_rate"),
    ("scan", (ScanSpec(center=(0.1e-6, 0.25e-6), size=(0.4e-6, 0.4e-6)),), LimitError, "leaves the scanner range"),
    ("scan", ({"center": (0, 0)},), InvalidArgumentError, r"pass a control\.ScanSpec"),
]


@pytest.fixture(scope="module")
def surrogate_model(tmp_path_factory) -> str:
    """A surrogate model file fitted on a few transitions of the same twin (quick, not accurate)."""
    from learning.surrogate_data import collect_transitions
    from learning.surrogate_fit import fit_surrogate

    path = tmp_path_factory.mktemp("surrogate") / "model.pt"
    fit_surrogate(collect_transitions("twin://?" + OPTIONS, 48, seed=0, episode_steps=8), path, seed=0, epochs=20)
    return str(path)


@pytest.fixture(params=["twin", "emulator", "surrogate", "intersect"])
def new_url(request, emulators):
    """Factory of URLs of fresh, identical instruments of one backend kind."""

    def make() -> str:
        if request.param == "twin":
            return "twin://?" + OPTIONS
        if request.param == "surrogate":
            return "surrogate://" + request.getfixturevalue("surrogate_model")
        if request.param == "intersect":
            return request.getfixturevalue("intersect_services")("twin://?" + OPTIONS).url
        return emulators(OPTIONS).url

    return make


def test_info_describes_the_instrument(new_url):
    url = new_url()
    with control.connect(url) as scope:
        info = scope.info()
        assert info.protocol_version == control.PROTOCOL_VERSION
        assert info.hardware.bias_range == 10.0
        assert info.limits.bias_max <= info.hardware.bias_range
        assert info.url == url
        assert isinstance(info.to_dict()["hardware"]["clock"], float)
        assert isinstance(scope, control.Microscope)


@pytest.mark.parametrize(("verb", "args", "error", "match"), BAD_COMMANDS)
def test_bad_input_is_refused_and_nothing_happens(new_url, verb, args, error, match):
    with control.connect(new_url()) as touched, control.connect(new_url()) as pristine:
        before = touched.now()
        with pytest.raises(error, match=match):
            getattr(touched, verb)(*args)
        assert touched.now() == before, "a refused command must not advance the clock"
        a, b = touched.scan(SPEC), pristine.scan(SPEC)
        for name in a.channels:
            np.testing.assert_array_equal(a.channels[name], b.channels[name])
        assert touched.now() == pristine.now()


def test_same_url_same_commands_same_bytes(new_url):
    def session():
        with control.connect(new_url()) as scope:
            first = scope.scan(SPEC)
            record = scope.apply_pulse(0.2e-6, 0.25e-6, 7.74, 0.25e-3)
            second = scope.scan(SPEC)
            return first, record, second, scope.now()

    one, two = session(), session()
    assert one[1] == two[1] and one[3] == two[3]
    for a, b in ((one[0], two[0]), (one[2], two[2])):
        for name in a.channels:
            assert a.channels[name].tobytes() == b.channels[name].tobytes()
    seeds = [control.connect(SMALL_TWIN.format(seed=s)) for s in (5, 6)]
    a, b = (s.scan(SPEC) for s in seeds)
    assert not np.array_equal(a.amplitude, b.amplitude), "another seed must give another image"


def test_scan_shapes_units_and_timing(new_url):
    with control.connect(new_url()) as scope:
        start = scope.now()
        result = scope.scan(SPEC)
        assert set(result.channels) == {"height", "amplitude", "phase"}
        for values in result.channels.values():
            assert values.shape == SPEC.shape == (16, 32)
            assert values.dtype == np.float64 and np.all(np.isfinite(values))
        assert 1e-12 < np.median(result.amplitude) < 1e-9, "amplitude is in m (pm scale)"
        assert np.all((result.phase >= -90) & (result.phase < 270)), "phase in deg"
        assert np.ptp(result.height) < 1e-7, "height in m (nm scale)"
        assert np.all(np.abs(result.x - 0.25e-6) <= 0.2e-6) and np.all(np.abs(result.y - 0.25e-6) <= 0.2e-6)
        assert np.all(np.diff(result.x, axis=1) > 0) and np.all(np.diff(result.y, axis=0) > 0)
        # 16 lines at 2 Hz take 8 s of instrument time, after the approach move.
        np.testing.assert_allclose(np.diff(result.line_times), 0.5, rtol=1e-9)
        assert result.line_times[0] >= start
        assert scope.now() == pytest.approx(result.line_times[0] + 8.0, rel=1e-9)

        retrace = ScanSpec(center=SPEC.center, size=SPEC.size, pixels=SPEC.pixels, line_rate=2.0, retrace=True)
        t0 = scope.now()
        back = scope.scan(retrace)
        assert {"amplitude_retrace", "phase_retrace", "height_retrace"} <= set(back.channels)
        assert scope.now() - t0 == pytest.approx(16.0, abs=0.1), "retrace doubles the time per line"

        spiral = scope.scan(ScanSpec(center=SPEC.center, size=SPEC.size, pixels=(64, 8), path="spiral"))
        assert spiral.amplitude.shape == (8, 64)


def test_pulses_are_quantized_to_the_fpga_clock(new_url):
    with control.connect(new_url()) as scope:
        hw = scope.info().hardware
        for amplitude, width in ((7.74, 0.25e-3), (-3.3, 1.23456789e-5), (10.0, 1e-6)):
            before = scope.now()
            record = scope.apply_pulse(0.3e-6, 0.2e-6, amplitude, width)
            assert record.cycles == round(width * hw.clock)
            assert record.width == record.cycles / hw.clock
            assert abs(record.amplitude - amplitude) <= hw.bias_lsb
            assert (record.x, record.y) == (0.3e-6, 0.2e-6)
            assert record.start > before
            assert scope.now() >= record.end


def test_moving_the_tip_takes_distance_over_speed(new_url):
    with control.connect(new_url()) as scope:
        scope.move_tip(0.1e-6, 0.1e-6)
        t0 = scope.now()
        scope.move_tip(0.4e-6, 0.5e-6, speed=1e-6)
        assert scope.now() - t0 == pytest.approx(0.5, rel=1e-9)  # 0.5 um at 1 um/s
        with pytest.raises(LimitError, match=r"speed=1\.0 m/s is outside"):
            scope.move_tip(0.1e-6, 0.1e-6, speed=1.0)


def test_lines_are_handed_over_as_they_arrive(new_url):
    seen = []
    with control.connect(new_url()) as scope:
        result = scope.scan(SPEC, on_line=lambda i, t, ch: seen.append((i, t, ch)))
    assert [i for i, _, _ in seen] == list(range(SPEC.shape[0]))
    assert [t for _, t, _ in seen] == list(result.line_times)
    for i, _, channels in seen:
        for name, row in channels.items():
            assert row.tobytes() == result.channels[name][i].tobytes()


def test_band_excitation_and_beps_work_where_served_and_say_so_where_not(new_url):
    """The waveform verbs: the same shapes and refusals on every backend that does them; a clear
    InstrumentError naming the backend on one that does not (the surrogate models walls only)."""
    from control.spectroscopy import Band, BEPSSpec

    url = new_url()
    band = Band(bins=8, duration=1e-3)
    spec = BEPSSpec(points=((0.25e-6, 0.25e-6),), dc=(2.0, -2.0), step=1e-3, band=band)
    with control.connect(url) as scope:
        with pytest.raises(LimitError, match="bias limit"):  # refused before the backend, everywhere
            scope.band_excitation(0.25e-6, 0.25e-6, Band(amplitude=10.5))
        if url.startswith("surrogate://"):
            with pytest.raises(control.InstrumentError, match="'surrogate' backend does not do band excitation yet"):
                scope.band_excitation(0.25e-6, 0.25e-6, band)
            with pytest.raises(control.InstrumentError, match="does not do switching spectroscopy"):
                scope.beps(spec)
            return
        t0 = scope.now()
        be = scope.band_excitation(0.25e-6, 0.25e-6, band)
        assert be.response.shape == (8,) and np.iscomplexobj(be.response) and be.start >= t0
        result = scope.beps(spec)
        assert result.response.shape == (1, 2, 2, 8) and np.all(np.abs(result.response) > 0)
        assert scope.now() - t0 >= band.duration + spec.duration
        image = scope.be_image(ScanSpec(center=(0.25e-6, 0.25e-6), size=(0.1e-6, 0.1e-6), pixels=(8, 8)), band)
        assert image.response.shape == (8, 8, 8) and np.all(np.diff(image.times.ravel()) > 0)
