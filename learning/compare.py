"""SVPG against independent agents at one sample budget.

``python -m learning.compare --env CartPole-v1 --particles 8 --seeds 5 --steps 100000`` trains
every variant (SVPG, independent REINFORCE) once per seed with the same options, seeds and
environment-step budget, each run on a Dask worker in serial mode, and prints a markdown table
and one JSON line. ``--bench`` runs :func:`learning.bench.bench_sync_async` instead: seconds per
iteration of the synchronous and the asynchronous trainer on one cluster, with episode costs
that vary (on the toy environment :class:`learning.bench.CostlyEpisodesEnv` by default).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from learning.bench import COSTLY_ENV_ID, bench_sync_async
from learning.svpg import LearningConfigError
from learning.trainer import TrainConfig, dask_client, train

__all__ = [
    "DEFAULT_VARIANTS",
    "Comparison",
    "compare",
    "main",
    "markdown_table",
]

#: Variants compared by default: name -> training options.
DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "svpg": {"algo": "svpg"},
    "independent": {"algo": "independent"},
}


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
        print(json.dumps(bench_sync_async(env, a.env_kwargs, particles=a.particles, steps=steps, workers=a.workers,
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
