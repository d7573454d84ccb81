"""SafetyLimits: every bad value is refused with a message naming the value, the limit and the fix."""

from __future__ import annotations

import json
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


# -- issue 11: a floor on tip speed, a ceiling on command time ----------------------------------


@pytest.mark.parametrize("speed", [1e-30, 5e-10, 0.0, -1e-6])
def test_speeds_below_the_floor_are_refused(speed):
    with pytest.raises(LimitError, match=rf"speed={speed!r} m/s is outside \[1e-09, 2e-05\] m/s; pass a speed"):
        LIMITS.check_speed(speed)
    assert LIMITS.check_speed(1e-9) == 1e-9 == LIMITS.tip_speed_min


def test_a_scan_longer_than_a_day_is_refused_naming_its_time_the_limit_and_the_fix():
    slow = ScanSpec(center=(5e-6, 5e-6), size=(1e-6, 1e-6), pixels=(1024, 1024), line_rate=0.01)
    with pytest.raises(LimitError, match=r"the scan takes 102400\.0 s of instrument time \(1024 lines at 0\.01 Hz\); "
                       r"a command may take at most 86400\.0 s; raise line_rate or scan fewer lines"):
        LIMITS.check_scan(slow)
    with pytest.raises(LimitError, match=r"takes 8000\.0 s .* \(400 lines at 0\.1 Hz, with retrace\)"):
        SafetyLimits.from_hardware(duration_max=3600.0, tip_speed_min=1e-8).check_scan(
            ScanSpec(center=(5e-6, 5e-6), size=(1e-6, 1e-6), pixels=(8, 400), line_rate=0.1, retrace=True))
    LIMITS.check_scan(ScanSpec(center=(5e-6, 5e-6), size=(1e-6, 1e-6), pixels=(8, 864), line_rate=0.01))  # 1 day


def test_the_speed_floor_and_the_time_ceiling_can_only_be_tightened():
    with pytest.raises(LimitError, match=r"tip speeds \[1e-12, 2e-05\] m/s must lie in \[1e-09, 2e-05\] m/s"):
        SafetyLimits.from_hardware(tip_speed_min=1e-12)
    with pytest.raises(LimitError, match=r"duration_max=1000000\.0 s must be in \(0, 86400\.0\] s"):
        SafetyLimits.from_hardware(duration_max=1e6)
    # A slow floor with a short ceiling would let a long move through unchecked: refused.
    with pytest.raises(LimitError, match=r"a move across the 1e-05 m scanner at tip_speed_min=1e-09 m/s takes "
                       r"14142\.\d+ s, longer than duration_max=600\.0 s; raise tip_speed_min to at least 2\.36e-08 m/s"):
        SafetyLimits.from_hardware(duration_max=600.0)
    tight = SafetyLimits.from_hardware(duration_max=600.0, tip_speed_min=1e-7)
    assert (tight.duration_max, tight.tip_speed_min) == (600.0, 1e-7)
    with pytest.raises(LimitError, match=r"speed=5e-08 m/s is outside \[1e-07, 2e-05\] m/s"):
        tight.check_speed(5e-8)


def test_old_limits_dicts_without_the_new_fields_still_load():
    old = {k: v for k, v in LIMITS.to_dict().items() if k not in ("tip_speed_min", "duration_max")}
    assert SafetyLimits.from_dict(old) == LIMITS


# -- issue 11: arguments no float can hold, wrong types ------------------------------------------

HUGE = 10**400
SPOT = dict(center=(1e-6, 1e-6), size=(1e-6, 1e-6))


@pytest.mark.parametrize(
    ("call", "name", "unit"),
    [
        (lambda: LIMITS.check_position(HUGE, 0.0), "x", "m"),
        (lambda: LIMITS.check_position(0.0, -HUGE), "y", "m"),
        (lambda: LIMITS.check_speed(HUGE), "speed", "m/s"),
        (lambda: LIMITS.check_pulse(HUGE, 1e-3), "amplitude", "V"),
        (lambda: LIMITS.check_pulse(5.0, HUGE), "width", "s"),
        (lambda: ScanSpec(center=(HUGE, 0.0), size=(1e-6, 1e-6)), r"center\[0\]", "m"),
        (lambda: ScanSpec(center=(0.0, 1e-6), size=(1e-6, HUGE)), r"size\[1\]", "m"),
        (lambda: ScanSpec(**SPOT, line_rate=HUGE), "line_rate", "Hz"),
        (lambda: SafetyLimits.from_hardware(bias_max=HUGE), "bias_max", "V"),
    ],
)
def test_numbers_too_large_for_a_float_are_refused_naming_the_argument(call, name, unit):
    with pytest.raises(InvalidArgumentError, match=rf"^{name}=\(an int of 401 digits\) is too large for a float; "
                       rf"pass a finite number in {unit}$"):
        call()


def test_huge_whole_numbers_are_refused_by_range_not_by_a_crash():
    with pytest.raises(LimitError, match=r"points per line=\(an int of 5001 digits\) is outside \[8, 1024\]"):
        LIMITS.check_scan(ScanSpec(**SPOT, pixels=(10**5000, 8)))
    with pytest.raises(LimitError, match=r"lines=\(an int of 401 digits\) is outside \[8, 1024\]"):
        LIMITS.check_scan(ScanSpec(**SPOT, pixels=(8, HUGE)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bias_max": "5"}, r"bias_max='5' is a str; pass a finite number in V"),
        ({"x_range": 5e-6}, r"x_range=5e-06 must be a pair \(low, high\) in m"),
        ({"pixels_range": (8.0, 64)}, r"pixels_range\[0\]=8\.0 is a float; pass a whole number"),
        ({"line_rate_range": (0.1, None)}, r"line_rate_range\[1\]=None is a NoneType; pass a finite number in Hz"),
        ({"volts": 5}, r"unknown safety limit\(s\) 'volts' in SafetyLimits\.from_hardware\(\); accepted: bias_max, pulse_width_min, .*duration_max"),
    ],
)
def test_safety_limits_of_the_wrong_type_are_refused_naming_the_field(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        SafetyLimits.from_hardware(**kwargs)


def test_safety_limits_are_checked_on_construction_and_need_a_hardware_spec():
    with pytest.raises(InvalidArgumentError, match=r"tip_speed_max=\[1e-05\] is a list; pass a finite number in m/s"):
        SafetyLimits(**{**LIMITS.to_dict(), "tip_speed_max": [1e-5]})
    with pytest.raises(InvalidArgumentError, match=r"hw='10 um' is a str; pass a control\.HardwareSpec"):
        SafetyLimits.from_hardware("10 um")
    plain = SafetyLimits.from_hardware(bias_max=np.int64(5), x_range=np.array([0, 5e-6]), pixels_range=[8, 64])
    assert plain.bias_max == 5.0 and type(plain.bias_max) is float
    assert plain.x_range == (0.0, 5e-6) and type(plain.x_range) is tuple
    assert plain.pixels_range == (8, 64) and all(type(n) is int for n in plain.pixels_range)


# -- issue 11: ScanSpec takes what numpy users pass -----------------------------------------------


def test_scan_specs_accept_numpy_arrays_scalars_and_bools_as_plain_python():
    spec = ScanSpec(center=np.array([1e-6, 2e-6]), size=np.full(2, 1e-6, np.float32), pixels=np.array([64, 32]),
                    line_rate=np.float64(2.0), path=np.str_("raster"), retrace=np.True_)
    plain = ScanSpec(center=(1e-6, 2e-6), size=(float(np.float32(1e-6)),) * 2, pixels=(64, 32), line_rate=2.0,
                     retrace=True)
    assert spec == plain
    assert type(spec.retrace) is bool and type(spec.path) is str
    assert all(type(v) is float for v in (*spec.center, *spec.size, spec.line_rate))
    assert all(type(n) is int for n in spec.pixels)
    assert json.dumps(spec.to_dict()) == json.dumps(plain.to_dict())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"center": np.zeros(3)}, r"center=array\(\[0\., 0\., 0\.\]\) has shape \(3,\); pass a pair \(center_x, center_y\) in m"),
        ({"size": np.ones((2, 1)) * 1e-6}, r"(?s)size=array\(.*\) has shape \(2, 1\); pass a pair \(size_x, size_y\) in m"),
        ({"center": np.array(["a", "b"])}, r"center\[0\]=np\.str_\('a'\) is a str_; pass a finite number in m"),
        ({"pixels": np.array([64.0, 64.0])}, r"pixels\[0\]=np\.float64\(64\.0\) is a float64; pass a whole number"),
        ({"retrace": np.array([True])}, r"retrace=array\(\[ True\]\) must be True or False"),
        ({"path": np.str_("zigzag")}, r"path=np\.str_\('zigzag'\) is not a scan path"),
    ],
)
def test_numpy_values_of_the_wrong_shape_or_kind_are_refused(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ScanSpec(**(SPOT | kwargs))
