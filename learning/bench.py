"""``pfmtwin bench agents``, the sync-versus-async benchmark, and their toy environment.

:func:`bench_agents` (the ``agents`` entry of ``pfmtwin.benches``) times the environment on the
twin and on the surrogate, and runs :func:`bench_sync_async` on the twin with per-particle
episode lengths (:func:`episode_lengths`). :func:`bench_sync_async` gives seconds per SVPG
iteration of the synchronous and the asynchronous trainer on one Dask cluster, with episode
costs that vary (``python -m learning.compare --bench``).

:class:`CostlyEpisodesEnv` (``COSTLY_ENV_ID``) is the benchmark's toy environment: each episode
has a seeded random length and every step costs ``step_seconds`` of wall time, so rollouts of
the same policy cost different amounts, as episodes on the twin do.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

import learning
from learning.svpg import LearningConfigError
from learning.trainer import dask_client, train

__all__ = [
    "COSTLY_ENV_ID",
    "CostlyEpisodesEnv",
    "bench_agents",
    "bench_sync_async",
    "costly_env_kwargs",
    "episode_lengths",
]

#: Gymnasium id of :class:`CostlyEpisodesEnv`; the ``module:`` prefix makes ``gymnasium.make``
#: import this module (and so register the id) in any process, Dask workers included.
COSTLY_ENV_ID = "learning.bench:pfmtwin/CostlyEpisodes-v0"


class CostlyEpisodesEnv(gymnasium.Env):
    """A toy task whose episodes take a seeded, varying amount of wall time.

    Observation: ``[fraction of the episode elapsed, cue]``, ``cue`` uniform in [-1, 1].
    Action: ``Discrete(2)``; reward 1 when the action is ``cue > 0``, else 0. An episode lasts
    a length drawn uniformly from ``[min_length, max_length]`` at reset (then ``terminated``).

    Args:
        step_seconds: wall time of one step, s, ``>= 0``.
        min_length: shortest episode, steps, ``>= 1``.
        max_length: longest episode, steps, ``>= min_length``.
        cost: ``"sleep"`` (wait, leaving the core to others) or ``"spin"`` (busy, like a
            simulation).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, step_seconds: float = 1e-3, min_length: int = 10, max_length: int = 100,
                 cost: str = "sleep") -> None:
        if not (step_seconds >= 0 and math.isfinite(step_seconds)):
            raise LearningConfigError(f"step_seconds={step_seconds!r} must be finite and >= 0")
        if not 1 <= int(min_length) <= int(max_length):
            raise LearningConfigError(
                f"episode lengths [{min_length!r}, {max_length!r}] must satisfy 1 <= min_length <= max_length")
        if cost not in ("sleep", "spin"):
            raise LearningConfigError(f"cost={cost!r}; expected 'sleep' or 'spin'")
        self.step_seconds, self.min_length, self.max_length, self.cost = (
            float(step_seconds), int(min_length), int(max_length), cost)
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)
        self._length = self._t = 0
        self._cue = 0.0

    def _obs(self) -> np.ndarray:
        return np.array([self._t / self._length, self._cue], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode of a random length."""
        super().reset(seed=seed)
        self._length = int(self.np_random.integers(self.min_length, self.max_length + 1))
        self._t = 0
        self._cue = float(self.np_random.uniform(-1.0, 1.0))
        return self._obs(), {"length": self._length}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One step, costing ``step_seconds`` of wall time."""
        if self.step_seconds > 0:
            if self.cost == "sleep":
                time.sleep(self.step_seconds)  # the cost *is* wall time: this is a benchmark stand-in
            else:
                end = time.perf_counter() + self.step_seconds
                while time.perf_counter() < end:
                    pass
        reward = 1.0 if int(action) == int(self._cue > 0) else 0.0
        self._t += 1
        self._cue = float(self.np_random.uniform(-1.0, 1.0))
        return self._obs(), reward, self._t >= self._length, False, {}


if "pfmtwin/CostlyEpisodes-v0" not in gymnasium.registry:
    gymnasium.register(id="pfmtwin/CostlyEpisodes-v0", entry_point="learning.bench:CostlyEpisodesEnv", max_episode_steps=100_000)


def costly_env_kwargs(particles: int, *, seed: int = 0, step_seconds: float = 1e-3, spread: float = 8.0,
                      min_length: int = 10, max_length: int = 100, cost: str = "sleep") -> list[dict[str, Any]]:
    """Per-particle kwargs of :class:`CostlyEpisodesEnv` for the heterogeneous-cost benchmark.

    Particle ``i``'s step cost is ``step_seconds * f_i`` with ``f_i`` log-uniform in
    ``[1, spread]`` (seeded): some policies' episodes are persistently dearer than others', on
    top of the per-episode length variation.

    Returns:
        ``particles`` dicts for ``train(..., env_kwargs=...)``.
    """
    if not (spread >= 1 and math.isfinite(spread)):
        raise LearningConfigError(f"spread={spread!r} must be finite and >= 1 (1: identical particles)")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(7,)))
    factors = np.exp(rng.uniform(0.0, math.log(spread), size=int(particles)))
    return [{"step_seconds": float(step_seconds * f), "min_length": int(min_length), "max_length": int(max_length),
             "cost": cost} for f in factors]


def episode_lengths(particles: int, *, low: int = 2, high: int = 16, seed: int = 0) -> list[int]:
    """Per-particle episode lengths (steps), log-uniform in ``[low, high]``, seeded.

    The benchmark's stand-in for episodes whose cost varies: on the instrument an episode ends
    when the wall is lost or the goal reached, so some particles' episodes are much longer.
    """
    if not 1 <= int(low) <= int(high):
        raise LearningConfigError(f"episode lengths [{low!r}, {high!r}] must satisfy 1 <= low <= high")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(11,)))
    return [int(round(math.exp(v))) for v in rng.uniform(math.log(low), math.log(high), size=int(particles))]


def bench_sync_async(env_id: str = COSTLY_ENV_ID,
                     env_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None, *, particles: int = 8,
                     steps: int | None = None, workers: int = 2, threads: int = 1, scheduler: str | None = None,
                     seed: int = 0, spread: float = 8.0, **options: Any) -> dict[str, Any]:
    """Seconds per SVPG iteration, synchronous against asynchronous, on one Dask cluster.

    Both modes train the same particles from the same seed on the same cluster for the same
    environment-step budget; an iteration is ``particles`` particle updates. Cluster start-up
    and the final evaluation are excluded.

    Args:
        env_id: Gymnasium id; the default toy env with :func:`costly_env_kwargs` (step costs
            log-uniform over a factor ``spread`` between particles, from 1 ms per step, episode
            lengths uniform in 10-100 steps) when ``env_kwargs`` is None.
        env_kwargs: ``gymnasium.make`` keyword arguments (one dict, or one per particle).
        particles: SVPG particles.
        steps: environment-step budget per mode; default about 12 synchronous iterations of the
            toy env (``12 * particles * 55``), and required for another environment.
        workers: LocalCluster worker processes.
        threads: threads per worker process (rollout slots = ``workers * threads``); more than
            1 is meaningful only for episodes that wait (the toy env's ``cost="sleep"``).
        scheduler: address of an existing Dask scheduler instead.
        seed: training seed.
        spread: factor between the cheapest and the dearest particle of the toy env.
        **options: further training options (``episodes``, ``alpha``, ...).

    Returns:
        Plain data: ``sync_s_per_it``, ``async_s_per_it``, ``speedup`` (sync / async), and the
        iterations, wall times, updates per particle, environment steps and worker busy share
        of both modes.
    """
    if env_kwargs is None and env_id == COSTLY_ENV_ID:
        env_kwargs = costly_env_kwargs(particles, seed=seed, spread=spread)
        if steps is None:
            steps = 12 * particles * 55 * int(options.get("episodes", 1))
    if steps is None:
        raise LearningConfigError(f"steps=None for {env_id!r}; give an environment-step budget per mode")
    options = {"episodes": 1, "eval_episodes": 0, **options}
    out: dict[str, Any] = {"env": env_id, "particles": particles, "workers": workers, "threads": threads,
                           "steps": steps, "seed": seed}
    if env_id == COSTLY_ENV_ID:
        out["spread"] = spread
    with dask_client(scheduler, workers, threads) as client:
        address = client.scheduler.address
        slots = sum(client.nthreads().values())
        # warm every worker (imports, numba JIT, first environment) so that neither mode pays for it
        train(env_id, env_kwargs, mode="sync", scheduler=address, particles=particles, steps=1, seed=seed, **options)
        for mode in ("sync", "async"):
            r = train(env_id, env_kwargs, mode=mode, scheduler=address, particles=particles, steps=steps, seed=seed,
                      **options)
            out[mode] = {"s_per_it": r.seconds_per_iteration, "iterations": r.iterations, "wall_s": r.wall_time,
                         "env_steps": r.env_steps, "updates": [int(u) for u in r.updates],
                         "discarded": r.discarded, "max_staleness": r.max_staleness,
                         # share of the rollout slots' time spent in rollouts (1 - waiting): async can
                         # beat sync by at most 1 / sync's share when every update costs the same
                         "worker_busy": r.rollout_seconds / (r.wall_time * slots)}
    out["sync_s_per_it"] = out["sync"]["s_per_it"]
    out["async_s_per_it"] = out["async"]["s_per_it"]
    out["speedup"] = out["sync_s_per_it"] / out["async_s_per_it"]
    return out


def bench_agents(url: str = "twin://?seed=7&grid=64&field=5e-7&init=wall&scanner=closed", repeat: int = 30, *,
                 particles: int = 8, workers: int = 2, threads: int = 1,
                 surrogate: str | os.PathLike[str] | None = None, env_steps: int = 300,
                 lengths: tuple[int, int] = (2, 16), seed: int = 0,
                 model_workers: Sequence[int] | None = None) -> dict[str, Any]:
    """``pfmtwin bench agents``: environment speed on the twin and the surrogate, SVPG s/it.

    Args:
        url: the twin (any backend URL) the environment runs on; by default the 0.5 um film on a
            64 x 64 grid that agents train on (the default window is 0.4 um of 32 x 32 points;
            the 2 um film of ``twin://?seed=7`` costs 0.8 s per fresh sample, i.e. per rollout).
        repeat: SVPG iterations per mode (budget ``repeat * sum(episode lengths)`` steps). With
            10 the asynchronous/synchronous ratio varied by 15 % between runs on this machine,
            with 30 by 3 % (the benchmark then takes about a minute).
        particles: SVPG particles.
        workers: LocalCluster worker processes; ``threads`` threads each.
        surrogate: a surrogate model file; ``None`` fits one here from the twin's transitions.
        env_steps: steps timed per environment-speed measurement (60 varied by 30 % between runs).
        lengths: range of the per-particle episode lengths (:func:`episode_lengths`).
        seed: seed of everything.
        model_workers: also predict sync and async seconds per iteration on these worker counts
            with the scheduling model (:mod:`learning.schedule`), calibrated on this run's
            synchronous figures and checked against its asynchronous ones.

    Returns:
        Plain data: ``env_steps_per_s`` (twin, surrogate, speedup), ``surrogate`` (its fit and
        held-out error when fitted here) and ``svpg`` (:func:`bench_sync_async` on the twin with
        per-particle episode lengths: sync and async seconds per iteration, their ratio
        ``speedup``, updates per particle, how busy the workers were).
    """
    from learning.surrogate_fit import env_speed  # here: the toy env's Dask workers import this module

    env_kwargs = {"microscope": url}
    out: dict[str, Any] = {"url": url, "particles": particles, "workers": workers, "threads": threads}
    twin_rate = env_speed(url, env_steps, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        if surrogate is None:
            from learning.surrogate_data import collect_transitions
            from learning.surrogate_fit import fit_surrogate

            surrogate = Path(tmp) / "surrogate.pt"
            t0 = time.perf_counter()
            data = collect_transitions(url, 300, seed=seed)
            collect_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            fit = fit_surrogate(data, surrogate, seed=seed)
            out["surrogate"] = {"transitions": len(data), "collect_s": collect_s, "fit_s": time.perf_counter() - t0,
                                "held_out_nm": fit["held_out_nm"], "noise_floor_nm": fit["noise_rms_nm"]}
        sur_rate = env_speed(f"surrogate://{Path(surrogate).resolve()}", env_steps, seed=seed)
    out["env_steps_per_s"] = {"twin": twin_rate["steps_per_s"], "surrogate": sur_rate["steps_per_s"],
                              "speedup": sur_rate["steps_per_s"] / twin_rate["steps_per_s"]}
    lens = episode_lengths(particles, low=lengths[0], high=lengths[1], seed=seed)
    svpg = bench_sync_async(learning.ENV_ID, [{**env_kwargs, "max_steps": n} for n in lens], particles=particles,
                            steps=int(repeat) * sum(lens), workers=workers, threads=threads, seed=seed)
    svpg["episode_lengths"] = lens
    out["svpg"] = svpg
    if model_workers:
        out["model"] = scheduling_model(learning.ENV_ID, [{**env_kwargs, "max_steps": n} for n in lens], svpg,
                                        model_workers, seed=seed)
    return out


def scheduling_model(env_id: str, env_kwargs: Sequence[Mapping[str, Any]], measured: Mapping[str, Any],
                     model_workers: Sequence[int], *, seed: int = 0) -> dict[str, Any]:
    """Predicted against measured, then predictions (see :mod:`learning.schedule`).

    The model is fitted to the measured synchronous run (rollout slow-down from its worker
    busy share, Dask's latency from its seconds per iteration) and predicts the asynchronous
    one; ``check`` gives both and the error of the ratio. Predictions are for the measured
    particles on each worker count, and for as many particles as workers (one each, with the
    driver's SVPG steps measured at that many particles).
    """
    from learning.schedule import calibrate, measure_costs, measure_updates, predict

    particles, workers = measured["particles"], measured["workers"] * measured["threads"]
    costs = measure_costs(env_id, env_kwargs, particles=particles, seed=seed, episodes=1)
    fitted = calibrate(costs, workers, measured["sync_s_per_it"], measured["sync"]["worker_busy"], seed=seed)
    (here,) = predict(fitted, [workers], seed=seed)
    check = {"workers": workers, "measured_sync_s_per_it": measured["sync_s_per_it"],
             "measured_async_s_per_it": measured["async_s_per_it"], "measured_speedup": measured["speedup"],
             "predicted_async_s_per_it": here["async_s_per_it"], "predicted_speedup": here["speedup"],
             "speedup_error": here["speedup"] / measured["speedup"] - 1}
    counts = sorted({int(p) for p in model_workers})
    updates = measure_updates(env_id, env_kwargs, counts, seed=seed, episodes=1)
    same = predict(fitted, counts, seed=seed)
    one_each = [predict(fitted.scaled(particles=p, updates=updates[p]), [p], seed=seed)[0] for p in counts]
    for row, p in zip(one_each, counts, strict=True):
        row["update_s"], row["sync_update_s"] = updates[p]
    return {"costs": fitted.to_dict(), "check": check, f"{particles}_particles": same,
            "one_particle_per_worker": one_each}
