"""connect(url): backend chosen by URL scheme through entry points; options checked."""

from __future__ import annotations

import re

import numpy as np
import pytest

import control
from control import UrlError
from control.urls import Option, options, split


def test_twin_is_registered_as_a_backend():
    assert "twin" in control.backends()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("nosuch://x", r"no backend for scheme 'nosuch' in 'nosuch://x'; accepted: .*twin://.*socket://"),
        ("twin-seed-7", r"has no scheme; write it as scheme://address\?option=value, e.g. 'twin://\?seed=7'"),
        ("twin://?sead=7", r"unknown option\(s\) 'sead' in 'twin://\?sead=7'; accepted: seed=<int >= 0: the sample> \(default 0\)"),
        ("twin://?seed=-1", r"option seed='-1' in .* is invalid .*; expected seed=<int >= 0: the sample>"),
        ("twin://?grid=abc", r"option grid='abc'"),
        ("twin://?seed=1&seed=2", r"option 'seed' is given twice"),
        ("twin://host?seed=1", r"twin URLs take no address, got 'host'"),
        ("twin://?init=striped", r"init='striped'.*grown\|wall\|up\|down\|random\|PATH"),
        ("twin://?seed=\u0663", r"option seed='\u0663' .* is not written with ASCII digits"),
    ],
)
def test_bad_urls_are_refused_with_the_accepted_form(url, match):
    with pytest.raises(UrlError, match=match):
        control.connect(url)


def test_url_options_convert_and_default():
    accepted = {"a": Option(int, 3, "int"), "b": Option(float, 0.5, "float")}
    assert options("x://?a=4", split("x://?a=4")[2], accepted) == {"a": 4, "b": 0.5}
    assert split("socket://127.0.0.1:7001?timeout=1") == ("socket", "127.0.0.1:7001", {"timeout": "1"})


def test_limits_passed_to_connect_are_enforced(small_twin_url):
    with control.connect(small_twin_url) as scope:
        hardware = scope.info().hardware  # the twin's scanner spans its film: 0.5 um here
    limits = control.SafetyLimits.from_hardware(hardware, bias_max=3.0)
    with control.connect(small_twin_url, limits=limits) as scope:
        assert scope.info().limits.bias_max == 3.0
        with pytest.raises(control.LimitError, match=r"±3\.0 V"):
            scope.apply_pulse(1e-7, 1e-7, 4.0, 1e-3)


def test_limits_wider_than_the_hardware_are_refused_at_connect(small_twin_url):
    wide = control.SafetyLimits(
        bias_max=20.0, pulse_width_min=1e-6, pulse_width_max=1.0, x_range=(0.0, 1e-5),
        y_range=(0.0, 1e-5), tip_speed_max=1e-5, line_rate_range=(0.1, 1.0), pixels_range=(8, 64),
    )
    with pytest.raises(control.LimitError, match=r"bias_max=20\.0 V must be in \(0, 10\.0\] V"):
        control.connect(small_twin_url, limits=wide)


def test_a_closed_microscope_refuses_commands(small_twin_url):
    scope = control.connect(small_twin_url)
    scope.close()
    scope.close()  # idempotent
    with pytest.raises(control.InstrumentError, match="closed"):
        scope.now()


# -- issue 11: refused commands never reach the backend ------------------------------------------

URL = "twin://?seed=7&grid=64"
SPOT = control.ScanSpec(center=(1e-6, 1e-6), size=(0.5e-6, 0.5e-6), pixels=(8, 8), line_rate=10.0)


def test_an_absurdly_slow_move_is_refused_and_the_clock_is_untouched():
    with control.connect(URL) as scope:
        with pytest.raises(control.LimitError, match=r"speed=1e-30 m/s is outside \[1e-09, 2e-05\] m/s; pass a speed "
                           r"in that range or None for the maximum"):
            scope.move_tip(1e-6, 1e-6, speed=1e-30)
        assert scope.now() == 0.0
        scope.move_tip(1e-6, 1e-6, speed=1e-9)  # the floor itself: 1.41 um at 1 nm/s
        assert scope.now() == pytest.approx(1414.2135623730951, rel=1e-12)
        record = scope.apply_pulse(1e-6, 1e-6, 5.0, 1e-3)
        assert record.start > 1414.0


def test_a_scan_longer_than_a_day_is_refused_before_the_backend_sees_it():
    with control.connect(URL) as scope:
        slow = control.ScanSpec(center=(1e-6, 1e-6), size=(1e-6, 1e-6), pixels=(8, 1000), line_rate=0.01)
        with pytest.raises(control.LimitError, match=r"the scan takes 100000\.0 s of instrument time"):
            scope.scan(slow)
        assert scope.now() == 0.0


@pytest.mark.parametrize(
    ("verb", "args"),
    [
        ("move_tip", (10**400, 1e-6)),
        ("move_tip", (1e-6, 1e-6)),  # with speed=10**400, below
        ("apply_pulse", (1e-6, 10**400, 5.0, 1e-3)),
        ("apply_pulse", (1e-6, 1e-6, 5.0, -10**400)),
    ],
)
def test_numbers_no_float_can_hold_are_refused_by_the_guard(verb, args):
    kwargs = {"speed": 10**400} if args == (1e-6, 1e-6) else {}
    with control.connect(URL) as scope:
        with pytest.raises(control.InvalidArgumentError, match=r"=\(an int of 401 digits\) is too large for a float"):
            getattr(scope, verb)(*args, **kwargs)
        assert scope.now() == 0.0


@pytest.mark.parametrize("on_line", [42, "print", [print]])
def test_on_line_must_be_callable_and_is_checked_before_the_scan_starts(on_line):
    with control.connect(URL) as scope:
        with pytest.raises(control.InvalidArgumentError, match=rf"on_line={re.escape(repr(on_line))} is a {type(on_line).__name__}; "
                           r"pass a function f\(index, t, channels\) or None"):
            scope.scan(SPOT, on_line=on_line)
        assert scope.now() == 0.0
        assert scope.scan(SPOT, on_line=None).amplitude.shape == (8, 8)


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        ("tight", r"limits='tight' is a str; pass a control\.SafetyLimits \(e\.g\. SafetyLimits\.from_hardware\("
                  r"info\.hardware, bias_max=5\.0\) with the instrument's info\(\)\) or None for the instrument's own"),
        (("bias_max", 5.0), r"limits=\('bias_max', 5\.0\) is a tuple; pass a control\.SafetyLimits"),
    ],
)
def test_limits_of_the_wrong_type_are_refused_at_connect(limits, match):
    with pytest.raises(control.InvalidArgumentError, match=match):
        control.connect(URL, limits=limits)


def test_a_mapping_of_limits_tightens_the_backends_own_and_never_widens_them():
    with control.connect(URL, limits={"bias_max": 5.0, "x_range": (1e-7, 4e-7)}) as scope:
        own = control.connect(URL)
        try:
            assert scope.limits.bias_max == 5.0 < own.limits.bias_max
            assert scope.limits.x_range == (1e-7, 4e-7) and scope.limits.y_range == own.limits.y_range
            assert scope.info().limits == scope.limits
        finally:
            own.close()
        with pytest.raises(control.LimitError, match=r"amplitude=6\.0 V exceeds the bias limit of ±5\.0 V"):
            scope.apply_pulse(2e-7, 2e-7, 6.0, 1e-3)
    with pytest.raises(control.LimitError, match=r"limits may only be tightened: bias_max=50\.0 is above 10\.0"):
        control.connect(URL, limits={"bias_max": 50.0})
    with pytest.raises(control.LimitError, match=r"pulse_width_min=1e-07 is below"):
        control.connect(URL, limits={"pulse_width_min": 1e-7})
    with pytest.raises(control.InvalidArgumentError, match=r"unknown safety limit\(s\) 'bias'"):
        control.connect(URL, limits={"bias": 5.0})


def test_limits_of_the_wrong_type_are_refused_by_guarded_which_closes_the_backend():
    from control.connect import open_backend

    backend = open_backend(URL)
    with pytest.raises(control.InvalidArgumentError, match=r"limits=5 is a int; pass a control\.SafetyLimits"):
        control.Guarded(backend, limits=5)
    assert backend._closed


# -- issue 11: the twin's scanner reaches exactly its film ----------------------------------------

MAZE = "twin://?seed=7&grid=64&init=random&noise=0&drift=0&texture=0&scanner=closed"


def test_the_twin_scans_only_its_film_never_a_periodic_copy():
    with control.connect(MAZE) as scope:
        info = scope.info()
        field = info.options["field"]
        assert field == 5.25e-6 and info.hardware.scan_range == field
        assert info.limits.x_range == info.limits.y_range == (0.0, field)
        # The whole reported range, edge to edge: its two halves are two different parts of the film.
        whole = scope.scan(control.ScanSpec(center=(field / 2, field / 2), size=(field, field), pixels=(64, 16),
                                            line_rate=10.0))
        left, right = np.hsplit(whole.phase, 2)
        same = np.mean(np.abs(left - right) < 1.0)
        assert same < 0.8, f"the halves agree on {same:.0%} of pixels: a periodic copy of the film"
        # Past the edge is refused, naming the extent and the range, and nothing happens.
        before = scope.now()
        beyond = control.ScanSpec(center=(field, field / 2), size=(field, 1e-6), pixels=(64, 8), line_rate=10.0)
        with pytest.raises(control.LimitError, match=r"scan x extent \[2\.625e-06, 7\.875\d*e-06\] m leaves the scanner "
                           r"range \[0\.0, 5\.25e-06\] m"):
            scope.scan(beyond)
        with pytest.raises(control.LimitError, match=r"x=6e-06 m is outside the scanner range \[0\.0, 5\.25e-06\] m"):
            scope.apply_pulse(6e-6, 1e-6, 5.0, 1e-3)
        assert scope.now() == before


def test_limits_as_wide_as_the_default_hardware_are_refused_on_a_smaller_film():
    wide = control.SafetyLimits.from_hardware(bias_max=5.0)  # x_range up to 10 um
    with pytest.raises(control.LimitError, match=r"x_range=\(0\.0, 1e-05\) m must lie in \[0, 5\.25e-06\] m; .*"
                       r"build them from the instrument's hardware: SafetyLimits\.from_hardware\(info\(\)\.hardware"):
        control.connect(MAZE, limits=wide)
    info = control.connect(MAZE).info()
    tight = control.SafetyLimits.from_hardware(info.hardware, bias_max=5.0)
    with control.connect(MAZE, limits=tight) as scope:
        assert scope.info().limits.x_range == (0.0, 5.25e-6)
