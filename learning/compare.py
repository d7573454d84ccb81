"""SVPG against independent agents at one sample budget, and the sync-versus-async benchmark.

``python -m learning.compare --env CartPole-v1 --particles 8 --seeds 5 --steps 100000`` trains
every variant (SVPG, independent REINFORCE) once per seed with the same options, seeds and
environment-step budget, each run on a Dask worker in serial mode, and prints a markdown table
and one JSON line. ``--bench`` runs :func:`bench_agents` instead: seconds per iteration of the
synchronous and the asynchronous trainer on one cluster, with episode costs that vary.

:class:`CostlyEpisodesEnv` (``COSTLY_ENV_ID``) is the benchmark's toy environment: each episode
has a seeded random length and every step costs ``step_seconds`` of wall time, so rollouts of
the same policy cost different amounts, as episodes on the twin do.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from learning.svpg import LearningConfigError
from learning.trainer import TrainConfig, dask_client, train

__all__ = [
    "COSTLY_ENV_ID",
    "DEFAULT_VARIANTS",
    "Comparison",
    "CostlyEpisodesEnv",
    "bench_agents",
    "compare",
    "costly_env_kwargs",
    "main",
    "markdown_table",
]

#: Gymnasium id of :class:`CostlyEpisodesEnv`; the ``module:`` prefix makes ``gymnasium.make``
#: import this module (and so register the id) in any process, Dask workers included.
COSTLY_ENV_ID = "learning.compare:pfmtwin/CostlyEpisodes-v0"

#: Variants compared by default: name -> training options.
DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "svpg": {"algo": "svpg"},
    "independent": {"algo": "independent"},
}


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
    gymnasium.register(id="pfmtwin/CostlyEpisodes-v0", entry_point="learning.compare:CostlyEpisodesEnv", max_episode_steps=100_000)


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


@dataclass(frozen=True)
class Comparison:
    """Results of :func:`compare`.

    Attributes:
        env_id: Gymnasium id.
        particles: particles per run.
        steps: environment-step budget of every run.
        seeds: the seeds used.
        variants: name -> options of each variant.
        finals: name -> mean final return of each seed's run (mean over particles), ``(seeds,)``.
        best: name -> best particle's final return per seed, ``(seeds,)``.
        wall: name -> training seconds per seed, ``(seeds,)``.
    """

    env_id: str
    particles: int
    steps: int
    seeds: tuple[int, ...]
    variants: dict[str, dict[str, Any]]
    finals: dict[str, np.ndarray]
    best: dict[str, np.ndarray]
    wall: dict[str, np.ndarray]

    def to_json(self) -> dict[str, Any]:
        """Plain data for one JSON line."""
        return {"env": self.env_id, "particles": self.particles, "steps": self.steps, "seeds": list(self.seeds),
                "rows": [{"name": k, "options": self.variants[k], "mean": float(v.mean()), "std": float(v.std()),
                          "finals": [float(x) for x in v], "best_particle": [float(x) for x in self.best[k]],
                          "wall_s": float(self.wall[k].mean())} for k, v in self.finals.items()]}


def _train_summary(env_id: str, env_kwargs: Any, options: dict[str, Any]) -> dict[str, Any]:
    """One serial training run (on a Dask worker); plain-data summary."""
    r = train(env_id, env_kwargs, mode="serial", **options)
    return {"final": r.mean_final_return, "best": float(np.max(r.final_returns)), "wall": r.wall_time}


def compare(env_id: str = "CartPole-v1", env_kwargs: Mapping[str, Any] | None = None, *, particles: int = 8,
            seeds: int | Sequence[int] = 5, steps: int = 100_000, variants: Mapping[str, Mapping[str, Any]] | None = None,
            workers: int = 2, scheduler: str | None = None,
            progress: Callable[[str, int, dict[str, Any]], None] | None = None, **options: Any) -> Comparison:
    """Train each variant once per seed at the same budget; runs spread over Dask workers.

    Args:
        env_id: Gymnasium id.
        env_kwargs: ``gymnasium.make`` keyword arguments.
        particles: particles per run.
        seeds: a number of seeds (``0 .. seeds-1``) or the seeds themselves.
        steps: environment-step budget of every run.
        variants: name -> training options of that variant (default :data:`DEFAULT_VARIANTS`).
        workers: LocalCluster worker processes (each runs whole trainings, one at a time).
        scheduler: address of an existing Dask scheduler instead.
        progress: called as ``progress(variant, seed, summary)`` when a run finishes.
        **options: training options shared by all variants (``alpha``, ``lr``, ...).

    Returns:
        A :class:`Comparison`.
    """
    from distributed import as_completed

    seed_list = tuple(range(int(seeds))) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seed_list:
        raise LearningConfigError(f"seeds={seeds!r}; need at least one seed")
    chosen = {k: dict(v) for k, v in (variants or DEFAULT_VARIANTS).items()}
    runs = {}
    for name, extra in chosen.items():
        for s in seed_list:
            opts = {**options, **extra, "particles": particles, "steps": steps, "seed": s}
            TrainConfig(**{**opts, "mode": "serial"})  # fail here, not on a worker
            runs[(name, s)] = opts
    out: dict[tuple[str, int], dict[str, Any]] = {}
    with dask_client(scheduler, workers) as client:
        futures = {client.submit(_train_summary, env_id, env_kwargs, opts, pure=False): key for key, opts in runs.items()}
        for fut in as_completed(futures):
            key = futures[fut]
            out[key] = fut.result()
            if progress is not None:
                progress(key[0], key[1], out[key])
    pick = {f: {n: np.array([out[(n, s)][f] for s in seed_list]) for n in chosen} for f in ("final", "best", "wall")}
    return Comparison(env_id, particles, steps, seed_list, chosen, pick["final"], pick["best"], pick["wall"])


def markdown_table(c: Comparison) -> str:
    """A markdown table of a :class:`Comparison`: mean +- std over seeds, and each seed."""
    lines = [f"{c.env_id}, {c.particles} particles, {c.steps} environment steps per run, seeds {list(c.seeds)}",
             "",
             "| variant | options | mean final return | std over seeds | per seed | best particle (mean) | train s/run |",
             "|---|---|---:|---:|---|---:|---:|"]
    for name, v in c.finals.items():
        opts = ", ".join(f"{k}={val}" for k, val in c.variants[name].items())
        lines.append(f"| {name} | {opts} | {v.mean():.1f} | {v.std():.1f} | {' '.join(f'{x:.0f}' for x in v)} "
                     f"| {c.best[name].mean():.1f} | {c.wall[name].mean():.0f} |")
    return "\n".join(lines)


def bench_agents(env_id: str = COSTLY_ENV_ID, env_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
                 *, particles: int = 8, steps: int | None = None, workers: int = 2, threads: int = 1,
                 scheduler: str | None = None, seed: int = 0, spread: float = 8.0, **options: Any) -> dict[str, Any]:
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m learning.compare``: the comparison table, or ``--bench``."""
    p = argparse.ArgumentParser(prog="python -m learning.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="CartPole-v1", help="Gymnasium id (default CartPole-v1; --bench: the toy env)")
    p.add_argument("--env-kwargs", type=json.loads, default=None, metavar="JSON",
                   help='keyword arguments of gymnasium.make, e.g. \'{"microscope": "twin://?seed=1"}\'')
    p.add_argument("--particles", type=int, default=8)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--steps", type=int, default=100_000, help="environment steps per run (all particles)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    p.add_argument("--alpha", type=float, default=None, help="SVPG temperature")
    p.add_argument("--lr", type=float, default=None, help="Adam step size")
    p.add_argument("--estimator", choices=("reinforce", "a2c"), default=None)
    p.add_argument("--own-init-baseline", action="store_true",
                   help="also run independent agents each from its own random init")
    p.add_argument("--bench", action="store_true", help="sync vs async seconds per iteration instead")
    p.add_argument("--threads", type=int, default=1, help="--bench: threads per worker process")
    p.add_argument("--spread", type=float, default=8.0, help="--bench: cost factor between particles (toy env)")
    a = p.parse_args(argv)
    options = {k: v for k, v in (("alpha", a.alpha), ("lr", a.lr), ("estimator", a.estimator)) if v is not None}
    if a.bench:
        env = COSTLY_ENV_ID if a.env == "CartPole-v1" else a.env
        steps = None if env == COSTLY_ENV_ID else a.steps
        print(json.dumps(bench_agents(env, a.env_kwargs, particles=a.particles, steps=steps, workers=a.workers,
                                      threads=a.threads, scheduler=a.scheduler, spread=a.spread, **options)))
        return 0
    variants = dict(DEFAULT_VARIANTS)
    if a.own_init_baseline:
        variants["independent, own inits"] = {"algo": "independent", "init_spread": None}
    c = compare(a.env, a.env_kwargs, particles=a.particles, seeds=a.seeds, steps=a.steps, variants=variants, workers=a.workers,
                scheduler=a.scheduler, **options)
    print(markdown_table(c))
    print(json.dumps(c.to_json()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
