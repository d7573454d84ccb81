"""connect(url): backend chosen by URL scheme through entry points; options checked."""

from __future__ import annotations

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
    limits = control.SafetyLimits.from_hardware(bias_max=3.0)
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
