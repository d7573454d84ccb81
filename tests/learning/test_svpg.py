"""SVPG core: the three properties, the kernel and its sign, the bandwidth, the estimators, policies."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
import torch

from learning.policies import NumpyActor, Policy, PolicySpec, init_particle
from learning.rollout import RolloutConfig, RolloutTask, run_rollout
from learning.svpg import (
    LearningConfigError,
    ParticleAdam,
    median_bandwidth,
    rbf_kernel,
    stein_direction,
)

BANDIT_ID = "pfmtwin-test/TwoArmedBandit-v0"


class TwoArmedBandit(gymnasium.Env):
    """One-step episodes: arm 1 pays 1 + noise, arm 0 pays noise (std 0.1)."""

    def __init__(self) -> None:
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([1.0, -0.5, 0.25], dtype=np.float32), {}

    def step(self, action):
        reward = float(action == 1) + 0.1 * float(self.np_random.standard_normal())
        return np.array([1.0, -0.5, 0.25], dtype=np.float32), reward, True, False, {}


@pytest.fixture
def bandit():
    gymnasium.register(id=BANDIT_ID, entry_point=TwoArmedBandit, max_episode_steps=1)
    yield BANDIT_ID
    del gymnasium.registry[BANDIT_ID]


def _cloud(n: int, d: int, seed: int, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal((n, d))


def _pairwise(t: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(len(t), 1)
    return np.linalg.norm(t[i] - t[j], axis=1)


# --- property 1: one particle is plain policy gradient --------------------------------------


def test_one_particle_direction_is_the_policy_gradient_exactly() -> None:
    theta, g = _cloud(1, 50, 0), _cloud(1, 50, 1)
    for alpha in (0.0, 0.01, 1.0, 100.0):
        phi = stein_direction(theta, g, alpha)
        assert torch.equal(phi, torch.as_tensor(g))


def test_one_particle_adam_trajectory_equals_independent_adam() -> None:
    theta = _cloud(1, 30, 2)
    svgd = ParticleAdam(theta, coupling="svgd", alpha=5.0, lr=0.05)
    indep = ParticleAdam(theta, coupling="independent", lr=0.05)
    for k in range(10):
        g = _cloud(1, 30, 100 + k)
        svgd.step(g)
        indep.step(g)
    assert np.array_equal(svgd.thetas, indep.thetas)
    assert not np.allclose(svgd.thetas, theta)


# --- property 2: with zero policy gradient the particles repel ------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_zero_gradient_pushes_particles_apart(seed: int) -> None:
    theta = _cloud(8, 20, seed)
    phi = stein_direction(theta, np.zeros_like(theta), alpha=1.0).numpy()
    # first order: the centroid stays put and the sum of squared distances grows
    assert np.allclose(phi.sum(axis=0), 0.0, atol=1e-12)
    i, j = np.triu_indices(8, 1)
    growth = np.sum((theta[i] - theta[j]) * (phi[i] - phi[j]))
    assert growth > 0
    # a small explicit step increases the mean pairwise distance
    assert _pairwise(theta + 1e-3 * phi).mean() > _pairwise(theta).mean()
    # the optimizer path (Adam, param.grad = -phi) does too
    opt = ParticleAdam(theta, alpha=1.0, lr=1e-3)
    opt.step(np.zeros_like(theta))
    assert _pairwise(opt.thetas).mean() > _pairwise(theta).mean()


def test_zero_gradient_two_particles_every_step_increases_their_distance() -> None:
    opt = ParticleAdam(_cloud(2, 10, 7), alpha=0.5, lr=1e-2)
    d = [_pairwise(opt.thetas)[0]]
    for _ in range(20):
        opt.step(np.zeros((2, 10)))
        d.append(_pairwise(opt.thetas)[0])
    assert np.all(np.diff(d) > 0)


# --- property 3: alpha -> 0, in the precise sense of learning/svpg.py ------------------------


def test_alpha_scales_only_the_repulsion_linearly() -> None:
    theta, g = _cloud(6, 12, 3), _cloud(6, 12, 4)
    h = median_bandwidth(theta)
    phi0 = stein_direction(theta, g, 0.0, h)
    _, repulsion = rbf_kernel(theta, h)
    for alpha in (1e-6, 0.3, 7.0):
        assert torch.allclose(stein_direction(theta, g, alpha, h) - phi0, alpha * repulsion / 6, rtol=1e-9, atol=1e-12)
    kernel, _ = rbf_kernel(theta, h)
    assert torch.allclose(phi0, kernel @ torch.as_tensor(g) / 6, rtol=1e-12)


def test_alpha_to_zero_with_particles_outside_the_kernel_is_independent_agents() -> None:
    # fixed bandwidth h = 1, particles 30 apart: off-diagonal k = exp(-900) = 0 in float64
    theta = 30.0 * np.eye(5, 8) + _cloud(5, 8, 5, scale=0.01)
    svgd = ParticleAdam(theta, coupling="svgd", alpha=1e-12, lr=0.01, bandwidth=1.0)
    indep = ParticleAdam(theta, coupling="independent", lr=0.01)
    for k in range(25):
        g = _cloud(5, 8, 200 + k)
        svgd.step(g)
        indep.step(g)
    # phi = g / n: Adam removes the 1/n up to its eps (n * 1e-8 against gradients of size 1)
    assert np.allclose(svgd.thetas, indep.thetas, rtol=0, atol=1e-7)
    assert np.abs(svgd.thetas - theta).max() > 0.1


def test_alpha_zero_with_the_median_heuristic_still_shares_gradients() -> None:
    # The honest caveat: the median heuristic keeps half the pairs at k >= 1 / (n + 1), so
    # alpha = 0 is kernel-smoothed gradient ascent, not independent agents.
    theta, g = _cloud(8, 10, 8), _cloud(8, 10, 9)
    kernel, _ = rbf_kernel(theta, median_bandwidth(theta))
    off = kernel.numpy()[np.triu_indices(8, 1)]
    assert np.mean(off >= 1 / 9 - 1e-12) >= 0.5
    phi = stein_direction(theta, g, 0.0).numpy()
    cos = np.sum(phi * g, axis=1) / np.linalg.norm(phi, axis=1) / np.linalg.norm(g, axis=1)
    assert cos.min() < 0.99


# --- kernel, its sign, the bandwidth ---------------------------------------------------------


def test_kernel_gradient_matches_finite_differences_and_repels() -> None:
    theta = _cloud(4, 5, 10)
    h = 3.0
    kernel, repulsion = rbf_kernel(theta, h)

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-np.sum((a - b) ** 2) / h)

    eps = 1e-6
    for i in range(4):
        total = np.zeros(5)
        for j in range(4):
            assert kernel[i, j].item() == pytest.approx(k(theta[j], theta[i]), rel=1e-12)
            fd = np.zeros(5)
            for c in range(5):
                up, down = theta[j].copy(), theta[j].copy()
                up[c] += eps
                down[c] -= eps
                fd[c] = (k(up, theta[i]) - k(down, theta[i])) / (2 * eps)  # d/d theta_j of k(theta_j, theta_i)
            assert np.allclose(fd, 2 / h * (theta[i] - theta[j]) * k(theta[j], theta[i]), atol=1e-9)
            total += fd
        assert np.allclose(repulsion[i].numpy(), total, atol=1e-8)
    # the sign: moving each particle along its repulsion moves it away from the others
    t2 = _cloud(2, 5, 11)
    _, r2 = rbf_kernel(t2, h)
    assert np.dot(r2[0].numpy(), t2[0] - t2[1]) > 0
    assert np.dot(r2[1].numpy(), t2[1] - t2[0]) > 0


def test_median_heuristic_on_a_known_set() -> None:
    # points 0, 1, 3 on a line: squared distances 1, 9, 4 -> median 4 -> h = 4 / log(4)
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    assert median_bandwidth(pts) == pytest.approx(4 / math.log(4), rel=1e-12)
    # four points: squared distances 1, 4, 9, 1, 4, 1 -> median (1 + 4) / 2 = 2.5 -> h = 2.5 / log(5)
    line = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert median_bandwidth(line) == pytest.approx(2.5 / math.log(5), rel=1e-12)
    kernel, _ = rbf_kernel(pts, median_bandwidth(pts))
    assert kernel[1, 2].item() == pytest.approx(1 / 4, rel=1e-12)  # the median pair (1, 3) has k = 1/(n+1)
    assert median_bandwidth(pts[:1]) == 1.0
    assert median_bandwidth(np.ones((3, 2))) == 1.0


def test_bad_arguments_name_the_value_and_the_fix() -> None:
    with pytest.raises(LearningConfigError, match=r"shape \(3,\)"):
        median_bandwidth(np.zeros(3))
    with pytest.raises(LearningConfigError, match="alpha=-1"):
        stein_direction(np.zeros((2, 2)), np.zeros((2, 2)), -1.0)
    with pytest.raises(LearningConfigError, match="'repel'"):
        ParticleAdam(np.zeros((2, 2)), coupling="repel")
    with pytest.raises(LearningConfigError, match="NaN"):
        ParticleAdam(np.array([[np.nan, 0.0]]))
    with pytest.raises(LearningConfigError, match=r"expected \(2, 2\)"):
        ParticleAdam(np.zeros((2, 2))).step(np.zeros((3, 2)))
    with pytest.raises(LearningConfigError, match="particle index 5"):
        ParticleAdam(np.zeros((2, 2))).step(np.zeros((2, 2)), particles=[5])


# --- estimators ------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["reinforce", "a2c"])
@pytest.mark.parametrize("normalize", [True, False])
def test_policy_gradient_points_toward_the_better_arm(bandit: str, estimator: str, normalize: bool) -> None:
    env = gymnasium.make(bandit)
    spec = PolicySpec.from_spaces(env.observation_space, env.action_space, hidden=(8,), critic=estimator == "a2c")
    actor, critic = init_particle(spec, 0, output_gain=0.5)
    policy = Policy(spec, actor)
    obs = torch.tensor([[1.0, -0.5, 0.25]])

    def p_better(vec: np.ndarray) -> float:
        policy.set_actor(vec)
        with torch.no_grad():
            return float(policy.distribution(obs).probs[0, 1])

    for seed in range(3):
        cfg = RolloutConfig(estimator=estimator, episodes=64, normalize_advantages=normalize)
        r = run_rollout(RolloutTask(bandit, {}, spec, actor.astype(np.float32), critic.astype(np.float32), seed, cfg))
        assert r.env_steps == 64 and r.policy_grad.shape == (spec.actor_size,)
        step = 0.05 * r.policy_grad / np.linalg.norm(r.policy_grad)
        assert p_better(actor + step) > p_better(actor) > p_better(actor - step)


def test_rollout_is_a_pure_function_of_its_task() -> None:
    env = gymnasium.make("CartPole-v1")
    spec = PolicySpec.from_spaces(env.observation_space, env.action_space, hidden=(16,), critic=True)
    actor, critic = init_particle(spec, 3, output_gain=1.0)
    task = RolloutTask("CartPole-v1", {}, spec, actor.astype(np.float32), critic.astype(np.float32), 12,
                       RolloutConfig(estimator="a2c", episodes=3))
    a, b = run_rollout(task), run_rollout(task)
    assert a.policy_grad.tobytes() == b.policy_grad.tobytes()
    assert a.critic_grad.tobytes() == b.critic_grad.tobytes()
    assert np.array_equal(a.episode_returns, b.episode_returns) and a.env_steps == b.env_steps == a.episode_lengths.sum()
    other = run_rollout(RolloutTask("CartPole-v1", {}, spec, task.actor, task.critic, 13, task.config))
    assert other.policy_grad.tobytes() != a.policy_grad.tobytes()


def test_box_actions_gaussian_policy_stays_in_bounds_and_matches_numpy() -> None:
    env = gymnasium.make("Pendulum-v1")
    spec = PolicySpec.from_spaces(env.observation_space, env.action_space, hidden=(16, 16))
    assert spec.action_kind == "box" and spec.low == (-2.0,) and spec.high == (2.0,)
    actor, _ = init_particle(spec, 4, output_gain=1.0)
    policy, fast = Policy(spec, actor), NumpyActor(spec, actor.astype(np.float32))
    obs = np.random.default_rng(0).standard_normal((6, 3))
    ref = policy.actor(torch.as_tensor(obs, dtype=torch.float32)).detach().numpy()
    assert np.allclose(np.stack([fast.forward(o) for o in obs]), ref, atol=1e-5)
    rng = np.random.default_rng(1)
    acts = np.array([policy.act(o, rng) for o in obs] + [spec.env_action(np.array([5.0]))])
    assert acts.shape == (7, 1) and np.all(np.abs(acts) <= 2.0) and acts[-1, 0] == 2.0
    r = run_rollout(RolloutTask("Pendulum-v1", {}, spec, actor.astype(np.float32), np.zeros(0, np.float32), 0,
                                RolloutConfig(episodes=1)))
    assert r.env_steps == 200 and np.isfinite(r.policy_grad).all() and np.abs(r.policy_grad[-1]) > 0  # log_std


def test_numpy_actor_matches_torch_for_discrete_actions() -> None:
    spec = PolicySpec(obs_shape=(2, 2), action_kind="discrete", n_actions=3, hidden=(7, 5))
    actor, _ = init_particle(spec, 9, output_gain=1.0)
    obs = np.random.default_rng(2).standard_normal((5, 2, 2))
    ref = Policy(spec, actor).actor(torch.as_tensor(obs.reshape(5, 4), dtype=torch.float32)).detach().numpy()
    got = np.stack([NumpyActor(spec, actor.astype(np.float32)).forward(o) for o in obs])
    assert np.allclose(got, ref, atol=1e-5)


def test_unsupported_spaces_are_refused_with_the_fix() -> None:
    with pytest.raises(LearningConfigError, match="FlattenObservation"):
        PolicySpec.from_spaces(gymnasium.spaces.Discrete(3), gymnasium.spaces.Discrete(2))
    with pytest.raises(LearningConfigError, match="neither Discrete nor Box"):
        PolicySpec.from_spaces(gymnasium.spaces.Box(-1, 1, (2,)), gymnasium.spaces.MultiBinary(3))


def test_kept_distances_equal_a_full_recomputation_after_single_and_full_steps():
    torch.manual_seed(3)
    thetas = torch.randn(12, 50, dtype=torch.float64)
    kept = ParticleAdam(thetas, alpha=0.5, lr=0.05)
    rng = np.random.default_rng(0)
    for step in range(30):
        grads = rng.standard_normal((12, 50))
        chosen = None if step % 7 == 0 else [int(rng.integers(12))]
        kept.step(grads, chosen)
        fresh = ParticleAdam(kept.thetas, alpha=0.5, lr=0.05)  # no kept distances: recomputes all
        got, h = kept.direction(grads)
        want, h_want = fresh.direction(grads)
        assert h == h_want and torch.equal(got, want), f"step {step}"


@pytest.mark.parametrize("coupling", ["svgd", "independent"])
def test_non_finite_gradients_are_refused_before_any_particle_moves(coupling):
    """A NaN or inf gradient anywhere the step uses it is refused, and no particle has moved."""
    rng = np.random.default_rng(4)
    adam = ParticleAdam(rng.standard_normal((5, 6)), coupling=coupling, lr=0.1)
    before = adam.thetas
    for bad in (np.nan, np.inf, -np.inf):
        grads = rng.standard_normal((5, 6))
        grads[3, 2] = bad
        with pytest.raises(LearningConfigError, match="grads holds NaN or inf"):
            adam.step(grads, [3] if coupling == "independent" else [0])
        assert np.array_equal(adam.thetas, before)
    adam.step(rng.standard_normal((5, 6)), [1])
    assert not np.array_equal(adam.thetas, before)
    assert np.array_equal(adam.thetas[[0, 2, 3, 4]], before[[0, 2, 3, 4]]), "one particle moved"


def test_the_median_bandwidth_is_torch_quantiles_bit_for_bit():
    """The bandwidth's median (a partition and torch's lerp) equals torch.quantile's, odd and even pair counts."""
    from learning.svpg import _sq_distances

    rng = np.random.default_rng(6)
    for n in (2, 3, 4, 5, 8, 17, 32):
        t = torch.as_tensor(rng.standard_normal((n, 9)) * rng.uniform(0.1, 10))
        sq = _sq_distances(t)
        i, j = torch.triu_indices(n, n, offset=1)
        want = float(torch.quantile(sq[i, j], 0.5)) / math.log(n + 1)
        assert median_bandwidth(t) == want, n
