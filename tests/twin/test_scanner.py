"""The piezo scanner: hysteresis, creep, drift, closed loop, determinism and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.scanner import (
    CALIBRATION_RAMP,
    CREEP_REFERENCE,
    PLAY_RADII,
    Scanner,
    ScannerParams,
    creep_modes,
    play_operators,
)

UM = 1e-6
STILL = {"drift_speed": 0.0}  # no thermal drift: look at the piezo alone


def scanner(seed: int = 0, start=(0.0, 0.0), **params) -> Scanner:
    return Scanner(ScannerParams(**params), np.random.default_rng(seed), start=start)


def back_and_forth(ramp: float, lines: int = 3, points: int = 257, start: float = 1 * UM, dt: float = 1e-3):
    """A raster line traced and retraced ``lines`` times: x, t (time-ordered) and the ramp."""
    up = start + np.linspace(0.0, ramp, points)
    x = np.tile(np.concatenate([up, up[::-1]]), lines)
    return x, np.arange(x.size) * dt, up


def trace_retrace(s: Scanner, ramp: float, lines: int = 3, points: int = 257):
    """Actual x of the last trace and retrace (both indexed by pixel) of a back-and-forth line."""
    x, t, up = back_and_forth(ramp, lines, points, start=s.commanded[0])
    ax, _ = s.follow(x, np.full_like(x, s.commanded[1]), t)
    last = ax[-2 * points:]
    return last[:points], last[points:][::-1], up


# -- hysteresis ----------------------------------------------------------------------------------


def test_trace_and_retrace_separate_by_the_hysteresis_fraction_most_in_the_middle():
    s = scanner(hysteresis=0.03, creep=0.0, start=(1 * UM, 1 * UM), **STILL)
    trace, retrace, up = trace_retrace(s, 1 * UM)
    separation = retrace - trace  # the trace lags the command, the retrace lags the other way
    peak = int(np.argmax(separation))
    assert separation.max() == pytest.approx(0.03 * UM, abs=0.005 * UM)
    assert 0.35 < (up[peak] - up[0]) / UM < 0.65  # near the middle of the ramp
    assert abs(separation[0]) < 1e-4 * UM and abs(separation[-1]) < 1e-4 * UM  # turning points
    assert np.all(separation >= -1e-15)


@pytest.mark.parametrize("ramp", [0.25 * UM, 0.5 * UM, 2 * UM, 5 * UM])
@pytest.mark.parametrize("hysteresis", [0.01, 0.03, 0.1])
def test_separation_scales_with_the_ramp_and_the_hysteresis(ramp, hysteresis):
    s = scanner(hysteresis=hysteresis, creep=0.0, start=(1 * UM, 1 * UM), **STILL)
    trace, retrace, _ = trace_retrace(s, ramp)
    assert (retrace - trace).max() / (hysteresis * ramp) == pytest.approx(1.0, rel=0.1)


def test_the_scanner_is_calibrated_on_a_one_micron_loop_and_larger_loops_gain_more():
    spans = {}
    for ramp in (0.1 * UM, CALIBRATION_RAMP, 10 * UM):
        trace, _, _ = trace_retrace(scanner(hysteresis=0.03, creep=0.0, **STILL), ramp)
        spans[ramp] = (trace[-1] - trace[0]) / ramp
    assert spans[CALIBRATION_RAMP] == pytest.approx(1.0, abs=1e-9)
    assert spans[0.1 * UM] == pytest.approx(0.9, abs=0.03)  # Prandtl-Ishlinskii: the gain grows
    assert spans[10 * UM] == pytest.approx(1.1, abs=0.03)  # by the separation per doubling


def test_hysteresis_follows_the_reversal_history_like_the_play_operators_it_sums():
    """Random 2D path with nested reversals and a move in between, against a plain clamp loop."""
    rng = np.random.default_rng(5)
    n = 3000
    x = 2 * UM + np.cumsum(rng.normal(0, 30e-9, n)) + 0.5 * UM * np.sin(np.arange(n) / 200)
    x[1500:1800] += 25 * UM * (1 - np.abs(np.linspace(-1, 1, 300)))  # one excursion that drags every operator
    y = 3 * UM + np.repeat(np.cumsum(rng.normal(0, 50e-9, n // 30)), 30)  # steps, as a slow axis
    t = np.arange(n) * 1e-3
    s = scanner(hysteresis=0.05, creep=0.0, start=(2 * UM, 3 * UM), **STILL)
    first = s.follow(x[:1000], y[:1000], t[:1000])
    s.move((x[1000] - 0.3 * UM, y[1000]), t[1000])
    second = s.follow(x[1000:], y[1000:], t[1000:] + 1e-3)
    got = np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])

    weights, gain = play_operators(0.05)
    for axis, (v, v0) in enumerate([(x, 2 * UM), (y, 3 * UM)]):
        path = np.insert(v, 1000, v[1000] - 0.3 * UM) if axis == 0 else np.insert(v, 1000, v[1000])
        f = np.full(PLAY_RADII.size, v0)
        expected = []
        for value in path:
            f = np.clip(f, value - PLAY_RADII, value + PLAY_RADII)
            expected.append(v0 + gain * (value - v0) + np.sum(weights * (f - value)))
        expected = np.delete(np.array(expected), 1000)
        np.testing.assert_allclose(got[axis], expected, rtol=0, atol=1e-15)


# -- creep ---------------------------------------------------------------------------------------


def test_creep_after_a_step_grows_by_equal_increments_per_decade_to_the_documented_fraction():
    p = {"hysteresis": 0.0, "creep": 0.02, "creep_time": 0.01, "creep_horizon": 1000.0, **STILL}
    s = scanner(**p)
    s.move((1 * UM, 0.0), 0.0)
    assert s.position(CREEP_REFERENCE)[0] == pytest.approx(UM, rel=1e-12)  # calibrated 0.1 s after the move
    at = [s.position(t)[0] for t in (0.1, 1.0, 10.0, 100.0)]
    increments = np.diff(at) / (p["creep"] * UM)
    np.testing.assert_allclose(increments, 1.0, rtol=0.1)  # gamma of the move per decade
    decades = math.log10(p["creep_horizon"] / p["creep_time"])
    total = s.position(1e5)[0] - s.position(0.0)[0]
    assert total == pytest.approx(p["creep"] * decades * UM, rel=1e-6)  # 10 % of the move in all
    assert s.position(0.0)[0] == pytest.approx(0.975 * UM, abs=0.002 * UM)  # as documented
    assert s.position(1.0)[0] == pytest.approx(1.02 * UM, abs=0.002 * UM)
    assert s.position(1000.0)[0] == pytest.approx(1.075 * UM, abs=0.002 * UM)
    assert s.commanded[0] == UM


def test_creep_scales_with_the_step_and_with_gamma():
    def crept(step, gamma):
        s = scanner(hysteresis=0.0, creep=gamma, **STILL)
        s.move((step, 0.0), 0.0)
        return s.position(10.0)[0] - s.position(0.1)[0]

    assert crept(2 * UM, 0.02) == pytest.approx(2 * crept(1 * UM, 0.02), rel=1e-9)
    assert crept(1 * UM, 0.04) == pytest.approx(2 * crept(1 * UM, 0.02), rel=1e-9)
    assert crept(-1 * UM, 0.02) == pytest.approx(-crept(1 * UM, 0.02), rel=1e-9)


def raster(lines: int, points: int, width: float, period: float, start: float = 10.0):
    """Commanded x, y, t of a raster without retrace (flyback between lines), as the instrument times it."""
    x = 1 * UM + (np.arange(points) + 0.5) / points * width
    y = 1 * UM + (np.arange(lines) + 0.5) / lines * width
    t = start + np.arange(lines)[:, None] * period + (np.arange(points) + 0.5)[None, :] / points * period
    return np.broadcast_to(x, (lines, points)).copy(), np.broadcast_to(y[:, None], (lines, points)).copy(), t


def test_creep_of_a_path_superposes_the_decay_of_every_segment():
    """Direct O(n^2) sum over the straight segments of a raster (flybacks and line steps included)."""
    p = ScannerParams(hysteresis=0.0, creep=0.03, **STILL)
    x, y, t = raster(lines=6, points=24, width=1 * UM, period=0.5)
    s = Scanner(p, np.random.default_rng(0), start=(0.2 * UM, 0.3 * UM))
    s.move((0.5 * UM, 0.6 * UM), 2.0)
    ax, ay = s.follow(x, y, t)

    theta, amp = creep_modes(p)
    calibration = np.sum(amp * np.exp(-CREEP_REFERENCE / theta))  # creep to come 0.1 s after a move
    points = np.stack([x.ravel(), y.ravel()], axis=1)
    steps = [(np.array([0.3, 0.3]) * UM, 2.0, 2.0)]  # (step, begin, end): the move, a jump at 2 s
    steps += [(points[0] - np.array([0.5, 0.6]) * UM, t.flat[0], t.flat[0])]  # the jump to the first sample
    steps += [(points[k] - points[k - 1], t.flat[k - 1], t.flat[k]) for k in range(1, t.size)]
    for k, tk in enumerate(t.ravel()):
        lag = np.zeros(2)
        for step, begin, end in steps:
            if end > tk:  # not yet travelled
                break
            if end == begin:  # a jump: the whole step at once
                kernel = np.sum(amp * np.exp(-(tk - end) / theta))
            else:  # a straight segment: the kernel averaged over it
                kernel = np.sum(amp * theta * (np.exp(-(tk - end) / theta) - np.exp(-(tk - begin) / theta)))
                kernel /= end - begin
            lag += step * kernel
        expected = points[k] + calibration * (points[k] - np.array([0.2, 0.3]) * UM) - lag
        assert (ax.flat[k], ay.flat[k]) == pytest.approx(tuple(expected), abs=1e-15)


def test_the_first_pixels_after_a_flyback_are_still_creeping():
    """Each flyback jumps back by the scan width; the next trace starts short of it (on its +x
    side) and creeps on in -x, fast at first and logarithmically slower along the line. The first
    line, after a long rest at its start, has no flyback before it: the same ramp without that."""
    width, lines, points = 1 * UM, 12, 64
    x, y, t = raster(lines, points, width, period=1.0, start=1000.0)
    s = scanner(hysteresis=0.0, creep=0.02, start=(x[0, 0], y[0, 0]), **STILL)
    ax, _ = s.follow(x, y, t)
    offset = (ax - x) / width  # actual minus commanded
    assert abs(offset[0, 0]) < 1e-3
    for line in range(2, lines):
        flyback = offset[line] - offset[0]  # what the flybacks before this line left behind
        assert flyback[0] > 0.02  # short of the last flyback by gamma * log10(1000 s / 8 ms) of the width
        assert np.all(np.diff(flyback) < 0)  # creeping on in -x all along the line
        assert flyback[0] - flyback[8] > flyback[8] - flyback[63]  # logarithmically: most of it at once
    np.testing.assert_allclose(offset[-1] - offset[-2], 0.0, atol=2e-3)  # settling into a steady pattern


def test_a_move_that_takes_time_has_crept_partly_in_when_it_ends():
    p = {"hysteresis": 0.0, **STILL}
    step, ramp = scanner(**p), scanner(**p)
    step.move((1 * UM, 0.0), 1.0)
    ramp.move((1 * UM, 0.0), 1.0, duration=0.05)
    assert step.position(1.0)[0] < ramp.position(1.0)[0] < UM
    assert step.position(1e6)[0] == pytest.approx(ramp.position(1e6)[0], abs=1e-15)


# -- state, continuity, closed loop ---------------------------------------------------------------


def test_follow_continues_from_where_the_last_path_ended():
    x, y, t = raster(lines=5, points=40, width=1 * UM, period=0.5)
    x, y, t = x.ravel(), y.ravel(), t.ravel()
    whole = scanner(seed=2)
    wx, wy = whole.follow(x, y, t)
    split = scanner(seed=2)
    k = 77
    first = split.follow(x[: k + 1], y[: k + 1], t[: k + 1])
    second = split.follow(x[k:], y[k:], t[k:])  # resumes at the last sample: no step, no time
    np.testing.assert_allclose(np.concatenate([first[0], second[0][1:]]), wx, rtol=0, atol=1e-20)
    np.testing.assert_allclose(np.concatenate([first[1], second[1][1:]]), wy, rtol=0, atol=1e-20)
    assert split.position(t[-1]) == pytest.approx((wx[-1], wy[-1]), abs=1e-18)
    np.testing.assert_array_equal(split.commanded, [x[-1], y[-1]])


def test_follow_keeps_the_shape_of_its_input():
    x, y, t = raster(lines=3, points=5, width=1 * UM, period=0.1)
    ax, ay = scanner().follow(x, y, t)
    assert ax.shape == ay.shape == (3, 5)
    ex, ey = scanner().follow(x[:0], y[:0], t[:0])
    assert ex.shape == (0, 5)


def test_closed_loop_has_no_hysteresis_and_no_creep_only_sensor_noise():
    noise = 0.3e-9
    s = scanner(closed_loop=True, sensor_noise=noise, hysteresis=0.1, creep=0.05, **STILL)
    trace, retrace, up = trace_retrace(s, 1 * UM, lines=40)
    separation = retrace - trace
    assert abs(separation.mean()) < 4 * noise * math.sqrt(2 / separation.size)
    assert abs(separation[100:160].mean()) < 4 * noise * math.sqrt(2 / 60)  # no bulge mid-ramp
    x, t, _ = back_and_forth(1 * UM, lines=40, start=s.commanded[0])
    ax, ay = s.follow(x, np.zeros_like(x), t + 100.0)
    assert np.std(ax - x) == pytest.approx(noise, rel=0.1)
    assert np.std(ay) == pytest.approx(noise, rel=0.1)
    s.move((3 * UM, 0.0), 200.0)
    assert s.position(200.0) == s.position(2000.0) == (3 * UM, 0.0)  # no creep (no noise when parked)


def test_closed_loop_keeps_the_thermal_drift():
    s = scanner(closed_loop=True, sensor_noise=0.0, drift_speed=1e-10, drift_angle=0.0)
    ax, ay = s.follow(np.zeros(3), np.zeros(3), np.array([0.0, 10.0, 20.0]))
    np.testing.assert_allclose(ax, [0.0, 1e-9, 2e-9], atol=1e-24)


@pytest.mark.parametrize("closed_loop", [False, True])
def test_the_same_seed_and_calls_give_the_same_bytes(closed_loop):
    def session(seed):
        s = scanner(seed=seed, closed_loop=closed_loop)
        x, y, t = raster(lines=8, points=32, width=1 * UM, period=0.5)
        s.move((x[0, 0], y[0, 0]), 5.0)
        s.drift_burst(6.0, 2.0, 50.0)
        ax, ay = s.follow(x, y, t)
        s.move((0.3 * UM, 0.2 * UM), t[-1, -1] + 0.1)
        return ax.tobytes() + ay.tobytes() + np.array(s.position(t[-1, -1] + 5.0)).tobytes()

    assert session(3) == session(3)
    assert session(3) != session(4)  # another drift direction (and sensor noise)


# -- drift ---------------------------------------------------------------------------------------


def test_drift_moves_the_sample_at_its_speed_in_its_direction():
    s = scanner(drift_speed=1e-10, drift_angle=0.5)
    dx, dy = np.subtract(s.position(600.0), s.position(0.0))
    assert math.hypot(dx, dy) == pytest.approx(6e-8, rel=1e-9)  # 6 nm/min for 10 min
    assert math.atan2(dy, dx) == pytest.approx(0.5, abs=1e-9)
    ax, ay = s.follow(np.zeros(2), np.zeros(2), np.array([600.0, 1200.0]))
    np.testing.assert_allclose(ax, 1e-10 * math.cos(0.5) * np.array([600.0, 1200.0]), rtol=1e-9)


def test_an_unset_drift_direction_is_the_first_draw_of_the_rng():
    s = scanner(seed=11, drift_speed=1e-10)
    angle = np.random.default_rng(11).uniform(0, 2 * np.pi)
    np.testing.assert_allclose(s.drift_velocity, 1e-10 * np.array([np.cos(angle), np.sin(angle)]), rtol=1e-12)


def test_a_drift_burst_speeds_the_drift_up_for_its_duration():
    s = scanner(drift_speed=1e-10, drift_angle=0.0)
    s.drift_burst(10.0, 60.0, 100.0)
    assert s.position(5.0)[0] == pytest.approx(5e-10, rel=1e-9)
    assert s.position(100.0)[0] == pytest.approx(1e-10 * (100.0 + 99 * 60.0), rel=1e-9)
    ax, _ = s.follow(np.zeros(1), np.zeros(1), np.array([40.0]))
    assert ax[0] == pytest.approx(1e-10 * (40.0 + 99 * 30.0), rel=1e-9)


# -- input checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hysteresis", 0.5, r"hysteresis=0\.5 is outside \[0\.0, 0\.15\] \(fraction of the ramp\); open-loop"),
        ("hysteresis", -0.01, r"hysteresis=-0\.01 is outside"),
        ("hysteresis", "0.03", r"hysteresis='0\.03' is not a number"),
        ("creep", float("nan"), r"creep=nan is outside \[0\.0, 0\.1\]"),
        ("creep", 0.2, r"creep=0\.2 is outside .*per decade.*; piezos creep"),
        ("creep_time", 0.0, r"creep_time=0\.0 is outside \[1e-05, 10\.0\] s; .*try 0\.01"),
        ("creep_horizon", 0.05, r"creep_horizon=0\.05 is outside \[0\.1, 1000000\.0\] s \(at least 10 creep_time\)"),
        ("drift_speed", -1e-10, r"drift_speed=-1e-10 is outside \[0\.0, 1e-06\] m/s; ambient"),
        ("drift_angle", float("inf"), r"drift_angle=inf is outside .* rad; give a direction"),
        ("closed_loop", "yes", r"closed_loop='yes' is not a bool; pass True or False"),
        ("sensor_noise", 1e-6, r"sensor_noise=1e-06 is outside \[0\.0, 1e-08\] m rms; closed-loop sensors"),
        ("sensor_noise", True, r"sensor_noise=True is not a number"),
    ],
)
def test_bad_parameters_are_refused_with_the_value_the_range_and_the_fix(field, value, message):
    with pytest.raises(ValueError, match=message):
        ScannerParams(**{field: value})


def test_too_much_creep_over_the_span_is_refused():
    ScannerParams(creep=0.1)  # 5 decades: half a move, the most allowed
    with pytest.raises(ValueError, match=r"creep=0\.1 per decade from creep_time=0\.001 s to creep_horizon=1000\.0 s "
                                         r"creeps 60% of a move, above the 50% allowed; lower creep"):
        ScannerParams(creep=0.1, creep_time=1e-3)


def test_follow_refuses_mismatched_shapes_and_time_running_backwards():
    s = scanner()
    with pytest.raises(ValueError, match=r"follow needs x, y, t of one shape, got \(3,\), \(3,\), \(2,\)"):
        s.follow(np.zeros(3), np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"t\[2\]=1\.0 s comes before t\[1\]=2\.0 s; order the path by time"):
        s.follow(np.zeros(3), np.zeros(3), np.array([0.0, 2.0, 1.0]))
    s.move((1 * UM, 0.0), 10.0)
    with pytest.raises(ValueError, match=r"t=5\.0 s is before the last update at 10\.0 s"):
        s.follow(np.zeros(1), np.zeros(1), np.array([5.0]))
    with pytest.raises(ValueError, match=r"t=9\.0 s is before the last update at 10\.0 s"):
        s.move((0.0, 0.0), 9.0)
    np.testing.assert_array_equal(s.commanded, [1 * UM, 0.0])  # refused calls change nothing
