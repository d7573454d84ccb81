"""``pfmtwin agent train|run|surrogate`` (a plug-in of the ``pfmtwin`` CLI).

``agent train`` trains SVPG (or independent) policy particles on any registered Gymnasium id
(``pfmtwin/DomainWall-v0`` over any backend URL, ``CartPole-v1``, ...), shows a progress bar,
writes the policy file and a learning-curve PNG beside it, and prints one JSON line.

``agent run`` loads a policy file and runs it on any backend: the environment is rebuilt from
the file's Gymnasium id and keyword arguments with ``microscope`` replaced by ``--microscope``,
so the policy trained on ``twin://`` runs unchanged on ``socket://`` (the emulator) or a serial
port (the instrument). One JSON line per step on stdout; a summary on stderr.

``agent surrogate collect|fit|evaluate`` is ``python -m learning.surrogate`` (:mod:`learning.surrogate`).

Registered through the entry-point group ``pfmtwin.commands`` (``pfmtwin bench agents`` is
:func:`learning.bench.bench_agents`, under ``pfmtwin.benches``), so ``scenarios`` never
imports ``learning``'s internals and ``learning`` never imports a backend. torch, Gymnasium and
Dask are imported by the commands that need them, not when ``pfmtwin`` starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_curve", "register", "run_policy"]

#: Gymnasium id trained by default.
DEFAULT_ENV = "pfmtwin/DomainWall-v0"


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not JSON ({e.msg} at column {e.colno}); write an object such as "
            '\'{"microscope": "twin://?seed=1"}\'') from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is a JSON {type(value).__name__}; --env-kwargs must be an object {{...}}")
    return value


def plot_curve(result: Any, path: str | os.PathLike[str]) -> None:
    """Learning curve of a :class:`learning.trainer.TrainResult` as a PNG.

    Each particle's latest rollout return and their mean against training environment steps,
    with each particle's final evaluation return at the end.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result.config
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for i in range(result.curve_particles.shape[1]):
        ax.plot(result.curve_steps, result.curve_particles[:, i], color="0.6", lw=0.6, alpha=0.7,
                label="each particle (latest rollout)" if i == 0 else None)
    ax.plot(result.curve_steps, result.curve_returns, color="C0", lw=1.8, label="mean over particles (training)")
    end = result.curve_steps[-1] if len(result.curve_steps) else 0
    ax.scatter(np.full(len(result.final_returns), end), result.final_returns, color="C3", s=14, zorder=3,
               label=f"final evaluation, each particle (mean {result.mean_final_return:.3g})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(f"{result.env_id}: {cfg.algo}, {cfg.particles} particles, seed {cfg.seed}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)


def _train(args: argparse.Namespace) -> int:
    from learning.files import write_atomically
    from learning.svpg import LearningConfigError
    from learning.trainer import train

    out = Path(args.out)
    curve = out.with_suffix(".png")
    if out.suffix == ".png":
        raise LearningConfigError(f"--out {str(out)!r} ends in .png; that name is for the learning curve, use e.g. policy.pt")
    for p in (out, curve):
        if p.exists() and not args.force:
            raise LearningConfigError(f"{str(p)!r} exists; choose another --out or pass --force to overwrite it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LearningConfigError(f"cannot create the folder of --out {str(out)!r}: {e}; choose a writable place") from e
    options = {k: v for k, v in {
        "algo": args.algo, "particles": args.particles, "steps": args.steps, "seed": args.seed, "mode": args.mode,
        "scheduler": args.scheduler, "workers": args.workers, "host": args.host, "estimator": args.estimator,
        "alpha": args.alpha, "lr": args.lr, "episodes": args.episodes, "eval_episodes": args.eval_episodes,
        "staleness": args.staleness}.items() if v is not None}
    result = train(args.env, args.env_kwargs, progress=True, **options)
    result.save(out)  # atomic, as every policy file
    write_atomically(curve, lambda tmp: plot_curve(result, tmp), LearningConfigError)
    print(json.dumps({
        "env": result.env_id, "algo": result.config.algo, "mode": result.config.mode,
        "particles": result.config.particles, "seed": result.config.seed,
        "mean_return": result.mean_final_return, "final_returns": [float(r) for r in result.final_returns],
        "best_particle": int(np.nanargmax(result.final_returns)) if np.isfinite(result.final_returns).any() else 0,
        "env_steps": int(result.env_steps), "iterations": result.iterations, "wall_s": result.wall_time,
        "s_per_it": result.seconds_per_iteration, "policy": str(out), "curve": str(curve)}), flush=True)
    return 0


def run_policy(policy_path: str | os.PathLike[str], microscope: str | None = None, *, episodes: int = 1,
               seed: int = 0, particle: int | None = None, sample: bool = False, max_steps: int | None = None,
               random_actions: bool = False, env_overrides: Mapping[str, Any] | None = None,
               connect: Callable[[str], Any] | None = None):
    """Run a policy file, yielding one plain-data record per environment step.

    Args:
        policy_path: a file written by ``pfmtwin agent train`` (:func:`learning.policies.save_policy`).
        microscope: backend URL replacing the file's ``microscope`` keyword (``None`` keeps it).
        episodes: episodes to run, ``>= 1``. Only the first reset is seeded (``reset(seed=seed)``);
            later episodes continue on the same sample, as on a real instrument.
        seed: the environment's reset seed and the seed of the action draws (``sample``).
        particle: which particle of the file (default: the best final return).
        sample: draw actions from the policy's distribution instead of taking its mean/mode.
        max_steps: cap on steps per episode (``None``: the environment's own limit).
        random_actions: the baseline: uniform random actions (seeded by ``seed``) in the same
            environment, instead of the policy's.
        env_overrides: environment keyword arguments replacing the file's (not ``microscope``).
        connect: how the environment opens its microscope (default ``control.connect``); a
            scenario passes one that records the session.

    Yields:
        ``{"episode", "step", "action", "reward", "terminated", "truncated", ...}`` with the
        environment's per-step info (for DomainWall: instrument ``time`` and the emitted ``pulse``).
    """
    from learning.files import plain_data
    from learning.policies import load_policy
    from learning.rollout import make_env
    from learning.svpg import LearningConfigError

    if int(episodes) < 1:
        raise LearningConfigError(f"episodes={episodes!r}; run at least 1 episode")
    if int(seed) < 0:
        raise LearningConfigError(f"seed={seed!r} must be >= 0")
    pf = load_policy(policy_path)
    index = pf.best if particle is None else int(particle)
    policy = pf.policy(index)
    kwargs = pf.env_kwargs[index] if isinstance(pf.env_kwargs, list) else dict(pf.env_kwargs)
    if microscope is not None:
        if pf.env_id != DEFAULT_ENV and "microscope" not in kwargs:
            raise LearningConfigError(
                f"the policy in {os.fspath(policy_path)!r} was trained on {pf.env_id!r}, which takes no microscope; "
                "drop --microscope")
        kwargs["microscope"] = microscope
    if env_overrides:
        if "microscope" in env_overrides:
            raise LearningConfigError("env_overrides may not set 'microscope'; pass microscope= instead")
        kwargs.update(env_overrides)
    if connect is not None:
        kwargs["connect"] = connect
    rng = np.random.default_rng(int(seed)) if sample else None
    env = make_env(pf.env_id, kwargs)
    env.action_space.seed(int(seed))
    try:
        for episode in range(int(episodes)):
            obs, _ = env.reset(seed=int(seed) if episode == 0 else None)
            step = 0
            while True:
                action = env.action_space.sample() if random_actions else policy.act(obs, rng)
                obs, reward, terminated, truncated, info = env.step(action)
                step += 1
                record = {"episode": episode, "step": step, "action": plain_data(action, "action"),
                          "reward": float(reward), "terminated": bool(terminated), "truncated": bool(truncated)}
                record.update({k: plain_data(info[k], k) for k in ("time", "pulse", "curvature", "wall_x") if k in info})
                yield record
                if terminated or truncated or (max_steps is not None and step >= max_steps):
                    break
    finally:
        env.close()


def _run(args: argparse.Namespace) -> int:
    returns: list[float] = []
    current = None
    for record in run_policy(args.policy, args.microscope, episodes=args.episodes, seed=args.seed,
                             particle=args.particle, sample=args.sample, max_steps=args.max_steps,
                             random_actions=args.random):
        print(json.dumps(record), flush=True)
        if record["episode"] != current:
            current = record["episode"]
            returns.append(0.0)
        returns[-1] += record["reward"]
    error = float(np.std(returns) / math.sqrt(len(returns))) if returns else math.nan
    print(json.dumps({"episodes": len(returns), "returns": returns,
                      "mean_return": float(np.mean(returns)) if returns else math.nan, "standard_error": error}),
          file=sys.stderr, flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``agent train`` and ``agent run`` to the ``pfmtwin`` command line."""
    agent = subparsers.add_parser("agent", help="train SVPG agents and run policies on any backend")
    sub = agent.add_subparsers(dest="agent_command", required=True)

    t = sub.add_parser("train", help="train policy particles (SVPG or independent), write the policy and its learning curve",
                       description="Train on any registered Gymnasium id; prints one JSON line at the end.")
    t.add_argument("--env", default=DEFAULT_ENV, help=f"Gymnasium id (default {DEFAULT_ENV}; e.g. CartPole-v1)")
    t.add_argument("--env-kwargs", type=_json_object, default={}, metavar="JSON",
                   help='keyword arguments of gymnasium.make, e.g. \'{"microscope": "twin://?seed=1"}\'')
    t.add_argument("--algo", choices=("svpg", "independent"), default="svpg")
    t.add_argument("--particles", type=int, default=8)
    t.add_argument("--steps", type=int, required=True,
                   help="environment-step budget, summed over particles; no episode starts past a rollout's share "
                        "of it, so a run passes it by at most one episode per rollout in flight (the bar and "
                        "env_steps count every step run)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="policy file to write (.pt); the learning curve goes beside it (.png)")
    t.add_argument("--force", action="store_true", help="overwrite --out and its .png")
    t.add_argument("--mode", choices=("serial", "sync", "async"), default=None,
                   help="sync (default, reproducible): every particle steps together; async: each particle steps "
                        "as its rollout arrives (load-balanced); serial: in this process, no Dask")
    t.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (default: a LocalCluster)")
    t.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default 2)")
    t.add_argument("--host", default=None,
                   help="interface the LocalCluster listens on (default 127.0.0.1: this machine only; "
                        "0.0.0.0: every interface, and anyone reaching it can run code on the workers)")
    t.add_argument("--estimator", choices=("reinforce", "a2c"), default=None, help="base estimator (default reinforce)")
    t.add_argument("--alpha", type=float, default=None, help="SVPG temperature (default 0.01)")
    t.add_argument("--lr", type=float, default=None, help="Adam step size (default 0.01)")
    t.add_argument("--episodes", type=int, default=None, help="episodes per rollout (default 4)")
    t.add_argument("--eval-episodes", type=int, default=None, help="final evaluation episodes per particle (default 10)")
    t.add_argument("--staleness", type=int, default=None, help="async: largest staleness of a rollout used (default 2)")
    t.set_defaults(func=_train)

    r = sub.add_parser("run", help="run a policy file on any backend; one JSON line per step",
                       description="The environment comes from the policy file, with its microscope replaced.")
    r.add_argument("--microscope", default=None, help="backend URL: twin://?seed=3, socket://127.0.0.1:7001, /dev/ttyUSB0")
    r.add_argument("--policy", required=True, help="policy file from `pfmtwin agent train`")
    r.add_argument("--episodes", type=int, default=1)
    r.add_argument("--seed", type=int, default=0, help="seed of the first reset (and of action draws with --sample)")
    r.add_argument("--particle", type=int, default=None, help="particle of the file to run (default: best final return)")
    r.add_argument("--sample", action="store_true", help="draw actions from the policy instead of taking its mean")
    r.add_argument("--max-steps", type=int, default=None, help="cap on steps per episode")
    r.add_argument("--random", action="store_true",
                   help="baseline: uniform random actions (seeded by --seed) in the policy's environment")
    r.set_defaults(func=_run)

    s = sub.add_parser("surrogate", help="collect twin transitions, fit and evaluate the surrogate backend (surrogate://PATH)",
                       description="`pfmtwin agent surrogate COMMAND --help` shows each command's options.")
    s.add_argument("surrogate_command", choices=("collect", "fit", "evaluate"), metavar="{collect,fit,evaluate}")
    s.add_argument("args", nargs=argparse.REMAINDER, help="options of the command")
    s.set_defaults(func=_surrogate)


def _surrogate(args: argparse.Namespace) -> int:
    from learning.surrogate import main

    return main([args.surrogate_command, *args.args], prog="pfmtwin agent surrogate")
