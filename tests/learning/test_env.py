"""pfmtwin/DomainWall-v0: Gymnasium conformance, safe action mapping, wall physics on the twin,
determinism, clear errors, and Stable-Baselines3 PPO training on it unmodified."""

from __future__ import annotations

import math
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import control
import learning
from control import InvalidArgumentError, LimitError, SafetyLimits, UrlError
from control.analysis import NoWallError, Wall, locate_wall, trace_wall, wall_mask
from learning.env import DomainWallConfig, DomainWallEnv, EnvConfigError, EpisodeError, PulseMap, Window
from learning.wall import CURVATURE_UNIT, curvature

from ..conftest import SMALL_TWIN

URL = SMALL_TWIN.format(seed=3)


def make(**kwargs) -> DomainWallEnv:
    """A DomainWallEnv on the small twin (seed 3) through the registered id."""
    env = gymnasium.make(learning.ENV_ID, microscope=kwargs.pop("microscope", URL), **kwargs)
    assert isinstance(env.unwrapped, DomainWallEnv)
    return env.unwrapped


def action_for(env: DomainWallEnv, y: float, offset: float, volts: float, width: float) -> np.ndarray:
    """The normalized action that asks for a pulse ``offset`` m off the wall at ``y`` m (polarity "both")."""
    (first, last), m = env.window.lines, env.pulse_map
    (vlo, vhi), (olo, ohi) = m.voltage, m.offset
    lw = np.log10(m.width)
    return np.array(
        [
            2 * (y - first) / (last - first) - 1,
            2 * (offset - olo) / (ohi - olo) - 1,
            math.copysign((abs(volts) - vlo) / (vhi - vlo), volts),
            2 * (np.log10(width) - lw[0]) / (lw[1] - lw[0]) - 1,
        ],
        dtype=np.float32,
    )


# -- Gymnasium conformance ------------------------------------------------------------------


def test_registered_id_makes_the_environment_for_a_backend_url():
    env = gymnasium.make("pfmtwin/DomainWall-v0", microscope=URL)
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (4,), np.float32)
    assert env.observation_space == gymnasium.spaces.Box(-1.0, 1.0, (32,), np.float32)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs in env.observation_space and isinstance(reward, float)
    assert info["pulse"]["width"] > 0 and info["time"] > 0
    env.close()
    env.close()  # idempotent


@pytest.mark.parametrize("first, then", [("learning", "gymnasium"), ("gymnasium", "learning"),
                                         ("learning", "gymnasium.spaces")])
def test_importing_learning_registers_the_id_whenever_gymnasium_comes(first, then):
    """``import learning`` registers the id without importing Gymnasium itself (so the surrogate
    backend imports without it): at once if Gymnasium is there, else as Gymnasium is imported."""
    code = (f"import sys; import {first}; "
            f"assert {first == 'gymnasium'} or 'gymnasium' not in sys.modules, 'import learning imported gymnasium'; "
            f"import {then}; import gymnasium, learning; "
            "assert learning.ENV_ID in gymnasium.registry, 'not registered'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"goal": "shape", "target_profile": [0.0, 40e-9, 0.0], "image": True, "profile_length": 16},
    ],
    ids=["curvature", "shape+image"],
)
def test_gymnasium_env_checker_passes(kwargs):
    env = gymnasium.make(learning.ENV_ID, microscope=URL, **kwargs)
    check_env(env.unwrapped)  # incl. seeded-reset and step determinism, and the rgb_array render mode
    env.close()


def test_render_draws_the_domains_and_the_wall():
    env = make(render_mode="rgb_array")
    env.reset(seed=0)
    picture = env.render()
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8
    red = np.all(picture == (220, 30, 30), axis=-1)
    assert red.sum(axis=1).tolist() == [1] * 32, "one wall pixel per scan line"


def test_step_outside_an_episode_is_refused():
    env = make(max_steps=2)
    with pytest.raises(EpisodeError, match=r"call reset\(\) first"):
        env.step(np.zeros(4, np.float32))
    env.reset(seed=0)
    weak = np.array([0.0, 1.0, 0.0, -1.0], np.float32)  # 4 V for 10 us, 100 nm off the wall
    assert env.step(weak)[2:4] == (False, False)
    assert env.step(weak)[2:4] == (False, True), "max_steps truncates, it does not terminate"
    with pytest.raises(EpisodeError):
        env.step(weak)


# -- the action map: every command inside the safety limits -----------------------------------


def fake_wall(window: Window, xs: np.ndarray) -> Wall:
    """A wall at ``xs`` (m) on the lines of ``window`` (for exercising the map without a scan)."""
    first, last = window.lines
    n = window.points
    return Wall(
        y=np.linspace(first, last, n), x=np.asarray(xs, dtype=float), state=np.zeros((n, n)),
        left=window.center[0] - window.size / 2, width=window.size,
    )


@settings(max_examples=300, deadline=None)
@given(
    action=st.lists(st.floats(-5.0, 5.0), min_size=4, max_size=4),
    bias_max=st.floats(1.0, 10.0),
    width_min=st.floats(1e-6, 1e-4),
    width_max=st.floats(1e-3, 10.0),
    voltage=st.tuples(st.floats(0.0, 12.0), st.floats(0.0, 12.0)).map(sorted),
    widths=st.tuples(st.floats(1e-7, 1e-3), st.floats(1e-3, 20.0)),
    offset=st.tuples(st.floats(-1e-6, 0.0), st.floats(0.0, 1e-6)),
    polarity=st.sampled_from(["both", "positive", "negative"]),
    cx=st.floats(0.0, 10e-6),
    size=st.floats(1e-7, 2e-6),
    wall=st.floats(-1.0, 1.0),
)
def test_any_action_maps_inside_the_limits(
    action, bias_max, width_min, width_max, voltage, widths, offset, polarity, cx, size, wall
):
    limits = SafetyLimits.from_hardware(bias_max=bias_max, pulse_width_min=width_min, pulse_width_max=width_max)
    assume(voltage[0] <= bias_max and voltage[1] > 0)  # otherwise refused at construction (tested below)
    config = DomainWallConfig(
        microscope="twin://", voltage=voltage, width=widths, offset=offset, polarity=polarity, points=16
    )
    window = Window(center=(5e-6, 5e-6), size=size, points=16, line_rate=1.0).moved_to(cx, limits)
    limits.check_scan(window.spec())
    xs = window.center[0] + wall * window.size * np.linspace(-0.6, 0.6, 16)  # partly outside the window
    pulse = PulseMap.within(config, limits)(np.array(action), window, fake_wall(window, xs), limits)
    limits.check_position(pulse.x, pulse.y)
    limits.check_pulse(pulse.amplitude, pulse.width)
    (xlo, xhi), (ylo, yhi) = window.bounds(limits)
    assert xlo <= pulse.x <= xhi and ylo <= pulse.y <= yhi, "pulses stay in the window the agent sees"
    assert abs(pulse.amplitude) >= min(voltage[0], bias_max) * (1 - 1e-12)
    if polarity != "both":
        assert math.copysign(1.0, pulse.amplitude) == (1.0 if polarity == "positive" else -1.0)


def test_extreme_actions_reach_the_ends_of_the_ranges():
    limits = SafetyLimits.from_hardware(bias_max=8.0, pulse_width_min=1e-5)
    config = DomainWallConfig(microscope="twin://", voltage=(4.0, 10.0), width=(1e-6, 1e-2), offset=(-5e-8, 5e-8))
    mapper = PulseMap.within(config, limits)
    assert mapper.voltage == (4.0, 8.0) and mapper.width == (1e-5, 1e-2), "ranges are cut to the limits"
    window = Window(center=(1e-6, 1e-6), size=4e-7, points=32, line_rate=10.0)
    wall = fake_wall(window, np.full(32, 1e-6))
    first, last = window.lines
    low = mapper(np.array([-1, -1, -1, -1]), window, wall, limits)
    high = mapper(np.array([1, 1, 1, 1]), window, wall, limits)
    assert low == pytest.approx((1e-6 - 5e-8, first, -8.0, 1e-5))
    assert high == pytest.approx((1e-6 + 5e-8, last, 8.0, 1e-2))
    assert mapper(np.array([0, 0, 0.5, 0]), window, wall, limits).amplitude == pytest.approx(6.0)
    assert mapper(np.array([0, 0, -0.5, 0]), window, wall, limits).amplitude == pytest.approx(-6.0)
    assert mapper(np.array([9, -9, 0, 0]), window, wall, limits) == mapper(np.array([1, -1, 0, 0]), window, wall, limits)
    for bad in (np.array([0, 0, math.nan, 0]), np.zeros(3), np.zeros((2, 2))):
        with pytest.raises(InvalidArgumentError, match=r"must be 4 finite numbers"):
            mapper(bad, window, wall, limits)


# -- walls ------------------------------------------------------------------------------------


def test_curvature_of_a_circular_arc_is_one_over_its_radius():
    radius = 150e-9
    y = np.linspace(-60e-9, 60e-9, 61)
    x = np.sqrt(radius**2 - y**2)
    kappa = curvature(y, x, smoothing=0.0)
    assert np.abs(kappa[2:-2]) == pytest.approx(1 / radius, rel=0.01)
    assert np.abs(curvature(y, 0.3 * y + 1e-7, smoothing=20e-9)).max() < 1e-3 * 1 / radius, "a straight wall"


@pytest.mark.parametrize("smoothing", [0.0, 5e-9, 20e-9, 200e-9])
def test_the_compiled_curvature_is_the_scipy_steps(smoothing):
    """learning.wall.curvature gives the point reflection, gaussian_filter1d and np.gradient's values to round-off."""
    from scipy import ndimage

    rng = np.random.default_rng(2)
    for n in (2, 5, 32):
        y = np.arange(n) * 12.5e-9
        x = 2e-7 + 3e-8 * np.sin(y / 7e-8) + 4e-9 * rng.standard_normal(n)
        xs, dy = x.copy(), y[1] - y[0]
        if smoothing > 0:
            sigma = smoothing / dy
            pad = min(int(4 * sigma) + 1, n - 1)
            padded = np.concatenate([2 * x[0] - x[pad:0:-1], x, 2 * x[-1] - x[-2:-pad - 2:-1]])
            xs = ndimage.gaussian_filter1d(padded, sigma, mode="nearest")[pad:pad + n]
        d1 = np.gradient(xs, dy)
        reference = np.gradient(d1, dy) / (1.0 + d1**2) ** 1.5
        np.testing.assert_allclose(curvature(y, x, smoothing), reference, rtol=1e-9, atol=1e-9 * np.abs(reference).max())
    with pytest.raises(ValueError, match="at least 2 lines"):
        curvature(np.zeros(1), np.zeros(1), smoothing)


def test_wall_trace_agrees_with_the_wall_mask_on_the_twin():
    with control.connect(URL) as scope:
        scan = scope.scan(control.ScanSpec(center=(2.5e-7, 2.5e-7), size=(4e-7, 4e-7), pixels=(32, 32), line_rate=10.0))
        wall = locate_wall(scan)
        single = scope.scan(control.ScanSpec(center=(1.1e-7, 2.5e-7), size=(1.5e-7, 4e-7), pixels=(32, 32)))
    mask = wall_mask(scan)
    count = mask.sum(axis=1)
    x = np.where(count > 0, (scan.x * mask).sum(axis=1) / np.maximum(count, 1), np.nan)
    assert np.array_equal(wall.y, scan.y[:, 0])
    pixel = 4e-7 / 32
    assert np.nanmedian(np.abs(wall.x - x)) < pixel, "the area trace and the mask find the same wall within a pixel"
    assert not wall.lost and wall.crossing
    with pytest.raises(NoWallError, match=r"left and right edges show the same domain"):
        locate_wall(single)
    assert trace_wall(single).lost


def test_reset_finds_the_wall_in_the_middle_of_the_window():
    env = make()
    obs, info = env.reset(seed=0)
    assert not info["lost"] and info["reopened"] is False
    assert abs(float(np.mean(obs))) < 2 * 2 / env.config.points, "recentred on the wall to about a pixel"
    assert np.ptp(obs) > 0.1, "the twin's wall meanders"
    cx, _, size = info["window"]
    assert cx - size / 2 < info["wall_x"] < cx + size / 2
    assert info["curvature"] == pytest.approx(env.curvature_measure(env.wall))


def test_a_pulse_on_the_wall_moves_it_there_and_only_there():
    """8 V for 1 ms on the wall writes a domain of ~40 nm radius (docs/physics.md): opposite polarities
    push the wall opposite ways at the pulse, lines far from it stay within the scan noise."""
    moved = {}
    for volts in (8.0, -8.0):
        env = make()
        env.reset(seed=0)
        before = env.wall
        i = int(np.argmin(np.abs(before.y - 2.5e-7)))
        env.step(action_for(env, before.y[i], 0.0, volts, 1e-3))
        dx = env.wall.x - before.x
        far = np.r_[dx[: i - 8], dx[i + 9 :]]
        assert np.median(np.abs(far)) < 8e-9, f"{volts:+} V: lines far from the pulse moved {far * 1e9} nm"
        moved[volts] = dx[i]
    assert abs(moved[8.0]) > 20e-9 and abs(moved[-8.0]) > 20e-9, moved
    assert np.sign(moved[8.0]) == -np.sign(moved[-8.0]), moved


def test_shape_reward_is_positive_when_the_pulse_brings_the_wall_towards_the_target():
    """Goal "shape" with a straight target through the window centre: push the wall where it is
    furthest from the target with each polarity; the reward's sign follows the wall's motion."""
    seen = set()
    for volts in (8.0, -8.0):
        env = make(goal="shape", target_profile=[0.0])
        _, info = env.reset(seed=0)
        before = env.wall
        lines = np.flatnonzero((before.y > 2.5e-7 - 1e-7) & (before.y < 2.5e-7 + 1e-7))
        i = lines[np.argmax(np.abs(before.x[lines] - env.window.center[0]))]
        obs, reward, terminated, _, after_info = env.step(action_for(env, before.y[i], 0.0, volts, 1e-3))
        assert not terminated
        assert reward == pytest.approx(info["shape_error"] - after_info["shape_error"])
        towards = (env.wall.x[i] - before.x[i]) * (env.window.center[0] - before.x[i]) > 0
        assert (reward > 0) == towards, (volts, reward, towards)
        seen.add(towards)
    assert seen == {True, False}, "one polarity pushes the wall towards the target, the other away"


def test_curvature_reward_is_the_change_of_the_measure():
    env = make()
    env.action_space.seed(1)
    _, info = env.reset(seed=0)
    for _ in range(4):
        _, reward, terminated, truncated, new = env.step(env.action_space.sample())
        if terminated:
            assert reward == -env.config.lost_penalty
            break
        assert reward == pytest.approx(new["curvature"] - info["curvature"])
        cx, cy, size = new["window"]
        middle = np.abs(env.wall.y - cy) <= size / 4  # the default target window (0.25, 0.75)
        assert middle.sum() == 16
        kappa = curvature(env.wall.y, env.wall.x, 20e-9)
        assert new["curvature"] == pytest.approx(CURVATURE_UNIT * float(np.mean(np.abs(kappa[middle]))), rel=1e-9)
        info = new


def test_pushing_the_wall_out_of_the_window_terminates_with_the_penalty():
    env = make(size=1.2e-7, points=16, lost_penalty=2.5)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0, 1.0, 1.0], np.float32))  # 10 V, 10 ms
    assert (terminated, truncated, reward, info["lost"]) == (True, False, -2.5, True)
    assert obs in env.observation_space
    _, info = env.reset()
    assert not info["lost"], "the next episode starts on a wall clear of the window edges again"


# -- determinism ------------------------------------------------------------------------------


def run(env: DomainWallEnv, seed: int, actions: np.ndarray) -> tuple[list, list]:
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return observations, rewards


def test_same_url_seed_and_actions_give_identical_episodes():
    actions = np.random.default_rng(0).uniform(-1, 1, (12, 4)).astype(np.float32)
    first, second = make(max_steps=5), make(max_steps=5)
    a, b = run(first, 0, actions), run(second, 0, actions)
    assert len(a[0]) == 15, "12 steps and 3 resets"
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0])) and a[1] == b[1]
    again = run(first, 0, actions)  # a seeded reset reopens: a fresh simulated sample
    assert all(np.array_equal(x, y) for x, y in zip(a[0], again[0])) and a[1] == again[1]


def test_unseeded_resets_continue_on_the_same_sample():
    env = make(reopen="seeded")
    env.reset(seed=0)
    env.step(np.array([0.0, 0.0, 1.0, 1.0], np.float32))
    written = env.wall.x.copy()
    _, info = env.reset()
    assert info["reopened"] is False
    shift = env.window.center[0] - info["window"][0]
    assert np.median(np.abs(env.wall.x - written)) < 10e-9 + abs(shift), "the written domain is still there"
    _, info = env.reset(seed=0)
    assert info["reopened"] is True


# -- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"volts": 5}, EnvConfigError, r"unknown keyword argument\(s\) \['volts'\]; accepted: microscope, center"),
        ({"goal": "bend"}, EnvConfigError, r"goal='bend' is not one of 'curvature', 'shape'"),
        ({"voltage": [11.0, 12.0]}, LimitError, r"voltage=\[11\.0, 12\.0\] V lies above the bias limit of 10\.0 V"),
        ({"voltage": [-2.0, 5.0]}, EnvConfigError, r"give magnitudes \(>= 0 V\)"),
        ({"voltage": [6.0, 4.0]}, EnvConfigError, r"low 6\.0 V exceeds high 4\.0 V; swap them"),
        ({"voltage": 5.0}, InvalidArgumentError, r"voltage=5\.0 must be a pair \[low, high\] in V"),
        ({"width": [0.0, 1e-3]}, EnvConfigError, r"pulse widths must be positive"),
        ({"width": [20.0, 30.0]}, LimitError, r"outside the pulse-width limits \[1e-06, 10\.0\] s"),
        ({"points": 4}, EnvConfigError, r"points=4 must be at least 8"),
        ({"points": 32.0}, InvalidArgumentError, r"points=32\.0 is a float; pass a whole number"),
        ({"max_steps": 0}, EnvConfigError, r"max_steps=0 must be at least 1"),
        ({"size": 30e-6}, LimitError, r"scan x extent .* leaves the scanner range"),
        ({"center": [0.0, 0.0]}, LimitError, r"scan x extent \[-2e-07, 2e-07\] m leaves the scanner range"),
        ({"line_rate": 100.0}, LimitError, r"line_rate=100\.0 Hz is outside \[0\.01, 10\.0\] Hz"),
        ({"offset": ["a", 1e-7]}, InvalidArgumentError, r"offset\[0\]='a' is a str; pass a finite number in m"),
        ({"target_window": [0.6, 0.4]}, EnvConfigError, r"low 0\.6 window fractions exceeds high 0\.4"),
        ({"target_window": [0.5, 0.52]}, EnvConfigError, r"covers fewer than 3 of the 32 scan lines"),
        ({"target_profile": [0.0]}, EnvConfigError, r"only used with goal='shape'"),
        ({"goal": "shape", "target_profile": [3e-7]}, EnvConfigError, r"beyond half the window side"),
        ({"smoothing": math.nan}, InvalidArgumentError, r"smoothing=nan is not finite"),
        ({"reopen": "sometimes"}, EnvConfigError, r"reopen='sometimes' is not one of 'seeded', 'always', 'never'"),
        ({"recenter": "yes"}, InvalidArgumentError, r"recenter='yes' must be true or false"),
        ({"microscope": "nope://x"}, UrlError, r"no backend for scheme 'nope'"),
        ({"render_mode": "human"}, EnvConfigError, r"render_mode='human' is not one of \['rgb_array'\]"),
    ],
)
def test_bad_keyword_arguments_are_refused_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        DomainWallEnv(**{"microscope": URL, **kwargs})


def test_a_window_without_a_wall_is_refused_at_reset():
    env = make(center=[1.1e-7, 2.5e-7], size=1.5e-7)  # inside the left domain of the small twin
    with pytest.raises(NoWallError, match=r"pass center=\[x, y\] and size= for a window that a wall crosses"):
        env.reset(seed=0)


# -- Stable-Baselines3 ------------------------------------------------------------------------


def test_stable_baselines3_ppo_trains_on_it_unmodified():
    import torch
    from stable_baselines3 import PPO

    env = gymnasium.make(learning.ENV_ID, microscope=URL)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, seed=0, device="cpu")
    # A 64x64 MLP gains nothing from intra-op threads; on a busy 2-core machine their spinning
    # slows this test (and the twin stepping beside it) about fivefold.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.learn(total_timesteps=256)
    finally:
        torch.set_num_threads(threads)
    assert model.num_timesteps == 256
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert action in env.action_space
    env.close()


def test_seeded_resets_draw_films_and_days_and_options_pick_held_out_ones():
    env = make(samples=[3, 4, 5], days=[0, 1])
    try:
        drawn = set()
        for seed in range(6):
            _, info = env.reset(seed=seed)
            drawn.add(env.sample)
            assert info["url"] == env.url and f"seed={env.sample[0]}" in info["url"] and f"day={env.sample[1]}" in info["url"]
        assert len(drawn) > 1, f"six seeded resets drew one film and day: {drawn}"
        _, again = env.reset(seed=2)
        first = make(samples=[3, 4, 5], days=[0, 1])
        try:
            _, same = first.reset(seed=2)
            assert same["url"] == again["url"], "the draw depends on the reset seed only"
        finally:
            first.close()
        _, held = env.reset(options={"sample": 9, "day": 2})
        assert env.sample == (9, 2) and held["reopened"] and "seed=9" in held["url"] and "day=2" in held["url"]
        profile_9 = env.wall.x.copy()
        _, other = env.reset(options={"sample": 3})
        assert other["reopened"] and not np.allclose(env.wall.x, profile_9), "another film shows another wall"
        _, kept = env.reset()
        assert not kept["reopened"] and env.sample == (3, 2), "an unseeded reset keeps the film in use"
        with pytest.raises(EnvConfigError, match=r"reset options \['film'\] are not known"):
            env.reset(options={"film": 1})
    finally:
        env.close()
    with pytest.raises(InvalidArgumentError, match=r"samples='3' must be a non-empty list"):
        make(samples="3")
    with pytest.raises(EnvConfigError, match=r"days=\[-1\]: every entry must be >= 0"):
        make(days=[-1])
