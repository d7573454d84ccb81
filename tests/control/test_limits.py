"""SafetyLimits: every bad value is refused with a message naming the value, the limit and the fix."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import control
from control import HardwareSpec, InvalidArgumentError, LimitError, SafetyLimits, ScanSpec

LIMITS = SafetyLimits.from_hardware()


@pytest.mark.parametrize(
    ("amplitude", "width", "error", "match"),
    [
        (10.5, 1e-3, LimitError, r"amplitude=10\.5 V exceeds the bias limit of ±10\.0 V; use \|amplitude\| <= 10\.0 V"),
        (-11, 1e-3, LimitError, r"amplitude=-11\.0 V"),
        (5, 1e-7, LimitError, r"width=1e-07 s is outside the pulse width range \[1e-06, 10\.0\] s"),
        (5, 11.0, LimitError, r"width=11\.0 s"),
        (math.nan, 1e-3, InvalidArgumentError, r"amplitude=nan is not finite"),
        (5, math.inf, InvalidArgumentError, r"width=inf is not finite"),
        ("5", 1e-3, InvalidArgumentError, r"amplitude='5' is a str"),
        (True, 1e-3, InvalidArgumentError, r"amplitude=True is a bool"),
        (5, None, InvalidArgumentError, r"width=None is a NoneType"),
    ],
)
def test_bad_pulses_are_refused(amplitude, width, error, match):
    with pytest.raises(error, match=match):
        LIMITS.check_pulse(amplitude, width)


def test_errors_are_also_builtin_errors():
    with pytest.raises(ValueError):
        LIMITS.check_pulse(20, 1e-3)
    with pytest.raises(TypeError):
        LIMITS.check_pulse("x", 1e-3)
    assert issubclass(control.TransportError, OSError)
    assert all(issubclass(e, control.PfmTwinError) for e in (LimitError, InvalidArgumentError, control.UrlError))


def test_numpy_numbers_are_accepted():
    assert LIMITS.check_pulse(np.float32(5.0), np.float64(1e-3)) == (5.0, 1e-3)
    assert LIMITS.check_position(np.int64(0), 1e-6) == (0.0, 1e-6)


@pytest.mark.parametrize(("x", "y"), [(-1e-9, 0.0), (0.0, 10.1e-6), (11e-6, 5e-6)])
def test_positions_outside_the_scanner_are_refused(x, y):
    with pytest.raises(LimitError, match=r"outside the scanner range \[0\.0, 1e-05\] m; choose"):
        LIMITS.check_position(x, y)


@given(st.floats(min_value=-10.0, max_value=10.0), st.floats(min_value=1e-6, max_value=10.0))
def test_every_pulse_inside_the_limits_passes(amplitude, width):
    assert LIMITS.check_pulse(amplitude, width) == (amplitude, width)


def test_limits_never_wider_than_the_hardware():
    with pytest.raises(LimitError, match=r"bias_max=12\.0 V must be in \(0, 10\.0\] V"):
        SafetyLimits.from_hardware(bias_max=12.0)
    tight = SafetyLimits.from_hardware(bias_max=5.0)
    with pytest.raises(LimitError, match=r"amplitude=6\.0 V exceeds the bias limit of ±5\.0 V"):
        tight.check_pulse(6.0, 1e-3)
    with pytest.raises(LimitError):
        SafetyLimits.from_hardware(HardwareSpec(scan_range=5e-6), x_range=(0.0, 6e-6))


def test_scan_specs_are_checked():
    ok = ScanSpec(center=(1e-6, 1e-6), size=(1e-6, 1e-6), pixels=(64, 32))
    LIMITS.check_scan(ok)
    assert ok.shape == (32, 64)
    with pytest.raises(LimitError, match=r"line_rate=20\.0 Hz is outside \[0\.01, 10\.0\] Hz"):
        LIMITS.check_scan(ScanSpec(center=(1e-6, 1e-6), size=(1e-6, 1e-6), line_rate=20.0))
    with pytest.raises(LimitError, match=r"points per line=4 is outside \[8, 1024\]"):
        LIMITS.check_scan(ScanSpec(center=(1e-6, 1e-6), size=(1e-6, 1e-6), pixels=(4, 64)))
    with pytest.raises(LimitError, match=r"scan x extent .* leaves the scanner range"):
        LIMITS.check_scan(ScanSpec(center=(0.2e-6, 1e-6), size=(1e-6, 1e-6)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"center": (1e-6,)}, r"center=\(1e-06,\) must be a pair"),
        ({"size": (0.0, 1e-6)}, r"size=\(0\.0, 1e-06\) must be positive"),
        ({"pixels": (64.0, 64)}, r"pixels\[0\]=64\.0 is a float; pass a whole number"),
        ({"path": "zigzag"}, r"path='zigzag' is not a scan path; use 'raster' or 'spiral'"),
        ({"retrace": 1}, r"retrace=1 must be True or False"),
        ({"line_rate": math.nan}, r"line_rate=nan is not finite"),
    ],
)
def test_malformed_scan_specs_are_refused(kwargs, match):
    args = {"center": (1e-6, 1e-6), "size": (1e-6, 1e-6)} | kwargs
    with pytest.raises(InvalidArgumentError, match=match):
        ScanSpec(**args)


def test_spiral_positions_stay_inside_the_scan_box():
    spec = ScanSpec(center=(2e-6, 3e-6), size=(1e-6, 0.5e-6), pixels=(64, 16), path="spiral")
    x, y = spec.positions()
    assert x.shape == y.shape == (16, 64)
    assert np.all(np.abs(x - 2e-6) <= 0.5e-6) and np.all(np.abs(y - 3e-6) <= 0.25e-6)
    r = np.hypot((x - 2e-6) / 0.5e-6, (y - 3e-6) / 0.25e-6).ravel()
    assert np.all(np.diff(r) > 0), "an Archimedean spiral moves outwards monotonically"
