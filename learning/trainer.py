"""Train SVPG (or independent) policy particles, in process or on Dask, synchronously or not.

:func:`train` is the one entry point. Modes:

* ``"serial"``: rollouts run one after another in this process (tests, tiny runs). Same
  numbers as ``"sync"`` for the same seed, bit for bit (rollouts are pure and single-threaded).
* ``"sync"``: each iteration submits every particle's rollout as a ``dask.distributed`` future,
  waits for all of them, then makes one SVPG step of all particles.
* ``"async"``: every particle keeps a rollout in flight; whenever one arrives
  (``as_completed``) that particle alone takes an SVPG step, from the *current* parameters of
  all particles (the kernel) and the most recent gradient estimate of each (zeros before its
  first), and is resubmitted at once while budget is left. Nobody waits for the slowest
  rollout, so particles whose episodes are cheap take more steps. When the cluster has more
  worker threads than particles, each particle keeps ``ceil(threads / particles)`` rollouts in
  flight; a result computed from parameters more than ``staleness`` updates of its particle
  old is then discarded (its environment steps still count against the budget) and the
  particle resubmitted. With one rollout in flight per particle (8 particles on 2 workers) a
  particle cannot move while its rollout runs, so staleness is always 0.

An *iteration* is ``particles`` particle updates in every mode (one SVPG step of all particles
when synchronous), so seconds per iteration compare like for like.

Dask: ``LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)`` by default
(Dask starts worker processes with *spawn*), listening on ``host`` only (scheduler, workers and
the scheduler's HTTP server; default 127.0.0.1, this machine: whoever reaches a scheduler can
run code on its workers), or ``Client(scheduler)`` for an existing cluster
(``dask-jobqueue``, ``dask-mpi``, ``dask scheduler``): nothing else is needed. Every worker gets
``NUMBA_THREADING_LAYER=workqueue`` (numba's default OpenMP layer is not fork-safe,
TOOLCHAIN.md) and ``torch.set_num_threads(1)``, and imports :mod:`learning` (registering
``pfmtwin/DomainWall-v0``) before the first rollout.

Seeds: only ``seed``. Particle ``i`` starts from ``SeedSequence(seed, spawn_key=(0, i))``; its
``k``-th rollout uses ``spawn_key=(1, i, k)``; the final evaluation ``(2, i)``. So ``"svpg"``
and ``"independent"`` runs with one seed start from the same particles and see the same
rollout seeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, LocalCluster, as_completed
from distributed.diagnostics.plugin import WorkerPlugin

from learning.policies import PolicyFile, PolicySpec, init_particle, save_policy
from learning.rollout import ESTIMATORS, RolloutConfig, RolloutResult, RolloutTask, make_env, run_rollout
from learning.svpg import LearningConfigError, ParticleAdam, one_torch_thread

__all__ = [
    "ALGOS",
    "MODES",
    "WORKER_ENV",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "dask_client",
    "train",
]

#: ``"svpg"`` couples the particles through the Stein kernel; ``"independent"`` does not.
ALGOS = ("svpg", "independent")
#: Where and how rollouts run.
MODES = ("serial", "sync", "async")
#: Environment of every worker process of a LocalCluster started here (``NUMBA_NUM_THREADS``
#: is added: the worker's thread count, so numba kernels do not oversubscribe the cores).
WORKER_ENV = {"NUMBA_THREADING_LAYER": "workqueue", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`train` (one docstring line per field, CleanRL style)."""

    algo: str = "svpg"
    """``"svpg"`` or ``"independent"`` (same particles, no kernel coupling)."""
    particles: int = 8
    """Number of policy particles, ``>= 1``."""
    steps: int = 100_000
    """Training budget: environment steps summed over all particles (evaluation excluded). Each
    rollout gets a share of what is left and starts no episode past it, and none starts once the
    budget is used up; episodes already running finish, so a run takes at least ``steps`` and at
    most ``steps`` plus one episode per rollout in flight (``env_steps`` reports them all)."""
    seed: int = 0
    """The only source of randomness (``np.random.SeedSequence``), ``>= 0``."""
    mode: str = "sync"
    """``"serial"`` (in process), ``"sync"`` or ``"async"`` (Dask)."""
    scheduler: str | None = None
    """Address of an existing Dask scheduler; ``None`` starts a LocalCluster."""
    workers: int = 2
    """Worker processes of the LocalCluster (one thread each)."""
    host: str = "127.0.0.1"
    """Interface the LocalCluster's scheduler, workers and HTTP server listen on: loopback (this
    machine only) unless another is asked for (e.g. ``"0.0.0.0"``, every interface); unused
    with ``scheduler``."""
    staleness: int = 2
    """Async: discard a rollout computed from parameters more than this many updates old."""
    estimator: str = "reinforce"
    """Base estimator: ``"reinforce"`` or ``"a2c"``."""
    alpha: float = 0.01
    """SVPG temperature: weight of the kernel repulsion against the (normalized) policy gradient
    (0.01 was best on CartPole-v1; 0.1 and above did worse there, docs/decisions/0003)."""
    lr: float = 1e-2
    """Adam step size of the actors."""
    critic_lr: float = 1e-2
    """Adam step size of the critics (A2C)."""
    episodes: int = 4
    """Complete episodes per rollout."""
    gamma: float = 0.99
    """Discount factor."""
    normalize_advantages: bool = True
    """Scale advantages to unit standard deviation (see :mod:`learning.rollout`)."""
    entropy_coef: float = 0.0
    """Weight of the policy entropy bonus."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of actor and critic."""
    output_gain: float = 0.01
    """Orthogonal-init gain of the actor's output layer."""
    init_spread: float | None = 0.05
    """``None``: every particle its own random init; a number: one shared random init plus
    independent ``N(0, init_spread^2)`` noise on every parameter of every particle."""
    bandwidth: float | None = None
    """Fixed kernel bandwidth ``h``; ``None`` for the median heuristic."""
    max_episode_steps: int | None = None
    """Time limit for environments registered without one."""
    eval_episodes: int = 10
    """Episodes per particle in the final evaluation; 0 reports each particle's last rollout."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise LearningConfigError(f"unknown algo {self.algo!r}; expected one of {ALGOS}")
        if self.mode not in MODES:
            raise LearningConfigError(f"unknown mode {self.mode!r}; expected one of {MODES}")
        if self.estimator not in ESTIMATORS:
            raise LearningConfigError(f"unknown estimator {self.estimator!r}; expected one of {ESTIMATORS}")
        if int(self.particles) < 1:
            raise LearningConfigError(f"particles={self.particles!r}; need at least 1 particle")
        if int(self.steps) < 1:
            raise LearningConfigError(f"steps={self.steps!r}; the environment-step budget must be >= 1")
        if int(self.seed) < 0:
            raise LearningConfigError(f"seed={self.seed!r} must be >= 0")
        if int(self.workers) < 1:
            raise LearningConfigError(f"workers={self.workers!r}; a LocalCluster needs at least 1 worker process")
        _check_host(self.host)
        if int(self.staleness) < 0:
            raise LearningConfigError(f"staleness={self.staleness!r} must be >= 0 (0: only fresh rollouts)")
        if int(self.eval_episodes) < 0:
            raise LearningConfigError(f"eval_episodes={self.eval_episodes!r} must be >= 0")
        if self.scheduler is not None and self.mode == "serial":
            raise LearningConfigError(
                f"scheduler={self.scheduler!r} with mode='serial'; use mode='sync' or 'async' to run on it")
        for name in ("lr", "critic_lr"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise LearningConfigError(f"{name}={v!r} must be finite and > 0")
        if not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise LearningConfigError(f"alpha={self.alpha!r} must be finite and >= 0")
        if self.init_spread is not None and not (self.init_spread >= 0 and math.isfinite(self.init_spread)):
            raise LearningConfigError(f"init_spread={self.init_spread!r} must be finite and >= 0, or None")
        self.rollout_config()  # validates the rollout options

    def rollout_config(self, *, episodes: int | None = None) -> RolloutConfig:
        """The :class:`RolloutConfig` these options give (``episodes`` overrides)."""
        return RolloutConfig(estimator=self.estimator, episodes=self.episodes if episodes is None else episodes,
                             gamma=self.gamma, normalize_advantages=self.normalize_advantages,
                             entropy_coef=self.entropy_coef, max_episode_steps=self.max_episode_steps)


@dataclass(frozen=True)
class Progress:
    """Handed to the progress callback after every rollout that arrives (async) or iteration.

    Attributes:
        env_steps: training environment steps so far.
        budget: the step budget.
        updates: particle updates so far.
        iterations: ``updates / particles``.
        mean_return: mean over particles of their latest rollout's mean return.
        wall_time: seconds since the training loop started.
    """

    env_steps: int
    budget: int
    updates: int
    iterations: float
    mean_return: float
    wall_time: float


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        env_id: Gymnasium id.
        env_kwargs: one ``gymnasium.make`` keyword dict per particle.
        config: the options used.
        spec: policy spaces and architecture.
        actor: final actor vectors, float64, ``(n, spec.actor_size)``.
        critic: final critic vectors, ``(n, spec.critic_size)``.
        final_returns: per particle, mean return of the final evaluation (or of its last
            rollout when ``eval_episodes == 0``), ``(n,)``.
        curve_steps: training environment steps at each curve point, ``(m,)``.
        curve_returns: mean over particles of their latest rollout's mean return, ``(m,)``.
        curve_particles: each particle's latest rollout mean return at each curve point (nan
            before its first), ``(m, n)``.
        env_steps: training environment steps used (including discarded rollouts).
        eval_steps: environment steps of the final evaluation.
        wall_time: seconds of the training loop (no cluster start-up, no evaluation).
        updates: updates each particle took, ``(n,)``.
        rollout_seconds: wall seconds the training rollouts took where they ran, summed (divided
            by ``wall_time`` and the rollout slots: how busy the workers were).
        discarded: rollouts discarded as too stale.
        max_staleness: largest staleness among the rollouts used.
    """

    env_id: str
    env_kwargs: list[dict[str, Any]]
    config: TrainConfig
    spec: PolicySpec
    actor: np.ndarray
    critic: np.ndarray
    final_returns: np.ndarray
    curve_steps: np.ndarray
    curve_returns: np.ndarray
    curve_particles: np.ndarray
    env_steps: int
    eval_steps: int
    wall_time: float
    updates: np.ndarray
    rollout_seconds: float = 0.0
    discarded: int = 0
    max_staleness: int = 0

    @property
    def iterations(self) -> float:
        """Particle updates divided by the number of particles."""
        return float(self.updates.sum()) / len(self.updates)

    @property
    def seconds_per_iteration(self) -> float:
        """Wall seconds per iteration of the training loop."""
        return self.wall_time / self.iterations if self.iterations else math.inf

    @property
    def iterations_per_second(self) -> float:
        """Iterations per wall second of the training loop."""
        return self.iterations / self.wall_time if self.wall_time > 0 else math.inf

    @property
    def mean_final_return(self) -> float:
        """Mean over particles of :attr:`final_returns`."""
        return float(np.mean(self.final_returns))

    def policy_file(self) -> PolicyFile:
        """The content of this run's policy file."""
        kwargs: dict[str, Any] | list[dict[str, Any]] = self.env_kwargs
        if all(k == self.env_kwargs[0] for k in self.env_kwargs):
            kwargs = self.env_kwargs[0]
        info = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self.config).items()}
        info.update(env_steps=self.env_steps, wall_time=self.wall_time, updates=[int(u) for u in self.updates])
        return PolicyFile(env_id=self.env_id, env_kwargs=kwargs, spec=self.spec, actor=self.actor,
                          critic=self.critic, final_returns=self.final_returns, info=info)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the policy file (see :func:`learning.policies.save_policy`)."""
        save_policy(path, self.policy_file())


class _WorkerSetup(WorkerPlugin):
    """Dask worker plugin: one torch thread, a fork-safe numba layer, :mod:`learning` imported."""

    idempotent = True
    name = "pfmtwin-learning-setup"

    def setup(self, worker: Any) -> None:
        """Runs once in every worker, before any rollout."""
        os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
        import torch

        import learning.rollout  # noqa: F401  (registers the environments, warms the imports)

        torch.set_num_threads(1)


def _check_host(host: object) -> str:
    """``host`` if it is a non-empty host name or address without a scheme or port.

    Raises:
        LearningConfigError: anything else, e.g. ``""`` or ``"tcp://127.0.0.1:8786"``.
    """
    if not isinstance(host, str) or not host or "://" in host or host.count(":") == 1 or host.startswith("["):
        raise LearningConfigError(
            f"host={host!r}; give the address of one interface without scheme or port, e.g. '127.0.0.1' "
            "(this machine only, the default), '::1' or '0.0.0.0' (every interface)")
    return host


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2, threads: int = 1,
                host: str = "127.0.0.1") -> Iterator[Client]:
    """A ``distributed.Client`` ready for rollouts; closes what it started.

    Args:
        scheduler: address of an existing scheduler (``tcp://host:8786``); ``None`` starts a
            ``LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True)``.
        workers: worker processes of that LocalCluster, ``>= 1``.
        threads: threads per worker process, ``>= 1``. Keep 1 when rollouts compute; more
            only pays when episodes mostly *wait* (an instrument, a remote simulator).
        host: interface that LocalCluster's scheduler, workers and the scheduler's HTTP server
            (health, metrics; no dashboard) listen on, each on a free port. The default,
            loopback, keeps them on this machine: anyone who reaches a scheduler can run code
            on its workers. ``"0.0.0.0"`` opens every interface.

    Yields:
        The client, with every worker (also those joining later) prepared by the setup plugin.

    Raises:
        LearningConfigError: ``workers`` or ``threads`` below 1, or ``host`` not a bare address.
    """
    if int(workers) < 1:
        raise LearningConfigError(f"workers={workers!r}; a LocalCluster needs at least 1 worker process")
    if int(threads) < 1:
        raise LearningConfigError(f"threads={threads!r}; a worker process needs at least 1 thread")
    _check_host(host)
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            http = f"[{host}]:0" if ":" in host else f"{host}:0"  # an IPv6 address takes brackets
            cluster = stack.enter_context(LocalCluster(
                n_workers=int(workers), threads_per_worker=int(threads), processes=True, host=host,
                dashboard_address=None,
                # no dashboard; the scheduler's small HTTP server (health, metrics) on a free port
                # of ``host`` (":0" alone would listen on every interface) instead of trying 8787
                # (taken when two clusters run) and warning
                scheduler_kwargs={"dashboard_address": http}, silence_logs=logging.ERROR,
                env={**WORKER_ENV, "NUMBA_NUM_THREADS": str(int(threads))}))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler))
        client.register_plugin(_WorkerSetup(), name=_WorkerSetup.name)
        yield client


ProgressArg = Callable[[Progress], None] | bool | None


def _seed(seed: int, *key: int) -> int:
    """A 64-bit integer seed from ``SeedSequence(seed, spawn_key=key)``."""
    return int(np.random.SeedSequence(int(seed), spawn_key=tuple(key)).generate_state(1, dtype=np.uint64)[0])


def _per_particle_kwargs(env_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
                         n: int) -> list[dict[str, Any]]:
    if env_kwargs is None:
        return [{} for _ in range(n)]
    if isinstance(env_kwargs, Mapping):
        return [dict(env_kwargs) for _ in range(n)]
    kwargs = [dict(k) for k in env_kwargs]
    if len(kwargs) != n:
        raise LearningConfigError(
            f"env_kwargs holds {len(kwargs)} dicts for {n} particles; give one dict for all or one per particle")
    return kwargs


class _Reporter:
    """Turns updates into :class:`Progress` for a callback or a tqdm bar."""

    def __init__(self, progress: ProgressArg, budget: int, n: int) -> None:
        self.budget, self.n = budget, n
        self.bar = None
        self.callback: Callable[[Progress], None] | None = None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=budget, unit="step", desc="train")
        elif callable(progress):
            self.callback = progress
        elif progress not in (None, False):
            raise LearningConfigError(f"progress={progress!r}; expected a callable, True (tqdm) or None")
        self.shown = 0

    def __call__(self, env_steps: int, updates: int, mean_return: float, wall: float) -> None:
        p = Progress(env_steps, self.budget, updates, updates / self.n, mean_return, wall)
        if self.callback is not None:
            self.callback(p)
        if self.bar is not None:
            # the bar counts the steps run; past the budget (the episodes in flight finish) its
            # total grows with them and the budget is shown beside it
            postfix = {"mean_return": f"{mean_return:.1f}"}
            if env_steps > self.budget:
                self.bar.total = env_steps
                postfix["budget"] = str(self.budget)
            self.bar.update(env_steps - self.shown)
            self.shown = env_steps
            self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _initial_particles(spec: PolicySpec, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Initial actor and critic vectors, shapes ``(n, actor_size)`` and ``(n, critic_size)``."""
    n = cfg.particles
    if cfg.init_spread is None:
        inits = [init_particle(spec, _seed(cfg.seed, 0, i), output_gain=cfg.output_gain) for i in range(n)]
        return np.stack([a for a, _ in inits]), np.stack([c for _, c in inits])
    actor, critic = init_particle(spec, _seed(cfg.seed, 0), output_gain=cfg.output_gain)
    rng = np.random.default_rng(_seed(cfg.seed, 3))
    actors = actor + cfg.init_spread * rng.standard_normal((n, actor.size))
    critics = np.repeat(critic[None], n, axis=0)  # critics are not coupled: no spread needed
    return actors, critics


def _policy_spec(env_id: str, kwargs: Mapping[str, Any], cfg: TrainConfig) -> PolicySpec:
    """The policy architecture for ``env_id``'s spaces (opens the environment once to read them)."""
    env = make_env(env_id, kwargs, cfg.max_episode_steps)
    try:
        return PolicySpec.from_spaces(env.observation_space, env.action_space, hidden=cfg.hidden,
                                      critic=cfg.estimator == "a2c")
    finally:
        env.close()


class _Learner:
    """Particles, their optimizers and the bookkeeping shared by every mode."""

    def __init__(self, env_id: str, kwargs: list[dict[str, Any]], cfg: TrainConfig, spec: PolicySpec) -> None:
        self.env_id, self.kwargs, self.cfg, self.spec = env_id, kwargs, cfg, spec
        n = cfg.particles
        actors, critics = _initial_particles(spec, cfg)
        coupling = "svgd" if cfg.algo == "svpg" else "independent"
        self.actors = ParticleAdam(actors, coupling=coupling, alpha=cfg.alpha, lr=cfg.lr, bandwidth=cfg.bandwidth)
        self.critics = (ParticleAdam(critics, coupling="independent", lr=cfg.critic_lr) if spec.critic else None)
        self.rollout_config = cfg.rollout_config()
        self.grads = np.zeros((n, spec.actor_size))
        self.critic_grads = np.zeros((n, spec.critic_size))
        self.latest = np.full(n, np.nan)
        self.version = np.zeros(n, dtype=np.int64)
        self.submitted = np.zeros(n, dtype=np.int64)
        self.env_steps = 0
        self.rollout_seconds = 0.0
        self.curve: list[tuple[int, float, np.ndarray]] = []

    def task(self, i: int, step_budget: int) -> RolloutTask:
        """The next rollout of particle ``i`` from its current parameters, with its share of the budget."""
        critic = self.critics.theta(i) if self.critics is not None else np.zeros(0)
        t = RolloutTask(self.env_id, self.kwargs[i], self.spec, self.actors.theta(i).astype(np.float32),
                        critic.astype(np.float32), _seed(self.cfg.seed, 1, i, int(self.submitted[i])),
                        self.rollout_config, particle=i, version=int(self.version[i]), step_budget=step_budget)
        self.submitted[i] += 1
        return t

    def record(self, r: RolloutResult) -> None:
        """Keep a result's gradient estimates and return (its steps are counted separately)."""
        self.grads[r.particle] = r.policy_grad
        if self.critics is not None:
            self.critic_grads[r.particle] = r.critic_grad
        self.latest[r.particle] = r.mean_return

    def update(self, particles: Sequence[int] | None) -> None:
        """One SVPG (or independent) step of ``particles`` (default all)."""
        self.actors.step(self.grads, particles)
        if self.critics is not None:
            self.critics.step(-self.critic_grads, particles)
        self.version[list(range(self.cfg.particles)) if particles is None else list(particles)] += 1

    def mean_return(self) -> float:
        known = self.latest[np.isfinite(self.latest)]
        return float(known.mean()) if len(known) else math.nan


def _run_sync(learner: _Learner, run: Callable[[list[RolloutTask]], list[RolloutResult]],
              report: _Reporter, start: float) -> None:
    n, budget = learner.cfg.particles, learner.cfg.steps
    while learner.env_steps < budget:
        share = math.ceil((budget - learner.env_steps) / n)  # at most budget + n episodes - 1 in all
        results = run([learner.task(i, share) for i in range(n)])
        for r in results:
            learner.record(r)
            learner.env_steps += r.env_steps
            learner.rollout_seconds += r.wall_time
        learner.update(None)
        learner.curve.append((learner.env_steps, learner.mean_return(), learner.latest.copy()))
        report(learner.env_steps, int(learner.version.sum()), learner.mean_return(), time.perf_counter() - start)


def _run_async(learner: _Learner, client: Client, report: _Reporter, start: float) -> tuple[int, int]:
    """Step each particle as its rollout arrives, until the budget is used up.

    Each rollout claims a share of the budget not yet run or claimed (``ceil(left / rollout
    slots)``) and starts no episode past it. A particle whose rollout arrives is resubmitted
    while some is left, else it waits until a rollout in flight returns the part of its claim
    it did not run. Rollouts in flight are waited for, not cancelled (a running one cannot be
    stopped), and counted, so at most one episode per rollout in flight runs past the budget
    and ``env_steps`` reports every step run.
    """
    cfg = learner.cfg
    slots = max(1, sum(client.nthreads().values()))
    in_flight = max(1, math.ceil(slots / cfg.particles))
    claims: dict[Any, int] = {}
    waiting: list[int] = []  # particles (one entry per rollout slot) held back for want of budget
    queue = as_completed()

    def submit(i: int) -> bool:
        left = cfg.steps - learner.env_steps - sum(claims.values())
        if left <= 0:
            return False
        claim = math.ceil(left / (in_flight * cfg.particles))
        fut = client.submit(run_rollout, learner.task(i, claim), pure=False)
        claims[fut] = claim
        queue.add(fut)
        return True

    for _ in range(in_flight):
        for i in range(cfg.particles):
            if not submit(i):
                waiting.append(i)
    discarded = max_stale = 0
    for fut in queue:
        del claims[fut]
        r: RolloutResult = fut.result()
        learner.env_steps += r.env_steps
        learner.rollout_seconds += r.wall_time
        stale = int(learner.version[r.particle] - r.version)
        if stale > cfg.staleness:
            discarded += 1
        else:
            max_stale = max(max_stale, stale)
            learner.record(r)
            learner.update([r.particle])
            learner.curve.append((learner.env_steps, learner.mean_return(), learner.latest.copy()))
        report(learner.env_steps, int(learner.version.sum()), learner.mean_return(), time.perf_counter() - start)
        waiting.append(r.particle)  # after those held back longer
        while waiting and submit(waiting[0]):
            waiting.pop(0)
    return discarded, max_stale


def _evaluate(learner: _Learner, run: Callable[[list[RolloutTask]], list[RolloutResult]]) -> tuple[np.ndarray, int]:
    cfg = learner.cfg
    if cfg.eval_episodes == 0:
        return learner.latest.copy(), 0
    rc = cfg.rollout_config(episodes=cfg.eval_episodes)
    tasks = []
    for i in range(cfg.particles):
        critic = learner.critics.theta(i) if learner.critics is not None else np.zeros(0)
        tasks.append(RolloutTask(learner.env_id, learner.kwargs[i], learner.spec,
                                 learner.actors.theta(i).astype(np.float32), critic.astype(np.float32),
                                 _seed(cfg.seed, 2, i), rc, particle=i, version=int(learner.version[i]),
                                 gradient=False))
    results = run(tasks)
    return np.array([r.mean_return for r in results]), int(sum(r.env_steps for r in results))


def train(env_id: str, env_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
          config: TrainConfig | None = None, *, progress: ProgressArg = None, **options: Any) -> TrainResult:
    """Train ``particles`` policies on a Gymnasium environment with SVPG or independently.

    Args:
        env_id: Gymnasium id, e.g. ``"CartPole-v1"`` or ``"pfmtwin/DomainWall-v0"``.
        env_kwargs: keyword arguments of ``gymnasium.make``: one dict for all particles, or one
            per particle (same spaces; e.g. per-particle environment variants).
        config: options; ``None`` for the defaults of :class:`TrainConfig`.
        progress: a callable receiving :class:`Progress` after every update, ``True`` for a
            tqdm bar, or ``None``.
        **options: override fields of ``config`` by name (``algo``, ``particles``, ``steps``,
            ``seed``, ``mode``, ``scheduler``, ``workers``, ``staleness``, ``alpha``, ...).

    Returns:
        A :class:`TrainResult`.

    Raises:
        LearningConfigError: an unknown option or a value out of range (the message names it,
            the allowed range and the fix).
    """
    base = config if config is not None else TrainConfig()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise LearningConfigError(f"unknown training option(s) {unknown!r}; valid options: {sorted(names)}")
    if "hidden" in options:
        options["hidden"] = tuple(options["hidden"])
    cfg = dataclasses.replace(base, **options)
    kwargs = _per_particle_kwargs(env_kwargs, cfg.particles)
    spec = _policy_spec(env_id, kwargs[0], cfg)
    report = _Reporter(progress, cfg.steps, cfg.particles)
    discarded = max_stale = 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(one_torch_thread())
        stack.callback(report.close)
        learner = _Learner(env_id, kwargs, cfg, spec)
        if cfg.mode == "serial":
            def run(tasks: list[RolloutTask]) -> list[RolloutResult]:
                return [run_rollout(t) for t in tasks]

            start = time.perf_counter()
            _run_sync(learner, run, report, start)
            wall = time.perf_counter() - start
            final, eval_steps = _evaluate(learner, run)
        else:
            with dask_client(cfg.scheduler, cfg.workers, host=cfg.host) as client:
                def run(tasks: list[RolloutTask]) -> list[RolloutResult]:
                    return client.gather([client.submit(run_rollout, t, pure=False) for t in tasks])

                start = time.perf_counter()
                if cfg.mode == "sync":
                    _run_sync(learner, run, report, start)
                else:
                    discarded, max_stale = _run_async(learner, client, report, start)
                wall = time.perf_counter() - start
                final, eval_steps = _evaluate(learner, run)
    steps = np.array([s for s, _, _ in learner.curve], dtype=np.int64)
    rets = np.array([r for _, r, _ in learner.curve], dtype=float)
    each = np.array([p for _, _, p in learner.curve], dtype=float).reshape(len(steps), cfg.particles)
    critic = learner.critics.thetas if learner.critics is not None else np.zeros((cfg.particles, 0))
    return TrainResult(env_id=env_id, env_kwargs=kwargs, config=cfg, spec=spec, actor=learner.actors.thetas,
                       critic=critic, final_returns=final, curve_steps=steps, curve_returns=rets, curve_particles=each,
                       env_steps=learner.env_steps, eval_steps=eval_steps, wall_time=wall,
                       updates=learner.version.copy(), rollout_seconds=learner.rollout_seconds, discarded=discarded, max_staleness=max_stale)
