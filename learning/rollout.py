"""Rollouts: a pure function from (policy vectors, environment, seed, episode budget) to gradients.

:func:`run_rollout` is what the trainer ships to Dask workers. Everything it needs travels in a
:class:`RolloutTask` (numpy vectors, the Gymnasium id and keyword arguments, an integer seed, the
number of episodes); it builds the environment itself with ``gymnasium.make`` (importing
:mod:`learning` first registers ``pfmtwin/DomainWall-v0``), acts with the numpy actor, and
returns a :class:`RolloutResult`: episode returns and lengths, the policy-gradient estimate as a
numpy vector, the critic's gradient, the number of environment steps and the wall time.
Same task, same result, bit for bit: the seed is the only source of randomness and torch runs
on one thread inside the rollout (a multi-threaded reduction could change the summation order).

Estimators (``gamma`` discounting, reward-to-go ``G_t = sum_{t' >= t} gamma^(t'-t) r_t'``):

* ``"reinforce"``: advantage ``G_t - b``, ``b`` the mean of ``G_t`` over the batch.
* ``"a2c"``: advantage ``G_t - V(s_t)`` with the particle's critic; a *truncated* episode
  (time limit) bootstraps ``G`` from ``V`` of its last observation, a *terminated* one does
  not. The critic descends ``0.5 mean (G_t - V(s_t))^2``.

With ``normalize_advantages`` the advantages are scaled to unit standard deviation and the
surrogate is their mean over steps (a positively rescaled estimate of ``grad J``, of roughly
constant size through training, so SVPG's temperature keeps one meaning); without it the
surrogate is ``sum_t log pi(a_t | s_t) A_t / episodes``, an estimate of ``grad J`` in return
units.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch

import learning  # noqa: F401  (registers pfmtwin/DomainWall-v0 in Dask workers)
from learning.policies import NumpyActor, Policy, PolicySpec
from learning.svpg import LearningConfigError, one_torch_thread

__all__ = ["EPISODE_STEP_CAP", "ESTIMATORS", "RolloutConfig", "RolloutResult", "RolloutTask", "make_env", "run_rollout"]

#: Base policy-gradient estimators.
ESTIMATORS = ("reinforce", "a2c")
#: An episode longer than this (steps) is taken for one that never ends.
EPISODE_STEP_CAP = 1_000_000


@dataclass(frozen=True)
class RolloutConfig:
    """How one rollout samples and estimates.

    Attributes:
        estimator: ``"reinforce"`` or ``"a2c"``.
        episodes: complete episodes per rollout (the episode budget), ``>= 1``.
        gamma: discount factor in ``[0, 1]``.
        normalize_advantages: scale advantages to unit standard deviation (see module doc).
        entropy_coef: weight of the mean policy entropy added to the surrogate, ``>= 0``.
        max_episode_steps: time limit passed to ``gymnasium.make``; ``None`` keeps the
            registered one or the environment's own truncation. An episode still running after
            :data:`EPISODE_STEP_CAP` steps is an error either way.
    """

    estimator: str = "reinforce"
    episodes: int = 4
    gamma: float = 0.99
    normalize_advantages: bool = True
    entropy_coef: float = 0.0
    max_episode_steps: int | None = None

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise LearningConfigError(f"unknown estimator {self.estimator!r}; expected one of {ESTIMATORS}")
        if int(self.episodes) < 1:
            raise LearningConfigError(f"episodes per rollout {self.episodes!r} must be >= 1")
        if not 0.0 <= self.gamma <= 1.0:
            raise LearningConfigError(f"discount gamma={self.gamma!r} must be in [0, 1]")
        if not (self.entropy_coef >= 0 and math.isfinite(self.entropy_coef)):
            raise LearningConfigError(f"entropy_coef {self.entropy_coef!r} must be finite and >= 0")
        if self.max_episode_steps is not None and int(self.max_episode_steps) < 1:
            raise LearningConfigError(f"max_episode_steps {self.max_episode_steps!r} must be >= 1 or None")


@dataclass(frozen=True)
class RolloutTask:
    """Everything one rollout needs; plain data, cheap to pickle.

    Attributes:
        env_id: Gymnasium id (``"module:id"`` imports ``module`` first, Gymnasium's syntax).
        env_kwargs: keyword arguments of ``gymnasium.make``.
        spec: policy spaces and architecture.
        actor: actor vector, float32, shape ``(spec.actor_size,)``.
        critic: critic vector, float32, shape ``(spec.critic_size,)`` (empty without critic).
        seed: the rollout's only source of randomness (environment resets and actions).
        config: estimator and episode budget.
        particle: index of the particle (returned unchanged).
        version: number of updates the particle had when ``actor`` was read (returned unchanged).
        gradient: compute gradients; ``False`` only plays the episodes (evaluation).
        step_budget: start no further episode once this many steps have run (the first always
            runs, and a running episode ends as usual), so the rollout plays at most
            ``step_budget - 1`` steps plus one episode; ``None``: all ``config.episodes``.
    """

    env_id: str
    env_kwargs: Mapping[str, Any]
    spec: PolicySpec
    actor: np.ndarray
    critic: np.ndarray
    seed: int
    config: RolloutConfig = field(default_factory=RolloutConfig)
    particle: int = 0
    version: int = 0
    gradient: bool = True
    step_budget: int | None = None


@dataclass(frozen=True)
class RolloutResult:
    """What a rollout returns to the learner.

    Attributes:
        particle: the task's particle index.
        version: the task's parameter version.
        policy_grad: ascent direction of ``J`` for the actor, float64, ``(actor_size,)``
            (empty when ``gradient`` was False).
        critic_grad: gradient of the critic's loss (descend it), float64, ``(critic_size,)``.
        episode_returns: undiscounted return of each episode, ``(episodes,)``.
        episode_lengths: steps of each episode, ``(episodes,)``.
        env_steps: total environment steps.
        wall_time: seconds the rollout took where it ran.
    """

    particle: int
    version: int
    policy_grad: np.ndarray
    critic_grad: np.ndarray
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    env_steps: int
    wall_time: float

    @property
    def mean_return(self) -> float:
        """Mean undiscounted episode return."""
        return float(np.mean(self.episode_returns))


def make_env(env_id: str, env_kwargs: Mapping[str, Any], max_episode_steps: int | None = None,
             check: bool = True) -> gymnasium.Env:
    """``gymnasium.make(env_id, **env_kwargs)``, with ``max_episode_steps`` if given.

    Args:
        env_id: Gymnasium id.
        env_kwargs: keyword arguments of the environment.
        max_episode_steps: time limit (a ``TimeLimit`` wrapper); ``None`` keeps the registered
            one, if any (an environment may also truncate its episodes itself).
        check: keep Gymnasium's passive environment checker (rollouts skip it: it would run
            again on every rollout's fresh environment).
    """
    kwargs = dict(env_kwargs)
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(max_episode_steps)
    if not check:
        kwargs["disable_env_checker"] = True
    try:
        return gymnasium.make(env_id, **kwargs)
    except gymnasium.error.Error as e:  # unregistered id, wrong version, ...
        raise LearningConfigError(
            f"cannot make Gymnasium environment {env_id!r}: {e}; use a registered id such as "
            "'pfmtwin/DomainWall-v0' or 'CartPole-v1'") from e
    except TypeError as e:  # a keyword argument the environment does not take
        raise LearningConfigError(
            f"environment {env_id!r} does not accept keyword arguments {sorted(env_kwargs)!r}: {e}") from e


def _reward_to_go(rewards: np.ndarray, gamma: float, bootstrap: float) -> np.ndarray:
    out = np.empty_like(rewards)
    g = bootstrap
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def run_rollout(task: RolloutTask) -> RolloutResult:
    """Play ``task.config.episodes`` episodes (fewer once ``task.step_budget`` steps have run) and
    estimate the policy gradient.

    Args:
        task: the rollout's inputs (see :class:`RolloutTask`).

    Returns:
        A :class:`RolloutResult`; identical for identical tasks.
    """
    start = time.perf_counter()
    cfg, spec = task.config, task.spec
    if task.gradient and cfg.estimator == "a2c" and not spec.critic:
        raise LearningConfigError("estimator 'a2c' needs a policy spec with critic=True (a value network)")
    seeds = np.random.SeedSequence(int(task.seed))
    rng = np.random.default_rng(seeds.spawn(1)[0])
    actor = NumpyActor(spec, task.actor)
    obs_rows: list[np.ndarray] = []
    actions: list[Any] = []
    episodes: list[tuple[int, int, np.ndarray | None]] = []  # (start, stop, last obs if truncated)
    rewards: list[float] = []
    env = make_env(task.env_id, task.env_kwargs, cfg.max_episode_steps, check=False)
    try:
        for e in range(int(cfg.episodes)):
            if e > 0 and task.step_budget is not None and len(rewards) >= task.step_budget:
                break
            obs, _ = env.reset(seed=int(seeds.generate_state(1)[0]) if e == 0 else None)
            first = len(rewards)
            while True:
                x = np.asarray(obs, dtype=np.float64).reshape(-1)
                a = actor.sample(x, rng)
                obs_rows.append(x)
                actions.append(a)
                obs, r, terminated, truncated, _ = env.step(spec.env_action(a))
                rewards.append(float(r))
                if len(rewards) - first >= EPISODE_STEP_CAP and not (terminated or truncated):
                    raise LearningConfigError(
                        f"an episode of {task.env_id!r} ran {EPISODE_STEP_CAP} steps without ending; "
                        "pass max_episode_steps to give it a time limit")
                if terminated or truncated:
                    last = np.asarray(obs, dtype=np.float64).reshape(-1) if truncated and not terminated else None
                    episodes.append((first, len(rewards), last))
                    break
    finally:
        env.close()
    r = np.asarray(rewards)
    returns = np.array([r[a:b].sum() for a, b, _ in episodes])
    lengths = np.array([b - a for a, b, _ in episodes], dtype=np.int64)
    if not task.gradient:
        return RolloutResult(task.particle, task.version, np.zeros(0), np.zeros(0), returns, lengths,
                             len(r), time.perf_counter() - start)
    with one_torch_thread():
        policy_grad, critic_grad = _gradients(task, obs_rows, actions, r, episodes)
    return RolloutResult(task.particle, task.version, policy_grad, critic_grad, returns, lengths, len(r),
                         time.perf_counter() - start)


def _gradients(task: RolloutTask, obs_rows: list[np.ndarray], actions: list[Any], rewards: np.ndarray,
               episodes: list[tuple[int, int, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
    cfg, spec = task.config, task.spec
    a2c = cfg.estimator == "a2c"
    policy = Policy(spec, task.actor, task.critic if spec.critic else None)
    obs = torch.as_tensor(np.stack(obs_rows), dtype=torch.float32)
    if spec.action_kind == "discrete":
        act = torch.as_tensor(np.asarray(actions, dtype=np.int64))
    else:
        act = torch.as_tensor(np.stack(actions), dtype=torch.float32)
    bootstrap = np.zeros(len(episodes))
    if a2c:
        with torch.no_grad():
            for k, (_, _, last) in enumerate(episodes):
                if last is not None:
                    bootstrap[k] = float(policy.value(torch.as_tensor(last, dtype=torch.float32)[None])[0])
    returns = np.concatenate([_reward_to_go(rewards[a:b], cfg.gamma, bootstrap[k])
                              for k, (a, b, _) in enumerate(episodes)])
    g = torch.as_tensor(returns, dtype=torch.float32)
    values = policy.value(obs) if a2c else None
    adv = g - values.detach() if values is not None else g - g.mean()
    if cfg.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std(correction=0) + 1e-8) if len(adv) > 1 else adv * 0.0
    dist = policy.distribution(obs)
    logp = dist.log_prob(act)
    if cfg.normalize_advantages:
        surrogate = (logp * adv).mean()
    else:
        surrogate = (logp * adv).sum() / len(episodes)
    if cfg.entropy_coef > 0:
        surrogate = surrogate + cfg.entropy_coef * dist.entropy().mean()
    actor_params = policy.actor_parameters()
    policy_grad = torch.nn.utils.parameters_to_vector(torch.autograd.grad(surrogate, actor_params))
    critic_grad = torch.zeros(0)
    if values is not None:
        loss = 0.5 * ((g - values) ** 2).mean()
        critic_grad = torch.nn.utils.parameters_to_vector(torch.autograd.grad(loss, policy.critic_parameters()))
    return policy_grad.double().numpy().copy(), critic_grad.double().numpy().copy()
