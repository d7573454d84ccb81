"""A discrete-event model (simpy) of the trainer's scheduling: seconds per SVPG iteration on P workers.

On two cores the asynchronous trainer can barely beat the synchronous one: with two rollout
slots the barrier idles the workers only 17-20 % of the time. The gain the ORNL talk reports
(1.76x) needs many workers and episodes of very different cost. This model predicts it from
costs measured on this machine, the way :mod:`learning.trainer` schedules:

* **sync**: every iteration submits one rollout per particle; ``P`` workers take them in
  submission order as they come free (Dask's queue); when the last one is back, the driver
  makes one SVPG step of all particles (``sync_update_s``). An iteration lasts the slowest
  worker's share plus the step.
* **async**: every particle keeps ``ceil(P / N)`` rollouts in flight; as each one returns, the
  driver (one process: updates queue behind each other) steps that particle alone
  (``update_s``) and resubmits it. A result computed from parameters more than ``staleness``
  updates of its particle old is discarded, its work lost. An iteration is ``N`` particle
  updates, as in the trainer.

Every task also pays a dispatch latency (``dispatch_s``: Dask's scheduler and the
serialization of the task and its result). Rollout durations come from
:func:`measure_costs`: each particle's rollouts timed in this process on the real environment,
and the driver's updates timed on the real learner. Each simulated rollout draws one of its
particle's measured durations (seeded), so the model carries their spread.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

__all__ = ["ScheduleCosts", "calibrate", "measure_costs", "measure_updates", "predict"]


@dataclass(frozen=True)
class ScheduleCosts:
    """What the schedule model needs, all in s.

    Attributes:
        rollouts: per particle, the measured wall times of its rollouts.
        update_s: the driver's SVPG step of one particle (async).
        sync_update_s: the driver's SVPG step of all particles (sync).
        dispatch_s: latency added to every task (submission to start, plus the result's return).
    """

    rollouts: tuple[tuple[float, ...], ...]
    update_s: float
    sync_update_s: float
    dispatch_s: float = 0.002
    notes: dict = field(default_factory=dict)

    @property
    def particles(self) -> int:
        return len(self.rollouts)

    def scaled(self, rollout: float = 1.0, dispatch_s: float | None = None, particles: int | None = None,
               updates: tuple[float, float] | None = None) -> ScheduleCosts:
        """These costs with every rollout ``rollout`` times as long, another dispatch latency, or
        ``particles`` particles (the measured rollouts repeated in turn) whose driver steps take
        ``updates`` = (one particle's, all particles') seconds (:func:`measure_updates`)."""
        n = self.particles if particles is None else int(particles)
        update_s, sync_update_s = (self.update_s, self.sync_update_s) if updates is None else updates
        return dataclasses.replace(
            self, rollouts=tuple(tuple(rollout * t for t in self.rollouts[i % self.particles]) for i in range(n)),
            update_s=update_s, sync_update_s=sync_update_s,
            dispatch_s=self.dispatch_s if dispatch_s is None else dispatch_s)

    def to_dict(self) -> dict:
        return {"rollout_mean_s": [float(np.mean(r)) for r in self.rollouts], "update_s": self.update_s,
                "sync_update_s": self.sync_update_s, "dispatch_s": self.dispatch_s, **self.notes}


def _draw(costs: ScheduleCosts, rng: np.random.Generator, i: int) -> float:
    samples = costs.rollouts[i]
    return float(samples[rng.integers(len(samples))])


def _sync(costs: ScheduleCosts, workers: int, iterations: int, rng: np.random.Generator) -> float:
    env = simpy.Environment()
    pool = simpy.Resource(env, capacity=workers)

    def rollout(i: int):
        with pool.request() as slot:  # FIFO: Dask hands queued tasks to workers as they free up
            yield slot
            yield env.timeout(_draw(costs, rng, i) + costs.dispatch_s)

    def driver():
        for _ in range(iterations):
            yield simpy.AllOf(env, [env.process(rollout(i)) for i in range(costs.particles)])
            yield env.timeout(costs.sync_update_s)

    env.process(driver())
    env.run()
    return env.now / iterations


def _async(costs: ScheduleCosts, workers: int, iterations: int, rng: np.random.Generator,
           staleness: int) -> tuple[float, int]:
    env = simpy.Environment()
    pool = simpy.Resource(env, capacity=workers)
    driver = simpy.Resource(env, capacity=1)
    n = costs.particles
    version = [0] * n
    target = iterations * n
    state = {"updates": 0, "discarded": 0, "end": None}

    def rollout(i: int):
        started_at = version[i]
        with pool.request() as slot:
            yield slot
            yield env.timeout(_draw(costs, rng, i) + costs.dispatch_s)
        if state["end"] is not None:
            return
        with driver.request() as turn:  # one driver: updates queue behind each other
            yield turn
            if version[i] - started_at > staleness:
                state["discarded"] += 1
            else:
                yield env.timeout(costs.update_s)
                version[i] += 1
                state["updates"] += 1
                if state["updates"] >= target:
                    state["end"] = env.now
                    return
        env.process(rollout(i))  # resubmitted at once

    for _ in range(max(1, math.ceil(workers / n))):
        for i in range(n):
            env.process(rollout(i))
    env.run()
    return state["end"] / iterations, state["discarded"]


def predict(costs: ScheduleCosts, workers: Sequence[int], *, iterations: int = 50, seed: int = 0,
            staleness: int = 2) -> list[dict[str, Any]]:
    """Predicted seconds per iteration, sync and async, and their ratio, for each worker count.

    Args:
        costs: measured costs (:func:`measure_costs`).
        workers: rollout slots to predict for (one thread per worker process).
        iterations: iterations simulated per mode (each mode draws its rollout durations from
            the same seeded stream).
        seed: seed of the draws of rollout durations.
        staleness: the trainer's staleness bound.

    Returns:
        One ``{"workers", "sync_s_per_it", "async_s_per_it", "speedup", "async_discarded"}`` per count.
    """
    out = []
    for p in workers:
        if int(p) < 1:
            raise ValueError(f"workers={p!r}; a cluster has at least 1 worker")
        sync = _sync(costs, int(p), iterations, np.random.default_rng(seed))
        asyn, discarded = _async(costs, int(p), iterations, np.random.default_rng(seed), staleness)
        out.append({"workers": int(p), "sync_s_per_it": sync, "async_s_per_it": asyn, "speedup": sync / asyn,
                    "async_discarded": discarded})
    return out


def measure_costs(env_id: str, env_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, particles: int = 8,
                  repeats: int = 3, seed: int = 0, **options: Any) -> ScheduleCosts:
    """Time each particle's rollouts and the driver's updates, in this process, on the real code.

    Args:
        env_id: Gymnasium id; ``env_kwargs``: one dict or one per particle (as for ``train``).
        particles: SVPG particles.
        repeats: rollouts timed per particle (after one untimed warm-up rollout each).
        seed: training seed.
        **options: training options (``episodes``, ``alpha``, ...).
    """
    from learning.rollout import run_rollout
    from learning.trainer import one_torch_thread

    with one_torch_thread():
        learner = _learner(env_id, env_kwargs, particles, seed, **options)
        rollouts = []
        for i in range(particles):
            run_rollout(learner.task(i, 10**9))  # warm-up: imports, JIT, first environment
            times = []
            for _ in range(repeats):
                result = run_rollout(learner.task(i, 10**9))
                learner.record(result)
                times.append(result.wall_time)
            rollouts.append(tuple(times))
        t0 = time.perf_counter()
        for i in range(particles):
            learner.update([i])
        update_s = (time.perf_counter() - t0) / particles
        t0 = time.perf_counter()
        learner.update(None)
        sync_update_s = time.perf_counter() - t0
    return ScheduleCosts(rollouts=tuple(rollouts), update_s=update_s, sync_update_s=sync_update_s,
                         notes={"env_id": env_id, "repeats": repeats})


def _learner(env_id: str, env_kwargs, particles: int, seed: int, **options: Any):
    """The trainer's own learner (particles, optimizers, kernel) for ``particles`` particles."""
    from learning.trainer import TrainConfig, _Learner, _per_particle_kwargs, _policy_spec

    cfg = dataclasses.replace(TrainConfig(), particles=particles, seed=seed, steps=10**9, **options)
    kwargs = _per_particle_kwargs(env_kwargs if isinstance(env_kwargs, Mapping) else
                                  [env_kwargs[i % len(env_kwargs)] for i in range(particles)], particles)
    return _Learner(env_id, kwargs, cfg, _policy_spec(env_id, kwargs[0], cfg))


def measure_updates(env_id: str, env_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]], counts: Sequence[int],
                    *, seed: int = 0, repeats: int = 5, **options: Any) -> dict[int, tuple[float, float]]:
    """The driver's SVPG steps timed on the real learner with N particles, for each N in ``counts``.

    Returns:
        N -> (seconds of one particle's step, seconds of one step of all N particles). The kernel
        couples every particle to every other, so both grow with N; they are measured, not assumed.
    """
    from learning.trainer import one_torch_thread

    out = {}
    rng = np.random.default_rng(seed)
    with one_torch_thread():
        for n in counts:
            learner = _learner(env_id, env_kwargs, int(n), seed, **options)
            learner.grads[:] = rng.standard_normal(learner.grads.shape)
            learner.update([0])  # warm-up
            t0 = time.perf_counter()
            for k in range(repeats):
                learner.update([k % int(n)])
            one = (time.perf_counter() - t0) / repeats
            t0 = time.perf_counter()
            for _ in range(repeats):
                learner.update(None)
            out[int(n)] = (one, (time.perf_counter() - t0) / repeats)
    return out


def calibrate(costs: ScheduleCosts, workers: int, sync_s_per_it: float, worker_busy: float,
              iterations: int = 50, seed: int = 0) -> ScheduleCosts:
    """Fit the model to one measured synchronous run; the asynchronous one is left to predict.

    Two things differ on the cluster from the in-process measurement: rollouts run slower where
    workers and the driver share cores (``worker_busy`` of the measured run gives their real
    duration), and every task pays Dask's latency (fitted so that the model's synchronous
    seconds per iteration equal the measured ones).

    Args:
        costs: from :func:`measure_costs`.
        workers: rollout slots of the measured run.
        sync_s_per_it: its synchronous seconds per iteration.
        worker_busy: its synchronous share of the slots' time spent in rollouts.
    """
    in_process = sum(float(np.mean(r)) for r in costs.rollouts)  # one iteration's rollouts, s
    on_cluster = worker_busy * sync_s_per_it * workers
    scaled = costs.scaled(rollout=on_cluster / in_process)
    low, high = 0.0, sync_s_per_it
    for _ in range(40):  # sync time grows with the latency: bisection
        middle = (low + high) / 2
        guess = _sync(scaled.scaled(dispatch_s=middle), workers, iterations, np.random.default_rng(seed))
        low, high = (middle, high) if guess < sync_s_per_it else (low, middle)
    fitted = scaled.scaled(dispatch_s=(low + high) / 2)
    return dataclasses.replace(fitted, notes={**costs.notes, "rollout_scale": on_cluster / in_process})
